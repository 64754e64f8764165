//! Environments: dyed requests reach their environment, everything else the baseline, and
//! wrong setups are refused.

use crate::istio::HttpRoute;
use crate::matcher::StringMatch;
use crate::tests::{assert_refused, shipped_compiled};

fn route<'a>(routes: &'a [HttpRoute], name: &str) -> &'a HttpRoute {
    routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

#[test]
fn dyed_requests_reach_their_environment_ahead_of_every_route() {
    let (_, out) = shipped_compiled("environments.yaml");
    let http = &out.virtual_service.spec.http;
    let names: Vec<&str> = http.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "env-feature-pay",
            "env-feature-pay-caller",
            "staff-canary",
            "default"
        ]
    );
    // Dynamic dyeing: the header names the environment.
    let dynamic = route(http, "env-feature-pay");
    assert_eq!(
        dynamic.matches[0].headers["x-env"],
        StringMatch::Exact("feature-pay".into())
    );
    assert_eq!(
        dynamic.route[0].destination.subset.as_deref(),
        Some("feature-pay")
    );
    // Static dyeing: a caller in the environment, with no header, goes there and the header
    // is set for the next hop.
    let caller = route(http, "env-feature-pay-caller");
    assert_eq!(caller.matches[0].source_labels["env"], "feature-pay");
    assert_eq!(
        caller.matches[0].without_headers["x-env"],
        StringMatch::Present
    );
    assert_eq!(
        caller.headers.as_ref().unwrap().request.set["x-env"],
        "feature-pay"
    );
    // One-hop headers are removed from the service's outbound requests; the others are not.
    let f = out
        .envoy_filters
        .iter()
        .find(|f| f.metadata.name == "payments-disposable-headers")
        .expect("the header clean-up filter");
    let p = &f.spec.config_patches[0];
    assert_eq!(
        (p.apply_to, p.match_.context, p.patch.operation),
        ("ROUTE_CONFIGURATION", "SIDECAR_OUTBOUND", "MERGE")
    );
    assert_eq!(
        p.patch.value["request_headers_to_remove"],
        serde_json::json!(["x-metadata-disposable-canary"])
    );
    assert_eq!(f.spec.workload_selector.labels["app"], "payments");
}

#[test]
fn without_routes_the_baseline_is_the_fallback() {
    let text = "apiVersion: weir.dev/v1alpha1
kind: TrafficPolicy
metadata: { name: pay }
spec:
  host: pay
  subsets:
    - { name: base, labels: { env: base } }
    - { name: f1, labels: { env: f1 } }
  environments: { label: env, baseline: base, header: x-env }
";
    let policy = crate::parse(text, "p.yaml").unwrap().remove(0);
    let out = crate::compile(&policy, "p.yaml").unwrap();
    let http = &out.virtual_service.spec.http;
    assert_eq!(http.len(), 3);
    let last = &http[2];
    assert!(last.matches.is_empty());
    assert_eq!(last.route[0].destination.subset.as_deref(), Some("base"));
    assert!(out.envoy_filters.is_empty(), "nothing to remove, no filter");
    let explained = crate::explain(&policy, &out);
    assert!(
        explained.contains("3. baseline: otherwise (the baseline) → base 100%"),
        "{explained}"
    );
    assert!(
        explained.contains("the application must copy x-env"),
        "{explained}"
    );
}

#[test]
fn wrong_environment_setups_are_refused() {
    let base = "apiVersion: weir.dev/v1alpha1
kind: TrafficPolicy
metadata: { name: pay }
spec:
  host: pay
  subsets:
    - { name: base, labels: { env: base } }
    - { name: f1, labels: { env: f1 } }
  routes:
    - name: all
      destinations: [ { subset: base } ]
  environments: { label: env, baseline: base, header: x-env }
";
    let cases = [
        (
            "[ { subset: base } ]",
            "[ { subset: f1 } ]",
            "spec.routes[0].destinations[0].subset = \"f1\": belongs to feature environment \"f1\"",
        ),
        (
            "    - name: all\n",
            "    - name: by-env\n      match: [ { source: header, key: x-env, op: equals, value: f1 } ]\n      destinations: [ { subset: base } ]\n    - name: all\n",
            "spec.routes[0].match[0].key = \"x-env\": the environment header is routed by spec.environments",
        ),
        (
            "{ env: base } }",
            "{ env: f1, v: a } }",
            "spec.subsets = \"f1\": feature environment \"f1\" has several subsets (base, f1)",
        ),
        (
            "baseline: base,",
            "baseline: main,",
            "spec.environments.baseline = \"main\": no subset belongs to the baseline",
        ),
        (
            "header: x-env",
            "header: X-Env",
            "spec.environments.header = \"X-Env\": a header name, in lower case",
        ),
        (
            "    - name: all\n",
            "    - name: env-f1\n      match: [ { source: method, op: equals, value: GET } ]\n      destinations: [ { subset: base } ]\n    - name: all\n",
            "spec.routes = \"env-f1\": this route name is taken by a generated environment route",
        ),
    ];
    assert_refused(base, &cases);
}
