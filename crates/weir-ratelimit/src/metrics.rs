//! The service's Prometheus metrics and its HTTP side: `/metrics`, `/status`, `/healthz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::service::Shared;

/// The content type of the OpenMetrics text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of a decision's domain for a domain no configuration names: request domains are
/// outside input, and only configured ones get a series of their own.
pub const UNKNOWN_DOMAIN: &str = "(unconfigured)";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub domain: String,
    pub code: &'static str,
}

/// The metric handles.
pub(crate) struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub invalid_requests: Counter,
    pub redis_errors: Counter,
    pub redis_up: Gauge,
    pub reloads: Counter,
    pub reload_errors: Counter,
    pub config_ok: Gauge,
    pub domains: Gauge,
    pub duration: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "weir_ratelimit_decisions",
            "ShouldRateLimit answers by domain and code (ok, over_limit, or \
             redis_failure_allowed / redis_failure_denied when Redis could not count)",
            decisions.clone(),
        );
        let invalid_requests = Counter::default();
        registry.register(
            "weir_ratelimit_invalid_requests",
            "Requests refused as INVALID_ARGUMENT (no descriptors, no domain, an empty descriptor)",
            invalid_requests.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "weir_ratelimit_redis_errors",
            "Failed uses of Redis: a request's counters not raised, or the check at start",
            redis_errors.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "weir_ratelimit_redis_up",
            "1 when the last use of Redis succeeded, 0 when it failed",
            redis_up.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "weir_ratelimit_config_reloads",
            "Configuration changes loaded (the first load included)",
            reloads.clone(),
        );
        let reload_errors = Counter::default();
        registry.register(
            "weir_ratelimit_config_reload_errors",
            "Configuration changes refused; the last good configuration stays in force \
             (the reason is in /status)",
            reload_errors.clone(),
        );
        let config_ok = Gauge::default();
        registry.register(
            "weir_ratelimit_config_last_reload_ok",
            "1 when the files on disk are the configuration in force, 0 when the last change \
             was refused",
            config_ok.clone(),
        );
        let domains = Gauge::default();
        registry.register(
            "weir_ratelimit_config_domains",
            "Domains in the configuration in force",
            domains.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "weir_ratelimit_request_duration_seconds",
            "Time to answer ShouldRateLimit, Redis included",
            duration.clone(),
        );
        Metrics {
            registry,
            decisions,
            invalid_requests,
            redis_errors,
            redis_up,
            reloads,
            reload_errors,
            config_ok,
            domains,
            duration,
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The HTTP routes: `/metrics`, `/status` (JSON: the configuration in force, the last refused
/// change and why, Redis's state, the failure mode) and `/healthz`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/status", get(get_status))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
}

async fn get_metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn get_status(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.status()).into_response()
}
