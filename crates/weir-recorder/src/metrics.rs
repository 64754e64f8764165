//! Weir's own Prometheus metrics, updated from each [`StepRecord`].
//!
//! Unknown values are never exported as zero or NaN: a replica whose lag is unknown simply
//! has no `weir_replica_lag_seconds` series until it is known again, so an alert on the
//! series' absence and an alert on its value do not contradict each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_core::Rule;
use weir_edge::{ActuatorErrorKind, SourceErrorKind};

use crate::record::{Actuation, Setup, StepRecord};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A label-less float gauge with no sample at all while its value is unknown.
#[derive(Debug, Clone, Default)]
struct OptionalGauge {
    /// `f64` bits; `None` (unknown) is stored as NaN, which is never a valid value here.
    bits: Arc<AtomicU64>,
}

impl OptionalGauge {
    const UNSET: u64 = 0x7ff8_0000_0000_0001;

    fn new() -> Self {
        OptionalGauge {
            bits: Arc::new(AtomicU64::new(Self::UNSET)),
        }
    }

    /// Sets the value; `None` or a non-finite value removes the sample.
    fn set(&self, v: Option<f64>) {
        let bits = v
            .filter(|v| v.is_finite())
            .map_or(Self::UNSET, f64::to_bits);
        self.bits.store(bits, Ordering::Relaxed);
    }

    fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.bits.load(Ordering::Relaxed));
        v.is_finite().then_some(v)
    }
}

impl EncodeMetric for OptionalGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self.get() {
            Some(v) => encoder.encode_gauge(&v),
            None => Ok(()),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        self.get().is_none()
    }
}

/// The metric handles. Registered once in [`Metrics::new`].
pub(crate) struct Metrics {
    registry: Registry,
    decisions: Counter,
    weight: Family<DestinationLabel, Gauge>,
    primary_share: FloatGauge,
    reward: OptionalGauge,
    replica_lag: Family<ReplicaLabel, FloatGauge>,
    primary_cpu: OptionalGauge,
    interventions: Family<RuleLabel, Counter>,
    hard_limit_violations: Counter,
    actuation_errors: Family<KindLabel, Counter>,
    source_errors: Family<KindLabel, Counter>,
    state_save_errors: Counter,
    drift: Counter,
    loop_duration: Histogram,
    paused: Gauge,
    fail_safe: Gauge,
    expected_stale: FloatGauge,
    slo_staleness: OptionalGauge,
    slo_cpu_max: OptionalGauge,
    /// The shield's cumulative violation count at the last record, to turn it into increments.
    last_violations: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Counter::default();
        registry.register(
            "weir_decisions",
            "Decisions made (one per control interval)",
            decisions.clone(),
        );
        let weight = Family::<DestinationLabel, Gauge>::default();
        registry.register(
            "weir_weight",
            "Decided read weight per destination, in points of 100",
            weight.clone(),
        );
        let primary_share = FloatGauge::default();
        registry.register(
            "weir_primary_share",
            "Decided share of reads sent to the primary (0..1)",
            primary_share.clone(),
        );
        let reward = OptionalGauge::new();
        registry.register(
            "weir_reward",
            "Reward of the latest scored interval (0 is perfect, lower is worse)",
            reward.clone(),
        );
        let replica_lag = Family::<ReplicaLabel, FloatGauge>::default();
        registry.register(
            "weir_replica_lag_seconds",
            "Observed replication lag per replica; absent while unknown",
            replica_lag.clone(),
        );
        let primary_cpu = OptionalGauge::new();
        registry.register(
            "weir_primary_cpu_ratio",
            "Observed primary CPU utilisation (0..1); absent while unknown",
            primary_cpu.clone(),
        );
        let interventions = Family::<RuleLabel, Counter>::default();
        registry.register(
            "weir_shield_interventions",
            "Changes the shield made to a proposal, by rule",
            interventions.clone(),
        );
        for rule in Rule::ALL {
            // Pre-create every rule's series at 0, so rates work from the first firing.
            drop(interventions.get_or_create(&RuleLabel {
                rule: rule.as_str().to_string(),
            }));
        }
        let hard_limit_violations = Counter::default();
        registry.register(
            "weir_hard_limit_violations",
            "Policy-driven decisions that broke a hard limit after the shield (must stay 0)",
            hard_limit_violations.clone(),
        );
        let actuation_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "weir_actuation_errors",
            "Failed actuations, by error kind",
            actuation_errors.clone(),
        );
        let source_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "weir_source_errors",
            "Failed observations, by error kind",
            source_errors.clone(),
        );
        // Every kind an edge error can have exists at 0 from the start, so `increase()` sees
        // the first error of a kind and dashboards show 0 rather than no data.
        let actuation_kinds = ActuatorErrorKind::ALL.iter().map(|k| k.as_str());
        let source_kinds = SourceErrorKind::ALL.iter().map(|k| k.as_str());
        for (family, kind) in actuation_kinds
            .map(|k| (&actuation_errors, k))
            .chain(source_kinds.map(|k| (&source_errors, k)))
        {
            drop(family.get_or_create(&KindLabel {
                kind: kind.to_string(),
            }));
        }
        let state_save_errors = Counter::default();
        registry.register(
            "weir_state_save_errors",
            "Failed saves of the learned policy's state (the previous state stays on disk)",
            state_save_errors.clone(),
        );
        let drift = Counter::default();
        registry.register(
            "weir_weights_drift",
            "Times the weights at the target were not the ones Weir last applied (a reload, a restart, a hand edit); Weir re-applies its own",
            drift.clone(),
        );
        let loop_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "weir_loop_duration_seconds",
            "Processing time of one control interval (observe, decide, actuate)",
            loop_duration.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "weir_paused",
            "1 while an operator has paused the controller",
            paused.clone(),
        );
        let fail_safe = Gauge::default();
        registry.register(
            "weir_fail_safe_engaged",
            "1 while the fail-safe weights are in force because observations are stale",
            fail_safe.clone(),
        );
        let expected_stale = FloatGauge::default();
        registry.register(
            "weir_expected_stale_fraction",
            "Share of reads the latest decision sends to replicas over the staleness SLO or of unknown lag (0..1)",
            expected_stale.clone(),
        );
        let slo_staleness = OptionalGauge::new();
        registry.register(
            "weir_slo_max_staleness_seconds",
            "Configured staleness SLO: a read from a replica lagging more than this is stale",
            slo_staleness.clone(),
        );
        let slo_cpu_max = OptionalGauge::new();
        registry.register(
            "weir_slo_primary_cpu_max_ratio",
            "Configured primary CPU cap (0..1) the shield never plans to exceed",
            slo_cpu_max.clone(),
        );
        Metrics {
            registry,
            decisions,
            weight,
            primary_share,
            reward,
            replica_lag,
            primary_cpu,
            interventions,
            hard_limit_violations,
            actuation_errors,
            source_errors,
            state_save_errors,
            drift,
            loop_duration,
            paused,
            fail_safe,
            expected_stale,
            slo_staleness,
            slo_cpu_max,
            last_violations: AtomicU64::new(0),
        }
    }

    /// Counts a failed state save.
    pub(crate) fn state_save_failed(&self) {
        self.state_save_errors.inc();
    }

    /// Updates every metric from one record.
    pub(crate) fn observe(&self, rec: &StepRecord) {
        self.decisions.inc();
        let weights = &rec.decision.weights;
        for (name, w) in rec.destinations().into_iter().zip(weights.iter()) {
            self.weight
                .get_or_create(&DestinationLabel { destination: name })
                .set(i64::from(w));
        }
        self.primary_share.set(weights.primary_share());
        // The reward is kept while a step has none (the first one): it is the last known.
        if rec.reward.is_some_and(f64::is_finite) {
            self.reward.set(rec.reward);
        }
        for r in &rec.observation.replicas {
            let label = ReplicaLabel {
                replica: r.name.clone(),
            };
            match r.lag_s.value.filter(|v| v.is_finite()) {
                Some(lag) => {
                    self.replica_lag.get_or_create(&label).set(lag);
                }
                None => {
                    self.replica_lag.remove(&label);
                }
            }
        }
        self.primary_cpu.set(rec.observation.primary.cpu.value);
        for i in &rec.decision.interventions {
            self.interventions
                .get_or_create(&RuleLabel {
                    rule: i.rule.as_str().to_string(),
                })
                .inc();
        }
        // The shield's count is cumulative; a restarted controller starts again from 0.
        let total = rec.shield.hard_limit_violations;
        let before = self.last_violations.swap(total, Ordering::Relaxed);
        if total > before {
            self.hard_limit_violations.inc_by(total - before);
        }
        if let Actuation::Failed { error } = &rec.actuation {
            self.actuation_errors
                .get_or_create(&KindLabel {
                    kind: error.kind.clone(),
                })
                .inc();
        }
        if let Some(error) = &rec.source_error {
            self.source_errors
                .get_or_create(&KindLabel {
                    kind: error.kind.clone(),
                })
                .inc();
        }
        if rec.drift.is_some() {
            self.drift.inc();
        }
        if rec.loop_duration_s.is_finite() && rec.loop_duration_s >= 0.0 {
            self.loop_duration.observe(rec.loop_duration_s);
        }
        self.paused.set(i64::from(rec.shield.paused));
        self.fail_safe.set(i64::from(rec.shield.fail_safe_engaged));
        self.expected_stale.set(rec.expected.stale_fraction);
    }

    /// Exports the run's objectives.
    pub(crate) fn describe(&self, setup: &Setup) {
        self.slo_staleness.set(Some(setup.slo.max_staleness_s));
        self.slo_cpu_max.set(Some(setup.slo.primary_cpu_max));
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial page,
        // which is still better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use weir_edge::{ActuatorErrorKind, SourceErrorKind};

    use crate::Recorder;

    #[test]
    fn every_edge_error_kind_has_a_series_at_zero_from_the_start() {
        let text = Recorder::default().encode_metrics();
        for kind in ActuatorErrorKind::ALL {
            let series = format!("weir_actuation_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        for kind in SourceErrorKind::ALL {
            let series = format!("weir_source_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }

    #[test]
    fn a_failed_state_save_is_counted_and_is_the_last_error() {
        let r = Recorder::default();
        assert!(
            r.encode_metrics()
                .contains("weir_state_save_errors_total 0")
        );
        r.note_save_error("weir-state/policy.safetensors: No space left on device (os error 28)");
        assert!(
            r.encode_metrics()
                .contains("weir_state_save_errors_total 1")
        );
        let last = r.last_error().expect("the failed save is the last error");
        assert_eq!(last.origin, crate::ErrorOrigin::StateSave);
        assert!(last.error.message.contains("No space left"), "{last:?}");
    }
}
