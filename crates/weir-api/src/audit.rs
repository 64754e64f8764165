//! The audit of mutating requests: who asked (the TCP peer and what its token was worth,
//! never the token), what (method, path, the action and its arguments), when (the API's
//! injected clock, and the latest decision's sequence number) and what came of it — accepted
//! or refused, and why. Every request that is not `GET`/`HEAD`/`OPTIONS` is audited, refused
//! ones (401, 400, 413, 408, 404) included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use serde::Serialize;

/// What the caller's `Authorization` header was worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCheck {
    /// The operator token.
    Valid,
    /// A bearer token that is not the operator token.
    Wrong,
    /// No `Authorization: Bearer …` header.
    Missing,
    /// No operator token is configured: the controls do not exist.
    ControlsDisabled,
}

/// One audited request: one JSON line in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Always `"control"`: tells these lines from the decision records in the same log.
    pub audit: &'static str,
    /// When the request arrived, in Unix seconds from the API's clock.
    pub at_unix_s: f64,
    /// The latest decision's sequence number then (ties the request to the decision records).
    pub after_seq: Option<u64>,
    /// The TCP peer, when the server knows it.
    pub peer: Option<SocketAddr>,
    /// What the presented token was worth (the token itself is never recorded).
    pub token: TokenCheck,
    /// The HTTP method.
    pub method: String,
    /// The request path, without the query, cut to [`MAX_PATH_CHARS`].
    pub path: String,
    /// What was asked: `pause`, `resume`, `override`, `clear_override`, `set_mode`, or
    /// `unknown` for a route that is not a control.
    pub action: &'static str,
    /// The command with its arguments, when the body was parsed.
    pub args: Option<serde_json::Value>,
    /// The HTTP status answered.
    pub status: u16,
    /// `accepted`, `unauthorized`, `bad_request`, `too_large`, `timeout`, `unavailable`,
    /// `not_found`, `method_not_allowed` or `error`.
    pub outcome: &'static str,
    /// Why it was refused, when it was.
    pub detail: Option<String>,
}

/// The longest path an audit entry keeps.
pub const MAX_PATH_CHARS: usize = 256;

/// Where audit entries go. A closure `Fn(&AuditEntry)` is one.
pub trait AuditSink: Send + Sync + 'static {
    /// Keeps one entry; must not block for long (it runs on the request's task).
    fn record(&self, entry: &AuditEntry);
}

impl<F: Fn(&AuditEntry) + Send + Sync + 'static> AuditSink for F {
    fn record(&self, entry: &AuditEntry) {
        self(entry);
    }
}

/// The default sink: one `info` event per entry, on target `weir::audit`, with the entry as
/// JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn record(&self, entry: &AuditEntry) {
        match serde_json::to_string(entry) {
            Ok(line) => tracing::info!(target: "weir::audit", "{line}"),
            Err(e) => {
                tracing::error!(target: "weir::audit", error = %e, "cannot serialise an audit entry")
            }
        }
    }
}

/// The API's clock for audit entries: Unix seconds.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The system clock in Unix seconds (0 if it is set before 1970).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// What a handler tells the audit about its request, carried as a response extension.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditNote {
    /// The parsed command, as JSON.
    pub args: Option<serde_json::Value>,
    /// Why the request was refused.
    pub detail: Option<String>,
}

/// The action a control route stands for.
pub(crate) fn action(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/api/pause") => "pause",
        ("POST", "/api/resume") => "resume",
        ("POST", "/api/override") => "override",
        ("DELETE", "/api/override") => "clear_override",
        ("POST", "/api/mode") => "set_mode",
        _ => "unknown",
    }
}

pub(crate) fn outcome(status: StatusCode) -> &'static str {
    match status {
        StatusCode::ACCEPTED | StatusCode::OK => "accepted",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ => "error",
    }
}

/// `path` cut to [`MAX_PATH_CHARS`] characters.
pub(crate) fn bounded_path(path: &str) -> String {
    path.chars().take(MAX_PATH_CHARS).collect()
}
