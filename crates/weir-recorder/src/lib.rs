//! Weir's recorder: everything the controller did, kept — it makes no decisions and serves
//! nothing.
//!
//! The controller hands one [`StepRecord`] per control interval to a [`Recorder`], which
//! keeps a bounded history ring, the latest state and last error, updates Weir's own
//! Prometheus metrics (a series at 0 for every edge error kind from the start), and
//! broadcasts the record to live subscribers (the API's event stream, the demo console via
//! [`decision_line`]). `weir-api` shows all of it over HTTP.
//!
//! With the `fixtures` feature (tests only) [`fixtures`] builds realistic records.

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod line;
mod metrics;
mod record;
mod recorder;

pub use line::{decision_line, explained_line};
pub use record::{Actuation, Drift, ErrorInfo, Setup, StepRecord};
pub use recorder::{DEFAULT_HISTORY, ErrorOrigin, LastError, Recorder};
