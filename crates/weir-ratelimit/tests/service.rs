//! The service end to end: a tonic client calls ShouldRateLimit on a started service counting
//! in a real Debian `redis-server` (one per test, on a free 127.0.0.1 port), with an injected
//! clock for the window boundaries.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use support::*;
use tonic::Code as GrpcCode;
use weir_ratelimit::{FailureMode, ManualClock, Running, UNKNOWN_DOMAIN};

const SHOP: &str = "\
domain: shop
descriptors:
  - key: path
    value: /checkout
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: client
    rate_limit: { unit: minute, requests_per_unit: 2 }
";

struct Setup {
    redis: Redis,
    clock: ManualClock,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_config(&dir.path().join("shop.yaml"), SHOP);
        Setup {
            redis: tokio::task::block_in_place(Redis::start),
            clock: ManualClock::new(CLOCK_START + 15),
            dir,
        }
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("shop.yaml")
    }

    async fn start(&self, mode: FailureMode) -> Running {
        start(
            settings(&[self.config()], &self.redis.url(), mode),
            &self.clock,
        )
        .await
    }
}

fn code(c: i32) -> Code {
    Code::try_from(c).unwrap_or(Code::Unknown)
}

const CHECKOUT: &[(&str, &str)] = &[("path", "/checkout")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_limit_is_ok_and_over_it_is_over_limit_with_statuses() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    for remaining in [2, 1, 0] {
        let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
        assert_eq!(code(r.overall_code), Code::Ok);
        assert_eq!(r.statuses.len(), 1);
        assert_eq!(code(r.statuses[0].code), Code::Ok);
        assert_eq!(r.statuses[0].limit_remaining, remaining);
    }
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(code(r.overall_code), Code::OverLimit);
    let st = &r.statuses[0];
    assert_eq!(code(st.code), Code::OverLimit);
    assert_eq!(st.limit_remaining, 0);
    let limit = st.current_limit.clone().unwrap_or_default();
    assert_eq!(
        (limit.requests_per_unit, limit.unit),
        (3, Unit::Minute as i32)
    );
    // 15 s into the minute: 45 s to go.
    assert_eq!(
        st.duration_until_reset.map(|d| (d.seconds, d.nanos)),
        Some((45, 0))
    );

    // The counter is the reference service's key, in Redis, with the window as its TTL.
    let key = format!("shop_path_/checkout_{CLOCK_START}");
    assert_eq!(
        s.redis.command(&format!("GET {key}")).as_deref(),
        Some("$1")
    );
    let ttl: i64 = s
        .redis
        .command(&format!("TTL {key}"))
        .and_then(|t| t.trim_start_matches(':').parse().ok())
        .unwrap_or(-9);
    assert!((1..=60).contains(&ttl), "TTL {ttl}");

    // Several descriptors: one over makes the whole answer over; one that no entry matches is
    // OK without a limit.
    let r = answer(
        &mut c,
        request("shop", &[&[("path", "/elsewhere")], CHECKOUT]),
    )
    .await;
    assert_eq!(code(r.overall_code), Code::OverLimit);
    assert_eq!(code(r.statuses[0].code), Code::Ok);
    assert_eq!(r.statuses[0].current_limit, None);
    assert_eq!(code(r.statuses[1].code), Code::OverLimit);
    svc.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_addend_adds_that_many_hits() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    let mut req = request("shop", &[CHECKOUT]);
    req.hits_addend = 3;
    let r = answer(&mut c, req.clone()).await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 0);
    req.hits_addend = 1;
    let r = answer(&mut c, req).await;
    assert_eq!(code(r.overall_code), Code::OverLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_entry_counts_each_value_on_its_own() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    let mut codes = Vec::new();
    for client_id in ["a", "a", "b", "a", "b", "b", "c"] {
        let r = answer(&mut c, request("shop", &[&[("client", client_id)]])).await;
        codes.push(code(r.overall_code));
    }
    use Code::{Ok as O, OverLimit as X};
    assert_eq!(codes, [O, O, O, X, O, X, O]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_one_redis_share_the_count() {
    let s = Setup::new();
    let one = s.start(FailureMode::Deny).await;
    let two = s.start(FailureMode::Deny).await;
    let (mut c1, mut c2) = (client(&one).await, client(&two).await);
    let mut seen = Vec::new();
    for i in 0..4 {
        let c = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        let r = answer(c, request("shop", &[CHECKOUT])).await;
        seen.push((code(r.overall_code), r.statuses[0].limit_remaining));
    }
    assert_eq!(
        seen,
        [
            (Code::Ok, 2),
            (Code::Ok, 1),
            (Code::Ok, 0),
            (Code::OverLimit, 0)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_window_starts_a_new_count() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    for _ in 0..2 {
        answer(&mut c, request("shop", &[&[("client", "a")]])).await;
    }
    let over = |r: &RateLimitResponse| code(r.overall_code) == Code::OverLimit;
    let r = answer(&mut c, request("shop", &[&[("client", "a")]])).await;
    assert!(over(&r));
    // Later in the same minute: still over, with less time to the reset.
    s.clock.advance(44);
    let r = answer(&mut c, request("shop", &[&[("client", "a")]])).await;
    assert!(over(&r));
    assert_eq!(
        r.statuses[0].duration_until_reset.map(|d| d.seconds),
        Some(1)
    );
    // The next minute: a fresh count.
    s.clock.advance(1);
    let r = answer(&mut c, request("shop", &[&[("client", "a")]])).await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 1);
    assert_eq!(
        r.statuses[0].duration_until_reset.map(|d| d.seconds),
        Some(60)
    );
}

/// Starts Redis again (empty: it kept nothing) and asks until the service counts again (it
/// reconnects after its retry delay).
async fn restart_and_await_counting(redis: &mut Redis, c: &mut Client) {
    tokio::task::block_in_place(|| redis.restart());
    // Up to 60 s: an outcome, not a latency (a loaded machine may take a while).
    for _ in 0..600 {
        let r = ask(c, request("shop", &[CHECKOUT])).await;
        if r.is_ok_and(|r| r.statuses[0].current_limit.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not count again after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_failure_mode_allow_allows_then_counting_resumes() {
    let mut s = Setup::new();
    let svc = s.start(FailureMode::Allow).await;
    let mut c = client(&svc).await;
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(r.statuses[0].limit_remaining, 2);

    s.redis.kill();
    for _ in 0..5 {
        let r = ask(&mut c, request("shop", &[CHECKOUT]))
            .await
            .unwrap_or_else(|e| panic!("allow must answer OK, not {e}"));
        assert_eq!(code(r.overall_code), Code::Ok);
        assert_eq!(r.statuses[0].current_limit, None, "nothing was counted");
    }
    let status = svc.status();
    assert_eq!(status.redis.up, Some(false));
    let why = status.redis.last_error.unwrap_or_default();
    assert!(
        why.contains(&format!("127.0.0.1:{}", s.redis.port)),
        "{why}"
    );
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(
            &m,
            "weir_ratelimit_decisions_total{domain=\"shop\",code=\"redis_failure_allowed\"}"
        ),
        5.0,
        "{m}"
    );
    assert!(
        sample(&m, "weir_ratelimit_redis_errors_total") >= 5.0,
        "{m}"
    );
    assert_eq!(sample(&m, "weir_ratelimit_redis_up"), 0.0, "{m}");

    // Back (empty: it kept nothing): counting resumes.
    restart_and_await_counting(&mut s.redis, &mut c).await;
    assert_eq!(svc.status().redis.up, Some(true));
    let m = http(&svc, "/metrics").await;
    assert_eq!(sample(&m, "weir_ratelimit_redis_up"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_failure_mode_deny_is_unavailable_then_counting_resumes() {
    let mut s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    s.redis.kill();
    let e = ask(&mut c, request("shop", &[CHECKOUT]))
        .await
        .err()
        .unwrap_or_else(|| panic!("deny must refuse while Redis is down"));
    assert_eq!(e.code(), GrpcCode::Unavailable);
    assert!(
        e.message().contains("failure_mode is deny")
            && e.message().contains(&format!("127.0.0.1:{}", s.redis.port)),
        "{}",
        e.message()
    );
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(
            &m,
            "weir_ratelimit_decisions_total{domain=\"shop\",code=\"redis_failure_denied\"}"
        ),
        1.0,
        "{m}"
    );

    restart_and_await_counting(&mut s.redis, &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_at_start_is_not_fatal() {
    let s = Setup::new();
    let nobody = format!(
        "redis://127.0.0.1:{}",
        weir_test_support::procs::free_port()
    );
    let svc = start(
        settings(&[s.config()], &nobody, FailureMode::Deny),
        &s.clock,
    )
    .await;
    // Said at start, before any request.
    let st = svc.status();
    assert_eq!(st.redis.up, Some(false));
    let why = st.redis.last_error.unwrap_or_default();
    assert!(why.contains("cannot connect"), "{why}");
    let mut c = client(&svc).await;
    let e = ask(&mut c, request("shop", &[CHECKOUT]))
        .await
        .err()
        .unwrap_or_else(|| panic!("deny must refuse without Redis"));
    assert_eq!(e.code(), GrpcCode::Unavailable);
    assert!(e.message().contains("cannot connect"), "{}", e.message());

    // A URL that is not one is refused at start, clearly.
    let bad = weir_ratelimit::start(
        settings(&[s.config()], "http://nowhere", FailureMode::Deny),
        std::sync::Arc::new(s.clock.clone()),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(bad.starts_with("redis URL \"http://nowhere\""), "{bad}");
}

/// Polls `/status` until `done` holds.
async fn status_until(svc: &Running, done: impl Fn(&weir_ratelimit::StatusView) -> bool) {
    // Up to 60 s: an outcome, not a latency.
    for _ in 0..1200 {
        if done(&svc.status()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "status never reached the expected state: {:?}",
        svc.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_change_keeps_the_last_good_one_and_says_why() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;

    // A good change is picked up: checkout now allows 1 a minute.
    write_config(
        &s.config(),
        &SHOP.replace("requests_per_unit: 3", "requests_per_unit: 1"),
    );
    status_until(&svc, |st| st.config.reloads == 2).await;
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(
        r.statuses[0]
            .current_limit
            .clone()
            .map(|l| l.requests_per_unit),
        Some(1)
    );

    // Malformed YAML: refused, the reason kept, the last good limits still in force.
    write_config(&s.config(), "domain: shop\ndescriptors: [\n");
    status_until(&svc, |st| st.config.last_error.is_some()).await;
    let st = svc.status();
    let why = st.config.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("shop.yaml: not a rate-limit configuration"),
        "{why}"
    );
    assert_eq!(st.config.domains, ["shop"]);
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(
        code(r.overall_code),
        Code::OverLimit,
        "limit 1 still applies"
    );
    let body = http(&svc, "/status").await;
    assert!(body.contains("not a rate-limit configuration"), "{body}");
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(&m, "weir_ratelimit_config_reload_errors_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "weir_ratelimit_config_last_reload_ok"),
        0.0,
        "{m}"
    );

    // A file that parses but breaks the loader's rules: refused with the rule.
    write_config(
        &s.config(),
        &SHOP.replace(
            "requests_per_unit: 3",
            "requests_per_unit: 3, unlimited: true",
        ),
    );
    status_until(&svc, |st| st.config.reload_errors == 2).await;
    let why = svc.status().config.last_error.unwrap_or_default();
    assert!(
        why.contains("descriptors[0].rate_limit: unlimited: true takes no unit"),
        "{why}"
    );

    // A deleted file: refused too, still serving.
    std::fs::remove_file(s.config()).unwrap_or_else(|e| panic!("{e}"));
    status_until(&svc, |st| st.config.reload_errors == 3).await;
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(code(r.overall_code), Code::OverLimit);

    // Fixed: in force again, the error cleared.
    write_config(&s.config(), SHOP);
    status_until(&svc, |st| st.config.last_error.is_none()).await;
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(&m, "weir_ratelimit_config_last_reload_ok"),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "weir_ratelimit_config_reloads_total"),
        3.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_at_start_is_a_clear_error() {
    let s = Setup::new();
    write_config(&s.config(), "domain: shop\nlimits: []\n");
    let e = weir_ratelimit::start(
        settings(&[s.config()], &s.redis.url(), FailureMode::Deny),
        std::sync::Arc::new(s.clock.clone()),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        e.starts_with("rate-limit configuration: ") && e.contains("unknown field `limits`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_descriptors_are_invalid_argument() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Allow).await;
    let mut c = client(&svc).await;
    let e = ask(&mut c, request("shop", &[]))
        .await
        .err()
        .unwrap_or_else(|| panic!("no descriptors must be refused"));
    assert_eq!(e.code(), GrpcCode::InvalidArgument);
    assert!(e.message().contains("no descriptors"), "{}", e.message());

    let e = ask(&mut c, request("", &[CHECKOUT]))
        .await
        .err()
        .unwrap_or_else(|| panic!("no domain must be refused"));
    assert_eq!(e.code(), GrpcCode::InvalidArgument);
    assert!(e.message().contains("no domain"), "{}", e.message());

    let e = ask(&mut c, request("shop", &[CHECKOUT, &[]]))
        .await
        .err()
        .unwrap_or_else(|| panic!("an empty descriptor must be refused"));
    assert_eq!(e.code(), GrpcCode::InvalidArgument);
    assert!(
        e.message().contains("descriptors[1] has no entries"),
        "{}",
        e.message()
    );

    // Nothing was counted, and the service still serves.
    let r = answer(&mut c, request("shop", &[CHECKOUT])).await;
    assert_eq!(r.statuses[0].limit_remaining, 2);
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(&m, "weir_ratelimit_invalid_requests_total"),
        3.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_is_ok_without_limits_and_labelled_unconfigured() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    for _ in 0..5 {
        let r = answer(&mut c, request("someone-else", &[CHECKOUT])).await;
        assert_eq!(code(r.overall_code), Code::Ok);
        assert_eq!(r.statuses[0].current_limit, None);
    }
    let m = http(&svc, "/metrics").await;
    assert_eq!(
        sample(
            &m,
            &format!("weir_ratelimit_decisions_total{{domain=\"{UNKNOWN_DOMAIN}\",code=\"ok\"}}")
        ),
        5.0,
        "{m}"
    );
    assert!(!m.contains("someone-else"), "{m}");
    // Nothing reached Redis.
    assert_eq!(s.redis.command("DBSIZE").as_deref(), Some(":0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_by_domain_and_code_and_time_requests() {
    let s = Setup::new();
    let svc = s.start(FailureMode::Deny).await;
    let mut c = client(&svc).await;
    for _ in 0..4 {
        answer(&mut c, request("shop", &[CHECKOUT])).await;
    }
    let m = http(&svc, "/metrics").await;
    let ok = "weir_ratelimit_decisions_total{domain=\"shop\",code=\"ok\"}";
    let over = "weir_ratelimit_decisions_total{domain=\"shop\",code=\"over_limit\"}";
    assert_eq!((sample(&m, ok), sample(&m, over)), (3.0, 1.0), "{m}");
    assert_eq!(
        sample(&m, "weir_ratelimit_request_duration_seconds_count"),
        4.0,
        "{m}"
    );
    assert_eq!(sample(&m, "weir_ratelimit_config_domains"), 1.0, "{m}");
    assert_eq!(sample(&m, "weir_ratelimit_redis_up"), 1.0, "{m}");
    assert_eq!(http(&svc, "/healthz").await, "ok\n");
}

/// The reference service's rule kinds, each as its README describes it: a block-list entry
/// (`requests_per_unit: 0`), `unlimited`, `shadow_mode`, `name` / `replaces`, a wildcard value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_services_rule_kinds_behave_as_it_documents() {
    let s = Setup::new();
    let path = s.dir.path().join("kinds.yaml");
    write_config(
        &path,
        "\
domain: kinds
descriptors:
  - key: remote_address
    value: 50.0.0.5
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: ldap
    rate_limit: { unlimited: true }
  - key: user
    value: soft
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: plan
    value: basic
    descriptors:
      - key: user
        rate_limit: { name: basic_user, unit: minute, requests_per_unit: 1 }
  - key: promo
    value: spring
    descriptors:
      - key: user
        rate_limit: { replaces: [ { name: basic_user } ], unit: minute, requests_per_unit: 3 }
  - key: path
    value: /api/*
    rate_limit: { unit: minute, requests_per_unit: 1 }
",
    );
    let svc = start(
        settings(&[path], &s.redis.url(), FailureMode::Deny),
        &s.clock,
    )
    .await;
    let mut c = client(&svc).await;
    let overall = |r: RateLimitResponse| code(r.overall_code);

    // Block-list: the first request is already over.
    let r = answer(
        &mut c,
        request("kinds", &[&[("remote_address", "50.0.0.5")]]),
    )
    .await;
    assert_eq!(overall(r), Code::OverLimit);
    let r = answer(
        &mut c,
        request("kinds", &[&[("remote_address", "50.0.0.6")]]),
    )
    .await;
    assert_eq!(overall(r), Code::Ok);

    // Unlimited: OK with the reference's remaining count, and never counted in Redis.
    for _ in 0..5 {
        let r = answer(&mut c, request("kinds", &[&[("ldap", "x")]])).await;
        assert_eq!(code(r.overall_code), Code::Ok);
        assert_eq!(r.statuses[0].limit_remaining, u32::MAX);
    }
    let keys = s.redis.command("KEYS kinds_ldap*").unwrap_or_default();
    assert!(keys.starts_with("*0"), "unlimited must not count: {keys}");

    // Shadow mode: counted and reported, never refused.
    for _ in 0..3 {
        let r = answer(&mut c, request("kinds", &[&[("user", "soft")]])).await;
        assert_eq!(code(r.overall_code), Code::Ok);
    }
    let key = format!("kinds_user_soft_{CLOCK_START}");
    assert_eq!(
        s.redis.command(&format!("GET {key}")).as_deref(),
        Some("$1")
    );
    let m = http(&svc, "/metrics").await;
    assert!(
        m.contains("code=\"shadow_over_limit\",domain=\"kinds\"")
            || m.contains("domain=\"kinds\",code=\"shadow_over_limit\""),
        "{m}"
    );

    // replaces: with the promo, the basic plan's 1/min is neither applied nor counted.
    let both: &[&[(&str, &str)]] = &[
        &[("plan", "basic"), ("user", "ann")],
        &[("promo", "spring"), ("user", "ann")],
    ];
    for _ in 0..3 {
        let r = answer(&mut c, request("kinds", both)).await;
        assert_eq!(code(r.overall_code), Code::Ok);
    }
    let r = answer(&mut c, request("kinds", both)).await;
    assert_eq!(code(r.overall_code), Code::OverLimit);
    assert_eq!(code(r.statuses[0].code), Code::Ok, "replaced");
    // The basic plan alone was never counted: its first request is still within 1/min.
    let r = answer(
        &mut c,
        request("kinds", &[&[("plan", "basic"), ("user", "ann")]]),
    )
    .await;
    assert_eq!(code(r.overall_code), Code::Ok);
    let r = answer(
        &mut c,
        request("kinds", &[&[("plan", "basic"), ("user", "ann")]]),
    )
    .await;
    assert_eq!(code(r.overall_code), Code::OverLimit);

    // A wildcard value: each value under it has its own 1/min.
    for p in ["/api/a", "/api/b"] {
        let r = answer(&mut c, request("kinds", &[&[("path", p)]])).await;
        assert_eq!(code(r.overall_code), Code::Ok, "{p}");
    }
    let r = answer(&mut c, request("kinds", &[&[("path", "/api/a")]])).await;
    assert_eq!(code(r.overall_code), Code::OverLimit);
    let r = answer(&mut c, request("kinds", &[&[("path", "/web")]])).await;
    assert_eq!(code(r.statuses[0].code), Code::Ok);
    assert_eq!(r.statuses[0].current_limit, None);
    svc.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
}
