//! The Istio actuator against a fake API server: the exact patch it sends, that the patch
//! changes nothing but the managed weights, retries on lost races, and refusals that never
//! reach a PATCH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::Duration;

use fixtures::{
    mysql_path, per_replica, per_replica_config, serve, two_services, two_services_config,
    unrelated_edit, without_weights,
};
use http::Method;
use serde_json::{Value, json};
use weir_core::{Decision, Proposal, Weights};
use weir_edge::{Actuator, ActuatorError};
use weir_istio::{ApplyOutcome, IstioActuator, IstioConfig, IstioError, RouteSelector};
use weir_test_support::kube_api::{FakeApiServer, Seen};

fn weights(primary: u32, replicas: &[u32]) -> Weights {
    Weights {
        primary,
        replicas: replicas.to_vec(),
    }
}

fn decision(w: Weights) -> Decision {
    Decision {
        at_s: 60.0,
        weights: w.clone(),
        proposal: Proposal::new(w, "test"),
        interventions: Vec::new(),
    }
}

/// Runs `apply_weights` against `server` and checks what it sent (see
/// [`assert_requests_well_formed`]).
async fn apply(
    server: &FakeApiServer,
    config: IstioConfig,
    w: &Weights,
) -> Result<ApplyOutcome, IstioError> {
    let actuator = IstioActuator::new(server.client(), config);
    let result = tokio::time::timeout(Duration::from_secs(10), actuator.apply_weights(w))
        .await
        .expect("actuator hung");
    assert_requests_well_formed(server);
    result
}

/// The actuator only ever talks about the fixtures' VirtualService, only GETs and PATCHes it,
/// and every PATCH is a JSON Patch.
fn assert_requests_well_formed(server: &FakeApiServer) {
    for r in server.requests() {
        assert_eq!(r.path, mysql_path(), "request to an unexpected path: {r:?}");
        assert!(
            r.method == Method::GET || r.method == Method::PATCH,
            "unexpected method: {r:?}"
        );
        if r.method == Method::PATCH {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/json-patch+json"),
                "{r:?}"
            );
            let body = r.body.clone().expect("PATCH without a JSON body");
            serde_json::from_value::<json_patch::Patch>(body).expect("not a JSON Patch");
        }
    }
}

/// The PATCH requests the server saw, in order.
fn patches(server: &FakeApiServer) -> Vec<Seen> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PATCH)
        .collect()
}

/// The VirtualService as the server holds it now.
fn stored(server: &FakeApiServer) -> Value {
    server.get(&mysql_path()).expect("VirtualService gone")
}

/// The `resourceVersion` a PATCH tests (its first op).
fn tested_version(patch: &Seen) -> Value {
    let op = &patch.body.as_ref().unwrap()[0];
    assert_eq!(op["op"], "test");
    assert_eq!(op["path"], "/metadata/resourceVersion");
    op["value"].clone()
}

/// Checks the request sequence (GET/PATCH), every request's path, every PATCH's headers and
/// query.
fn assert_sequence(server: &FakeApiServer, methods: &[Method]) {
    let requests = server.requests();
    let seen: Vec<&Method> = requests.iter().map(|r| &r.method).collect();
    assert_eq!(seen, methods.iter().collect::<Vec<_>>(), "request sequence");
    for r in &requests {
        assert_eq!(r.path, mysql_path());
    }
    for p in patches(server) {
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert!(
            p.query.split('&').any(|kv| kv == "fieldManager=weir"),
            "query {:?}",
            p.query
        );
    }
}

/// Applies `patch` to `before` locally and checks that only the managed route's weights
/// changed, to `expected`.
fn assert_only_weights_change(before: &Value, patch: &Value, route_path: &str, expected: &[u64]) {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    let mut after = before.clone();
    json_patch::patch(&mut after, &patch).unwrap();
    assert_eq!(
        without_weights(&after, route_path),
        without_weights(before, route_path),
        "something other than the managed weights changed"
    );
    let got: Vec<Option<u64>> = after
        .pointer(&format!("{route_path}/route"))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.get("weight").and_then(Value::as_u64))
        .collect();
    let expected: Vec<Option<u64>> = expected.iter().copied().map(Some).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn http_route_by_name_two_services_sends_the_exact_patch() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(two_services());
    let before = stored(&server);
    let rv = before["metadata"]["resourceVersion"].clone();
    let result = apply(&server, config, &weights(30, &[40, 30])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&server, &[Method::GET, Method::PATCH]);
    let body = patches(&server)[0].body.clone().unwrap();
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
            { "op": "test", "path": "/spec/http/0/name", "value": "reads" },
            { "op": "test", "path": "/spec/http/0/route/0/destination",
              "value": { "host": "mysql-primary", "port": { "number": 8080 } } },
            { "op": "test", "path": "/spec/http/0/route/1/destination",
              "value": { "host": "mysql-replicas", "port": { "number": 8080 } } },
            { "op": "replace", "path": "/spec/http/0/route/0/weight", "value": 30 },
            { "op": "replace", "path": "/spec/http/0/route/1/weight", "value": 70 }
        ])
    );
    assert_only_weights_change(&before, &body, "/spec/http/0", &[30, 70]);
    // The server's copy: the write route, the catch-all and the TCP routes are untouched.
    let stored = stored(&server);
    assert_eq!(stored["spec"]["http"][1], two_services()["spec"]["http"][1]);
    assert_eq!(stored["spec"]["http"][2], two_services()["spec"]["http"][2]);
    assert_eq!(stored["spec"]["tcp"], two_services()["spec"]["tcp"]);
}

#[tokio::test]
async fn tcp_route_by_port_two_services_sends_the_exact_patch() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = serve(two_services());
    let before = stored(&server);
    let rv = before["metadata"]["resourceVersion"].clone();
    let result = apply(&server, config, &weights(25, &[50, 25])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&server, &[Method::GET, Method::PATCH]);
    let body = patches(&server)[0].body.clone().unwrap();
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
            { "op": "test", "path": "/spec/tcp/0/match", "value": [{ "port": 3306 }] },
            { "op": "test", "path": "/spec/tcp/0/route/0/destination",
              "value": { "host": "mysql-primary", "port": { "number": 3306 } } },
            { "op": "test", "path": "/spec/tcp/0/route/1/destination",
              "value": { "host": "mysql-replicas", "port": { "number": 3306 } } },
            { "op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 25 },
            { "op": "replace", "path": "/spec/tcp/0/route/1/weight", "value": 75 }
        ])
    );
    assert_only_weights_change(&before, &body, "/spec/tcp/0", &[25, 75]);
}

#[tokio::test]
async fn http_route_by_name_per_replica_sends_the_exact_patch() {
    let config = per_replica_config(RouteSelector::HttpName("reads".into()));
    let server = serve(per_replica());
    let before = stored(&server);
    let rv = before["metadata"]["resourceVersion"].clone();
    let result = apply(&server, config, &weights(10, &[60, 30])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&server, &[Method::GET, Method::PATCH]);
    let body = patches(&server)[0].body.clone().unwrap();
    let host = "mysql.db.svc.cluster.local";
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
            { "op": "test", "path": "/spec/http/0/name", "value": "reads" },
            { "op": "test", "path": "/spec/http/0/route/0/destination",
              "value": { "host": host, "subset": "primary" } },
            { "op": "test", "path": "/spec/http/0/route/1/destination",
              "value": { "host": host, "subset": "replica-0" } },
            { "op": "test", "path": "/spec/http/0/route/2/destination",
              "value": { "host": host, "subset": "replica-1" } },
            { "op": "replace", "path": "/spec/http/0/route/0/weight", "value": 10 },
            { "op": "replace", "path": "/spec/http/0/route/1/weight", "value": 60 },
            { "op": "replace", "path": "/spec/http/0/route/2/weight", "value": 30 }
        ])
    );
    assert_only_weights_change(&before, &body, "/spec/http/0", &[10, 60, 30]);
}

#[tokio::test]
async fn tcp_route_by_port_per_replica_adds_a_missing_weight() {
    let config = per_replica_config(RouteSelector::TcpPort(3306));
    let server = serve(per_replica());
    let before = stored(&server);
    let rv = before["metadata"]["resourceVersion"].clone();
    let result = apply(&server, config, &weights(0, &[50, 50])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&server, &[Method::GET, Method::PATCH]);
    let body = patches(&server)[0].body.clone().unwrap();
    let dest = |subset: &str| json!({ "host": "mysql.db.svc.cluster.local", "port": { "number": 3306 }, "subset": subset });
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": rv },
            { "op": "test", "path": "/spec/tcp/0/match",
              "value": [{ "port": 3306, "sourceLabels": { "app": "shop" } }] },
            { "op": "test", "path": "/spec/tcp/0/route/0/destination", "value": dest("primary") },
            { "op": "test", "path": "/spec/tcp/0/route/1/destination", "value": dest("replica-0") },
            { "op": "test", "path": "/spec/tcp/0/route/2/destination", "value": dest("replica-1") },
            { "op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 0 },
            { "op": "replace", "path": "/spec/tcp/0/route/1/weight", "value": 50 },
            { "op": "add", "path": "/spec/tcp/0/route/2/weight", "value": 50 }
        ])
    );
    assert_only_weights_change(&before, &body, "/spec/tcp/0", &[0, 50, 50]);
}

#[tokio::test]
async fn weights_already_in_place_send_nothing() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = serve(two_services());
    let result = apply(&server, config, &weights(10, &[45, 45])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Unchanged);
    assert_sequence(&server, &[Method::GET]);
}

#[tokio::test]
async fn conflict_409_rereads_and_succeeds_on_the_second_attempt() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(two_services());
    server.force_nth_patch(&mysql_path(), 0, 409);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    assert_sequence(
        &server,
        &[Method::GET, Method::PATCH, Method::GET, Method::PATCH],
    );
    let stored = stored(&server);
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 30);
    assert_eq!(stored["spec"]["http"][0]["route"][1]["weight"], 70);
}

#[tokio::test]
async fn failed_test_422_after_a_concurrent_write_rereads_and_keeps_the_other_edit() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(two_services());
    let first_read = stored(&server)["metadata"]["resourceVersion"].clone();
    server.interfere_before_patch(&mysql_path(), 0, unrelated_edit);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    assert_sequence(
        &server,
        &[Method::GET, Method::PATCH, Method::GET, Method::PATCH],
    );
    let patches = patches(&server);
    assert_eq!(tested_version(&patches[0]), first_read);
    // The retry tests the version the concurrent writer produced: not the one first read, and
    // not the one our own write produced. The server held only these three, and it applied the
    // retry, so the version it tested was the current one then.
    let stored = stored(&server);
    let retry = tested_version(&patches[1]);
    assert_ne!(retry, first_read);
    assert_ne!(retry, stored["metadata"]["resourceVersion"]);
    assert_eq!(stored["spec"]["http"][1]["timeout"], "31s");
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 30);
}

#[tokio::test]
async fn a_route_moved_by_another_writer_is_found_again_at_its_new_index() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(two_services());
    server.interfere_before_patch(&mysql_path(), 0, |vs| {
        let routes = vs["spec"]["http"].as_array_mut().unwrap();
        routes.insert(
            0,
            json!({ "name": "canary", "route": [{ "destination": { "host": "mysql-canary" } }] }),
        );
    });
    let result = apply(&server, config, &weights(50, &[25, 25])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    let retry = patches(&server)[1].body.clone().unwrap();
    assert_eq!(
        retry[1],
        json!({ "op": "test", "path": "/spec/http/1/name", "value": "reads" })
    );
    let stored = stored(&server);
    assert_eq!(stored["spec"]["http"][0]["name"], "canary");
    assert!(
        stored["spec"]["http"][0]["route"][0]
            .get("weight")
            .is_none()
    );
    assert_eq!(stored["spec"]["http"][1]["route"][0]["weight"], 50);
    assert_eq!(stored["spec"]["http"][1]["route"][1]["weight"], 50);
}

#[tokio::test]
async fn persistent_conflict_gives_up_after_max_retries() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    assert_eq!(config.max_retries, 3);
    let server = serve(two_services());
    let before = stored(&server);
    for n in 0..4 {
        server.force_nth_patch(&mysql_path(), n, 409);
    }
    let mut actuator = IstioActuator::new(server.client(), config);
    let err = actuator
        .apply(&decision(weights(30, &[35, 35])))
        .await
        .unwrap_err();
    assert_requests_well_formed(&server);
    assert!(matches!(err, ActuatorError::Conflict(_)), "{err:?}");
    assert_eq!(err.kind(), "conflict");
    assert_eq!(patches(&server).len(), 4, "one attempt plus max_retries");
    assert_eq!(server.requests().len(), 8);
    assert_eq!(stored(&server), before);
}

#[tokio::test]
async fn a_422_on_an_unchanged_object_is_a_refusal_not_a_race() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = serve(two_services());
    server.force_nth_patch(&mysql_path(), 0, 422);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Refused { code: 422, .. }),
        "{err:?}"
    );
    assert_eq!(ActuatorError::from(err).kind(), "rejected");
    assert_eq!(patches(&server).len(), 1);
}

#[tokio::test]
async fn forbidden_is_rejected_without_retry() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = serve(two_services());
    server.force_nth_patch(&mysql_path(), 0, 403);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Refused { code: 403, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot patch"), "{err}");
    assert_sequence(&server, &[Method::GET, Method::PATCH]);
}

#[tokio::test]
async fn missing_virtual_service_is_an_error_and_nothing_is_patched() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = FakeApiServer::new();
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        IstioError::VirtualServiceNotFound {
            namespace: "db".into(),
            name: "mysql".into()
        }
    );
    assert_eq!(err.to_string(), "VirtualService db/mysql not found");
    assert_eq!(ActuatorError::from(err).kind(), "rejected");
    assert_sequence(&server, &[Method::GET]);
}

#[tokio::test]
async fn route_not_found_names_the_selector_and_patches_nothing() {
    for selector in [
        RouteSelector::HttpName("read".into()),
        RouteSelector::TcpPort(5432),
        RouteSelector::Hosts(vec!["postgres".into()]),
    ] {
        let config = two_services_config(selector.clone());
        let server = serve(two_services());
        let result = apply(&server, config, &weights(30, &[35, 35])).await;
        let err = result.unwrap_err();
        assert!(matches!(err, IstioError::RouteNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&selector.to_string()), "{text}");
        assert!(text.contains("\"reads\", \"writes\", <unnamed>"), "{text}");
        assert!(text.contains("port 3306, port 3307"), "{text}");
        assert_sequence(&server, &[Method::GET]);
    }
}

#[tokio::test]
async fn ambiguous_route_is_an_error_and_patches_nothing() {
    // The reads route and the 3306 TCP route both go to exactly these two hosts.
    let config = two_services_config(RouteSelector::Hosts(vec![
        "mysql-replicas".into(),
        "mysql-primary".into(),
    ]));
    let server = serve(two_services());
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::AmbiguousRoute { count: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/spec/http/0, /spec/tcp/0"),
        "{err}"
    );
    assert_sequence(&server, &[Method::GET]);

    // Two HTTP routes with the same name: Istio allows it, Weir will not guess.
    let mut vs = two_services();
    vs["spec"]["http"][1]["name"] = json!("reads");
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(vs);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    assert!(matches!(result, Err(IstioError::AmbiguousRoute { .. })));
    assert_sequence(&server, &[Method::GET]);
}

#[tokio::test]
async fn unexpected_layout_is_an_error_and_patches_nothing() {
    let mut vs = two_services();
    vs["spec"]["tcp"][0]["route"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "destination": { "host": "mysql-analytics" }, "weight": 0 }));
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = serve(vs);
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::UnexpectedLayout { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unexpected layout at /spec/tcp/0: expected destinations [mysql-primary (primary), \
         mysql-replicas (replicas)], found [mysql-primary, mysql-replicas, mysql-analytics]"
    );
    assert_sequence(&server, &[Method::GET]);

    // A per-replica route whose subsets are not the configured ones.
    let mut vs = per_replica();
    vs["spec"]["http"][0]["route"][2]["destination"]["subset"] = json!("replica-2");
    let config = per_replica_config(RouteSelector::HttpName("reads".into()));
    let server = serve(vs);
    let result = apply(&server, config, &weights(10, &[45, 45])).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("mysql.db.svc.cluster.local/replica-2"),
        "{err}"
    );
    assert_sequence(&server, &[Method::GET]);
}

#[tokio::test]
async fn invalid_weights_are_never_sent() {
    let cases = [
        (
            two_services_config(RouteSelector::TcpPort(3306)),
            two_services(),
            weights(0, &[0, 0]),
        ),
        (
            per_replica_config(RouteSelector::TcpPort(3306)),
            per_replica(),
            weights(0, &[0, 0]),
        ),
        (
            per_replica_config(RouteSelector::TcpPort(3306)),
            per_replica(),
            weights(40, &[60]),
        ),
        (
            per_replica_config(RouteSelector::TcpPort(3306)),
            per_replica(),
            weights(u32::MAX, &[0, 0]),
        ),
        (
            two_services_config(RouteSelector::TcpPort(3306)),
            two_services(),
            weights(1, &[i32::MAX as u32, 1]),
        ),
    ];
    for (config, vs, w) in cases {
        let server = serve(vs);
        let result = apply(&server, config, &w).await;
        let err = result.unwrap_err();
        assert!(matches!(err, IstioError::InvalidWeights(_)), "{w}: {err:?}");
        assert!(patches(&server).is_empty(), "{w} was sent");
    }
}

#[tokio::test]
async fn plan_shows_the_patch_without_writing() {
    let server = serve(per_replica());
    let actuator = IstioActuator::new(
        server.client(),
        per_replica_config(RouteSelector::TcpPort(3306)),
    );
    let d = decision(weights(20, &[40, 40]));
    let patch = actuator.plan(&d).await.unwrap();
    let as_json = actuator.plan_json(&d).await.unwrap();
    assert_eq!(serde_json::to_value(&patch).unwrap(), as_json);
    assert_eq!(as_json.as_array().unwrap().len(), 8);
    assert_eq!(
        as_json[7],
        json!({ "op": "add", "path": "/spec/tcp/0/route/2/weight", "value": 40 })
    );
    assert_requests_well_formed(&server);
    assert_sequence(&server, &[Method::GET, Method::GET]);
}

#[tokio::test]
async fn read_current_normalises_to_weir_weights() {
    let server = serve(two_services());
    let two = IstioActuator::new(
        server.client(),
        two_services_config(RouteSelector::TcpPort(3306)),
    );
    // 10 / 90 on the two services: the reader's 90 is split evenly over two replicas.
    assert_eq!(two.read_current(2).await.unwrap(), weights(10, &[45, 45]));
    assert_eq!(
        two.read_current(3).await.unwrap(),
        weights(10, &[30, 30, 30])
    );
    assert_requests_well_formed(&server);

    let server = serve(per_replica());
    let per = IstioActuator::new(
        server.client(),
        per_replica_config(RouteSelector::TcpPort(3306)),
    );
    // 0 / 100 / (absent) per subset.
    assert_eq!(per.read_current(2).await.unwrap(), weights(0, &[100, 0]));
    assert!(matches!(
        per.read_current(3).await,
        Err(IstioError::InvalidWeights(_))
    ));
    assert_requests_well_formed(&server);
}

#[tokio::test]
async fn actuator_trait_applies_and_names_itself() {
    let server = serve(two_services());
    let mut actuator = IstioActuator::new(
        server.client(),
        two_services_config(RouteSelector::HttpName("reads".into())),
    );
    assert_eq!(actuator.name(), "istio");
    actuator
        .apply(&decision(weights(100, &[0, 0])))
        .await
        .unwrap();
    // Applying the same decision again is idempotent: one more GET, no PATCH.
    actuator
        .apply(&decision(weights(100, &[0, 0])))
        .await
        .unwrap();
    assert_requests_well_formed(&server);
    assert_sequence(&server, &[Method::GET, Method::PATCH, Method::GET]);
    let stored = stored(&server);
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 100);
    assert_eq!(stored["spec"]["http"][0]["route"][1]["weight"], 0);
}

#[tokio::test]
async fn a_writer_that_always_gets_in_first_ends_in_conflict() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = serve(two_services());
    let first_read = stored(&server)["metadata"]["resourceVersion"].clone();
    for n in 0..4 {
        server.interfere_before_patch(&mysql_path(), n, unrelated_edit);
    }
    let result = apply(&server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Conflict { attempts: 4, .. }),
        "{err:?}"
    );
    let patches = patches(&server);
    assert_eq!(patches.len(), 4);
    // Every failed test was followed by a fresh read: each attempt tested a version no earlier
    // attempt had seen, the first the original one, and the writer's fourth edit came after
    // the last read. No weight was ever written.
    let stored = stored(&server);
    let mut versions: Vec<Value> = patches.iter().map(tested_version).collect();
    assert_eq!(versions[0], first_read);
    versions.push(stored["metadata"]["resourceVersion"].clone());
    for (i, v) in versions.iter().enumerate() {
        assert!(
            !versions[..i].contains(v),
            "version {v} seen twice: {versions:?}"
        );
    }
    assert_eq!(stored["spec"]["http"][0], two_services()["spec"]["http"][0]);
    assert_eq!(stored["spec"]["http"][1]["timeout"], "31s");
}
