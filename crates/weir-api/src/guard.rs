//! The middleware in front of every route (the dashboard's too): a request body over the
//! limit is refused before it is read (413), a request not answered within the timeout gets
//! 408 (a body that trickles in counts: handlers read it inside the timeout), and every
//! mutating request is audited with its outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use weir_recorder::Recorder;

use crate::audit::{
    AuditEntry, AuditNote, AuditSink, Clock, TokenCheck, action, bounded_path, outcome,
};
use crate::controls::check_token;
use crate::views::error;

/// The bounds the API puts on its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// How long a request may take until its response starts (408 after it); a live event
    /// stream counts only until it starts.
    pub request_timeout: Duration,
    /// Most live event streams (`/api/events`) open at once (503 above it).
    pub max_event_streams: usize,
    /// Events kept for one live event stream whose client does not read; past it the client
    /// misses events and is told how many (a `lagged` event).
    pub event_buffer: usize,
}

impl Default for Limits {
    /// 16 KiB bodies (an override is well under 1 KiB), 10 s per request, 32 event streams
    /// of 64 buffered events each.
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            max_event_streams: 32,
            event_buffer: 64,
        }
    }
}

pub(crate) struct Guard {
    pub token: Option<Arc<str>>,
    pub limits: Limits,
    pub audit: Arc<dyn AuditSink>,
    pub clock: Clock,
    pub recorder: Recorder,
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The least the body will be, as declared (`Content-Length`, which the server's body
/// reports as its size hint).
fn declared_length(req: &Request) -> u64 {
    let header = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    header.max(req.body().size_hint().lower())
}

pub(crate) fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is over the limit of {limit} bytes"),
    )
}

pub(crate) async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let pending = is_mutating(req.method()).then(|| {
        let token = match &g.token {
            Some(t) => check_token(req.headers(), t),
            None => TokenCheck::ControlsDisabled,
        };
        AuditEntry {
            audit: "control",
            at_unix_s: (g.clock)(),
            after_seq: g.recorder.latest().map(|r| r.seq),
            peer: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            token,
            method: req.method().to_string(),
            path: bounded_path(req.uri().path()),
            action: action(req.method(), req.uri().path()),
            args: None,
            status: 0,
            outcome: "",
            detail: None,
        }
    });
    let limit = g.limits.max_body_bytes;
    let mut resp = if declared_length(&req) > limit as u64 {
        too_large(limit)
    } else {
        match tokio::time::timeout(g.limits.request_timeout, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request not completed within {} s",
                    g.limits.request_timeout.as_secs_f64()
                ),
            ),
        }
    };
    if let Some(mut entry) = pending {
        let note = resp.extensions_mut().remove::<AuditNote>();
        entry.status = resp.status().as_u16();
        entry.outcome = outcome(resp.status());
        if let Some(note) = note {
            entry.args = note.args;
            entry.detail = note.detail;
        }
        if entry.detail.is_none() && !resp.status().is_success() {
            entry.detail = resp
                .status()
                .canonical_reason()
                .map(str::to_string)
                .or_else(|| Some(resp.status().to_string()));
        }
        g.audit.record(&entry);
    }
    resp
}
