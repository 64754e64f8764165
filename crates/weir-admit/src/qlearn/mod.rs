//! `qlearn`: a concurrency limit moved by a Q-table, the seed's Sentinel Q-learning idea
//! done properly.
//!
//! Every control interval (`interval_ms` of sample time, driven by the instants of samples
//! and rejections: no thread, no clock) the controller reads what the interval's *admitted,
//! completed* requests measured — mean latency against the no-load latency, its gradient,
//! in-flight against the limit, completion rate against the limit, rejection share, and CPU
//! when a [`CpuGauge`] is given — turns it into a discrete state ([`state`]) and applies the
//! table's greedy action: a multiplier of the limit (×0.75, ×0.9, hold, ×1.05, ×1.25; raises
//! add at least 1), kept within `[min_limit, max_limit]`.
//!
//! * **Latency samples** come only from successful answers: rejected, dropped and failed
//!   requests never give one (the Netflix collapse: their tiny latencies look like a fast
//!   server).
//! * **No-load latency** is the minimum of the interval means over the last
//!   `noload_window_s`: old minima are forgotten, so a service that got slower is not
//!   throttled forever. It is also *re-probed* without dropping to a tiny limit: when the
//!   limit has been cut and requests admitted at half the in-flight still see the same
//!   latency, latency does not depend on concurrency, there is no queue, and the current
//!   latency becomes the no-load latency.
//! * **Raises need a binding limit** (mean in-flight ≥ half the limit, or rejections), as TCP
//!   does for its window (RFC 7661): an idle service never inflates its limit.
//! * **Warm-up:** the limit stays at `initial_limit` until the first no-load estimate.
//! * **Training** ([`train()`]) is offline, in [`crate::sim`], with domain randomisation;
//!   serving is greedy (an unvisited state holds).
//!
//! Hand-written: no crate on crates.io offers tabular Q-learning over admission-control
//! signals (the RL crates are generic frameworks over `ndarray`/`tch`, far heavier than a
//! 19 k-entry table).
//!
//! **Never:** read a clock, spawn a thread, take a latency from a request that was not
//! answered, or block `limit()` (one atomic load).

pub mod state;
pub mod table;
pub mod train;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_core::rng::Rng;

use crate::ConfigError;
use crate::controller::{Controller, CpuGauge, Explanation, Outcome, Sample};
use state::{ACTIONS, Features, HOLD, N_ACTIONS};
use table::QTable;

/// `qlearn`'s settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QLearnConfig {
    /// The lowest limit (≥ 1). Default 1.
    pub min_limit: u32,
    /// The highest limit. Default 4096.
    pub max_limit: u32,
    /// The limit before the first no-load estimate (warm-up). Default 20.
    pub initial_limit: u32,
    /// Control interval, milliseconds of sample time. Default 100.
    pub interval_ms: u64,
    /// Answers an interval waits for before deciding (up to 10 intervals; a quieter interval
    /// holds). Default 16.
    pub min_samples: u32,
    /// The latency SLO as a multiple of no-load latency (> 1). Default 2.
    pub slo_ratio: f64,
    /// How long a no-load minimum is remembered, seconds. Default 10.
    pub noload_window_s: f64,
    /// Answers pooled into one no-load candidate (the window keeps the minimum of the
    /// candidates' means): more is less noisy, and a longer warm-up at low rates. Default 200.
    pub noload_samples: u32,
    /// A table file to serve instead of the embedded one (`weir admit train` writes one).
    /// Read when the controller is built from a [`crate::ControllerSpec`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<std::path::PathBuf>,
}

impl Default for QLearnConfig {
    fn default() -> Self {
        QLearnConfig {
            min_limit: 1,
            max_limit: 4096,
            initial_limit: 20,
            interval_ms: 100,
            min_samples: 16,
            slo_ratio: 2.0,
            noload_window_s: 10.0,
            table: None,
            noload_samples: 200,
        }
    }
}

impl QLearnConfig {
    /// Checks every field; the error names the first unusable one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: String, why| Err(ConfigError::Invalid { field, value, why });
        if self.min_limit == 0 {
            return bad(
                "min_limit",
                "0".into(),
                "must be at least 1: a limit of 0 rejects every request",
            );
        }
        if self.min_limit > self.max_limit {
            return bad(
                "min_limit",
                format!("{} (max_limit = {})", self.min_limit, self.max_limit),
                "must not exceed max_limit",
            );
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return bad(
                "initial_limit",
                format!(
                    "{} (limits {}..={})",
                    self.initial_limit, self.min_limit, self.max_limit
                ),
                "must lie within min_limit..=max_limit",
            );
        }
        if self.interval_ms == 0 {
            return bad("interval_ms", "0".into(), "must be at least 1 ms");
        }
        if self.min_samples == 0 {
            return bad("min_samples", "0".into(), "must be at least 1");
        }
        if self.noload_samples == 0 {
            return bad("noload_samples", "0".into(), "must be at least 1");
        }
        if !(self.slo_ratio.is_finite() && self.slo_ratio > 1.0) {
            return bad(
                "slo_ratio",
                self.slo_ratio.to_string(),
                "must be a finite number above 1 (the SLO is a multiple of no-load latency)",
            );
        }
        if !(self.noload_window_s.is_finite()
            && self.noload_window_s * 1000.0 > self.interval_ms as f64)
        {
            return bad(
                "noload_window_s",
                self.noload_window_s.to_string(),
                "must be longer than one interval",
            );
        }
        Ok(())
    }
}

/// What training knows and a server does not: the achievable goodput (requests per second)
/// and the true SLO latency (seconds) at an instant, for the reward.
pub(crate) type Truth = Box<dyn Fn(Instant) -> (f64, f64) + Send + Sync>;

/// ε-greedy Q-learning inside the controller (training only).
pub(crate) struct Learner {
    pub(crate) rng: Rng,
    pub(crate) epsilon: f64,
    pub(crate) alpha_min: f64,
    pub(crate) gamma: f64,
    pub(crate) truth: Truth,
    pub(crate) prev: Option<(usize, usize)>,
    pub(crate) decisions: u64,
}

#[derive(Debug, Clone)]
struct Decision {
    features: Features,
    state: usize,
    action: usize,
    why: String,
}

/// The warm-up probe: halve the limit while latency follows concurrency (a queue), so the
/// first no-load estimate is not a queued one.
#[derive(Debug, Clone, Copy)]
struct Probe {
    in_flight: f64,
    latency: f64,
    waited: u32,
}

struct Inner {
    table: QTable,
    learner: Option<Learner>,
    limit_f: f64,
    start: Option<Instant>,
    latencies: Vec<f64>,
    completions: u64,
    in_flight_sum: f64,
    noload: VecDeque<(Instant, f64)>,
    pool_sum: f64,
    pool_n: u64,
    prev_mean: Option<f64>,
    anchor: Option<(f64, f64)>,
    probe: Option<Probe>,
    probed: bool,
    last: Option<Decision>,
    note: String,
}

/// The Q-learning controller. Build it with [`QLearn::new`] (a given table) or
/// [`QLearn::with_default_table`] (the table shipped with the crate).
pub struct QLearn {
    config: QLearnConfig,
    limit: AtomicU32,
    rejected: AtomicU64,
    epoch: OnceLock<Instant>,
    close_at_ns: AtomicU64,
    cpu: Option<Arc<dyn CpuGauge>>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for QLearn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QLearn")
            .field("config", &self.config)
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

impl QLearn {
    /// A controller serving `table` greedily; `cpu` adds the CPU feature.
    pub fn new(
        config: QLearnConfig,
        table: QTable,
        cpu: Option<Arc<dyn CpuGauge>>,
    ) -> Result<QLearn, ConfigError> {
        config.validate()?;
        let initial = config.initial_limit;
        Ok(QLearn {
            limit: AtomicU32::new(initial),
            rejected: AtomicU64::new(0),
            epoch: OnceLock::new(),
            close_at_ns: AtomicU64::new(u64::MAX),
            cpu,
            inner: Mutex::new(Inner {
                table,
                learner: None,
                limit_f: initial as f64,
                start: None,
                latencies: Vec::new(),
                completions: 0,
                in_flight_sum: 0.0,
                noload: VecDeque::new(),
                pool_sum: 0.0,
                pool_n: 0,
                prev_mean: None,
                anchor: None,
                probe: None,
                probed: false,
                last: None,
                note: format!(
                    "warm-up: holding the initial limit {initial} until the first no-load estimate"
                ),
            }),
            config,
        })
    }

    /// A controller serving the table shipped with the crate.
    pub fn with_default_table(
        config: QLearnConfig,
        cpu: Option<Arc<dyn CpuGauge>>,
    ) -> Result<QLearn, QLearnError> {
        let table = QTable::embedded()?;
        Ok(QLearn::new(config, table, cpu)?)
    }

    pub(crate) fn set_learner(&self, learner: Learner) {
        self.lock().learner = Some(learner);
    }

    /// Takes the table (and the learner's decision count) out, leaving an empty one.
    pub(crate) fn take_table(&self) -> (QTable, u64) {
        let mut g = self.lock();
        let n = g.learner.as_ref().map_or(0, |l| l.decisions);
        (std::mem::take(&mut g.table), n)
    }

    /// The configuration.
    pub fn config(&self) -> &QLearnConfig {
        &self.config
    }

    /// The current no-load latency estimate (`None` during warm-up).
    pub fn no_load(&self) -> Option<Duration> {
        let g = self.lock();
        min_of(&g.noload).map(Duration::from_secs_f64)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent numbers: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn since_epoch(&self, t: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| t);
        t.saturating_duration_since(epoch).as_nanos() as u64
    }

    fn open_interval(&self, g: &mut Inner, now: Instant) {
        g.start = Some(now);
        g.latencies.clear();
        g.completions = 0;
        g.in_flight_sum = 0.0;
        let at = self.since_epoch(now) + self.config.interval_ms * 1_000_000;
        self.close_at_ns.store(at, Ordering::Relaxed);
    }

    fn maybe_close(&self, g: &mut Inner, now: Instant) {
        let Some(start) = g.start else {
            return;
        };
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let interval = self.config.interval_ms as f64 / 1000.0;
        let n = g.latencies.len();
        if elapsed < interval || (n < self.config.min_samples as usize && elapsed < 10.0 * interval)
        {
            return;
        }
        let rejected = self.rejected.swap(0, Ordering::Relaxed);
        if n < self.config.min_samples as usize {
            g.note = format!(
                "quiet: {n} answers in {:.0} ms (< min_samples {}), holding",
                elapsed * 1000.0,
                self.config.min_samples
            );
            if let Some(l) = g.learner.as_mut() {
                l.prev = None;
            }
            self.open_interval(g, now);
            return;
        }
        self.decide(g, now, elapsed, rejected);
        self.open_interval(g, now);
    }

    fn decide(&self, g: &mut Inner, now: Instant, elapsed: f64, rejected: u64) {
        let c = &self.config;
        let n = g.latencies.len() as f64;
        let mean = g.latencies.iter().sum::<f64>() / n;
        let in_flight = g.in_flight_sum / g.completions.max(1) as f64;
        let window = Duration::from_secs_f64(c.noload_window_s);
        while g.noload.len() > 1
            && g.noload
                .front()
                .is_some_and(|&(t, _)| now.saturating_duration_since(t) > window)
        {
            g.noload.pop_front();
        }
        g.pool_sum += mean * n;
        g.pool_n += n as u64;
        if g.pool_n >= c.noload_samples as u64 {
            let pooled = g.pool_sum / g.pool_n as f64;
            g.noload.push_back((now, pooled));
            g.pool_sum = 0.0;
            g.pool_n = 0;
        }
        let prev_mean = g.prev_mean.replace(mean);
        if g.last.is_none() {
            g.note = match min_of(&g.noload) {
                Some(nl) => format!(
                    "warm-up done: no-load latency {:.2} ms measured at limit {}",
                    nl * 1000.0,
                    self.limit()
                ),
                None => format!(
                    "warm-up: holding the initial limit {} until the first no-load estimate ({} of {} answers)",
                    c.initial_limit, g.pool_n, c.noload_samples
                ),
            };
            if g.noload.is_empty() {
                return;
            }
            if !g.probed {
                g.probed = true;
                self.probe_halve(g, in_flight, mean, "no-load at limit");
                return;
            }
        }
        if let Some(p) = g.probe {
            if let Some(l) = g.learner.as_mut() {
                l.prev = None;
            }
            let reduced = in_flight <= 0.6 * p.in_flight;
            if !reduced && p.waited < 5 {
                g.probe = Some(Probe {
                    waited: p.waited + 1,
                    ..p
                });
                return;
            }
            if reduced {
                g.noload.push_back((now, mean));
            }
            if reduced && mean < 0.8 * p.latency && g.limit_f > c.min_limit as f64 {
                self.probe_halve(
                    g,
                    in_flight,
                    mean,
                    "latency fell with concurrency (a queue) at",
                );
                return;
            }
            g.probe = None;
            g.note = format!(
                "warm-up probe done: no-load {:.2} ms",
                min_of(&g.noload).unwrap_or(mean) * 1000.0
            );
        }
        // Re-probe: requests admitted at half the in-flight see the same latency → no queue.
        let mut note = String::new();
        if let Some((l0, f0)) = g.anchor {
            if mean < 0.85 * l0 {
                g.anchor = Some((mean, in_flight));
            } else if in_flight <= 0.6 * f0 && mean >= 0.9 * l0 && n >= 32.0 {
                note = format!(
                    "; re-probed no-load: {:.2} ms at in-flight {:.1} vs {:.2} ms at {:.1}, latency does not follow concurrency",
                    mean * 1000.0,
                    in_flight,
                    l0 * 1000.0,
                    f0
                );
                g.noload.clear();
                g.noload.push_back((now, mean));
                g.anchor = None;
            }
        }
        let noload = min_of(&g.noload).unwrap_or(mean);
        let limit = g.limit_f.round().max(1.0);
        let features = Features {
            latency_ratio: mean / noload,
            slo_ratio: c.slo_ratio,
            gradient: prev_mean.map_or(1.0, |p| mean / p),
            in_flight_use: in_flight / limit,
            rate_use: g.completions as f64 / elapsed * noload / limit,
            reject_share: rejected as f64 / (rejected + g.completions) as f64,
            cpu: self.cpu.as_ref().and_then(|c| c.utilisation()),
        };
        let s = features.state();
        let action = match g.learner.as_mut() {
            Some(l) => {
                let (achievable, slo_s) = (l.truth)(now);
                let good = g.latencies.iter().filter(|&&x| x <= slo_s).count();
                let reward = good as f64 / (achievable * elapsed);
                if let Some((s0, a0)) = l.prev {
                    let i = s0 * N_ACTIONS + a0;
                    let target = reward + l.gamma * g.table.max_q(s) as f64;
                    let alpha = (1.0 / (1.0 + g.table.visits[i] as f64)).max(l.alpha_min);
                    let q = g.table.q[i] as f64;
                    g.table.q[i] = (q + alpha * (target - q)) as f32;
                    g.table.visits[i] = g.table.visits[i].saturating_add(1);
                    l.decisions += 1;
                }
                let a = if l.rng.uniform() < l.epsilon {
                    l.rng.below(N_ACTIONS)
                } else {
                    g.table.greedy(s)
                };
                l.prev = Some((s, a));
                a
            }
            None => g.table.greedy(s),
        };
        let factor = ACTIONS[action];
        let binding = features.in_flight_use >= 0.5 || rejected > 0;
        let before = g.limit_f;
        let why = if factor > 1.0 && !binding {
            format!(
                "{}; raise ×{factor} not applied: the limit is not binding (in-flight {:.0}% of it, none rejected)",
                describe(&features),
                features.in_flight_use * 100.0
            )
        } else {
            let raised = if factor > 1.0 {
                (before * factor).max(before + 1.0)
            } else {
                before * factor
            };
            g.limit_f = raised.clamp(c.min_limit as f64, c.max_limit as f64);
            let verb = match action {
                0 | 1 => "cut",
                HOLD => "hold",
                _ => "raise",
            };
            if factor < 1.0 && g.anchor.is_none() {
                g.anchor = Some((mean, in_flight));
            } else if factor > 1.0 {
                g.anchor = None;
            }
            let clamped = if g.limit_f == before && factor != 1.0 {
                " (at its bound)"
            } else {
                ""
            };
            format!("{}: {verb} ×{factor}{clamped}", describe(&features))
        };
        self.set_limit(g, g.limit_f);
        g.note = note;
        g.last = Some(Decision {
            features,
            state: s,
            action,
            why,
        });
    }
}

impl QLearn {
    /// One step of the warm-up probe: halve the limit and remember what it measured.
    fn probe_halve(&self, g: &mut Inner, in_flight: f64, mean: f64, what: &str) {
        g.probe = Some(Probe {
            in_flight,
            latency: mean,
            waited: 0,
        });
        let before = g.limit_f.round();
        self.set_limit(g, g.limit_f * 0.5);
        g.note = format!(
            "warm-up probe: {:.2} ms, {what} {before}; halving to {} to check for a queue",
            mean * 1000.0,
            g.limit_f.round()
        );
    }

    fn set_limit(&self, g: &mut Inner, limit: f64) {
        let c = &self.config;
        g.limit_f = limit.clamp(c.min_limit as f64, c.max_limit as f64);
        let l = (g.limit_f.round() as u32).clamp(c.min_limit, c.max_limit);
        self.limit.store(l, Ordering::Relaxed);
    }
}

fn min_of(w: &VecDeque<(Instant, f64)>) -> Option<f64> {
    w.iter().map(|&(_, m)| m).reduce(f64::min)
}

/// Why the features call for what they do, in words.
fn describe(f: &Features) -> String {
    let lat = format!(
        "latency {:.2}× no-load {} SLO {}×",
        f.latency_ratio,
        if f.latency_ratio > f.slo_ratio {
            ">"
        } else {
            "within"
        },
        f.slo_ratio
    );
    let trend = if f.gradient > 1.15 {
        ", rising"
    } else if f.gradient < 0.85 {
        ", falling"
    } else {
        ""
    };
    let rej = if f.reject_share > 0.0 {
        format!(", {:.0}% rejected", f.reject_share * 100.0)
    } else {
        String::new()
    };
    let cpu = f
        .cpu
        .map(|c| format!(", CPU {:.0}%", c * 100.0))
        .unwrap_or_default();
    format!("{lat}{trend}{rej}{cpu}")
}

/// Why a `qlearn` controller could not be built: a field, or its table (the same error as
/// building any controller from a [`crate::ControllerSpec`]).
pub type QLearnError = crate::spec::BuildError;

impl Controller for QLearn {
    fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    fn on_sample(&self, sample: Sample) {
        let mut g = self.lock();
        if g.start.is_none() {
            self.open_interval(&mut g, sample.finished);
        }
        g.completions += 1;
        g.in_flight_sum += sample.in_flight as f64;
        if sample.outcome == Outcome::Success {
            g.latencies.push(sample.latency.as_secs_f64());
        }
        self.maybe_close(&mut g, sample.finished);
    }

    fn on_reject(&self, now: Instant) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if self.since_epoch(now) >= self.close_at_ns.load(Ordering::Relaxed)
            && let Ok(mut g) = self.inner.try_lock()
        {
            self.maybe_close(&mut g, now);
        }
    }

    fn name(&self) -> &'static str {
        "qlearn"
    }

    fn explain(&self) -> Explanation {
        let g = self.lock();
        let limit = self.limit();
        let noload = min_of(&g.noload);
        let (state, why) = match (&g.last, noload) {
            (Some(d), Some(nl)) => {
                let f = &d.features;
                let cpu = f.cpu.map(|c| format!(" cpu={c:.2}")).unwrap_or_default();
                (
                    format!(
                        "limit={limit} no_load={:.2}ms latency={:.2}x slo={}x gradient={:.2} in_flight={:.0}% rate={:.0}% rejected={:.0}%{cpu} state={} action=x{}",
                        nl * 1000.0,
                        f.latency_ratio,
                        f.slo_ratio,
                        f.gradient,
                        f.in_flight_use * 100.0,
                        f.rate_use * 100.0,
                        f.reject_share * 100.0,
                        d.state,
                        ACTIONS[d.action],
                    ),
                    format!("{}{}", d.why, g.note),
                )
            }
            _ => (format!("limit={limit} warm-up"), g.note.clone()),
        };
        Explanation {
            controller: "qlearn",
            limit,
            state,
            why,
        }
    }
}

pub use table::{TableError, TrainInfo};
pub use train::{TrainConfig, TrainProgress, train};
