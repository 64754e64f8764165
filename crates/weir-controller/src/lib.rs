//! Weir's control loop.
//!
//! [`ControlStep`] is the synchronous heart shared by every way Weir runs — the live
//! controller, the demo, training and the benchmark: give it an observation, it feeds the
//! previous interval's reward to the policy, asks the policy for a proposal under the
//! shield's mask, lets the shield decide, and records the result. It does no IO.
//!
//! [`Controller`] is the async loop around it: every interval on an injected [`Clock`] it
//! observes through a [`Source`], steps, hands the decision to an [`Actuator`] (unless in
//! shadow mode) and records everything in a [`weir_recorder::Recorder`]. Operator
//! [`Command`]s from the HTTP API arrive through a channel and are applied between
//! intervals.

mod clock;
mod io;
mod runtime;
mod step;

pub use clock::{Clock, WallClock};
pub use io::{Actuator, ActuatorError, DryRunActuator, Source, SourceError};
pub use runtime::{
    Controller, ControllerConfig, ControllerError, DEFAULT_MAX_BACKOFF_INTERVALS,
    DEFAULT_STEP_TIMEOUT_S, RunSummary, StepHook, StopReason,
};
pub use step::{ControlStep, StepOutput};
pub use weir_recorder::{Command, Mode};
