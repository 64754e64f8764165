//! Offline training in [`crate::sim`]: ε-greedy Q-learning over domain-randomised episodes
//! (capacity, service-time mean and shape, load steps, service-time changes, timeouts, SLO,
//! CPU gauge or not, initial limit), so the table is not tuned to one server.
//! Deterministic for a seed: every episode draws from its own fork of one generator.
//!
//! The reward of an interval is its goodput within the *true* SLO (SLO ratio × the
//! simulated service-time mean in force) divided by the *achievable* goodput, min(offered
//! rate, true capacity): what training knows and a server does not. It makes rewards
//! comparable across capacities and loads (the best action scores near 1 at 0.3× and at 6×
//! alike), so the differences between actions are not drowned by the differences between
//! episodes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_core::rng::Rng;

use super::table::{QTable, TrainInfo};
use super::{Learner, QLearn, QLearnConfig};
use crate::ConfigError;
use crate::controller::{Controller, CpuGauge};
use crate::sim::{LoadStep, OnTimeout, ServiceChange, Shape, Sim, SimConfig};

/// Training settings. Ranges are sampled log-uniformly unless said otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Master seed.
    pub seed: u64,
    /// Episodes.
    pub episodes: u32,
    /// Simulated seconds per episode.
    pub episode_s: f64,
    /// Exploration rate at the first episode (falls linearly to `epsilon_end`).
    pub epsilon_start: f64,
    /// Exploration rate at the last episode.
    pub epsilon_end: f64,
    /// Floor of the learning rate (it starts at 1/visits).
    pub alpha_min: f64,
    /// Discount per interval.
    pub gamma: f64,
    /// Worker slots, lowest.
    pub workers_min: u32,
    /// Worker slots, highest.
    pub workers_max: u32,
    /// Service-time mean, lowest, ms.
    pub service_ms_min: f64,
    /// Service-time mean, highest, ms.
    pub service_ms_max: f64,
    /// Offered load, lowest multiple of capacity.
    pub load_min: f64,
    /// Offered load, highest multiple of capacity.
    pub load_max: f64,
    /// Capacity (workers / service mean), highest, requests per second: pairs above it are
    /// drawn again. Simulation cost grows with capacity and the state is scale-free, so the
    /// largest, smoothest servers add cost and little to learn.
    pub max_capacity_rps: f64,
    /// SLO ratio, lowest (uniform).
    pub slo_ratio_min: f64,
    /// SLO ratio, highest (uniform).
    pub slo_ratio_max: f64,
    /// The controller's settings (the episode draws `initial_limit` and `slo_ratio`).
    pub controller: QLearnConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 15,
            episodes: 6000,
            episode_s: 12.0,
            epsilon_start: 0.3,
            epsilon_end: 0.05,
            alpha_min: 0.01,
            gamma: 0.7,
            workers_min: 4,
            workers_max: 128,
            service_ms_min: 1.0,
            service_ms_max: 50.0,
            load_min: 0.3,
            load_max: 6.0,
            max_capacity_rps: 20_000.0,
            slo_ratio_min: 1.5,
            slo_ratio_max: 4.0,
            controller: QLearnConfig::default(),
        }
    }
}

/// Where training is, after each episode.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// Episodes done.
    pub episode: u32,
    /// Of how many.
    pub episodes: u32,
    /// Q updates so far.
    pub decisions: u64,
    /// States visited so far.
    pub visited_states: usize,
    /// The last episode's goodput within its SLO as a share of its capacity.
    pub goodput_share: f64,
}

fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (rng.range(lo.ln(), hi.ln().max(lo.ln()))).exp()
}

impl TrainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: String, why| Err(ConfigError::Invalid { field, value, why });
        self.controller.validate()?;
        if self.episodes == 0 {
            return bad("episodes", "0".into(), "must be at least 1");
        }
        if !(self.episode_s.is_finite() && self.episode_s >= 1.0) {
            return bad(
                "episode_s",
                self.episode_s.to_string(),
                "must be at least 1 s",
            );
        }
        let pairs: [(&'static str, f64, f64); 4] = [
            (
                "workers_min",
                self.workers_min as f64,
                self.workers_max as f64,
            ),
            ("service_ms_min", self.service_ms_min, self.service_ms_max),
            ("load_min", self.load_min, self.load_max),
            ("slo_ratio_min", self.slo_ratio_min, self.slo_ratio_max),
        ];
        for (field, lo, hi) in pairs {
            if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
                return bad(
                    field,
                    format!("{lo} (max {hi})"),
                    "must be above 0 and at most its max",
                );
            }
        }
        if !(self.max_capacity_rps.is_finite()
            && self.max_capacity_rps >= self.workers_min as f64 * 1000.0 / self.service_ms_max)
        {
            return bad(
                "max_capacity_rps",
                self.max_capacity_rps.to_string(),
                "must admit the smallest server (workers_min / service_ms_max)",
            );
        }
        if self.slo_ratio_min <= 1.0 {
            return bad(
                "slo_ratio_min",
                self.slo_ratio_min.to_string(),
                "must be above 1",
            );
        }
        for (field, v) in [
            ("epsilon_start", self.epsilon_start),
            ("epsilon_end", self.epsilon_end),
            ("alpha_min", self.alpha_min),
            ("gamma", self.gamma),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, v.to_string(), "must be within 0..1");
            }
        }
        Ok(())
    }

    /// Draws one episode: the server, its load and the controller's settings.
    fn episode(&self, rng: &mut Rng) -> (SimConfig, QLearnConfig, bool) {
        let t = self.episode_s;
        let (mut workers, mut mean) = (self.workers_min, self.service_ms_max);
        for _ in 0..100 {
            workers = log_uniform(rng, self.workers_min as f64, self.workers_max as f64 + 0.99)
                .floor() as u32;
            mean = log_uniform(rng, self.service_ms_min, self.service_ms_max);
            if workers as f64 * 1000.0 / mean <= self.max_capacity_rps {
                break;
            }
        }
        let shape = match rng.below(3) {
            0 => Shape::Exponential,
            1 => Shape::LogNormal {
                sigma: rng.range(0.2, 1.2),
            },
            _ => Shape::Constant,
        };
        let phases = 1 + rng.below(4);
        let mut cuts: Vec<f64> = (1..phases).map(|_| rng.range(0.1, 0.9) * t).collect();
        cuts.sort_by(f64::total_cmp);
        let load = std::iter::once(0.0)
            .chain(cuts)
            .map(|at_s| LoadStep {
                at_s,
                load: log_uniform(rng, self.load_min, self.load_max),
            })
            .collect();
        let service_changes = if rng.uniform() < 0.4 {
            vec![ServiceChange {
                at_s: rng.range(0.2, 0.8) * t,
                factor: log_uniform(rng, 0.5, 3.0),
            }]
        } else {
            Vec::new()
        };
        let slo_ratio = rng.range(self.slo_ratio_min, self.slo_ratio_max);
        let (timeout_ms, on_timeout) = if rng.uniform() < 0.5 {
            (None, OnTimeout::Abandon)
        } else {
            let to = rng.range(1.5, 10.0) * slo_ratio * mean;
            let how = if rng.uniform() < 0.3 {
                OnTimeout::Cancel
            } else {
                OnTimeout::Abandon
            };
            (Some(to), how)
        };
        let with_cpu = rng.uniform() < 0.5;
        let c = &self.controller;
        let initial = (log_uniform(rng, 1.0, 4.0 * workers as f64).round() as u32)
            .clamp(c.min_limit, c.max_limit);
        let sim = SimConfig {
            workers,
            queue_capacity: None,
            service_mean_ms: mean,
            shape,
            load,
            service_changes,
            timeout_ms,
            on_timeout,
            slo_ms: slo_ratio * mean,
            duration_s: t,
            warmup_s: 0.0,
            series_interval_s: 1.0,
            cpu_window_s: c.interval_ms as f64 / 1000.0,
            seed: rng.next_u64(),
        };
        let ctl = QLearnConfig {
            initial_limit: initial,
            slo_ratio,
            ..c.clone()
        };
        (sim, ctl, with_cpu)
    }
}

/// Trains a table from zero; `progress` is called after every episode.
pub fn train(
    config: &TrainConfig,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<QTable, ConfigError> {
    config.validate()?;
    let mut master = Rng::new(config.seed);
    let mut table = QTable::zero();
    let mut decisions = 0;
    for ep in 0..config.episodes {
        let mut rng = master.fork(ep as u64);
        let (sim_config, ctl_config, with_cpu) = config.episode(&mut rng);
        let sim = Sim::new(sim_config.clone())?;
        let cpu = with_cpu.then(|| sim.cpu_gauge() as Arc<dyn CpuGauge>);
        let ctl = Arc::new(QLearn::new(ctl_config.clone(), table, cpu)?);
        let frac = ep as f64 / (config.episodes.max(2) - 1) as f64;
        let base = sim.base();
        let slo_ratio = ctl_config.slo_ratio;
        let truth_config = sim_config.clone();
        ctl.set_learner(Learner {
            rng: rng.fork(1),
            epsilon: config.epsilon_start + (config.epsilon_end - config.epsilon_start) * frac,
            alpha_min: config.alpha_min,
            gamma: config.gamma,
            truth: Box::new(move |now| {
                let t = now.saturating_duration_since(base).as_secs_f64();
                let offered = truth_config.load_at(t) * truth_config.capacity_rps();
                (
                    offered.min(truth_config.capacity_at(t)).max(1.0),
                    slo_ratio * truth_config.service_mean_at(t),
                )
            }),
            prev: None,
            decisions: 0,
        });
        let result = sim.run(ctl.clone() as Arc<dyn Controller>);
        let (t, n) = ctl.take_table();
        table = t;
        decisions += n;
        progress(&TrainProgress {
            episode: ep + 1,
            episodes: config.episodes,
            decisions,
            visited_states: table.visited_states(),
            goodput_share: result.goodput_share(),
        });
    }
    table.training = Some(TrainInfo {
        episodes: config.episodes,
        decisions,
        config: config.clone(),
    });
    Ok(table)
}
