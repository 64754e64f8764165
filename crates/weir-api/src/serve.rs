//! Running the API: bind, serve, stop gracefully.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
pub use weir_http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_GRACE};

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the HTTP server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    // The cause is in the message, so it is not also a `source` (a chain printer would say it
    // twice).
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves `router` on `addr` until `shutdown` completes (then waits up to
/// [`SHUTDOWN_GRACE`] for open connections). Binds exactly the address given.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Bind { addr, error })?;
    serve_listener(listener, router, shutdown).await
}

/// Like [`serve`] on an already bound listener (bind port 0 to let the OS choose, then read
/// `listener.local_addr()`): weir-http's server loop with its default limits (a 10-s header
/// read timeout, 256 connections, [`SHUTDOWN_GRACE`]); the peer address reaches the handlers
/// as axum's `ConnectInfo<SocketAddr>` (the audit records it).
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    weir_http::serve(listener, router, weir_http::Limits::default(), shutdown).await;
    Ok(())
}
