//! A real Debian `redis-server` per test on a free 127.0.0.1 port (`weir_test_support`'s
//! [`Redis`]), a started service with an injected clock, and a tonic client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::transport::Channel;
use weir_ratelimit::{FailureMode, ManualClock, Running, Settings};
pub use weir_test_support::procs::Redis;
use weir_test_support::procs::http_get;

/// Writes a configuration file.
pub fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub const CLOCK_START: u64 = 1_800_000_000; // a multiple of 60: windows start here

pub fn settings(config: &[PathBuf], redis_url: &str, mode: FailureMode) -> Settings {
    let mut s = Settings::new(
        config.to_vec(),
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        redis_url.to_string(),
        mode,
    );
    s.metrics_listen = Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")));
    s.reload_interval = Duration::from_millis(100);
    s.redis_retry = Duration::from_millis(100);
    s
}

pub async fn start(settings: Settings, clock: &ManualClock) -> Running {
    weir_ratelimit::start(settings, Arc::new(clock.clone()))
        .await
        .unwrap_or_else(|e| panic!("the service did not start: {e}"))
}

pub async fn client(running: &Running) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A request with one descriptor per `&[(key, value)]`.
pub fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .iter()
            .map(|d| RateLimitDescriptor {
                entries: d
                    .iter()
                    .map(|(k, v)| Entry {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

pub async fn ask(
    c: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    c.should_rate_limit(req).await.map(|r| r.into_inner())
}

/// The service's `/metrics` or `/status` body (blocking GET on a helper thread).
pub async fn http(running: &Running, path: &str) -> String {
    let port = running.metrics_addr.map(|a| a.port()).unwrap_or(0);
    let path = path.to_string();
    let (code, body) = tokio::task::spawn_blocking(move || http_get(port, &path))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no answer on the metrics port"));
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of one sample line (`name{labels} value`) in a metrics page, 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

pub type Client = RateLimitServiceClient<Channel>;

/// Asks, expecting an answer (not a gRPC error).
pub async fn answer(c: &mut Client, req: RateLimitRequest) -> RateLimitResponse {
    ask(c, req)
        .await
        .unwrap_or_else(|e| panic!("expected an answer, got {e}"))
}
