//! The layer: [`AdmitLayer`] wraps a service in [`Admit`], which asks the shared [`Gate`] for
//! an in-flight slot on every request and answers at once when there is none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::controller::{Controller, Outcome, Sample};

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `field` has an unusable `value`.
    #[error("{field} = {value}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// Why it cannot be used.
        why: &'static str,
    },
}

/// How rejections look, and what is never rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP status of a rejection: 429 (default) or 503.
    pub reject_status: u16,
    /// `Retry-After` on HTTP rejections, in seconds (at least 1).
    pub retry_after_s: u32,
    /// Paths admitted whatever the load (health checks): exact matches.
    pub exempt_paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reject_status: 429,
            retry_after_s: 1,
            exempt_paths: vec!["/healthz".into(), "/readyz".into(), "/livez".into()],
        }
    }
}

impl Config {
    fn check(&self) -> Result<StatusCode, ConfigError> {
        if self.retry_after_s == 0 {
            return Err(ConfigError::Invalid {
                field: "retry_after_s",
                value: "0".into(),
                why: "must be at least 1 second (0 invites an immediate retry storm)",
            });
        }
        match self.reject_status {
            429 => Ok(StatusCode::TOO_MANY_REQUESTS),
            503 => Ok(StatusCode::SERVICE_UNAVAILABLE),
            other => Err(ConfigError::Invalid {
                field: "reject_status",
                value: other.to_string(),
                why: "must be 429 or 503",
            }),
        }
    }
}

/// What a rejected response carries in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The limit at the time.
    pub limit: u32,
    /// Requests in flight at the time.
    pub in_flight: u32,
}

/// The state every clone of the service shares: in-flight count, controller, counters.
pub struct Gate {
    in_flight: AtomicU32,
    admitted: AtomicU64,
    rejected: AtomicU64,
    controller: Arc<dyn Controller>,
    now: Arc<dyn Fn() -> Instant + Send + Sync>,
    reject_status: StatusCode,
    retry_after: HeaderValue,
    exempt_paths: Vec<String>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("controller", &self.controller.name())
            .field("limit", &self.controller.limit())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Gate {
    /// A gate with `controller`, rejections as `config` says, and `now` as the clock.
    pub fn new(
        controller: Arc<dyn Controller>,
        config: &Config,
        now: Arc<dyn Fn() -> Instant + Send + Sync>,
    ) -> Result<Arc<Gate>, ConfigError> {
        let reject_status = config.check()?;
        Ok(Arc::new(Gate {
            in_flight: AtomicU32::new(0),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            controller,
            now,
            reject_status,
            retry_after: HeaderValue::from(config.retry_after_s),
            exempt_paths: config.exempt_paths.clone(),
        }))
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests admitted and rejected so far (exempt ones are in neither).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.admitted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    /// A slot, or the rejection: one compare-and-swap, no lock, no wait.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejection> {
        let limit = self.controller.limit().max(1);
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current >= limit {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                self.controller.on_reject((self.now)());
                return Err(Rejection {
                    limit,
                    in_flight: current,
                });
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            gate: self.clone(),
            started: (self.now)(),
            in_flight: current + 1,
            reported: false,
        })
    }

    fn exempt(&self, path: &str) -> bool {
        self.exempt_paths.iter().any(|p| p == path)
    }

    fn rejection<B: Default>(&self, grpc: bool, why: Rejection) -> Response<B> {
        let mut r = Response::new(B::default());
        if grpc {
            // A trailers-only gRPC answer: status 8 in the headers.
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from_static("8"));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("over the admission limit, retry later"),
            );
        } else {
            *r.status_mut() = self.reject_status;
            r.headers_mut()
                .insert(header::RETRY_AFTER, self.retry_after.clone());
        }
        r.extensions_mut().insert(why);
        r
    }
}

/// An in-flight slot: given back when dropped; reports its sample to the controller once.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    started: Instant,
    in_flight: u32,
    reported: bool,
}

impl Permit {
    fn finish(&mut self, outcome: Outcome) {
        if !self.reported {
            self.reported = true;
            let finished = (self.gate.now)();
            self.gate.controller.on_sample(Sample {
                latency: finished.saturating_duration_since(self.started),
                in_flight: self.in_flight,
                outcome,
                finished,
            });
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Cancelled, or the inner service panicked: no answer, so no latency sample.
        self.finish(Outcome::Dropped);
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The layer.
#[derive(Debug, Clone)]
pub struct AdmitLayer {
    gate: Arc<Gate>,
}

impl AdmitLayer {
    /// A layer whose services share `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        AdmitLayer { gate }
    }

    /// A layer with `controller`, `config`, and the system clock.
    pub fn with(controller: Arc<dyn Controller>, config: &Config) -> Result<Self, ConfigError> {
        Ok(AdmitLayer {
            gate: Gate::new(controller, config, Arc::new(Instant::now))?,
        })
    }

    /// The shared gate (for metrics and explanations).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// A service behind admission control.
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    gate: Arc<Gate>,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Admit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AdmitFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if self.gate.exempt(req.uri().path()) {
            return AdmitFuture::Exempt {
                fut: self.inner.call(req),
            };
        }
        match self.gate.try_acquire() {
            Ok(permit) => AdmitFuture::Admitted {
                fut: self.inner.call(req),
                permit: Some(permit),
            },
            Err(why) => AdmitFuture::Rejected {
                response: Some(self.gate.rejection(is_grpc(&req), why)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Admit`].
    #[project = Proj]
    pub enum AdmitFuture<F, B> {
        /// Holding a slot.
        Admitted { #[pin] fut: F, permit: Option<Permit> },
        /// An exempt path: no slot.
        Exempt { #[pin] fut: F },
        /// Answered at once.
        Rejected { response: Option<Response<B>> },
    }
}

fn outcome<B>(r: &Response<B>) -> Outcome {
    let grpc_error = r
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() != b"0");
    if r.status().is_server_error() || grpc_error {
        Outcome::Error
    } else {
        Outcome::Success
    }
}

impl<F, B, E> Future for AdmitFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Admitted { fut, permit } => {
                let out = std::task::ready!(fut.poll(cx));
                if let Some(mut p) = permit.take() {
                    p.finish(match &out {
                        Ok(r) => outcome(r),
                        Err(_) => Outcome::Error,
                    });
                }
                Poll::Ready(out)
            }
            Proj::Exempt { fut } => fut.poll(cx),
            Proj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion (a caller bug): never ready again, like a fused
                // future, rather than a panic.
                None => Poll::Pending,
            },
        }
    }
}
