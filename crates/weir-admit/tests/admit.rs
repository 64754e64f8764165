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
    AdmitLayer, Config, Controller, Explanation, Gate, Outcome, Rejection, Sample, Static,
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

/// A router whose `/work` waits until the test lets it finish, `/boom` panics.
fn app(release: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/work",
            get(move || {
                let release = release.clone();
                async move {
                    let _ = release.acquire().await.map(|p| p.forget());
                    "done"
                }
            }),
        )
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

async fn until_in_flight(gate: &Gate, n: u32) {
    while gate.in_flight() != n {
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
                in_flight: 2
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
