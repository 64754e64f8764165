//! The bounds on the operator's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`): they read
//! no body, so one over [`MAX_BODY_BYTES`] is refused with 413, and a request not answered
//! within [`TIMEOUT`] gets 408.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The largest request body the endpoints take.
pub const MAX_BODY_BYTES: usize = 1024;

/// How long a request may take until its response starts.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `router` with the body limit and the timeout.
pub(crate) fn bounded(router: Router) -> Router {
    bounded_with(router, TIMEOUT)
}

fn bounded_with(router: Router, timeout: Duration) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let app = bounded(Router::new().route("/healthz", get(|| async { "ok\n" })));
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        let resp = app
            .oneshot(
                Request::post("/healthz")
                    .header(header::CONTENT_LENGTH, big.len())
                    .body(Body::from(big))
                    .expect("builds"),
            )
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_completes_gets_408() {
        // Only the timeout can answer (tokio's paused clock: no real wait).
        let app = bounded(Router::new().route("/stuck", get(std::future::pending::<&'static str>)));
        let resp = tokio::time::timeout(
            TIMEOUT * 100,
            app.oneshot(Request::get("/stuck").body(Body::empty()).expect("builds")),
        )
        .await
        .expect("the endpoint's timeout answers first")
        .expect("infallible");
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
