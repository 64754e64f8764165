//! The API over a recorder holding fixture records, driven in-process with `tower`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::ServiceExt;
use weir_core::Weights;

use axum::Router;
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpListener;
use weir_edge::{Command, Mode};
use weir_recorder::fixtures::two_records;
use weir_recorder::{Recorder, Setup};

use super::*;

const TOKEN: &str = "s3cret";

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("request builds")
}

fn with_token(method: Method, uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string()))
        .expect("request builds")
}

fn recorded() -> Recorder {
    let rec = Recorder::new(10);
    for r in two_records() {
        rec.record(r);
    }
    rec
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("response is JSON")
}

#[tokio::test]
async fn readyz_turns_ready_after_the_first_decision() {
    let rec = Recorder::default();
    let app = router(rec.clone(), None);
    assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (_, _, state) = call(&app, get("/api/state")).await;
    let state = json(&state);
    assert_eq!(state["ready"], false);
    assert!(state["latest"].is_null());
    let [first, _] = two_records();
    rec.record(first);
    assert_eq!(call(&app, get("/readyz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn state_shows_the_latest_record_and_last_error() {
    let app = router(recorded(), None);
    let (status, _, body) = call(&app, get("/api/state")).await;
    assert_eq!(status, StatusCode::OK);
    let s = json(&body);
    assert_eq!(s["ready"], true);
    assert_eq!(s["decisions"], 2);
    assert_eq!(s["mode"], "enforce");
    assert_eq!(s["policy"], "threshold");
    assert_eq!(s["paused"], false);
    assert!(s["override"].is_null());
    assert_eq!(s["controls_enabled"], false);
    assert_eq!(s["weights"]["primary"], 10);
    assert_eq!(s["latest"]["seq"], 1);
    assert_eq!(
        s["latest"]["decision"]["interventions"][0]["rule"],
        "hard_staleness"
    );
    assert_eq!(s["last_error"]["origin"], "source");
    assert_eq!(s["last_error"]["kind"], "timeout");
}

#[tokio::test]
async fn the_setup_is_shown_and_exported_once_set() {
    let rec = recorded();
    let app = router(rec.clone(), None);
    let (_, _, body) = call(&app, get("/api/state")).await;
    assert!(json(&body)["setup"].is_null());
    let (_, _, metrics) = call(&app, get("/metrics")).await;
    assert!(
        !metrics.contains("weir_slo_max_staleness_seconds "),
        "{metrics}"
    );

    rec.set_setup(Setup {
        run_id: "run-1".to_string(),
        title: "weir run weir.toml".to_string(),
        description: "2 replicas".to_string(),
        mode: Mode::Shadow,
        slo: weir_core::Slo {
            max_staleness_s: 2.0,
            ..weir_core::Slo::default()
        },
        interval_s: 5.0,
        stale_after_s: 30.0,
    });
    let (_, _, body) = call(&app, get("/api/state")).await;
    let s = json(&body);
    assert_eq!(s["setup"]["run_id"], "run-1");
    assert_eq!(s["setup"]["mode"], "shadow");
    assert_eq!(s["setup"]["slo"]["max_staleness_s"], 2.0);
    assert_eq!(s["setup"]["interval_s"], 5.0);
    let (_, _, metrics) = call(&app, get("/metrics")).await;
    for line in [
        "weir_slo_max_staleness_seconds 2.0",
        "weir_slo_primary_cpu_max_ratio 0.85",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn history_is_oldest_first_and_limited() {
    let app = router(recorded(), None);
    let (_, _, body) = call(&app, get("/api/history")).await;
    let h = json(&body);
    let seqs: Vec<u64> = h
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![0, 1]);
    let (_, _, body) = call(&app, get("/api/history?limit=1")).await;
    let h = json(&body);
    assert_eq!(h.as_array().map(Vec::len), Some(1));
    assert_eq!(h[0]["seq"], 1);
    let (status, _, body) = call(&app, get("/api/history?limit=lots")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit"))
    );
}

#[tokio::test]
async fn history_ring_is_bounded() {
    let rec = Recorder::new(1);
    for r in two_records() {
        rec.record(r);
    }
    assert_eq!(rec.history(None).len(), 1);
    assert_eq!(rec.recorded(), 2);
}

#[tokio::test]
async fn metrics_are_openmetrics_and_skip_unknowns() {
    let app = router(recorded(), None);
    let (status, headers, body) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    for line in [
        "weir_decisions_total 2",
        "weir_weight{destination=\"primary\"} 10",
        "weir_weight{destination=\"replica-1\"} 0",
        "weir_weight{destination=\"replica-2\"} 90",
        "weir_primary_share 0.1",
        "weir_reward -1.234",
        "weir_replica_lag_seconds{replica=\"replica-1\"} 42.0",
        "weir_primary_cpu_ratio 0.41",
        "weir_shield_interventions_total{rule=\"hard_staleness\"} 1",
        "weir_shield_interventions_total{rule=\"fail_safe\"} 0",
        "weir_hard_limit_violations_total 0",
        "weir_source_errors_total{kind=\"timeout\"} 1",
        "weir_source_errors_total{kind=\"unreachable\"} 0",
        "weir_actuation_errors_total{kind=\"conflict\"} 0",
        "weir_loop_duration_seconds_count 2",
        "weir_paused 0",
        "weir_fail_safe_engaged 0",
        // replica-2's lag is unknown and it gets 90 points: counted stale, never fresh.
        "weir_expected_stale_fraction 0.9",
        "# EOF",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in\n{body}"
        );
    }
    // replica-2's lag is unknown: no series rather than a made-up number.
    assert!(!body.contains("weir_replica_lag_seconds{replica=\"replica-2\"}"));
    assert!(!body.contains("NaN"));
}

#[tokio::test]
async fn controls_are_absent_without_a_token() {
    let app = router(recorded(), None);
    let (status, _, _) = call(&app, with_token(Method::POST, "/api/pause", None, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (tx, _rx) = mpsc::channel(4);
    let app = router(recorded(), Some((tx, "  ".to_string())));
    let (status, _, _) = call(&app, with_token(Method::POST, "/api/pause", Some(""), "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pause_needs_the_token_and_queues_a_command() {
    let (tx, mut rx) = mpsc::channel(4);
    let app = router(recorded(), Some((tx, TOKEN.to_string())));
    for token in [None, Some("wrong"), Some("s3cre")] {
        let (status, headers, _) =
            call(&app, with_token(Method::POST, "/api/pause", token, "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    }
    assert!(rx.try_recv().is_err());
    let (status, _, _) = call(
        &app,
        with_token(Method::POST, "/api/pause", Some(TOKEN), ""),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(rx.try_recv().ok(), Some(Command::Pause));
    let (status, _, _) = call(
        &app,
        with_token(Method::DELETE, "/api/override", Some(TOKEN), ""),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(rx.try_recv().ok(), Some(Command::ClearOverride));
    let (status, _, _) = call(
        &app,
        with_token(
            Method::POST,
            "/api/mode",
            Some(TOKEN),
            r#"{"mode":"dry-run"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        rx.try_recv().ok(),
        Some(Command::SetMode { mode: Mode::DryRun })
    );
    let (_, _, state) = call(&app, get("/api/state")).await;
    assert_eq!(json(&state)["controls_enabled"], true);
}

#[tokio::test]
async fn override_body_errors_name_the_field() {
    let (tx, mut rx) = mpsc::channel(4);
    let app = router(recorded(), Some((tx, TOKEN.to_string())));
    let cases = [
        ("not json", "JSON"),
        (
            r#"{"weights":{"primary":0,"replicas":[50,50]}}"#,
            "duration_s",
        ),
        (
            r#"{"weights":{"primary":0,"replicas":[50,50]},"duration_s":-5}"#,
            "duration_s",
        ),
        (r#"{"duration_s":60}"#, "weights"),
        (
            r#"{"weights":{"primary":0,"replicas":[50,"x"]},"duration_s":60}"#,
            "weights.replicas[1]",
        ),
        (
            r#"{"weights":{"replicas":[50,50]},"duration_s":60}"#,
            "weights.primary",
        ),
        (
            r#"{"weights":{"primary":0,"replicas":[50,50,0]},"duration_s":60}"#,
            "weights.replicas must have 2 entries",
        ),
        (
            r#"{"weights":{"primary":10,"replicas":[50,50]},"duration_s":60}"#,
            "weights must sum to 100",
        ),
        (
            r#"{"weights":{"primary":0,"replicas":[50,50]},"duration_s":60,"until":3}"#,
            "until",
        ),
    ];
    for (body, field) in cases {
        let (status, _, resp) = call(
            &app,
            with_token(Method::POST, "/api/override", Some(TOKEN), body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let msg = json(&resp)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(field), "{body}: `{msg}` should name `{field}`");
    }
    assert!(rx.try_recv().is_err());
    let (status, _, _) = call(
        &app,
        with_token(
            Method::POST,
            "/api/override",
            Some(TOKEN),
            r#"{"weights":{"primary":100,"replicas":[0,0]},"duration_s":300}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        rx.try_recv().ok(),
        Some(Command::Override {
            weights: Weights::all_primary(2),
            duration_s: 300.0
        })
    );
}

#[tokio::test]
async fn commands_fail_cleanly_when_the_controller_is_gone() {
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let app = router(recorded(), Some((tx, TOKEN.to_string())));
    let (status, _, _) = call(
        &app,
        with_token(Method::POST, "/api/resume", Some(TOKEN), ""),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn events_stream_starts_with_the_latest_decision_and_follows_new_ones() {
    let rec = recorded();
    let app = router(rec.clone(), None);
    let resp = app.oneshot(get("/api/events")).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut next = async || -> String {
        let frame = body
            .frame()
            .await
            .expect("a frame")
            .expect("frame reads")
            .into_data()
            .unwrap_or_default();
        String::from_utf8_lossy(&frame).into_owned()
    };
    text.push_str(&next().await);
    assert!(text.starts_with("event: decision\n"), "{text}");
    assert!(text.contains("id: 1\n"), "{text}");
    let [_, mut third] = two_records();
    third.seq = 2;
    rec.record(third);
    let text = next().await;
    assert!(text.contains("id: 2\n"), "{text}");
    rec.close();
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn serves_on_the_given_listener_and_stops_on_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(
        listener,
        router(recorded(), None),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.expect("reads");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let _ = stop.send(());
    let done = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
}
