//! Weir's fuzz properties: one function per parser of outside input.
//!
//! Each function takes the fuzzer's bytes, feeds them to a parser the way Weir reads that
//! input (a scenario file, `weir run`'s config with its environment overrides, a Prometheus
//! answer, an HAProxy runtime-API reply, a governance policy, Istio YAML, a model file, the
//! rate-limit configuration and its gRPC request, a stream of observations, a `ReadSplit`'s
//! spec, the admission proxy's config) and checks
//! properties of what comes out, panicking with a message when one fails. Not only "no panic":
//! what parses re-parses to the same value after it is written back, a Prometheus answer never
//! turns a missing or NaN sample into a value, every decision has valid weights, what the
//! governance compiler writes is accepted by the linter and the rate-limit service.
//!
//! The cargo-fuzz targets under `fuzz/` call these functions (libFuzzer drives them; see
//! `docs/reliability.md`), and this crate's tests replay the seed corpus `fuzz/corpus/<target>/`
//! and every crash found so far (`fuzz/regressions/<target>/`) through them on stable Rust, so
//! a fixed crash stays fixed without the nightly toolchain. [`TARGETS`] lists the targets.
//!
//! Hand-written here: only the properties; parsing is the crates' own, and structured inputs
//! come from the `arbitrary` crate.

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use weir_core::{Observation, PrimaryObs, ReplicaObs, RewardConfig, Signal, Slo, Unknown, Weights};

mod decide;
mod specs;

pub use decide::{decide, model};
pub use specs::{admit_proxy, readsplit};

/// A property function: panics when a property fails; returns whether the input got past the
/// parser to the properties (the corpus replay checks that the seeds do).
pub type Property = fn(&[u8]) -> bool;

/// A fuzz target: its name (the file under `fuzz/fuzz_targets/` and the corpus directory) and
/// its property function.
pub type Target = (&'static str, Property);

/// Every target.
pub const TARGETS: &[Target] = &[
    ("scenario", scenario),
    ("config", config),
    ("prometheus", prometheus),
    ("haproxy", haproxy),
    ("govern", govern),
    ("lint", lint),
    ("model", model),
    ("ratelimit_config", ratelimit_config),
    ("ratelimit_request", ratelimit_request),
    ("decide", decide),
    ("api", api),
    ("readsplit", readsplit),
    ("admit_proxy", admit_proxy),
];

/// The property function of the target `name`.
pub fn target(name: &str) -> Option<Property> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Scenario TOML: a scenario that loads writes back to TOML that loads to the same value, and
/// the simulator runs it (its first minutes) with valid weights and finite statistics.
pub fn scenario(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(s) = weir_sim::Scenario::from_toml_str(text, "fuzz.toml") else {
        return false;
    };
    let written =
        toml::to_string(&s).unwrap_or_else(|e| panic!("a loaded scenario does not serialise: {e}"));
    let again = weir_sim::Scenario::from_toml_str(&written, "fuzz.toml")
        .unwrap_or_else(|e| panic!("a written scenario does not load again: {e}\n{written}"));
    assert_eq!(s, again, "scenario round trip changed the value\n{written}");
    let mut sim = weir_sim::Simulator::new(&s, 1);
    // Bounded work per input: at most 200 ticks.
    for _ in 0..200 {
        if sim.done() {
            break;
        }
        let t = sim.step();
        let _ = t;
    }
    let obs = sim.observe();
    assert_eq!(obs.replicas.len(), s.replicas.len());
    sim.weights()
        .validate(s.replicas.len())
        .unwrap_or_else(|e| panic!("the simulator holds invalid weights: {e}"));
    true
}

/// `weir run`'s config with environment overrides: the input is `WEIR_…=value` lines, a line
/// `---`, then the TOML. A config that loads writes back to TOML that loads (with no
/// overrides) and writes the same text again.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (env_part, toml_part) = text.split_once("\n---\n").unwrap_or(("", text));
    let env: Vec<(String, String)> = env_part
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(cfg) = load_config(toml_part, env) else {
        return false;
    };
    let written =
        toml::to_string(&cfg).unwrap_or_else(|e| panic!("a loaded config does not serialise: {e}"));
    let again = load_config(&written, Vec::new())
        .unwrap_or_else(|e| panic!("a written config does not load again: {e}\n{written}"));
    let rewritten = toml::to_string(&again).expect("serialises once, serialises twice");
    assert_eq!(written, rewritten, "config round trip changed the value");
    true
}

fn load_config(
    text: &str,
    env: Vec<(String, String)>,
) -> Result<weir_config::WeirConfig, weir_config::ConfigError> {
    let cfg: weir_config::WeirConfig = weir_config::from_toml_str(text, "fuzz.toml", env)?;
    cfg.validate("fuzz.toml")?;
    Ok(cfg)
}

/// A Prometheus `/api/v1/query` answer (the first two bytes are the HTTP status): a replica's
/// signal has a value only when the answer has exactly that replica's series with a finite
/// sample equal to it: a missing series, `NaN` or an infinity is unknown, never 0.
pub fn prometheus(data: &[u8]) -> bool {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 500, rest),
        _ => return false,
    };
    let Ok(answer) = weir_prom::parse_response(status, body) else {
        return false;
    };
    let replicas = vec![
        weir_prom::ReplicaTarget::new("replica-1", "r1"),
        weir_prom::ReplicaTarget::new("replica-2", "r2"),
        weir_prom::ReplicaTarget::new("replica-3", ""),
    ];
    if let Ok(m) = weir_prom::replica_signals(&answer, "instance", &replicas) {
        let weir_prom::QueryData::Vector { series, .. } = &answer else {
            panic!("replica signals from a scalar answer");
        };
        assert_eq!(m.signals.len(), replicas.len());
        for (r, s) in replicas.iter().zip(&m.signals) {
            let matching: Vec<f64> = series
                .iter()
                .filter(|x| x.labels.get("instance").map(String::as_str) == Some(&r.label_value))
                .map(|x| x.value)
                .collect();
            check_signal(s);
            match (s.value, matching.as_slice()) {
                (Some(v), [one]) => assert!(
                    v == *one && v.is_finite(),
                    "{}: signal {v} from sample {one}",
                    r.name
                ),
                (Some(v), other) => panic!("{}: value {v} from series {other:?}", r.name),
                (None, [one]) => assert!(!one.is_finite(), "{}: sample {one} dropped", r.name),
                (None, _) => {}
            }
        }
    }
    if let Ok(s) = weir_prom::primary_signal(&answer) {
        check_signal(&s);
    }
    true
}

fn check_signal(s: &Signal) {
    match s.value {
        Some(v) => assert!(v.is_finite(), "a signal holds {v}"),
        None => assert!(s.unknown.is_some(), "an unknown signal without a reason"),
    }
}

/// HAProxy runtime-API replies (`get weight`, `show servers state`): what parses prints back
/// in HAProxy's format and parses to the same value.
pub fn haproxy(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let weight = weir_haproxy::parse_get_weight(text);
    if let Ok(w) = weight {
        let printed = format!("{} (initial {})\n", w.current, w.initial);
        assert_eq!(
            weir_haproxy::parse_get_weight(&printed).ok(),
            Some(w),
            "get weight round trip"
        );
    }
    let state = weir_haproxy::parse_servers_state(text);
    if let Ok(servers) = &state {
        for s in servers {
            assert!(
                !s.backend.is_empty() && !s.name.is_empty(),
                "a server without a name: {s:?}"
            );
        }
    }
    weight.is_ok() || state.is_ok()
}

/// Governance policies (YAML): every policy that parses either compiles or is refused with
/// problems that name the file; what compiles renders to YAML that the linter finds no error
/// in, and its rate-limit configuration is accepted by `weir ratelimit`.
pub fn govern(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(policies) = weir_govern::parse(text, "fuzz.yaml") else {
        return false;
    };
    for p in &policies {
        let out = match weir_govern::compile(p, "fuzz.yaml") {
            Ok(out) => out,
            Err(problems) => {
                assert!(
                    problems.0.iter().all(|p| p.origin == "fuzz.yaml"),
                    "a problem does not name the file: {problems:?}"
                );
                continue;
            }
        };
        let yaml = weir_govern::to_yaml(std::slice::from_ref(&out))
            .unwrap_or_else(|e| panic!("compiled objects do not render: {e}"));
        let errors: Vec<_> = weir_govern::lint::lint(&yaml, "compiled.yaml")
            .into_iter()
            .filter(|f| f.severity == weir_govern::lint::Severity::Error)
            .collect();
        assert!(
            errors.is_empty(),
            "the linter refuses the compiler's output: {errors:?}\n{yaml}"
        );
        if let Some(rl) = &out.ratelimit {
            let rendered = rl
                .to_yaml()
                .unwrap_or_else(|e| panic!("rate-limit config: {e}"));
            let snapshot = vec![(
                PathBuf::from("ratelimit.yaml"),
                rendered.clone().into_bytes(),
            )];
            if let Err(e) = weir_ratelimit::limits::parse(&snapshot) {
                panic!("weir ratelimit refuses what weir govern wrote: {e}\n{rendered}");
            }
        }
    }
    true
}

/// Istio YAML as `weir govern lint` reads it: findings name the file and a field.
pub fn lint(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    for f in weir_govern::lint::lint(text, "fuzz.yaml") {
        assert_eq!(f.origin, "fuzz.yaml", "{f:?}");
        assert!(!f.message.is_empty(), "a finding without a message: {f:?}");
    }
    true
}

/// The rate-limit service's configuration files: a configuration that loads answers every
/// descriptor with a limit of its own domain, counted under envoyproxy/ratelimit's key.
pub fn ratelimit_config(data: &[u8]) -> bool {
    let (descriptor, file) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let snapshot = vec![(PathBuf::from("fuzz.yaml"), file.to_vec())];
    let Ok(limits) = weir_ratelimit::limits::parse(&snapshot) else {
        return false;
    };
    let text = String::from_utf8_lossy(descriptor);
    let mut parts = text.split('|');
    let domain = parts.next().unwrap_or_default();
    let entries: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
    check_lookup(&limits, domain, &entries);
    true
}

fn check_lookup(limits: &weir_ratelimit::limits::Limits, domain: &str, entries: &[(&str, &str)]) {
    if let Some(m) = limits.find(domain, entries) {
        assert!(
            limits.has_domain(domain),
            "a limit for unknown domain {domain:?}"
        );
        assert!(!entries.is_empty(), "a limit for an empty descriptor");
        assert_eq!(m.key, weir_ratelimit::limits::counter_key(domain, entries));
        assert!(
            m.limit.unlimited || (m.limit.unit.is_some() && m.limit.requests_per_unit.is_some()),
            "a counted limit without unit or rate: {:?}",
            m.limit
        );
    }
}

/// A `RateLimitRequest` as Envoy sends it over gRPC (protobuf bytes), looked up in a fixed
/// configuration of the shape `weir govern compile` writes.
pub fn ratelimit_request(data: &[u8]) -> bool {
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    use prost::Message as _;
    let Ok(req) = RateLimitRequest::decode(data) else {
        return false;
    };
    let limits = request_limits();
    for d in &req.descriptors {
        let entries: Vec<(&str, &str)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        check_lookup(limits, &req.domain, &entries);
    }
    // What the service would encode back decodes to the same request.
    let bytes = req.encode_to_vec();
    assert_eq!(RateLimitRequest::decode(bytes.as_slice()).ok(), Some(req));
    true
}

const REQUEST_LIMITS: &str = "\
domain: shop
descriptors:
  - key: generic_key
    value: checkout
    rate_limit: { unit: second, requests_per_unit: 10 }
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 100 }
    descriptors:
      - key: path
        value: /api
        rate_limit: { unit: second, requests_per_unit: 5 }
  - key: header_match
    value: internal
    rate_limit: { unlimited: true }
";

fn request_limits() -> &'static weir_ratelimit::limits::Limits {
    static LIMITS: OnceLock<weir_ratelimit::limits::Limits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let snapshot = vec![(
            PathBuf::from("shop.yaml"),
            REQUEST_LIMITS.as_bytes().to_vec(),
        )];
        weir_ratelimit::limits::parse(&snapshot).expect("the fixed configuration loads")
    })
}

/// The HTTP API's JSON bodies (`POST /api/override`, `POST /api/mode`; the first byte picks
/// the cluster's replica count, 0 for unknown): an override that parses has weights valid for
/// that many replicas and a finite, positive duration; a refusal names a field or the body.
pub fn api(data: &[u8]) -> bool {
    let Some((first, body)) = data.split_first() else {
        return false;
    };
    let replicas = usize::from(first % 6);
    let known = (replicas > 0).then_some(replicas);
    let parsed = weir_api::parse_override(body, known);
    match &parsed {
        Ok(weir_edge::Command::Override {
            weights,
            duration_s,
        }) => {
            weights
                .validate(known.unwrap_or(weights.replicas.len()))
                .unwrap_or_else(|e| {
                    panic!("an accepted override has invalid weights {weights}: {e}")
                });
            assert!(
                duration_s.is_finite() && *duration_s > 0.0,
                "duration {duration_s}"
            );
        }
        Ok(other) => panic!("an override body parsed as {other:?}"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let mode = weir_api::parse_mode(body);
    if let Ok(c) = &mode {
        assert!(matches!(c, weir_edge::Command::SetMode { .. }), "{c:?}");
    }
    parsed.is_ok() || mode.is_ok()
}

/// A signal as a scrape might deliver it: a value (any f64, NaN and infinities included, as
/// an observation read back from a file may carry), unknown, or stale.
fn signal(u: &mut Unstructured<'_>) -> arbitrary::Result<Signal> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Signal::unknown(Unknown::NoSeries),
        1 => Signal::unknown(Unknown::SourceError),
        2 => Signal {
            value: Some(f64::arbitrary(u)?),
            age_s: Some(f64::arbitrary(u)?),
            unknown: None,
        },
        _ => Signal::aged(
            f64::from(u.int_in_range(0..=4000u16)?) / 20.0,
            f64::from(u8::arbitrary(u)?),
        ),
    })
}

/// An observation of `n` replicas at `at_s`.
fn observation(u: &mut Unstructured<'_>, at_s: f64, n: usize) -> arbitrary::Result<Observation> {
    let mut replicas = Vec::with_capacity(n);
    for i in 0..n {
        replicas.push(ReplicaObs {
            name: format!("replica-{}", i + 1),
            up: Option::<bool>::arbitrary(u)?,
            lag_s: signal(u)?,
            read_qps: signal(u)?,
            read_p99_ms: signal(u)?,
        });
    }
    Ok(Observation {
        at_s,
        primary: PrimaryObs {
            cpu: signal(u)?,
            read_qps: signal(u)?,
            write_qps: signal(u)?,
            read_p99_ms: signal(u)?,
        },
        replicas,
    })
}

/// The shield and reward every decision target uses: the defaults, as `weir run` has them.
fn defaults() -> (Slo, RewardConfig) {
    (Slo::default(), RewardConfig::default())
}

/// Checks a decision's weights: valid for `n` replicas, and no weight on a replica reported
/// down while another replica is up with a known lag within the hard limit.
fn check_weights(obs: &Observation, w: &Weights, n: usize, slo: &Slo) {
    w.validate(n)
        .unwrap_or_else(|e| panic!("invalid weights {w}: {e}"));
    let healthy = |r: &ReplicaObs| {
        r.up != Some(false)
            && r.lag_s
                .value
                .is_some_and(|l| l.is_finite() && l <= slo.hard_staleness_s)
            && r.lag_s.age_s.is_some_and(|a| a.is_finite() && a <= 45.0)
    };
    if obs.replicas.iter().any(healthy) {
        for (i, r) in obs.replicas.iter().enumerate() {
            if r.up == Some(false) {
                assert_eq!(
                    w.replicas[i],
                    0,
                    "replica-{} is down and gets weight in {w}",
                    i + 1
                );
            }
        }
    }
}
