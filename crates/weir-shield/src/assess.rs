//! Judging one observation: which replicas are safe, how much the primary can take.

use serde::{Deserialize, Serialize};
use weir_core::{Intervention, Observation, Rule, Slo, Weights};

use crate::ShieldConfig;

/// Where the repair functions report what they changed. Counting only (for the action mask)
/// skips formatting the messages, which dominates the cost of a mask query.
pub(crate) struct Notes {
    list: Option<Vec<Intervention>>,
    count: usize,
}

impl Notes {
    pub(crate) fn collect() -> Self {
        Notes {
            list: Some(Vec::new()),
            count: 0,
        }
    }

    pub(crate) fn count_only() -> Self {
        Notes {
            list: None,
            count: 0,
        }
    }

    pub(crate) fn push(&mut self, rule: Rule, detail: impl FnOnce() -> String) {
        self.count += 1;
        if let Some(l) = &mut self.list {
            l.push(Intervention {
                rule,
                detail: detail(),
            });
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn into_vec(self) -> Vec<Intervention> {
        self.list.unwrap_or_default()
    }
}

/// How the shield sees one replica.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ReplicaHealth {
    /// Lag known, fresh and within `hard_staleness_s`.
    Healthy {
        /// Lag in seconds.
        lag_s: f64,
    },
    /// Lag beyond `hard_staleness_s`.
    TooStale {
        /// Lag in seconds.
        lag_s: f64,
    },
    /// Lag unknown or too old to act on (a vanished series is treated as unsafe, never 0).
    LagUnknown,
    /// Known to be down.
    Down,
}

impl ReplicaHealth {
    /// Whether the replica may receive reads.
    pub fn is_healthy(&self) -> bool {
        matches!(self, ReplicaHealth::Healthy { .. })
    }

    fn rule(&self) -> Rule {
        match self {
            ReplicaHealth::Down => Rule::ReplicaDown,
            _ => Rule::HardStaleness,
        }
    }

    /// Sort key for "least bad": healthy < too stale (by lag) < unknown < down.
    fn badness(&self) -> (u8, f64) {
        match *self {
            ReplicaHealth::Healthy { lag_s } => (0, lag_s),
            ReplicaHealth::TooStale { lag_s } => (1, lag_s),
            ReplicaHealth::LagUnknown => (2, 0.0),
            ReplicaHealth::Down => (3, 0.0),
        }
    }
}

/// The shield's judgement of one observation against the current weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Observation time.
    pub at_s: f64,
    /// No signal fresher than `stale_after_s`.
    pub stale: bool,
    /// Age of the freshest signal.
    pub freshest_age_s: Option<f64>,
    /// Per replica.
    pub health: Vec<ReplicaHealth>,
    /// Names, for messages.
    pub names: Vec<String>,
    /// Largest primary weight allowed by CPU headroom.
    pub primary_cap: u32,
    /// How the cap was derived.
    pub cap_basis: CapBasis,
    /// The current weights already break a hard rule, so the step limit is lifted.
    pub emergency: bool,
    /// The replica that takes reads when no healthy one exists: up, lowest lag.
    pub least_bad: Option<usize>,
    /// The observation's replicas did not match the weights' (so it was treated as stale).
    pub replica_mismatch: bool,
    /// The primary reserve (points) when it applies now (see [`ReserveState`]).
    pub reserve: Option<u32>,
    /// The reserve's state after this observation (committed by `Shield::apply`).
    pub reserve_state: ReserveState,
    /// Each replica's share in the baseline weights (equal when none is configured): what
    /// the primary's excess over its reserve refills.
    pub baseline_replicas: Vec<u32>,
}

impl Assessment {
    pub(crate) fn new(
        obs: &Observation,
        current: &Weights,
        cfg: &ShieldConfig,
        slo: &Slo,
        reserve: Option<u32>,
        capacity: &CapacityEstimate,
        reserve_state: ReserveState,
    ) -> Self {
        let max_age = cfg.stale_after_s;
        let freshest_age_s = obs.freshest_age_s();
        // An observation whose replicas do not line up with the weights cannot be acted on:
        // it is treated as stale (hold), and judged per weight slot so nothing panics.
        let mismatched = obs.replicas.len() != current.replicas.len();
        let stale = mismatched || freshest_age_s.is_none_or(|a| a > max_age);
        let health: Vec<ReplicaHealth> = (0..current.replicas.len())
            .map(|i| obs.replicas.get(i).filter(|_| !mismatched))
            .map(|r| {
                let Some(r) = r else {
                    return ReplicaHealth::LagUnknown;
                };
                if r.up == Some(false) {
                    ReplicaHealth::Down
                } else {
                    match r.lag_within(max_age) {
                        None => ReplicaHealth::LagUnknown,
                        Some(lag_s) if lag_s > slo.hard_staleness_s => {
                            ReplicaHealth::TooStale { lag_s }
                        }
                        Some(lag_s) => ReplicaHealth::Healthy { lag_s },
                    }
                }
            })
            .collect();
        let least_bad = if health.iter().any(ReplicaHealth::is_healthy) {
            None
        } else {
            (0..health.len())
                .filter(|&i| health[i] != ReplicaHealth::Down)
                .min_by(|&a, &b| {
                    let (ka, la) = health[a].badness();
                    let (kb, lb) = health[b].badness();
                    ka.cmp(&kb).then(la.total_cmp(&lb)).then(a.cmp(&b))
                })
        };
        let (primary_cap, cap_basis) = primary_cap(obs, current, cfg, slo, capacity);
        // Every replica up, its lag known and within `share` of `max_staleness_s`, its read
        // p99 (when known) within `share` of the SLO.
        let replicas_within = |share: f64| {
            !stale
                && !obs.replicas.is_empty()
                && obs.replicas.iter().zip(&health).all(|(r, h)| {
                    matches!(h, ReplicaHealth::Healthy { lag_s } if *lag_s <= share * slo.max_staleness_s)
                        && r.read_p99_ms
                            .fresh_within(max_age)
                            .is_none_or(|p| p <= share * slo.read_p99_slo_ms)
                })
        };
        let reserve_state = if stale || reserve.is_none() {
            reserve_state
        } else {
            reserve_state.next(replicas_within(0.5), replicas_within(1.0))
        };
        let mut a = Assessment {
            at_s: obs.at_s,
            stale,
            freshest_age_s,
            health,
            names: (0..current.replicas.len())
                .map(|i| {
                    obs.replicas
                        .get(i)
                        .map_or_else(|| format!("replica #{}", i + 1), |r| r.name.clone())
                })
                .collect(),
            primary_cap,
            cap_basis,
            emergency: false,
            least_bad,
            replica_mismatch: mismatched,
            reserve: reserve.filter(|_| !stale && reserve_state.engaged),
            reserve_state,
            baseline_replicas: match &cfg.baseline {
                Some(b) if b.validate(current.replicas.len()).is_ok() => b.replicas.clone(),
                _ => vec![1; current.replicas.len()],
            },
        };
        let mut probe = current.clone();
        let mut why = Notes::count_only();
        a.exclude_unhealthy(&mut probe, &mut why);
        a.cap_primary(&mut probe, &mut why);
        let slo_breach = cfg.lift_step_limit_on_slo_breach
            && obs.replicas.iter().zip(&current.replicas).any(|(r, &w)| {
                w > 0
                    && r.lag_within(max_age)
                        .is_some_and(|lag| lag > slo.max_staleness_s)
            });
        a.emergency = !why.is_empty() || slo_breach;
        a
    }

    fn healthy(&self) -> Vec<usize> {
        (0..self.health.len())
            .filter(|&i| self.health[i].is_healthy())
            .collect()
    }

    fn describe(&self, i: usize) -> String {
        let name = &self.names[i];
        match self.health[i] {
            ReplicaHealth::Healthy { lag_s } => format!("{name} (lag {lag_s:.1}s)"),
            ReplicaHealth::TooStale { lag_s } => {
                format!("{name} lag {lag_s:.1}s over the hard limit")
            }
            ReplicaHealth::LagUnknown => format!("{name} lag unknown"),
            ReplicaHealth::Down => format!("{name} down"),
        }
    }

    /// Rule 4: moves reads off unhealthy replicas, to healthy replicas if any, else to the
    /// primary up to its cap, else to the least bad replica that is up.
    pub(crate) fn exclude_unhealthy(&self, w: &mut Weights, why: &mut Notes) {
        let healthy = self.healthy();
        let bad: Vec<usize> = (0..w.replicas.len())
            .filter(|&i| {
                !self.health.get(i).is_some_and(ReplicaHealth::is_healthy) && w.replicas[i] > 0
            })
            .collect();
        if bad.is_empty() {
            return;
        }
        let before = w.clone();
        if !healthy.is_empty() {
            let moved: u32 = bad
                .iter()
                .map(|&i| std::mem::take(&mut w.replicas[i]))
                .sum();
            give(w, &healthy, moved);
        } else {
            // No healthy replica: the primary takes what its cap allows, the least bad
            // replica that is up takes the rest.
            let total_bad: u32 = bad.iter().map(|&i| w.replicas[i]).sum();
            let room = self.primary_cap.saturating_sub(w.primary);
            let to_primary = total_bad.min(room);
            let rest = total_bad - to_primary;
            for &i in &bad {
                w.replicas[i] = 0;
            }
            w.primary += to_primary;
            match self.least_bad {
                Some(lb) if rest > 0 => w.replicas[lb] += rest,
                _ => w.primary += rest,
            }
        }
        if *w == before {
            return;
        }
        for &i in &bad {
            if w.replicas[i] < before.replicas[i] {
                why.push(self.health[i].rule(), || {
                    format!(
                        "{}: weight {} → {} ({} → {})",
                        self.describe(i),
                        before.replicas[i],
                        w.replicas[i],
                        before,
                        w
                    )
                });
            }
        }
        if healthy.is_empty() {
            why.push(Rule::NoHealthyDestination, || {
                format!(
                    "no healthy replica: primary up to its cap {}, rest on {}",
                    self.primary_cap,
                    self.least_bad
                        .map_or("the primary (nothing is up)".to_string(), |i| self
                            .describe(i))
                )
            });
        }
    }

    /// Rule 5: moves reads above the primary's cap to healthy replicas (or the least bad one).
    pub(crate) fn cap_primary(&self, w: &mut Weights, why: &mut Notes) {
        if w.primary <= self.primary_cap {
            return;
        }
        let healthy = self.healthy();
        let excess = w.primary - self.primary_cap;
        let before = w.clone();
        if !healthy.is_empty() {
            w.primary -= excess;
            give(w, &healthy, excess);
        } else if let Some(lb) = self.least_bad {
            w.primary -= excess;
            w.replicas[lb] += excess;
        } else {
            return; // nothing is up: the primary is the only destination left
        }
        why.push(Rule::PrimaryCpuCap, || {
            format!(
                "primary share {} over its cap {} ({}): {} → {}",
                before.primary, self.primary_cap, self.cap_basis, before, w
            )
        });
        if healthy.is_empty() {
            why.push(Rule::NoHealthyDestination, || {
                format!(
                    "no healthy replica: excess over the primary cap on {}",
                    self.least_bad.map_or(String::new(), |i| self.describe(i))
                )
            });
        }
    }

    /// Rule 6: while the replicas can serve, the primary keeps at most the reserve; the rest
    /// goes to the replicas, first to those furthest below their baseline share (a replica
    /// just back from a stall before the one that carried its reads).
    pub(crate) fn keep_reserve(&self, w: &mut Weights, why: &mut Notes) {
        let Some(reserve) = self.reserve else {
            return;
        };
        if w.primary <= reserve {
            return;
        }
        let healthy = self.healthy();
        if healthy.is_empty() {
            return;
        }
        let before = w.clone();
        let excess = w.primary - reserve;
        w.primary = reserve;
        level(w, &healthy, excess, &self.baseline_replicas);
        why.push(Rule::PrimaryReserve, || {
            format!(
                "every replica is fresh and fast: the primary keeps its reserve of {reserve} points, {before} → {w}"
            )
        });
    }

    /// Post-check of rules 4 and 5, written independently of the repair above.
    pub fn hard_limits_hold(&self, w: &Weights) -> bool {
        if w.validate(self.health.len()).is_err() {
            return false;
        }
        let any_healthy = self.health.iter().any(ReplicaHealth::is_healthy);
        let any_up = self.health.iter().any(|h| *h != ReplicaHealth::Down);
        for (i, &wi) in w.replicas.iter().enumerate() {
            if wi == 0 || self.health[i].is_healthy() {
                continue;
            }
            let tolerated =
                !any_healthy && self.least_bad == Some(i) && w.primary >= self.primary_cap;
            if !tolerated {
                return false;
            }
        }
        w.primary <= self.primary_cap || (!any_healthy && !any_up)
    }
}

/// Adds `amount` points to replicas `to`, in proportion to their weights (evenly if all zero),
/// largest remainder first, ties to the lower index.
/// Gives `amount` points to the replicas in `to` one at a time, each to the one with the
/// least weight for its baseline share `base[i]` (the lowest index on a tie; equal shares when
/// `base` gives none of them any): the result is as close to the baseline's proportions as
/// the points allow, never taking from anyone.
fn level(w: &mut Weights, to: &[usize], amount: u32, base: &[u32]) {
    let any = to.iter().any(|&i| base.get(i).copied().unwrap_or(0) > 0);
    let share = |i: usize| -> u64 {
        if any {
            u64::from(base.get(i).copied().unwrap_or(0))
        } else {
            1
        }
    };
    for _ in 0..amount {
        // a is below b when w_a / s_a < w_b / s_b; a replica with no share comes last.
        let pick = to
            .iter()
            .copied()
            .filter(|&i| share(i) > 0)
            .min_by(|&a, &b| {
                (u64::from(w.replicas[a]) * share(b))
                    .cmp(&(u64::from(w.replicas[b]) * share(a)))
                    .then(a.cmp(&b))
            });
        match pick {
            Some(i) => w.replicas[i] += 1,
            None => return,
        }
    }
}

fn give(w: &mut Weights, to: &[usize], amount: u32) {
    if amount == 0 || to.is_empty() {
        return;
    }
    let base: u32 = to.iter().map(|&i| w.replicas[i]).sum();
    let share = |i: usize| -> f64 {
        if base == 0 {
            amount as f64 / to.len() as f64
        } else {
            amount as f64 * w.replicas[i] as f64 / base as f64
        }
    };
    let exact: Vec<f64> = to.iter().map(|&i| share(i)).collect();
    let mut add: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
    let mut rest = amount - add.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..to.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for &k in order.iter().cycle() {
        if rest == 0 {
            break;
        }
        add[k] += 1;
        rest -= 1;
    }
    for (k, &i) in to.iter().enumerate() {
        w.replicas[i] += add[k];
    }
}

/// How the primary cap was derived (formatted only when a message needs it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CapBasis {
    /// From the configured capacity and the observed CPU and reads.
    Capacity {
        /// Observed primary CPU.
        cpu: f64,
        /// The cap.
        cpu_max: f64,
        /// Reads/s the primary serves.
        primary_reads: f64,
        /// Reads/s of the whole cluster.
        all_reads: f64,
        /// Capacity planned with (the configured one, or lower as measured).
        capacity: f64,
        /// Configured capacity.
        #[serde(default)]
        configured: f64,
    },
    /// Capacity unknown: the primary share moves by `max_step` with CPU under/over the cap.
    Stepwise {
        /// Observed primary CPU.
        cpu: f64,
        /// The cap.
        cpu_max: f64,
    },
    /// CPU unknown: no increase.
    CpuUnknown,
}

impl std::fmt::Display for CapBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CapBasis::Capacity {
                cpu,
                cpu_max,
                primary_reads,
                all_reads,
                capacity,
                configured,
            } => {
                write!(
                    f,
                    "cpu {:.0}% of max {:.0}%, {primary_reads:.0} of {all_reads:.0} reads/s on the primary, capacity {capacity:.0}/s",
                    cpu * 100.0,
                    cpu_max * 100.0
                )?;
                if capacity < configured {
                    write!(f, " as measured (configured {configured:.0}/s)")?;
                }
                Ok(())
            }
            CapBasis::Stepwise { cpu, cpu_max } => write!(
                f,
                "cpu {:.0}% vs max {:.0}%, capacity unknown: stepwise",
                cpu * 100.0,
                cpu_max * 100.0
            ),
            CapBasis::CpuUnknown => f.write_str("primary cpu unknown: no increase"),
        }
    }
}

/// The primary reserve between decisions. It engages once every replica is up, fresh (lag
/// within half of `max_staleness_s`) and fast (p99 within half of the SLO) for `wait`
/// decisions in a row, and holds while they stay within the whole SLO: a hysteresis band, so
/// replicas that slow down a little under the reads the reserve sends them do not release it.
/// Each release doubles `wait` (up to [`ReserveState::MAX_WAIT`]) and `2 × wait` decisions
/// engaged halve it again: replicas that cannot carry the reads without the primary release
/// and re-engage the reserve less and less often (as routers damp a flapping route) instead of
/// every other interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReserveState {
    /// Whether the reserve is in force.
    pub engaged: bool,
    /// Decisions in a row with fresh, fast replicas while it is not.
    pub streak: u32,
    /// Decisions in a row it waits for before it engages.
    pub wait: u32,
    /// Decisions engaged since `wait` last changed.
    pub engaged_for: u32,
}

impl Default for ReserveState {
    fn default() -> Self {
        ReserveState {
            engaged: false,
            streak: 0,
            wait: 1,
            engaged_for: 0,
        }
    }
}

impl ReserveState {
    /// The longest wait, in decisions.
    pub const MAX_WAIT: u32 = 64;

    /// The state after a fresh observation: `fresh_fast` is the engage condition, `can_serve`
    /// the (wider) hold condition.
    pub fn next(self, fresh_fast: bool, can_serve: bool) -> Self {
        let mut s = self;
        if s.engaged {
            if can_serve {
                s.engaged_for += 1;
                if s.wait > 1 && s.engaged_for >= 2 * s.wait {
                    s.wait /= 2;
                    s.engaged_for = 0;
                }
            } else {
                s.engaged = false;
                s.streak = 0;
                s.engaged_for = 0;
                s.wait = (s.wait.max(1) * 2).min(Self::MAX_WAIT);
            }
        } else {
            s.streak = if fresh_fast { s.streak + 1 } else { 0 };
            if s.streak >= s.wait.max(1) {
                s.engaged = true;
                s.streak = 0;
                s.engaged_for = 0;
            }
        }
        s
    }
}

/// The primary's read capacity as its measured CPU shows it: between two fresh observations
/// in which the primary's read rate moved by at least [`CapacityEstimate::MIN_MOVE`] of all
/// reads, the capacity is the change in reads over the change in CPU, smoothed
/// geometrically. The cap uses the smaller of this and the configured capacity (never less
/// than a quarter of it), so a configured capacity that overstates a degraded or busier
/// primary stops overshooting `primary_cpu_max` once the primary's load has moved.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CapacityEstimate {
    /// Read-equivalent queries/s at 100% CPU, as measured.
    pub qps: Option<f64>,
    /// Measurements folded in.
    pub samples: u64,
    /// The primary's (reads/s, CPU) at the previous fresh observation.
    last: Option<(f64, f64)>,
}

impl CapacityEstimate {
    /// Smallest move of the primary's read rate, as a share of all reads, that is measured.
    pub const MIN_MOVE: f64 = 0.05;

    /// Folds in a fresh observation.
    pub(crate) fn observe(&mut self, obs: &Observation, max_age: f64, cfg: &ShieldConfig) {
        let (Some(pr), Some(cpu)) = (
            obs.primary.read_qps.fresh_within(max_age),
            obs.primary.cpu.fresh_within(max_age),
        ) else {
            return;
        };
        let all: f64 = pr
            + obs
                .replicas
                .iter()
                .filter_map(|r| r.read_qps.fresh_within(max_age))
                .sum::<f64>();
        if let Some((pr0, cpu0)) = self.last {
            let (dr, dc) = (pr - pr0, cpu - cpu0);
            // Only a clear move, on an unsaturated primary, in the direction load implies.
            if dr.abs() >= Self::MIN_MOVE * all.max(1.0) && dr * dc > 0.0 && cpu < 0.99 {
                let est = dr / dc;
                let cap = cfg.primary_read_capacity_qps.unwrap_or(f64::INFINITY);
                let est = est.min(4.0 * cap);
                self.qps = Some(match self.qps {
                    Some(old) => (0.5 * old.ln() + 0.5 * est.ln()).exp(),
                    None => est,
                });
                self.samples += 1;
            }
        }
        self.last = Some((pr, cpu));
    }

    /// The capacity to plan with: the configured one, lowered to the measured one (at most
    /// to a quarter of the configured).
    pub fn effective(&self, configured: f64) -> f64 {
        match self.qps {
            Some(m) if m.is_finite() && m > 0.0 => configured.min(m.max(0.25 * configured)),
            _ => configured,
        }
    }
}

fn primary_cap(
    obs: &Observation,
    current: &Weights,
    cfg: &ShieldConfig,
    slo: &Slo,
    estimate: &CapacityEstimate,
) -> (u32, CapBasis) {
    let max_age = cfg.stale_after_s;
    let total = Weights::TOTAL;
    let cpu = obs.primary.cpu.fresh_within(max_age);
    let primary_reads = obs.primary.read_qps.fresh_within(max_age);
    let mut all_reads = primary_reads;
    for r in &obs.replicas {
        if r.up == Some(false) {
            continue;
        }
        all_reads = match (all_reads, r.read_qps.fresh_within(max_age)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    match (cfg.primary_read_capacity_qps, cpu, primary_reads, all_reads) {
        (Some(configured), Some(cpu), Some(pr), Some(all)) if all > 0.0 => {
            let capacity = estimate.effective(configured);
            // Headroom is spent only partly per interval: the configured capacity may overstate
            // a degraded primary, and the observation is a scrape old. Shedding is in full.
            let headroom = slo.primary_cpu_max - cpu;
            let factor = if headroom > 0.0 {
                cfg.headroom_use
            } else {
                1.0
            };
            let allowed = pr + headroom * capacity * factor;
            let cap = ((allowed / all) * total as f64)
                .floor()
                .clamp(0.0, total as f64) as u32;
            (
                cap,
                CapBasis::Capacity {
                    cpu,
                    cpu_max: slo.primary_cpu_max,
                    primary_reads: pr,
                    all_reads: all,
                    capacity,
                    configured,
                },
            )
        }
        (_, Some(cpu), ..) => {
            let step = cfg.max_step;
            let cap = if cpu < slo.primary_cpu_max {
                (current.primary + step).min(total)
            } else if cpu > slo.primary_cpu_max {
                current.primary.saturating_sub(step)
            } else {
                current.primary
            };
            (
                cap,
                CapBasis::Stepwise {
                    cpu,
                    cpu_max: slo.primary_cpu_max,
                },
            )
        }
        (_, None, ..) => (current.primary, CapBasis::CpuUnknown),
    }
}
