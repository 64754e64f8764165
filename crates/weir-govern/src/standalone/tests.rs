//! The standalone target: built from the Istio target's own objects, with what Istio would
//! learn from its registry taken from the inventory.

use serde_json::Value;

use super::{parse_inventory, render};
use crate::envoy;
use crate::tests::shipped_compiled;

const INVENTORY: &str = "
listen: 127.0.0.1:18000
admin: 127.0.0.1:18001
caller: { region: east, zone: east-1, subzone: rack-a, labels: { env: feature-pay } }
ratelimit_service: 127.0.0.1:8081
endpoints:
  - { subset: v1, address: 127.0.0.1:18081, locality: { region: east, zone: east-1, subzone: rack-a } }
  - { subset: v1, address: 127.0.0.1:18082, locality: { region: east, zone: east-2 } }
  - { subset: v1, address: 127.0.0.1:18084, locality: { region: west, zone: west-1 } }
  - { subset: v2, address: 127.0.0.1:18083 }
";

fn cluster<'a>(config: &'a Value, subset: &str) -> &'a Value {
    config["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(&format!("|{subset}|")))
        .unwrap_or_else(|| panic!("no cluster for {subset}"))
}

#[test]
fn routes_are_the_istio_targets_routes() {
    let (p, out) = shipped_compiled("canary.yaml");
    let inv = parse_inventory(INVENTORY, "inv.yaml").unwrap();
    let s = render(&p, &out, &inv, "inv.yaml").unwrap();
    let vhost = &s.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0];
    let mut want = Vec::new();
    for r in &out.virtual_service.spec.http {
        want.extend(envoy::routes(r, 8080).unwrap());
    }
    assert_eq!(vhost["routes"], Value::Array(want));
    assert_eq!(vhost["domains"], serde_json::json!(["*"]));
    // Circuit breaking as Istio renders it.
    let c = cluster(&s.bootstrap, "v1");
    assert_eq!(
        c["circuit_breakers"]["thresholds"][0]["max_connections"],
        100
    );
    assert_eq!(
        c["circuit_breakers"]["thresholds"][0]["max_pending_requests"],
        50
    );
    assert_eq!(c["outlier_detection"]["consecutive_5xx"], 5);
    assert_eq!(c["outlier_detection"]["base_ejection_time"], "30s");
    assert_eq!(c["common_lb_config"]["healthy_panic_threshold"]["value"], 0);
    assert_eq!(
        s.bootstrap["admin"]["address"]["socket_address"]["port_value"],
        18001
    );
}

#[test]
fn nearby_routing_becomes_priorities_relative_to_the_caller() {
    let (p, out) = shipped_compiled("nearby.yaml");
    let subset = &p.spec.subsets[0].name;
    let inv = INVENTORY
        .replace("subset: v1", &format!("subset: {subset}"))
        .replace("  - { subset: v2, address: 127.0.0.1:18083 }\n", "");
    let inv = parse_inventory(&inv, "inv.yaml").unwrap();
    let s = render(&p, &out, &inv, "inv.yaml").unwrap();
    let c = cluster(&s.bootstrap, subset);
    let prio: Vec<(String, u64)> = c["load_assignment"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"]
                    .to_string(),
                g["priority"].as_u64().unwrap(),
            )
        })
        .collect();
    // Same zone first, then the same region, then anywhere.
    assert_eq!(
        prio,
        [
            ("18081".to_string(), 0),
            ("18082".to_string(), 1),
            ("18084".to_string(), 2)
        ]
    );
    // Affinity with maglev or ring hash, hashed on the route.
    let route = &s.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
    assert!(route["route"]["hash_policy"].is_array(), "{route}");
}

#[test]
fn rate_limit_filters_are_the_istio_targets_and_call_the_inventory_service() {
    let (p, out) = shipped_compiled("ratelimit.yaml");
    let inv = parse_inventory(INVENTORY, "inv.yaml").unwrap();
    let s = render(&p, &out, &inv, "inv.yaml").unwrap();
    let hcm = &s.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let names: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.ratelimit",
            "envoy.filters.http.router"
        ]
    );
    let vhost = &hcm["route_config"]["virtual_hosts"][0];
    assert_eq!(vhost["name"], "inbound|http|8080");
    assert_eq!(vhost["rate_limits"].as_array().unwrap().len(), 3);
    let rl = s.bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "outbound|8081||ratelimit.ratelimit.svc.cluster.local")
        .expect("the rate-limit service's cluster");
    assert_eq!(
        rl["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["port_value"],
        8081
    );
    // Without the service's address, nothing is written.
    let inv = parse_inventory(
        &INVENTORY.replace("ratelimit_service: 127.0.0.1:8081\n", ""),
        "inv.yaml",
    )
    .unwrap();
    let e = render(&p, &out, &inv, "inv.yaml").unwrap_err().to_string();
    assert!(
        e.contains("inv.yaml: ratelimit_service: the policy has global rate limits"),
        "{e}"
    );
}

#[test]
fn source_labels_are_decided_for_the_caller() {
    let (p, out) = shipped_compiled("environments.yaml");
    let inv = INVENTORY
        .replace("subset: v1", "subset: stable")
        .replace("subset: v2", "subset: canary")
        + "  - { subset: feature-pay, address: 127.0.0.1:18085 }\n";
    let s = render(
        &p,
        &out,
        &parse_inventory(&inv, "inv.yaml").unwrap(),
        "inv.yaml",
    )
    .unwrap();
    let routes = s.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap()
        .clone();
    let caller_route = routes
        .iter()
        .find(|r| r["name"] == "env-feature-pay-caller")
        .expect("the caller is in feature-pay: its static-dyeing route is kept");
    assert_eq!(
        caller_route["request_headers_to_add"][0]["header"]["value"],
        "feature-pay"
    );
    // The outbound header clean-up is not for this proxy.
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("payments-disposable-headers")),
        "{:?}",
        s.notes
    );
    // A caller outside the environment: the route is left out, and said.
    let other = inv.replace("labels: { env: feature-pay }", "labels: { env: base }");
    let s = render(
        &p,
        &out,
        &parse_inventory(&other, "inv.yaml").unwrap(),
        "inv.yaml",
    )
    .unwrap();
    let text = s.bootstrap.to_string();
    assert!(!text.contains("env-feature-pay-caller"), "{text}");
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("route \"env-feature-pay-caller\" left out"))
    );
}

#[test]
fn a_wrong_inventory_is_refused_with_its_field() {
    let (p, out) = shipped_compiled("canary.yaml");
    for (from, to, want) in [
        (
            "subset: v2,",
            "subset: v9,",
            "inv.yaml: endpoints[3].subset = \"v9\": the policy has no such subset",
        ),
        (
            "127.0.0.1:18083",
            "backend:18083",
            "inv.yaml: endpoints[3].address = \"backend:18083\": write IP:port",
        ),
        (
            "listen: 127.0.0.1:18000",
            "listen: 18000",
            "inv.yaml: listen = \"18000\"",
        ),
    ] {
        let inv = parse_inventory(&INVENTORY.replace(from, to), "inv.yaml").unwrap();
        let e = render(&p, &out, &inv, "inv.yaml").unwrap_err().to_string();
        assert!(e.contains(want), "want {want}, got {e}");
    }
    let e = parse_inventory("listen: x\nendpoint: []\n", "inv.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("inv.yaml: endpoint: unknown field"), "{e}");
}
