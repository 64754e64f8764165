//! Whole policies: the shipped examples compile to the committed YAML (insta snapshots), and
//! bad files are refused with the file, the field and the value.

use std::path::PathBuf;

use crate::{Problems, compile, explain, parse, to_yaml};

pub(crate) fn shipped(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/policies")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A shipped example, parsed and compiled.
pub(crate) fn shipped_compiled(name: &str) -> (crate::TrafficPolicy, crate::Output) {
    let text = shipped(name);
    let p = parse(&text, name).unwrap().remove(0);
    let out = compile(&p, name).unwrap();
    (p, out)
}

pub(crate) fn compile_text(text: &str) -> Result<String, Problems> {
    let policies = parse(text, "p.yaml")?;
    let mut out = Vec::new();
    for p in &policies {
        out.push(compile(p, "p.yaml")?);
    }
    Ok(to_yaml(&out).unwrap())
}

/// Each `(from, to, want)`: `base` with `from` replaced by `to` is refused with a problem
/// containing `want`.
pub(crate) fn assert_refused(base: &str, cases: &[(&str, &str, &str)]) {
    for (from, to, want) in cases {
        assert!(base.contains(from), "{from}");
        let p = problems(&base.replacen(from, to, 1));
        assert!(p.contains(want), "want `{want}`, got:\n{p}");
        assert!(p.starts_with("p.yaml: "), "{p}");
    }
}

pub(crate) fn problems(text: &str) -> String {
    match compile_text(text) {
        Ok(yaml) => panic!("expected problems, compiled:\n{yaml}"),
        Err(p) => p.to_string(),
    }
}

#[test]
fn the_canary_example() {
    let text = shipped("canary.yaml");
    let yaml = compile_text(&text).unwrap();
    insta::assert_snapshot!("canary", yaml);
    // DestinationRule before VirtualService (make before break), and deterministic.
    let dr = yaml.find("kind: DestinationRule").unwrap();
    let vs = yaml.find("kind: VirtualService").unwrap();
    assert!(dr < vs);
    assert_eq!(compile_text(&text).unwrap(), yaml);
}

#[test]
fn the_affinity_example() {
    let yaml = compile_text(&shipped("affinity.yaml")).unwrap();
    insta::assert_snapshot!("affinity", yaml);
    assert!(
        yaml.contains("enabled: false"),
        "affinity without locality turns it off"
    );
}

#[test]
fn the_nearby_example_adds_outlier_detection_and_says_so() {
    let (_, out) = shipped_compiled("nearby.yaml");
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("outlier detection was added")),
        "{:?}",
        out.notes
    );
    insta::assert_snapshot!("nearby", to_yaml(&[out]).unwrap());
}

/// The issue's full example, with every section: the affinity on a weighted split is refused
/// with the reason (the only problem); opted in, everything compiles.
#[test]
fn every_section_compiles_and_affinity_on_a_split_needs_consent() {
    let text = r#"
apiVersion: weir.dev/v1alpha1
kind: TrafficPolicy
metadata: { name: checkout, namespace: shop }
spec:
  host: checkout.shop.svc.cluster.local
  port: 8080
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
  routes:
    - name: beta
      match:
        - { source: header, key: x-user-group, op: in, values: [beta, staff] }
        - { source: query, key: uid, op: range, min: 1000, max: 1999 }
      destinations: [ { subset: v2, weight: 100 } ]
      set_headers: { x-env: beta }
    - name: default
      destinations: [ { subset: v1, weight: 90 }, { subset: v2, weight: 10 } ]
  affinity:
    hash: { header: x-topic }
    algorithm: ring_hash
    min_ring_size: 1024
  circuit_breaker:
    { max_connections: 100, max_pending_requests: 50, max_requests_per_connection: 0,
      consecutive_5xx: 5, interval_s: 10, base_ejection_s: 30, max_ejection_percent: 50 }
  rate_limit:
    local: { requests: 100, per: second, burst: 200 }
    global:
      domain: shop
      service: ratelimit.ratelimit.svc.cluster.local:8081
      failure_mode: allow
      limits:
        - { key: header, name: x-user-id, requests: 10, per: minute }
        - { key: remote_address, requests: 100, per: second }
        - { key: path, value: /api/checkout, requests: 50, per: second }
  locality: { levels: [zone, region], strict: false }
  environments: { label: env, baseline: base, header: x-env, propagate: [x-env, x-request-id] }
"#;
    let p = problems(text);
    assert!(
        p.contains(
            "p.yaml: spec.routes[1].destinations = \"default\": affinity on a route split by weight"
        ),
        "{p}"
    );
    assert_eq!(p.lines().count(), 1, "{p}");
    let opted_in = text.replace(
        "min_ring_size: 1024",
        "min_ring_size: 1024\n    allow_weighted_split: true",
    );
    let yaml = compile_text(&opted_in).unwrap();
    insta::assert_snapshot!("full", yaml);
}

pub(crate) const BASE: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: TrafficPolicy
metadata: { name: checkout }
spec:
  host: checkout
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
  routes:
    - name: beta
      match:
        - { source: header, key: x-group, op: equals, value: beta }
      destinations: [ { subset: v2 } ]
    - name: default
      destinations: [ { subset: v1, weight: 90 }, { subset: v2, weight: 10 } ]
"#;

#[test]
fn the_base_policy_compiles() {
    compile_text(BASE).unwrap();
}

#[test]
fn bad_files_name_the_field_and_the_value() {
    let cases: &[(&str, &str, &str)] = &[
        // A typo in a field name.
        ("routes:", "routs:", "spec.routs: unknown field `routs`"),
        // An unknown operator.
        (
            "op: equals",
            "op: equal",
            "spec.routes[0].match[0].op: unknown variant `equal`",
        ),
        // A regex Envoy cannot run.
        (
            "op: equals, value: beta",
            "op: regex, value: \"(?!beta)\"",
            "spec.routes[0].match[0].value = \"(?!beta)\": not an RE2 regex",
        ),
        // Weights that do not add up.
        (
            "weight: 10 }",
            "weight: 20 }",
            "spec.routes[1].destinations = 90 + 20: weights must sum to 100, not 110",
        ),
        // A subset that does not exist.
        (
            "[ { subset: v2 } ]",
            "[ { subset: v3 } ]",
            "spec.routes[0].destinations[0].subset = \"v3\": no such subset",
        ),
        // A route after the fallback.
        (
            "      destinations: [ { subset: v1, weight: 90 }, { subset: v2, weight: 10 } ]\n",
            "      destinations: [ { subset: v1, weight: 90 }, { subset: v2, weight: 10 } ]\n    - name: late\n      match: [ { source: method, op: equals, value: GET } ]\n      destinations: [ { subset: v1 } ]\n",
            "spec.routes[2].match = \"late\": unreachable: route \"default\" (spec.routes[1]) comes first and matches every request",
        ),
        // A route shadowed by a broader earlier one.
        (
            "    - name: default\n",
            "    - name: beta-get\n      match:\n        - { source: method, op: equals, value: GET }\n        - { source: header, key: x-group, op: equals, value: beta }\n      destinations: [ { subset: v1 } ]\n    - name: default\n",
            "spec.routes[1].match = \"beta-get\": unreachable: route \"beta\" (spec.routes[0]) comes first and matches every request this one matches",
        ),
        // Excluding by query parameter cannot be expressed.
        (
            "{ source: header, key: x-group, op: equals, value: beta }",
            "{ source: query, key: uid, op: not_in, values: [1, 2] }",
            "spec.routes[0].match[0].op = not_in: Istio cannot exclude by query parameter",
        ),
        // Two conditions on one header.
        (
            "        - { source: header, key: x-group, op: equals, value: beta }\n",
            "        - { source: header, key: x-group, op: equals, value: beta }\n        - { source: header, key: x-group, op: prefix, value: b }\n",
            "spec.routes[0].match[1]: a second condition on header x-group",
        ),
        // A name Kubernetes refuses.
        (
            "name: checkout }",
            "name: Checkout_1 }",
            "metadata.name = \"Checkout_1\": must be a DNS label",
        ),
    ];
    assert_refused(BASE, cases);
}

#[test]
fn affinity_settings_are_checked() {
    let with = |affinity: &str| format!("{BASE}  affinity:\n{affinity}");
    let p = problems(&with(
        "    hash: { header: x-topic }\n    algorithm: maglev\n    table_size: 65536\n",
    ));
    assert!(
        p.contains("spec.affinity.table_size = 65536: maglev's table size must be a prime"),
        "{p}"
    );
    let p = problems(&with(
        "    hash: { header: x-topic }\n    min_ring_size: 8\n    table_size: 7\n",
    ));
    assert!(p.contains("table_size is maglev's"), "{p}");
    let p = problems(&with("    hash: { source_ip: false }\n"));
    assert!(p.contains("spec.affinity.hash.source_ip"), "{p}");
    // Unknown hash keys are refused by name.
    let p = problems(&with("    hash: { body: x }\n"));
    assert!(p.contains("spec.affinity.hash"), "{p}");
}

#[test]
fn circuit_breaker_and_locality_are_checked() {
    let p = problems(&format!(
        "{BASE}  circuit_breaker: {{ max_ejection_percent: 150, interval_s: 0 }}\n"
    ));
    assert!(
        p.contains("spec.circuit_breaker.max_ejection_percent = 150"),
        "{p}"
    );
    assert!(p.contains("spec.circuit_breaker.interval_s = 0"), "{p}");
    assert!(
        p.contains("spec.circuit_breaker.consecutive_5xx: outlier detection"),
        "{p}"
    );
    let p = problems(&format!("{BASE}  locality: {{ levels: [region, zone] }}\n"));
    assert!(p.contains("spec.locality.levels"), "{p}");
    let p = problems(&format!(
        "{BASE}  locality: {{ levels: [zone], strict: true }}\n"
    ));
    assert!(p.contains("spec.locality.strict = true"), "{p}");
}

#[test]
fn several_documents_and_empty_files() {
    let two = format!(
        "{BASE}---\n{}",
        BASE.replace("name: checkout }", "name: cart }")
    );
    let yaml = compile_text(&two).unwrap();
    assert_eq!(yaml.matches("kind: DestinationRule").count(), 2);
    // Both DestinationRules come before both VirtualServices.
    let last_dr = yaml.rfind("kind: DestinationRule").unwrap();
    let first_vs = yaml.find("kind: VirtualService").unwrap();
    assert!(last_dr < first_vs);
    let bad = format!("{BASE}---\n{}", BASE.replace("host:", "hots:"));
    let p = problems(&bad);
    assert!(
        p.contains("(document 2) spec.hots: unknown field `hots`"),
        "{p}"
    );
    let p = problems("");
    assert!(p.contains("no policy in this file"), "{p}");
}

#[test]
fn the_fallback_is_noted_when_missing() {
    let text = BASE.replace(
        "    - name: default\n      destinations",
        "    - name: rest\n      match: [ { source: method, op: equals, value: GET } ]\n      destinations",
    );
    let p = &parse(&text, "p.yaml").unwrap()[0];
    let out = compile(p, "p.yaml").unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("no fallback route")),
        "{:?}",
        out.notes
    );
}

#[test]
fn an_even_split_rounds_deterministically() {
    let text = BASE.replace(
        "[ { subset: v1, weight: 90 }, { subset: v2, weight: 10 } ]",
        "[ { subset: v1 }, { subset: v2 }, { subset: v1 } ]",
    );
    let yaml = compile_text(&text).unwrap();
    let weights: Vec<&str> = yaml
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("weight:"))
        .collect();
    assert_eq!(
        weights,
        ["weight: 34", "weight: 33", "weight: 33"],
        "{yaml}"
    );
}

#[test]
fn explain_says_the_routing_table_in_words() {
    let (p, out) = shipped_compiled("canary.yaml");
    let words = explain(&p, &out);
    for want in [
        "checkout in shop: traffic to checkout.shop.svc.cluster.local:8080",
        "  1. beta: header x-user-group in [beta, staff] and query uid is an integer in 1000..=1999 → v2 100%; sets x-env: beta",
        "  2. not-internal: header x-debug is absent and cookie region not in [internal, staging] (or absent) and path starts with /api/ → v1 100%",
        "  3. default: otherwise → v1 90% / v2 10%",
        "circuit breaker: an instance answering 5 5xx in a row is ejected for 30s",
        "note: numeric conditions compare canonical decimal text",
    ] {
        assert!(words.contains(want), "missing `{want}` in:\n{words}");
    }
    let (p, out) = shipped_compiled("nearby.yaml");
    let words = explain(&p, &out);
    assert!(
        words.contains("nearby routing: callers are served in their own zone, then in their own region, then anywhere healthy"),
        "{words}"
    );
    assert!(
        words.contains("note: locality failover only happens"),
        "{words}"
    );
}

#[test]
fn the_rate_limit_example() {
    let (_, out) = shipped_compiled("ratelimit.yaml");
    insta::assert_snapshot!("ratelimit", to_yaml(&[out]).unwrap());
}

#[test]
fn the_environments_example() {
    let (_, out) = shipped_compiled("environments.yaml");
    insta::assert_snapshot!("environments", to_yaml(&[out]).unwrap());
}

#[test]
fn a_yaml_syntax_error_is_reported_not_looped_on() {
    let p = problems("kind: [\n");
    assert!(p.starts_with("p.yaml: (document 1): not YAML: "), "{p}");
    let p = problems(&format!("{BASE}---\nkind: [\n"));
    assert!(p.starts_with("p.yaml: (document 2): not YAML: "), "{p}");
}
