//! The HTTP API: read-only views of the recorder, and, only when a token is configured,
//! the operator's controls.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/state` | latest record, mode, policy, pause/override, last error, the run's setup (SLO, interval) |
//! | `GET /api/history?limit=N` | the last N records, oldest first |
//! | `GET /api/events` | server-sent events: the latest record, then one `decision` per record |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a decision has been recorded, 503 before |
//! | `POST /api/pause`, `POST /api/resume` | hold / release the current weights |
//! | `POST /api/override` | `{"weights":{"primary":P,"replicas":[..]},"duration_s":S}` |
//! | `DELETE /api/override` | cancel an override |
//! | `POST /api/mode` | `{"mode":"shadow"}` (the controller accepts shadow or its configured mode) |
//!
//! Mutating routes need `Authorization: Bearer <token>` and are not mounted at all without
//! a token. They only queue a [`Command`]; the controller applies it before its next
//! decision, so the effect shows in the next record (`202 Accepted`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use weir_core::Weights;
use weir_shield::Override;

use crate::record::{Command, Mode, Setup, StepRecord};
use crate::recorder::{LastError, Recorder};

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long [`serve`] waits for open connections (live event streams never end on their
/// own) after the shutdown signal before it returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the HTTP server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    recorder: Recorder,
    commands: Option<mpsc::Sender<Command>>,
}

/// The API's router. `commands` is the controller's command queue and the operator token;
/// without it (or with an empty token) the mutating routes do not exist.
pub fn router(recorder: Recorder, commands: Option<(mpsc::Sender<Command>, String)>) -> Router {
    let commands = commands.and_then(|(tx, token)| {
        let token = token.trim().to_string();
        if token.is_empty() {
            tracing::warn!("empty operator token: pause/resume/override are disabled");
            None
        } else {
            Some((tx, token))
        }
    });
    let state = AppState {
        recorder,
        commands: commands.as_ref().map(|(tx, _)| tx.clone()),
    };
    let mut app = Router::new()
        .route("/api/state", get(get_state))
        .route("/api/history", get(get_history))
        .route("/api/events", get(get_events))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(get_ready));
    if let Some((_, token)) = commands {
        let token: Arc<str> = token.into();
        let controls = Router::new()
            .route("/api/pause", post(post_pause))
            .route("/api/resume", post(post_resume))
            .route("/api/override", post(post_override).delete(delete_override))
            .route("/api/mode", post(post_mode))
            .route_layer(middleware::from_fn_with_state(token, require_token));
        app = app.merge(controls);
    }
    app.with_state(state)
}

/// Serves `router` on `addr` until `shutdown` completes (then waits up to
/// [`SHUTDOWN_GRACE`] for open connections). Binds exactly the address given.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_listener(listener, router, shutdown).await
}

/// Like [`serve`] on an already bound listener (bind port 0 to let the OS choose, then read
/// `listener.local_addr()`).
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let grace = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r.map_err(ServeError::Serve),
        () = grace => {
            tracing::debug!("HTTP connections still open after the grace period; closing");
            Ok(())
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    (
        status,
        Json(Body {
            error: message.into(),
        }),
    )
        .into_response()
}

/// `/api/state`.
#[derive(Serialize)]
struct StateView<'a> {
    ready: bool,
    decisions: u64,
    mode: Option<Mode>,
    policy: Option<String>,
    paused: bool,
    #[serde(rename = "override")]
    override_: Option<Override>,
    fail_safe_engaged: bool,
    weights: Option<Weights>,
    in_force: Option<Weights>,
    last_error: Option<LastError>,
    controls_enabled: bool,
    setup: Option<&'a Setup>,
    latest: Option<&'a StepRecord>,
}

async fn get_state(State(st): State<AppState>) -> Response {
    let latest = st.recorder.latest();
    let l = latest.as_deref();
    let setup = st.recorder.setup();
    Json(StateView {
        ready: st.recorder.is_ready(),
        decisions: st.recorder.recorded(),
        mode: l.map(|r| r.mode),
        policy: l.map(|r| r.policy.clone()),
        paused: l.is_some_and(|r| r.shield.paused),
        override_: l.and_then(|r| r.shield.override_.clone()),
        fail_safe_engaged: l.is_some_and(|r| r.shield.fail_safe_engaged),
        weights: l.map(|r| r.decision.weights.clone()),
        in_force: l.map(|r| r.in_force.clone()),
        last_error: st.recorder.last_error(),
        controls_enabled: st.commands.is_some(),
        setup: setup.as_deref(),
        latest: l,
    })
    .into_response()
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
}

async fn get_history(State(st): State<AppState>, Query(q): Query<HistoryQuery>) -> Response {
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "limit must be a non-negative integer, got {:?}",
                    q.limit.unwrap_or_default()
                ),
            );
        }
    };
    let records = st.recorder.history(limit);
    Json(records.iter().map(|r| &**r).collect::<Vec<&StepRecord>>()).into_response()
}

fn decision_event(rec: &StepRecord) -> Option<Event> {
    match Event::default()
        .event("decision")
        .id(rec.seq.to_string())
        .json_data(rec)
    {
        Ok(ev) => Some(ev),
        Err(e) => {
            tracing::warn!(error = %e, seq = rec.seq, "cannot serialise record for the event stream");
            None
        }
    }
}

async fn get_events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before reading the latest record so nothing falls in between.
    let rx = st.recorder.subscribe();
    let first = st.recorder.latest().and_then(|r| decision_event(&r));
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(rec) => {
                    if let Some(ev) = decision_event(&rec) {
                        return Some((ev, rx));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(n.to_string());
                    return Some((ev, rx));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = stream::iter(first).chain(live).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn get_metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        )],
        st.recorder.encode_metrics(),
    )
        .into_response()
}

async fn get_ready(State(st): State<AppState>) -> Response {
    if st.recorder.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no decision recorded yet\n",
        )
            .into_response()
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guessed
/// token was right.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if same_token(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>` with the operator token",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

fn send(st: &AppState, cmd: Command) -> Response {
    let Some(tx) = &st.commands else {
        return error(StatusCode::NOT_FOUND, "operator controls are disabled");
    };
    let label = cmd.as_str();
    match tx.try_send(cmd) {
        Ok(()) => {
            tracing::info!(command = label, "operator command queued");
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "accepted": label })),
            )
                .into_response()
        }
        Err(mpsc::error::TrySendError::Full(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many commands waiting for the controller; retry shortly",
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the controller is not running",
        ),
    }
}

async fn post_pause(State(st): State<AppState>) -> Response {
    send(&st, Command::Pause)
}

async fn post_resume(State(st): State<AppState>) -> Response {
    send(&st, Command::Resume)
}

async fn delete_override(State(st): State<AppState>) -> Response {
    send(&st, Command::ClearOverride)
}

async fn post_override(State(st): State<AppState>, body: Bytes) -> Response {
    let replicas = st
        .recorder
        .latest()
        .map(|r| r.decision.weights.replicas.len());
    match parse_override(&body, replicas) {
        Ok(cmd) => send(&st, cmd),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

async fn post_mode(State(st): State<AppState>, body: Bytes) -> Response {
    match parse_mode(&body) {
        Ok(cmd) => send(&st, cmd),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("body must be a JSON object".to_string()),
        Err(e) => Err(format!("body is not valid JSON: {e}")),
    }
}

fn reject_unknown(
    m: &serde_json::Map<String, Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), String> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field `{prefix}{k}` (expected {})",
            known
                .iter()
                .map(|k| format!("`{prefix}{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(()),
    }
}

fn weight(v: &Value, field: &str) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= Weights::TOTAL)
        .ok_or_else(|| {
            format!(
                "{field} must be an integer in 0..={}, got {v}",
                Weights::TOTAL
            )
        })
}

/// Parses an override body; every message names the offending field. `replicas` is the
/// replica count when known (from the latest record).
fn parse_override(body: &[u8], replicas: Option<usize>) -> Result<Command, String> {
    let m = parse_object(body)?;
    reject_unknown(&m, "", &["weights", "duration_s"])?;
    let w = match m.get("weights") {
        Some(Value::Object(w)) => w,
        Some(other) => {
            return Err(format!(
                "weights must be an object {{\"primary\": P, \"replicas\": [..]}}, got {other}"
            ));
        }
        None => return Err("missing field `weights`".to_string()),
    };
    reject_unknown(w, "weights.", &["primary", "replicas"])?;
    let primary = weight(
        w.get("primary")
            .ok_or("missing field `weights.primary`".to_string())?,
        "weights.primary",
    )?;
    let replicas_v = match w.get("replicas") {
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("weights.replicas must be an array, got {other}")),
        None => return Err("missing field `weights.replicas`".to_string()),
    };
    let mut replica_weights = Vec::with_capacity(replicas_v.len());
    for (i, v) in replicas_v.iter().enumerate() {
        replica_weights.push(weight(v, &format!("weights.replicas[{i}]"))?);
    }
    if let Some(n) = replicas
        && replica_weights.len() != n
    {
        return Err(format!(
            "weights.replicas must have {n} entries (one per replica), got {}",
            replica_weights.len()
        ));
    }
    let weights = Weights {
        primary,
        replicas: replica_weights,
    };
    if weights.total() != Weights::TOTAL {
        return Err(format!(
            "weights must sum to {}, got {} ({weights})",
            Weights::TOTAL,
            weights.total()
        ));
    }
    let duration_s = match m.get("duration_s") {
        Some(v) => v
            .as_f64()
            .filter(|d| d.is_finite() && *d > 0.0)
            .ok_or_else(|| format!("duration_s must be a positive number of seconds, got {v}"))?,
        None => return Err("missing field `duration_s`".to_string()),
    };
    Ok(Command::Override {
        weights,
        duration_s,
    })
}

fn parse_mode(body: &[u8]) -> Result<Command, String> {
    let m = parse_object(body)?;
    reject_unknown(&m, "", &["mode"])?;
    let v = m.get("mode").ok_or("missing field `mode`".to_string())?;
    let mode = serde_json::from_value::<Mode>(v.clone()).map_err(|_| {
        format!("mode must be one of \"enforce\", \"shadow\", \"dry_run\", got {v}")
    })?;
    Ok(Command::SetMode { mode })
}

#[cfg(test)]
mod tests;
