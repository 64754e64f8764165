//! The operator's controls: the bearer-token check, request parsing (every error names the
//! field) and the command queue to the controller.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::Value;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use weir_core::Weights;
use weir_edge::{Command, Mode};

use crate::AppState;
use crate::audit::{AuditNote, TokenCheck};
use crate::guard::too_large;
use crate::views::error;

/// Compares in constant time (`subtle`), so response time does not reveal how much of a
/// guessed token was right; only whether its length was can show.
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

/// What the `Authorization: Bearer …` header of `headers` is worth against `token`.
pub(crate) fn check_token(headers: &HeaderMap, token: &str) -> TokenCheck {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => TokenCheck::Missing,
        Some(t) if same_token(t.as_bytes(), token.as_bytes()) => TokenCheck::Valid,
        Some(_) => TokenCheck::Wrong,
    }
}

pub(crate) async fn require_token(
    State(token): State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    match check_token(req.headers(), &token) {
        TokenCheck::Valid => next.run(req).await,
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

/// Queues `cmd`; the response carries the command for the audit.
fn send(st: &AppState, cmd: Command) -> Response {
    let args = serde_json::to_value(&cmd).ok();
    let mut resp = queue(st, cmd);
    let mut note = resp
        .extensions_mut()
        .remove::<AuditNote>()
        .unwrap_or_default();
    note.args = args;
    resp.extensions_mut().insert(note);
    resp
}

fn queue(st: &AppState, cmd: Command) -> Response {
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

pub(crate) async fn post_pause(State(st): State<AppState>) -> Response {
    send(&st, Command::Pause)
}

pub(crate) async fn post_resume(State(st): State<AppState>) -> Response {
    send(&st, Command::Resume)
}

pub(crate) async fn delete_override(State(st): State<AppState>) -> Response {
    send(&st, Command::ClearOverride)
}

/// The response that refuses a body that could not be read (413 over the limit, naming it).
fn refusal(st: &AppState, rejection: BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(st.max_body_bytes)
    } else {
        error(rejection.status(), rejection.body_text())
    }
}

/// Reads a control body and queues the command `parse` makes of it: 413 (or the extractor's
/// own status) for a body that could not be read, 400 naming the field for one that does not
/// parse.
fn queue_parsed(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(&[u8]) -> Result<Command, BodyError>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return refusal(st, rejection),
    };
    match parse(&body) {
        Ok(cmd) => send(st, cmd),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

pub(crate) async fn post_override(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let replicas = st
        .recorder
        .latest()
        .map(|r| r.decision.weights.replicas.len());
    queue_parsed(&st, body, |b| parse_override(b, replicas))
}

pub(crate) async fn post_mode(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    queue_parsed(&st, body, parse_mode)
}

/// Why a control request's body was refused; every message names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("body must be a JSON object")]
    NotObject,
    /// A field the route does not know.
    #[error("unknown field `{field}` (expected {expected})")]
    UnknownField {
        /// The field, with its path (`weights.until`).
        field: String,
        /// The fields the route knows, quoted and joined.
        expected: String,
    },
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has a value the route cannot take.
    #[error("{field} must be {expected}, got {got}")]
    Invalid {
        /// The field, with its path (`weights.replicas[1]`).
        field: String,
        /// What it must be.
        expected: String,
        /// What was sent.
        got: String,
    },
    /// The weights do not fit the controller's cluster.
    #[error("{0}")]
    Weights(String),
}

fn invalid(field: impl Into<String>, expected: impl Into<String>, got: &Value) -> BodyError {
    BodyError::Invalid {
        field: field.into(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BodyError::NotObject),
        Err(e) => Err(BodyError::NotJson(e.to_string())),
    }
}

fn reject_unknown(
    m: &serde_json::Map<String, Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), BodyError> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(BodyError::UnknownField {
            field: format!("{prefix}{k}"),
            expected: known
                .iter()
                .map(|k| format!("`{prefix}{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => Ok(()),
    }
}

fn weight(v: &Value, field: &str) -> Result<u32, BodyError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= Weights::TOTAL)
        .ok_or_else(|| invalid(field, format!("an integer in 0..={}", Weights::TOTAL), v))
}

/// Parses an override body (`POST /api/override`); every message names the offending field.
/// `replicas` is the replica count when known (from the latest record). Public for clients
/// and the fuzz targets.
pub fn parse_override(body: &[u8], replicas: Option<usize>) -> Result<Command, BodyError> {
    let m = parse_object(body)?;
    reject_unknown(&m, "", &["weights", "duration_s"])?;
    let w = match m.get("weights") {
        Some(Value::Object(w)) => w,
        Some(other) => {
            return Err(invalid(
                "weights",
                "an object {\"primary\": P, \"replicas\": [..]}",
                other,
            ));
        }
        None => return Err(BodyError::Missing("weights")),
    };
    reject_unknown(w, "weights.", &["primary", "replicas"])?;
    let primary = weight(
        w.get("primary")
            .ok_or(BodyError::Missing("weights.primary"))?,
        "weights.primary",
    )?;
    let replicas_v = match w.get("replicas") {
        Some(Value::Array(a)) => a,
        Some(other) => return Err(invalid("weights.replicas", "an array", other)),
        None => return Err(BodyError::Missing("weights.replicas")),
    };
    let mut replica_weights = Vec::with_capacity(replicas_v.len());
    for (i, v) in replicas_v.iter().enumerate() {
        replica_weights.push(weight(v, &format!("weights.replicas[{i}]"))?);
    }
    if let Some(n) = replicas
        && replica_weights.len() != n
    {
        return Err(BodyError::Weights(format!(
            "weights.replicas must have {n} entries (one per replica), got {}",
            replica_weights.len()
        )));
    }
    let weights = Weights {
        primary,
        replicas: replica_weights,
    };
    if weights.total() != Weights::TOTAL {
        return Err(BodyError::Weights(format!(
            "weights must sum to {}, got {} ({weights})",
            Weights::TOTAL,
            weights.total()
        )));
    }
    let duration_s = match m.get("duration_s") {
        Some(v) => v
            .as_f64()
            .filter(|d| d.is_finite() && *d > 0.0)
            .ok_or_else(|| invalid("duration_s", "a positive number of seconds", v))?,
        None => return Err(BodyError::Missing("duration_s")),
    };
    Ok(Command::Override {
        weights,
        duration_s,
    })
}

/// Parses a mode body (`POST /api/mode`).
pub fn parse_mode(body: &[u8]) -> Result<Command, BodyError> {
    let m = parse_object(body)?;
    reject_unknown(&m, "", &["mode"])?;
    let v = m.get("mode").ok_or(BodyError::Missing("mode"))?;
    let mode = serde_json::from_value::<Mode>(v.clone())
        .map_err(|_| invalid("mode", "one of \"enforce\", \"shadow\", \"dry_run\"", v))?;
    Ok(Command::SetMode { mode })
}
