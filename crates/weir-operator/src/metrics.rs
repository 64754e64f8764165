//! The operator's own metrics, per ReadSplit where it matters, and per outcome for
//! TrafficPolicies. Errors are counted by a
//! stable `kind` label, never by message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_core::{Observation, Weights};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WeightLabel {
    namespace: String,
    readsplit: String,
    destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabel {
    namespace: String,
    readsplit: String,
    replica: String,
}

/// Every `kind` of reconcile error, pre-created at 0.
pub const ERROR_KINDS: &[&str] = &[
    "conflict",
    "not_found",
    "forbidden",
    "kube",
    "malformed",
    "invalid_spec",
    // Not a failure: the state was saved, but without the learned policy (too large).
    "state_too_large",
];

/// Every `kind` of TrafficPolicy reconcile error, pre-created at 0.
pub const TRAFFIC_ERROR_KINDS: &[&str] = &[
    "conflict",
    "not_found",
    "forbidden",
    "kube",
    "malformed",
    "invalid_policy",
    "unsupported_kind",
    "serialize",
];

/// The label sets one ReadSplit has created, so they can be removed with it.
type Series = (Vec<WeightLabel>, Vec<LagLabel>);

/// The registry and its handles.
pub struct Metrics {
    registry: Registry,
    reconciliations: Family<ResultLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    traffic_reconciliations: Family<ResultLabel, Counter>,
    traffic_errors: Family<KindLabel, Counter>,
    duration: Histogram,
    governed: Gauge,
    leader: Gauge,
    leader_changes: Counter,
    weight: Family<WeightLabel, Gauge>,
    lag: Family<LagLabel, Gauge<f64, AtomicU64>>,
    /// Series per ReadSplit, to remove them when it goes.
    series: Mutex<HashMap<String, Series>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciliations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "weir_operator_reconciliations",
            "Reconciliations (one decision each), by result",
            reconciliations.clone(),
        );
        let errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "weir_operator_reconcile_errors",
            "Failed reconciliations and invalid specs, by kind",
            errors.clone(),
        );
        for kind in ERROR_KINDS {
            drop(errors.get_or_create(&KindLabel {
                kind: (*kind).to_string(),
            }));
        }
        let traffic_reconciliations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "weir_operator_traffic_policy_reconciliations",
            "TrafficPolicy reconciliations (compile, apply, prune, status), by result",
            traffic_reconciliations.clone(),
        );
        let traffic_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "weir_operator_traffic_policy_errors",
            "Failed TrafficPolicy reconciliations, invalid policies and conflicts, by kind",
            traffic_errors.clone(),
        );
        for kind in TRAFFIC_ERROR_KINDS {
            drop(traffic_errors.get_or_create(&KindLabel {
                kind: (*kind).to_string(),
            }));
        }
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "weir_operator_reconcile_duration_seconds",
            "Time of one reconciliation (observe, decide, actuate, status)",
            duration.clone(),
        );
        let governed = Gauge::default();
        registry.register(
            "weir_operator_readsplits",
            "ReadSplits governed by this instance",
            governed.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "weir_operator_leader",
            "1 while this instance holds the Lease and governs, else 0",
            leader.clone(),
        );
        let leader_changes = Counter::default();
        registry.register(
            "weir_operator_leadership_changes",
            "Times this instance became or stopped being the leader",
            leader_changes.clone(),
        );
        let weight = Family::<WeightLabel, Gauge>::default();
        registry.register(
            "weir_operator_weight",
            "Decided read weight per ReadSplit and destination, points of 100",
            weight.clone(),
        );
        let lag = Family::<LagLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "weir_operator_replica_lag_seconds",
            "Observed replica lag per ReadSplit; absent while unknown",
            lag.clone(),
        );
        Metrics {
            registry,
            reconciliations,
            errors,
            traffic_reconciliations,
            traffic_errors,
            duration,
            governed,
            leader,
            leader_changes,
            weight,
            lag,
            series: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn observe_reconcile(&self, seconds: f64, ok: bool) {
        self.duration.observe(seconds);
        self.reconciliations
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    pub(crate) fn count_error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub(crate) fn observe_traffic_reconcile(&self, ok: bool) {
        self.traffic_reconciliations
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    pub(crate) fn count_traffic_error(&self, kind: &str) {
        self.traffic_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Records whether this instance leads.
    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        self.leader_changes.inc();
    }

    pub(crate) fn set_governed(&self, n: usize) {
        self.governed.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn observe_decision(
        &self,
        key: &str,
        names: &[String],
        weights: &Weights,
        obs: &Observation,
    ) {
        let (ns, rs) = key.split_once('/').unwrap_or(("", key));
        let mut w_labels = Vec::with_capacity(names.len());
        for (name, w) in names.iter().zip(weights.iter()) {
            let l = WeightLabel {
                namespace: ns.to_string(),
                readsplit: rs.to_string(),
                destination: name.clone(),
            };
            self.weight.get_or_create(&l).set(i64::from(w));
            w_labels.push(l);
        }
        let mut l_labels = Vec::with_capacity(obs.replicas.len());
        for r in &obs.replicas {
            let l = LagLabel {
                namespace: ns.to_string(),
                readsplit: rs.to_string(),
                replica: r.name.clone(),
            };
            match r.lag_s.value.filter(|v| v.is_finite()) {
                Some(v) => {
                    self.lag.get_or_create(&l).set(v);
                }
                None => {
                    self.lag.remove(&l);
                }
            }
            l_labels.push(l);
        }
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string(), (w_labels, l_labels));
    }

    /// Removes a ReadSplit's series.
    pub(crate) fn forget(&self, key: &str) {
        let removed = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        if let Some((w, l)) = removed {
            for x in &w {
                self.weight.remove(x);
            }
            for x in &l {
                self.lag.remove(x);
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}
