//! The committed CustomResourceDefinition is the one the code generates, and it is one a
//! Kubernetes API server would accept as a `CustomResourceDefinition`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use weir_operator::{ReadSplit, crd_yaml};

const COMMITTED: &str = "deploy/crd/readsplits.weir.dev.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_crd_matches_the_code() {
    let generated = crd_yaml().unwrap();
    let path = root().join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with `weir crd > {COMMITTED}`)",
            path.display()
        )
    });
    assert!(
        committed == generated,
        "{COMMITTED} is out of date: regenerate it with `cargo run -- crd > {COMMITTED}`"
    );
}

#[test]
fn crd_parses_as_a_custom_resource_definition_with_status_and_columns() {
    let crd: CustomResourceDefinition = serde_norway::from_str(&crd_yaml().unwrap()).unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some("readsplits.weir.dev"));
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status is a subresource, so the operator patches it separately"
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Mode", "Weights", "Max lag", "Ready", "Reason", "Age"]
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
