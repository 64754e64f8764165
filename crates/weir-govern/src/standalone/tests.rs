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

/// The Istio target's objects as a user applies them (camelCase JSON), for the test below.
fn istio_json<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap()
}

/// What Istio's DestinationRule means for an Envoy cluster, written from Istio's reference
/// (`DestinationRule`: LoadBalancerSettings, ConnectionPoolSettings, OutlierDetection) and
/// independent of `cluster()`: field → (cluster path, value).
fn istio_cluster_expectations(dr: &Value) -> Vec<(&'static str, Value)> {
    const MAX: u64 = u32::MAX as u64;
    let tp = &dr["spec"]["trafficPolicy"];
    let ch = &tp["loadBalancer"]["consistentHash"];
    let mut want = vec![];
    if ch.is_null() {
        // Istio's default for a DestinationRule without a load balancer since 1.14.
        want.push(("/lb_policy", serde_json::json!("LEAST_REQUEST")));
    } else if !ch["maglev"].is_null() {
        want.push(("/lb_policy", serde_json::json!("MAGLEV")));
        want.push((
            "/maglev_lb_config/table_size",
            ch["maglev"]["tableSize"].clone(),
        ));
    } else {
        want.push(("/lb_policy", serde_json::json!("RING_HASH")));
        let size = ch["ringHash"]["minimumRingSize"].as_u64().unwrap_or(1024);
        want.push((
            "/ring_hash_lb_config/minimum_ring_size",
            serde_json::json!(size),
        ));
    }
    let pool = &tp["connectionPool"];
    let or_max = |v: &Value| {
        if v.is_null() {
            serde_json::json!(MAX)
        } else {
            v.clone()
        }
    };
    want.push((
        "/circuit_breakers/thresholds/0/max_connections",
        or_max(&pool["tcp"]["maxConnections"]),
    ));
    want.push((
        "/circuit_breakers/thresholds/0/max_pending_requests",
        or_max(&pool["http"]["http1MaxPendingRequests"]),
    ));
    if let Some(n) = pool["http"]["maxRequestsPerConnection"]
        .as_u64()
        .filter(|n| *n > 0)
    {
        want.push((
            "/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/common_http_protocol_options/max_requests_per_connection",
            serde_json::json!(n),
        ));
    }
    let od = &tp["outlierDetection"];
    if !od.is_null() {
        for (istio, envoy) in [
            ("consecutive5xxErrors", "/outlier_detection/consecutive_5xx"),
            ("interval", "/outlier_detection/interval"),
            ("baseEjectionTime", "/outlier_detection/base_ejection_time"),
            (
                "maxEjectionPercent",
                "/outlier_detection/max_ejection_percent",
            ),
        ] {
            if !od[istio].is_null() {
                want.push((envoy, od[istio].clone()));
            }
        }
        // minHealthPercent unset is 0 in Istio: no panic routing.
        want.push((
            "/common_lb_config/healthy_panic_threshold/value",
            serde_json::json!(0),
        ));
    } else {
        want.push(("/outlier_detection", Value::Null));
    }
    want
}

/// One policy model, two renderers: on every shipped policy, the standalone bootstrap says what
/// the Istio objects say wherever both can say it — routes (after deciding `sourceLabels` for
/// the caller), the hash key, every subset's load balancing, connection limits and outlier
/// detection, the inbound EnvoyFilters' HTTP filters and rate-limit actions, and locality
/// priorities from `failoverPriority`.
#[test]
fn the_two_renderers_agree_on_every_shipped_policy() {
    for file in [
        "canary.yaml",
        "affinity.yaml",
        "nearby.yaml",
        "ratelimit.yaml",
        "environments.yaml",
    ] {
        let (p, out) = shipped_compiled(file);
        let zones = [("east", "east-1"), ("east", "east-2"), ("west", "west-1")];
        let mut inv = String::from(
            "listen: 127.0.0.1:18000\nratelimit_service: 127.0.0.1:8081\n\
             caller: { region: east, zone: east-1 }\nendpoints:\n",
        );
        let mut port = 18100;
        for s in &p.spec.subsets {
            for (region, zone) in zones {
                port += 1;
                inv += &format!(
                    "  - {{ subset: {}, address: 127.0.0.1:{port}, locality: {{ region: {region}, zone: {zone} }} }}\n",
                    s.name
                );
            }
        }
        let inv = parse_inventory(&inv, "inv.yaml").unwrap();
        let s = render(&p, &out, &inv, "inv.yaml").unwrap_or_else(|e| panic!("{file}: {e}"));
        let hcm = &s.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        let vhost = &hcm["route_config"]["virtual_hosts"][0];

        // Routes: the VirtualService's, in order, as envoy::routes renders Istio's translation;
        // a caller without labels keeps exactly the routes with no `sourceLabels`.
        let vs = istio_json(&out.virtual_service);
        let dr = istio_json(&out.destination_rule);
        let ch = &dr["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"];
        let mut want = Vec::new();
        for r in &out.virtual_service.spec.http {
            if r.matches.iter().any(|m| !m.source_labels.is_empty()) {
                continue;
            }
            for mut x in envoy::routes(r, p.spec.port.unwrap_or(80)).unwrap() {
                let hash = if let Some(h) = ch["httpHeaderName"].as_str() {
                    Some(serde_json::json!({ "header": { "header_name": h } }))
                } else if let Some(c) = ch.get("httpCookie").filter(|c| !c.is_null()) {
                    Some(serde_json::json!({ "cookie": c }))
                } else if ch["useSourceIp"] == true {
                    Some(serde_json::json!({ "connection_properties": { "source_ip": true } }))
                } else {
                    ch["httpQueryParameterName"]
                        .as_str()
                        .map(|q| serde_json::json!({ "query_parameter": { "name": q } }))
                };
                // Istio's retries: two, to another host — on the key's host under hashing.
                assert_eq!(x["route"]["retry_policy"]["num_retries"], 2, "{file}");
                if let Some(h) = hash {
                    x["route"]["hash_policy"] = serde_json::json!([h]);
                    let retry = x["route"]["retry_policy"].as_object_mut().unwrap();
                    retry.remove("retry_host_predicate");
                    retry.remove("host_selection_retry_max_attempts");
                }
                want.push(x);
            }
        }
        assert_eq!(vhost["routes"], Value::Array(want), "{file}: routes");
        assert!(
            vs["spec"]["http"].as_array().unwrap().len()
                >= vhost["routes"].as_array().unwrap().len(),
            "{file}"
        );

        // Clusters: one per DestinationRule subset, each with the DestinationRule's settings.
        let expectations = istio_cluster_expectations(&dr);
        for subset in dr["spec"]["subsets"].as_array().unwrap() {
            let c = cluster(&s.bootstrap, subset["name"].as_str().unwrap());
            for (path, value) in &expectations {
                let got = c.pointer(path).cloned().unwrap_or(Value::Null);
                assert_eq!(&got, value, "{file}: subset {}: {path}", subset["name"]);
            }
            // Locality: priority = how many failoverPriority labels (broadest first) the
            // endpoint does not share with the caller (region, then zone).
            let failover = &dr["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]["failoverPriority"];
            for g in c["load_assignment"]["endpoints"].as_array().unwrap() {
                let want = match failover.as_array() {
                    None => 0,
                    Some(labels) => {
                        let shared = labels
                            .iter()
                            .take_while(|l| match l.as_str().unwrap() {
                                "topology.kubernetes.io/region" => {
                                    g["locality"]["region"] == "east"
                                }
                                "topology.kubernetes.io/zone" => g["locality"]["zone"] == "east-1",
                                other => panic!("{file}: label {other} not in this test"),
                            })
                            .count();
                        labels.len() - shared
                    }
                };
                assert_eq!(g["priority"], want, "{file}: {g}");
            }
        }

        // EnvoyFilters: each inbound HTTP_FILTER patch's value is in the chain before the
        // router, in order; each VIRTUAL_HOST merge's rate limits are on the virtual host.
        let chain = hcm["http_filters"].as_array().unwrap();
        let mut filters_want = Vec::new();
        let mut actions_want = Vec::new();
        for f in &out.envoy_filters {
            for patch in &istio_json(f)["spec"]["configPatches"]
                .as_array()
                .unwrap()
                .clone()
            {
                if patch["match"]["context"] != "SIDECAR_INBOUND" {
                    continue;
                }
                match patch["applyTo"].as_str().unwrap() {
                    "HTTP_FILTER" => filters_want.push(patch["patch"]["value"].clone()),
                    "VIRTUAL_HOST" => actions_want.extend(
                        patch["patch"]["value"]["rate_limits"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    other => panic!("{file}: applyTo {other} not in this test"),
                }
            }
        }
        filters_want.push(chain.last().unwrap().clone());
        assert_eq!(chain.last().unwrap()["name"], "envoy.filters.http.router");
        assert_eq!(chain, &filters_want, "{file}: http filters");
        assert_eq!(
            vhost["rate_limits"].as_array().cloned().unwrap_or_default(),
            actions_want,
            "{file}: rate-limit actions"
        );
    }
}
