//! The reconciler against a fake API server (kube-rs style, `tower_test`): what it writes to
//! the VirtualService, the ReadSplit's status, the state ConfigMap and events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::{
    Canned, FakeApiServer, cm_path, readsplit_json, rs_path, saved_state, virtual_service, vs_path,
};
use weir_operator::ReadSplit;
use weir_operator::reconcile::{Context, reconcile};

/// Controller time: starts at 1 800 000 000 s (2027-01-15T08:00:00Z); tests move it.
#[derive(Clone, Default)]
struct Clock(Arc<std::sync::atomic::AtomicI64>);

impl Clock {
    fn advance(&self, s: i64) {
        self.0.fetch_add(s, std::sync::atomic::Ordering::SeqCst);
    }
    fn func(&self) -> Arc<dyn Fn() -> Timestamp + Send + Sync> {
        let c = self.0.clone();
        Arc::new(move || {
            Timestamp::from_second(1_800_000_000 + c.load(std::sync::atomic::Ordering::SeqCst))
                .unwrap()
        })
    }
}

/// Puts the ReadSplit in the fake server and returns it as the controller would see it.
fn create(api: &FakeApiServer, object: Value) -> Arc<ReadSplit> {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    api.put(&rs_path(&ns, &name), object);
    current(api, &ns, &name)
}

/// The ReadSplit as stored now (status included).
fn current(api: &FakeApiServer, ns: &str, name: &str) -> Arc<ReadSplit> {
    Arc::new(serde_json::from_value(api.get(&rs_path(ns, name)).unwrap()).unwrap())
}

fn route_weights(api: &FakeApiServer, ns: &str, name: &str) -> Vec<u64> {
    api.get(&vs_path(ns, name)).unwrap()["spec"]["tcp"][0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["weight"].as_u64().unwrap_or(0))
        .collect()
}

fn condition(api: &FakeApiServer, ns: &str, name: &str, type_: &str) -> (String, String, String) {
    support::condition_of(&api.get(&rs_path(ns, name)).unwrap(), type_)
}

fn context(api: &FakeApiServer, canned: &Canned) -> Arc<Context<Canned>> {
    context_with(api, canned, &Clock::default())
}

fn context_with(api: &FakeApiServer, canned: &Canned, clock: &Clock) -> Arc<Context<Canned>> {
    let mut ctx = Context::new(
        api.client(),
        canned.clone(),
        clock.func(),
        Some("test-pod".into()),
    );
    ctx.save_every = 1;
    Arc::new(ctx)
}

#[tokio::test]
async fn a_lagging_replica_is_taken_out_of_the_route_with_status_event_and_state() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let ctx = context(&api, &canned);

    let action = reconcile(rs, ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(15)));

    // replica-1 is past the 30-s hard limit: no reads; only the TCP route changed.
    let w = route_weights(&api, "shop", "mysql");
    assert_eq!(w[1], 0, "{w:?}");
    assert_eq!(w.iter().sum::<u64>(), 100);
    let vs = api.get(&vs_path("shop", "mysql")).unwrap();
    assert_eq!(
        vs["spec"]["http"],
        virtual_service("shop", "mysql")["spec"]["http"]
    );

    let rs = api.get(&rs_path("shop", "orders")).unwrap();
    let st = &rs["status"];
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(st["weights"]["replica-1"], 0);
    assert_eq!(st["weightsSummary"], format!("P{}/{}/{}", w[0], w[1], w[2]));
    assert_eq!(st["lastObservation"]["maxLag"], "42.0s");
    assert_eq!(st["lastObservation"]["unhealthy"], json!(["replica-1"]));
    assert_eq!(st["lastDecisionTime"], "2027-01-15T08:00:00Z");
    assert_eq!(condition(&api, "shop", "orders", "Ready").0, "True");
    assert_eq!(condition(&api, "shop", "orders", "Ready").1, "Governing");
    assert_eq!(condition(&api, "shop", "orders", "Degraded").0, "False");

    // One event for the change, naming the reason.
    let events = api.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "WeightsChanged");
    assert_eq!(events[0]["regarding"]["name"], "orders");
    assert!(
        events[0]["note"].as_str().unwrap().contains("replica-1"),
        "{}",
        events[0]
    );

    // The state ConfigMap is owned by the ReadSplit and holds the weights in force.
    let cm = api.get(&cm_path("shop", "weir-state-orders")).unwrap();
    assert_eq!(
        cm["metadata"]["ownerReferences"][0]["uid"],
        "uid-shop-orders"
    );
    assert_eq!(cm["metadata"]["ownerReferences"][0]["controller"], true);
    let state = saved_state(&api, "shop", "orders").unwrap();
    assert_eq!(state["decisions"], 1);
    assert_eq!(state["inForce"]["replicas"][0], 0);
    assert_eq!(ctx.governed_count(), 1);
    assert!(ctx.metrics.encode().contains(
        "weir_operator_weight{namespace=\"shop\",readsplit=\"orders\",destination=\"replica-1\"} 0"
    ));
}

#[tokio::test]
async fn a_missing_virtual_service_degrades_with_route_not_found_and_writes_nothing() {
    let api = support::cluster_api();
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[0.2, 0.3]));
    let ctx = context(&api, &canned);
    reconcile(rs, ctx).await.unwrap();
    let (status, reason, message) = condition(&api, "shop", "orders", "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "RouteNotFound")
    );
    assert!(message.contains("shop/mysql"), "{message}");
    assert_eq!(condition(&api, "shop", "orders", "Ready").0, "False");
    assert_eq!(api.count(&Method::PATCH, &vs_path("shop", "mysql")), 0);
}

#[tokio::test]
async fn a_conflict_is_retried_from_a_fresh_read() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    api.force(&vs_path("shop", "mysql"), &[409]);
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    reconcile(rs, context(&api, &canned)).await.unwrap();
    assert_eq!(api.count(&Method::PATCH, &vs_path("shop", "mysql")), 2);
    assert_eq!(route_weights(&api, "shop", "mysql")[1], 0);
    assert_eq!(condition(&api, "shop", "orders", "Ready").0, "True");
}

#[tokio::test]
async fn a_conflict_that_persists_degrades_with_conflict() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    api.force(&vs_path("shop", "mysql"), &[409, 409, 409, 409, 409]);
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    reconcile(rs, context(&api, &canned)).await.unwrap();
    assert_eq!(condition(&api, "shop", "orders", "Degraded").1, "Conflict");
    assert_eq!(
        route_weights(&api, "shop", "mysql"),
        [0, 50, 50],
        "unchanged"
    );
}

#[tokio::test]
async fn failed_actuations_back_off_exponentially_like_weir_run() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    // The API server answers the first four patches with 503.
    api.force(&vs_path("shop", "mysql"), &[503, 503, 503, 503]);
    create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);
    let mut attempted = Vec::new();
    let mut messages = Vec::new();
    for _ in 0..9 {
        let patches = api.count(&Method::PATCH, &vs_path("shop", "mysql"));
        reconcile(current(&api, "shop", "orders"), ctx.clone())
            .await
            .unwrap();
        attempted.push(api.count(&Method::PATCH, &vs_path("shop", "mysql")) > patches);
        let (status, reason, message) = condition(&api, "shop", "orders", "Degraded");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "ActuationFailed")
        );
        messages.push(message);
        clock.advance(15);
    }
    // The same schedule as `weir run` (weir-controller's
    // `actuation_retries_back_off_exponentially`): attempts at decisions 0, 1, 3 and 7 (waits
    // of 1, 2, 4 intervals), the rest skipped while backing off.
    let at: Vec<usize> = (0..9).filter(|&i| attempted[i]).collect();
    assert_eq!(at, [0, 1, 3, 7], "{attempted:?}");
    for i in [2, 4, 5, 6, 8] {
        assert!(messages[i].contains("backing off"), "{i}: {}", messages[i]);
        assert!(messages[i].contains("503"), "{i}: {}", messages[i]);
    }
    assert_eq!(
        route_weights(&api, "shop", "mysql"),
        [0, 50, 50],
        "nothing got through"
    );
    // Nothing changed, so no event and the saved weights are still the old ones.
    assert!(api.events().is_empty());
    assert_eq!(
        saved_state(&api, "shop", "orders").unwrap()["inForce"]["replicas"],
        json!([50, 50])
    );
}

#[tokio::test]
async fn two_readsplits_stay_independent() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    api.put(
        &vs_path("billing", "mysql"),
        virtual_service("billing", "mysql"),
    );
    let a = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let b = create(
        &api,
        readsplit_json("billing", "ledger", "mysql", "Enforce"),
    );
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    canned.set("billing/ledger", Some(&[0.2, 45.0]));
    let ctx = context(&api, &canned);
    reconcile(a, ctx.clone()).await.unwrap();
    reconcile(b, ctx.clone()).await.unwrap();
    assert_eq!(route_weights(&api, "shop", "mysql")[1], 0);
    assert!(route_weights(&api, "shop", "mysql")[2] > 0);
    assert_eq!(route_weights(&api, "billing", "mysql")[2], 0);
    assert!(route_weights(&api, "billing", "mysql")[1] > 0);
    assert_eq!(ctx.governed_count(), 2);
    assert!(api.get(&cm_path("shop", "weir-state-orders")).is_some());
    assert!(api.get(&cm_path("billing", "weir-state-ledger")).is_some());
}

#[tokio::test]
async fn a_deleted_readsplit_is_no_longer_governed_and_nothing_is_written() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[0.2, 0.3]));
    let ctx = context(&api, &canned);
    reconcile(rs, ctx.clone()).await.unwrap();
    assert_eq!(ctx.governed_count(), 1);

    let mut deleting = readsplit_json("shop", "orders", "mysql", "Enforce");
    deleting["metadata"]["deletionTimestamp"] = json!("2027-01-15T08:01:00Z");
    let deleting = create(&api, deleting);
    api.clear_requests();
    let action = reconcile(deleting, ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(ctx.governed_count(), 0);
    assert!(api.requests().is_empty(), "no requests while deleting");
    assert!(!ctx.metrics.encode().contains("readsplit=\"orders\""));
}

#[tokio::test]
async fn state_survives_a_restart_through_the_configmap() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    reconcile(rs.clone(), context(&api, &canned)).await.unwrap();
    let before = route_weights(&api, "shop", "mysql");

    // A new operator instance (restart or new leader): it starts from the saved weights and
    // count, not from a fresh read of the route.
    let restarted = context(&api, &canned);
    reconcile(current(&api, "shop", "orders"), restarted)
        .await
        .unwrap();
    let cm = api.get(&cm_path("shop", "weir-state-orders")).unwrap();
    let state = saved_state(&api, "shop", "orders").unwrap();
    assert_eq!(state["decisions"], 2, "the count continues");
    assert_eq!(route_weights(&api, "shop", "mysql"), before);

    // A corrupt state is not half-read: the operator starts afresh and overwrites it.
    let mut cm = cm.clone();
    cm["data"]["state.json"] = json!("{not json");
    api.put(&cm_path("shop", "weir-state-orders"), cm);
    reconcile(current(&api, "shop", "orders"), context(&api, &canned))
        .await
        .unwrap();
    let state = saved_state(&api, "shop", "orders").unwrap();
    assert_eq!(state["decisions"], 1);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_else_happens() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let mut bad = readsplit_json("shop", "orders", "mysql", "Enforce");
    bad["spec"]["route"] = json!({ "tcpPort": 3306, "httpName": "reads" });
    let rs = create(&api, bad);
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let ctx = context(&api, &canned);
    let action = reconcile(rs, ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let (status, reason, message) = condition(&api, "shop", "orders", "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(message.starts_with("spec.route:"), "{message}");
    assert_eq!(api.count(&Method::GET, &vs_path("shop", "mysql")), 0);
    assert_eq!(ctx.governed_count(), 0);
}

#[tokio::test]
async fn unreadable_metrics_hold_the_weights_and_say_so() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", None);
    reconcile(rs, context(&api, &canned)).await.unwrap();
    let (status, reason, message) = condition(&api, "shop", "orders", "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "MetricsUnavailable")
    );
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(route_weights(&api, "shop", "mysql"), [0, 50, 50]);
    assert_eq!(api.count(&Method::PATCH, &vs_path("shop", "mysql")), 0);
}

#[tokio::test]
async fn shadow_mode_decides_and_reports_but_never_patches() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Shadow"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    reconcile(rs, context(&api, &canned)).await.unwrap();
    assert_eq!(api.count(&Method::PATCH, &vs_path("shop", "mysql")), 0);
    let rs = api.get(&rs_path("shop", "orders")).unwrap();
    assert_eq!(
        rs["status"]["weights"]["replica-1"], 0,
        "the decision is reported"
    );
    assert_eq!(condition(&api, "shop", "orders", "Ready").1, "Shadow");
}

#[tokio::test]
async fn one_decision_per_interval_whatever_triggers_the_reconciliation() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[0.2, 0.3]));
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);
    reconcile(rs, ctx.clone()).await.unwrap();
    let status_writes = api.count(
        &Method::PATCH,
        &format!("{}/status", rs_path("shop", "orders")),
    );
    assert_eq!(status_writes, 1);

    // The watch reports our own status patch 4 s later: no new decision, and the next one is
    // due when the 15-s interval is up.
    clock.advance(4);
    let action = reconcile(current(&api, "shop", "orders"), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(11)));
    assert_eq!(
        api.count(
            &Method::PATCH,
            &format!("{}/status", rs_path("shop", "orders"))
        ),
        status_writes
    );

    clock.advance(11);
    reconcile(current(&api, "shop", "orders"), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        api.count(
            &Method::PATCH,
            &format!("{}/status", rs_path("shop", "orders"))
        ),
        status_writes + 1
    );

    // A spec change (new generation) is acted on at once.
    let mut changed = api.get(&rs_path("shop", "orders")).unwrap();
    changed["spec"]["mode"] = json!("Shadow");
    api.put(&rs_path("shop", "orders"), changed);
    clock.advance(1);
    reconcile(current(&api, "shop", "orders"), ctx)
        .await
        .unwrap();
    assert_eq!(condition(&api, "shop", "orders", "Ready").1, "Shadow");
    let rs = api.get(&rs_path("shop", "orders")).unwrap();
    assert_eq!(rs["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn metrics_gone_for_too_long_engage_the_fail_safe_and_say_so() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let canned = Canned::default();
    canned.set("shop/orders", None);
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);
    let mut reasons = Vec::new();
    for _ in 0..6 {
        reconcile(current(&api, "shop", "orders"), ctx.clone())
            .await
            .unwrap();
        reasons.push(condition(&api, "shop", "orders", "Degraded").1);
        clock.advance(15);
    }
    // Held first (MetricsUnavailable), then, after shield.failSafeAfter (4) stale
    // intervals, the fail-safe.
    assert_eq!(reasons[0], "MetricsUnavailable");
    assert_eq!(reasons.last().unwrap(), "ShieldFailSafe", "{reasons:?}");
    let (_, _, message) = condition(&api, "shop", "orders", "Degraded");
    assert!(message.contains("connection refused"), "{message}");
}

fn queries_config_map(ns: &str, queries: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "weir-queries", "namespace": ns },
        "data": { "queries.json": queries }
    })
}

#[tokio::test]
async fn shared_queries_come_from_the_queries_from_configmap_and_follow_its_edits() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    api.put(
        &cm_path("shop", "weir-queries"),
        queries_config_map(
            "shop",
            r#"{"replicaLagSeconds": {"query": "max by (pod) (shared_lag_seconds)", "replicaLabel": "pod"},
                "primaryCpu": {"query": "shared_cpu"}}"#,
        ),
    );
    let mut object = readsplit_json("shop", "orders", "mysql", "Enforce");
    object["spec"]["prometheus"]["queriesFrom"] = json!("weir-queries");
    object["spec"]["prometheus"]["queries"] = json!({ "primaryCpu": { "query": "own_cpu" } });
    let rs = create(&api, object);
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);

    reconcile(rs.clone(), ctx.clone()).await.unwrap();
    let config = canned.config("shop/orders").unwrap();
    assert_eq!(
        config.queries.replica_lag_s.query,
        "max by (pod) (shared_lag_seconds)"
    );
    assert_eq!(
        config.queries.replica_lag_s.replica_label.as_deref(),
        Some("pod")
    );
    // The ReadSplit's own query wins over the shared one; the rest are Weir's defaults.
    assert_eq!(config.queries.primary_cpu.query, "own_cpu");
    let defaults = weir_prom::Queries::default();
    assert_eq!(config.queries.replica_up, defaults.replica_up);
    assert_eq!(route_weights(&api, "shop", "mysql")[1], 0);

    // An edit to the shared queries reaches the ReadSplit at the next check, without
    // starting it over.
    api.put(
        &cm_path("shop", "weir-queries"),
        queries_config_map(
            "shop",
            r#"{"replicaLagSeconds": {"query": "v2_lag", "replicaLabel": "pod"}}"#,
        ),
    );
    clock.advance(15);
    reconcile(rs.clone(), ctx.clone()).await.unwrap();
    assert_eq!(
        canned.lag_query("shop/orders"),
        "max by (pod) (shared_lag_seconds)",
        "read again before the check was due"
    );
    clock.advance(60);
    reconcile(rs.clone(), ctx.clone()).await.unwrap();
    let config = canned.config("shop/orders").unwrap();
    assert_eq!(config.queries.replica_lag_s.query, "v2_lag");
    assert_eq!(config.queries.primary_cpu.query, "own_cpu");
    let state = saved_state(&api, "shop", "orders").unwrap();
    assert_eq!(state["decisions"], 3, "the ReadSplit was started over");
    let (status, ..) = condition(&api, "shop", "orders", "Ready");
    assert_eq!(status, "True");
}

#[tokio::test]
async fn a_missing_or_bad_queries_from_configmap_is_reported_and_looked_for_again() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let mut object = readsplit_json("shop", "orders", "mysql", "Enforce");
    object["spec"]["prometheus"]["queriesFrom"] = json!("weir-queries");
    let rs = create(&api, object);
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let ctx = context(&api, &canned);
    let recheck = Action::requeue(weir_operator::reconcile::SHARED_QUERIES_RECHECK);

    let cases = [
        (
            None,
            "spec.prometheus.queriesFrom: ConfigMap shop/weir-queries not found",
        ),
        (
            Some("{ not json"),
            "spec.prometheus.queriesFrom: ConfigMap shop/weir-queries queries.json: ",
        ),
        (
            Some(r#"{"replicaLagg": {"query": "x"}}"#),
            "spec.prometheus.queriesFrom.replicaLagg: unknown signal",
        ),
    ];
    for (queries, expected) in cases {
        if let Some(q) = queries {
            api.put(
                &cm_path("shop", "weir-queries"),
                queries_config_map("shop", q),
            );
        }
        assert_eq!(reconcile(rs.clone(), ctx.clone()).await.unwrap(), recheck);
        let (status, reason, message) = condition(&api, "shop", "orders", "Degraded");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(api.count(&Method::PATCH, &vs_path("shop", "mysql")), 0);
        assert_eq!(ctx.governed_count(), 0);
    }

    // Fixed: it governs, with no change to the ReadSplit.
    api.put(
        &cm_path("shop", "weir-queries"),
        queries_config_map("shop", r#"{"replicaLagSeconds": {"query": "fixed_lag"}}"#),
    );
    // A per-replica query without its label is named as the user wrote it.
    api.put(
        &cm_path("shop", "weir-queries"),
        queries_config_map("shop", r#"{"replicaLagSeconds": {"query": "fixed_lag"}}"#),
    );
    reconcile(rs.clone(), ctx.clone()).await.unwrap();
    let (_, _, message) = condition(&api, "shop", "orders", "Degraded");
    assert!(
        message.starts_with("spec.prometheus.queriesFrom.replicaLagSeconds.replicaLabel: "),
        "{message}"
    );
    api.put(
        &cm_path("shop", "weir-queries"),
        queries_config_map(
            "shop",
            r#"{"replicaLagSeconds": {"query": "fixed_lag", "replicaLabel": "pod"}}"#,
        ),
    );
    reconcile(rs, ctx.clone()).await.unwrap();
    assert_eq!(canned.lag_query("shop/orders"), "fixed_lag");
    assert_eq!(route_weights(&api, "shop", "mysql")[1], 0);
    let (status, reason, _) = condition(&api, "shop", "orders", "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "AsExpected"));
}

#[tokio::test]
async fn an_online_learned_table_is_saved_compressed_and_a_restart_learns_on_from_it() {
    let api = support::cluster_api();
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    let model = include_str!("../../../models/qlearn.json");
    api.put(
        &cm_path("shop", "weir-model"),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "weir-model", "namespace": "shop" },
            "data": { "model.json": model }
        }),
    );
    let mut object = readsplit_json("shop", "orders", "mysql", "Enforce");
    object["spec"]["policy"] =
        json!({ "kind": "qlearn", "modelConfigMap": "weir-model", "onlineLearning": true });
    let rs = create(&api, object);
    let canned = Canned::default();
    canned.set("shop/orders", Some(&[42.0, 0.3]));
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);
    for _ in 0..3 {
        reconcile(rs.clone(), ctx.clone()).await.unwrap();
        clock.advance(15);
    }

    let stored = api.get(&cm_path("shop", "weir-state-orders")).unwrap();
    assert!(stored["data"].get("policy.json").is_none(), "{stored}");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(stored).unwrap();
    let gz = &cm.binary_data.unwrap()["policy.json.gz"].0;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let table: Value = serde_json::from_str(&text).unwrap();
    assert!(table.is_object());
    assert!(
        gz.len() * 2 < text.len(),
        "{} bytes compressed to {}",
        text.len(),
        gz.len()
    );

    // A new leader starts from the learned table, not from the model (which is gone).
    api.remove(&cm_path("shop", "weir-model"));
    let restarted = context_with(&api, &canned, &clock);
    reconcile(current(&api, "shop", "orders"), restarted.clone())
        .await
        .unwrap();
    assert_eq!(restarted.governed_count(), 1);
    let (status, reason, _) = condition(&api, "shop", "orders", "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Governing"));
    // Without online learning, the model is required again.
    let mut object = api.get(&rs_path("shop", "orders")).unwrap();
    object["spec"]["policy"]["onlineLearning"] = json!(false);
    api.put(&rs_path("shop", "orders"), object);
    reconcile(current(&api, "shop", "orders"), restarted)
        .await
        .unwrap();
    let (_, reason, message) = condition(&api, "shop", "orders", "Degraded");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("weir-model not found"), "{message}");
}

#[tokio::test]
async fn a_network_model_is_read_from_binary_data_and_no_configmap_means_the_shipped_model() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;
    let api = support::cluster_api();
    let model_cm = |bytes: Vec<u8>| {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("weir-dqn".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            binary_data: Some([("model.safetensors".to_string(), ByteString(bytes))].into()),
            ..ConfigMap::default()
        };
        let mut v = serde_json::to_value(cm).unwrap();
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("ConfigMap");
        v
    };
    let canned = Canned::default();
    let clock = Clock::default();
    let ctx = context_with(&api, &canned, &clock);
    let cases = [
        (
            "net",
            json!({ "kind": "dqn", "modelConfigMap": "weir-dqn" }),
        ),
        ("table", json!({ "kind": "qlearn" })),
        ("shipped-net", json!({ "kind": "dqn" })),
    ];
    api.put(
        &cm_path("shop", "weir-dqn"),
        model_cm(include_bytes!("../../../models/dqn.safetensors").to_vec()),
    );
    for (name, policy) in &cases {
        api.put(&vs_path("shop", name), virtual_service("shop", name));
        let mut object = readsplit_json("shop", name, name, "Enforce");
        object["spec"]["policy"] = policy.clone();
        let rs = create(&api, object);
        canned.set(&format!("shop/{name}"), Some(&[42.0, 0.3]));
        reconcile(rs, ctx.clone()).await.unwrap();
        let (status, reason, message) = condition(&api, "shop", name, "Ready");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Governing"),
            "{name}: {message}"
        );
    }
    assert_eq!(ctx.governed_count(), 3);

    // A damaged network model is an invalid spec that names the ConfigMap and its key.
    api.put(
        &cm_path("shop", "weir-dqn"),
        model_cm(b"not safetensors".to_vec()),
    );
    let mut object = readsplit_json("shop", "broken", "mysql", "Enforce");
    object["spec"]["policy"] = json!({ "kind": "dqn", "modelConfigMap": "weir-dqn" });
    api.put(&vs_path("shop", "mysql"), virtual_service("shop", "mysql"));
    reconcile(create(&api, object), ctx.clone()).await.unwrap();
    let (_, reason, message) = condition(&api, "shop", "broken", "Degraded");
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("shop/weir-dqn model.safetensors"),
        "{message}"
    );
}

#[tokio::test]
async fn the_state_configmap_drops_what_a_save_no_longer_writes() {
    use weir_operator::state::{self, SaveOutcome, SavedState};
    let api = support::cluster_api();
    let rs = create(&api, readsplit_json("shop", "orders", "mysql", "Enforce"));
    let client = api.client();
    // What an earlier build wrote under the same field manager: the uncompressed table.
    let legacy = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "weir-state-orders", "namespace": "shop" },
        "data": { "state.json": "{}", "policy.json": "{\"table\": []}" }
    });
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "shop");
    cms.patch(
        "weir-state-orders",
        &kube::api::PatchParams::apply(weir_operator::MANAGER).force(),
        &kube::api::Patch::Apply(&legacy),
    )
    .await
    .unwrap();
    let mut saved = SavedState {
        decisions: 3,
        in_force: weir_core::Weights::even(2),
        policy: Some(b"{\"a learned table\": 1}".to_vec()),
    };
    assert_eq!(
        state::save(&client, &rs, &saved).await.unwrap(),
        SaveOutcome::Saved
    );
    let cm = api.get(&cm_path("shop", "weir-state-orders")).unwrap();
    assert!(cm["data"].get("policy.json").is_none(), "{cm}");
    assert!(cm["binaryData"].get("policy.json.gz").is_some(), "{cm}");
    // Learning switched off: the next save leaves the table out, and the apply removes it.
    saved.policy = None;
    assert_eq!(
        state::save(&client, &rs, &saved).await.unwrap(),
        SaveOutcome::Saved
    );
    let cm = api.get(&cm_path("shop", "weir-state-orders")).unwrap();
    assert!(cm.get("binaryData").is_none(), "{cm}");
    let loaded = state::load(&client, "shop", "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((loaded.decisions, loaded.policy), (3, None));
}
