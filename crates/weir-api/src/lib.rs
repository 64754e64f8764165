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
//! | `GET /api/events` | server-sent events: the latest record, then one `decision` per record (`lagged` with the count a slow client missed; 503 past the stream cap) |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a decision has been recorded, 503 before |
//! | `POST /api/pause`, `POST /api/resume` | hold / release the current weights |
//! | `POST /api/override` | `{"weights":{"primary":P,"replicas":[..]},"duration_s":S}` |
//! | `DELETE /api/override` | cancel an override |
//! | `POST /api/mode` | `{"mode":"shadow"}` (the controller accepts shadow or its configured mode) |
//!
//! Mutating routes need `Authorization: Bearer <token>` (compared in constant time) and are
//! not mounted at all without a token. They only queue a [`Command`]; the controller applies
//! it before its next decision, so the effect shows in the next record (`202 Accepted`).
//!
//! Every route, the dashboard's included, is bounded ([`Limits`]): a body over
//! `max_body_bytes` gets 413 with the limit in the message, a request not answered within
//! `request_timeout` gets 408, at most `max_event_streams` live event streams are open (503
//! past that) and each holds at most `event_buffer` records for a client that does not read
//! (it then misses records and is told how many in a `lagged` event). Every mutating request
//! — refused ones too — is given to the [`AuditSink`] as an [`AuditEntry`]: peer, token
//! validity (never the token), action and arguments, time from the API's [`Clock`], status.
//! [`Api`] sets these; [`router`] takes the defaults. [`serve_listener`] adds what axum's
//! `serve` does not: a client must send its request header within [`HEADER_READ_TIMEOUT`]
//! (a slow-header client is cut off), and at most [`MAX_CONNECTIONS`] connections are open.
//! The server loop is weir-http's, shared with Weir's other listeners.
//!
//! **Never:** make a decision or change the recorder: commands only reach the controller
//! through its channel.

mod audit;
mod controls;
mod events;
mod guard;
mod serve;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::mpsc;
use weir_edge::Command;
use weir_recorder::Recorder;

use crate::controls::{
    delete_override, post_mode, post_override, post_pause, post_resume, require_token,
};
use crate::events::{EventHub, get_events};
use crate::guard::{Guard, guard};
use crate::views::{get_history, get_metrics, get_ready, get_state};

pub use audit::{AuditEntry, AuditSink, Clock, LogAudit, MAX_PATH_CHARS, TokenCheck, system_clock};
pub use controls::{BodyError, parse_mode, parse_override};
pub use events::EventStats;
pub use guard::Limits;
pub use serve::{
    HEADER_READ_TIMEOUT, MAX_CONNECTIONS, OPENMETRICS_CONTENT_TYPE, SHUTDOWN_GRACE, ServeError,
    serve, serve_listener,
};

#[derive(Clone)]
struct AppState {
    recorder: Recorder,
    commands: Option<mpsc::Sender<Command>>,
    events: Arc<EventHub>,
    max_body_bytes: usize,
}

/// The API, configured: build it with [`Api::new`], add the controls, limits and audit sink,
/// then take its [`Api::router`]. [`router`] and [`api_router`] are the defaults.
pub struct Api {
    recorder: Recorder,
    controls: Option<(mpsc::Sender<Command>, Arc<str>)>,
    limits: Limits,
    audit: Arc<dyn AuditSink>,
    clock: Clock,
    events: Option<Arc<EventHub>>,
}

impl Api {
    /// The read-only API over `recorder`, with the default [`Limits`], audit entries logged
    /// ([`LogAudit`]) and the system clock.
    pub fn new(recorder: Recorder) -> Self {
        Api {
            recorder,
            controls: None,
            limits: Limits::default(),
            audit: Arc::new(LogAudit),
            clock: system_clock(),
            events: None,
        }
    }

    /// Mounts the mutating routes, which queue on `commands` and need `token`; an empty
    /// token leaves them out.
    pub fn controls(mut self, commands: mpsc::Sender<Command>, token: &str) -> Self {
        let token = token.trim();
        if token.is_empty() {
            tracing::warn!("empty operator token: pause/resume/override are disabled");
            self.controls = None;
        } else {
            self.controls = Some((commands, token.into()));
        }
        self
    }

    /// The bounds on requests and live event streams.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.events = None;
        self
    }

    /// Where the audit entries of mutating requests go.
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.audit = Arc::new(sink);
        self
    }

    /// The clock audit entries are stamped with (Unix seconds).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A handle on the live event streams' figures, for metrics and tests (call it after
    /// [`Api::limits`]).
    pub fn event_stats(&mut self) -> impl Fn() -> EventStats + Send + Sync + 'static {
        let hub = self.hub();
        move || hub.stats()
    }

    fn hub(&mut self) -> Arc<EventHub> {
        let limits = self.limits;
        let recorder = self.recorder.clone();
        self.events
            .get_or_insert_with(|| {
                Arc::new(EventHub::new(
                    recorder,
                    limits.max_event_streams,
                    limits.event_buffer,
                ))
            })
            .clone()
    }

    /// The API's routes only, without the dashboard.
    pub fn api_router(self) -> Router {
        self.build(false)
    }

    /// The API and the dashboard at `/`.
    pub fn router(self) -> Router {
        self.build(true)
    }

    fn build(mut self, dashboard: bool) -> Router {
        let events = self.hub();
        let state = AppState {
            recorder: self.recorder.clone(),
            commands: self.controls.as_ref().map(|(tx, _)| tx.clone()),
            events,
            max_body_bytes: self.limits.max_body_bytes,
        };
        let mut app = Router::new()
            .route("/api/state", get(get_state))
            .route("/api/history", get(get_history))
            .route("/api/events", get(get_events))
            .route("/metrics", get(get_metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(get_ready));
        let token = self.controls.as_ref().map(|(_, t)| t.clone());
        if let Some(token) = &token {
            let controls = Router::new()
                .route("/api/pause", post(post_pause))
                .route("/api/resume", post(post_resume))
                .route("/api/override", post(post_override).delete(delete_override))
                .route("/api/mode", post(post_mode))
                .route_layer(middleware::from_fn_with_state(token.clone(), require_token));
            app = app.merge(controls);
        }
        let mut app = app.with_state(state);
        if dashboard {
            app = app.merge(weir_dashboard::router());
        }
        let guard_state = Arc::new(Guard {
            token,
            limits: self.limits,
            audit: self.audit,
            clock: self.clock,
            recorder: self.recorder,
        });
        // Around the whole router (as its fallback), so that the guard also sees what the
        // router answers by itself: 404, and 405 for a method a route does not have.
        Router::new()
            .fallback_service(app.layer(DefaultBodyLimit::max(self.limits.max_body_bytes)))
            .layer(middleware::from_fn_with_state(guard_state, guard))
    }
}

fn with_commands(api: Api, commands: Option<(mpsc::Sender<Command>, String)>) -> Api {
    match commands {
        Some((tx, token)) => api.controls(tx, &token),
        None => api,
    }
}

/// The API's routes only, without the dashboard: see [`router`].
/// `commands` is the controller's command queue and the operator token;
/// without it (or with an empty token) the mutating routes do not exist.
pub fn api_router(recorder: Recorder, commands: Option<(mpsc::Sender<Command>, String)>) -> Router {
    with_commands(Api::new(recorder), commands).api_router()
}

/// The API and the dashboard, with the default [`Limits`] and audit entries logged.
/// `commands` is the controller's command queue and the operator token; without it (or
/// with an empty token) the mutating routes do not exist.
pub fn router(recorder: Recorder, commands: Option<(mpsc::Sender<Command>, String)>) -> Router {
    with_commands(Api::new(recorder), commands).router()
}

#[cfg(test)]
mod tests;
