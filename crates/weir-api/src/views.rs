//! The read-only routes: state, history, live events, metrics, health.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use weir_core::Weights;
use weir_edge::Mode;
use weir_recorder::{LastError, Setup, StepRecord};
use weir_shield::Override;

use crate::AppState;
use crate::serve::OPENMETRICS_CONTENT_TYPE;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
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

pub(crate) async fn get_events(
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
