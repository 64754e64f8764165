//! `weir ratelimit`: the global rate-limit service Envoy calls
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC), reading the
//! configuration the governance compiler writes (envoyproxy/ratelimit's format,
//! [`weir_govern::ratelimit::RateLimitConfig`]) and counting in Redis, so that every instance
//! sharing one Redis shares the limits.
//!
//! For each descriptor of a request, [`limits::Limits::find`] picks the most specific entry of
//! the request's domain (key and value, else key only — which counts each value on its own),
//! as the reference service does; [`counter::Counter`] raises one Redis key per descriptor and
//! window (`domain_key_value_…_<window start>`) with `INCRBY` and `EXPIRE` in one
//! transaction; a count above `requests_per_unit` is `OVER_LIMIT`, and any descriptor over
//! makes the whole answer `OVER_LIMIT`. Each status carries the limit, what remains and the
//! time to the window's end. Windows come from an injected [`clock::Clock`].
//!
//! Bad input gets a clear answer and never a crash: a request without descriptors (or domain,
//! or with an empty descriptor) is `INVALID_ARGUMENT`; while Redis cannot count, the
//! [`FailureMode`] answers (`allow`: `OK`, `deny`: `UNAVAILABLE`, which Envoy's
//! `failure_mode_deny` turns into a refusal), logged once per outage and counted; a
//! configuration change that does not parse or breaks the loader's rules is refused, the last
//! good one stays in force, and `/status` says why. The files are polled (no notify
//! dependency, works on ConfigMap mounts) and the new limits swapped in atomically.
//!
//! HTTP (`metrics_listen`): `/metrics` (OpenMetrics: decisions by domain and code, Redis
//! errors, reloads, request latency), `/status` (JSON), `/healthz`.
//!
//! Both servers are bounded: a gRPC message over [`GRPC_MAX_MESSAGE_BYTES`] is `OUT_OF_RANGE`
//! and a gRPC request past [`Settings::grpc_timeout`] is `CANCELLED`; an HTTP body over
//! [`HTTP_MAX_BODY_BYTES`] gets 413 and an HTTP request past [`HTTP_TIMEOUT`] 408; the HTTP
//! server (weir-http's loop) cuts off a client that does not send its header within 10 s and
//! serves at most 256 connections.
//!
//! **Never:** keep a counter or any per-key state in process (memory does not grow with the
//! number of distinct descriptor values: every counter lives in Redis with its window as TTL),
//! label a metric with a domain no configuration names, or depend on the read-split loop.

pub mod clock;
pub mod counter;
pub mod limits;
mod metrics;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use limits::ConfigError;
pub use metrics::{OPENMETRICS_CONTENT_TYPE, UNKNOWN_DOMAIN};
pub use service::{ConfigStatus, RedisStatus, StatusView};

use crate::counter::Counter;
use crate::limits::Snapshot;
use crate::service::{RateLimiter, Shared};

/// The answer while Redis cannot count, as Envoy's rate-limit filter's `failure_mode_deny`
/// would have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Answer `OK`: traffic flows unlimited while Redis is down.
    Allow,
    /// Answer `UNAVAILABLE`: Envoy (with `failure_mode_deny: true`) refuses the request.
    Deny,
}

impl std::str::FromStr for FailureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(FailureMode::Allow),
            "deny" => Ok(FailureMode::Deny),
            other => Err(format!(
                "unknown failure mode {other:?}: expected `allow` or `deny`"
            )),
        }
    }
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Configuration files, or directories whose `*.yaml` / `*.yml` files are read.
    pub config: Vec<PathBuf>,
    /// The gRPC address (port 0: any free port, see [`Running::grpc_addr`]).
    pub listen: SocketAddr,
    /// Redis, as `redis://host:port[/db]`.
    pub redis_url: String,
    /// The HTTP address of `/metrics`, `/status` and `/healthz`; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// The answer while Redis cannot count.
    pub failure_mode: FailureMode,
    /// How often the configuration files are read for changes.
    pub reload_interval: Duration,
    /// The longest a connection to Redis or one transaction may take.
    pub redis_timeout: Duration,
    /// After a failed connection, how long requests fail fast before the next attempt.
    pub redis_retry: Duration,
    /// The longest a gRPC request may take (then `CANCELLED`, which Envoy treats as a
    /// failure of the service: its failure mode answers).
    pub grpc_timeout: Duration,
}

/// The largest gRPC message the service decodes (`OUT_OF_RANGE` above it): a
/// `RateLimitRequest` is a domain and a few descriptors, well under 1 KiB.
pub const GRPC_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The largest request body the HTTP endpoints take: they read none (413 above it).
pub const HTTP_MAX_BODY_BYTES: usize = 1024;

/// How long an HTTP request may take until its response starts (408 after it).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC server, with the request timeout.
fn grpc_server(timeout: Duration) -> tonic::transport::Server {
    tonic::transport::Server::builder().timeout(timeout)
}

/// The rate-limit service, decoding at most [`GRPC_MAX_MESSAGE_BYTES`] per message.
fn grpc_service<
    S: envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService,
>(
    service: S,
) -> RateLimitServiceServer<S> {
    RateLimitServiceServer::new(service).max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES)
}

/// `router` with a body limit ([`HTTP_MAX_BODY_BYTES`], 413) and a request timeout (408).
fn bounded(router: axum::Router, timeout: Duration) -> axum::Router {
    weir_http::bounded(router, HTTP_MAX_BODY_BYTES, timeout)
}

impl Settings {
    /// Settings with the defaults: reload every 5 s, Redis timeout 500 ms, retry after 1 s,
    /// gRPC requests cut after 5 s.
    pub fn new(
        config: Vec<PathBuf>,
        listen: SocketAddr,
        redis_url: String,
        failure_mode: FailureMode,
    ) -> Self {
        Settings {
            config,
            listen,
            redis_url,
            metrics_listen: None,
            failure_mode,
            reload_interval: Duration::from_secs(5),
            redis_timeout: Duration::from_millis(500),
            redis_retry: Duration::from_secs(1),
            grpc_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be loaded at start (there is no last good one to keep).
    #[error("rate-limit configuration: {0}")]
    Config(ConfigError),
    /// The Redis URL is not one.
    #[error("redis URL {url:?}: {error}")]
    RedisUrl {
        /// The URL as given.
        url: String,
        /// Why.
        error: redis::RedisError,
    },
    /// An address could not be bound.
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind {
        /// `gRPC` or `metrics`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The gRPC server failed (the transport error and its causes).
    #[error("gRPC server: {0}")]
    Grpc(String),
    /// A task of the service panicked or was cancelled.
    #[error("a task of the service ended abnormally: {0}")]
    Task(tokio::task::JoinError),
}

// The causes are in each message, so no variant has a `source`: `{:#}` prints each once.
impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e)
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        Error::Grpc(text)
    }
}

/// A started service.
pub struct Running {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/status` and `/healthz` are served.
    pub metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), Error>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl Running {
    /// What `/status` shows.
    pub fn status(&self) -> StatusView {
        self.shared.status()
    }

    /// Stops serving and waits for the servers to finish.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let mut first = Ok(());
        for t in self.tasks {
            let r = t.await.map_err(Error::from).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Runs until a server fails or `stop` resolves, then shuts down.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        let servers: Vec<JoinHandle<Result<(), Error>>> = std::mem::take(&mut self.tasks);
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::channel::<Result<(), Error>>(servers.len().max(1));
        let mut watchers = Vec::new();
        for t in servers {
            let tx = done_tx.clone();
            watchers.push(tokio::spawn(async move {
                let r = t.await.map_err(Error::from).and_then(|r| r);
                let _ = tx.send(r).await;
            }));
        }
        drop(done_tx);
        let result = tokio::select! {
            () = stop => Ok(()),
            Some(r) = done_rx.recv() => match r {
                Ok(()) => Ok(()),
                Err(e) => Err(e),
            },
        };
        let _ = self.stop.send(true);
        for w in watchers {
            let _ = w.await;
        }
        while let Ok(r) = done_rx.try_recv() {
            if let Err(e) = r {
                tracing::warn!(error = %e, "while stopping");
            }
        }
        result
    }
}

/// Loads the configuration, connects nothing yet (Redis is reached on first use; one that is
/// unreachable at start is logged and the failure mode answers), binds the listeners and
/// starts the gRPC server, the HTTP server and the reloader.
pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Running, Error> {
    let paths = settings.config.clone();
    let snapshot = load_blocking(paths.clone()).await?;
    let limits = limits::parse(&snapshot)?;

    let counter = Counter::new(
        &settings.redis_url,
        settings.redis_timeout,
        settings.redis_retry,
    )
    .map_err(|error| Error::RedisUrl {
        url: settings.redis_url.clone(),
        error,
    })?;

    let metrics = metrics::Metrics::new();
    metrics.reloads.inc();
    metrics.config_ok.set(1);
    metrics
        .domains
        .set(i64::try_from(limits.domains().len()).unwrap_or(i64::MAX));
    let config = ConfigStatus {
        files: file_names(&snapshot),
        domains: limits.domains(),
        last_error: None,
        reloads: 1,
        reload_errors: 0,
    };
    tracing::info!(domains = ?config.domains, files = ?config.files, "rate-limit configuration loaded");
    warn_detailed_metric(&limits);
    let shared = Arc::new(Shared {
        limits: ArcSwap::from_pointee(limits),
        metrics,
        config: Mutex::new(config),
        redis_state: Mutex::new((None, None)),
        failure_mode: settings.failure_mode,
        counter,
        clock,
    });

    let grpc = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|error| Error::Bind {
            what: "gRPC",
            addr: settings.listen,
            error,
        })?;
    let grpc_addr = grpc.local_addr().map_err(|error| Error::Bind {
        what: "gRPC",
        addr: settings.listen,
        error,
    })?;
    let http = match settings.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| Error::Bind {
                    what: "metrics",
                    addr,
                    error,
                })?;
            let local = l.local_addr().map_err(|error| Error::Bind {
                what: "metrics",
                addr,
                error,
            })?;
            Some((l, local))
        }
        None => None,
    };

    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let service = RateLimiter {
        shared: shared.clone(),
    };
    let mut grpc_stop = stopped.clone();
    // TCP_NODELAY on every accepted connection: a listener handed to tonic gets none (its
    // builder's `tcp_nodelay` applies only to addresses it binds), and with Nagle on, an
    // answer written in more than one segment waits for the proxy's delayed ACK: 40 ms stalls
    // in the tail (benches/service.rs, one request at a time: worst 44 ms without, 5 ms with).
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let grpc_timeout = settings.grpc_timeout;
    tasks.push(tokio::spawn(async move {
        grpc_server(grpc_timeout)
            .add_service(grpc_service(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            })
            .await
            .map_err(Error::from)
    }));

    let mut metrics_addr = None;
    if let Some((listener, local)) = http {
        metrics_addr = Some(local);
        let router = bounded(metrics::router(shared.clone()), HTTP_TIMEOUT);
        let mut http_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            weir_http::serve(listener, router, weir_http::Limits::default(), async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
            Ok(())
        }));
    }

    tasks.push(tokio::spawn(reload_loop(
        shared.clone(),
        paths,
        snapshot,
        settings.reload_interval,
        stopped,
    )));

    // Reach Redis once now, so that one unreachable at start is said at start (and not
    // fatal: the failure mode answers until it is reachable).
    match shared.counter.ping().await {
        Ok(()) => shared.redis_result(Ok(())),
        Err(e) => shared.redis_result(Err(&e)),
    }

    tracing::info!(%grpc_addr, ?metrics_addr, redis = %shared.counter.addr(), failure_mode = ?settings.failure_mode, "rate-limit service serving");
    Ok(Running {
        grpc_addr,
        metrics_addr,
        shared,
        stop,
        tasks,
    })
}

/// Runs the service with the system clock until Ctrl-C or SIGTERM, or until a server fails.
pub async fn serve(settings: Settings) -> Result<(), Error> {
    serve_until(settings, shutdown_signal()).await
}

/// Runs the service with the system clock until `stop` resolves or a server fails.
pub async fn serve_until(
    settings: Settings,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let running = start(settings, Arc::new(SystemClock)).await?;
    running.run_until(stop).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn file_names(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect()
}

async fn load_blocking(paths: Vec<PathBuf>) -> Result<Snapshot, ConfigError> {
    match tokio::task::spawn_blocking(move || limits::read_files(&paths)).await {
        Ok(r) => r,
        Err(e) => Err(ConfigError::Read {
            path: PathBuf::new(),
            error: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Reads the files every `interval`; a change that parses and passes the loader's rules is
/// swapped in, any other is refused with its reason kept for `/status` (once per distinct
/// content: an unchanged broken file is not reported again).
async fn reload_loop(
    shared: Arc<Shared>,
    paths: Vec<PathBuf>,
    mut last_seen: Snapshot,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return Ok(()),
        }
        let read = load_blocking(paths.clone()).await;
        let error_key;
        let result = match read {
            Ok(snapshot) if snapshot == last_seen => continue,
            Ok(snapshot) => {
                let parsed = limits::parse(&snapshot);
                error_key = None;
                last_seen = snapshot;
                parsed
            }
            Err(e) => {
                // An unreadable file: reported once until what is read changes, and whatever
                // is read next counts as a change (even the files in force, put back).
                error_key = Some(e.to_string());
                last_seen = Vec::new();
                Err(e)
            }
        };
        apply_reload(&shared, result, &last_seen, error_key);
    }
}

/// `detailed_metric` is accepted (files written for envoyproxy/ratelimit load unchanged) but
/// has no effect: said once per load.
fn warn_detailed_metric(limits: &limits::Limits) {
    let entries = limits.detailed_metric_entries();
    if !entries.is_empty() {
        tracing::warn!(
            ?entries,
            "detailed_metric has no effect: weir ratelimit's metrics are per domain and \
             outcome, never per descriptor value"
        );
    }
}

fn apply_reload(
    shared: &Shared,
    result: Result<limits::Limits, ConfigError>,
    snapshot: &Snapshot,
    read_error: Option<String>,
) {
    let Ok(mut config) = shared.config.lock() else {
        return;
    };
    match result {
        Ok(limits) => {
            let domains = limits.domains();
            warn_detailed_metric(&limits);
            shared.limits.store(Arc::new(limits));
            shared.metrics.reloads.inc();
            shared.metrics.config_ok.set(1);
            shared
                .metrics
                .domains
                .set(i64::try_from(domains.len()).unwrap_or(i64::MAX));
            tracing::info!(?domains, "rate-limit configuration reloaded");
            config.files = file_names(snapshot);
            config.domains = domains;
            config.last_error = None;
            config.reloads += 1;
        }
        Err(e) => {
            let reason = e.to_string();
            if read_error.is_some() && config.last_error.as_deref() == Some(reason.as_str()) {
                return;
            }
            shared.metrics.reload_errors.inc();
            shared.metrics.config_ok.set(0);
            tracing::warn!(error = %reason, "rate-limit configuration change refused; the last good one stays in force");
            config.last_error = Some(reason);
            config.reload_errors += 1;
        }
    }
}

#[cfg(test)]
mod bounds {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
    use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
    use tower::ServiceExt;

    use super::{GRPC_MAX_MESSAGE_BYTES, HTTP_MAX_BODY_BYTES, bounded, grpc_server, grpc_service};

    /// A service that never answers: only the server's bounds can.
    struct Stuck;

    #[tonic::async_trait]
    impl RateLimitService for Stuck {
        async fn should_rate_limit(
            &self,
            _: tonic::Request<RateLimitRequest>,
        ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
            std::future::pending().await
        }
    }

    fn request(value_len: usize) -> RateLimitRequest {
        RateLimitRequest {
            domain: "shop".to_string(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "user".to_string(),
                    value: "u".repeat(value_len),
                }],
                ..Default::default()
            }],
            hits_addend: 0,
        }
    }

    /// Serves `Stuck` as `start` serves the real service; returns its gRPC status for `req`.
    async fn ask_stuck(timeout: Duration, req: RateLimitRequest) -> tonic::Status {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(
            grpc_server(timeout)
                .add_service(grpc_service(Stuck))
                .serve_with_incoming(incoming),
        );
        let mut client = RateLimitServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connects");
        // A deadline the test cannot pass without the server's bounds (no timing asserted).
        let answer = tokio::time::timeout(Duration::from_secs(60), client.should_rate_limit(req))
            .await
            .expect("the server's bounds answer");
        server.abort();
        match answer {
            Ok(_) => panic!("Stuck never answers"),
            Err(status) => status,
        }
    }

    #[tokio::test]
    async fn a_grpc_message_over_the_limit_is_refused() {
        let status = ask_stuck(
            Duration::from_secs(600),
            request(GRPC_MAX_MESSAGE_BYTES + 1),
        )
        .await;
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
        assert!(status.message().contains("too large"), "{status}");
    }

    #[tokio::test]
    async fn a_grpc_request_that_never_completes_is_cancelled_at_the_timeout() {
        let status = ask_stuck(Duration::from_millis(20), request(8)).await;
        assert_eq!(status.code(), tonic::Code::Cancelled, "{status}");
    }

    #[tokio::test]
    async fn http_bodies_over_the_limit_get_413_and_stuck_requests_408() {
        let app = bounded(
            axum::Router::new()
                .route("/healthz", get(|| async { "ok\n" }))
                .route("/stuck", get(std::future::pending::<&'static str>)),
            Duration::from_millis(1),
        );
        let big = vec![b'x'; HTTP_MAX_BODY_BYTES + 1];
        let resp = app
            .clone()
            .oneshot(
                Request::post("/healthz")
                    .header("content-length", big.len())
                    .body(Body::from(big))
                    .expect("builds"),
            )
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let resp = app
            .oneshot(Request::get("/stuck").body(Body::empty()).expect("builds"))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
