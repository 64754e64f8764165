//! The layer in front of a real tonic gRPC server (Envoy's RateLimitService from
//! `envoy-types`, a handler that waits for the test), called by a real tonic client over
//! loopback: at the limit the client gets `RESOURCE_EXHAUSTED`, with no error handler glue.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tokio::sync::Semaphore;
use weir_admit::{AdmitLayer, Config, Static};

struct Held(Arc<Semaphore>);

#[tonic::async_trait]
impl RateLimitService for Held {
    async fn should_rate_limit(
        &self,
        _request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let _ = self.0.acquire().await.map(|p| p.forget());
        Ok(tonic::Response::new(RateLimitResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_server_behind_the_layer_answers_resource_exhausted_at_the_limit() {
    let release = Arc::new(Semaphore::new(0));
    let admit = AdmitLayer::with(
        Arc::new(Static::new(1).unwrap_or_else(|e| panic!("{e}"))),
        &Config::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let gate = admit.gate().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(admit)
            .add_service(RateLimitServiceServer::new(Held(release.clone())))
            .serve_with_incoming(incoming),
    );
    let mut client = RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut first = client.clone();
    let held = tokio::spawn(async move {
        first
            .should_rate_limit(RateLimitRequest::default())
            .await
            .map(|_| ())
    });
    while gate.in_flight() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = client
        .should_rate_limit(RateLimitRequest::default())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    release.add_permits(1);
    assert!(held.await.unwrap_or_else(|e| panic!("{e}")).is_ok());
    // A slot free again: the next call is served.
    release.add_permits(1);
    assert!(
        client
            .should_rate_limit(RateLimitRequest::default())
            .await
            .is_ok()
    );
    assert_eq!(gate.counts(), (2, 1));
    server.abort();
}
