//! Forwarding, the admin endpoints, and the two servers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::limit::RequestBodyLimitLayer;
use weir_admit::{AdmitLayer, GateMetrics};

use crate::config::{ConfigFileError, ProxyConfig};

/// A built proxy: the admission layer, the upstream client, and the metrics registry.
pub struct Proxy {
    layer: AdmitLayer,
    upstream: String,
    timeout: Duration,
    max_body_bytes: usize,
    limits: weir_http::Limits,
    client: Client<HttpConnector, Body>,
    registry: Registry,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream)
            .field("gate", self.layer.gate())
            .finish()
    }
}

impl Proxy {
    /// Checks `config` and builds the controller and the layer; `source` names the file in
    /// errors.
    pub fn build(config: &ProxyConfig, source: &Path) -> Result<Proxy, ConfigFileError> {
        let invalid = |error: weir_admit::BuildError| ConfigFileError::Invalid {
            path: source.to_path_buf(),
            error,
        };
        let upstream = config.upstream_uri().map_err(|e| invalid(e.into()))?;
        let limits = config.listener_limits().map_err(|e| invalid(e.into()))?;
        let controller = config.controller.build(None).map_err(invalid)?;
        let layer = AdmitLayer::with(controller, &config.admit).map_err(|e| invalid(e.into()))?;
        let mut registry = Registry::default();
        GateMetrics::register(layer.gate().clone(), &mut registry);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Proxy {
            layer,
            upstream,
            timeout: Duration::from_millis(config.upstream_timeout_ms),
            max_body_bytes: config.max_body_bytes,
            limits,
            client,
            registry,
        })
    }

    /// The admission layer (its gate: limit, in-flight, counts).
    pub fn layer(&self) -> &AdmitLayer {
        &self.layer
    }
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri = match format!("{}{}", proxy.upstream, pq).parse() {
        Ok(u) => u,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("bad request target: {e}\n"),
            );
        }
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let peer_ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer_ip}"),
        None => peer_ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    match tokio::time::timeout(proxy.timeout, proxy.client.request(req)).await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(e)) if over_body_limit(&e) => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body over the proxy's limit of {} bytes\n",
                proxy.max_body_bytes
            ),
        ),
        Ok(Err(e)) => {
            tracing::warn!(upstream = %proxy.upstream, error = %e, "upstream request failed");
            plain(
                StatusCode::BAD_GATEWAY,
                format!("upstream {} failed: {e}\n", proxy.upstream),
            )
        }
        Err(_) => plain(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "upstream {} gave no answer within {} ms\n",
                proxy.upstream,
                proxy.timeout.as_millis()
            ),
        ),
    }
}

/// Whether forwarding failed because the streamed request body passed the body limit (a
/// declared length over it is refused with 413 before forwarding).
fn over_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn metrics(State(proxy): State<Arc<Proxy>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &proxy.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn explain(State(proxy): State<Arc<Proxy>>) -> Json<serde_json::Value> {
    let gate = proxy.layer.gate();
    let e = gate.controller().explain();
    let (admitted, rejected) = gate.counts();
    Json(serde_json::json!({
        "controller": e.controller,
        "limit": e.limit,
        "state": e.state,
        "why": e.why,
        "in_flight": gate.in_flight(),
        "admitted": admitted,
        "rejected": rejected,
        "upstream": proxy.upstream,
    }))
}

/// The largest request body the admin endpoints take: they read none (413 above it).
pub const ADMIN_MAX_BODY_BYTES: usize = 1024;

/// How long an admin request may take until its response starts (408 after it).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `router` with a body limit ([`ADMIN_MAX_BODY_BYTES`], 413) and a request timeout (408).
fn bounded(router: Router, timeout: Duration) -> Router {
    weir_http::bounded(router, ADMIN_MAX_BODY_BYTES, timeout)
}

fn admin_router(proxy: Arc<Proxy>) -> Router {
    let admin = Router::new()
        .route("/metrics", get(metrics))
        .route("/explain", get(explain))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(proxy);
    bounded(admin, ADMIN_TIMEOUT)
}

/// Serves the proxy on `listener` and the admin endpoints on `admin` until `shutdown`
/// completes, then lets requests in flight finish. Both are weir-http's server loop: the
/// client listener with the configured header timeout, connection cap and body limit, the
/// admin port with the defaults (10 s, 256) and [`ADMIN_MAX_BODY_BYTES`].
pub async fn serve_until(
    proxy: Proxy,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let proxy = Arc::new(proxy);
    let inner = Router::new().fallback(forward).with_state(proxy.clone());
    // The body limit outside the admission layer: a declared length over it is refused
    // without taking a slot.
    let app = Router::new()
        .fallback_service(proxy.layer.layer(inner))
        .layer(RequestBodyLimitLayer::new(proxy.max_body_bytes));
    let admin_app = admin_router(proxy.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(weir_http::serve(
        admin,
        admin_app,
        weir_http::Limits::default(),
        async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        },
    ));
    tracing::info!(
        listen = %listener.local_addr()?,
        upstream = %proxy.upstream,
        controller = proxy.layer.gate().controller().name(),
        max_body_bytes = proxy.max_body_bytes,
        max_connections = proxy.limits.max_connections,
        "admission proxy serving"
    );
    weir_http::serve(listener, app, proxy.limits, shutdown).await;
    let _ = stop_tx.send(true);
    admin_task.await.map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn admin() -> Router {
        let config = ProxyConfig {
            upstream: "http://127.0.0.1:9".into(),
            ..ProxyConfig::default()
        };
        let proxy = Proxy::build(&config, Path::new("test.toml")).expect("builds");
        admin_router(Arc::new(proxy))
    }

    #[tokio::test]
    async fn an_admin_request_with_a_body_over_the_limit_gets_413() {
        let app = admin();
        let ok = app
            .clone()
            .oneshot(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("builds"),
            )
            .await
            .expect("infallible");
        assert_eq!(ok.status(), StatusCode::OK);
        let big = vec![b'x'; ADMIN_MAX_BODY_BYTES + 1];
        for path in ["/metrics", "/healthz", "/nothing"] {
            let resp = app
                .clone()
                .oneshot(
                    Request::post(path)
                        .header(header::CONTENT_LENGTH, big.len())
                        .body(Body::from(big.clone()))
                        .expect("builds"),
                )
                .await
                .expect("infallible");
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        }
    }

    #[tokio::test]
    async fn an_admin_request_that_never_completes_gets_408() {
        // Only the timeout can answer: the handler never does.
        let slow = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let resp = bounded(slow, Duration::from_millis(1))
            .oneshot(Request::get("/slow").body(Body::empty()).expect("builds"))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
