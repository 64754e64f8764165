//! Weir's embedded simulated database cluster: the training ground, the demo and the
//! benchmark bed.
//!
//! A [`Scenario`] (a TOML file under `scenarios/`) describes a primary, N read replicas, a
//! workload, SLOs and a script of events. A [`Simulator`] steps it one tick at a time under
//! the read [`weir_core::Weights`] a controller sets, reports the true outcome of each tick
//! ([`TickStats`], summed by [`IntervalStats`] into a [`weir_core::Outcome`]) and shows the
//! controller what Prometheus would show ([`Simulator::observe`]): delayed, noisy, sometimes
//! missing.
//!
//! The simulator is deterministic for a given scenario and seed: all randomness comes from
//! [`weir_core::rng::Rng`] and nothing reads a clock. A tick allocates nothing and uses no
//! hash map, so a two-replica cluster runs well over a million ticks per second, and a
//! clone (which the lookahead oracle takes every decision) copies a few flat vectors.
//!
//! # The model
//!
//! Each tick of length `dt` (at time `t`, events active when `at_s <= t < at_s + duration_s`):
//!
//! * **Workload.** `reads = read_qps · (1 + A·sin(2πt/P)) · n_r · surge`,
//!   `writes = write_qps · (1 + A·sin(2πt/P)) · n_w · burst`, where `n` is a smoothed
//!   multiplicative noise `exp(x − σ²/2)`, `x` an AR(1) process with standard deviation
//!   `σ = workload.noise` and correlation time [`sim::NOISE_TAU_S`] (never negative, mean 1).
//! * **Routing.** The weights set target shares `s*_p = w_p / Σw`, `s*_i = w_i / Σw` (a zero
//!   total sends everything to the primary). The primary gets `reads · s_p`, replica `i` gets
//!   `reads · s_i`, where `s` are the *effective* shares. With instant routing
//!   (`routing.connection_lifetime_s = L = 0`, the default) `s = s*` from the tick after
//!   [`Simulator::set_weights`]. With `L > 0` a new weight only affects new connections (a
//!   proxy in TCP mode, a client pool) and each tick, before the routing, every share relaxes
//!   as `s += (s* − s) · (1 − exp(−dt/L))`: after a change, `s* − s` decays as `exp(−t/L)`,
//!   so a destination set to 0 drains over a few `L`. Once every gap is below
//!   [`sim::TURNOVER_SNAP`] the shares equal the targets (the last old connection closed).
//!   The run starts in steady state (`s = s*` = even weights). Observed per-destination
//!   `read_qps` and every outcome follow `s`.
//! * **Primary.** `demand = (reads_p + writes · write_cost) / (capacity · degraded)`,
//!   `cpu = min(demand, 1)`. Writes have priority: reads beyond `capacity − write load` fail.
//!   `p99 = base_latency_ms / (1 − min(demand, 0.98))` (an M/M/1-like queueing curve capped at
//!   50 × base).
//! * **Replica i.** `util = reads_i / capacity`; reads above capacity fail, and all reads to a
//!   down replica fail. `apply = apply_capacity · (1 − interference · min(util, 1)) · f`, with
//!   `f = 0` while stalled or down and `f = factor` while slow. `p99` as for the primary with
//!   `util` in place of `demand`.
//! * **Lag.** `W(t)` is the cumulative number of writes committed on the primary and `a_i`
//!   the number applied by replica `i` (`a_i ≤ W`). The true lag is `t − τ` with `W(τ) = a_i`:
//!   how long ago the oldest unapplied write was committed, 0 when caught up. So a stalled
//!   replica's lag grows at 1 s/s, and after the stall it drains at `apply/writes − 1` s/s.
//!   `W` is kept per tick in a ring of at most [`sim::LAG_WINDOW_S`] (2 h); a replica further
//!   behind reports exactly the ring span (the lag saturates there).
//! * **Outcome.** A read served by a replica whose true lag exceeds `slo.max_staleness_s` is
//!   stale. The cluster p99 is that of the mixture of destinations: sorted by latency, slowest
//!   first, it is the latency where the cumulative share of served reads first exceeds 1%.
//!
//! # What the controller sees
//!
//! Scrapes happen every `scrape_interval_s` from a seed-derived phase (at most one per tick,
//! stamped with the tick's time). Each snapshots the true metrics with relative Gaussian noise
//! `metric_noise`; lag also gets `U(0, 0.5)` s of heartbeat resolution. At time `t` the
//! controller sees the latest scrape with `time + scrape_delay_s ≤ t`, every signal aged
//! `t − time`. Before the first visible scrape every signal is unknown
//! ([`weir_core::Unknown::NeverSeen`]); during `metrics_gap` no scrape succeeds, so ages grow;
//! a replica down at the scrape shows `up = Some(false)` and its other signals are unknown
//! ([`weir_core::Unknown::TargetDown`]).

pub mod generate;
pub mod scenario;
pub mod sim;
pub mod stats;

pub use generate::{GeneratorConfig, Split};
pub use scenario::{
    Event, EventKind, PrimaryConfig, ReplicaConfig, Routing, Scenario, ScenarioError, Timing,
    Workload, load_dir,
};
pub use sim::{ReplicaTruth, Simulator, Truth};
pub use stats::{IntervalStats, TickStats};
