//! The tick model: a primary, N replicas, a workload, scripted events and a Prometheus-like
//! view of it all. See the crate documentation for the equations.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_core::rng::Rng;
use weir_core::{Observation, PrimaryObs, ReplicaObs, Signal, Unknown, Weights};

use crate::scenario::{EventKind, Scenario};
use crate::stats::{IntervalStats, TickStats};

/// Utilisation at which queueing latency stops growing (`1 / (1 − 0.98)` = 50 × base).
pub const RHO_MAX: f64 = 0.98;

/// Span of write history kept to compute lag. A replica further behind than this reports
/// exactly this lag (it saturates): no policy decision depends on the difference between
/// two hours and three hours behind, and the bound keeps a clone of the simulator small.
pub const LAG_WINDOW_S: f64 = 2.0 * 3600.0;

/// Correlation time of the smoothed workload noise, seconds.
pub const NOISE_TAU_S: f64 = 60.0;

/// Heartbeat resolution: an observed lag is the true lag plus `U(0, HEARTBEAT_S)`.
pub const HEARTBEAT_S: f64 = 0.5;

/// Once every effective routing share is within this of its target, connection turnover is
/// complete and the shares snap to the targets (the last old connection has closed; without
/// it a drained destination would keep an ever smaller, never zero, trickle).
pub const TURNOVER_SNAP: f64 = 1e-4;

/// Smallest capacity multiplier applied for `primary_degraded` (a factor of 0 would divide
/// by zero; this is "practically nothing left").
const MIN_CAPACITY_FACTOR: f64 = 1e-3;

/// The true state of the cluster at the end of the latest tick (for the oracle and tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Simulated time, seconds.
    pub at_s: f64,
    /// Primary CPU, 0..1.
    pub primary_cpu: f64,
    /// Primary demand / capacity (above 1 when overloaded).
    pub primary_demand: f64,
    /// Reads per second the primary served.
    pub primary_read_qps: f64,
    /// Writes per second committed.
    pub primary_write_qps: f64,
    /// Primary read p99, milliseconds.
    pub primary_read_p99_ms: f64,
    /// Total reads per second offered by clients.
    pub offered_read_qps: f64,
    /// Reads per second that failed.
    pub failed_read_qps: f64,
    /// Per replica, in scenario order.
    pub replicas: Vec<ReplicaTruth>,
}

/// The true state of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTruth {
    /// Replica name.
    pub name: String,
    /// Whether it is reachable.
    pub up: bool,
    /// True replication lag, seconds.
    pub lag_s: f64,
    /// Reads per second it served.
    pub read_qps: f64,
    /// Offered reads / capacity (above 1 when overloaded).
    pub utilisation: f64,
    /// Writes per second it applied.
    pub apply_qps: f64,
    /// Read p99, milliseconds.
    pub read_p99_ms: f64,
}

/// An event with its target resolved to an index.
#[derive(Debug, Clone, Copy)]
struct ActiveEvent {
    kind: EventKind,
    target: Option<usize>,
    start_s: f64,
    end_s: f64,
    factor: f64,
}

/// Per-replica parameters and state, flat so a tick touches one small struct per replica.
#[derive(Debug, Clone)]
struct ReplicaState {
    capacity: f64,
    apply_capacity: f64,
    interference: f64,
    base_latency_ms: f64,
    /// Effective share of reads (follows `target` as connections turn over).
    share: f64,
    /// Share the weights in force ask for.
    target: f64,
    // Per-tick event effects.
    apply_factor: f64,
    down: bool,
    // State at the end of the latest tick.
    applied: f64,
    lag_s: f64,
    served_qps: f64,
    utilisation: f64,
    apply_qps: f64,
    p99_ms: f64,
}

/// Cumulative writes at the end of each tick, in a fixed ring: `W(k · tick_s)`.
#[derive(Debug, Clone)]
struct WriteLog {
    w: Vec<f64>,
    head: usize,
    len: usize,
    first_tick: u64,
    tick_s: f64,
}

impl WriteLog {
    fn new(capacity: usize, tick_s: f64) -> WriteLog {
        // W(0) = 0 is the first entry.
        WriteLog {
            w: vec![0.0; capacity.max(2)],
            head: 0,
            len: 1,
            first_tick: 0,
            tick_s,
        }
    }

    fn get(&self, i: usize) -> f64 {
        self.w[(self.head + i) % self.w.len()]
    }

    fn time(&self, i: usize) -> f64 {
        (self.first_tick + i as u64) as f64 * self.tick_s
    }

    fn push(&mut self, cumulative: f64) {
        let cap = self.w.len();
        if self.len < cap {
            self.w[(self.head + self.len) % cap] = cumulative;
            self.len += 1;
        } else {
            self.w[self.head] = cumulative;
            self.head = (self.head + 1) % cap;
            self.first_tick += 1;
        }
    }

    /// `now − τ` where `W(τ) = applied` (piecewise linear between ticks), 0 when caught up,
    /// the ring span when `applied` is older than the ring.
    fn lag(&self, applied: f64, now_s: f64) -> f64 {
        let last = self.get(self.len - 1);
        if applied >= last {
            return 0.0;
        }
        if applied < self.get(0) {
            return (now_s - self.time(0)).max(0.0);
        }
        // Smallest k with W_k > applied; W_0 <= applied < W_{len-1}, so 1 <= k <= len-1.
        let (mut lo, mut hi) = (0usize, self.len - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid) > applied {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let (w0, w1) = (self.get(lo), self.get(hi));
        let frac = if w1 > w0 {
            (applied - w0) / (w1 - w0)
        } else {
            0.0
        };
        let tau = self.time(lo) + frac * (self.time(hi) - self.time(lo));
        (now_s - tau).max(0.0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ReplicaSample {
    up: bool,
    lag_s: f64,
    read_qps: f64,
    p99_ms: f64,
}

/// One scrape: a noisy snapshot of the exporters.
#[derive(Debug, Clone)]
struct Scrape {
    /// Scrape time; `None` for an empty slot.
    at_s: Option<f64>,
    cpu: f64,
    read_qps: f64,
    write_qps: f64,
    p99_ms: f64,
    replicas: Vec<ReplicaSample>,
}

/// The simulated cluster. Cloning is cheap enough for a lookahead per decision: a few flat
/// vectors (the largest is the write log, 8 bytes per tick of [`LAG_WINDOW_S`] or of the
/// scenario, whichever is shorter).
#[derive(Debug, Clone)]
pub struct Simulator {
    scenario: Arc<Scenario>,
    events: Arc<[ActiveEvent]>,
    tick_s: f64,
    total_ticks: u64,
    tick: u64,
    now_s: f64,
    weights: Weights,
    /// Effective share of reads on the primary (follows `primary_target`).
    primary_share: f64,
    primary_target: f64,
    /// Fraction of the gap to the target shares closed per tick: `1 − exp(−dt/L)`, exactly 1
    /// for instant routing (`L = 0`).
    turnover: f64,
    /// Whether the effective shares still differ from the targets.
    turning_over: bool,
    load_rng: Rng,
    metric_rng: Rng,
    read_noise: f64,
    write_noise: f64,
    noise_phi: f64,
    cum_writes: f64,
    log: WriteLog,
    replicas: Vec<ReplicaState>,
    // Primary and cluster state at the end of the latest tick.
    primary_cpu: f64,
    primary_demand: f64,
    primary_served_qps: f64,
    primary_p99_ms: f64,
    write_qps: f64,
    offered_qps: f64,
    failed_qps: f64,
    // Observation pipeline.
    next_scrape_s: f64,
    scrapes: Vec<Scrape>,
    next_slot: usize,
    // Reused every tick for the cluster p99 (latency, served reads).
    p99_scratch: Vec<(f64, f64)>,
}

fn positive_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        fallback
    }
}

impl Simulator {
    /// A fresh cluster at time 0 with even replica weights. `seed` drives the workload noise,
    /// the metric noise and the scrape phase (pass `scenario.seed` for the scenario's own).
    ///
    /// The scenario should have passed [`Scenario::validate`]; out-of-range values are clamped
    /// rather than panicking, and events naming an unknown replica are ignored.
    pub fn new(scenario: &Scenario, seed: u64) -> Simulator {
        let timing = &scenario.timing;
        let tick_s = positive_or(timing.tick_s, 1.0);
        let duration_s = positive_or(scenario.duration_s, tick_s);
        let total_ticks = (duration_s / tick_s - 1e-9).ceil().max(1.0) as u64;
        let mut root = Rng::new(seed);
        let mut load_rng = root.fork(1);
        let mut metric_rng = root.fork(2);

        let sigma = scenario.workload.noise.clamp(0.0, 1.0);
        let (read_noise, write_noise) = if sigma > 0.0 {
            (sigma * load_rng.normal(), sigma * load_rng.normal())
        } else {
            (0.0, 0.0)
        };

        let events: Arc<[ActiveEvent]> = scenario
            .events
            .iter()
            .filter_map(|e| {
                let target = match &e.target {
                    Some(name) if e.kind.targets_replica() => Some(scenario.replica_index(name)?),
                    _ => None,
                };
                Some(ActiveEvent {
                    kind: e.kind,
                    target,
                    start_s: e.at_s,
                    end_s: e.end_s(),
                    factor: e.factor.unwrap_or(1.0).max(0.0),
                })
            })
            .collect();

        let replicas: Vec<ReplicaState> = scenario
            .replicas
            .iter()
            .map(|r| ReplicaState {
                capacity: positive_or(r.capacity, 1.0),
                apply_capacity: r.apply_capacity.max(0.0),
                interference: r.read_apply_interference.clamp(0.0, 1.0),
                base_latency_ms: r.base_latency_ms.max(0.0),
                share: 0.0,
                target: 0.0,
                apply_factor: 1.0,
                down: false,
                applied: 0.0,
                lag_s: 0.0,
                served_qps: 0.0,
                utilisation: 0.0,
                apply_qps: 0.0,
                p99_ms: r.base_latency_ms.max(0.0),
            })
            .collect();
        let n = replicas.len();
        let lifetime = scenario.routing.connection_lifetime_s;
        let turnover = if lifetime.is_finite() && lifetime > 0.0 {
            1.0 - (-tick_s / lifetime).exp()
        } else {
            1.0
        };

        let log_ticks = ((LAG_WINDOW_S / tick_s).ceil() as u64).min(total_ticks) as usize + 2;
        let scrape_interval = positive_or(timing.scrape_interval_s, 15.0);
        let delay = timing
            .scrape_delay_s
            .clamp(0.0, crate::scenario::MAX_SCRAPE_DELAY_S);
        // Scrapes are at least one tick apart, and at least (interval − tick) apart; keep
        // every scrape still in flight plus the latest visible one.
        let min_spacing = tick_s.max(scrape_interval - tick_s);
        let slots = ((delay + tick_s) / min_spacing).ceil() as usize + 2;
        let empty = Scrape {
            at_s: None,
            cpu: 0.0,
            read_qps: 0.0,
            write_qps: 0.0,
            p99_ms: 0.0,
            replicas: vec![ReplicaSample::default(); n],
        };

        let mut sim = Simulator {
            scenario: Arc::new(scenario.clone()),
            events,
            tick_s,
            total_ticks,
            tick: 0,
            now_s: 0.0,
            weights: Weights::even(n),
            primary_share: 0.0,
            primary_target: 0.0,
            turnover,
            turning_over: false,
            next_scrape_s: metric_rng.range(0.0, scrape_interval),
            load_rng,
            metric_rng,
            read_noise,
            write_noise,
            noise_phi: (-tick_s / NOISE_TAU_S).exp(),
            cum_writes: 0.0,
            log: WriteLog::new(log_ticks, tick_s),
            replicas,
            primary_cpu: 0.0,
            primary_demand: 0.0,
            primary_served_qps: 0.0,
            primary_p99_ms: scenario.primary.base_latency_ms.max(0.0),
            write_qps: 0.0,
            offered_qps: 0.0,
            failed_qps: 0.0,
            scrapes: vec![empty; slots.min(4096)],
            next_slot: 0,
            p99_scratch: Vec::with_capacity(n + 1),
        };
        // The cluster starts in steady state: the connections already follow even weights.
        let even = Weights::even(n);
        sim.set_weights(&even);
        sim.snap_shares();
        sim
    }

    /// A copy to plan with *without foresight*: the state now (lags, backlogs, weights,
    /// connections in turnover, scrapes in flight), the scripted events active now assumed to
    /// go on (a controller sees that a replica is stalled, not when the stall ends), no event
    /// that has not started, and the workload's and the metrics' noise replaced by their mean
    /// (noise factor 1, exact scrapes). The cluster's parameters (capacities, apply rates,
    /// the diurnal shape) stay known. What a controller that knows the cluster but not its
    /// future would forecast; the copy's own future is deterministic.
    pub fn without_foresight(&self) -> Simulator {
        let now = self.now_s;
        let mut scenario = (*self.scenario).clone();
        scenario.workload.noise = 0.0;
        scenario.timing.metric_noise = 0.0;
        let events: Arc<[ActiveEvent]> = self
            .events
            .iter()
            .filter(|e| e.start_s <= now && now < e.end_s)
            .map(|e| ActiveEvent {
                end_s: f64::INFINITY,
                ..*e
            })
            .collect();
        Simulator {
            scenario: Arc::new(scenario),
            events,
            read_noise: 0.0,
            write_noise: 0.0,
            ..self.clone()
        }
    }

    /// Current simulated time, seconds.
    pub fn now_s(&self) -> f64 {
        self.now_s
    }

    /// Tick length, seconds.
    pub fn tick_s(&self) -> f64 {
        self.tick_s
    }

    /// Ticks stepped so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Whether the scenario's duration has been simulated.
    pub fn done(&self) -> bool {
        self.tick >= self.total_ticks
    }

    /// The scenario being simulated.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Replica names, in weight order.
    pub fn replica_names(&self) -> Vec<String> {
        self.scenario
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Number of replicas.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The weights in force.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Applies new read weights from the next tick on. Reads split in proportion to the
    /// weights; a missing replica weight counts as 0, and a zero total sends every read to
    /// the primary (what a proxy with no healthy backend weight would do with a fallback).
    ///
    /// With `routing.connection_lifetime_s > 0` the weights set the *target* shares and the
    /// traffic follows them as connections turn over (see the crate documentation); with 0
    /// they take effect on the next tick.
    pub fn set_weights(&mut self, weights: &Weights) {
        self.weights.clone_from(weights);
        let total = weights.total();
        if total == 0 {
            self.primary_target = 1.0;
            self.replicas.iter_mut().for_each(|r| r.target = 0.0);
        } else {
            let total = f64::from(total);
            self.primary_target = f64::from(weights.primary) / total;
            for (i, r) in self.replicas.iter_mut().enumerate() {
                r.target = f64::from(weights.replicas.get(i).copied().unwrap_or(0)) / total;
            }
        }
        if self.turnover >= 1.0 {
            self.snap_shares();
        } else {
            self.turning_over = true;
        }
    }

    /// Effective shares := targets (instant routing, or turnover complete).
    fn snap_shares(&mut self) {
        self.primary_share = self.primary_target;
        for r in &mut self.replicas {
            r.share = r.target;
        }
        self.turning_over = false;
    }

    /// One tick of connection turnover: each effective share closes `turnover` of its gap to
    /// the target; once every gap is below [`TURNOVER_SNAP`] the shares equal the targets.
    /// The shares keep summing to 1 (both the old and the new split do).
    fn turn_over(&mut self) {
        let a = self.turnover;
        self.primary_share += (self.primary_target - self.primary_share) * a;
        let mut gap = (self.primary_target - self.primary_share).abs();
        for r in &mut self.replicas {
            r.share += (r.target - r.share) * a;
            gap = gap.max((r.target - r.share).abs());
        }
        if gap < TURNOVER_SNAP {
            self.snap_shares();
        }
    }

    /// The share of reads the primary actually receives now (equal to its weight share
    /// unless connections are still turning over).
    pub fn primary_share(&self) -> f64 {
        self.primary_share
    }

    /// The share of reads replica `i` actually receives now.
    pub fn replica_share(&self, i: usize) -> Option<f64> {
        self.replicas.get(i).map(|r| r.share)
    }

    /// True lag of replica `i`, seconds.
    pub fn true_lag_s(&self, i: usize) -> Option<f64> {
        self.replicas.get(i).map(|r| r.lag_s)
    }

    /// Advances one tick and reports what happened in it. Allocation-free.
    pub fn step(&mut self) -> TickStats {
        let dt = self.tick_s;
        let t0 = self.now_s;
        let t1 = (self.tick + 1) as f64 * dt;
        if self.turning_over {
            self.turn_over();
        }
        let sc = &*self.scenario;

        // Events active at the start of the tick.
        let mut read_factor = 1.0;
        let mut write_factor = 1.0;
        let mut primary_factor = 1.0;
        let mut gap = false;
        for r in &mut self.replicas {
            r.apply_factor = 1.0;
            r.down = false;
        }
        for e in self.events.iter() {
            if t0 < e.start_s || t0 >= e.end_s {
                continue;
            }
            let target = e.target.and_then(|i| self.replicas.get_mut(i));
            match (e.kind, target) {
                (EventKind::ReplicaStall, Some(r)) => r.apply_factor = 0.0,
                (EventKind::ReplicaSlow, Some(r)) => r.apply_factor *= e.factor,
                (EventKind::ReplicaDown, Some(r)) => r.down = true,
                (EventKind::WriteBurst, _) => write_factor *= e.factor,
                (EventKind::ReadSurge, _) => read_factor *= e.factor,
                (EventKind::PrimaryDegraded, _) => primary_factor *= e.factor,
                (EventKind::MetricsGap, _) => gap = true,
                _ => {}
            }
        }

        // Workload: mean × diurnal wave × smoothed noise × events.
        let w = &sc.workload;
        let diurnal = if w.diurnal_amplitude > 0.0 {
            1.0 + w.diurnal_amplitude * (std::f64::consts::TAU * t0 / w.diurnal_period_s).sin()
        } else {
            1.0
        };
        let sigma = w.noise;
        let (read_noise, write_noise) = if sigma > 0.0 {
            let phi = self.noise_phi;
            let k = (1.0 - phi * phi).sqrt() * sigma;
            self.read_noise = phi * self.read_noise + k * self.load_rng.normal();
            self.write_noise = phi * self.write_noise + k * self.load_rng.normal();
            // Log-normal, mean-corrected: never negative, mean 1.
            let c = 0.5 * sigma * sigma;
            ((self.read_noise - c).exp(), (self.write_noise - c).exp())
        } else {
            (1.0, 1.0)
        };
        let reads = (w.read_qps * diurnal * read_noise * read_factor).max(0.0);
        let writes = (w.write_qps * diurnal * write_noise * write_factor).max(0.0);

        // Primary: writes first, reads get what is left.
        let p = &sc.primary;
        let capacity = p.capacity * primary_factor.max(MIN_CAPACITY_FACTOR);
        let write_load = writes * p.write_cost;
        let primary_reads = reads * self.primary_share;
        let demand = (primary_reads + write_load) / capacity;
        let primary_served = primary_reads.min((capacity - write_load).max(0.0));
        let mut failed = primary_reads - primary_served;
        self.primary_cpu = demand.min(1.0);
        self.primary_demand = demand;
        self.primary_served_qps = primary_served;
        self.primary_p99_ms = p.base_latency_ms / (1.0 - demand.min(RHO_MAX));
        self.write_qps = writes;
        self.offered_qps = reads;

        self.cum_writes += writes * dt;
        self.log.push(self.cum_writes);

        self.p99_scratch.clear();
        if primary_served > 0.0 {
            self.p99_scratch.push((self.primary_p99_ms, primary_served));
        }
        let max_staleness = sc.slo.max_staleness_s;
        let mut stale = 0.0;
        let mut stale_lag = 0.0;
        let mut max_lag: f64 = 0.0;
        for r in &mut self.replicas {
            let offered = reads * r.share;
            if r.down {
                failed += offered;
                r.served_qps = 0.0;
                r.utilisation = 0.0;
                r.apply_qps = 0.0;
            } else {
                r.utilisation = offered / r.capacity;
                r.served_qps = offered.min(r.capacity);
                failed += offered - r.served_qps;
                r.apply_qps = r.apply_capacity
                    * (1.0 - r.interference * r.utilisation.min(1.0))
                    * r.apply_factor;
            }
            r.applied = (r.applied + r.apply_qps * dt).min(self.cum_writes);
            r.lag_s = self.log.lag(r.applied, t1);
            r.p99_ms = r.base_latency_ms / (1.0 - r.utilisation.min(RHO_MAX));
            max_lag = max_lag.max(r.lag_s);
            if r.served_qps > 0.0 {
                self.p99_scratch.push((r.p99_ms, r.served_qps));
                if r.lag_s > max_staleness {
                    stale += r.served_qps * dt;
                    stale_lag += r.lag_s * r.served_qps * dt;
                }
            }
        }
        self.failed_qps = failed;

        let read_p99_ms = mixture_p99(&mut self.p99_scratch);

        self.tick += 1;
        self.now_s = t1;

        // Scrapes due by now (at most one per tick); none succeed during a metrics gap.
        if self.next_scrape_s <= t1 + 1e-9 {
            let interval = positive_or(sc.timing.scrape_interval_s, 15.0);
            while self.next_scrape_s <= t1 + 1e-9 {
                self.next_scrape_s += interval;
            }
            if !gap {
                self.scrape();
            }
        }

        TickStats {
            t_s: t1,
            dt_s: dt,
            reads: reads * dt,
            stale_reads: stale,
            stale_lag_sum: stale_lag,
            failed_reads: failed * dt,
            primary_cpu: self.primary_cpu,
            read_p99_ms,
            max_lag_s: max_lag,
        }
    }

    /// Snapshots the exporters into the next scrape slot, with metric noise.
    fn scrape(&mut self) {
        let noise = self.scenario.timing.metric_noise;
        let rng = &mut self.metric_rng;
        let noisy = |rng: &mut Rng, v: f64| (v * (1.0 + noise * rng.normal())).max(0.0);
        let slots = self.scrapes.len();
        let slot = &mut self.scrapes[self.next_slot];
        self.next_slot = (self.next_slot + 1) % slots;
        slot.at_s = Some(self.now_s);
        slot.cpu = noisy(rng, self.primary_cpu).min(1.0);
        slot.read_qps = noisy(rng, self.primary_served_qps);
        slot.write_qps = noisy(rng, self.write_qps);
        slot.p99_ms = noisy(rng, self.primary_p99_ms);
        for (sample, r) in slot.replicas.iter_mut().zip(&self.replicas) {
            *sample = if r.down {
                ReplicaSample::default()
            } else {
                let lag = noisy(rng, r.lag_s);
                ReplicaSample {
                    up: true,
                    lag_s: lag + HEARTBEAT_S * rng.uniform(),
                    read_qps: noisy(rng, r.served_qps),
                    p99_ms: noisy(rng, r.p99_ms),
                }
            };
        }
    }

    /// Steps whole ticks covering `seconds` (rounded up), stopping early at the end of the
    /// scenario, and returns their sum.
    pub fn run_for(&mut self, seconds: f64) -> IntervalStats {
        let mut stats = IntervalStats::default();
        let ticks = if seconds.is_finite() && seconds > 0.0 {
            (seconds / self.tick_s - 1e-9).ceil() as u64
        } else {
            0
        };
        for _ in 0..ticks {
            if self.done() {
                break;
            }
            stats.add(&self.step());
        }
        stats
    }

    /// What a controller querying Prometheus would see now: the latest scrape that is at
    /// least `scrape_delay_s` old, with each signal's age. Everything is unknown before the
    /// first scrape lands; a replica that was down at that scrape is `up = Some(false)` with
    /// its other signals unknown ([`Unknown::TargetDown`]).
    pub fn observe(&self) -> Observation {
        let delay = self.scenario.timing.scrape_delay_s;
        let visible_by = self.now_s - delay + 1e-9;
        let latest = self
            .scrapes
            .iter()
            .filter_map(|s| s.at_s.map(|at| (at, s)))
            .filter(|(at, _)| *at <= visible_by)
            .max_by(|a, b| a.0.total_cmp(&b.0));

        let names = self.scenario.replicas.iter().map(|r| r.name.clone());
        let Some((at, s)) = latest else {
            let never = Signal::unknown(Unknown::NeverSeen);
            return Observation {
                at_s: self.now_s,
                primary: PrimaryObs {
                    cpu: never,
                    read_qps: never,
                    write_qps: never,
                    read_p99_ms: never,
                },
                replicas: names
                    .map(|name| ReplicaObs {
                        name,
                        up: None,
                        lag_s: never,
                        read_qps: never,
                        read_p99_ms: never,
                    })
                    .collect(),
            };
        };
        let age = (self.now_s - at).max(0.0);
        let down = Signal::unknown(Unknown::TargetDown);
        Observation {
            at_s: self.now_s,
            primary: PrimaryObs {
                cpu: Signal::aged(s.cpu, age),
                read_qps: Signal::aged(s.read_qps, age),
                write_qps: Signal::aged(s.write_qps, age),
                read_p99_ms: Signal::aged(s.p99_ms, age),
            },
            replicas: names
                .zip(&s.replicas)
                .map(|(name, r)| {
                    if r.up {
                        ReplicaObs {
                            name,
                            up: Some(true),
                            lag_s: Signal::aged(r.lag_s, age),
                            read_qps: Signal::aged(r.read_qps, age),
                            read_p99_ms: Signal::aged(r.p99_ms, age),
                        }
                    } else {
                        ReplicaObs {
                            name,
                            up: Some(false),
                            lag_s: down,
                            read_qps: down,
                            read_p99_ms: down,
                        }
                    }
                })
                .collect(),
        }
    }

    /// The true state at the end of the latest tick.
    pub fn truth(&self) -> Truth {
        Truth {
            at_s: self.now_s,
            primary_cpu: self.primary_cpu,
            primary_demand: self.primary_demand,
            primary_read_qps: self.primary_served_qps,
            primary_write_qps: self.write_qps,
            primary_read_p99_ms: self.primary_p99_ms,
            offered_read_qps: self.offered_qps,
            failed_read_qps: self.failed_qps,
            replicas: self
                .scenario
                .replicas
                .iter()
                .zip(&self.replicas)
                .map(|(cfg, r)| ReplicaTruth {
                    name: cfg.name.clone(),
                    up: !r.down,
                    lag_s: r.lag_s,
                    read_qps: r.served_qps,
                    utilisation: r.utilisation,
                    apply_qps: r.apply_qps,
                    read_p99_ms: r.p99_ms,
                })
                .collect(),
        }
    }
}

/// p99 of a mixture of destinations, each `(latency, reads)`: walk from the slowest down and
/// return the latency at which the cumulative share first exceeds 1%. Sorts in place.
fn mixture_p99(dests: &mut [(f64, f64)]) -> f64 {
    let total: f64 = dests.iter().map(|d| d.1).sum();
    if total <= 0.0 {
        return 0.0;
    }
    dests.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut cumulative = 0.0;
    for &(latency, reads) in dests.iter() {
        cumulative += reads;
        if cumulative > 0.01 * total {
            return latency;
        }
    }
    dests.last().map_or(0.0, |d| d.0)
}

#[cfg(test)]
mod tests;
