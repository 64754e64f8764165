//! What the controller knows about the cluster at one instant.
//!
//! Every number is a [`Signal`]: a value that may be unknown, with the age of the sample it
//! came from. Unknown is never silently zero: a replica whose lag series vanished is exactly
//! the replica that must not be trusted.

use serde::{Deserialize, Serialize};

/// Why a signal has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// No sample was ever received.
    NeverSeen,
    /// The query returned no series for this target.
    NoSeries,
    /// The sample was NaN or infinite.
    NotANumber,
    /// The source could not be reached or timed out.
    SourceError,
    /// The target is known to be down.
    TargetDown,
}

/// One measured value and how old it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The value, or `None` when unknown.
    pub value: Option<f64>,
    /// Seconds between the sample's timestamp and the observation time; `None` when unknown.
    pub age_s: Option<f64>,
    /// Why the value is unknown (only set when `value` is `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<Unknown>,
}

impl Signal {
    /// A value sampled `age_s` seconds ago. Non-finite values become unknown.
    pub fn aged(value: f64, age_s: f64) -> Self {
        if value.is_finite() {
            Signal {
                value: Some(value),
                age_s: Some(age_s.max(0.0)),
                unknown: None,
            }
        } else {
            Signal::unknown(Unknown::NotANumber)
        }
    }

    /// A value sampled just now.
    pub fn fresh(value: f64) -> Self {
        Signal::aged(value, 0.0)
    }

    /// No value, for the given reason.
    pub fn unknown(why: Unknown) -> Self {
        Signal {
            value: None,
            age_s: None,
            unknown: Some(why),
        }
    }

    /// The value if it is known and no older than `max_age_s`.
    pub fn fresh_within(&self, max_age_s: f64) -> Option<f64> {
        match (self.value, self.age_s) {
            // A non-finite value (read back from a file, or built by hand) is as good as none.
            (Some(v), Some(age)) if age <= max_age_s && v.is_finite() => Some(v),
            _ => None,
        }
    }
}

/// The primary (writer) database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimaryObs {
    /// CPU utilisation, 0..1 (can exceed 1 when the source reports saturation).
    pub cpu: Signal,
    /// Reads per second the primary serves.
    pub read_qps: Signal,
    /// Writes per second the primary commits.
    pub write_qps: Signal,
    /// 99th percentile read latency on the primary, milliseconds.
    pub read_p99_ms: Signal,
}

/// One read replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaObs {
    /// Stable name (matches the actuator's destination and the scenario's replica name).
    pub name: String,
    /// `Some(false)` when known to be down, `None` when unknown.
    pub up: Option<bool>,
    /// Replication lag in seconds (heartbeat based where available).
    pub lag_s: Signal,
    /// Reads per second served by this replica.
    pub read_qps: Signal,
    /// 99th percentile read latency on this replica, milliseconds.
    pub read_p99_ms: Signal,
}

impl ReplicaObs {
    /// The lag if known and fresh enough to act on.
    pub fn lag_within(&self, max_age_s: f64) -> Option<f64> {
        if self.up == Some(false) {
            return None;
        }
        self.lag_s.fresh_within(max_age_s)
    }
}

/// Everything the controller knows at one decision time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds since the controller (or the simulation) started.
    pub at_s: f64,
    /// The primary.
    pub primary: PrimaryObs,
    /// The replicas, in the configured order (the order of weights in a decision).
    pub replicas: Vec<ReplicaObs>,
}

impl Observation {
    /// An observation at `at_s` in which every signal of the primary and of each named
    /// replica is unknown for `why`: what the controller decides on when the source failed.
    pub fn blank(at_s: f64, replicas: &[String], why: Unknown) -> Observation {
        let u = Signal::unknown(why);
        Observation {
            at_s,
            primary: PrimaryObs {
                cpu: u,
                read_qps: u,
                write_qps: u,
                read_p99_ms: u,
            },
            replicas: replicas
                .iter()
                .map(|name| ReplicaObs {
                    name: name.clone(),
                    up: None,
                    lag_s: u,
                    read_qps: u,
                    read_p99_ms: u,
                })
                .collect(),
        }
    }

    /// The age of the freshest signal in the observation, or `None` when nothing is known.
    /// When even this is old, the observation as a whole is stale.
    pub fn freshest_age_s(&self) -> Option<f64> {
        let primary = [
            self.primary.cpu,
            self.primary.read_qps,
            self.primary.read_p99_ms,
        ];
        primary
            .iter()
            .chain(self.replicas.iter().map(|r| &r.lag_s))
            .filter(|s| s.value.is_some())
            .filter_map(|s| s.age_s)
            .reduce(f64::min)
    }

    /// Total reads per second seen by the cluster (primary + replicas), if all parts are known.
    pub fn total_read_qps(&self) -> Option<f64> {
        let mut total = self.primary.read_qps.value?;
        for r in &self.replicas {
            if r.up == Some(false) {
                continue;
            }
            total += r.read_qps.value?;
        }
        Some(total)
    }

    /// Largest known lag, ignoring unknown replicas.
    pub fn max_known_lag_s(&self) -> Option<f64> {
        self.replicas
            .iter()
            .filter_map(|r| r.lag_s.value)
            .reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_become_unknown_not_zero() {
        let s = Signal::aged(f64::NAN, 3.0);
        assert_eq!(s.value, None);
        assert_eq!(s.unknown, Some(Unknown::NotANumber));
        assert_eq!(Signal::aged(f64::INFINITY, 0.0).value, None);
    }

    #[test]
    fn fresh_within_respects_age() {
        let s = Signal::aged(4.0, 20.0);
        assert_eq!(s.fresh_within(30.0), Some(4.0));
        assert_eq!(s.fresh_within(10.0), None);
        assert_eq!(Signal::unknown(Unknown::NoSeries).fresh_within(1e9), None);
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let raw = Signal {
                value: Some(v),
                age_s: Some(1.0),
                unknown: None,
            };
            assert_eq!(raw.fresh_within(30.0), None, "{v} is not a reading");
        }
    }
}
