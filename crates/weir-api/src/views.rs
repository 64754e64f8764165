//! The read-only routes: state, history, metrics, health (live events: `events`).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use weir_core::Weights;
use weir_edge::Mode;
use weir_recorder::{LastError, Setup, StepRecord};
use weir_shield::Override;

use crate::AppState;
use crate::audit::AuditNote;
use crate::serve::OPENMETRICS_CONTENT_TYPE;

/// A JSON error `{"error": message}`; the message is also the audit's `detail`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    let message = message.into();
    let mut resp = (
        status,
        Json(Body {
            error: message.clone(),
        }),
    )
        .into_response();
    resp.extensions_mut().insert(AuditNote {
        args: None,
        detail: Some(message),
    });
    resp
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

pub(crate) async fn get_state(State(st): State<AppState>) -> Response {
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
pub(crate) struct HistoryQuery {
    limit: Option<String>,
}

pub(crate) async fn get_history(
    State(st): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Response {
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

pub(crate) async fn get_metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        )],
        st.recorder.encode_metrics(),
    )
        .into_response()
}

pub(crate) async fn get_ready(State(st): State<AppState>) -> Response {
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
