//! The [`Policy`] trait: every decision maker (rules, Q-learning, the oracle) implements it.
//!
//! The control step calls, once per interval: [`Policy::learn`] with the reward of the
//! previous decision (a no-op for rules), then [`Policy::decide`] with the new observation and
//! the shield's [`Mask`]. A policy must only propose weights the mask allows when it can; the
//! shield repairs anything else and records why.

use serde::{Deserialize, Serialize};

use crate::{History, Observation, Outcome, Proposal, Slo, Weights};

/// The shield's view of which target weights are safe right now.
pub trait Mask {
    /// Whether the shield would apply `target` unchanged.
    fn allows(&self, target: &Weights) -> bool;

    /// The most any destination's weight may move this interval, when the shield limits it
    /// (outside an emergency): a policy can then propose the step towards a farther target
    /// ([`Weights::step_toward`]) instead of a target the mask refuses. `None`: no limit.
    fn max_step(&self) -> Option<u32> {
        None
    }
}

/// A mask that allows everything (for tests and for policies run without a shield).
pub struct AllowAll;

impl Mask for AllowAll {
    fn allows(&self, _target: &Weights) -> bool {
        true
    }
}

/// Everything a policy may look at when deciding.
pub struct DecisionContext<'a> {
    /// The latest observation.
    pub obs: &'a Observation,
    /// The weights currently applied.
    pub current: &'a Weights,
    /// Recent records (the latest is the previous interval).
    pub history: &'a History,
    /// The objectives.
    pub slo: &'a Slo,
    /// The shield's action mask.
    pub mask: &'a dyn Mask,
}

/// Feedback for the previous decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The weights that were really applied (after the shield).
    pub applied: Weights,
    /// What happened during the interval.
    pub outcome: Outcome,
    /// The reward of the interval.
    pub reward: f64,
}

/// One candidate action and the value the policy gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionValue {
    /// Short label (e.g. `p=25 r1=1/3`).
    pub label: String,
    /// The target weights of the action.
    pub weights: Weights,
    /// Estimated value (higher is better); `None` for rules without values.
    pub value: Option<f64>,
    /// Whether the shield allowed it.
    pub allowed: bool,
}

/// Why the policy chose what it chose, for the audit log and the dashboard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Explanation {
    /// Policy name.
    pub policy: String,
    /// The state as the policy saw it (e.g. the discretised state of a table).
    pub state: String,
    /// The candidate actions considered, best first (may be truncated).
    pub actions: Vec<ActionValue>,
    /// Set when the policy did not use its own judgement but a fallback rule, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A decision maker.
pub trait Policy: Send {
    /// Stable name (`static`, `threshold`, `shun`, `qlearn`, `dqn`, `lookahead`).
    fn name(&self) -> &str;

    /// Proposes target weights for the next interval.
    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal;

    /// Receives the outcome of the previous decision. Rules ignore it.
    fn learn(&mut self, _transition: &Transition) {}

    /// Explains the latest decision.
    fn explain(&self) -> Explanation;

    /// Starts a new episode (forget per-episode memory, keep what was learned).
    fn reset(&mut self) {}

    /// What the policy has learned, serialised (its model file's contents: text for a table,
    /// binary weights for a network), or `None` for policies without learned state. The
    /// controller persists it atomically.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }
}
