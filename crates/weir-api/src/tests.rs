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

/// An audit sink that keeps its entries, and a fixed clock.
fn audited(app: Api) -> (Api, std::sync::Arc<std::sync::Mutex<Vec<AuditEntry>>>) {
    let entries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = entries.clone();
    let app = app
        .audit(move |e: &AuditEntry| sink.lock().expect("not poisoned").push(e.clone()))
        .clock(std::sync::Arc::new(|| 1_700_000_000.5));
    (app, entries)
}

fn entries(log: &std::sync::Mutex<Vec<AuditEntry>>) -> Vec<AuditEntry> {
    log.lock().expect("not poisoned").clone()
}

#[test]
fn wrong_tokens_of_equal_and_other_lengths_are_refused() {
    use crate::controls::check_token;
    let headers = |t: Option<&str>| {
        let mut h = axum::http::HeaderMap::new();
        if let Some(t) = t {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("a header value"),
            );
        }
        h
    };
    assert_eq!(check_token(&headers(Some(TOKEN)), TOKEN), TokenCheck::Valid);
    // Same length, one byte off (first, last); shorter; longer; a prefix; empty.
    for wrong in [
        "x3cret",
        "s3creT",
        "s3cre",
        "s3cret!",
        "s3cret s3cret",
        "",
        "S3CRET",
    ] {
        assert_eq!(
            check_token(&headers(Some(wrong)), TOKEN),
            TokenCheck::Wrong,
            "{wrong:?}"
        );
    }
    assert_eq!(check_token(&headers(None), TOKEN), TokenCheck::Missing);
    let mut basic = axum::http::HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        "Basic czNjcmV0".parse().expect("a header value"),
    );
    assert_eq!(check_token(&basic, TOKEN), TokenCheck::Missing);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_naming_the_limit() {
    let (tx, mut rx) = mpsc::channel(4);
    let limits = Limits {
        max_body_bytes: 64,
        ..Limits::default()
    };
    let (api, log) = audited(Api::new(recorded()).controls(tx, TOKEN).limits(limits));
    let app = api.router();
    let big = format!(
        r#"{{"weights":{{"primary":100,"replicas":[0,0]}},"duration_s":300,"pad":"{}"}}"#,
        "x".repeat(100)
    );
    // Declared length over the limit: refused before the body is read, on any route.
    for (method, uri) in [
        (Method::POST, "/api/override"),
        (Method::POST, "/api/state"),
        (Method::GET, "/api/state"),
        (Method::GET, "/"),
    ] {
        let (status, _, body) =
            call(&app, with_token(method.clone(), uri, Some(TOKEN), &big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {uri}");
        assert!(
            json(&body)["error"]
                .as_str()
                .is_some_and(|e| e.contains("over the limit of 64 bytes")),
            "{body}"
        );
    }
    // No declared length (chunked): cut off while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..40].to_string()), Ok(big[40..].to_string())];
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/override")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("request builds");
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("over the limit of 64 bytes"), "{body}");
    assert!(rx.try_recv().is_err(), "nothing was queued");
    // A body within the limit still works.
    let (status, _, _) = call(
        &app,
        with_token(
            Method::POST,
            "/api/override",
            Some(TOKEN),
            r#"{"weights":{"primary":100,"replicas":[0,0]},"duration_s":3}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The refused mutations were audited as too large.
    let e = entries(&log);
    let outcomes: Vec<(&str, &str)> = e.iter().map(|e| (e.path.as_str(), e.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            ("/api/override", "too_large"),
            ("/api/state", "too_large"),
            ("/api/override", "too_large"),
            ("/api/override", "accepted"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_completes_gets_408() {
    let (tx, mut rx) = mpsc::channel(4);
    let (api, log) = audited(Api::new(recorded()).controls(tx, TOKEN).limits(Limits {
        request_timeout: Duration::from_secs(3),
        ..Limits::default()
    }));
    let app = api.router();
    // The body never arrives: only the timeout can answer (tokio's paused clock).
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/override")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from_stream(never))
        .expect("request builds");
    // Without the API's timeout this outer one (paused clock: no real wait) fails the test.
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(3600), call(&app, req))
        .await
        .expect("the API's timeout answers first");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(body.contains("within 3 s"), "{body}");
    assert!(rx.try_recv().is_err());
    let e = entries(&log);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].outcome, "timeout");
    assert_eq!(e[0].status, 408);
    assert_eq!(e[0].action, "override");
}

#[tokio::test]
async fn refused_and_accepted_mutations_are_audited() {
    let (tx, mut rx) = mpsc::channel(8);
    let (api, log) = audited(Api::new(recorded()).controls(tx, TOKEN));
    let app = api.router();
    let peer: std::net::SocketAddr = "192.0.2.7:41000".parse().expect("an address");
    let from_peer = |mut req: Request<Body>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    };
    let requests = [
        with_token(Method::POST, "/api/pause", None, ""),
        with_token(Method::POST, "/api/pause", Some("s3creT"), ""),
        with_token(
            Method::POST,
            "/api/override",
            Some(TOKEN),
            r#"{"duration_s":60}"#,
        ),
        with_token(
            Method::POST,
            "/api/override",
            Some(TOKEN),
            r#"{"weights":{"primary":100,"replicas":[0,0]},"duration_s":300}"#,
        ),
        with_token(Method::DELETE, "/api/override", Some(TOKEN), ""),
        with_token(Method::POST, "/api/nothing", Some(TOKEN), ""),
        with_token(Method::PUT, "/api/state", None, ""),
    ];
    let mut statuses = Vec::new();
    for req in requests {
        statuses.push(call(&app, from_peer(req)).await.0.as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 400, 202, 202, 404, 405]);
    // Reads are not audited.
    let _ = call(&app, get("/api/state")).await;
    let e = entries(&log);
    let summary: Vec<(&str, TokenCheck, u16, &str)> = e
        .iter()
        .map(|e| (e.action, e.token, e.status, e.outcome))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("pause", TokenCheck::Missing, 401, "unauthorized"),
            ("pause", TokenCheck::Wrong, 401, "unauthorized"),
            ("override", TokenCheck::Valid, 400, "bad_request"),
            ("override", TokenCheck::Valid, 202, "accepted"),
            ("clear_override", TokenCheck::Valid, 202, "accepted"),
            ("unknown", TokenCheck::Valid, 404, "not_found"),
            ("unknown", TokenCheck::Missing, 405, "method_not_allowed"),
        ]
    );
    for entry in &e {
        assert_eq!(entry.peer, Some(peer));
        assert_eq!(entry.at_unix_s, 1_700_000_000.5);
        assert_eq!(entry.after_seq, Some(1));
        let line = serde_json::to_string(entry).expect("serialises");
        assert!(!line.contains(TOKEN), "the token leaked: {line}");
        assert!(line.contains(r#""audit":"control""#), "{line}");
    }
    assert!(
        e[2].detail
            .as_deref()
            .is_some_and(|d| d.contains("weights")),
        "{:?}",
        e[2].detail
    );
    assert_eq!(
        e[3].args.as_ref().map(|a| a["command"].clone()),
        Some("override".into())
    );
    assert_eq!(
        e[3].args.as_ref().map(|a| a["weights"]["primary"].clone()),
        Some(100.into())
    );
    assert_eq!(
        e[3].args.as_ref().map(|a| a["duration_s"].clone()),
        Some(300.0.into())
    );
    assert!(e[3].detail.is_none());
    // Exactly the accepted commands reached the controller.
    assert!(matches!(rx.try_recv(), Ok(Command::Override { .. })));
    assert_eq!(rx.try_recv().ok(), Some(Command::ClearOverride));
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn the_peer_address_reaches_the_audit_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (tx, _rx) = mpsc::channel(4);
    let (api, log) = audited(Api::new(recorded()).controls(tx, TOKEN));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(listener, api.router(), async move {
        let _ = stopped.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let local = conn.local_addr().expect("has an address");
    conn.write_all(
        b"POST /api/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("writes");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.expect("reads");
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let e = entries(&log);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].peer, Some(local));
    assert_eq!(e[0].token, TokenCheck::Wrong);
}

fn publish(rec: &Recorder, seq: u64) {
    let [_, mut r] = two_records();
    r.seq = seq;
    rec.record(r);
}

/// Yields to the forwarder until it has handed out `n` records (bounded: a stuck forwarder
/// fails the test instead of hanging it).
async fn forwarded(stats: &impl Fn() -> EventStats, n: u64) -> EventStats {
    for _ in 0..100_000 {
        let s = stats();
        if s.forwarded >= n {
            return s;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "the forwarder handed out {} of {n} records",
        stats().forwarded
    );
}

#[tokio::test]
async fn a_client_that_never_reads_holds_a_bounded_number_of_events() {
    let rec = recorded();
    let mut api = Api::new(rec.clone()).limits(Limits {
        event_buffer: 4,
        ..Limits::default()
    });
    let stats = api.event_stats();
    let app = api.router();
    let resp = app.oneshot(get("/api/events")).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    // The client never reads while 50 records are published.
    for seq in 2..52 {
        publish(&rec, seq);
        tokio::task::yield_now().await;
    }
    let s = forwarded(&stats, 50).await;
    assert_eq!(s.streams, 1);
    assert_eq!(s.buffered, 4, "{s:?}");
    assert_eq!(s.dropped, 46, "{s:?}");
    // When it reads: the latest record at connection, the count it missed, then what was kept.
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    for _ in 0..6 {
        let frame = body
            .frame()
            .await
            .expect("a frame")
            .expect("frame reads")
            .into_data()
            .unwrap_or_default();
        frames.push(String::from_utf8_lossy(&frame).into_owned());
    }
    assert!(frames[0].contains("id: 1\n"), "{frames:?}");
    assert!(
        frames[1].starts_with("event: lagged\ndata: 46\n"),
        "{frames:?}"
    );
    for (frame, seq) in frames[2..].iter().zip(2..) {
        assert!(frame.contains(&format!("id: {seq}\n")), "{frames:?}");
    }
    drop(body);
    let s = stats();
    assert_eq!((s.streams, s.buffered), (0, 0), "{s:?}");
}

#[tokio::test]
async fn event_streams_over_the_cap_are_refused() {
    let mut api = Api::new(recorded()).limits(Limits {
        max_event_streams: 2,
        ..Limits::default()
    });
    let stats = api.event_stats();
    let app = api.router();
    let first = app
        .clone()
        .oneshot(get("/api/events"))
        .await
        .expect("infallible");
    let second = app
        .clone()
        .oneshot(get("/api/events"))
        .await
        .expect("infallible");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let (status, _, body) = call(&app, get("/api/events")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("at most 2"), "{body}");
    assert_eq!((stats().streams, stats().refused), (2, 1));
    // A stream that closes frees its place.
    drop(first);
    let third = app
        .clone()
        .oneshot(get("/api/events"))
        .await
        .expect("infallible");
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(stats().streams, 2);
    drop((second, third));
}
