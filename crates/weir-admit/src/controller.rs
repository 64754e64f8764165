//! What sets the concurrency limit: a [`Controller`] reads [`Sample`]s of completed requests
//! and answers the current limit, and can say why ([`Explanation`]). [`Static`] is the floor:
//! a fixed limit. Controllers that read CPU take a [`CpuGauge`].

use std::time::{Duration, Instant};

/// How an admitted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The inner service answered (any status below 500).
    Success,
    /// The inner service answered 5xx (or a gRPC error status in the headers).
    Error,
    /// The caller went away, or the inner service panicked, before an answer: no latency.
    Dropped,
}

/// One admitted request that completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From admission to the response head.
    pub latency: Duration,
    /// Requests in flight when it was admitted, itself included.
    pub in_flight: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// When it completed, on the gate's clock (injected: tests and simulators drive it).
    pub finished: Instant,
}

/// What a controller says about itself: its state, its limit, and why the limit is what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The controller's name.
    pub controller: &'static str,
    /// The current limit.
    pub limit: u32,
    /// Its state in a few `key=value` words (e.g. `min_rt=5.1ms max_pass=812/s cpu=0.93`).
    pub state: String,
    /// One sentence: why the limit is what it is now.
    pub why: String,
}

/// CPU utilisation of what the service may use: the container's cgroup quota where there is
/// one, the host's CPUs otherwise.
pub trait CpuGauge: Send + Sync + 'static {
    /// Utilisation over the gauge's last window, 0.0–1.0 of the quota (may exceed 1.0
    /// briefly); `None` while unknown (too early, or unreadable).
    fn utilisation(&self) -> Option<f64>;
}

/// Sets the concurrency limit. Called on the hot path: `limit` must be cheap (an atomic load).
pub trait Controller: Send + Sync + 'static {
    /// The current limit (at least 1).
    fn limit(&self) -> u32;
    /// A completed admitted request. Never called for rejected ones.
    fn on_sample(&self, sample: Sample);
    /// Whether [`Controller::on_sample`] uses its samples (read once, when the gate is built):
    /// a controller that answers `false` spares the request path building them.
    fn wants_samples(&self) -> bool {
        true
    }
    /// A request was rejected at `now` because every slot under the limit was taken: a count
    /// only (offered load the limit refused), never a latency. Refusals of a lower class by
    /// its share or a reservation are not reported: the limit was not what stopped them.
    fn on_reject(&self, _now: Instant) {}
    /// The controller's name, for metrics and explanations.
    fn name(&self) -> &'static str;
    /// Current state, limit and why.
    fn explain(&self) -> Explanation;
}

/// A fixed limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Static {
    limit: u32,
}

impl Static {
    /// A fixed limit of `limit` requests in flight; 0 is refused.
    pub fn new(limit: u32) -> Result<Static, crate::ConfigError> {
        if limit == 0 {
            return Err(crate::ConfigError::Invalid {
                field: "limit",
                value: "0".into(),
                why: "must be at least 1: a limit of 0 rejects every request",
            });
        }
        Ok(Static { limit })
    }
}

impl Controller for Static {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn on_sample(&self, _sample: Sample) {}

    fn wants_samples(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "static"
    }

    fn explain(&self) -> Explanation {
        Explanation {
            controller: "static",
            limit: self.limit,
            state: format!("limit={}", self.limit),
            why: "a fixed limit, set in the configuration".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_limit_of_zero_is_refused_naming_the_field() {
        let e = Static::new(0).unwrap_err().to_string();
        assert!(e.contains("limit = 0"), "{e}");
        assert_eq!(Static::new(7).map(|s| s.limit()).ok(), Some(7));
    }
}
