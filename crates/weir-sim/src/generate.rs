//! Procedurally generated scenarios (domain randomisation).
//!
//! A learned read-split policy must work on clusters it never saw, so instead of a dozen
//! hand-written files it trains on scenarios drawn from wide ranges: 1–5 replicas of
//! different sizes, primaries from ample to little CPU headroom, replicas that catch up after
//! a stall in a blink (apply capacity ≫ write rate, as a MariaDB replica does when a lock is
//! released) or barely at all, read/apply interference, 0–4 overlapping events of every
//! kind, scrape and control timing, metric noise, load waves, connection turnover and,
//! sometimes, other SLOs.
//!
//! [`generate`] is pure: the scenario depends only on the [`GeneratorConfig`], the [`Split`],
//! the seed and the index, and all randomness comes from [`weir_core::rng::Rng`]. The two
//! splits draw from disjoint streams (the master generator is forked by a split tag before
//! anything else), so no training seed produces a held-out scenario: `weir train` may use
//! any seed of [`Split::Train`], while `scenarios/heldout/` ([`Split::Heldout`], seed 2026)
//! is read by no tuning at all.
//!
//! The ranges describe plausible clusters and incidents; nothing in them looks at what a
//! policy does. The only shaping is "tension": most scenarios have at least one event that
//! stresses replication or load (a metrics gap alone does not count).

use std::fmt::Write as _;

use weir_core::Slo;
use weir_core::rng::Rng;

use crate::scenario::{
    Event, EventKind, PrimaryConfig, ReplicaConfig, Routing, Scenario, ScenarioError, Timing,
    Workload,
};

/// Version of the generator's sampling procedure, written into every generated file's header.
/// Any change to what [`generate`] returns for a given input must bump it (and regenerate
/// `scenarios/heldout/`, which a test compares byte for byte).
pub const GENERATOR_VERSION: u32 = 1;

/// The seed of the committed held-out set `scenarios/heldout/`.
pub const HELDOUT_SEED: u64 = 2026;

/// Number of scenarios in the committed held-out set.
pub const HELDOUT_COUNT: u32 = 12;

/// Which family of scenarios to draw from. The two never share a random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// For training and tuning: any seed, any count.
    Train,
    /// For the final, untouched evaluation only.
    Heldout,
}

impl Split {
    /// The name used in scenario names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
        }
    }

    /// The stream tag the master generator is forked by.
    fn tag(self) -> u64 {
        match self {
            // "train" and "heldout" in ASCII.
            Split::Train => 0x0074_7261_696e,
            Split::Heldout => 0x0068_656c_646f_7574,
        }
    }
}

/// A closed range `[min, max]` of real values. Sampling tolerates `min > max` (the bounds are
/// swapped) and non-finite bounds (the finite one, or 0, is used).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
}

impl Span {
    /// `[min, max]`.
    pub const fn new(min: f64, max: f64) -> Span {
        Span { min, max }
    }

    fn bounds(self) -> (f64, f64) {
        let fix = |v: f64, other: f64| {
            if v.is_finite() {
                v
            } else if other.is_finite() {
                other
            } else {
                0.0
            }
        };
        let (a, b) = (fix(self.min, self.max), fix(self.max, self.min));
        if a <= b { (a, b) } else { (b, a) }
    }

    /// Uniform sample.
    fn uniform(self, rng: &mut Rng) -> f64 {
        let (lo, hi) = self.bounds();
        rng.range(lo, hi)
    }

    /// Log-uniform sample (uniform when a bound is not positive).
    fn log_uniform(self, rng: &mut Rng) -> f64 {
        let (lo, hi) = self.bounds();
        if lo > 0.0 {
            rng.range(lo.ln(), hi.ln()).exp()
        } else {
            rng.range(lo, hi)
        }
    }
}

/// Duration range and factor range of one event kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventShape {
    /// Relative frequency among events (0 = never drawn).
    pub weight: f64,
    /// Length, seconds.
    pub duration_s: Span,
    /// Multiplier, for the kinds that take one (ignored otherwise).
    pub factor: Span,
}

/// Every event kind, in the order of [`GeneratorConfig::events`].
pub const EVENT_KINDS: [EventKind; 7] = [
    EventKind::ReplicaStall,
    EventKind::ReplicaSlow,
    EventKind::ReplicaDown,
    EventKind::WriteBurst,
    EventKind::ReadSurge,
    EventKind::PrimaryDegraded,
    EventKind::MetricsGap,
];

/// The ranges scenarios are drawn from. [`GeneratorConfig::default`] documents each default
/// next to its field; `weir scenarios generate` uses the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Simulated length, seconds (rounded to whole minutes). Default 20–60 min.
    pub duration_s: Span,
    /// Fewest replicas. Default 1.
    pub min_replicas: usize,
    /// Most replicas (at most 32). Default 5.
    pub max_replicas: usize,
    /// Mean offered reads per second, log-uniform. Default 1 000–12 000.
    pub read_qps: Span,
    /// Writes per read. Default 0.03–0.25.
    pub write_ratio: Span,
    /// Summed replica read capacity / mean reads. Default 1.1–2.2 (the replicas together can
    /// take every read, some with little to spare).
    pub replica_headroom: Span,
    /// Largest ratio between two replicas' read capacities. Default 3.
    pub replica_spread: f64,
    /// Primary demand if every read went to it, `(reads + writes · write_cost) / capacity`.
    /// Default 0.6 (ample headroom) – 2.0 (little: a fraction of the reads saturates it).
    pub primary_read_demand: Span,
    /// Cost of a write in read units. Default 1–5.
    pub write_cost: Span,
    /// Most primary CPU the mean writes alone may take (the write cost is lowered to fit).
    /// Default 0.5.
    pub max_write_cpu: f64,
    /// Replica apply capacity / mean write rate, log-uniform, per replica. Default 1.2 (slow
    /// catch-up: a 5-minute stall takes 25 minutes to drain) – 50 (near-instant recovery).
    pub apply_ratio: Span,
    /// Read/apply interference. Default 0–0.7, lowered so that a replica at full read load
    /// still applies at least `min_loaded_apply` × the mean write rate.
    pub interference: Span,
    /// See `interference`. Default 0.9.
    pub min_loaded_apply: f64,
    /// Zero-load read latency of the primary, ms. Default 1–3.
    pub primary_latency_ms: Span,
    /// Zero-load read latency of a replica, ms. Default 1–4.
    pub replica_latency_ms: Span,
    /// Fewest events. Default 0.
    pub min_events: usize,
    /// Most events (at most 32). Default 4.
    pub max_events: usize,
    /// Probability of a scenario without events (load alone), when `min_events` is 0.
    /// Default 0.05; otherwise the count is uniform in `max(1, min_events)..=max_events`.
    pub no_event_probability: f64,
    /// Probability that an event starts inside an earlier one. Default 0.35.
    pub overlap_probability: f64,
    /// No event starts before this, seconds. Default 120.
    pub warmup_s: f64,
    /// Events end this long before the end where they fit, seconds. Default 120.
    pub tail_s: f64,
    /// Per kind, in [`EVENT_KINDS`] order: stall 60–900 s; slow 180–1200 s at ×0.1–0.7;
    /// down 30–600 s; write burst 60–600 s at ×1.3–3; read surge 120–900 s at ×1.15–1.8;
    /// primary degraded 120–900 s at ×0.4–0.85; metrics gap 30–300 s. Weights 28, 16, 12,
    /// 12, 12, 10, 10.
    pub events: [EventShape; 7],
    /// Control intervals to choose from, seconds. Default 5, 10, 15, 20, 30.
    pub control_intervals_s: Vec<f64>,
    /// Ticks to choose from, seconds (one that does not divide the control interval falls
    /// back to 1 s). Default 0.5, 1, 1, 1, 2.
    pub ticks_s: Vec<f64>,
    /// Scrape intervals to choose from, seconds. Default 5, 10, 15, 15, 30.
    pub scrape_intervals_s: Vec<f64>,
    /// Scrape delay, seconds (rounded to 0.5). Default 0–10.
    pub scrape_delay_s: Span,
    /// Relative metric noise. Default 0–0.08.
    pub metric_noise: Span,
    /// Probability of instant routing (`connection_lifetime_s = 0`). Default 0.3.
    pub instant_routing_probability: f64,
    /// Otherwise the mean connection lifetime, seconds. Default 1–60.
    pub connection_lifetime_s: Span,
    /// Probability of a load wave. Default 0.6.
    pub wave_probability: f64,
    /// Its amplitude. Default 0.05–0.4.
    pub wave_amplitude: Span,
    /// Its period as a multiple of the duration (a compressed day). Default 0.5–4.
    pub wave_period: Span,
    /// Probability of smoothed load noise. Default 0.7.
    pub noise_probability: f64,
    /// Its relative standard deviation. Default 0.01–0.15.
    pub noise: Span,
    /// Probability of SLOs other than the defaults. Default 0.2.
    pub slo_change_probability: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        let shape = |weight, lo, hi, flo, fhi| EventShape {
            weight,
            duration_s: Span::new(lo, hi),
            factor: Span::new(flo, fhi),
        };
        GeneratorConfig {
            duration_s: Span::new(1200.0, 3600.0),
            min_replicas: 1,
            max_replicas: 5,
            read_qps: Span::new(1000.0, 12_000.0),
            write_ratio: Span::new(0.03, 0.25),
            replica_headroom: Span::new(1.1, 2.2),
            replica_spread: 3.0,
            primary_read_demand: Span::new(0.6, 2.0),
            write_cost: Span::new(1.0, 5.0),
            max_write_cpu: 0.5,
            apply_ratio: Span::new(1.2, 50.0),
            interference: Span::new(0.0, 0.7),
            min_loaded_apply: 0.9,
            primary_latency_ms: Span::new(1.0, 3.0),
            replica_latency_ms: Span::new(1.0, 4.0),
            min_events: 0,
            max_events: 4,
            no_event_probability: 0.05,
            overlap_probability: 0.35,
            warmup_s: 120.0,
            tail_s: 120.0,
            events: [
                shape(28.0, 60.0, 900.0, 1.0, 1.0),
                shape(16.0, 180.0, 1200.0, 0.1, 0.7),
                shape(12.0, 30.0, 600.0, 1.0, 1.0),
                shape(12.0, 60.0, 600.0, 1.3, 3.0),
                shape(12.0, 120.0, 900.0, 1.15, 1.8),
                shape(10.0, 120.0, 900.0, 0.4, 0.85),
                shape(10.0, 30.0, 300.0, 1.0, 1.0),
            ],
            control_intervals_s: vec![5.0, 10.0, 15.0, 20.0, 30.0],
            ticks_s: vec![0.5, 1.0, 1.0, 1.0, 2.0],
            scrape_intervals_s: vec![5.0, 10.0, 15.0, 15.0, 30.0],
            scrape_delay_s: Span::new(0.0, 10.0),
            metric_noise: Span::new(0.0, 0.08),
            instant_routing_probability: 0.3,
            connection_lifetime_s: Span::new(1.0, 60.0),
            wave_probability: 0.6,
            wave_amplitude: Span::new(0.05, 0.4),
            wave_period: Span::new(0.5, 4.0),
            noise_probability: 0.7,
            noise: Span::new(0.01, 0.15),
            slo_change_probability: 0.2,
        }
    }
}

/// Hard cap on replicas and events per generated scenario (keeps a silly config cheap).
const MAX_ITEMS: usize = 32;

/// The name of scenario `index` of `split`: `gen-train-0007`, `gen-heldout-0003`.
pub fn scenario_name(split: Split, index: u32) -> String {
    format!("gen-{}-{index:04}", split.as_str())
}

/// The command that writes `count` scenarios of `split` from `seed`, as printed in headers.
pub fn command_line(split: Split, seed: u64, count: u32) -> String {
    format!(
        "weir scenarios generate --split {} --seed {seed} --count {count}",
        split.as_str()
    )
}

/// The random stream of scenario `index` of `split` under `seed`.
fn stream(split: Split, seed: u64, index: u32) -> Rng {
    let mut master = Rng::new(seed);
    let mut split_rng = master.fork(split.tag());
    split_rng.fork(u64::from(index))
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.uniform() < p
}

fn round_to(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

/// Rounds to `decimals` places through the decimal text, so the value prints short.
fn round_dp(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

fn pick(rng: &mut Rng, choices: &[f64], fallback: f64) -> f64 {
    if choices.is_empty() {
        fallback
    } else {
        choices[rng.below(choices.len())]
    }
}

fn count_between(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let (lo, hi) = (lo.min(MAX_ITEMS), hi.min(MAX_ITEMS));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    lo + rng.below(hi - lo + 1)
}

/// Scenario `index` of `split` under `seed`. Deterministic and pure. The result has passed
/// [`Scenario::validate`]; an error means the configuration asked for something invalid (a
/// negative rate, say) and names the field it produced.
pub fn generate(
    config: &GeneratorConfig,
    split: Split,
    seed: u64,
    index: u32,
) -> Result<Scenario, ScenarioError> {
    let c = config;
    let mut rng = stream(split, seed, index);
    let name = scenario_name(split, index);

    let duration_s = round_to(c.duration_s.uniform(&mut rng), 60.0).max(60.0);

    // Timing.
    let control = pick(&mut rng, &c.control_intervals_s, 15.0);
    let tick_choice = pick(&mut rng, &c.ticks_s, 1.0);
    let divides = |tick: f64| tick > 0.0 && tick <= control && (control / tick).fract() == 0.0;
    let tick_s = if divides(tick_choice) {
        tick_choice
    } else if divides(1.0) {
        1.0
    } else {
        control
    };
    let scrape_interval_s = pick(&mut rng, &c.scrape_intervals_s, 15.0);
    let scrape_delay_s = round_to(c.scrape_delay_s.uniform(&mut rng), 0.5);
    let metric_noise = round_dp(c.metric_noise.uniform(&mut rng), 3);
    let timing = Timing {
        tick_s,
        control_interval_s: control,
        scrape_interval_s,
        scrape_delay_s,
        metric_noise,
    };
    let connection_lifetime_s = if chance(&mut rng, c.instant_routing_probability) {
        0.0
    } else {
        c.connection_lifetime_s.uniform(&mut rng).round().max(1.0)
    };

    // Workload.
    let read_qps = round_to(c.read_qps.log_uniform(&mut rng), 10.0).max(10.0);
    let write_qps = (read_qps * c.write_ratio.uniform(&mut rng))
        .round()
        .max(1.0);
    let diurnal_amplitude = if chance(&mut rng, c.wave_probability) {
        round_dp(c.wave_amplitude.uniform(&mut rng), 2)
    } else {
        0.0
    };
    let diurnal_period_s = if diurnal_amplitude > 0.0 {
        round_to(c.wave_period.uniform(&mut rng) * duration_s, 60.0).max(60.0)
    } else {
        86_400.0
    };
    let noise = if chance(&mut rng, c.noise_probability) {
        round_dp(c.noise.uniform(&mut rng), 3)
    } else {
        0.0
    };
    let workload = Workload {
        read_qps,
        write_qps,
        diurnal_amplitude,
        diurnal_period_s,
        noise,
    };

    // Primary: pick the all-reads demand, fit the write cost under the write CPU cap, then
    // size the capacity.
    let demand = c.primary_read_demand.uniform(&mut rng);
    let mut write_cost = c.write_cost.uniform(&mut rng);
    let m = c.max_write_cpu;
    if m > 0.0 && demand > m {
        // Writes' CPU share = demand · x / (1 + x) with x = writes · cost / reads.
        let x_max = m / (demand - m);
        write_cost = write_cost.min(x_max * read_qps / write_qps);
    }
    let write_cost = round_dp(write_cost, 1).max(0.1);
    let primary = PrimaryConfig {
        capacity: round_to((read_qps + write_qps * write_cost) / demand, 10.0).max(10.0),
        write_cost,
        base_latency_ms: round_dp(c.primary_latency_ms.uniform(&mut rng), 1).max(0.1),
    };

    // Replicas: heterogeneous capacities summing to headroom × reads, per-replica apply.
    let n = count_between(&mut rng, c.min_replicas.max(1), c.max_replicas.max(1)).max(1);
    let total = read_qps * c.replica_headroom.uniform(&mut rng);
    let spread = if c.replica_spread.is_finite() && c.replica_spread >= 1.0 {
        c.replica_spread.ln()
    } else {
        0.0
    };
    let sizes: Vec<f64> = (0..n).map(|_| rng.range(0.0, spread).exp()).collect();
    let size_sum: f64 = sizes.iter().sum();
    let replicas: Vec<ReplicaConfig> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let ratio = c.apply_ratio.log_uniform(&mut rng);
            let cap = if ratio > 0.0 {
                (1.0 - c.min_loaded_apply / ratio).max(0.0)
            } else {
                0.0
            };
            let interference = c.interference.uniform(&mut rng).min(cap);
            ReplicaConfig {
                name: format!("replica-{}", i + 1),
                capacity: round_to(total * size / size_sum, 10.0).max(10.0),
                apply_capacity: (ratio * write_qps).round().max(1.0),
                read_apply_interference: (interference * 100.0).floor() / 100.0,
                base_latency_ms: round_dp(c.replica_latency_ms.uniform(&mut rng), 1).max(0.1),
            }
        })
        .collect();

    let slo = if chance(&mut rng, c.slo_change_probability) {
        random_slo(&mut rng)
    } else {
        Slo::default()
    };

    let events = random_events(c, &mut rng, duration_s, n);
    let seed = 1 + rng.below(999_999) as u64;

    let mut scenario = Scenario {
        name: name.clone(),
        description: String::new(),
        duration_s,
        seed,
        timing,
        routing: Routing {
            connection_lifetime_s,
        },
        slo,
        primary,
        replicas,
        workload,
        events,
        origin: format!("{name} (generated)"),
    };
    scenario.description = describe(&scenario);
    scenario.validate()?;
    Ok(scenario)
}

/// Scenarios `0..count` of `split` under `seed`.
pub fn generate_set(
    config: &GeneratorConfig,
    split: Split,
    seed: u64,
    count: u32,
) -> Result<Vec<Scenario>, ScenarioError> {
    (0..count)
        .map(|i| generate(config, split, seed, i))
        .collect()
}

fn random_slo(rng: &mut Rng) -> Slo {
    let max_staleness_s = pick(rng, &[2.0, 3.0, 5.0, 10.0, 15.0], 5.0);
    let hard_staleness_s = (max_staleness_s * rng.range(3.0, 6.0)).round().max(30.0);
    let primary_cpu_target = round_to(rng.range(0.5, 0.75), 0.05);
    let primary_cpu_max = round_dp((primary_cpu_target + rng.range(0.1, 0.25)).min(0.95), 2);
    let read_p99_slo_ms = pick(rng, &[20.0, 30.0, 50.0, 100.0], 50.0);
    Slo {
        max_staleness_s,
        hard_staleness_s,
        primary_cpu_target: round_dp(primary_cpu_target, 2),
        primary_cpu_max,
        read_p99_slo_ms,
    }
}

fn random_kind(config: &GeneratorConfig, rng: &mut Rng, stress_only: bool) -> usize {
    let weight = |i: usize| {
        let w = config.events[i].weight;
        let usable = w.is_finite() && w > 0.0;
        if usable && !(stress_only && EVENT_KINDS[i] == EventKind::MetricsGap) {
            w
        } else {
            0.0
        }
    };
    let total: f64 = (0..EVENT_KINDS.len()).map(weight).sum();
    if total <= 0.0 {
        return 0; // a replica stall
    }
    let mut x = rng.uniform() * total;
    for i in 0..EVENT_KINDS.len() {
        x -= weight(i);
        if x < 0.0 && weight(i) > 0.0 {
            return i;
        }
    }
    (0..EVENT_KINDS.len())
        .rev()
        .find(|&i| weight(i) > 0.0)
        .unwrap_or(0)
}

fn random_events(
    c: &GeneratorConfig,
    rng: &mut Rng,
    duration_s: f64,
    replicas: usize,
) -> Vec<Event> {
    let count = if c.min_events == 0 && chance(rng, c.no_event_probability) {
        0
    } else {
        count_between(rng, c.min_events.max(1), c.max_events)
    };
    let mut kinds: Vec<usize> = (0..count).map(|_| random_kind(c, rng, false)).collect();
    // Tension: at least one event that stresses replication or load.
    if !kinds.is_empty() && !kinds_stress(&kinds) {
        kinds[0] = random_kind(c, rng, true);
    }

    let earliest = c.warmup_s.max(0.0).min(duration_s * 0.5);
    let latest_end = (duration_s - c.tail_s.max(0.0)).max(earliest + 60.0);
    let mut events: Vec<Event> = Vec::with_capacity(count);
    for k in kinds {
        let kind = EVENT_KINDS[k];
        let shape = &c.events[k];
        let room = (latest_end - earliest).max(1.0);
        let d = shape.duration_s.uniform(rng).round().clamp(1.0, room);
        let at = if !events.is_empty() && chance(rng, c.overlap_probability) {
            let other = &events[rng.below(events.len())];
            rng.range(other.at_s, other.end_s())
        } else {
            rng.range(earliest, latest_end - d)
        };
        // Keep it inside [earliest, latest_end] where it fits.
        let at = at.round().min(latest_end - d).max(earliest).round();
        let target = kind
            .targets_replica()
            .then(|| format!("replica-{}", rng.below(replicas.max(1)) + 1));
        let factor = kind
            .takes_factor()
            .then(|| round_dp(shape.factor.uniform(rng), 2).max(0.01));
        events.push(Event {
            kind,
            target,
            at_s: at,
            duration_s: d,
            factor,
        });
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    events
}

fn kinds_stress(kinds: &[usize]) -> bool {
    kinds
        .iter()
        .any(|&k| EVENT_KINDS[k] != EventKind::MetricsGap)
}

/// `90s`, `12m`, `7.5m`.
fn span_text(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else {
        let m = format!("{:.1}", s / 60.0);
        format!("{}m", m.strip_suffix(".0").unwrap_or(&m))
    }
}

/// One line saying what the scenario is and what happens in it, from its fields.
pub fn describe(s: &Scenario) -> String {
    let reads = s.workload.read_qps;
    let writes = s.workload.write_qps;
    let all_on_primary = (reads + writes * s.primary.write_cost) / s.primary.capacity;
    let ratios = s
        .replicas
        .iter()
        .map(|r| r.apply_capacity / writes.max(f64::MIN_POSITIVE));
    let (lo, hi) = ratios.fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (lo.min(r), hi.max(r))
    });
    let mut out = format!(
        "{} replica{}; all reads on the primary = {:.0}% CPU; apply {:.1}",
        s.replicas.len(),
        if s.replicas.len() == 1 { "" } else { "s" },
        all_on_primary * 100.0,
        lo,
    );
    if hi - lo >= 0.05 {
        let _ = write!(out, "–{hi:.1}");
    }
    out.push_str("× writes");
    if s.routing.connection_lifetime_s > 0.0 {
        let _ = write!(
            out,
            "; connections live {:.0}s",
            s.routing.connection_lifetime_s
        );
    }
    if s.events.is_empty() {
        out.push_str("; no events (load only)");
    }
    for e in &s.events {
        let at = span_text(e.at_s);
        let len = span_text(e.duration_s);
        let target = e.target.as_deref().unwrap_or("?");
        let f = e.factor.unwrap_or(1.0);
        let _ = match e.kind {
            EventKind::ReplicaStall => write!(out, "; t={at} {target} stalls {len}"),
            EventKind::ReplicaSlow => {
                write!(
                    out,
                    "; t={at} {target} applies at {:.0}% for {len}",
                    f * 100.0
                )
            }
            EventKind::ReplicaDown => write!(out, "; t={at} {target} down {len}"),
            EventKind::WriteBurst => write!(out, "; t={at} writes ×{f} for {len}"),
            EventKind::ReadSurge => write!(out, "; t={at} reads ×{f} for {len}"),
            EventKind::PrimaryDegraded => {
                write!(out, "; t={at} primary at {:.0}% for {len}", f * 100.0)
            }
            EventKind::MetricsGap => write!(out, "; t={at} metrics gap {len}"),
        };
    }
    out
}

/// The file name of a generated scenario: `<name>.toml`.
pub fn file_name(s: &Scenario) -> String {
    format!("{}.toml", s.name)
}

/// The text of a generated scenario file: a header naming the command that wrote it, then the
/// scenario in the shipped TOML format (comments are ignored when it is loaded).
pub fn render(s: &Scenario, command: &str) -> Result<String, ScenarioError> {
    let body = s.to_toml_string()?;
    Ok(format!(
        "# Generated by `{command}` (weir-sim generator v{GENERATOR_VERSION}).\n\
         # Do not edit: regenerate with the same command instead.\n\
         # {}\n\n{body}",
        s.description
    ))
}

#[cfg(test)]
mod tests;
