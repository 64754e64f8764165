//! The Istio actuator against a fake API server: the exact patch it sends, that the patch
//! changes nothing but the managed weights, retries on lost races, and refusals that never
//! reach a PATCH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::Duration;

use fixtures::{
    FakeApiServer, Transcript, VS_PATH, per_replica, per_replica_config, two_services,
    two_services_config, unrelated_edit, without_weights,
};
use http::Method;
use serde_json::{Value, json};
use weir_controller::{Actuator, ActuatorError};
use weir_core::{Decision, Proposal, Weights};
use weir_istio::{ApplyOutcome, IstioActuator, IstioConfig, IstioError, RouteSelector};

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

/// Runs `apply_weights` against a fake server and returns the result with the transcript.
async fn apply(
    server: FakeApiServer,
    config: IstioConfig,
    w: &Weights,
) -> (Result<ApplyOutcome, IstioError>, Transcript) {
    let (client, task) = server.start();
    let actuator = IstioActuator::new(client, config);
    let result = tokio::time::timeout(Duration::from_secs(10), actuator.apply_weights(w))
        .await
        .expect("actuator hung");
    drop(actuator);
    let transcript = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("fake API server hung")
        .unwrap();
    (result, transcript)
}

/// Checks the request sequence (GET/PATCH), every PATCH's headers and query.
fn assert_sequence(t: &Transcript, methods: &[Method]) {
    let seen: Vec<&Method> = t.requests.iter().map(|r| &r.method).collect();
    assert_eq!(seen, methods.iter().collect::<Vec<_>>(), "request sequence");
    for r in &t.requests {
        assert_eq!(r.path, VS_PATH);
    }
    for p in t.patches() {
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
    let (result, t) = apply(
        FakeApiServer::with(two_services()),
        config,
        &weights(30, &[40, 30]),
    )
    .await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&t, &[Method::GET, Method::PATCH]);
    let body = t.patches()[0].body.clone().unwrap();
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": "48213" },
            { "op": "test", "path": "/spec/http/0/name", "value": "reads" },
            { "op": "test", "path": "/spec/http/0/route/0/destination",
              "value": { "host": "mysql-primary", "port": { "number": 8080 } } },
            { "op": "test", "path": "/spec/http/0/route/1/destination",
              "value": { "host": "mysql-replicas", "port": { "number": 8080 } } },
            { "op": "replace", "path": "/spec/http/0/route/0/weight", "value": 30 },
            { "op": "replace", "path": "/spec/http/0/route/1/weight", "value": 70 }
        ])
    );
    assert_only_weights_change(&two_services(), &body, "/spec/http/0", &[30, 70]);
    // The server's copy: the write route, the catch-all and the TCP routes are untouched.
    let stored = t.object.unwrap();
    assert_eq!(stored["spec"]["http"][1], two_services()["spec"]["http"][1]);
    assert_eq!(stored["spec"]["http"][2], two_services()["spec"]["http"][2]);
    assert_eq!(stored["spec"]["tcp"], two_services()["spec"]["tcp"]);
}

#[tokio::test]
async fn tcp_route_by_port_two_services_sends_the_exact_patch() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let (result, t) = apply(
        FakeApiServer::with(two_services()),
        config,
        &weights(25, &[50, 25]),
    )
    .await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&t, &[Method::GET, Method::PATCH]);
    let body = t.patches()[0].body.clone().unwrap();
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": "48213" },
            { "op": "test", "path": "/spec/tcp/0/match", "value": [{ "port": 3306 }] },
            { "op": "test", "path": "/spec/tcp/0/route/0/destination",
              "value": { "host": "mysql-primary", "port": { "number": 3306 } } },
            { "op": "test", "path": "/spec/tcp/0/route/1/destination",
              "value": { "host": "mysql-replicas", "port": { "number": 3306 } } },
            { "op": "replace", "path": "/spec/tcp/0/route/0/weight", "value": 25 },
            { "op": "replace", "path": "/spec/tcp/0/route/1/weight", "value": 75 }
        ])
    );
    assert_only_weights_change(&two_services(), &body, "/spec/tcp/0", &[25, 75]);
}

#[tokio::test]
async fn http_route_by_name_per_replica_sends_the_exact_patch() {
    let config = per_replica_config(RouteSelector::HttpName("reads".into()));
    let (result, t) = apply(
        FakeApiServer::with(per_replica()),
        config,
        &weights(10, &[60, 30]),
    )
    .await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&t, &[Method::GET, Method::PATCH]);
    let body = t.patches()[0].body.clone().unwrap();
    let host = "mysql.db.svc.cluster.local";
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": "91377" },
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
    assert_only_weights_change(&per_replica(), &body, "/spec/http/0", &[10, 60, 30]);
}

#[tokio::test]
async fn tcp_route_by_port_per_replica_adds_a_missing_weight() {
    let config = per_replica_config(RouteSelector::TcpPort(3306));
    let (result, t) = apply(
        FakeApiServer::with(per_replica()),
        config,
        &weights(0, &[50, 50]),
    )
    .await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 1 });
    assert_sequence(&t, &[Method::GET, Method::PATCH]);
    let body = t.patches()[0].body.clone().unwrap();
    let dest = |subset: &str| json!({ "host": "mysql.db.svc.cluster.local", "port": { "number": 3306 }, "subset": subset });
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": "91377" },
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
    assert_only_weights_change(&per_replica(), &body, "/spec/tcp/0", &[0, 50, 50]);
}

#[tokio::test]
async fn weights_already_in_place_send_nothing() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let (result, t) = apply(
        FakeApiServer::with(two_services()),
        config,
        &weights(10, &[45, 45]),
    )
    .await;
    assert_eq!(result.unwrap(), ApplyOutcome::Unchanged);
    assert_sequence(&t, &[Method::GET]);
}

#[tokio::test]
async fn conflict_409_rereads_and_succeeds_on_the_second_attempt() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = FakeApiServer::with(two_services()).force_patch_status(0, 409);
    let (result, t) = apply(server, config, &weights(30, &[35, 35])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    assert_sequence(
        &t,
        &[Method::GET, Method::PATCH, Method::GET, Method::PATCH],
    );
    let stored = t.object.unwrap();
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 30);
    assert_eq!(stored["spec"]["http"][0]["route"][1]["weight"], 70);
}

#[tokio::test]
async fn failed_test_422_after_a_concurrent_write_rereads_and_keeps_the_other_edit() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = FakeApiServer::with(two_services()).interfere_before_patch(0, unrelated_edit);
    let (result, t) = apply(server, config, &weights(30, &[35, 35])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    assert_sequence(
        &t,
        &[Method::GET, Method::PATCH, Method::GET, Method::PATCH],
    );
    let patches = t.patches();
    assert_eq!(patches[0].body.as_ref().unwrap()[0]["value"], "48213");
    // The retry tests the version the concurrent writer produced.
    assert_eq!(patches[1].body.as_ref().unwrap()[0]["value"], "48214");
    let stored = t.object.unwrap();
    assert_eq!(stored["spec"]["http"][1]["timeout"], "31s");
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 30);
}

#[tokio::test]
async fn a_route_moved_by_another_writer_is_found_again_at_its_new_index() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = FakeApiServer::with(two_services()).interfere_before_patch(0, |vs| {
        let routes = vs["spec"]["http"].as_array_mut().unwrap();
        routes.insert(
            0,
            json!({ "name": "canary", "route": [{ "destination": { "host": "mysql-canary" } }] }),
        );
    });
    let (result, t) = apply(server, config, &weights(50, &[25, 25])).await;
    assert_eq!(result.unwrap(), ApplyOutcome::Patched { attempts: 2 });
    let retry = t.patches()[1].body.clone().unwrap();
    assert_eq!(
        retry[1],
        json!({ "op": "test", "path": "/spec/http/1/name", "value": "reads" })
    );
    let stored = t.object.unwrap();
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
    let server = (0..4).fold(FakeApiServer::with(two_services()), |s, n| {
        s.force_patch_status(n, 409)
    });
    let (client, task) = server.start();
    let mut actuator = IstioActuator::new(client, config);
    let err = actuator
        .apply(&decision(weights(30, &[35, 35])))
        .await
        .unwrap_err();
    drop(actuator);
    let t = task.await.unwrap();
    assert!(matches!(err, ActuatorError::Conflict(_)), "{err:?}");
    assert_eq!(err.kind(), "conflict");
    assert_eq!(t.patches().len(), 4, "one attempt plus max_retries");
    assert_eq!(t.requests.len(), 8);
    assert_eq!(t.object.unwrap(), two_services());
}

#[tokio::test]
async fn a_422_on_an_unchanged_object_is_a_refusal_not_a_race() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = FakeApiServer::with(two_services()).force_patch_status(0, 422);
    let (result, t) = apply(server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Refused { code: 422, .. }),
        "{err:?}"
    );
    assert_eq!(ActuatorError::from(err).kind(), "rejected");
    assert_eq!(t.patches().len(), 1);
}

#[tokio::test]
async fn forbidden_is_rejected_without_retry() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let server = FakeApiServer::with(two_services()).force_patch_status(0, 403);
    let (result, t) = apply(server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Refused { code: 403, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot patch"), "{err}");
    assert_sequence(&t, &[Method::GET, Method::PATCH]);
}

#[tokio::test]
async fn missing_virtual_service_is_an_error_and_nothing_is_patched() {
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let (result, t) = apply(FakeApiServer::empty(), config, &weights(30, &[35, 35])).await;
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
    assert_sequence(&t, &[Method::GET]);
}

#[tokio::test]
async fn route_not_found_names_the_selector_and_patches_nothing() {
    for selector in [
        RouteSelector::HttpName("read".into()),
        RouteSelector::TcpPort(5432),
        RouteSelector::Hosts(vec!["postgres".into()]),
    ] {
        let config = two_services_config(selector.clone());
        let (result, t) = apply(
            FakeApiServer::with(two_services()),
            config,
            &weights(30, &[35, 35]),
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, IstioError::RouteNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&selector.to_string()), "{text}");
        assert!(text.contains("\"reads\", \"writes\", <unnamed>"), "{text}");
        assert!(text.contains("port 3306, port 3307"), "{text}");
        assert_sequence(&t, &[Method::GET]);
    }
}

#[tokio::test]
async fn ambiguous_route_is_an_error_and_patches_nothing() {
    // The reads route and the 3306 TCP route both go to exactly these two hosts.
    let config = two_services_config(RouteSelector::Hosts(vec![
        "mysql-replicas".into(),
        "mysql-primary".into(),
    ]));
    let (result, t) = apply(
        FakeApiServer::with(two_services()),
        config,
        &weights(30, &[35, 35]),
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::AmbiguousRoute { count: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/spec/http/0, /spec/tcp/0"),
        "{err}"
    );
    assert_sequence(&t, &[Method::GET]);

    // Two HTTP routes with the same name: Istio allows it, Weir will not guess.
    let mut vs = two_services();
    vs["spec"]["http"][1]["name"] = json!("reads");
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let (result, t) = apply(FakeApiServer::with(vs), config, &weights(30, &[35, 35])).await;
    assert!(matches!(result, Err(IstioError::AmbiguousRoute { .. })));
    assert_sequence(&t, &[Method::GET]);
}

#[tokio::test]
async fn unexpected_layout_is_an_error_and_patches_nothing() {
    let mut vs = two_services();
    vs["spec"]["tcp"][0]["route"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "destination": { "host": "mysql-analytics" }, "weight": 0 }));
    let config = two_services_config(RouteSelector::TcpPort(3306));
    let (result, t) = apply(FakeApiServer::with(vs), config, &weights(30, &[35, 35])).await;
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
    assert_sequence(&t, &[Method::GET]);

    // A per-replica route whose subsets are not the configured ones.
    let mut vs = per_replica();
    vs["spec"]["http"][0]["route"][2]["destination"]["subset"] = json!("replica-2");
    let config = per_replica_config(RouteSelector::HttpName("reads".into()));
    let (result, t) = apply(FakeApiServer::with(vs), config, &weights(10, &[45, 45])).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("mysql.db.svc.cluster.local/replica-2"),
        "{err}"
    );
    assert_sequence(&t, &[Method::GET]);
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
        let (result, t) = apply(FakeApiServer::with(vs), config, &w).await;
        let err = result.unwrap_err();
        assert!(matches!(err, IstioError::InvalidWeights(_)), "{w}: {err:?}");
        assert!(t.patches().is_empty(), "{w} was sent");
    }
}

#[tokio::test]
async fn plan_shows_the_patch_without_writing() {
    let (client, task) = FakeApiServer::with(per_replica()).start();
    let actuator = IstioActuator::new(client, per_replica_config(RouteSelector::TcpPort(3306)));
    let d = decision(weights(20, &[40, 40]));
    let patch = actuator.plan(&d).await.unwrap();
    let as_json = actuator.plan_json(&d).await.unwrap();
    assert_eq!(serde_json::to_value(&patch).unwrap(), as_json);
    assert_eq!(as_json.as_array().unwrap().len(), 8);
    assert_eq!(
        as_json[7],
        json!({ "op": "add", "path": "/spec/tcp/0/route/2/weight", "value": 40 })
    );
    drop(actuator);
    let t = task.await.unwrap();
    assert_sequence(&t, &[Method::GET, Method::GET]);
}

#[tokio::test]
async fn read_current_normalises_to_weir_weights() {
    let (client, task) = FakeApiServer::with(two_services()).start();
    let two = IstioActuator::new(client, two_services_config(RouteSelector::TcpPort(3306)));
    // 10 / 90 on the two services: the reader's 90 is split evenly over two replicas.
    assert_eq!(two.read_current(2).await.unwrap(), weights(10, &[45, 45]));
    assert_eq!(
        two.read_current(3).await.unwrap(),
        weights(10, &[30, 30, 30])
    );
    drop(two);
    task.await.unwrap();

    let (client, task) = FakeApiServer::with(per_replica()).start();
    let per = IstioActuator::new(client, per_replica_config(RouteSelector::TcpPort(3306)));
    // 0 / 100 / (absent) per subset.
    assert_eq!(per.read_current(2).await.unwrap(), weights(0, &[100, 0]));
    assert!(matches!(
        per.read_current(3).await,
        Err(IstioError::InvalidWeights(_))
    ));
    drop(per);
    task.await.unwrap();
}

#[tokio::test]
async fn actuator_trait_applies_and_names_itself() {
    let (client, task) = FakeApiServer::with(two_services()).start();
    let mut actuator = IstioActuator::new(
        client,
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
    drop(actuator);
    let t = task.await.unwrap();
    assert_sequence(&t, &[Method::GET, Method::PATCH, Method::GET]);
    let stored = t.object.unwrap();
    assert_eq!(stored["spec"]["http"][0]["route"][0]["weight"], 100);
    assert_eq!(stored["spec"]["http"][0]["route"][1]["weight"], 0);
}

#[tokio::test]
async fn a_writer_that_always_gets_in_first_ends_in_conflict() {
    let config = two_services_config(RouteSelector::HttpName("reads".into()));
    let server = (0..4).fold(FakeApiServer::with(two_services()), |s, n| {
        s.interfere_before_patch(n, unrelated_edit)
    });
    let (result, t) = apply(server, config, &weights(30, &[35, 35])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, IstioError::Conflict { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(t.patches().len(), 4);
    // Every failed test was followed by a fresh read; no weight was ever written.
    let stored = t.object.unwrap();
    assert_eq!(stored["spec"]["http"][0], two_services()["spec"]["http"][0]);
    assert_eq!(stored["metadata"]["resourceVersion"], "48217");
}
