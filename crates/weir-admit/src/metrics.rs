//! What the gate exports through prometheus-client: limit, in-flight, admitted and rejected by
//! class and reason, partitions, and the latency of admitted requests.
//!
//! The gate counts in per-thread shards on the request path ([`crate::shard`]); [`GateMetrics`]
//! is a prometheus-client [`Collector`] that adds them up at scrape time, so the request path
//! never takes a metric's lock or hashes a label set. The latency histogram is hand-written for
//! the same reason (prometheus-client's `Histogram` takes a lock per observation).
//!
//! **Never:** create a label value from request data (classes, reasons, outcomes and
//! partition names are all fixed by the configuration), so cardinality is bounded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::class::Class;
use crate::layer::{Gate, Reason};

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
        let t = g.stats.total();
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
            .map(|c| (vec![("class", c.as_str())], t.admitted[*c as usize].get()))
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
                    t.rejected[c as usize][r as usize].get(),
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
        ConstCounter::new(t.exempt.get()).encode(encoder.encode_descriptor(
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
            for (p, c) in g.partitions.iter().zip(&t.partitions) {
                for (result, i) in [("admitted", 0), ("rejected", 1)] {
                    counts.push((
                        vec![("partition", p.name.as_str()), ("result", result)],
                        c[i].get(),
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
                let (sum, count, buckets) = t.latency[c as usize][o].snapshot();
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
