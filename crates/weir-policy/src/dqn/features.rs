//! The DQN's input: a fixed-length `f32` vector that does not depend on the replica count.
//!
//! The network sees the *worst* and the *second-worst* replica in detail (by lag relative to
//! the SLO; unknown or down counts as worst, ties go to the one already most demoted so the
//! choice does not flip on noise) with their read p99, a summary of the rest (fraction
//! healthy, count, and the largest lag, lag slope and read p99 among the others: the actions
//! split the rest evenly whatever their capacity, so the hottest of them matters), the
//! primary (CPU, headroom, read p99) and where the weights stand now. Every value is scaled
//! to roughly `[-1, 3]`. The lag trend is a least-squares slope over the recent observations
//! in [`History`] (like Prometheus' `predict_linear`), and the time to breach
//! `max_staleness_s` at that slope is counted in control intervals.

use weir_core::{DecisionContext, History, Observation, Slo, Weights};

use crate::qlearn::state::{demotion_ratio, lag_band};

/// Observations (history plus the current one) the lag slope is fitted over.
pub const TREND_WINDOW: usize = 5;
/// Time to breach, in control intervals, above which it is reported as this value ("far").
pub const FAR_INTERVALS: f64 = 3.0;
/// Control interval assumed when the history cannot tell (seconds).
pub const DEFAULT_INTERVAL_S: f64 = 15.0;

/// Per-replica feature names (prefixed `worst_` and `second_`).
pub const REPLICA_FEATURES: [&str; 8] = [
    "lag",
    "slope",
    "time_to_breach",
    "down",
    "unknown",
    "share",
    "demotion",
    "p99",
];

/// Global feature names, after the two replicas' features.
const GLOBAL_FEATURES: [&str; 11] = [
    "healthy_fraction",
    "replicas",
    "primary_cpu",
    "cpu_headroom",
    "cpu_unknown",
    "read_p99",
    "primary_share",
    "freshest_age",
    "rest_max_lag",
    "rest_max_slope",
    "rest_max_p99",
];

/// Length of the feature vector.
pub const N_FEATURES: usize = 2 * REPLICA_FEATURES.len() + GLOBAL_FEATURES.len();

/// The names of the features, in vector order (recorded in the model file).
pub fn feature_names() -> Vec<String> {
    let mut out = Vec::with_capacity(N_FEATURES);
    for who in ["worst", "second"] {
        for f in REPLICA_FEATURES {
            out.push(format!("{who}_{f}"));
        }
    }
    out.extend(GLOBAL_FEATURES.iter().map(|s| s.to_string()));
    out
}

/// The features of one decision and which replicas the actions refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// The vector the network reads.
    pub x: [f32; N_FEATURES],
    /// The worst replica (index in the observation), `None` without replicas.
    pub worst: Option<usize>,
    /// The second-worst replica, `None` with fewer than two replicas.
    pub second: Option<usize>,
    /// Whether the observation carries anything to decide on (some signal known).
    pub usable: bool,
}

/// Least-squares slope (seconds of lag per second) of replica `i`'s lag over the last
/// `window` samples: the records of `history` (newest last) and then `obs`. Samples are
/// placed at their sample time (`at_s − age_s`); unknown lags and repeated samples are
/// skipped. `None` with fewer than two distinct samples.
pub fn lag_slope(history: &History, obs: &Observation, i: usize, window: usize) -> Option<f64> {
    let name = &obs.replicas.get(i)?.name;
    let mut pts: Vec<(f64, f64)> = Vec::with_capacity(window);
    let past = history
        .iter()
        .rev()
        .take(window.saturating_sub(1))
        .map(|r| &r.observation)
        .collect::<Vec<_>>();
    for o in past.into_iter().rev().chain(std::iter::once(obs)) {
        let Some(r) = o.replicas.get(i).filter(|r| &r.name == name) else {
            continue;
        };
        if r.up == Some(false) {
            continue;
        }
        if let Some(v) = r.lag_s.value {
            let t = o.at_s - r.lag_s.age_s.unwrap_or(0.0);
            if pts.last().is_some_and(|&(pt, _)| (pt - t).abs() < 1e-9) {
                continue;
            }
            pts.push((t, v));
        }
    }
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let ml = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mt) * (p.0 - mt)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - ml)).sum();
    (sxx > 1e-12).then(|| sxy / sxx)
}

/// Seconds until a lag of `lag_s` growing at `slope` s/s exceeds `limit_s`: 0 if it already
/// does, `None` if it is under and not growing.
pub fn time_to_breach(lag_s: f64, slope: f64, limit_s: f64) -> Option<f64> {
    if lag_s > limit_s {
        Some(0.0)
    } else if slope > 1e-9 {
        Some((limit_s - lag_s) / slope)
    } else {
        None
    }
}

/// The control interval, estimated from the last two observation times.
fn interval_s(ctx: &DecisionContext<'_>) -> f64 {
    ctx.history
        .last()
        .map(|r| ctx.obs.at_s - r.observation.at_s)
        .filter(|d| d.is_finite() && *d > 0.5)
        .unwrap_or(DEFAULT_INTERVAL_S)
}

/// How bad replica `i` is, for ordering (higher is worse).
fn badness(obs: &Observation, i: usize, slo: &Slo) -> (usize, f64) {
    let lag = obs.replicas[i]
        .lag_s
        .value
        .filter(|_| obs.replicas[i].up != Some(false))
        .unwrap_or(f64::MAX);
    (lag_band(obs, i, slo), lag)
}

/// The worst and second-worst replicas: highest lag band (unknown and down are the highest),
/// then the one already most demoted under `current` (sticky), then the highest lag.
pub fn rank(obs: &Observation, current: &Weights, slo: &Slo) -> (Option<usize>, Option<usize>) {
    let n = obs.replicas.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| {
        let (ba, la) = badness(obs, a, slo);
        let (bb, lb) = badness(obs, b, slo);
        bb.cmp(&ba)
            .then(demotion_ratio(current, a).total_cmp(&demotion_ratio(current, b)))
            .then(lb.total_cmp(&la))
            .then(a.cmp(&b))
    });
    (idx.first().copied(), idx.get(1).copied())
}

fn replica_features(ctx: &DecisionContext<'_>, i: Option<usize>, interval: f64, out: &mut [f32]) {
    let slo = ctx.slo;
    let Some(i) = i else {
        // No such replica: a healthy, unused, far-from-breach one.
        out.copy_from_slice(&[0.0, 0.0, FAR_INTERVALS as f32, 0.0, 0.0, 0.0, 0.0, 0.0]);
        return;
    };
    let down = ctx.obs.replicas[i].up == Some(false);
    let (lag, rel, slope) = lag_trend(ctx, i);
    let ttb = match lag {
        Some(l) => time_to_breach(l, slope, slo.max_staleness_s)
            .map_or(FAR_INTERVALS, |s| (s / interval).min(FAR_INTERVALS)),
        None => 0.0,
    };
    out.copy_from_slice(&[
        rel as f32,
        slope.clamp(-1.0, 2.0) as f32,
        ttb as f32,
        f32::from(u8::from(down)),
        f32::from(u8::from(lag.is_none())),
        ctx.current.replica_share(i) as f32,
        demotion_ratio(ctx.current, i) as f32,
        p99_rel(ctx, i) as f32,
    ]);
}

/// Replica `i`'s lag (none when down or unknown), that lag relative to `max_staleness_s`
/// (`[0, 3]`, unknown = 3) and its unclamped slope (0 without a lag or enough history).
fn lag_trend(ctx: &DecisionContext<'_>, i: usize) -> (Option<f64>, f64, f64) {
    let r = &ctx.obs.replicas[i];
    let lag = r.lag_s.value.filter(|_| r.up != Some(false));
    let slope = lag
        .and_then(|_| lag_slope(ctx.history, ctx.obs, i, TREND_WINDOW))
        .unwrap_or(0.0);
    let rel = lag.map_or(3.0, |l| (l / ctx.slo.max_staleness_s).clamp(0.0, 3.0));
    (lag, rel, slope)
}

/// Replica `i`'s read p99 relative to the SLO, `[0, 3]`; 0 when down or unknown. A replica
/// serving past its capacity shows here before its lag grows (reads slow its apply).
fn p99_rel(ctx: &DecisionContext<'_>, i: usize) -> f64 {
    let r = &ctx.obs.replicas[i];
    if r.up == Some(false) || ctx.slo.read_p99_slo_ms <= 0.0 {
        return 0.0;
    }
    r.read_p99_ms
        .value
        .map_or(0.0, |p| (p / ctx.slo.read_p99_slo_ms).clamp(0.0, 3.0))
}

/// The replicas other than the worst and the second-worst that are not down: their largest
/// lag (relative to the SLO, unknown = 3), lag slope and read p99 (relative to the SLO). All
/// 0 when there are none: the actions split the rest evenly, so the hottest one matters.
fn rest(ctx: &DecisionContext<'_>, skip: [Option<usize>; 2]) -> [f64; 3] {
    let mut out = [0.0f64; 3];
    for (i, r) in ctx.obs.replicas.iter().enumerate() {
        if skip.contains(&Some(i)) || r.up == Some(false) {
            continue;
        }
        let (_, rel, slope) = lag_trend(ctx, i);
        out[0] = out[0].max(rel);
        out[1] = out[1].max(slope.clamp(-1.0, 2.0));
        out[2] = out[2].max(p99_rel(ctx, i));
    }
    out
}

/// Computes the features of a decision context.
pub fn features(ctx: &DecisionContext<'_>) -> Features {
    let obs = ctx.obs;
    let slo = ctx.slo;
    let n = obs.replicas.len();
    let (worst, second) = rank(obs, ctx.current, slo);
    let interval = interval_s(ctx);
    let mut x = [0f32; N_FEATURES];
    let k = REPLICA_FEATURES.len();
    replica_features(ctx, worst, interval, &mut x[0..k]);
    replica_features(ctx, second, interval, &mut x[k..2 * k]);
    let healthy = (0..n)
        .filter(|&i| {
            obs.replicas[i].up != Some(false)
                && obs.replicas[i]
                    .lag_s
                    .value
                    .is_some_and(|l| l <= slo.max_staleness_s)
        })
        .count();
    let cpu = obs.primary.cpu.value;
    let p99 = crate::qlearn::state::served_p99_ms(obs, ctx.current);
    let freshest = obs.freshest_age_s();
    let [rest_lag, rest_slope, rest_p99] = rest(ctx, [worst, second]);
    let g = [
        if n > 0 {
            healthy as f64 / n as f64
        } else {
            0.0
        },
        n as f64 / 5.0,
        cpu.unwrap_or(1.0).clamp(0.0, 2.0),
        cpu.map_or(-1.0, |c| (slo.primary_cpu_max - c).clamp(-1.0, 1.0)),
        if cpu.is_none() { 1.0 } else { 0.0 },
        (p99 / slo.read_p99_slo_ms).clamp(0.0, 3.0),
        ctx.current.primary_share(),
        freshest.map_or(3.0, |a| (a / interval).clamp(0.0, 3.0)),
        rest_lag,
        rest_slope,
        rest_p99,
    ];
    for (d, v) in x[2 * k..].iter_mut().zip(g) {
        *d = v as f32;
    }
    Features {
        x,
        worst,
        second,
        usable: freshest.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::policy::AllowAll;
    use weir_core::{Decision, Proposal, Record};
    use weir_test_support::ObsBuilder;

    fn record(obs: Observation) -> Record {
        let w = Weights::even(obs.replicas.len());
        Record {
            decision: Decision {
                at_s: obs.at_s,
                weights: w.clone(),
                proposal: Proposal::new(w, "test"),
                interventions: Vec::new(),
            },
            observation: obs,
            reward: None,
        }
    }

    fn ctx_features(obs: &Observation, h: &History) -> Features {
        let slo = Slo::default();
        let current = Weights::even(obs.replicas.len());
        features(&DecisionContext {
            obs,
            current: &current,
            history: h,
            slo: &slo,
            mask: &AllowAll,
        })
    }

    #[test]
    fn rising_lag_has_its_slope_and_time_to_breach() {
        // replica-1's lag grows 0.2 s per second: 1, 4, 7, then 10 s at 15-s intervals... but
        // start under the limit: 0.5, 1.5, 2.5 at 5-s spacing (0.2 s/s), now 3.5.
        let mut h = History::with_capacity(8);
        for (k, lag) in [0.5, 1.5, 2.5].iter().enumerate() {
            let t = 100.0 + 5.0 * k as f64;
            h.push(record(ObsBuilder::new(2).at(t).lag(0, *lag).build()));
        }
        let now = ObsBuilder::new(2).at(115.0).lag(0, 3.5).build();
        let slope = lag_slope(&h, &now, 0, TREND_WINDOW).unwrap();
        assert!((slope - 0.2).abs() < 1e-9, "{slope}");
        // Flat replica: slope 0.
        assert!(lag_slope(&h, &now, 1, TREND_WINDOW).unwrap().abs() < 1e-12);
        // 1.5 s to go at 0.2 s/s: 7.5 s.
        assert!((time_to_breach(3.5, slope, 5.0).unwrap() - 7.5).abs() < 1e-9);
        assert_eq!(time_to_breach(6.0, 0.0, 5.0), Some(0.0));
        assert_eq!(time_to_breach(3.0, -0.1, 5.0), None);
        let f = ctx_features(&now, &h);
        assert_eq!(f.worst, Some(0));
        assert_eq!(f.second, Some(1));
        // lag 3.5/5, slope 0.2, breach in 7.5 s = 1.5 intervals of 5 s.
        assert!((f.x[0] - 0.7).abs() < 1e-6);
        assert!((f.x[1] - 0.2).abs() < 1e-6);
        assert!((f.x[2] - 1.5).abs() < 1e-5, "{}", f.x[2]);
        assert!(f.usable);
    }

    #[test]
    fn the_hottest_of_the_other_replicas_is_seen() {
        let h = History::with_capacity(4);
        let slo = Slo::default();
        // replica-5 is down (worst) and replica-1 lags most (second); of the rest, replica-2
        // lags the most and replica-3 is slow.
        let now = ObsBuilder::new(5)
            .lag(0, 4.0)
            .lag(1, 2.0)
            .lag(3, 1.5)
            .replica_p99(0, 0.5 * slo.read_p99_slo_ms)
            .replica_p99(2, 2.0 * slo.read_p99_slo_ms)
            .down(4)
            .build();
        let f = ctx_features(&now, &h);
        assert_eq!((f.worst, f.second), (Some(4), Some(0)));
        let names = feature_names();
        let get = |name: &str| f.x[names.iter().position(|n| n == name).unwrap()];
        assert_eq!(get("worst_p99"), 0.0, "down: no p99");
        assert!((get("second_p99") - 0.5).abs() < 1e-6);
        assert!((get("rest_max_p99") - 2.0).abs() < 1e-6);
        assert!((get("rest_max_lag") - (2.0 / slo.max_staleness_s) as f32).abs() < 1e-6);
        // Without other replicas the summary is empty.
        let two = ctx_features(&ObsBuilder::new(2).replica_p99(0, 90.0).build(), &h);
        let names2 = feature_names();
        let at = |n: &str| two.x[names2.iter().position(|x| x == n).unwrap()];
        assert_eq!((at("rest_max_lag"), at("rest_max_p99")), (0.0, 0.0));
    }

    #[test]
    fn missing_history_gives_a_flat_trend() {
        let h = History::with_capacity(4);
        let now = ObsBuilder::new(3).lag(2, 4.0).build();
        assert_eq!(lag_slope(&h, &now, 2, TREND_WINDOW), None);
        let f = ctx_features(&now, &h);
        assert_eq!(f.worst, Some(2));
        assert_eq!(f.x[1], 0.0);
        assert_eq!(f.x[2], FAR_INTERVALS as f32);
        assert_eq!(f.x.len(), feature_names().len());
    }

    #[test]
    fn unknown_and_down_replicas_rank_worst_and_features_stay_in_range() {
        let h = History::with_capacity(4);
        let now = ObsBuilder::new(3)
            .lag(0, 40.0)
            .lag_unknown(1)
            .down(2)
            .build();
        let f = ctx_features(&now, &h);
        // Both unknown (band 6); the down one has the higher "lag" (none): ties by index.
        assert!(matches!(f.worst, Some(1) | Some(2)));
        assert_eq!(f.x[0], 3.0);
        assert_eq!(f.x[4], 1.0);
        for v in f.x {
            assert!((-1.0..=3.0).contains(&v), "{:?}", f.x);
        }
        let blank = ObsBuilder::new(2).blank().build();
        assert!(!ctx_features(&blank, &h).usable);
        // Replica count does not change the length.
        let one = ctx_features(&ObsBuilder::new(1).build(), &h);
        assert_eq!(one.second, None);
        assert_eq!(one.x.len(), N_FEATURES);
    }
}
