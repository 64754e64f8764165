//! The committed CustomResourceDefinitions are the ones the code generates, and ones a
//! Kubernetes API server would accept: `CustomResourceDefinition`s with structural schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use weir_operator::{ReadSplit, crd_yaml, traffic_policy_crd_yaml};

const COMMITTED: &str = "deploy/crd/readsplits.weir.dev.yaml";
const COMMITTED_TRAFFIC: &str = "deploy/crd/trafficpolicies.weir.dev.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails unless the file at `relative` is `generated`.
fn assert_committed(relative: &str, generated: &str) {
    let path = root().join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with `weir manifests --write`)",
            path.display()
        )
    });
    assert!(
        committed == generated,
        "{relative} is out of date: regenerate it with `cargo run -- manifests --write`"
    );
}

#[test]
fn committed_crd_matches_the_code() {
    assert_committed(COMMITTED, &crd_yaml().unwrap());
}

/// `yaml` parses as CustomResourceDefinition `name`: namespaced, one served and stored
/// version `v1alpha1` whose status is a subresource (so the operator patches it separately),
/// with these printer columns.
fn assert_crd(yaml: &str, name: &str, columns: &[&str]) {
    let crd: CustomResourceDefinition = serde_norway::from_str(yaml).unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some(name));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.versions.len(), 1);
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status is a subresource"
    );
    let found: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(found, columns);
}

#[test]
fn crd_parses_as_a_custom_resource_definition_with_status_and_columns() {
    assert_crd(
        &crd_yaml().unwrap(),
        "readsplits.weir.dev",
        &["Mode", "Weights", "Max lag", "Ready", "Reason", "Age"],
    );
}

#[test]
fn the_seed_layout_example_deserialises_with_defaults() {
    let rs: ReadSplit = serde_norway::from_str(
        r#"
apiVersion: weir.dev/v1alpha1
kind: ReadSplit
metadata: {name: orders, namespace: shop}
spec:
  virtualService: {name: db-reader-proxy}
  route: {tcpPort: 3306}
  primary: {host: db-writer-proxy}
  reader: {host: db-reader-proxy}
  replicas:
    - {name: replica-1, labelValue: "mysql-replica-1:9104"}
    - {name: replica-2, labelValue: "mysql-replica-2:9104"}
  prometheus: {url: "http://prometheus.monitoring:9090"}
"#,
    )
    .unwrap();
    assert_eq!(rs.spec.interval_seconds, 15);
    assert_eq!(rs.spec.mode, weir_operator::crd::ModeSpec::Shadow);
    assert_eq!(rs.spec.policy.kind, weir_operator::crd::PolicyKind::Shun);
    assert!(rs.status.is_none());
    // A typo in an enum is refused, not defaulted.
    let bad = serde_norway::from_str::<ReadSplit>(
        "apiVersion: weir.dev/v1alpha1\nkind: ReadSplit\nmetadata: {name: x}\nspec: {virtualService: {name: v}, route: {}, primary: {host: p}, replicas: [], prometheus: {url: u}, mode: Enforced}\n",
    );
    assert!(bad.is_err());
}

#[test]
fn committed_traffic_policy_crd_matches_the_code() {
    assert_committed(COMMITTED_TRAFFIC, &traffic_policy_crd_yaml().unwrap());
}

/// Every place `schema` breaks Kubernetes' structural-schema rules, by JSON path: a node
/// without a `type` (unless int-or-string or preserving unknown fields), a `$ref`,
/// `additionalProperties` beside `properties`, or a type, properties or items inside
/// `anyOf`/`oneOf`/`allOf`/`not`.
fn structural_problems(schema: &Value, at: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        out.push(format!("{at}: not an object"));
        return;
    };
    let free = node.contains_key("x-kubernetes-int-or-string")
        || node.contains_key("x-kubernetes-preserve-unknown-fields");
    if in_junctor {
        for key in [
            "type",
            "properties",
            "items",
            "additionalProperties",
            "default",
            "nullable",
        ] {
            if node.contains_key(key) {
                out.push(format!("{at}: `{key}` inside a junctor"));
            }
        }
    } else if !node.contains_key("type") && !free {
        out.push(format!("{at}: no type"));
    }
    if node.contains_key("$ref") {
        out.push(format!("{at}: $ref"));
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!("{at}: properties and additionalProperties"));
    }
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        structural_problems(child, &format!("{at}.{name}"), in_junctor, out);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            structural_problems(child, &format!("{at}[{key}]"), in_junctor, out);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, child) in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_problems(child, &format!("{at}.{key}[{i}]"), true, out);
        }
    }
}

#[test]
fn the_traffic_policy_crd_has_a_structural_schema_status_and_columns() {
    let yaml = traffic_policy_crd_yaml().unwrap();
    assert_crd(
        &yaml,
        "trafficpolicies.weir.dev",
        &["Host", "Ready", "Reason", "Age"],
    );
    let raw: Value = serde_norway::from_str(&yaml).unwrap();
    let schema = &raw["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    structural_problems(schema, "", false, &mut problems);
    assert!(problems.is_empty(), "not structural: {problems:#?}");
    // The policy file's spec, field for field: a scalar operand is int-or-string.
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["host"]["type"], "string");
    let value = &spec["routes"]["items"]["properties"]["match"]["items"]["properties"]["value"];
    assert_eq!(value["x-kubernetes-int-or-string"], true, "{value}");
    let hash = &spec["affinity"]["properties"]["hash"]["properties"];
    for key in ["header", "cookie", "source_ip", "query"] {
        assert!(hash.get(key).is_some(), "hash key {key} missing: {hash}");
    }
}

#[test]
fn every_example_policy_is_a_valid_traffic_policy_resource() {
    let dir = root().join("deploy/policies");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let tp: weir_operator::TrafficPolicy =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = weir_govern::parse(&text, &path.display().to_string()).unwrap();
        assert_eq!(tp.spec.0, file[0].spec, "{}", path.display());
        read += 1;
    }
    assert!(read >= 3, "{read} example policies");
}
