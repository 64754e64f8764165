//! The replica-cut fault, judged (pure, tested): from the replica's lag as Prometheus showed
//! it (what Weir reads) and HAProxy's weights as the campaign polled them, when the lag passed
//! the staleness SLO, when Weir took reads off the replica, whether it sent any back while the
//! lag was still past the SLO, and when the lag came back under it.

use serde::Serialize;

use super::audit::Triple;
use crate::faults::LagReading;

/// What one cut showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CutAnalysis {
    /// HAProxy's weights when the cut began.
    pub weights_before: Option<Triple>,
    /// First campaign time (from the cut's start) the lag in Prometheus was past the SLO.
    pub over_at: Option<f64>,
    /// First campaign time (from the cut's start) HAProxy gave the replica no reads, and the
    /// weights then.
    pub off_at: Option<(f64, Triple)>,
    /// Seconds, from `off_at` until the cut ended, that the replica had a weight while its
    /// lag in Prometheus was past the SLO.
    pub on_while_over_s: f64,
    /// First campaign time after the cut ended that the lag in Prometheus was back within
    /// the SLO.
    pub under_at: Option<f64>,
    /// The worst of each reading from the cut's start on.
    pub worst: LagReading,
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// HAProxy's weights in force at campaign time `t` (the newest readable sample not after
/// it).
fn weights_at(samples: &[(f64, Option<Triple>)], t: f64) -> Option<Triple> {
    samples
        .iter()
        .rfind(|(ts, w)| *ts <= t && w.is_some())
        .and_then(|(_, w)| *w)
}

/// Judges a cut of replica `i` (its index in HAProxy's weights) that ran from campaign time
/// `start` to `end`, against the staleness SLO `slo_s`. `lags` and `samples` are in time
/// order.
pub fn analyse(
    i: usize,
    slo_s: f64,
    (start, end): (f64, f64),
    lags: &[(f64, LagReading)],
    samples: &[(f64, Option<Triple>)],
) -> CutAnalysis {
    let mut a = CutAnalysis {
        weights_before: weights_at(samples, start),
        ..CutAnalysis::default()
    };
    let over = |r: &LagReading| r.prometheus_s.is_some_and(|l| l > slo_s);
    a.over_at = lags
        .iter()
        .find(|(t, r)| *t >= start && *t <= end && over(r))
        .map(|(t, _)| *t);
    a.off_at = match a.weights_before {
        Some(w) if w[i] == 0 => Some((start, w)),
        _ => samples
            .iter()
            .filter(|(t, _)| *t >= start && *t <= end)
            .find_map(|(t, w)| w.filter(|w| w[i] == 0).map(|w| (*t, w))),
    };
    if let Some((off, _)) = a.off_at {
        let during: Vec<&(f64, LagReading)> = lags
            .iter()
            .filter(|(t, _)| *t >= off && *t <= end)
            .collect();
        for (k, (t, r)) in during.iter().enumerate() {
            let next = during.get(k + 1).map_or(end, |(n, _)| *n);
            if over(r) && weights_at(samples, *t).is_some_and(|w| w[i] > 0) {
                a.on_while_over_s += next - t;
            }
        }
    }
    a.under_at = lags
        .iter()
        .find(|(t, r)| *t >= end && r.prometheus_s.is_some_and(|l| l <= slo_s))
        .map(|(t, _)| *t);
    for (_, r) in lags.iter().filter(|(t, _)| *t >= start) {
        a.worst.heartbeat_s = max(a.worst.heartbeat_s, r.heartbeat_s);
        a.worst.prometheus_s = max(a.worst.prometheus_s, r.prometheus_s);
        a.worst.seconds_behind_master = max(a.worst.seconds_behind_master, r.seconds_behind_master);
        a.worst.prometheus_sbm = max(a.worst.prometheus_sbm, r.prometheus_sbm);
    }
    a
}

/// The lag in Prometheus, one value per whole second of campaign time from `from` to `to`
/// (the worst reading in each second, `—` when there was none): the evidence in the report.
pub fn per_second(lags: &[(f64, LagReading)], from: f64, to: f64) -> String {
    let secs = (to - from).max(0.0).ceil() as usize;
    (0..secs)
        .map(|s| {
            let (a, b) = (from + s as f64, from + s as f64 + 1.0);
            lags.iter()
                .filter(|(t, _)| *t >= a && *t < b)
                .filter_map(|(_, r)| r.prometheus_s)
                .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))))
                .map_or("—".to_string(), |l| format!("{l:.1}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(prom: f64) -> LagReading {
        LagReading {
            heartbeat_s: Some(prom + 0.1),
            seconds_behind_master: Some(0.0),
            prometheus_s: Some(prom),
            prometheus_sbm: Some(0.0),
        }
    }

    /// Lag readings every second from `t0`, one per value.
    fn lags(t0: f64, values: &[f64]) -> Vec<(f64, LagReading)> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| (t0 + k as f64, lag(*v)))
            .collect()
    }

    #[test]
    fn weir_taking_reads_off_after_the_slo_is_passed_is_timed() {
        // Cut from 10 to 20 s; the lag passes 2 s at 13 s; Weir takes replica-1 out at 14.5 s
        // and gives it reads back at 22 s, after the lag is under the SLO again at 21 s.
        let l = lags(
            9.0,
            &[
                0.2, 0.3, 0.9, 1.8, 2.6, 3.5, 4.4, 5.3, 6.2, 7.1, 8.0, 8.0, 1.0, 0.3,
            ],
        );
        let w = [
            (0.0, Some([0, 50, 50])),
            (14.5, Some([25, 0, 75])),
            (22.0, Some([0, 25, 75])),
        ];
        let a = analyse(1, 2.0, (10.0, 20.0), &l, &w);
        assert_eq!(a.weights_before, Some([0, 50, 50]));
        assert_eq!(a.over_at, Some(13.0));
        assert_eq!(a.off_at, Some((14.5, [25, 0, 75])));
        assert_eq!(a.on_while_over_s, 0.0);
        assert_eq!(a.under_at, Some(21.0));
        assert_eq!(a.worst.prometheus_s, Some(8.0));
        assert_eq!(a.worst.seconds_behind_master, Some(0.0));
        assert!(
            (a.worst.heartbeat_s.expect("read") - 8.1).abs() < 1e-9,
            "{:?}",
            a.worst
        );
    }

    #[test]
    fn reads_sent_back_while_the_replica_still_lags_are_counted() {
        let l = lags(10.0, &[1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let w = [
            (0.0, Some([0, 50, 50])),
            (11.5, Some([25, 0, 75])),
            (13.5, Some([0, 10, 90])),
            (15.5, None),
            (15.6, Some([25, 0, 75])),
        ];
        let a = analyse(1, 2.0, (10.0, 17.0), &l, &w);
        assert_eq!(a.off_at.map(|(t, _)| t), Some(11.5));
        // Readings at 14 and 15 s saw weight 10 with the lag past the SLO.
        assert!((a.on_while_over_s - 2.0).abs() < 1e-9, "{a:?}");
        assert_eq!(a.under_at, None, "never back under the SLO");
    }

    #[test]
    fn a_replica_already_without_reads_and_a_cut_that_never_bit() {
        let l = lags(10.0, &[0.5, 0.8, 1.1]);
        let w = [(0.0, Some([20, 0, 80]))];
        let a = analyse(1, 2.0, (10.0, 12.0), &l, &w);
        assert_eq!(a.off_at, Some((10.0, [20, 0, 80])));
        assert_eq!(a.over_at, None);
        let a = analyse(2, 2.0, (10.0, 12.0), &l, &w);
        assert_eq!(a.off_at, None, "replica-2 kept its reads");
        let none: Vec<(f64, LagReading)> = vec![(10.0, LagReading::default())];
        let a = analyse(1, 2.0, (10.0, 12.0), &none, &w);
        assert_eq!(a.worst, LagReading::default());
        assert_eq!(a.over_at, None, "an unknown lag is not a lag past the SLO");
    }

    #[test]
    fn the_evidence_is_the_worst_lag_of_each_second() {
        let mut l = lags(10.0, &[0.5, 2.5]);
        l.insert(1, (10.5, lag(1.5)));
        l.push((12.2, LagReading::default()));
        assert_eq!(per_second(&l, 10.0, 13.0), "1.5 2.5 —");
        assert_eq!(per_second(&l, 10.0, 10.0), "");
    }
}
