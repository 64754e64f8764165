//! Weir's policies, all behind [`weir_core::Policy`].
//!
//! - [`StaticPolicy`]: equal weights on the replicas, nothing on the primary (what most
//!   clusters run);
//! - [`ThresholdPolicy`]: the seed design's rule, any lag over 5 s sends every read to the
//!   primary;
//! - [`ShunPolicy`]: ProxySQL-style shunning, a replica over `max_staleness_s` gets weight 0
//!   and comes back as soon as it is under; the primary only when every replica is shunned;
//! - [`QLearn`]: tabular Q-learning over a compact, replica-count-independent state, trained
//!   offline in the simulator, served greedily inside the shield's mask, with the shun rule
//!   as its fallback in states it never visited.
//!
//! The lookahead oracle needs the simulator's true state and lives in `weir-eval`.
//! Model files are written atomically ([`persist::write_atomic`]) in a versioned format.

pub mod persist;
pub mod qlearn;
mod rules;

pub use qlearn::{ModelError, QConfig, QLearn, Teacher};
pub use rules::{ShunPolicy, StaticPolicy, ThresholdPolicy};

use serde::{Deserialize, Serialize};

/// The product policies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// [`StaticPolicy`].
    Static,
    /// [`ThresholdPolicy`].
    Threshold,
    /// [`ShunPolicy`].
    Shun,
    /// [`QLearn`].
    Qlearn,
}

impl PolicyKind {
    /// Parses `static`, `threshold`, `shun`, `qlearn`.
    pub fn parse(s: &str) -> Option<PolicyKind> {
        match s {
            "static" => Some(PolicyKind::Static),
            "threshold" => Some(PolicyKind::Threshold),
            "shun" => Some(PolicyKind::Shun),
            "qlearn" => Some(PolicyKind::Qlearn),
            _ => None,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Static => "static",
            PolicyKind::Threshold => "threshold",
            PolicyKind::Shun => "shun",
            PolicyKind::Qlearn => "qlearn",
        }
    }
}
