//! Weir's policies, all behind [`weir_core::Policy`], and the registry that names them.
//!
//! - [`StaticPolicy`]: equal weights on the replicas, nothing on the primary (what most
//!   clusters run);
//! - [`ThresholdPolicy`]: the seed design's rule, any lag over 5 s sends every read to the
//!   primary;
//! - [`ShunPolicy`]: ProxySQL-style shunning, a replica over `max_staleness_s` gets weight 0
//!   and comes back as soon as it is under; the primary only when every replica is shunned;
//! - [`QLearn`]: tabular Q-learning over a compact, replica-count-independent state, trained
//!   offline in the simulator, served greedily inside the shield's mask, with the shun rule
//!   as its fallback in states it never visited;
//! - [`Dqn`]: a Double DQN (candle, CPU) over replica-count-invariant features and a fixed
//!   action list, trained offline in the simulator, served greedily inside the shield's mask
//!   with a switching margin, falling back to the shun rule on observations unlike its
//!   training data.
//!
//! [`registry`] is the one list of these by name ([`PolicyKind`]) and the one place that
//! builds them, from a [`Model`] (bytes: a versioned JSON table, or a network's weights in
//! a safetensors file) for those that learn. A new policy goes there, and nowhere else needs to
//! know its name.
//!
//! The lookahead oracle needs the simulator's true state and lives in `weir-eval`. Model
//! files are written atomically (`weir-persist`) in a versioned format.
//!
//! **Never:** see the simulator or any true state — a policy only sees what an `Observation`
//! shows.

pub mod dqn;
pub mod qlearn;
pub mod registry;
mod rules;

pub use dqn::{Dqn, DqnConfig, DqnModel, DqnModelError};
pub use qlearn::{InvalidQConfig, MergeError, ModelError, QConfig, QLearn, Teacher, TrainInfo};
pub use registry::{Loaded, Model, PolicyError, PolicyKind, UnknownPolicy, load_for_service};
pub use rules::{ShunPolicy, StaticPolicy, ThresholdPolicy};

/// A learned policy's action values as its explanation lists them: allowed actions first,
/// then by value (unvalued last), the best twelve.
pub(crate) fn ranked(mut values: Vec<weir_core::ActionValue>) -> Vec<weir_core::ActionValue> {
    values.sort_by(|x, y| {
        y.allowed.cmp(&x.allowed).then(
            y.value
                .unwrap_or(f64::MIN)
                .total_cmp(&x.value.unwrap_or(f64::MIN)),
        )
    });
    values.truncate(12);
    values
}
