//! Adaptive admission control: a [`tower::Layer`] that admits or rejects every request *at
//! once* against a concurrency limit, for axum, hyper and tonic services alike.
//!
//! - **No queue.** A request either gets an in-flight slot or an immediate answer: HTTP 429
//!   (or 503, configurable) with `Retry-After`, or gRPC `RESOURCE_EXHAUSTED` (a trailers-only
//!   response) for `application/grpc` requests. The answer is a response of the inner
//!   service's own type, so axum routers and tonic servers take the layer without an error
//!   handler.
//! - **Lock-free hot path.** Admission is one compare-and-swap on a shared counter; the slot is
//!   given back when the response future completes, is dropped, or panics.
//! - **Controllers** ([`controller::Controller`]) set the limit and learn only from admitted
//!   requests that completed: rejected requests never produce a latency sample.
//! - **Exempt paths** (health checks) bypass admission.
//!
//! Hand-written: tower's `ConcurrencyLimit` waits for a permit (a queue) and `LoadShed` turns
//! "not ready" into an error the application must map; neither lets the limit move per
//! request.
//!
//! **Never:** block or queue a request, feed a rejected request to a controller, or do IO.

pub mod controller;
pub mod layer;
pub mod qlearn;
pub mod sim;

pub use controller::{Controller, CpuGauge, Explanation, Outcome, Sample, Static};
pub use layer::{Admit, AdmitLayer, Config, ConfigError, Gate, Rejection};
pub use qlearn::{QLearn, QLearnConfig, QLearnError};
