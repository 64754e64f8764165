//! Weir's recorder: everything the controller did, kept and shown — it makes no decisions.
//!
//! The controller hands one [`StepRecord`] per control interval to a [`Recorder`], which
//! keeps a bounded history ring, the latest state and last error, updates Weir's own
//! Prometheus metrics, and broadcasts the record to live subscribers (the dashboard's event
//! stream, the demo console via [`decision_line`]). [`router`] exposes all of it over HTTP
//! and, only when an operator token is configured, forwards operator [`Command`]s (pause,
//! resume, override, mode) to the controller through a channel.
//!
//! [`Mode`] and [`Command`] live here rather than in `weir-controller` so that the
//! dependency arrow points one way: the controller depends on the recorder, never back.

#[cfg(test)]
mod fixtures;
mod http;
mod line;
mod metrics;
mod record;
mod recorder;

pub use http::{
    OPENMETRICS_CONTENT_TYPE, SHUTDOWN_GRACE, ServeError, router, serve, serve_listener,
};
pub use line::decision_line;
pub use metrics::{ACTUATION_ERROR_KINDS, SOURCE_ERROR_KINDS};
pub use record::{Actuation, Command, ErrorInfo, Mode, Setup, StepRecord};
pub use recorder::{DEFAULT_HISTORY, ErrorOrigin, LastError, Recorder};
