//! Why offline work could not run.

use weir_policy::{DqnModelError, InvalidQConfig, MergeError, PolicyError};

/// Why a benchmark, a training run or an episode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A policy name that is neither a product policy nor the oracle.
    #[error("unknown policy {name:?}: expected {expected}")]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// What is accepted.
        expected: String,
    },
    /// The policy could not be built (e.g. a learned policy without its model).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A required input is empty.
    #[error("{0}")]
    Nothing(&'static str),
    /// The Q-learning settings are out of range. (The message carries the cause, so it is
    /// no `source`: `{:#}` prints it once.)
    #[error("Q-learning config: {0}")]
    QConfig(InvalidQConfig),
    /// Trained tables could not be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The DQN's network or model failed.
    #[error(transparent)]
    Dqn(#[from] DqnModelError),
    /// Training could not go on.
    #[error("{0}")]
    Training(String),
    /// A worker thread panicked, or a job did not run.
    #[error("{0}")]
    Worker(&'static str),
}

impl From<InvalidQConfig> for EvalError {
    fn from(e: InvalidQConfig) -> Self {
        EvalError::QConfig(e)
    }
}
