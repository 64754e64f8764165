//! Weir's core vocabulary: what the controller sees ([`Observation`]), what a policy
//! suggests ([`Proposal`]), what the shield lets through ([`Decision`]), how a decision is
//! scored ([`reward`]) and the [`Policy`] trait every decision maker implements.
//!
//! This crate does no IO and knows no clock: time arrives as plain seconds inside an
//! [`Observation`], and randomness comes from the seedable [`rng::Rng`], so everything built
//! on it is deterministic for a given seed.

pub mod decision;
pub mod history;
pub mod observation;
pub mod policy;
pub mod reward;
pub mod rng;
pub mod slo;
pub mod weights;

pub use decision::{Decision, Intervention, Proposal, Rule};
pub use history::{History, Record};
pub use observation::{Observation, PrimaryObs, ReplicaObs, Signal, Unknown};
pub use policy::{ActionValue, DecisionContext, Explanation, Mask, Policy, Transition};
pub use reward::{InvalidPriorities, Outcome, Priorities, RewardConfig, RewardKind};
pub use slo::{InvalidSlo, Slo};
pub use weights::{Weights, WeightsError};
