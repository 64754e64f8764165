//! Route finding, layout checks and weight validation on JSON, without an API server. The
//! exact patches and the retry loop are tested in `tests/actuator.rs`.

use serde_json::{Value, json};

use super::*;
use crate::config::{Destination, IstioConfig, Layout, RouteSelector};

fn fixture() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/vs_two_services.json")).unwrap()
}

fn config(route: RouteSelector) -> IstioConfig {
    IstioConfig {
        namespace: "db".into(),
        virtual_service: "mysql".into(),
        route,
        layout: Layout::TwoServices {
            primary_host: "mysql-primary".into(),
            replicas_host: "mysql-replicas".into(),
        },
        max_retries: 3,
    }
}

fn w(primary: u32, replicas: &[u32]) -> Weights {
    Weights {
        primary,
        replicas: replicas.to_vec(),
    }
}

#[test]
fn hosts_selector_finds_a_unique_route_and_tests_its_name_and_match() {
    let mut vs = fixture();
    // Only the reads route keeps both hosts once the TCP route is gone.
    vs["spec"]["tcp"] = json!([]);
    let cfg = config(RouteSelector::Hosts(vec![
        "mysql-primary".into(),
        "mysql-replicas".into(),
    ]));
    let plan = plan_patch(&vs, &cfg, &w(40, &[30, 30])).unwrap();
    assert_eq!(plan.route_path, "/spec/http/0");
    assert_eq!(plan.weights, vec![40, 60]);
    let ops = serde_json::to_value(&plan.patch).unwrap();
    assert_eq!(ops[1]["path"], "/spec/http/0/name");
    assert_eq!(ops[2]["path"], "/spec/http/0/match");
    assert_eq!(ops.as_array().unwrap().len(), 7);
}

#[test]
fn destinations_in_any_order_map_to_the_right_weights() {
    let mut vs = fixture();
    let route = vs["spec"]["tcp"][0]["route"].as_array_mut().unwrap();
    route.swap(0, 1);
    let plan = plan_patch(
        &vs,
        &config(RouteSelector::TcpPort(3306)),
        &w(20, &[40, 40]),
    )
    .unwrap();
    // Destination 0 is now the reader.
    assert_eq!(plan.weights, vec![80, 20]);
    assert!(!plan.unchanged);
}

#[test]
fn unchanged_only_when_every_weight_is_present_and_equal() {
    let vs = fixture();
    let cfg = config(RouteSelector::HttpName("reads".into()));
    assert!(plan_patch(&vs, &cfg, &w(20, &[40, 40])).unwrap().unchanged);
    assert!(!plan_patch(&vs, &cfg, &w(21, &[40, 39])).unwrap().unchanged);
    let mut no_weight = vs.clone();
    no_weight["spec"]["http"][0]["route"][0]
        .as_object_mut()
        .unwrap()
        .remove("weight");
    no_weight["spec"]["http"][0]["route"][1]["weight"] = json!(100);
    assert!(
        !plan_patch(&no_weight, &cfg, &w(0, &[50, 50]))
            .unwrap()
            .unchanged
    );
}

#[test]
fn malformed_objects_are_reported_not_guessed() {
    let cfg = config(RouteSelector::HttpName("reads".into()));
    let mut no_rv = fixture();
    no_rv["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert!(matches!(
        plan_patch(&no_rv, &cfg, &w(50, &[50])),
        Err(IstioError::Malformed(_))
    ));
    let mut no_spec = fixture();
    no_spec.as_object_mut().unwrap().remove("spec");
    assert!(matches!(
        plan_patch(&no_spec, &cfg, &w(50, &[50])),
        Err(IstioError::Malformed(_))
    ));
    let mut float = fixture();
    float["spec"]["http"][0]["route"][0]["weight"] = json!(20.5);
    let err = plan_patch(&float, &cfg, &w(50, &[50])).unwrap_err();
    assert!(
        err.to_string().contains("/spec/http/0/route/0/weight"),
        "{err}"
    );
    let mut negative = fixture();
    negative["spec"]["http"][0]["route"][1]["weight"] = json!(-1);
    assert!(matches!(
        plan_patch(&negative, &cfg, &w(50, &[50])),
        Err(IstioError::Malformed(_))
    ));
}

#[test]
fn a_route_without_destinations_is_an_unexpected_layout() {
    let mut vs = fixture();
    vs["spec"]["http"][0]
        .as_object_mut()
        .unwrap()
        .remove("route");
    vs["spec"]["http"][0]["redirect"] = json!({ "uri": "/elsewhere" });
    let err = plan_patch(
        &vs,
        &config(RouteSelector::HttpName("reads".into())),
        &w(50, &[50]),
    )
    .unwrap_err();
    assert!(
        matches!(err, IstioError::UnexpectedLayout { .. }),
        "{err:?}"
    );
}

#[test]
fn per_replica_matches_subsets_exactly() {
    let mut vs = fixture();
    vs["spec"]["tcp"][0]["route"][1]["destination"]["subset"] = json!("r0");
    let mut cfg = config(RouteSelector::TcpPort(3306));
    cfg.layout = Layout::PerReplica {
        primary: Destination {
            host: "mysql-primary".into(),
            subset: None,
        },
        replicas: vec![Destination {
            host: "mysql-replicas".into(),
            subset: Some("r0".into()),
        }],
    };
    let plan = plan_patch(&vs, &cfg, &w(30, &[70])).unwrap();
    assert_eq!(plan.weights, vec![30, 70]);
    // The same route read with the subset missing from the config does not match.
    cfg.layout = Layout::PerReplica {
        primary: Destination {
            host: "mysql-primary".into(),
            subset: None,
        },
        replicas: vec![Destination {
            host: "mysql-replicas".into(),
            subset: None,
        }],
    };
    assert!(matches!(
        plan_patch(&vs, &cfg, &w(30, &[70])),
        Err(IstioError::UnexpectedLayout { .. })
    ));
}

#[test]
fn current_weights_handles_missing_and_zero_weights() {
    let cfg = config(RouteSelector::TcpPort(3307));
    // Both weights absent on a two-destination route: there is no share to report.
    let mut vs = fixture();
    vs["spec"]["tcp"][1]["route"] = json!([
        { "destination": { "host": "mysql-primary" } },
        { "destination": { "host": "mysql-replicas" } }
    ]);
    assert!(matches!(
        current_weights(&vs, &cfg, 2),
        Err(IstioError::Malformed(_))
    ));
    // An absent weight counts as 0 next to a present one.
    vs["spec"]["tcp"][1]["route"][1]["weight"] = json!(3);
    assert_eq!(current_weights(&vs, &cfg, 2).unwrap(), w(0, &[50, 50]));
    assert_eq!(current_weights(&vs, &cfg, 0).unwrap(), w(100, &[]));
}
