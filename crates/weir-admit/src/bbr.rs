//! The BBR-style rule of Sentinel's system rule and Kratos' `ratelimit/bbr`, turned into a
//! concurrency limit: `limit = ceil(max_pass/s × min_rt × gain)`, clamped to
//! `[min_limit, max_limit]`, with an optional CPU gate and cool-down.
//!
//! **What it owns:** a sliding window of time buckets keyed by each sample's `finished`
//! instant (the gate's clock, so tests and simulators drive it), the limit derived from the
//! window at every bucket rollover, and why.
//!
//! **The estimate.** Per bucket it counts *passes* (admitted requests that completed with
//! [`Outcome::Success`] in the bucket, by `finished`) and the latency of the successes
//! *admitted* in the bucket (`finished − latency`). `max_pass` is the most passes of any
//! closed bucket in the window (per second), `min_rt` the lowest bucket mean latency, read
//! from a bucket once the next one has closed too (so that its admissions have completed).
//! Keying latency by admission matters for the drain below: requests admitted during a drain
//! bucket meet no queue, while those completing in it may have queued before it. Their product
//! is the bandwidth-delay product: how many requests the service completes concurrently at
//! its no-load latency. Only successes count: [`Outcome::Error`] answers are not goodput and a
//! fast-failing backend (a 5xx in 50 µs) would otherwise drag `min_rt`, and with it the limit,
//! down — the same collapse as counting dropped requests. [`Outcome::Dropped`] never counts
//! (it has no latency), and rejections ([`Controller::on_reject`]) never enter the estimate.
//!
//! **Why a gain > 1, and why a drain bucket.** Passes are `limit / RT`, so with gain 1 the
//! product only reproduces the current limit (or less, from rounding and noise): a limit
//! below capacity would never climb. The default gain 1.25 lets the limit grow by a quarter
//! per bucket (100 ms) until passes stop rising at capacity `W`, where it settles at about
//! `1.25 × W`: a queue of a quarter of the capacity, which keeps the server busy while
//! bounding the added latency to about a quarter of the service time. But a standing queue
//! inflates every bucket's mean latency, and once the window has slid past the last unqueued
//! bucket `min_rt` itself is inflated and the limit would grow by the gain once per window,
//! without bound. So, like TCP BBR's 0.75 pacing phase, every `drain_every`-th bucket uses
//! `÷ gain` instead of `× gain` — but only when the limit was binding (at least 1 % of the
//! requests since the last drain were rejected), so a service below its limit is never shed. A drain
//! bucket runs the server just below capacity, empties the queue, and measures the no-load
//! latency again: `min_rt` stays honest without ever dropping the limit to a tiny value.
//! The window forgetting old buckets is the re-probe of the no-load latency when the service
//! slows down: `min_rt` follows a slower service once the window has passed (and a faster one
//! at once, since it is a minimum). The drain works when a bucket is several service times
//! long (the Kratos rule has the same requirement).
//!
//! **Burst headroom.** With the probe limit at `bdp × gain`, a service at half its capacity
//! gets a limit of about 1.25 × its *mean* in-flight count, and Poisson arrivals exceed that
//! often: the Kratos formula alone rejected 16–20 % at 0.5× load in the overload benchmark.
//! Kratos and Sentinel hide this behind their CPU / load gate. Here the probe limit adds
//! `burst_z × √(bdp × gain)` (default z = 2), the square-root staffing rule of queueing
//! theory (Halfin–Whitt): in-flight counts of a service below capacity fluctuate by about the
//! square root of their mean, so z standard deviations of room admit the bursts, while at
//! capacity it would only add `z√W` to the standing queue, so it is dropped in overload (a
//! quarter or more refused since the last drain) and in drain buckets. `burst_z = 0` is
//! the Kratos formula exactly.
//!
//! **Warm-up.** Until the closed buckets of the window hold `warm_up_samples` passes (a fresh
//! deploy, or after the window went idle), the limit is `initial_limit`: neither everything
//! shed nor everything admitted.
//!
//! **CPU gate** (with a [`CpuGauge`]): the rule applies while utilisation ≥ `cpu_threshold`
//! (an unknown reading counts as high) and for `cool_down_ms` after the last bucket where it
//! was; otherwise the limit is `max_limit`. Without a gauge the rule always applies.
//!
//! **Concurrency.** `limit()` is one atomic load. Samples and rejections are counted with
//! lock-free compare-and-swap on per-bucket words that carry the bucket's sequence number, so
//! a bucket resets itself when its slot is reused and no count lands in the wrong bucket. The
//! recompute at rollover runs under a mutex taken with `try_lock`: it runs once per bucket
//! (every 100 ms by default), a second thread crossing the same rollover skips instead of
//! waiting, and the holder recomputes again if the window moved meanwhile. `explain()`
//! takes the same mutex briefly to read the last computation.
//!
//! Hand-written: no Rust crate implements the Sentinel/Kratos BBR rule (the kept adaptive
//! limiters are Gradient2, Vegas and AIMD). **Never:** read the clock (`Instant::now`), do IO,
//! block in `limit()`, or let a rejected or dropped request move the estimate.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::controller::{Controller, CpuGauge, Explanation, Outcome, Sample};
use crate::layer::ConfigError;

/// The BBR rule's configuration. Every field has a default; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BbrConfig {
    /// Length of the sliding window, in milliseconds (default 10 000, as Kratos).
    pub window_ms: u64,
    /// Length of one bucket, in milliseconds; must divide `window_ms` (default 100, as Kratos).
    pub bucket_ms: u64,
    /// The lowest limit the rule sets (default 4).
    pub min_limit: u32,
    /// The highest limit, and the limit while the CPU gate is off (default 1000).
    pub max_limit: u32,
    /// The limit during warm-up (default 32).
    pub initial_limit: u32,
    /// The probing gain over the estimate, > 1 (default 1.25: see the module doc).
    pub gain: f64,
    /// Burst headroom: `z × √(estimate × gain)` slots on top of the probed limit, the
    /// square-root staffing rule of queueing theory (default 2; 0 gives the Kratos formula
    /// alone, which sheds Poisson bursts at light load: see the module doc).
    pub burst_z: f64,
    /// Every this many buckets, a bucket drains the queue (÷ gain) if requests were rejected
    /// since the last one (default 10, i.e. once a second; at least 2, at most the number of
    /// buckets in the window, so every window holds an unqueued bucket).
    pub drain_every: u32,
    /// Passes the window must hold before the rule replaces `initial_limit` (default 50).
    pub warm_up_samples: u32,
    /// CPU utilisation (0–1] from which the rule applies, with a gauge (default 0.8, as Kratos).
    pub cpu_threshold: f64,
    /// How long the rule keeps applying after the CPU was last at the threshold, in
    /// milliseconds (default 1000, as Kratos).
    pub cool_down_ms: u64,
}

impl Default for BbrConfig {
    fn default() -> Self {
        BbrConfig {
            window_ms: 10_000,
            bucket_ms: 100,
            min_limit: 4,
            max_limit: 1000,
            initial_limit: 32,
            gain: 1.25,
            burst_z: 2.0,
            drain_every: 10,
            warm_up_samples: 50,
            cpu_threshold: 0.8,
            cool_down_ms: 1000,
        }
    }
}

/// At most this many buckets in a window (memory is three words per bucket).
const MAX_BUCKETS: u64 = 10_000;

fn invalid(field: &'static str, value: String, why: &'static str) -> ConfigError {
    ConfigError::Invalid { field, value, why }
}

impl BbrConfig {
    /// The number of buckets in the window, or what is wrong with the configuration.
    fn check(&self) -> Result<u64, ConfigError> {
        if self.min_limit == 0 {
            return Err(invalid(
                "min_limit",
                "0".into(),
                "must be at least 1: a limit of 0 rejects every request",
            ));
        }
        if self.min_limit > self.max_limit {
            return Err(invalid(
                "min_limit",
                format!("{} (max_limit = {})", self.min_limit, self.max_limit),
                "must not exceed max_limit",
            ));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(invalid(
                "initial_limit",
                format!(
                    "{} (min_limit = {}, max_limit = {})",
                    self.initial_limit, self.min_limit, self.max_limit
                ),
                "must lie within [min_limit, max_limit]",
            ));
        }
        if !(self.gain.is_finite() && self.gain > 1.0) {
            return Err(invalid(
                "gain",
                self.gain.to_string(),
                "must be a number above 1: with gain 1 the limit can never climb to capacity",
            ));
        }
        if self.bucket_ms == 0 {
            return Err(invalid("bucket_ms", "0".into(), "must be at least 1 ms"));
        }
        if self.window_ms == 0 || !self.window_ms.is_multiple_of(self.bucket_ms) {
            return Err(invalid(
                "window_ms",
                format!("{} (bucket_ms = {})", self.window_ms, self.bucket_ms),
                "must be a non-zero multiple of bucket_ms",
            ));
        }
        let buckets = self.window_ms / self.bucket_ms;
        if buckets > MAX_BUCKETS {
            return Err(invalid(
                "window_ms",
                format!("{} (bucket_ms = {})", self.window_ms, self.bucket_ms),
                "must hold at most 10000 buckets",
            ));
        }
        if self.drain_every < 2 || u64::from(self.drain_every) > buckets {
            return Err(invalid(
                "drain_every",
                format!("{} (buckets in the window = {buckets})", self.drain_every),
                "must be at least 2 and at most the number of buckets in the window",
            ));
        }
        if self.warm_up_samples == 0 {
            return Err(invalid(
                "warm_up_samples",
                "0".into(),
                "must be at least 1: the rule needs passes to estimate from",
            ));
        }
        if !(self.burst_z >= 0.0 && self.burst_z <= 10.0) {
            return Err(invalid(
                "burst_z",
                self.burst_z.to_string(),
                "must be in [0, 10] (standard deviations of headroom; 0 turns it off)",
            ));
        }
        if !(self.cpu_threshold > 0.0 && self.cpu_threshold <= 1.0) {
            return Err(invalid(
                "cpu_threshold",
                self.cpu_threshold.to_string(),
                "must lie in (0, 1]",
            ));
        }
        Ok(buckets)
    }
}

/// Bits of a counter word that hold the bucket's sequence number (the rest hold the count).
const TAG_BITS: u32 = 24;
const VALUE_BITS: u32 = 64 - TAG_BITS;
const VALUE_MAX: u64 = (1 << VALUE_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// A per-bucket count tagged with the bucket's sequence number: adding to a slot that still
/// holds an older bucket starts it afresh, reading a slot that holds another bucket gives 0.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, seq: u64, delta: u64) {
        let tag = seq & TAG_MASK;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let cur_tag = cur >> VALUE_BITS;
            let next = if cur_tag == tag {
                (tag << VALUE_BITS) | (cur & VALUE_MAX).saturating_add(delta).min(VALUE_MAX)
            } else if cur_tag.wrapping_sub(tag) & TAG_MASK < (1 << (TAG_BITS - 1)) {
                // The slot already holds a newer bucket: this late count is outside the window.
                return;
            } else {
                (tag << VALUE_BITS) | delta.min(VALUE_MAX)
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    fn get(&self, seq: u64) -> u64 {
        let v = self.0.load(Ordering::Relaxed);
        if v >> VALUE_BITS == seq & TAG_MASK {
            v & VALUE_MAX
        } else {
            0
        }
    }
}

#[derive(Default)]
struct Bucket {
    /// Successes that completed in this bucket.
    passes: Counter,
    /// Latency sum and count of successes *admitted* in this bucket.
    rt_us: Counter,
    rt_n: Counter,
    /// Rejections in this bucket.
    rejects: Counter,
}

/// What the rule is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BbrMode {
    /// Not enough passes in the window yet: the limit is `initial_limit`.
    WarmUp,
    /// The CPU is below the threshold and the cool-down is over: the limit is `max_limit`.
    GateOff,
    /// The rule applies: `max_pass × min_rt × gain`.
    Probe,
    /// The rule applies in a drain bucket: `max_pass × min_rt ÷ gain`.
    Drain,
}

/// The rule's last computation (at the last bucket rollover).
#[derive(Debug, Clone, PartialEq)]
pub struct BbrState {
    /// The limit it set.
    pub limit: u32,
    /// What it was doing.
    pub mode: BbrMode,
    /// The most passes of a bucket in the window, per second.
    pub max_pass_per_s: f64,
    /// The lowest bucket mean latency in the window (`None` without passes).
    pub min_rt: Option<Duration>,
    /// Passes in the window's closed buckets.
    pub passes: u64,
    /// The CPU utilisation read (`None` without a gauge or while unknown).
    pub cpu: Option<f64>,
}

struct Snapshot {
    /// The bucket the last computation was for (`None` before the first rollover).
    seq: Option<u64>,
    /// The last bucket in which the CPU was at or above the threshold.
    last_hot: Option<u64>,
    state: BbrState,
}

/// The BBR-style rule as a [`Controller`]. See the module doc.
pub struct Bbr {
    cfg: BbrConfig,
    gauge: Option<Arc<dyn CpuGauge>>,
    buckets: u64,
    bucket_ns: u128,
    /// `buckets + 1` slots: the window's closed buckets and the one filling.
    ring: Vec<Bucket>,
    /// The first event's instant: bucket 0 starts there.
    origin: OnceLock<Instant>,
    /// The highest bucket an event landed in.
    seen: AtomicU64,
    limit: AtomicU32,
    snapshot: Mutex<Snapshot>,
}

impl Bbr {
    /// The rule with `cfg`, gated on `gauge` when one is given. Refuses a configuration that
    /// cannot work, naming the field and its value.
    pub fn new(cfg: BbrConfig, gauge: Option<Arc<dyn CpuGauge>>) -> Result<Bbr, ConfigError> {
        let buckets = cfg.check()?;
        let ring = (0..=buckets).map(|_| Bucket::default()).collect();
        let state = BbrState {
            limit: cfg.initial_limit,
            mode: BbrMode::WarmUp,
            max_pass_per_s: 0.0,
            min_rt: None,
            passes: 0,
            cpu: None,
        };
        Ok(Bbr {
            buckets,
            bucket_ns: u128::from(cfg.bucket_ms) * 1_000_000,
            ring,
            origin: OnceLock::new(),
            seen: AtomicU64::new(0),
            limit: AtomicU32::new(cfg.initial_limit),
            snapshot: Mutex::new(Snapshot {
                seq: None,
                last_hot: None,
                state,
            }),
            cfg,
            gauge,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &BbrConfig {
        &self.cfg
    }

    /// The last computation: limit, mode, `max_pass`, `min_rt`, CPU.
    pub fn state(&self) -> BbrState {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .clone()
    }

    /// The bucket of `at` (bucket 0 starts at the first event).
    fn seq(&self, at: Instant) -> u64 {
        let origin = *self.origin.get_or_init(|| at);
        u64::try_from(at.saturating_duration_since(origin).as_nanos() / self.bucket_ns)
            .unwrap_or(u64::MAX >> 1)
    }

    /// Bucket `seq`'s slot, unless `seq` is older than the window.
    fn slot(&self, seq: u64) -> Option<&Bucket> {
        let seen = self.seen.load(Ordering::SeqCst);
        (seq.saturating_add(self.buckets) >= seen)
            .then(|| &self.ring[(seq % (self.buckets + 1)) as usize])
    }

    /// Recomputes if `seq` is the first event of a new bucket.
    fn advance(&self, seq: u64) {
        if seq > self.seen.load(Ordering::SeqCst)
            && self.seen.fetch_max(seq, Ordering::SeqCst) < seq
        {
            self.recompute();
        }
    }

    /// Recomputes the limit for the newest bucket seen, unless another thread is at it (that
    /// thread then recomputes again if the window moved while it held the lock).
    fn recompute(&self) {
        loop {
            let mut snap = match self.snapshot.try_lock() {
                Ok(s) => s,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            let target = self.seen.load(Ordering::SeqCst);
            if snap.seq.is_some_and(|s| s >= target) {
                return;
            }
            self.compute(&mut snap, target);
            drop(snap);
            if self.seen.load(Ordering::SeqCst) == target {
                return;
            }
        }
    }

    /// The limit for bucket `target`, from the closed buckets before it.
    fn compute(&self, snap: &mut Snapshot, target: u64) {
        let cfg = &self.cfg;
        let drain_every = u64::from(cfg.drain_every);
        let mut max_pass = 0u64;
        let mut min_rt_us: Option<f64> = None;
        let mut passes = 0u64;
        let mut rejects = 0u64;
        let mut recent_passes = 0u64;
        for seq in target.saturating_sub(self.buckets)..target {
            let b = &self.ring[(seq % (self.buckets + 1)) as usize];
            let p = b.passes.get(seq);
            max_pass = max_pass.max(p);
            passes += p;
            // The last closed bucket's admissions may still be in flight: its latency is
            // read once they have completed, at the next rollover.
            let n = b.rt_n.get(seq);
            if n > 0 && seq + 1 < target {
                let mean = b.rt_us.get(seq) as f64 / n as f64;
                min_rt_us = Some(min_rt_us.map_or(mean, |m| m.min(mean)));
            }
            // Since the last drain slot, drain slots left out: the rejections a drain bucket
            // causes itself must not call for the next drain.
            if seq + drain_every > target && !seq.is_multiple_of(drain_every) {
                rejects += b.rejects.get(seq);
                recent_passes += p;
            }
        }
        let bucket_s = cfg.bucket_ms as f64 / 1000.0;
        let max_pass_per_s = max_pass as f64 / bucket_s;
        let cpu = self.gauge.as_ref().and_then(|g| g.utilisation());
        let rule_on = match &self.gauge {
            None => true,
            Some(_) => {
                if cpu.is_none_or(|c| c >= cfg.cpu_threshold) {
                    snap.last_hot = Some(target);
                }
                snap.last_hot.is_some_and(|h| {
                    u128::from(target - h) * self.bucket_ns
                        < u128::from(cfg.cool_down_ms) * 1_000_000
                })
            }
        };
        let (limit, mode) = match min_rt_us {
            _ if !rule_on => (cfg.max_limit, BbrMode::GateOff),
            Some(rt_us) if passes >= u64::from(cfg.warm_up_samples) => {
                let bdp = max_pass_per_s * rt_us / 1e6;
                // Binding: at least 1 % of the requests since the last drain were refused (a
                // stray rejection of a burst at light load is no standing queue to empty).
                // Overloaded: at least a quarter of the requests were refused, so offered load
                // is a third or more above what passes; the burst headroom is for a service
                // below that, and in overload it would only be a standing queue. The two
                // thresholds differ so that the headroom's own absence cannot hold it off: at
                // light load without headroom the rule refuses well under a quarter.
                let binding = rejects > 0 && rejects * 100 >= recent_passes;
                let overloaded = rejects * 3 >= recent_passes.max(1);
                let drain = binding && target.is_multiple_of(drain_every);
                let (raw, mode) = if drain {
                    (bdp / cfg.gain, BbrMode::Drain)
                } else if overloaded {
                    (bdp * cfg.gain, BbrMode::Probe)
                } else {
                    let probe = bdp * cfg.gain;
                    (probe + cfg.burst_z * probe.sqrt(), BbrMode::Probe)
                };
                let limit = raw
                    .ceil()
                    .clamp(f64::from(cfg.min_limit), f64::from(cfg.max_limit));
                (limit as u32, mode)
            }
            _ => (cfg.initial_limit, BbrMode::WarmUp),
        };
        self.limit.store(limit, Ordering::Relaxed);
        snap.seq = Some(target);
        snap.state = BbrState {
            limit,
            mode,
            max_pass_per_s,
            min_rt: min_rt_us.map(|us| Duration::from_secs_f64(us / 1e6)),
            passes,
            cpu,
        };
    }
}

impl Controller for Bbr {
    fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    fn on_sample(&self, sample: Sample) {
        if sample.outcome != Outcome::Success {
            return;
        }
        let us = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        let admitted = sample
            .finished
            .checked_sub(sample.latency)
            .unwrap_or(sample.finished);
        // Completion first: the first event's completion starts bucket 0.
        let done = self.seq(sample.finished);
        let admitted = self.seq(admitted);
        if let Some(b) = self.slot(admitted) {
            b.rt_us.add(admitted, us);
            b.rt_n.add(admitted, 1);
        }
        if let Some(b) = self.slot(done) {
            b.passes.add(done, 1);
        }
        self.advance(done);
    }

    fn on_reject(&self, now: Instant) {
        let seq = self.seq(now);
        if let Some(b) = self.slot(seq) {
            b.rejects.add(seq, 1);
        }
        self.advance(seq);
    }

    fn name(&self) -> &'static str {
        "bbr"
    }

    fn explain(&self) -> Explanation {
        let s = self.state();
        let cfg = &self.cfg;
        let cpu = s.cpu.map_or("n/a".to_string(), |c| format!("{c:.2}"));
        let min_rt = s.min_rt.map_or("n/a".to_string(), |d| {
            format!("{:.2}ms", d.as_secs_f64() * 1e3)
        });
        let state = format!(
            "max_pass={:.0}/s min_rt={min_rt} cpu={cpu} warm_up={} mode={:?} passes={}",
            s.max_pass_per_s,
            s.mode == BbrMode::WarmUp,
            s.mode,
            s.passes
        );
        let why = match s.mode {
            BbrMode::WarmUp => format!(
                "warm-up: {} of {} passes in the window, holding initial_limit {}",
                s.passes, cfg.warm_up_samples, cfg.initial_limit
            ),
            BbrMode::GateOff => format!(
                "cpu {cpu} below cpu_threshold {} and no cut-in within cool_down {} ms: \
                 the rule is off, limit is max_limit",
                cfg.cpu_threshold, cfg.cool_down_ms
            ),
            BbrMode::Probe | BbrMode::Drain => {
                let bdp = s.max_pass_per_s * s.min_rt.map_or(0.0, |d| d.as_secs_f64());
                let op = if s.mode == BbrMode::Drain {
                    "÷ gain (drain bucket: requests were rejected, so the queue is emptied to re-measure min_rt)"
                } else {
                    "× gain, + burst_z × √ of that,"
                };
                format!(
                    "max_pass × min_rt = {bdp:.1} in flight at no-load latency, {op} \
                     (gain {}, burst_z {}) clamped to [{}, {}]",
                    cfg.gain, cfg.burst_z, cfg.min_limit, cfg.max_limit
                )
            }
        };
        Explanation {
            controller: "bbr",
            limit: self.limit(),
            state,
            why,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A CPU gauge the test sets.
    struct Dial(AtomicU64);

    impl Dial {
        fn new(v: f64) -> Arc<Dial> {
            Arc::new(Dial(AtomicU64::new(v.to_bits())))
        }
        fn set(&self, v: f64) {
            self.0.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    impl CpuGauge for Dial {
        fn utilisation(&self) -> Option<f64> {
            Some(f64::from_bits(self.0.load(Ordering::Relaxed)))
        }
    }

    /// The Kratos formula alone (no burst headroom): the exact values below are its.
    fn kratos() -> BbrConfig {
        BbrConfig {
            burst_z: 0.0,
            ..BbrConfig::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(finished: Instant, latency: Duration, outcome: Outcome) -> Sample {
        Sample {
            latency,
            in_flight: 1,
            outcome,
            finished,
        }
    }

    /// `n` successes of `latency` spread over bucket `b` (100 ms buckets from `t0`).
    fn feed(c: &Bbr, t0: Instant, b: u64, n: u64, latency: Duration) {
        for i in 0..n {
            let at = t0 + ms(b * 100) + Duration::from_micros(i * 100_000 / n);
            c.on_sample(sample(at, latency, Outcome::Success));
        }
    }

    fn err(cfg: BbrConfig) -> String {
        match Bbr::new(cfg, None) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_unusable_field_is_refused_by_name_and_value() {
        let d = BbrConfig::default;
        let cases: Vec<(BbrConfig, &str)> = vec![
            (
                BbrConfig {
                    min_limit: 0,
                    ..d()
                },
                "min_limit = 0",
            ),
            (
                BbrConfig {
                    min_limit: 10,
                    max_limit: 5,
                    initial_limit: 7,
                    ..d()
                },
                "min_limit = 10 (max_limit = 5)",
            ),
            (
                BbrConfig {
                    initial_limit: 2000,
                    ..d()
                },
                "initial_limit = 2000 (min_limit = 4, max_limit = 1000)",
            ),
            (
                BbrConfig {
                    initial_limit: 1,
                    ..d()
                },
                "initial_limit = 1",
            ),
            (BbrConfig { gain: 1.0, ..d() }, "gain = 1"),
            (BbrConfig { gain: 0.5, ..d() }, "gain = 0.5"),
            (
                BbrConfig {
                    gain: f64::NAN,
                    ..d()
                },
                "gain = NaN",
            ),
            (
                BbrConfig {
                    bucket_ms: 0,
                    ..d()
                },
                "bucket_ms = 0",
            ),
            (
                BbrConfig {
                    window_ms: 0,
                    ..d()
                },
                "window_ms = 0",
            ),
            (
                BbrConfig {
                    window_ms: 1050,
                    ..d()
                },
                "window_ms = 1050 (bucket_ms = 100)",
            ),
            (
                BbrConfig {
                    window_ms: 100_000_000,
                    bucket_ms: 1,
                    ..d()
                },
                "at most 10000 buckets",
            ),
            (
                BbrConfig {
                    drain_every: 1,
                    ..d()
                },
                "drain_every = 1",
            ),
            (
                BbrConfig {
                    drain_every: 101,
                    ..d()
                },
                "drain_every = 101 (buckets in the window = 100)",
            ),
            (
                BbrConfig {
                    warm_up_samples: 0,
                    ..d()
                },
                "warm_up_samples = 0",
            ),
            (
                BbrConfig {
                    cpu_threshold: 0.0,
                    ..d()
                },
                "cpu_threshold = 0",
            ),
            (
                BbrConfig {
                    cpu_threshold: 1.5,
                    ..d()
                },
                "cpu_threshold = 1.5",
            ),
        ];
        for (cfg, want) in cases {
            let e = err(cfg);
            assert!(e.contains(want), "{e} should contain {want}");
        }
        assert!(Bbr::new(d(), None).is_ok());
        assert!(
            Bbr::new(
                BbrConfig {
                    cpu_threshold: 1.0,
                    ..d()
                },
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn the_config_deserialises_with_defaults_and_refuses_unknown_fields() {
        let c: BbrConfig = serde_json::from_str(r#"{"max_limit": 64, "gain": 1.5}"#).unwrap();
        assert_eq!(
            c,
            BbrConfig {
                max_limit: 64,
                gain: 1.5,
                ..BbrConfig::default()
            }
        );
        let e = serde_json::from_str::<BbrConfig>(r#"{"max_limt": 64}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_limt"), "{e}");
    }

    #[test]
    fn counters_reset_when_their_slot_is_reused_and_ignore_late_counts() {
        let c = Counter::default();
        c.add(3, 5);
        c.add(3, 2);
        assert_eq!(c.get(3), 7);
        assert_eq!(c.get(4), 0, "another bucket reads nothing");
        c.add(104, 1);
        assert_eq!((c.get(104), c.get(3)), (1, 0));
        c.add(3, 9); // a late count for a bucket already replaced
        assert_eq!(c.get(104), 1);
    }

    #[test]
    fn warm_up_holds_initial_limit_until_the_window_has_enough_passes() {
        let c = Bbr::new(kratos(), None).unwrap();
        assert_eq!(c.limit(), 32);
        let t0 = Instant::now();
        // 49 passes over the first 7 buckets, at 100/s and 10 ms: not yet enough.
        for b in 0..7 {
            feed(&c, t0, b, 7, ms(10));
        }
        feed(&c, t0, 7, 1, ms(10));
        assert_eq!(c.state().mode, BbrMode::WarmUp);
        assert_eq!(c.limit(), 32);
        assert!(
            c.explain().state.contains("warm_up=true"),
            "{:?}",
            c.explain()
        );
        feed(&c, t0, 8, 1, ms(10));
        // 50 passes: the rule takes over. max_pass 70/s × 10 ms × 1.25 = 0.875 → min_limit 4.
        assert_eq!(c.state().mode, BbrMode::Probe);
        assert_eq!(c.limit(), 4);
        let e = c.explain();
        assert!(e.state.contains("max_pass=70/s min_rt=10.00ms"), "{e:?}");
        assert!(e.state.contains("warm_up=false"), "{e:?}");
    }

    /// Ten buckets of 100 passes at 10 ms: max_pass 1000/s × 10 ms = 10, × 1.25 → 13.
    fn steady(c: &Bbr, t0: Instant, buckets: std::ops::Range<u64>) {
        for b in buckets {
            feed(c, t0, b, 100, ms(10));
        }
    }

    #[test]
    fn the_limit_is_max_pass_times_min_rt_times_gain() {
        let c = Bbr::new(kratos(), None).unwrap();
        let t0 = Instant::now();
        steady(&c, t0, 0..11);
        assert_eq!(c.limit(), 13);
        // A faster bucket (5 ms, twice the passes) moves both: 2000/s × 5 ms × 1.25 → 13 still;
        // a bucket with 200 passes at 10 ms raises max_pass only: 2000/s × 10 ms → 25.
        feed(&c, t0, 11, 200, ms(10));
        feed(&c, t0, 12, 1, ms(10));
        assert_eq!(c.limit(), 25);
        let s = c.state();
        assert_eq!(s.max_pass_per_s, 2000.0);
        assert_eq!(s.min_rt, Some(ms(10)));
    }

    #[test]
    fn dropped_and_failed_requests_do_not_count() {
        let plain = Bbr::new(kratos(), None).unwrap();
        let noisy = Bbr::new(kratos(), None).unwrap();
        let t0 = Instant::now();
        for b in 0..15 {
            feed(&plain, t0, b, 100, ms(10));
            feed(&noisy, t0, b, 100, ms(10));
            for i in 0..500 {
                let at = t0 + ms(b * 100) + Duration::from_micros(i * 200);
                let out = if i % 2 == 0 {
                    Outcome::Dropped
                } else {
                    Outcome::Error
                };
                noisy.on_sample(sample(at, Duration::from_micros(1), out));
            }
            assert_eq!(noisy.state(), plain.state(), "bucket {b}");
            assert_eq!(noisy.limit(), plain.limit());
        }
        assert_eq!(plain.state().min_rt, Some(ms(10)));
    }

    #[test]
    fn rejections_never_enter_the_estimate_and_only_decide_drain_buckets() {
        let plain = Bbr::new(kratos(), None).unwrap();
        let rejecting = Bbr::new(kratos(), None).unwrap();
        let t0 = Instant::now();
        let mut drains = 0;
        for b in 0..35 {
            feed(&plain, t0, b, 100, ms(10));
            feed(&rejecting, t0, b, 100, ms(10));
            for i in 0..1000 {
                rejecting.on_reject(t0 + ms(b * 100) + Duration::from_micros(i * 100));
            }
            let (p, r) = (plain.state(), rejecting.state());
            assert_eq!(
                (p.max_pass_per_s, p.min_rt, p.passes),
                (r.max_pass_per_s, r.min_rt, r.passes),
                "bucket {b}"
            );
            assert_ne!(p.mode, BbrMode::Drain, "no rejections, no drain");
            if r.mode == BbrMode::Drain {
                drains += 1;
                assert_eq!(b % 10, 0);
                assert_eq!(rejecting.limit(), 8, "10 ÷ 1.25");
                assert!(rejecting.explain().why.contains("drain"));
            } else {
                assert_eq!(rejecting.limit(), plain.limit(), "bucket {b}");
            }
        }
        assert_eq!(drains, 3, "buckets 10, 20, 30");
    }

    #[test]
    fn samples_from_many_threads_are_all_counted() {
        let c = Arc::new(Bbr::new(kratos(), None).unwrap());
        let t0 = Instant::now();
        c.on_sample(sample(t0, ms(10), Outcome::Success));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for b in 0..5 {
                        feed(&c, t0, b, 1000, ms(10));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        feed(&c, t0, 6, 1, ms(10));
        let s = c.state();
        assert_eq!(s.passes, 1 + 8 * 5 * 1000, "{s:?}");
        assert_eq!(s.max_pass_per_s, 80_010.0);
        assert_eq!(s.min_rt, Some(ms(10)));
    }

    #[test]
    fn without_the_cpu_gate_open_the_limit_is_max_limit() {
        let dial = Dial::new(0.3);
        let c = Bbr::new(kratos(), Some(dial.clone())).unwrap();
        let t0 = Instant::now();
        steady(&c, t0, 0..20);
        assert_eq!(c.limit(), 1000);
        assert_eq!(c.state().mode, BbrMode::GateOff);
        assert!(c.explain().state.contains("cpu=0.30"));
        assert!(c.explain().why.contains("rule is off"));
        // The CPU crosses the threshold: the rule cuts in at the next bucket.
        dial.set(0.85);
        steady(&c, t0, 20..21);
        assert_eq!((c.limit(), c.state().mode), (13, BbrMode::Probe));
        // Back below: the rule holds for the cool-down (1 s = 10 buckets), then lets go.
        dial.set(0.2);
        for b in 21..30 {
            steady(&c, t0, b..b + 1);
            assert_eq!(c.limit(), 13, "bucket {b}, {:?}", c.state());
        }
        steady(&c, t0, 30..31);
        assert_eq!((c.limit(), c.state().mode), (1000, BbrMode::GateOff));
    }

    #[test]
    fn a_shorter_cool_down_lets_go_sooner() {
        let dial = Dial::new(0.9);
        let cfg = BbrConfig {
            cool_down_ms: 300,
            ..kratos()
        };
        let c = Bbr::new(cfg, Some(dial.clone())).unwrap();
        let t0 = Instant::now();
        steady(&c, t0, 0..20);
        assert_eq!(c.limit(), 13);
        dial.set(0.1);
        // Bucket 19 was the last hot one: the rule holds for 300 ms from its start.
        steady(&c, t0, 20..22);
        assert_eq!(
            c.limit(),
            13,
            "buckets 20 and 21 are within 300 ms of bucket 19"
        );
        steady(&c, t0, 22..23);
        assert_eq!(c.limit(), 1000);
    }
}
