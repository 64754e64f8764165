//! Weir's control loop.
//!
//! [`ControlStep`] is the synchronous heart shared by every way Weir runs — the live
//! controller, the demo, training and the benchmark: give it an observation, it feeds the
//! previous interval's reward to the policy, asks the policy for a proposal under the
//! shield's mask, lets the shield decide, and records the result. It does no IO.

mod step;

pub use step::{ControlStep, StepOutput};
