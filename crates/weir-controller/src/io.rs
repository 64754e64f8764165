//! The loop's two edges: a [`Source`] of observations (Prometheus, the simulator) and an
//! [`Actuator`] that applies weights (Istio, HAProxy, the simulator, dry-run).

use std::future::Future;

use weir_core::{Decision, Observation, Outcome, Weights};

/// Why an observation could not be made. [`SourceError::kind`] is a stable metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the step timeout.
    #[error("timed out after {after_s:.1}s")]
    Timeout {
        /// The timeout that expired, seconds.
        after_s: f64,
    },
    /// The source could not be reached (connection refused, DNS, TLS).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The source answered with something unusable (HTTP error, bad JSON, query error).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    /// Stable snake_case label for `weir_source_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Timeout { .. } => "timeout",
            SourceError::Unreachable(_) => "unreachable",
            SourceError::BadResponse(_) => "bad_response",
            SourceError::Other(_) => "other",
        }
    }
}

/// Why weights could not be applied. [`ActuatorError::kind`] is a stable metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuatorError {
    /// No answer within the step timeout.
    #[error("timed out after {after_s:.1}s")]
    Timeout {
        /// The timeout that expired, seconds.
        after_s: f64,
    },
    /// The target could not be reached (API server, HAProxy runtime socket).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The target answered with something unusable.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// Someone else changed the object concurrently (e.g. a stale `resourceVersion`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The target refused the change (validation, RBAC, a route Weir does not own).
    #[error("rejected: {0}")]
    Rejected(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ActuatorError {
    /// Stable snake_case label for `weir_actuation_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorError::Timeout { .. } => "timeout",
            ActuatorError::Unreachable(_) => "unreachable",
            ActuatorError::BadResponse(_) => "bad_response",
            ActuatorError::Conflict(_) => "conflict",
            ActuatorError::Rejected(_) => "rejected",
            ActuatorError::Other(_) => "other",
        }
    }
}

/// Where observations come from.
pub trait Source: Send + 'static {
    /// Observes the cluster at controller time `now_s`. The returned observation's `at_s`
    /// should be `now_s` (the shield compares override expiry and staleness against it).
    fn observe(
        &mut self,
        now_s: f64,
    ) -> impl Future<Output = Result<Observation, SourceError>> + Send;

    /// What really happened since the previous observation, when the source knows (the
    /// simulator does; Prometheus does not, and the outcome is then estimated from the
    /// observation). Called right after a successful [`Source::observe`].
    fn take_outcome(&mut self) -> Option<Outcome> {
        None
    }
}

/// Where decisions go.
pub trait Actuator: Send + 'static {
    /// Applies the decision's weights. Must be idempotent: the loop re-applies the same
    /// weights every interval, which also repairs drift.
    fn apply(
        &mut self,
        decision: &Decision,
    ) -> impl Future<Output = Result<(), ActuatorError>> + Send;

    /// Short name for logs (`istio`, `haproxy`, `simulator`, `dry-run`).
    fn name(&self) -> &str;
}

/// An actuator that changes nothing: it logs what it would apply and remembers it.
#[derive(Debug, Clone, Default)]
pub struct DryRunActuator {
    last: Option<Weights>,
}

impl DryRunActuator {
    /// A dry-run actuator that has applied nothing yet.
    pub fn new() -> Self {
        DryRunActuator::default()
    }

    /// The weights it would have applied last.
    pub fn last(&self) -> Option<&Weights> {
        self.last.as_ref()
    }
}

impl Actuator for DryRunActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        if self.last.as_ref() != Some(&decision.weights) {
            tracing::info!(weights = %decision.weights, at_s = decision.at_s, "dry-run: would apply");
        }
        self.last = Some(decision.weights.clone());
        Ok(())
    }

    fn name(&self) -> &str {
        "dry-run"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_metric_series_from_the_start() {
        let source = [
            SourceError::Timeout { after_s: 1.0 },
            SourceError::Unreachable(String::new()),
            SourceError::BadResponse(String::new()),
            SourceError::Other(String::new()),
        ];
        for e in &source {
            assert!(
                weir_recorder::SOURCE_ERROR_KINDS.contains(&e.kind()),
                "{}",
                e.kind()
            );
        }
        let actuator = [
            ActuatorError::Timeout { after_s: 1.0 },
            ActuatorError::Unreachable(String::new()),
            ActuatorError::BadResponse(String::new()),
            ActuatorError::Conflict(String::new()),
            ActuatorError::Rejected(String::new()),
            ActuatorError::Other(String::new()),
        ];
        for e in &actuator {
            assert!(
                weir_recorder::ACTUATION_ERROR_KINDS.contains(&e.kind()),
                "{}",
                e.kind()
            );
        }
        assert_eq!(weir_recorder::SOURCE_ERROR_KINDS.len(), source.len());
        assert_eq!(weir_recorder::ACTUATION_ERROR_KINDS.len(), actuator.len());
    }
}
