//! What happened during one tick, and the sum of many ticks.

use serde::{Deserialize, Serialize};
use weir_core::Outcome;

/// The true result of one tick. Counts are rate × `dt_s` (fractional reads are fine).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TickStats {
    /// Time at the end of the tick, seconds.
    pub t_s: f64,
    /// Tick length, seconds.
    pub dt_s: f64,
    /// Reads offered by clients.
    pub reads: f64,
    /// Reads served by a replica whose true lag exceeded `slo.max_staleness_s`.
    pub stale_reads: f64,
    /// Σ lag × stale reads (seconds × reads), for the mean staleness of stale reads.
    pub stale_lag_sum: f64,
    /// Reads that failed: overload beyond capacity, or sent to a down replica.
    pub failed_reads: f64,
    /// Primary CPU, 0..1.
    pub primary_cpu: f64,
    /// Approximate p99 read latency of the whole cluster, milliseconds.
    pub read_p99_ms: f64,
    /// Largest true replica lag, seconds.
    pub max_lag_s: f64,
}

/// Sums of [`TickStats`] over an interval (a control interval, an episode).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IntervalStats {
    /// Number of ticks added.
    pub ticks: u64,
    /// Simulated seconds covered.
    pub seconds: f64,
    /// Reads offered.
    pub reads: f64,
    /// Stale reads.
    pub stale_reads: f64,
    /// Σ lag × stale reads.
    pub stale_lag_sum: f64,
    /// Failed reads.
    pub failed_reads: f64,
    /// Σ primary CPU over ticks.
    pub primary_cpu_sum: f64,
    /// Highest primary CPU of any tick.
    pub primary_cpu_max: f64,
    /// Σ cluster read p99 over ticks.
    pub read_p99_sum: f64,
    /// Highest cluster read p99 of any tick.
    pub read_p99_max: f64,
    /// Largest lag seen.
    pub max_lag_s: f64,
}

impl IntervalStats {
    /// Adds one tick.
    pub fn add(&mut self, t: &TickStats) {
        self.ticks += 1;
        self.seconds += t.dt_s;
        self.reads += t.reads;
        self.stale_reads += t.stale_reads;
        self.stale_lag_sum += t.stale_lag_sum;
        self.failed_reads += t.failed_reads;
        self.primary_cpu_sum += t.primary_cpu;
        self.primary_cpu_max = self.primary_cpu_max.max(t.primary_cpu);
        self.read_p99_sum += t.read_p99_ms;
        self.read_p99_max = self.read_p99_max.max(t.read_p99_ms);
        self.max_lag_s = self.max_lag_s.max(t.max_lag_s);
    }

    /// Adds another interval (for episode totals).
    pub fn merge(&mut self, o: &IntervalStats) {
        self.ticks += o.ticks;
        self.seconds += o.seconds;
        self.reads += o.reads;
        self.stale_reads += o.stale_reads;
        self.stale_lag_sum += o.stale_lag_sum;
        self.failed_reads += o.failed_reads;
        self.primary_cpu_sum += o.primary_cpu_sum;
        self.primary_cpu_max = self.primary_cpu_max.max(o.primary_cpu_max);
        self.read_p99_sum += o.read_p99_sum;
        self.read_p99_max = self.read_p99_max.max(o.read_p99_max);
        self.max_lag_s = self.max_lag_s.max(o.max_lag_s);
    }

    /// Stale reads / reads (0 when there were no reads).
    pub fn stale_fraction(&self) -> f64 {
        ratio(self.stale_reads, self.reads)
    }

    /// Failed reads / reads (0 when there were no reads).
    pub fn failed_fraction(&self) -> f64 {
        ratio(self.failed_reads, self.reads)
    }

    /// Mean lag of the stale reads, seconds (0 when none).
    pub fn mean_staleness_s(&self) -> f64 {
        ratio(self.stale_lag_sum, self.stale_reads)
    }

    /// Mean primary CPU over ticks.
    pub fn mean_primary_cpu(&self) -> f64 {
        ratio(self.primary_cpu_sum, self.ticks as f64)
    }

    /// Mean cluster read p99 over ticks, milliseconds.
    pub fn mean_read_p99_ms(&self) -> f64 {
        ratio(self.read_p99_sum, self.ticks as f64)
    }

    /// The interval as a reward input. `moved_fraction` is the share of traffic the decision
    /// at the start of the interval moved (the simulator does not know it).
    pub fn outcome(&self, moved_fraction: f64) -> Outcome {
        Outcome {
            stale_fraction: self.stale_fraction(),
            stale_lag_s: self.mean_staleness_s(),
            failed_fraction: self.failed_fraction(),
            primary_cpu: self.mean_primary_cpu(),
            read_p99_ms: self.mean_read_p99_ms(),
            max_lag_s: self.max_lag_s,
            moved_fraction,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_ratios_means_and_max() {
        let mut s = IntervalStats::default();
        assert_eq!(s.outcome(0.0), Outcome::default());
        s.add(&TickStats {
            t_s: 1.0,
            dt_s: 1.0,
            reads: 100.0,
            stale_reads: 10.0,
            stale_lag_sum: 100.0,
            failed_reads: 5.0,
            primary_cpu: 0.2,
            read_p99_ms: 10.0,
            max_lag_s: 10.0,
        });
        s.add(&TickStats {
            t_s: 2.0,
            dt_s: 1.0,
            reads: 100.0,
            primary_cpu: 0.4,
            read_p99_ms: 20.0,
            max_lag_s: 3.0,
            ..TickStats::default()
        });
        let o = s.outcome(0.25);
        assert!((o.stale_fraction - 0.05).abs() < 1e-12);
        assert!((o.failed_fraction - 0.025).abs() < 1e-12);
        assert!((o.primary_cpu - 0.3).abs() < 1e-12);
        assert!((o.read_p99_ms - 15.0).abs() < 1e-12);
        assert_eq!(o.max_lag_s, 10.0);
        assert_eq!(o.moved_fraction, 0.25);
        assert!((s.mean_staleness_s() - 10.0).abs() < 1e-12);
    }
}
