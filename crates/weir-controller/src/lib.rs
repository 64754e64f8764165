//! Weir's control loop.
//!
//! [`ControlStep`] is the synchronous heart shared by every way Weir runs — the live
//! controller, the operator, the demo, training and the benchmark: give it an observation, it
//! feeds the previous interval's reward to the policy, asks the policy for a proposal under
//! the shield's mask, lets the shield decide, and records the result. It does no IO.
//!
//! [`Governor`] is one control interval with its IO: [`Governor::tick`] observes through a
//! [`Source`](weir_edge::Source) with a timeout (a failure becomes a blank observation), steps,
//! hands the decision to an [`Actuator`](weir_edge::Actuator) (unless in shadow mode, and with
//! exponential back-off after failures) and returns the [`weir_recorder::StepRecord`]. The
//! Kubernetes operator ticks one governor per `ReadSplit` from its reconciler.
//!
//! [`Controller`] is the async loop around a governor for `weir run` and the demo: every
//! interval on an injected [`Clock`] it ticks, records in a [`weir_recorder::Recorder`] and
//! applies operator [`Command`](weir_edge::Command)s from the HTTP API between intervals.
//!
//! **Never:** read the system clock itself, or stop because an edge failed.

mod clock;
mod governor;
mod runtime;
mod step;

pub use clock::{Clock, WallClock};
pub use governor::{
    CommandRefused, ControllerError, DEFAULT_MAX_BACKOFF_INTERVALS, DEFAULT_STEP_TIMEOUT_S,
    Governor, GovernorConfig, Tick,
};
pub use runtime::{Controller, ControllerConfig, ControlsHook, RunSummary, StepHook, StopReason};
pub use step::{ControlStep, StepOutput};
