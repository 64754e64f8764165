//! Weir's HTTP API and the page it serves: everything a person or a tool sees of a running
//! controller, and the operator's controls.
//!
//! [`router`] mounts the API over a [`Recorder`] (read-only views of its history, state,
//! live events and metrics) and the web dashboard (`weir-dashboard`) at `/`; [`serve`] and
//! [`serve_listener`] run it with a graceful shutdown. Only when an operator token is
//! configured are the mutating routes mounted: they parse and check the request, then queue a
//! [`Command`] for the controller, which applies it between two intervals.
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
//!
//! **Never:** make a decision or change the recorder: commands only reach the controller
//! through its channel.

mod controls;
mod serve;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::mpsc;
use weir_edge::Command;
use weir_recorder::Recorder;

use crate::controls::{
    delete_override, post_mode, post_override, post_pause, post_resume, require_token,
};
use crate::views::{get_events, get_history, get_metrics, get_ready, get_state};

pub use serve::{OPENMETRICS_CONTENT_TYPE, SHUTDOWN_GRACE, ServeError, serve, serve_listener};

#[derive(Clone)]
struct AppState {
    recorder: Recorder,
    commands: Option<mpsc::Sender<Command>>,
}

/// The API's routes only, without the dashboard: see [`router`].
/// `commands` is the controller's command queue and the operator token;
/// without it (or with an empty token) the mutating routes do not exist.
pub fn api_router(recorder: Recorder, commands: Option<(mpsc::Sender<Command>, String)>) -> Router {
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

/// The API and the dashboard. `commands` is the controller's command queue and the operator
/// token; without it (or with an empty token) the mutating routes do not exist.
pub fn router(recorder: Recorder, commands: Option<(mpsc::Sender<Command>, String)>) -> Router {
    api_router(recorder, commands).merge(weir_dashboard::router())
}

#[cfg(test)]
mod tests;
