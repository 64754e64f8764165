//! `lint` flags what goes wrong in hand-written objects — the seed's first — and has nothing
//! to say about what the compiler writes.

use super::{Severity, lint};
use crate::tests::{shipped, shipped_compiled};
use crate::to_yaml;

const SEED: &str = include_str!("../../tests/fixtures/seed-001-hand-written.yaml");

fn codes_at(findings: &[super::Finding]) -> Vec<(String, String, &'static str)> {
    findings
        .iter()
        .map(|f| (f.object.clone(), f.path.clone(), f.code))
        .collect()
}

#[test]
fn the_seeds_hand_written_objects_are_flagged() {
    let findings = lint(SEED, "seed.yaml");
    let got = codes_at(&findings);
    let ef = "(document 3) EnvoyFilter ratelimit-filter";
    let want = [
        (
            "(document 1) VirtualService model-service",
            "spec.gateways",
            "WEIR-VS02",
        ),
        (
            "(document 2) DestinationRule model-service",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "WEIR-DR05",
        ),
        (ef, "spec.workloadSelector", "WEIR-EF01"),
        (ef, "spec.configPatches[0].match.filter", "WEIR-EF02"),
        (ef, "spec.configPatches[0].match.subFilter", "WEIR-EF02"),
        (
            ef,
            "spec.configPatches[0].match.proxy.proxyVersion",
            "WEIR-EF03",
        ),
        (ef, "spec.configPatches[0].match.context", "WEIR-EF04"),
        (
            ef,
            "spec.configPatches[0].match.listener.filterChain.filter.name",
            "WEIR-EF07",
        ),
        (
            ef,
            "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
            "WEIR-EF05",
        ),
        (ef, "spec.configPatches[0].patch.value.name", "WEIR-EF07"),
        (ef, "spec.configPatches[0].patch.value", "WEIR-EF06"),
        (
            ef,
            "spec.configPatches[1].patch.value.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
            "WEIR-EF09",
        ),
        (ef, "spec.configPatches[1].patch.value", "WEIR-EF10"),
    ];
    for (object, path, code) in want {
        assert!(
            got.contains(&(object.to_string(), path.to_string(), code)),
            "missing {code} at {object}: {path}; got:\n{}",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(got.len(), want.len(), "{findings:#?}");
    let text = findings[5].to_string();
    assert!(
        text.starts_with("seed.yaml: (document 3) EnvoyFilter ratelimit-filter: spec.configPatches[0].match.proxy.proxyVersion: error[WEIR-EF03]: pinned"),
        "{text}"
    );
}

#[test]
fn what_the_compiler_writes_lints_clean() {
    for name in [
        "canary.yaml",
        "affinity.yaml",
        "nearby.yaml",
        "ratelimit.yaml",
        "environments.yaml",
    ] {
        let (_, out) = shipped_compiled(name);
        let hash_with_locality = out
            .notes
            .iter()
            .any(|n| n.starts_with("affinity with `locality`"));
        let yaml = to_yaml(&[out]).unwrap();
        let findings = lint(&yaml, name);
        // The one warning is the caveat the compiler states itself when a policy asks for
        // affinity and nearby routing together.
        let unexplained: Vec<_> = findings
            .iter()
            .filter(|f| !(hash_with_locality && f.code == "WEIR-DR03"))
            .collect();
        assert!(unexplained.is_empty(), "{name}: {unexplained:#?}");
        assert_eq!(name == "nearby.yaml", hash_with_locality, "{name}");
    }
    // The policy files themselves are not Istio objects: nothing to say.
    assert!(lint(&shipped("canary.yaml"), "canary.yaml").is_empty());
}

#[test]
fn routing_mistakes_are_flagged() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r, namespace: shop }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v1, labels: { version: v1b } }
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        maglev: { tableSize: 65536 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: r, namespace: shop }
spec:
  hosts: [reviews]
  http:
    - route: [ { destination: { host: reviews, subset: v1 } } ]
    - match: [ { headers: { x-a: { regex: "(?!x)" } } } ]
      route:
        - { destination: { host: reviews.shop.svc.cluster.local, subset: v3 }, weight: 60 }
        - { destination: { host: reviews, subset: v1 }, weight: 30 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: r2, namespace: shop }
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
    - match: [ { uri: { prefix: /a } } ]
      route: [ { destination: { host: reviews } } ]
    - match: [ { uri: { prefix: /a } } ]
      route: [ { destination: { host: reviews } } ]
"#;
    let findings = lint(text, "f.yaml");
    let got: Vec<(String, &'static str, Severity)> = findings
        .iter()
        .map(|f| (f.path.clone(), f.code, f.severity))
        .collect();
    for want in [
        ("spec.subsets[1].name", "WEIR-DR01", Severity::Error),
        (
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "WEIR-DR04",
            Severity::Error,
        ),
        (
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "WEIR-DR03",
            Severity::Warning,
        ),
        ("spec.http[1].match", "IST0130", Severity::Error),
        (
            "spec.http[1].match[0].headers.x-a.regex",
            "WEIR-RE2",
            Severity::Error,
        ),
        ("spec.http[1].route", "WEIR-VS03", Severity::Warning),
        (
            "spec.http[1].route[0].destination.subset",
            "IST0101",
            Severity::Error,
        ),
        ("spec.http[1].match", "IST0131", Severity::Error),
        ("spec.hosts[0]", "IST0109", Severity::Error),
    ] {
        let want = (want.0.to_string(), want.1, want.2);
        assert!(got.contains(&want), "missing {want:?} in {findings:#?}");
    }
    assert_eq!(got.len(), 9, "{findings:#?}");
}

#[test]
fn a_yaml_syntax_error_is_one_finding_and_reading_stops() {
    let findings = lint("kind: [\n", "bad.yaml");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].code, "WEIR-YAML");
    let findings = lint(&format!("{SEED}---\nkind: [\n"), "bad.yaml");
    let yaml: Vec<_> = findings.iter().filter(|f| f.code == "WEIR-YAML").collect();
    assert_eq!(yaml.len(), 1, "{findings:#?}");
    assert_eq!(yaml[0].object, "(document 4) document");
    assert_eq!(
        findings.len(),
        14,
        "the three good documents are still read"
    );
}

#[test]
fn a_grpc_service_named_by_an_istio_cluster_needs_an_authority() {
    let (_, out) = shipped_compiled("ratelimit.yaml");
    let yaml = to_yaml(&[out]).unwrap();
    assert!(lint(&yaml, "r.yaml").is_empty());
    let without = yaml.replace("authority: ratelimit.ratelimit.svc.cluster.local", "");
    let findings = lint(&without, "r.yaml");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].code, "WEIR-EF11");
    assert!(
        findings[0].path.ends_with("grpc_service.envoy_grpc"),
        "{findings:#?}"
    );
}
