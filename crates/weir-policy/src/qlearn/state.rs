//! The discretised state the Q-table is indexed by.
//!
//! It is independent of the number of replicas: the table sees the *worst* replica in
//! detail (lag band relative to the SLO, trend, how far it is already demoted), the second
//! worst coarsely, the primary's CPU band, whether read p99 is over its SLO, and the current
//! primary share level. The same table therefore serves clusters of 1, 2 or 5 replicas.

use weir_core::{DecisionContext, Observation, Slo, Weights};

/// Number of lag bands (see [`lag_band`]).
pub const LAG_BANDS: usize = 7;
/// Number of trend values.
pub const TRENDS: usize = 3;
/// Number of coarse bands for the second-worst replica.
pub const SECOND_BANDS: usize = 3;
/// Number of primary CPU bands.
pub const CPU_BANDS: usize = 4;
/// Number of latency bands.
pub const LATENCY_BANDS: usize = 3;

/// The features of one decision, before flattening to an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Lag band of the worst replica.
    pub worst_band: usize,
    /// Trend of the worst replica's lag: 0 falling, 1 flat, 2 rising.
    pub worst_trend: usize,
    /// Coarse band of the second-worst replica.
    pub second_band: usize,
    /// Primary CPU band.
    pub cpu_band: usize,
    /// 1 when the read p99 of a destination with weight is over its SLO.
    pub latency_band: usize,
    /// Index of the primary level nearest the current primary weight.
    pub level: usize,
    /// Index of the demotion factor nearest the worst replica's current weight.
    pub demotion: usize,
    /// Which replica is the worst (not part of the index: the action applies to it).
    pub worst: Option<usize>,
}

/// Lag band: 0: < 0.3×SLO, 1: < 0.6×, 2: ≤ 1×, 3: ≤ 2×, 4: ≤ 4×, 5: above, 6: unknown or down.
pub fn lag_band(obs: &Observation, i: usize, slo: &Slo) -> usize {
    let r = &obs.replicas[i];
    if r.up == Some(false) {
        return 6;
    }
    match r.lag_s.value {
        None => 6,
        Some(l) => {
            let x = l / slo.max_staleness_s;
            if x < 0.3 {
                0
            } else if x < 0.6 {
                1
            } else if x <= 1.0 {
                2
            } else if x <= 2.0 {
                3
            } else if x <= 4.0 {
                4
            } else {
                5
            }
        }
    }
}

fn nearest(levels: &[f64], x: f64) -> usize {
    let mut best = 0;
    for (i, l) in levels.iter().enumerate() {
        if (l - x).abs() < (levels[best] - x).abs() {
            best = i;
        }
    }
    best
}

/// The demotion of replica `i` under weights `w`: its weight relative to the mean of the
/// other replicas (1 = not demoted, 0 = excluded).
pub fn demotion_ratio(w: &Weights, i: usize) -> f64 {
    let n = w.replicas.len();
    if n <= 1 {
        return if w.replicas.first().copied().unwrap_or(0) > 0 {
            1.0
        } else {
            0.0
        };
    }
    let others: u32 = w
        .replicas
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, &x)| x)
        .sum();
    let mean = others as f64 / (n - 1) as f64;
    if mean <= 0.0 {
        return if w.replicas[i] > 0 { 1.0 } else { 0.0 };
    }
    (w.replicas[i] as f64 / mean).min(1.0)
}

/// Computes the features of a decision context.
pub fn features(ctx: &DecisionContext<'_>, levels: &[u32], factors: &[f64]) -> Features {
    let obs = ctx.obs;
    let slo = ctx.slo;
    let n = obs.replicas.len();
    let prev = ctx.history.last().map(|r| &r.observation);
    let bands: Vec<usize> = (0..n).map(|i| lag_band(obs, i, slo)).collect();
    // Worst: highest band, then the one already most demoted (sticky), then highest lag.
    let worst = (0..n).max_by(|&a, &b| {
        bands[a]
            .cmp(&bands[b])
            .then(demotion_ratio(ctx.current, b).total_cmp(&demotion_ratio(ctx.current, a)))
            .then(
                obs.replicas[a]
                    .lag_s
                    .value
                    .unwrap_or(f64::MAX)
                    .total_cmp(&obs.replicas[b].lag_s.value.unwrap_or(f64::MAX)),
            )
            .then(b.cmp(&a))
    });
    let second_band = match worst {
        Some(w) => (0..n)
            .filter(|&i| i != w)
            .map(|i| match bands[i] {
                0 | 1 => 0,
                2 => 1,
                _ => 2,
            })
            .max()
            .unwrap_or(0),
        None => 0,
    };
    let worst_trend = match worst {
        Some(w) => {
            let now = obs.replicas[w].lag_s.value;
            let before = prev
                .and_then(|p| p.replicas.get(w))
                .and_then(|r| r.lag_s.value);
            match (now, before) {
                (Some(a), Some(b)) if a - b > 0.2 * slo.max_staleness_s => 2,
                (Some(a), Some(b)) if b - a > 0.2 * slo.max_staleness_s => 0,
                _ => 1,
            }
        }
        None => 1,
    };
    let cpu_band = match obs.primary.cpu.value {
        None => 3,
        Some(c) if c < 0.75 * slo.primary_cpu_target => 0,
        Some(c) if c < slo.primary_cpu_target => 1,
        Some(c) if c < slo.primary_cpu_max => 2,
        Some(_) => 3,
    };
    let p99 = served_p99_ms(obs, ctx.current);
    let latency_band = if p99 > slo.read_p99_slo_ms {
        2
    } else if p99 > 0.5 * slo.read_p99_slo_ms {
        1
    } else {
        0
    };
    let _ = levels;
    let level = LEVEL_BUCKETS
        .iter()
        .position(|&b| ctx.current.primary <= b)
        .unwrap_or(LEVEL_BUCKETS.len());
    let demotion = match worst {
        Some(w) => nearest(factors, demotion_ratio(ctx.current, w)),
        None => 0,
    };
    Features {
        worst_band: worst.map_or(0, |w| bands[w]),
        worst_trend,
        second_band,
        cpu_band,
        latency_band,
        level,
        demotion,
        worst,
    }
}

/// Upper bounds of the coarse buckets of the current primary weight (the state only needs
/// to know roughly where the primary share is; fine levels would multiply the table).
pub const LEVEL_BUCKETS: [u32; 2] = [15, 45];

/// The sizes of each dimension of the flattened state index.
pub fn dims(_levels: usize, factors: usize) -> Vec<usize> {
    vec![
        LAG_BANDS,
        TRENDS,
        SECOND_BANDS,
        CPU_BANDS,
        LATENCY_BANDS,
        LEVEL_BUCKETS.len() + 1,
        factors,
    ]
}

impl Features {
    /// Flattens to a state index (mixed radix over [`dims`]).
    pub fn index(&self, levels: usize, factors: usize) -> usize {
        let parts = [
            self.worst_band,
            self.worst_trend,
            self.second_band,
            self.cpu_band,
            self.latency_band,
            self.level,
            self.demotion,
        ];
        let mut idx = 0;
        for (p, d) in parts.iter().zip(dims(levels, factors)) {
            idx = idx * d + p.min(&(d - 1));
        }
        idx
    }

    /// A short description for explanations.
    pub fn describe(&self, obs: &Observation) -> String {
        const BANDS: [&str; LAG_BANDS] = [
            "<0.3slo", "<0.6slo", "<=slo", "<=2slo", "<=4slo", ">4slo", "unknown",
        ];
        const TREND: [&str; TRENDS] = ["falling", "flat", "rising"];
        const CPU: [&str; CPU_BANDS] = ["low", "below-target", "below-max", "at-max"];
        let name = self.worst.map_or("-", |w| obs.replicas[w].name.as_str());
        format!(
            "worst={name} lag {} {}; next {}; cpu {}; p99 {}; level {}; demotion {}",
            BANDS[self.worst_band.min(LAG_BANDS - 1)],
            TREND[self.worst_trend.min(TRENDS - 1)],
            ["ok", "near", "stale"][self.second_band.min(2)],
            CPU[self.cpu_band.min(CPU_BANDS - 1)],
            ["ok", "near", "over"][self.latency_band.min(2)],
            self.level,
            self.demotion
        )
    }
}

/// The worst known read p99 among the destinations that get reads under `current`
/// (0 when none is known).
pub(crate) fn served_p99_ms(obs: &weir_core::Observation, current: &weir_core::Weights) -> f64 {
    let mut p99: f64 = 0.0;
    if current.primary > 0 {
        p99 = p99.max(obs.primary.read_p99_ms.value.unwrap_or(0.0));
    }
    for (i, r) in obs.replicas.iter().enumerate() {
        if current.replicas.get(i).copied().unwrap_or(0) > 0 {
            p99 = p99.max(r.read_p99_ms.value.unwrap_or(0.0));
        }
    }
    p99
}
