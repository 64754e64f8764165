//! `weir operator`: leader election, the kube-runtime controllers over ReadSplits and
//! TrafficPolicies, and the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), with a graceful shutdown.
//!
//! Every replica of the Deployment serves HTTP and competes for one Lease
//! (kube-lease-manager). Only the leader runs the controller; when it loses the Lease it stops
//! deciding at once and forgets its in-memory state, so the next leader starts from the state
//! ConfigMaps. On shutdown the controller finishes the reconciliations in flight, then the
//! Lease is released so a standby takes over without waiting for it to expire.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;

use crate::crd::ReadSplit;
use crate::reconcile::{Context, PromSources, SourceFactory, error_policy, reconcile};
use crate::traffic::{self, TrafficContext, TrafficPolicy};

/// How `weir operator` runs.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// Address for `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// Watch ReadSplits and TrafficPolicies in this namespace only (all namespaces when
    /// `None`).
    pub namespace: Option<String>,
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub lease_namespace: String,
    /// This instance's identity in the Lease (the pod name).
    pub identity: String,
    /// Seconds a Lease is held without renewal before another instance may take it (at
    /// least 2). The leader renews every fifth of it ([`lease_grace_s`]).
    pub lease_duration_s: u64,
    /// Most reconciliations running at once (0: no limit). Each decision sends eight
    /// Prometheus queries; without a limit, a thousand ReadSplits coming due together (as at
    /// start-up) would open thousands of connections to Prometheus at once.
    pub concurrency: u16,
}

/// Why the operator stopped with an error. Each message carries its cause, so no variant has
/// a `source`: the binary's `{:#}` prints the cause once.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// The Prometheus HTTP client could not be built.
    #[error("Prometheus client: {0}")]
    Prometheus(weir_prom::PromError),
    /// Leader election could not start.
    #[error("leader election (Lease {namespace}/{name}): {message}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What failed.
        message: String,
    },
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long before its Lease expires the leader renews it, for a Lease of `duration_s`
/// seconds: it renews every fifth of the Lease (at least every second), so a leader that
/// misses a renewal or three — a stalled node, a slow API server — still holds the Lease,
/// and a leader that lost it finds out within a fifth of the duration. (client-go renews a
/// 15-s Lease every 2 s.) A standby still takes over within one duration of a release.
pub fn lease_grace_s(duration_s: u64) -> u64 {
    duration_s.saturating_sub((duration_s / 5).max(1)).max(1)
}

fn http_router<F: SourceFactory>(ctx: Arc<Context<F>>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "leader election not started\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = ctx.metrics.encode();
                async move {
                    (
                        [(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS))],
                        body,
                    )
                        .into_response()
                }
            }),
        )
}

/// The resources of kind `K` in `namespace`, or in every namespace.
fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until `shutdown` completes: binds `opts.listen`, reads metrics from
/// Prometheus and time from the system clock.
pub async fn run(
    client: Client,
    opts: OperatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|error| OperatorError::Bind {
            addr: opts.listen,
            error,
        })?;
    let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> = Arc::new(Timestamp::now);
    let sources = PromSources::new().map_err(OperatorError::Prometheus)?;
    serve(client, listener, sources, clock, opts, shutdown).await
}

/// [`run`] with its parts supplied: the HTTP listener (already bound), where metrics come
/// from, and the clock the reconciler decides by. Tests use it with a fake API server.
pub async fn serve<F: SourceFactory>(
    client: Client,
    listener: tokio::net::TcpListener,
    sources: F,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    opts: OperatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let ctx = Arc::new(Context::new(
        client.clone(),
        sources,
        clock,
        Some(opts.identity.clone()),
    ));
    let traffic_ctx = Arc::new(TrafficContext::new(
        client.clone(),
        ctx.clock(),
        ctx.metrics.clone(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let app = crate::http::bounded(http_router(ctx.clone(), ready.clone()));
    let server = tokio::spawn(weir_http::serve(
        listener,
        app,
        weir_http::Limits::default(),
        async move {
            let _ = http_stop.wait_for(|v| *v).await;
        },
    ));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let lease_err = |message: String| OperatorError::Lease {
        namespace: opts.lease_namespace.clone(),
        name: opts.lease_name.clone(),
        message,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &opts.lease_name)
        .with_namespace(&opts.lease_namespace)
        .with_identity(&opts.identity)
        .with_duration(opts.lease_duration_s)
        .with_grace(lease_grace_s(opts.lease_duration_s))
        .build()
        .await
        .map_err(|e| lease_err(e.to_string()))?;
    let (mut leader, lease_task) = manager.watch().await;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(identity = %opts.identity, lease = %format!("{}/{}", opts.lease_namespace, opts.lease_name), "waiting for leadership");

    let mut stopping = stop_rx.clone();
    loop {
        // Wait to lead (or to stop).
        tokio::select! {
            r = leader.wait_for(|l| *l) => if r.is_err() { break },
            _ = stopping.wait_for(|v| *v) => break,
        }
        tracing::info!(identity = %opts.identity, "leading: governing ReadSplits and TrafficPolicies");
        ctx.metrics.set_leader(true);
        // Either controller stops when the Lease is lost or the process stops.
        let stopped = || {
            let mut lost = leader.clone();
            let mut stop_ctl = stop_rx.clone();
            async move {
                tokio::select! {
                    _ = lost.wait_for(|l| !*l) => {}
                    _ = stop_ctl.wait_for(|v| *v) => {}
                }
            }
        };
        let readsplits = Controller::new(
            scoped_api::<ReadSplit>(&client, opts.namespace.as_deref()),
            watcher::Config::default().any_semantic(),
        )
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
        let policies = Controller::new(
            scoped_api::<TrafficPolicy>(&client, opts.namespace.as_deref()),
            watcher::Config::default().any_semantic(),
        )
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(stopped())
        .run(
            traffic::reconcile,
            traffic::error_policy,
            traffic_ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
        futures_util::future::join(readsplits, policies).await;
        // Whoever leads next starts from the ConfigMaps, not from what this instance held.
        ctx.forget_all();
        ctx.metrics.set_leader(false);
        if *stop_rx.borrow() {
            break;
        }
        tracing::warn!(identity = %opts.identity, "lost leadership: stopped governing");
    }
    // Dropping the receiver makes the lease task release the Lease.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) => tracing::info!("lease released"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
        Err(e) => tracing::warn!(error = %e, "lease task failed"),
    }
    let _ = server.await;
    Ok(())
}
