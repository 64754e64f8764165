//! What the gate exports through prometheus-client: limit, in-flight, admitted and rejected by
//! class and reason, partitions, and the latency of admitted requests.
//!
//! The gate counts in plain atomics on the request path; [`GateMetrics`] is a
//! prometheus-client [`Collector`] that reads them at scrape time, so the request path never
//! takes a metric's lock or hashes a label set. [`LatencyHistogram`] is hand-written for the
//! same reason (prometheus-client's `Histogram` takes a lock per observation).
//!
//! **Never:** create a label value from request data (classes, reasons, outcomes and
//! partition names are all fixed by the configuration), so cardinality is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::class::Class;
use crate::layer::{Gate, Reason};

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A lock-free histogram of latencies: one atomic add per bucket hit, one for the sum.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (non-cumulative), the last one being +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&self, latency: Duration) {
        let s = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds, +Inf last).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let counts: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = counts.iter().map(|(_, c)| c).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, counts)
    }
}

/// The gate's metrics, for a prometheus-client [`Registry`].
#[derive(Debug, Clone)]
pub struct GateMetrics(pub Arc<Gate>);

impl GateMetrics {
    /// Registers the gate's metrics in `registry` (names start with `weir_admit_`).
    pub fn register(gate: Arc<Gate>, registry: &mut Registry) {
        registry.register_collector(Box::new(GateMetrics(gate)));
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(&[(&str, &str)], i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for GateMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = &self.0;
        let name = g.controller.name();
        let limit = i64::from(g.controller.limit());
        gauge(
            &mut encoder,
            "weir_admit_limit",
            "The concurrency limit the controller answers now.",
            &[(&[("controller", name)], limit)],
        )?;
        ConstGauge::new(i64::from(g.in_flight())).encode(encoder.encode_descriptor(
            "weir_admit_in_flight",
            "Admitted requests in flight.",
            None,
            MetricType::Gauge,
        )?)?;
        let admitted: Vec<_> = Class::ALL
            .iter()
            .map(|c| {
                (
                    vec![("class", c.as_str())],
                    g.admitted[*c as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        counter(
            &mut encoder,
            "weir_admit_admitted",
            "Requests admitted, by class.",
            &admitted,
        )?;
        let mut rejected = Vec::new();
        for c in Class::ALL {
            for r in [Reason::OverLimit, Reason::ClassShare, Reason::Reserved] {
                rejected.push((
                    vec![("class", c.as_str()), ("reason", r.as_str())],
                    g.rejected[c as usize][r as usize].load(Ordering::Relaxed),
                ));
            }
        }
        counter(
            &mut encoder,
            "weir_admit_rejected",
            "Requests rejected at once, by class and reason.",
            &rejected,
        )?;
        let reserved = g.reserved();
        gauge(
            &mut encoder,
            "weir_admit_reserved_slots",
            "Slots a refused class holds back from the classes below it.",
            &[
                (
                    &[("class", Class::Critical.as_str())],
                    i64::from(reserved[0]),
                ),
                (
                    &[("class", Class::Default.as_str())],
                    i64::from(reserved[1]),
                ),
            ],
        )?;
        ConstCounter::new(g.exempt.load(Ordering::Relaxed)).encode(encoder.encode_descriptor(
            "weir_admit_exempt",
            "Requests on exempt paths (health checks), never limited.",
            None,
            MetricType::Counter,
        )?)?;
        if !g.partitions.is_empty() {
            let in_flight: Vec<_> = g
                .partitions
                .iter()
                .map(|p| {
                    (
                        [("partition", p.name.as_str())],
                        i64::from(p.in_flight.load(Ordering::Relaxed)),
                    )
                })
                .collect();
            let rows: Vec<(&[(&str, &str)], i64)> =
                in_flight.iter().map(|(l, v)| (&l[..], *v)).collect();
            gauge(
                &mut encoder,
                "weir_admit_partition_in_flight",
                "Admitted requests in flight, by partition.",
                &rows,
            )?;
            let mut counts = Vec::new();
            for (p, c) in g.partitions.iter().zip(&g.partition_counts) {
                for (result, i) in [("admitted", 0), ("rejected", 1)] {
                    counts.push((
                        vec![("partition", p.name.as_str()), ("result", result)],
                        c[i].load(Ordering::Relaxed),
                    ));
                }
            }
            counter(
                &mut encoder,
                "weir_admit_partition_requests",
                "Requests by partition and result.",
                &counts,
            )?;
        }
        let mut m = encoder.encode_descriptor(
            "weir_admit_latency_seconds",
            "Latency of admitted requests that were answered, by class and outcome.",
            None,
            MetricType::Histogram,
        )?;
        for c in Class::ALL {
            for (o, outcome) in ["success", "error"].iter().enumerate() {
                let (sum, count, buckets) = g.latency[c as usize][o].snapshot();
                let labels = [("class", c.as_str()), ("outcome", *outcome)];
                m.encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        sum, count, &buckets, None,
                    )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_and_the_sum() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(900));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 20.0309).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[6], (0.05, 1));
        assert_eq!(buckets.last().map(|b| b.1), Some(1), "+Inf");
    }
}
