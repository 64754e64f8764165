//! What is recorded for every control interval, and the run it belongs to.
//!
//! These types live here rather than in the controller so that the recorder (and the HTTP
//! API that shows it) can describe them without depending on the loop that produces them.

use serde::{Deserialize, Serialize};
use weir_core::{Decision, Explanation, Observation, Outcome, Slo, Weights};
use weir_edge::Mode;
use weir_shield::ShieldStatus;

/// An error as recorded: a stable kind (a metric label) and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable snake_case label (`timeout`, `unreachable`, `bad_response`, ...).
    pub kind: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorInfo {
    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// What happened when the decision was handed to the actuator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Actuation {
    /// The actuator accepted the weights.
    Applied,
    /// The actuator failed; the previous weights are still in force.
    Failed {
        /// The failure.
        error: ErrorInfo,
    },
    /// The actuator was not called.
    Skipped {
        /// Why (`shadow mode`, `backing off after 3 failures until step 42`).
        reason: String,
    },
}

impl Actuation {
    /// Whether the decision's weights are now in force.
    pub fn applied(&self) -> bool {
        matches!(self, Actuation::Applied)
    }
}

/// The target's weights were not the ones Weir last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// What Weir last applied.
    pub expected: Weights,
    /// What the target had before this decision's actuation.
    pub found: Weights,
}

/// Everything about one control interval: the audit record, the dashboard's row and the
/// source of every metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Sequence number, from 0, per controller run.
    pub seq: u64,
    /// Controller clock (seconds since start) when the interval began.
    pub at_s: f64,
    /// What the controller saw (a blank observation when the source failed).
    pub observation: Observation,
    /// What was decided, with the policy's proposal and the shield's interventions.
    pub decision: Decision,
    /// Why the policy proposed what it did.
    pub explanation: Explanation,
    /// Outcome of the previous interval, when known.
    pub outcome: Option<Outcome>,
    /// What the controller expects of this decision, judged from its observation: the share
    /// of reads it sends to replicas over the staleness SLO (or of unknown lag), to replicas
    /// that are down, and the primary CPU it saw.
    pub expected: Outcome,
    /// Reward of the previous interval, when known.
    pub reward: Option<f64>,
    /// Mode the controller was in.
    pub mode: Mode,
    /// What the actuator did with the decision.
    pub actuation: Actuation,
    /// The source's failure this interval, if the observation is a blank stand-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_error: Option<ErrorInfo>,
    /// Weights found at the target before this decision that differ from the last ones Weir
    /// applied (a reload, a restart, a hand edit), when the actuator can read back exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// The weights really in force after this interval, as far as the controller knows:
    /// the decision's when the actuator accepted it, otherwise the last accepted ones (in
    /// shadow mode that stays whatever was in force when shadowing began).
    pub in_force: Weights,
    /// The shield's counters and operator state after the decision.
    pub shield: ShieldStatus,
    /// The policy's name.
    pub policy: String,
    /// Processing time of the interval (observe + decide + actuate), seconds.
    pub loop_duration_s: f64,
}

impl StepRecord {
    /// Destination names in weight order: `primary`, then each replica's name (from the
    /// observation; `replica-N` when the observation has fewer replicas than weights).
    pub fn destinations(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.decision.weights.replicas.len() + 1);
        names.push("primary".to_string());
        for i in 0..self.decision.weights.replicas.len() {
            names.push(
                self.observation
                    .replicas
                    .get(i)
                    .map_or_else(|| format!("replica-{}", i + 1), |r| r.name.clone()),
            );
        }
        names
    }
}

/// What a run governs and against which objectives: fixed for the run, set once by whoever
/// starts the controller, and shown by the dashboard next to every chart (the SLO line, the
/// CPU cap, how old a signal may get).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Identifies this controller run; changes when Weir restarts, so that a dashboard
    /// following the event stream knows to start over (sequence numbers restart at 0).
    pub run_id: String,
    /// One line naming the run (`demo: scenario "demo"`, `weir run weir.toml`).
    pub title: String,
    /// What is being governed, for people.
    pub description: String,
    /// The configured mode: the one `POST /api/mode` can return to from shadow.
    pub mode: Mode,
    /// The objectives.
    pub slo: Slo,
    /// Seconds between decisions (controller clock).
    pub interval_s: f64,
    /// Age (seconds) beyond which the shield treats a signal as stale.
    pub stale_after_s: f64,
}
