//! The benchmark of Weir's admission control (issue 15): the evidence that adaptive admission
//! keeps goodput up and latency bounded under overload, side by side with the baselines.
//!
//! - [`server`]: the server under test — an axum service of known capacity (W slots, a
//!   seeded service-time distribution, real CPU work per request) with one admission *arm*
//!   in front of it.
//! - [`arms`]: the arms (no limiter, tower `ConcurrencyLimit` + `LoadShed`, the adaptive
//!   limiters of `tower-resilience-adaptive` wrapped to reject, and Weir's controllers) and
//!   the registry of Weir controllers ([`arms::WEIR_ARMS`]).
//! - [`load`]: our own open-loop load generator (Poisson arrivals, latency from each
//!   request's *intended* send time, HDR histograms, per-second rows, its own send lag).
//! - [`runner`]: calibration, the scenarios, repeats over seeds; [`report`] writes
//!   `report.md` and `report.json`.
//!
//! Hand-written: the load generator. `oha`/`wrk2` are binaries, not libraries we can drive
//! per phase with service-time changes and priority classes mid-run, and no kept crate is an
//! open-loop generator library; the statistics use `hdrhistogram`.
//!
//! **Never:** decide pass/fail on timings (the report states goals met or missed; tests
//! compare arms), use a run whose generator fell behind without saying it was discarded, or
//! touch processes it did not start.

pub mod arms;
pub mod crosscheck;
pub mod load;
pub mod report;
pub mod runner;
pub mod server;
