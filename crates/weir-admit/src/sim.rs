//! A deterministic discrete-event simulator of a server behind the admission gate, in
//! simulated time: the training ground of [`crate::qlearn`] and the bench where controllers
//! are compared.
//!
//! # The model
//!
//! * **Server.** `workers` concurrent slots with a FIFO queue behind them (unbounded, or
//!   `queue_capacity` deep: a full queue fails the request at once with
//!   [`Outcome::Error`]). The queue is what admission protects: without a limit it grows
//!   without bound under overload and every answer comes too late.
//! * **Service times** are drawn when service starts, from a [`Shape`] around the current
//!   mean: `service_mean_ms` times the product of the [`ServiceChange`] factors in force
//!   (e.g. a doubling mid-run).
//! * **Arrivals** are Poisson at `load × capacity`, where capacity = `workers /
//!   service_mean_ms` (the nominal capacity at the start) and `load` is a piecewise-constant
//!   schedule of [`LoadStep`]s (e.g. 1× → 3× → 1×).
//! * **Admission** asks the real [`Controller`]: admit when `in_flight < limit()`, otherwise
//!   `on_reject(t)`. Every admitted request that completes is reported with `on_sample`
//!   (latency from admission, in-flight at admission, the completion instant). Instants are
//!   [`Sim::base`] plus simulated time: nothing reads a clock.
//! * **Client timeout.** A request answered after `timeout_ms` counts as timed out, never as
//!   good. With [`OnTimeout::Abandon`] the server still serves it and the gate sees the late
//!   answer; with [`OnTimeout::Cancel`] the request is dropped at the timeout (it leaves the
//!   queue or frees its worker, the gate sees [`Outcome::Dropped`], as a tower layer does when
//!   the caller goes away).
//! * **CPU.** [`SimCpu`] is a [`CpuGauge`] reading busy workers / `workers`, averaged over
//!   `cpu_window_s` of simulated time.
//! * **Good** = answered within `slo_ms` (and not timed out).
//!
//! Deterministic for a seed: all randomness comes from [`weir_core::rng::Rng`].
//! Hand-written: the queueing crates on crates.io (`des`, `sim`-style frameworks) do not
//! drive a [`Controller`] trait object with injected instants, and the model is small.
//!
//! **Never:** read the wall clock, sleep, or spawn threads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use weir_core::rng::Rng;

use crate::ConfigError;
use crate::controller::{Controller, CpuGauge, Outcome, Sample};

/// The distribution of service times around their mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// Exponential (coefficient of variation 1).
    Exponential,
    /// Lognormal with this `sigma` of the underlying normal (0.5: moderate tail).
    LogNormal {
        /// Standard deviation of `ln(service time)`.
        sigma: f64,
    },
    /// Always the mean.
    Constant,
}

/// From `at_s` on, arrivals come at `load` × the nominal capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStep {
    /// Start of the step, seconds of simulated time.
    pub at_s: f64,
    /// Offered load as a multiple of the nominal capacity.
    pub load: f64,
}

/// From `at_s` on, service times are multiplied by `factor` (cumulative with earlier ones).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceChange {
    /// When, seconds of simulated time.
    pub at_s: f64,
    /// Multiplier of the service-time mean (2.0: the service got twice as slow).
    pub factor: f64,
}

/// What the server does with a request whose client timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The server serves it anyway; the gate sees the late answer (full latency).
    #[default]
    Abandon,
    /// The request is dropped at the timeout (out of the queue, or its worker freed); the
    /// gate sees [`Outcome::Dropped`].
    Cancel,
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Concurrent worker slots of the server.
    pub workers: u32,
    /// Depth of the server's FIFO queue behind the workers; `None`: unbounded.
    pub queue_capacity: Option<u32>,
    /// Mean service time at the start, milliseconds.
    pub service_mean_ms: f64,
    /// Distribution of service times.
    pub shape: Shape,
    /// Offered load schedule (multiples of `workers / service_mean_ms`); the first step
    /// should start at 0 (before it, nothing arrives).
    pub load: Vec<LoadStep>,
    /// Service-time changes during the run.
    pub service_changes: Vec<ServiceChange>,
    /// Client timeout, milliseconds; `None`: clients wait forever.
    pub timeout_ms: Option<f64>,
    /// What a timeout does on the server.
    pub on_timeout: OnTimeout,
    /// A request is good when answered within this many milliseconds.
    pub slo_ms: f64,
    /// Arrivals stop after this many seconds; the run then drains what was admitted.
    pub duration_s: f64,
    /// Requests arriving before this many seconds are left out of the totals (not the series).
    pub warmup_s: f64,
    /// Width of one entry of [`SimResult::series`], seconds.
    pub series_interval_s: f64,
    /// Averaging window of [`SimCpu`], seconds.
    pub cpu_window_s: f64,
    /// Seed of arrivals and service times.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            workers: 16,
            queue_capacity: None,
            service_mean_ms: 5.0,
            shape: Shape::LogNormal { sigma: 0.5 },
            load: vec![LoadStep {
                at_s: 0.0,
                load: 1.0,
            }],
            service_changes: Vec::new(),
            timeout_ms: Some(1000.0),
            on_timeout: OnTimeout::Abandon,
            slo_ms: 10.0,
            duration_s: 10.0,
            warmup_s: 0.0,
            series_interval_s: 0.1,
            cpu_window_s: 0.05,
            seed: 1,
        }
    }
}

fn invalid(field: &'static str, value: impl ToString, why: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        why,
    }
}

fn positive(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, v, "must be a finite number above 0"))
    }
}

impl SimConfig {
    /// The nominal capacity (requests per second) at the start: `workers / service mean`.
    pub fn capacity_rps(&self) -> f64 {
        self.workers as f64 * 1000.0 / self.service_mean_ms
    }

    /// The service-time mean (seconds) in force at `t_s`.
    pub fn service_mean_at(&self, t_s: f64) -> f64 {
        let f: f64 = self
            .service_changes
            .iter()
            .filter(|c| c.at_s <= t_s)
            .map(|c| c.factor)
            .product();
        self.service_mean_ms * f / 1000.0
    }

    /// The capacity (requests per second) at `t_s`, after service changes.
    pub fn capacity_at(&self, t_s: f64) -> f64 {
        self.workers as f64 / self.service_mean_at(t_s)
    }

    /// The offered load multiple in force at `t_s`.
    pub fn load_at(&self, t_s: f64) -> f64 {
        self.load
            .iter()
            .rfind(|s| s.at_s <= t_s)
            .map_or(0.0, |s| s.load)
    }

    /// Checks every field; the error names the first unusable one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 {
            return Err(invalid("workers", 0, "must be at least 1"));
        }
        if self.queue_capacity == Some(0) {
            // 0 is allowed in principle, but it is almost always a typo for "unbounded".
            return Err(invalid(
                "queue_capacity",
                0,
                "must be at least 1 (leave it out for an unbounded queue)",
            ));
        }
        positive("service_mean_ms", self.service_mean_ms)?;
        if let Shape::LogNormal { sigma } = self.shape
            && !(sigma.is_finite() && (0.0..=3.0).contains(&sigma))
        {
            return Err(invalid("shape.sigma", sigma, "must be within 0..=3"));
        }
        if self.load.is_empty() {
            return Err(invalid("load", "[]", "needs at least one step"));
        }
        let mut prev = f64::NEG_INFINITY;
        for s in &self.load {
            if !(s.at_s.is_finite() && s.at_s >= 0.0 && s.at_s >= prev) {
                return Err(invalid(
                    "load.at_s",
                    s.at_s,
                    "steps must start at or after 0 s, in increasing order",
                ));
            }
            if !(s.load.is_finite() && (0.0..=1000.0).contains(&s.load)) {
                return Err(invalid("load.load", s.load, "must be within 0..=1000"));
            }
            prev = s.at_s;
        }
        for c in &self.service_changes {
            if !(c.at_s.is_finite() && c.at_s >= 0.0) {
                return Err(invalid(
                    "service_changes.at_s",
                    c.at_s,
                    "must be a time at or after 0 s",
                ));
            }
            positive("service_changes.factor", c.factor)?;
        }
        if let Some(t) = self.timeout_ms {
            positive("timeout_ms", t)?;
        }
        positive("slo_ms", self.slo_ms)?;
        positive("duration_s", self.duration_s)?;
        if !(self.warmup_s.is_finite() && (0.0..self.duration_s).contains(&self.warmup_s)) {
            return Err(invalid(
                "warmup_s",
                self.warmup_s,
                "must be at least 0 and below duration_s",
            ));
        }
        positive("series_interval_s", self.series_interval_s)?;
        positive("cpu_window_s", self.cpu_window_s)?;
        Ok(())
    }
}

/// Busy workers / workers, averaged over the simulator's CPU window: a [`CpuGauge`] the
/// simulator updates as it runs.
#[derive(Debug, Default)]
pub struct SimCpu {
    bits: AtomicU64,
    known: AtomicU64,
}

impl SimCpu {
    fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
        self.known.store(1, Ordering::Relaxed);
    }
}

impl CpuGauge for SimCpu {
    fn utilisation(&self) -> Option<f64> {
        (self.known.load(Ordering::Relaxed) == 1)
            .then(|| f64::from_bits(self.bits.load(Ordering::Relaxed)))
    }
}

/// One entry of the per-interval series (arrivals counted when they arrive, answers when
/// they complete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalStats {
    /// Start of the interval, seconds.
    pub start_s: f64,
    /// Arrivals.
    pub offered: u64,
    /// Admitted by the gate.
    pub admitted: u64,
    /// Rejected by the gate.
    pub rejected: u64,
    /// Answered within the SLO.
    pub good: u64,
    /// Answered after the client timeout (or cancelled at it).
    pub timed_out: u64,
    /// p99 latency of the answers completed in the interval, milliseconds (0 if none).
    pub p99_ms: f64,
    /// The controller's limit at the end of the interval.
    pub limit: u32,
    /// Admitted requests in flight at the end of the interval.
    pub in_flight: u32,
    /// Requests waiting in the server's queue at the end of the interval.
    pub queued: u32,
    /// Busy workers / workers at the end of the interval.
    pub busy: f64,
}

impl IntervalStats {
    fn starting(start_s: f64) -> Self {
        IntervalStats {
            start_s,
            offered: 0,
            admitted: 0,
            rejected: 0,
            good: 0,
            timed_out: 0,
            p99_ms: 0.0,
            limit: 0,
            in_flight: 0,
            queued: 0,
            busy: 0.0,
        }
    }
}

/// What a run measured. Totals count requests that arrived after `warmup_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    /// Arrivals.
    pub offered: u64,
    /// Admitted by the gate.
    pub admitted: u64,
    /// Rejected by the gate.
    pub rejected: u64,
    /// Answered within the SLO (and before the timeout).
    pub good: u64,
    /// Answered after the client timeout, or cancelled at it.
    pub timed_out: u64,
    /// Failed by the server (its queue was full).
    pub failed: u64,
    /// Good answers per second of the measured window.
    pub goodput_per_s: f64,
    /// The nominal capacity at the start, requests per second.
    pub capacity_rps: f64,
    /// Median latency of admitted requests (as the client saw it: cancelled ones at the
    /// timeout), milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same, milliseconds.
    pub p99_ms: f64,
    /// Per-interval series over the whole run, drain included.
    pub series: Vec<IntervalStats>,
}

impl SimResult {
    /// Goodput as a share of the nominal capacity.
    pub fn goodput_share(&self) -> f64 {
        self.goodput_per_s / self.capacity_rps
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Done { slot: u32, serial: u32 },
    Timeout { slot: u32, serial: u32 },
    Cpu,
    Series,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Free,
    Queued,
    Serving,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    arrival: u64,
    in_flight: u32,
    serial: u32,
    state: ReqState,
    measured: bool,
}

const NS: f64 = 1e9;

fn ns(s: f64) -> u64 {
    (s * NS).round().max(0.0) as u64
}

fn new_hist(sigfig: u8) -> Histogram<u64> {
    // 1 µs .. 1 hour: bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, sigfig).expect("constant, valid bounds")
}

/// A simulator, ready to run one configuration.
pub struct Sim {
    config: SimConfig,
    base: Instant,
    cpu: Arc<SimCpu>,
}

impl Sim {
    /// Checks the configuration; the error names the first unusable field.
    pub fn new(config: SimConfig) -> Result<Sim, ConfigError> {
        config.validate()?;
        Ok(Sim {
            config,
            // Only an origin for the instants handed to the controller: never read again.
            base: Instant::now(),
            cpu: Arc::new(SimCpu::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Simulated time 0 as an [`Instant`]: the instants in samples are `base + t`.
    pub fn base(&self) -> Instant {
        self.base
    }

    /// The CPU gauge this simulator updates, for controllers that read one.
    pub fn cpu_gauge(&self) -> Arc<SimCpu> {
        self.cpu.clone()
    }

    /// Runs the configuration against `controller` and reports what happened.
    pub fn run(&self, controller: Arc<dyn Controller>) -> SimResult {
        Run::new(self, controller).go()
    }
}

struct Run<'a> {
    c: &'a SimConfig,
    base: Instant,
    cpu: &'a SimCpu,
    ctl: Arc<dyn Controller>,
    rng: Rng,
    t: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    reqs: Vec<Req>,
    free: Vec<u32>,
    queue: VecDeque<(u32, u32)>,
    busy: u32,
    in_flight: u32,
    busy_area: f64,
    busy_since: u64,
    end: u64,
    warmup: u64,
    timeout: Option<u64>,
    slo: u64,
    totals: SimResult,
    hist: Histogram<u64>,
    cur: IntervalStats,
    cur_hist: Histogram<u64>,
}

impl<'a> Run<'a> {
    fn new(sim: &'a Sim, ctl: Arc<dyn Controller>) -> Self {
        let c = &sim.config;
        Run {
            c,
            base: sim.base,
            cpu: &sim.cpu,
            ctl,
            rng: Rng::new(c.seed),
            t: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            reqs: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            busy: 0,
            in_flight: 0,
            busy_area: 0.0,
            busy_since: 0,
            end: ns(c.duration_s),
            warmup: ns(c.warmup_s),
            timeout: c.timeout_ms.map(|m| ns(m / 1000.0)),
            slo: ns(c.slo_ms / 1000.0),
            totals: SimResult {
                offered: 0,
                admitted: 0,
                rejected: 0,
                good: 0,
                timed_out: 0,
                failed: 0,
                goodput_per_s: 0.0,
                capacity_rps: c.capacity_rps(),
                p50_ms: 0.0,
                p99_ms: 0.0,
                series: Vec::new(),
            },
            hist: new_hist(3),
            cur: IntervalStats::starting(0.0),
            cur_hist: new_hist(2),
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.t)
    }

    /// The next arrival after `from`, Poisson at the piecewise-constant rate.
    fn next_arrival(&mut self, from: u64) -> Option<u64> {
        let cap = self.c.capacity_rps();
        let mut t = from as f64 / NS;
        let end = self.c.duration_s;
        while t < end {
            let rate = self.c.load_at(t) * cap;
            let seg_end = self
                .c
                .load
                .iter()
                .map(|s| s.at_s)
                .find(|&a| a > t)
                .unwrap_or(end)
                .min(end);
            if rate > 0.0 {
                let u = self.rng.uniform();
                let gap = -(1.0 - u).ln() / rate;
                if t + gap < seg_end {
                    return Some(ns(t + gap).max(from + 1));
                }
            }
            t = seg_end;
        }
        None
    }

    fn draw_service(&mut self) -> u64 {
        let mean = self.c.service_mean_at(self.t as f64 / NS);
        let s = match self.c.shape {
            Shape::Exponential => -mean * (1.0 - self.rng.uniform()).ln(),
            Shape::LogNormal { sigma } => {
                let mu = mean.ln() - sigma * sigma / 2.0;
                (mu + sigma * self.rng.normal()).exp()
            }
            Shape::Constant => mean,
        };
        ns(s).max(1)
    }

    fn set_busy(&mut self, busy: u32) {
        self.busy_area += self.busy as f64 * (self.t - self.busy_since) as f64;
        self.busy_since = self.t;
        self.busy = busy;
    }

    fn start_service(&mut self, slot: u32) {
        self.set_busy(self.busy + 1);
        let r = &mut self.reqs[slot as usize];
        r.state = ReqState::Serving;
        let serial = r.serial;
        let at = self.t + self.draw_service();
        self.push(at, Ev::Done { slot, serial });
    }

    fn start_next(&mut self) {
        while let Some((slot, serial)) = self.queue.pop_front() {
            let r = self.reqs[slot as usize];
            if r.serial == serial && r.state == ReqState::Queued {
                self.start_service(slot);
                return;
            }
        }
    }

    fn release(&mut self, slot: u32) {
        let r = &mut self.reqs[slot as usize];
        r.state = ReqState::Free;
        r.serial = r.serial.wrapping_add(1);
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn arrive(&mut self) {
        let measured = self.t >= self.warmup;
        self.cur.offered += 1;
        self.totals.offered += measured as u64;
        if self.in_flight >= self.ctl.limit() {
            self.cur.rejected += 1;
            self.totals.rejected += measured as u64;
            self.ctl.on_reject(self.instant());
            return;
        }
        self.in_flight += 1;
        self.cur.admitted += 1;
        self.totals.admitted += measured as u64;
        if self.busy >= self.c.workers
            && self
                .c
                .queue_capacity
                .is_some_and(|q| self.queue.len() >= q as usize)
        {
            self.in_flight -= 1;
            self.totals.failed += measured as u64;
            self.ctl.on_sample(Sample {
                latency: Duration::ZERO,
                in_flight: self.in_flight + 1,
                outcome: Outcome::Error,
                finished: self.instant(),
            });
            return;
        }
        let req = Req {
            arrival: self.t,
            in_flight: self.in_flight,
            serial: 0,
            state: ReqState::Queued,
            measured,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                let serial = self.reqs[s as usize].serial;
                self.reqs[s as usize] = Req { serial, ..req };
                s
            }
            None => {
                self.reqs.push(req);
                (self.reqs.len() - 1) as u32
            }
        };
        let serial = self.reqs[slot as usize].serial;
        if let (Some(to), OnTimeout::Cancel) = (self.timeout, self.c.on_timeout) {
            self.push(self.t + to, Ev::Timeout { slot, serial });
        }
        if self.busy < self.c.workers {
            self.start_service(slot);
        } else {
            self.queue.push_back((slot, serial));
        }
    }

    fn record(&mut self, r: Req, latency: u64, good: bool, timed_out: bool) {
        let us = (latency / 1000).max(1);
        let _ = self.cur_hist.record(us);
        self.cur.good += good as u64;
        self.cur.timed_out += timed_out as u64;
        if r.measured {
            let _ = self.hist.record(us);
            self.totals.good += good as u64;
            self.totals.timed_out += timed_out as u64;
        }
    }

    fn done(&mut self, slot: u32, serial: u32) {
        let r = self.reqs[slot as usize];
        if r.serial != serial || r.state != ReqState::Serving {
            return;
        }
        self.set_busy(self.busy - 1);
        let latency = self.t - r.arrival;
        let timed_out = self.timeout.is_some_and(|to| latency > to);
        self.record(r, latency, !timed_out && latency <= self.slo, timed_out);
        self.release(slot);
        self.ctl.on_sample(Sample {
            latency: Duration::from_nanos(latency),
            in_flight: r.in_flight,
            outcome: Outcome::Success,
            finished: self.instant(),
        });
        self.start_next();
    }

    fn cancel(&mut self, slot: u32, serial: u32) {
        let r = self.reqs[slot as usize];
        if r.serial != serial || r.state == ReqState::Free {
            return;
        }
        let latency = self.t - r.arrival;
        self.record(r, latency, false, true);
        self.release(slot);
        self.ctl.on_sample(Sample {
            latency: Duration::from_nanos(latency),
            in_flight: r.in_flight,
            outcome: Outcome::Dropped,
            finished: self.instant(),
        });
        if r.state == ReqState::Serving {
            self.set_busy(self.busy - 1);
            self.start_next();
        }
    }

    fn cpu_tick(&mut self) {
        self.set_busy(self.busy);
        let window = ns(self.c.cpu_window_s) as f64;
        self.cpu
            .set(self.busy_area / (window * self.c.workers as f64));
        self.busy_area = 0.0;
        let at = self.t + ns(self.c.cpu_window_s);
        if self.t < self.end || self.in_flight > 0 {
            self.push(at, Ev::Cpu);
        }
    }

    fn series_tick(&mut self) {
        self.cur.p99_ms = if self.cur_hist.is_empty() {
            0.0
        } else {
            self.cur_hist.value_at_quantile(0.99) as f64 / 1000.0
        };
        self.cur.limit = self.ctl.limit();
        self.cur.in_flight = self.in_flight;
        self.cur.queued = self
            .queue
            .iter()
            .filter(|&&(s, serial)| {
                let r = self.reqs[s as usize];
                r.serial == serial && r.state == ReqState::Queued
            })
            .count() as u32;
        self.cur.busy = self.busy as f64 / self.c.workers as f64;
        let next_start = self.cur.start_s + self.c.series_interval_s;
        let fresh = IntervalStats::starting(next_start);
        self.totals
            .series
            .push(std::mem::replace(&mut self.cur, fresh));
        self.cur_hist.reset();
        if self.t < self.end || self.in_flight > 0 {
            self.push(ns(next_start + self.c.series_interval_s), Ev::Series);
        }
    }

    fn go(mut self) -> SimResult {
        self.push(ns(self.c.cpu_window_s), Ev::Cpu);
        self.push(ns(self.c.series_interval_s), Ev::Series);
        let mut next = self.next_arrival(0);
        loop {
            let top = self.heap.peek().map(|Reverse((at, _, _))| *at);
            match (next, top) {
                (Some(a), Some(h)) if a < h => {
                    self.t = a;
                    self.arrive();
                    next = self.next_arrival(a);
                }
                (Some(a), None) => {
                    self.t = a;
                    self.arrive();
                    next = self.next_arrival(a);
                }
                (_, Some(_)) => {
                    let Some(Reverse((at, _, ev))) = self.heap.pop() else {
                        break;
                    };
                    self.t = at;
                    match ev {
                        Ev::Done { slot, serial } => self.done(slot, serial),
                        Ev::Timeout { slot, serial } => self.cancel(slot, serial),
                        Ev::Cpu => self.cpu_tick(),
                        Ev::Series => self.series_tick(),
                    }
                }
                (None, None) => break,
            }
            if next.is_none() && self.in_flight == 0 && self.t >= self.end {
                break;
            }
        }
        if self.cur.offered + self.cur.good + self.cur.timed_out > 0 {
            self.series_tick();
        }
        let window = self.c.duration_s - self.c.warmup_s;
        let mut out = self.totals;
        out.goodput_per_s = out.good as f64 / window;
        if !self.hist.is_empty() {
            out.p50_ms = self.hist.value_at_quantile(0.5) as f64 / 1000.0;
            out.p99_ms = self.hist.value_at_quantile(0.99) as f64 / 1000.0;
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Static;

    fn run(c: SimConfig, limit: u32) -> SimResult {
        let sim = Sim::new(c).unwrap();
        sim.run(Arc::new(Static::new(limit).unwrap()))
    }

    #[test]
    fn below_capacity_everything_is_served_at_service_time() {
        let r = run(
            SimConfig {
                load: vec![LoadStep {
                    at_s: 0.0,
                    load: 0.5,
                }],
                ..SimConfig::default()
            },
            10_000,
        );
        // 16 workers / 5 ms = 3200/s; half of it for 10 s.
        assert!((r.offered as f64 - 16_000.0).abs() < 800.0, "{}", r.offered);
        assert_eq!(r.rejected, 0);
        assert!(r.p50_ms > 3.0 && r.p50_ms < 6.0, "{}", r.p50_ms);
        assert!(r.goodput_share() > 0.45, "{}", r.goodput_share());
    }

    #[test]
    fn overload_without_a_limit_queues_and_a_limit_at_capacity_keeps_goodput() {
        let c = SimConfig {
            load: vec![LoadStep {
                at_s: 0.0,
                load: 3.0,
            }],
            ..SimConfig::default()
        };
        let open = run(c.clone(), 1_000_000);
        let limited = run(c, 16);
        assert!(open.p99_ms > 1000.0, "{}", open.p99_ms);
        assert!(open.goodput_share() < 0.1, "{}", open.goodput_share());
        assert!(limited.goodput_share() > 0.8, "{}", limited.goodput_share());
        assert!(limited.rejected > limited.admitted, "{limited:?}");
    }

    #[test]
    fn same_seed_same_run_and_a_doubling_halves_capacity() {
        let c = SimConfig {
            service_changes: vec![ServiceChange {
                at_s: 5.0,
                factor: 2.0,
            }],
            load: vec![LoadStep {
                at_s: 0.0,
                load: 2.0,
            }],
            ..SimConfig::default()
        };
        let a = run(c.clone(), 16);
        let b = run(c.clone(), 16);
        assert_eq!(a, b);
        // Saturated at the limit: admissions follow completions, which halve.
        let early: u64 = a.series[10..50].iter().map(|s| s.admitted).sum();
        let late: u64 = a.series[60..100].iter().map(|s| s.admitted).sum();
        assert!(
            (late as f64 / early as f64 - 0.5).abs() < 0.1,
            "{early} {late}"
        );
    }

    #[test]
    fn cancelled_timeouts_free_the_worker_and_report_dropped() {
        struct Count(std::sync::Mutex<(u64, u64)>);
        impl Controller for Count {
            fn limit(&self) -> u32 {
                u32::MAX
            }
            fn on_sample(&self, s: Sample) {
                let mut g = self.0.lock().unwrap();
                if s.outcome == Outcome::Dropped {
                    g.0 += 1;
                } else {
                    g.1 += 1;
                }
            }
            fn name(&self) -> &'static str {
                "count"
            }
            fn explain(&self) -> crate::Explanation {
                unreachable!()
            }
        }
        let c = SimConfig {
            load: vec![LoadStep {
                at_s: 0.0,
                load: 2.0,
            }],
            timeout_ms: Some(50.0),
            on_timeout: OnTimeout::Cancel,
            duration_s: 5.0,
            ..SimConfig::default()
        };
        let count = Arc::new(Count(std::sync::Mutex::new((0, 0))));
        let r = Sim::new(c).unwrap().run(count.clone());
        let (dropped, answered) = *count.0.lock().unwrap();
        assert_eq!(dropped, r.timed_out);
        assert!(dropped > 0 && answered > 0);
        // Cancelled requests leave: latencies stay bounded by the timeout.
        assert!(r.p99_ms <= 51.0, "{}", r.p99_ms);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = |c: SimConfig| Sim::new(c).err().map(|e| e.to_string()).unwrap();
        assert!(
            e(SimConfig {
                workers: 0,
                ..SimConfig::default()
            })
            .starts_with("workers = 0")
        );
        assert!(
            e(SimConfig {
                service_mean_ms: -1.0,
                ..SimConfig::default()
            })
            .starts_with("service_mean_ms = -1")
        );
        assert!(
            e(SimConfig {
                load: vec![],
                ..SimConfig::default()
            })
            .starts_with("load = []")
        );
    }
}
