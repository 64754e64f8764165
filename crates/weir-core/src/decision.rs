//! A policy's [`Proposal`] and the shield's final [`Decision`], with the reasons.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Weights;

/// What a policy would like to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Target weights.
    pub weights: Weights,
    /// Index of the chosen action in the policy's own action set, if it has one.
    pub action: Option<usize>,
    /// One line of why, in the policy's words.
    pub reason: String,
}

impl Proposal {
    /// A proposal with a reason and no action index.
    pub fn new(weights: Weights, reason: impl Into<String>) -> Self {
        Proposal {
            weights,
            action: None,
            reason: reason.into(),
        }
    }
}

/// The shield rule behind an intervention. Stable snake_case names: they are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A replica beyond `hard_staleness_s` (or with unknown lag) had weight.
    HardStaleness,
    /// A replica known to be down had weight.
    ReplicaDown,
    /// The primary share exceeded what the primary's CPU headroom allows.
    PrimaryCpuCap,
    /// The primary carried more than the priorities' `primary_reserve` while the replicas
    /// could serve the reads.
    PrimaryReserve,
    /// The change exceeded `max_step` outside an emergency.
    StepLimit,
    /// The observation was stale or missing: the last decision is held.
    StaleObservation,
    /// Stale for too long: the configured fail-safe weights were applied.
    FailSafe,
    /// The controller is paused: the last decision is held.
    Paused,
    /// An operator's manual override is in force.
    ManualOverride,
    /// The proposal was malformed (wrong length or total) and was repaired.
    InvalidProposal,
    /// No healthy destination existed; the least bad one was used.
    NoHealthyDestination,
}

impl Rule {
    /// The stable label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HardStaleness => "hard_staleness",
            Rule::ReplicaDown => "replica_down",
            Rule::PrimaryCpuCap => "primary_cpu_cap",
            Rule::PrimaryReserve => "primary_reserve",
            Rule::StepLimit => "step_limit",
            Rule::StaleObservation => "stale_observation",
            Rule::FailSafe => "fail_safe",
            Rule::Paused => "paused",
            Rule::ManualOverride => "manual_override",
            Rule::InvalidProposal => "invalid_proposal",
            Rule::NoHealthyDestination => "no_healthy_destination",
        }
    }

    /// Every rule, for metric pre-registration and docs.
    pub const ALL: [Rule; 11] = [
        Rule::HardStaleness,
        Rule::ReplicaDown,
        Rule::PrimaryCpuCap,
        Rule::PrimaryReserve,
        Rule::StepLimit,
        Rule::StaleObservation,
        Rule::FailSafe,
        Rule::Paused,
        Rule::ManualOverride,
        Rule::InvalidProposal,
        Rule::NoHealthyDestination,
    ];
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the shield changed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// The rule that fired.
    pub rule: Rule,
    /// Human-readable detail naming the replica, value and limit involved.
    pub detail: String,
}

/// What is actually applied for one control interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Observation time the decision was made at (seconds).
    pub at_s: f64,
    /// The weights to apply.
    pub weights: Weights,
    /// What the policy proposed.
    pub proposal: Proposal,
    /// What the shield changed and why (empty when the proposal passed unchanged).
    pub interventions: Vec<Intervention>,
}

impl Decision {
    /// Whether the shield changed anything.
    pub fn shielded(&self) -> bool {
        !self.interventions.is_empty()
    }
}
