//! Weir's HTTP server loop and the bounds on its endpoints, shared by every process that
//! listens: `weir run` and the demo (through weir-api), the operator's `/metrics`, the
//! rate-limit service's HTTP side, and the admission proxy (its proxied listener and its admin
//! endpoints).
//!
//! - [`serve`] runs hyper's HTTP/1.1 server on a bound listener with a timer, so that
//!   [`Limits::header_read_timeout`] cuts off a client that never finishes its header
//!   ("slowloris"). axum 0.8's own `serve` sets no timer, so hyper's header timeout never fires
//!   there and such a client holds its connection for ever. It also caps open connections
//!   (more are closed at accept), hands the peer address to handlers as axum's
//!   `ConnectInfo<SocketAddr>`, and on shutdown stops accepting, then waits at most
//!   [`Limits::shutdown_grace`] for open connections.
//! - [`bounded`] puts a request body limit (413 above it) and a request timeout (408 when no
//!   response has started) on a router.
//!
//! Written here rather than taken from a crate: the loop is hyper-util's documented
//! connection-per-task pattern with these three limits; no kept crate ships axum serving with
//! a header timeout and a connection cap.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// A client must send a request's whole header within this by default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once by default.
pub const MAX_CONNECTIONS: usize = 256;

/// How long [`serve`] waits by default, after the shutdown signal, for open connections (live
/// event streams never end on their own) before it returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection whose request header is not complete within this is closed.
    pub header_read_timeout: Duration,
    /// Connections open at once; one more is closed as soon as it is accepted, so a flood of
    /// idle clients cannot exhaust the process's file descriptors.
    pub max_connections: usize,
    /// After the shutdown signal, how long open connections may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then waits up to
/// [`Limits::shutdown_grace`] for open connections. Bind port 0 to let the OS choose, then
/// read `listener.local_addr()`.
///
/// A failed accept (out of file descriptors, a connection reset before accept) is logged and
/// retried after 50 ms; it does not stop the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "HTTP connection limit reached; closing the new connection");
            continue;
        };
        // Small answers go out at once (with Nagle on, an answer in two segments waits for the
        // peer's delayed ACK).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let app = router
            .clone()
            .layer(Extension(ConnectInfo(peer)))
            .map_request(|req: Request<Incoming>| req.map(Body::new));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::debug!("HTTP connections still open after the grace period; closing");
        }
    }
}

/// `router` with a request body limit (`max_body_bytes`; 413 when the declared length is over
/// it, and a body error when a streamed body passes it) and a timeout (408 when no response
/// has started within `timeout`).
pub fn bounded(router: Router, max_body_bytes: usize, timeout: Duration) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
}

#[cfg(test)]
mod tests;
