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
//! - **Classes and partitions** ([`class`]): `sheddable` requests are refused before
//!   `default` ones, `default` before `critical`; a route partition keeps its guaranteed share.
//! - **Metrics** ([`metrics`]) through prometheus-client, read from atomics at scrape time;
//!   a `tracing` event when the limit moves.
//!
//! Hand-written: tower's `ConcurrencyLimit` waits for a permit (a queue) and `LoadShed` turns
//! "not ready" into an error the application must map; neither lets the limit move per
//! request.
//!
//! **Never:** block or queue a request, feed a rejected request to a controller, or do IO on
//! the request path (the one IO here is [`cpu::CgroupCpu`] reading cgroup files, from its
//! own sampler thread).

pub mod bbr;
pub mod class;
pub mod clock;
pub mod controller;
pub mod cpu;
pub mod layer;
pub mod metrics;
pub mod qlearn;
pub mod shard;
pub mod sim;
pub mod spec;

pub use bbr::{Bbr, BbrConfig, BbrMode, BbrState};
pub use class::{Class, ClassShares, Partition, Reserve};
pub use controller::{Controller, CpuGauge, Explanation, Outcome, Sample, Static};
pub use cpu::{CgroupCpu, CpuError, CpuSource};
pub use layer::{Admit, AdmitLayer, Config, ConfigError, Gate, Permit, Reason, Rejection};
pub use metrics::GateMetrics;
pub use qlearn::{QLearn, QLearnConfig, QLearnError};
pub use spec::{BuildError, ControllerSpec};
