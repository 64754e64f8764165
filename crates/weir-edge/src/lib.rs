//! The contract between Weir's control loop and the outside world.
//!
//! Every control interval the loop reads an [`Observation`](weir_core::Observation) from a
//! [`Source`] (Prometheus, the simulator) and hands the shield's
//! [`Decision`](weir_core::Decision) to an [`Actuator`] (HAProxy, Istio, the simulator, a dry
//! run). This crate holds only that contract, so that an edge crate — `weir-prom`,
//! `weir-haproxy`, `weir-istio`, a future ProxySQL or xDS actuator — compiles against it
//! without the loop, the recorder, an HTTP server or a metrics library:
//!
//! - the [`Source`] and [`Actuator`] traits, and [`BoxActuator`], an actuator chosen at run
//!   time (from a configuration file) behind one type;
//! - their errors, [`SourceError`] and [`ActuatorError`], whose [`SourceErrorKind`] and
//!   [`ActuatorErrorKind`] are the one list of stable metric labels (the recorder pre-creates a
//!   series for each), and [`with_causes`], which prints an error's chain saying each cause once;
//! - [`DryRunActuator`], which changes nothing and, given a real actuator, logs exactly what
//!   that one would send;
//! - [`Mode`] (enforce, shadow, dry-run) and the operator's [`Command`]s.
//!
//! **Never:** IO, a clock, an async runtime or a heavy dependency (weir-core, serde,
//! thiserror and tracing only).

mod actuator;
mod dry_run;
mod error;
mod mode;
mod source;

pub use actuator::{Actuator, BoxActuator, DynActuator};
pub use dry_run::DryRunActuator;
pub use error::{ActuatorError, ActuatorErrorKind, SourceError, SourceErrorKind, with_causes};
pub use mode::{Command, Controls, Mode, StandingOverride};
pub use source::Source;
