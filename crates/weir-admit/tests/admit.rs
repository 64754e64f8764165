//! The layer in front of a real axum router, driven through tower: admission at the limit,
//! immediate rejections (HTTP and gRPC), exempt health checks, no slot leaked by a panic,
//! and no rejected request reaching the controller.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use weir_admit::{
    AdmitLayer, Class, ClassShares, Config, Controller, Explanation, Gate, GateMetrics, Outcome,
    Partition, Reason, Rejection, Sample, Static,
};

/// A fixed limit that records every sample it is given.
struct Recording {
    limit: u32,
    samples: Mutex<Vec<Sample>>,
}

impl Controller for Recording {
    fn limit(&self) -> u32 {
        self.limit
    }
    fn on_sample(&self, s: Sample) {
        if let Ok(mut v) = self.samples.lock() {
            v.push(s);
        }
    }
    fn name(&self) -> &'static str {
        "recording"
    }
    fn explain(&self) -> Explanation {
        Explanation {
            controller: "recording",
            limit: self.limit,
            state: String::new(),
            why: "a test double".into(),
        }
    }
}

/// A router whose `/work`, `/a` and `/b` wait until the test lets them finish, `/boom`
/// panics.
fn app(release: Arc<Semaphore>) -> Router {
    let held = get(move || {
        let release = release.clone();
        async move {
            let _ = release.acquire().await.map(|p| p.forget());
            "done"
        }
    });
    Router::new()
        .route("/work", held.clone())
        .route("/a", held.clone())
        .route("/b", held)
        .route("/healthz", get(|| async { "ok" }))
        .route("/boom", get(boom))
}

async fn boom() -> &'static str {
    panic!("the handler fails")
}

fn req(path: &str) -> Request<Body> {
    Request::get(path)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn setup(limit: u32, config: &Config) -> (Arc<Recording>, Arc<Gate>, Arc<Semaphore>, Router) {
    let rec = Arc::new(Recording {
        limit,
        samples: Mutex::new(Vec::new()),
    });
    let gate =
        Gate::new(rec.clone(), config, Arc::new(Instant::now)).unwrap_or_else(|e| panic!("{e}"));
    let release = Arc::new(Semaphore::new(0));
    let router = AdmitLayer::new(gate.clone()).layer(app(release.clone()));
    (rec, gate, release, Router::new().fallback_service(router))
}

/// Waits until `n` requests are in flight and every admission has been counted (the gate
/// takes the slot before it counts it). Only for tests in which nothing has finished yet.
async fn until_in_flight(gate: &Gate, n: u32) {
    while gate.in_flight() != n || gate.counts().0 != u64::from(n) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_requests_are_rejected_at_once_and_never_sampled() {
    let (rec, gate, release, app) = setup(2, &Config::default());
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::spawn(app.clone().oneshot(req("/work"))));
    }
    until_in_flight(&gate, 2).await;
    // Full: answered without waiting for a slot (the held requests are still blocked).
    for _ in 0..3 {
        let r = app.clone().oneshot(req("/work")).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(
            r.extensions().get::<Rejection>(),
            Some(&Rejection {
                limit: 2,
                in_flight: 2,
                class: Class::Default,
                reason: Reason::OverLimit,
            })
        );
    }
    // Health checks pass whatever the load, and take no slot.
    let r = app.clone().oneshot(req("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gate.in_flight(), 2);

    release.add_permits(2);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(gate.in_flight(), 0);
    assert_eq!(gate.counts(), (2, 3));
    let samples = rec.samples.lock().unwrap().clone();
    assert_eq!(samples.len(), 2, "rejected requests feed no sample");
    assert!(samples.iter().all(|s| s.outcome == Outcome::Success));
    assert!(samples.iter().all(|s| (1..=2).contains(&s.in_flight)));
    // A slot freed is a slot to use.
    release.add_permits(1);
    let r = app.clone().oneshot(req("/work")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_resource_exhausted_and_503_is_configurable() {
    let config = Config {
        reject_status: 503,
        retry_after_s: 3,
        ..Config::default()
    };
    let (_rec, gate, release, app) = setup(1, &config);
    let held = tokio::spawn(app.clone().oneshot(req("/work")));
    until_in_flight(&gate, 1).await;
    let grpc = Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc+proto")
        .body(Body::empty())
        .unwrap();
    let r = app.clone().oneshot(grpc).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "gRPC errors travel in grpc-status"
    );
    assert_eq!(r.headers()["grpc-status"], "8");
    assert_eq!(r.headers()["content-type"], "application/grpc");
    let r = app.clone().oneshot(req("/work")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "3");
    release.add_permits(1);
    held.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_gives_its_slot_back_and_reports_no_latency() {
    let (rec, gate, _release, app) = setup(1, &Config::default());
    for _ in 0..3 {
        let joined = tokio::spawn(app.clone().oneshot(req("/boom"))).await;
        assert!(joined.is_err_and(|e| e.is_panic()));
        assert_eq!(gate.in_flight(), 0, "the slot came back");
    }
    assert_eq!(gate.counts(), (3, 0), "each was admitted: nothing leaked");
    let samples = rec.samples.lock().unwrap().clone();
    assert_eq!(samples.len(), 3);
    assert!(samples.iter().all(|s| s.outcome == Outcome::Dropped));
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let stat = Arc::new(Static::new(4).unwrap());
    let bad = |c: Config| {
        AdmitLayer::with(stat.clone(), &c)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = bad(Config {
        reject_status: 500,
        ..Config::default()
    });
    assert_eq!(e, "reject_status = 500: must be 429 or 503");
    let e = bad(Config {
        retry_after_s: 0,
        ..Config::default()
    });
    assert!(e.starts_with("retry_after_s = 0: "), "{e}");
    assert!(Static::new(0).is_err());
}

fn req_as(path: &str, class: &str) -> Request<Body> {
    Request::get(path)
        .header("x-weir-criticality", class)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheddable_requests_are_refused_first_and_critical_ones_last() {
    let (_rec, gate, release, app) = setup(10, &Config::default());
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(tokio::spawn(app.clone().oneshot(req("/work"))));
    }
    until_in_flight(&gate, 7).await;
    // 7 of 10 taken: over sheddable's 70 %, under the limit.
    let r = app
        .clone()
        .oneshot(req_as("/work", "sheddable"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let why = r.extensions().get::<Rejection>().copied().unwrap();
    assert_eq!(
        (why.class, why.reason),
        (Class::Sheddable, Reason::ClassShare)
    );
    // Default traffic has the whole limit; then only critical gets in (10 % headroom).
    for _ in 0..3 {
        held.push(tokio::spawn(app.clone().oneshot(req("/work"))));
    }
    until_in_flight(&gate, 10).await;
    let r = app
        .clone()
        .oneshot(req_as("/work", "Default"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // An unknown class value is default, never critical.
    let r = app.clone().oneshot(req_as("/work", "vip")).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The class can also come from an earlier layer, through the request's extensions.
    let mut critical = req_as("/work", "sheddable");
    critical.extensions_mut().insert(Class::Critical);
    held.push(tokio::spawn(app.clone().oneshot(critical)));
    until_in_flight(&gate, 11).await;
    let r = app
        .clone()
        .oneshot(req_as("/work", "critical"))
        .await
        .unwrap();
    let why = r.extensions().get::<Rejection>().copied().unwrap();
    assert_eq!(
        (why.class, why.reason),
        (Class::Critical, Reason::OverLimit)
    );
    assert_eq!(gate.class_counts(Class::Critical), (1, 1));
    assert_eq!(gate.class_counts(Class::Sheddable), (0, 1));
    assert_eq!(gate.class_counts(Class::Default), (10, 2));
    release.add_permits(11);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_keeps_its_share_when_another_route_fills_the_service() {
    let config = Config {
        class_shares: ClassShares {
            critical: 1.0,
            default: 1.0,
            sheddable: 1.0,
        },
        partitions: vec![Partition {
            name: "a".into(),
            path_prefix: "/a".into(),
            share: 0.5,
        }],
        ..Config::default()
    };
    let (_rec, gate, release, app) = setup(4, &config);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::spawn(app.clone().oneshot(req("/b"))));
    }
    until_in_flight(&gate, 4).await;
    assert_eq!(
        app.clone().oneshot(req("/b")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // `/a` is guaranteed half the limit: two get in although the service is full.
    for n in 5..=6 {
        held.push(tokio::spawn(app.clone().oneshot(req("/a"))));
        until_in_flight(&gate, n).await;
    }
    assert_eq!(
        app.clone().oneshot(req("/a")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "beyond its share, /a waits its turn like everyone"
    );
    release.add_permits(6);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(gate.in_flight(), 0);

    // What /metrics shows.
    let mut registry = prometheus_client::registry::Registry::default();
    GateMetrics::register(gate.clone(), &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "weir_admit_limit{controller=\"recording\"} 4",
        "weir_admit_in_flight 0",
        "weir_admit_admitted_total{class=\"default\"} 6",
        "weir_admit_rejected_total{class=\"default\",reason=\"over_limit\"} 2",
        // Each refused default request holds a slot back from sheddable ones.
        "weir_admit_reserved_slots{class=\"default\"} 2",
        "weir_admit_reserved_slots{class=\"critical\"} 0",
        "weir_admit_partition_requests_total{partition=\"a\",result=\"admitted\"} 2",
        "weir_admit_partition_requests_total{partition=\"a\",result=\"rejected\"} 1",
        "weir_admit_partition_in_flight{partition=\"a\"} 0",
        "weir_admit_latency_seconds_count{class=\"default\",outcome=\"success\"} 6",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}
