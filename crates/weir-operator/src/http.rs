//! The bounds on the operator's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`): they read
//! no body, so one over [`MAX_BODY_BYTES`] is refused with 413, and a request not answered
//! within [`TIMEOUT`] gets 408 (weir-http's `bounded`, tested there). The server loop is
//! weir-http's too: a 10-s header read timeout and at most 256 connections.

use std::time::Duration;

use axum::Router;

/// The largest request body the endpoints take.
pub const MAX_BODY_BYTES: usize = 1024;

/// How long a request may take until its response starts.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `router` with the body limit and the timeout.
pub(crate) fn bounded(router: Router) -> Router {
    weir_http::bounded(router, MAX_BODY_BYTES, TIMEOUT)
}
