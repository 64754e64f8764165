//! Properties of the two inputs that reach Weir from outside its own files: a `ReadSplit`'s
//! spec as the Kubernetes API server hands it to the operator, and the admission proxy's
//! config file.

use std::collections::BTreeMap;
use std::path::Path;

use weir_admit::ControllerSpec;
use weir_admit_proxy::{Proxy, ProxyConfig};
use weir_operator::ReadSplitSpec;

/// A `ReadSplit` spec (JSON, as the API server stores it): what parses serialises back to
/// JSON that parses to the same value; checking it never panics and names a field under
/// `spec` when it refuses; a spec it accepts has one replica per replica entry, in order, and
/// a shield and SLO that pass their own validation, so the operator never runs a ReadSplit
/// with settings `weir run` would refuse.
pub fn readsplit(data: &[u8]) -> bool {
    let Ok(spec) = serde_json::from_slice::<ReadSplitSpec>(data) else {
        return false;
    };
    let json = serde_json::to_value(&spec)
        .unwrap_or_else(|e| panic!("a parsed ReadSplit spec does not serialise: {e}"));
    let again: ReadSplitSpec = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("a written ReadSplit spec does not parse: {e}\n{json}"));
    assert_eq!(spec, again, "ReadSplit spec round trip changed the value");
    match spec.plan("fuzz", &BTreeMap::new()) {
        Ok(plan) => {
            let names: Vec<&str> = spec.replicas.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(plan.replicas, names, "the plan's replicas are the spec's");
            plan.shield
                .validate(plan.replicas.len())
                .unwrap_or_else(|e| panic!("an accepted spec has an invalid shield: {e}"));
            plan.slo
                .validate()
                .unwrap_or_else(|e| panic!("an accepted spec has an invalid SLO: {e}"));
        }
        Err(e) => assert!(
            e.field.starts_with("spec"),
            "a refusal names a field under spec: {e}"
        ),
    }
    true
}

/// The admission proxy's config file (TOML): parsing and building never panic; a refusal
/// names the file; a proxy that builds has an `http://` upstream and a controller whose limit
/// lets at least one request through. A `qlearn` table file named in the input is not read
/// (the fuzzer would name any file on the machine).
pub fn admit_proxy(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let path = Path::new("admit.toml");
    let cfg = match ProxyConfig::parse(path, text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(e.to_string().contains("admit.toml"), "{e}");
            return false;
        }
    };
    if matches!(&cfg.controller, ControllerSpec::Qlearn(q) if q.table.is_some()) {
        return true;
    }
    match Proxy::build(&cfg, path) {
        Ok(_) => {
            let upstream = cfg
                .upstream_uri()
                .unwrap_or_else(|e| panic!("a proxy built with an upstream it refuses: {e}"));
            assert!(upstream.starts_with("http://"), "{upstream}");
            let controller = cfg
                .controller
                .build(None)
                .unwrap_or_else(|e| panic!("the controller built once, not twice: {e}"));
            assert!(controller.limit() >= 1, "a limit of 0 admits nothing");
        }
        Err(e) => assert!(e.to_string().contains("admit.toml"), "{e}"),
    }
    true
}
