//! How one control interval is scored.
//!
//! The default is multi-objective: stale reads (weighted by how stale), failed reads, primary
//! CPU above its target
//! (and above its hard cap), read p99 against its SLO, and a jitter cost for moving traffic.
//! Every term is a penalty, so a perfect interval scores 0. The seed design's reward
//! (`100/(p99+1) − max_lag²`) is kept as an option so the benchmark can show how it behaves.

use serde::{Deserialize, Serialize};

use crate::{Observation, Slo, Weights};

/// What happened during one control interval (true values in the simulator, estimates from
/// an observation in production).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Fraction of reads served by a replica lagging more than `max_staleness_s` (0..1).
    pub stale_fraction: f64,
    /// Mean lag of those stale reads, seconds (0 when none).
    #[serde(default)]
    pub stale_lag_s: f64,
    /// Fraction of reads that failed (overload, down replica) (0..1).
    pub failed_fraction: f64,
    /// Mean primary CPU demand over the interval (0..1, above 1 when demand exceeds capacity).
    pub primary_cpu: f64,
    /// Cluster read p99 latency, milliseconds.
    pub read_p99_ms: f64,
    /// Largest replica lag, seconds.
    pub max_lag_s: f64,
    /// Share of traffic moved by this interval's weight change (0..1).
    pub moved_fraction: f64,
}

impl Outcome {
    /// Estimates an outcome from what the controller can see: the reads that `weights` send
    /// to replicas whose lag is over `max_staleness_s` or unknown count as stale, reads sent
    /// to a replica known to be down count as failed.
    pub fn expected(
        obs: &Observation,
        weights: &Weights,
        previous: &Weights,
        slo: &Slo,
    ) -> Outcome {
        let mut stale = 0.0;
        let mut stale_lag = 0.0;
        let mut failed = 0.0;
        let mut p99 = if weights.primary > 0 {
            obs.primary.read_p99_ms.value.unwrap_or(0.0)
        } else {
            0.0
        };
        let mut max_lag: f64 = 0.0;
        for (i, r) in obs.replicas.iter().enumerate() {
            let share = weights.replica_share(i);
            if let Some(lag) = r.lag_s.value {
                max_lag = max_lag.max(lag);
            }
            if r.up == Some(false) {
                failed += share;
                continue;
            }
            match r.lag_s.value {
                Some(lag) if lag <= slo.max_staleness_s => {}
                Some(lag) => {
                    stale += share;
                    stale_lag += share * lag;
                }
                // Unknown lag: count it stale at the hard limit (never as fresh).
                None => {
                    stale += share;
                    stale_lag += share * slo.hard_staleness_s;
                }
            }
            if share > 0.0 {
                p99 = p99.max(r.read_p99_ms.value.unwrap_or(0.0));
            }
        }
        Outcome {
            stale_fraction: stale,
            stale_lag_s: if stale > 0.0 { stale_lag / stale } else { 0.0 },
            failed_fraction: failed,
            primary_cpu: obs.primary.cpu.value.unwrap_or(0.0),
            read_p99_ms: p99,
            max_lag_s: max_lag,
            moved_fraction: previous.moved_fraction(weights),
        }
    }
}

/// The user's priorities, stated once: how bad a stale read is against a failed read, against
/// primary load and against moving traffic (the reward's weights), and how much of the reads
/// the primary may carry while the replicas can serve them (`primary_reserve`, which the shield
/// enforces). The reward, the shield and the benchmark read the same value: `[priorities]` in
/// `weir run`'s configuration (`[reward]` is accepted as its older name).
pub type Priorities = RewardConfig;

/// Relative weights of the multi-objective reward's penalties, and the primary reserve (see
/// [`Priorities`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Which reward to use.
    pub kind: RewardKind,
    /// Penalty per unit of stale-read fraction, for reads just over `max_staleness_s`; it
    /// grows with how stale they are, up to double at `hard_staleness_s`:
    /// × (1 + min(staleness / `hard_staleness_s`, 1)).
    pub stale: f64,
    /// Penalty per unit of failed-read fraction.
    pub failed: f64,
    /// Penalty for primary CPU above target, 1.0 at `primary_cpu_max`.
    pub cpu: f64,
    /// Extra penalty per unit of primary CPU above `primary_cpu_max`.
    pub overload: f64,
    /// Penalty per unit of `p99 / read_p99_slo_ms − 1` above the SLO (capped at 10).
    pub latency: f64,
    /// Penalty per unit of traffic moved.
    pub jitter: f64,
    /// Penalty per weight change, however small: each one is a configuration reload in the
    /// proxy and a turnover of connections, so two near-equal settings taken in turn (flapping)
    /// cost more than either one held.
    pub switch: f64,
    /// Share of reads (0..=1) the primary may carry while every replica is up, fresh (lag
    /// known and at most half of `max_staleness_s`) and within its latency SLO. The default,
    /// 0, sends reads to the primary only when the replicas cannot serve them; the shield
    /// enforces it (rule `primary_reserve`), so healthy replicas carry the reads whatever the
    /// policy proposes.
    pub primary_reserve: f64,
}

/// A priority out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidPriorities {
    /// The field of [`RewardConfig`].
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// The reward formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// Weir's multi-objective penalty (default).
    #[default]
    MultiObjective,
    /// The seed design's `100/(p99+1) − max_lag²`.
    Seed,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            kind: RewardKind::MultiObjective,
            stale: 20.0,
            failed: 20.0,
            cpu: 1.0,
            overload: 10.0,
            latency: 0.5,
            jitter: 2.0,
            switch: 0.5,
            primary_reserve: 0.0,
        }
    }
}

/// Each penalty term of the multi-objective reward, for explanations and tests.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RewardTerms {
    /// Stale-read penalty.
    pub stale: f64,
    /// Failed-read penalty.
    pub failed: f64,
    /// Primary CPU above target.
    pub cpu: f64,
    /// Primary CPU above the cap.
    pub overload: f64,
    /// Latency over SLO.
    pub latency: f64,
    /// Weight movement.
    pub jitter: f64,
    /// A weight change at all.
    pub switch: f64,
}

impl RewardTerms {
    /// The reward: minus the sum of penalties.
    pub fn total(&self) -> f64 {
        -(self.stale
            + self.failed
            + self.cpu
            + self.overload
            + self.latency
            + self.jitter
            + self.switch)
    }
}

impl RewardConfig {
    /// Checks every weight is a non-negative number and the reserve a share; the error names
    /// the field.
    pub fn validate(&self) -> Result<(), InvalidPriorities> {
        for (field, v) in [
            ("stale", self.stale),
            ("failed", self.failed),
            ("cpu", self.cpu),
            ("overload", self.overload),
            ("latency", self.latency),
            ("jitter", self.jitter),
            ("switch", self.switch),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(InvalidPriorities {
                    field,
                    problem: format!("must be a non-negative number, got {v}"),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.primary_reserve) {
            return Err(InvalidPriorities {
                field: "primary_reserve",
                problem: format!("must be a share within 0..=1, got {}", self.primary_reserve),
            });
        }
        Ok(())
    }

    /// The primary reserve in weight points.
    pub fn primary_reserve_points(&self) -> u32 {
        (self.primary_reserve.clamp(0.0, 1.0) * Weights::TOTAL as f64).round() as u32
    }

    /// The penalty terms of the multi-objective reward for `o`.
    pub fn terms(&self, o: &Outcome, slo: &Slo) -> RewardTerms {
        let span = (slo.primary_cpu_max - slo.primary_cpu_target).max(1e-6);
        RewardTerms {
            stale: self.stale
                * o.stale_fraction
                * (1.0 + (o.stale_lag_s / slo.hard_staleness_s.max(1e-6)).min(1.0)),
            failed: self.failed * o.failed_fraction,
            cpu: self.cpu * ((o.primary_cpu - slo.primary_cpu_target).max(0.0) / span).min(3.0),
            overload: self.overload * (o.primary_cpu - slo.primary_cpu_max).max(0.0),
            latency: self.latency * (o.read_p99_ms / slo.read_p99_slo_ms - 1.0).clamp(0.0, 10.0),
            jitter: self.jitter * o.moved_fraction,
            switch: if o.moved_fraction > 0.0 {
                self.switch
            } else {
                0.0
            },
        }
    }

    /// The reward of an interval.
    pub fn reward(&self, o: &Outcome, slo: &Slo) -> f64 {
        match self.kind {
            RewardKind::MultiObjective => self.terms(o, slo).total(),
            RewardKind::Seed => 100.0 / (o.read_p99_ms + 1.0) - o.max_lag_s * o.max_lag_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo() -> Slo {
        Slo::default()
    }

    #[test]
    fn perfect_interval_scores_zero() {
        let o = Outcome {
            primary_cpu: 0.3,
            read_p99_ms: 10.0,
            ..Outcome::default()
        };
        assert_eq!(RewardConfig::default().reward(&o, &slo()), 0.0);
    }

    #[test]
    fn each_term_penalises_its_own_harm() {
        let cfg = RewardConfig::default();
        let base = Outcome {
            primary_cpu: 0.3,
            read_p99_ms: 10.0,
            ..Outcome::default()
        };
        let r0 = cfg.reward(&base, &slo());
        let cases = [
            Outcome {
                stale_fraction: 0.5,
                ..base
            },
            Outcome {
                failed_fraction: 0.1,
                ..base
            },
            Outcome {
                primary_cpu: 0.8,
                ..base
            },
            Outcome {
                read_p99_ms: 120.0,
                ..base
            },
            Outcome {
                moved_fraction: 0.25,
                ..base
            },
        ];
        for c in cases {
            assert!(cfg.reward(&c, &slo()) < r0, "{c:?}");
        }
        // A change costs `switch` however small it is, plus `jitter` per traffic moved.
        let nudge = cfg.terms(
            &Outcome {
                moved_fraction: 0.01,
                ..base
            },
            &slo(),
        );
        assert_eq!(nudge.switch, cfg.switch);
        assert!((nudge.jitter - 0.02).abs() < 1e-12);
        assert_eq!(cfg.terms(&base, &slo()).switch, 0.0);
        // Stale reads: linear in the fraction.
        let t = cfg.terms(
            &Outcome {
                stale_fraction: 0.5,
                ..base
            },
            &slo(),
        );
        assert!((t.stale - 10.0).abs() < 1e-12);
        // CPU: 1.0 at the cap, overload only beyond it.
        let at_cap = cfg.terms(
            &Outcome {
                primary_cpu: 0.85,
                ..base
            },
            &slo(),
        );
        assert!((at_cap.cpu - 1.0).abs() < 1e-9 && at_cap.overload == 0.0);
        let over = cfg.terms(
            &Outcome {
                primary_cpu: 0.95,
                ..base
            },
            &slo(),
        );
        assert!((over.overload - 1.0).abs() < 1e-9);
        // Latency: nothing under the SLO.
        assert_eq!(
            cfg.terms(
                &Outcome {
                    read_p99_ms: 49.0,
                    ..base
                },
                &slo()
            )
            .latency,
            0.0
        );
    }

    #[test]
    fn priorities_out_of_range_name_the_field() {
        assert_eq!(RewardConfig::default().validate(), Ok(()));
        let bad = RewardConfig {
            stale: -1.0,
            ..RewardConfig::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("stale"));
        let bad = RewardConfig {
            primary_reserve: 1.5,
            ..RewardConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("primary_reserve") && err.contains("1.5"),
            "{err}"
        );
        let r = RewardConfig {
            primary_reserve: 0.2,
            ..RewardConfig::default()
        };
        assert_eq!(r.primary_reserve_points(), 20);
    }

    #[test]
    fn seed_reward_is_dominated_by_squared_lag() {
        let cfg = RewardConfig {
            kind: RewardKind::Seed,
            ..RewardConfig::default()
        };
        let o = Outcome {
            read_p99_ms: 9.0,
            max_lag_s: 3.0,
            ..Outcome::default()
        };
        assert!((cfg.reward(&o, &slo()) - (10.0 - 9.0)).abs() < 1e-12);
        // 20 s of lag costs 400 whatever the latency: the defect the brief describes.
        let lagging = Outcome {
            max_lag_s: 20.0,
            ..o
        };
        assert!(cfg.reward(&lagging, &slo()) < -380.0);
    }
}
