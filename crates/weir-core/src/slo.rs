//! Service-level objectives shared by the reward, the shield and the benchmark.

use serde::{Deserialize, Serialize};

/// What "good" means for one database cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// A read served by a replica lagging more than this (seconds) counts as stale.
    #[serde(default = "defaults::max_staleness_s")]
    pub max_staleness_s: f64,
    /// Beyond this lag (seconds) a replica gets no reads while any other option exists.
    #[serde(default = "defaults::hard_staleness_s")]
    pub hard_staleness_s: f64,
    /// Primary CPU (0..1) above which the reward starts to charge for load.
    #[serde(default = "defaults::primary_cpu_target")]
    pub primary_cpu_target: f64,
    /// Primary CPU (0..1) that the shield never plans to exceed.
    #[serde(default = "defaults::primary_cpu_max")]
    pub primary_cpu_max: f64,
    /// Read latency objective, 99th percentile, milliseconds.
    #[serde(default = "defaults::read_p99_slo_ms")]
    pub read_p99_slo_ms: f64,
}

mod defaults {
    pub fn max_staleness_s() -> f64 {
        5.0
    }
    pub fn hard_staleness_s() -> f64 {
        30.0
    }
    pub fn primary_cpu_target() -> f64 {
        0.6
    }
    pub fn primary_cpu_max() -> f64 {
        0.85
    }
    pub fn read_p99_slo_ms() -> f64 {
        50.0
    }
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            max_staleness_s: defaults::max_staleness_s(),
            hard_staleness_s: defaults::hard_staleness_s(),
            primary_cpu_target: defaults::primary_cpu_target(),
            primary_cpu_max: defaults::primary_cpu_max(),
            read_p99_slo_ms: defaults::read_p99_slo_ms(),
        }
    }
}

/// An SLO setting out of range, or two that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSlo {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong, naming the field.
    pub message: String,
}

impl Slo {
    /// Checks internal consistency; the error names the offending field.
    pub fn validate(&self) -> Result<(), InvalidSlo> {
        let bad = |field, message| Err(InvalidSlo { field, message });
        for (name, v) in [
            ("max_staleness_s", self.max_staleness_s),
            ("hard_staleness_s", self.hard_staleness_s),
            ("read_p99_slo_ms", self.read_p99_slo_ms),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, format!("{name} must be a positive number, got {v}"));
            }
        }
        if self.hard_staleness_s < self.max_staleness_s {
            return bad(
                "hard_staleness_s",
                format!(
                    "hard_staleness_s ({}) must be >= max_staleness_s ({})",
                    self.hard_staleness_s, self.max_staleness_s
                ),
            );
        }
        for (name, v) in [
            ("primary_cpu_target", self.primary_cpu_target),
            ("primary_cpu_max", self.primary_cpu_max),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return bad(name, format!("{name} must be in (0, 1], got {v}"));
            }
        }
        if self.primary_cpu_max < self.primary_cpu_target {
            return bad(
                "primary_cpu_max",
                format!(
                    "primary_cpu_max ({}) must be >= primary_cpu_target ({})",
                    self.primary_cpu_max, self.primary_cpu_target
                ),
            );
        }
        Ok(())
    }
}
