//! From a `ReadSplit` spec to the configuration types `weir run` uses, with every problem
//! named by its field (`spec.replicas[1].destination: ...`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use weir_core::Slo;
use weir_istio::{Destination, IstioConfig, Layout, RouteSelector};
use weir_prom::{PromConfig, Queries, ReplicaTarget};
use weir_shield::ShieldConfig;

use crate::crd::{DestinationSpec, QuerySpec, ReadSplitSpec};

/// The spec, checked and converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to query.
    pub prometheus: PromConfig,
    /// What to edit.
    pub istio: IstioConfig,
    /// Objectives.
    pub slo: Slo,
    /// Hard limits.
    pub shield: ShieldConfig,
    /// Replica names, in weight order.
    pub replicas: Vec<String>,
}

/// A spec problem: the field (a path from `spec`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    /// `spec.route`, `spec.prometheus.queries.replicaLag`, ...
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The CRD's query names and the config file's.
const QUERY_NAMES: [(&str, &str); 8] = [
    ("replicaLagSeconds", "replica_lag_s"),
    ("replicaUp", "replica_up"),
    ("replicaReadQps", "replica_read_qps"),
    ("replicaReadP99Ms", "replica_read_p99_ms"),
    ("primaryCpu", "primary_cpu"),
    ("primaryReadQps", "primary_read_qps"),
    ("primaryWriteQps", "primary_write_qps"),
    ("primaryReadP99Ms", "primary_read_p99_ms"),
];

/// A field of `PromConfig` named as the ReadSplit's user wrote it: weir-prom's
/// `queries.replica_lag_s.replica_label` is `spec.prometheus.queries.replicaLagSeconds.replicaLabel`
/// (or `queriesFrom` when that is where the query came from).
fn crd_field(
    field: &str,
    shared: &BTreeMap<String, QuerySpec>,
    own: &BTreeMap<String, QuerySpec>,
) -> String {
    let mut parts = field.split('.');
    let (Some("queries"), Some(key)) = (parts.next(), parts.next()) else {
        return format!("spec.prometheus ({field})");
    };
    let Some((name, _)) = QUERY_NAMES.iter().find(|(_, k)| *k == key) else {
        return format!("spec.prometheus ({field})");
    };
    let source = if !own.contains_key(*name) && shared.contains_key(*name) {
        "queriesFrom"
    } else {
        "queries"
    };
    let rest: Vec<String> = parts
        .map(|p| match p {
            "replica_label" => "replicaLabel".to_string(),
            other => other.to_string(),
        })
        .collect();
    let mut out = format!("spec.prometheus.{source}.{name}");
    for p in rest {
        out.push('.');
        out.push_str(&p);
    }
    out
}

fn destination(d: &DestinationSpec) -> Destination {
    Destination {
        host: d.host.clone(),
        subset: d.subset.clone(),
    }
}

/// Merges query overrides (`shared` from a ConfigMap, then the spec's own) over Weir's
/// defaults.
fn queries(
    shared: &BTreeMap<String, QuerySpec>,
    own: &BTreeMap<String, QuerySpec>,
) -> Result<Queries, SpecError> {
    let mut merged = Map::new();
    for (source, map) in [("queriesFrom", shared), ("queries", own)] {
        for (name, q) in map {
            let Some((_, key)) = QUERY_NAMES.iter().find(|(n, _)| n == name) else {
                return Err(err(
                    format!("spec.prometheus.{source}.{name}"),
                    format!(
                        "unknown signal (expected one of {})",
                        QUERY_NAMES.map(|(n, _)| n).join(", ")
                    ),
                ));
            };
            let mut v = Map::new();
            v.insert("query".into(), Value::String(q.query.clone()));
            if let Some(l) = &q.replica_label {
                v.insert("replica_label".into(), Value::String(l.clone()));
            }
            merged.insert((*key).to_string(), Value::Object(v));
        }
    }
    serde_json::from_value(Value::Object(merged))
        .map_err(|e| err("spec.prometheus.queries", e.to_string()))
}

impl ReadSplitSpec {
    /// Checks the spec and converts it. `namespace` is the ReadSplit's; `shared_queries` the
    /// parsed `queriesFrom` ConfigMap, if any.
    pub fn plan(
        &self,
        namespace: &str,
        shared_queries: &BTreeMap<String, QuerySpec>,
    ) -> Result<Plan, SpecError> {
        if self.replicas.is_empty() {
            return Err(err("spec.replicas", "at least one replica is needed"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(err(format!("spec.replicas[{i}].name"), "must not be empty"));
            }
            if !seen.insert(r.name.as_str()) {
                return Err(err(
                    format!("spec.replicas[{i}].name"),
                    format!("{:?} appears twice", r.name),
                ));
            }
        }
        let route = match (
            &self.route.http_name,
            self.route.tcp_port,
            &self.route.destination_hosts,
        ) {
            (Some(n), None, None) => RouteSelector::HttpName(n.clone()),
            (None, Some(p), None) => RouteSelector::TcpPort(p),
            (None, None, Some(h)) if !h.is_empty() => RouteSelector::Hosts(h.clone()),
            _ => {
                return Err(err(
                    "spec.route",
                    "set exactly one of httpName, tcpPort or destinationHosts",
                ));
            }
        };
        let layout = match &self.reader {
            Some(reader) => {
                if let Some(i) = self.replicas.iter().position(|r| r.destination.is_some()) {
                    return Err(err(
                        format!("spec.replicas[{i}].destination"),
                        "not allowed with spec.reader (the reader service carries every replica's reads)",
                    ));
                }
                if reader.subset.is_some() || self.primary.subset.is_some() {
                    return Err(err(
                        "spec.reader",
                        "with a reader service, primary and reader are plain hosts (no subset); use per-replica destinations for subsets",
                    ));
                }
                Layout::TwoServices {
                    primary_host: self.primary.host.clone(),
                    replicas_host: reader.host.clone(),
                }
            }
            None => {
                let mut replicas = Vec::with_capacity(self.replicas.len());
                for (i, r) in self.replicas.iter().enumerate() {
                    let d = r.destination.as_ref().ok_or_else(|| {
                        err(
                            format!("spec.replicas[{i}].destination"),
                            "required without spec.reader (each replica is its own destination)",
                        )
                    })?;
                    replicas.push(destination(d));
                }
                Layout::PerReplica {
                    primary: destination(&self.primary),
                    replicas,
                }
            }
        };
        let istio = IstioConfig {
            namespace: self
                .virtual_service
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.to_string()),
            virtual_service: self.virtual_service.name.clone(),
            route,
            layout,
            max_retries: 3,
        };
        let mut prometheus = PromConfig::new(
            self.prometheus.url.clone(),
            self.replicas
                .iter()
                .map(|r| ReplicaTarget::new(r.name.clone(), r.label_value.clone()))
                .collect(),
        );
        if let Some(t) = self.prometheus.timeout_seconds {
            prometheus.timeout_s = t;
        }
        if let Some(a) = self.prometheus.max_sample_age_seconds {
            prometheus.max_sample_age_s = a;
        }
        prometheus.queries = queries(shared_queries, &self.prometheus.queries)?;
        prometheus.validate().map_err(|errors| {
            let e = &errors[0];
            err(
                crd_field(&e.field, shared_queries, &self.prometheus.queries),
                e.problem.clone(),
            )
        })?;

        let d = Slo::default();
        let s = &self.slo;
        let slo = Slo {
            max_staleness_s: s.max_staleness_seconds.unwrap_or(d.max_staleness_s),
            hard_staleness_s: s.hard_staleness_seconds.unwrap_or(d.hard_staleness_s),
            primary_cpu_target: s.primary_cpu_target.unwrap_or(d.primary_cpu_target),
            primary_cpu_max: s.primary_cpu_max.unwrap_or(d.primary_cpu_max),
            read_p99_slo_ms: s.read_p99_ms.unwrap_or(d.read_p99_slo_ms),
        };
        slo.validate().map_err(|p| err("spec.slo", p.to_string()))?;

        let mut shield = ShieldConfig::default();
        let sh = &self.shield;
        if let Some(v) = sh.max_step {
            shield.max_step = v;
        }
        if let Some(v) = sh.stale_after_seconds {
            shield.stale_after_s = v;
        }
        if let Some(v) = sh.fail_safe_after {
            shield.fail_safe_after = v;
        }
        shield.primary_read_capacity_qps = sh.primary_read_capacity_qps;
        shield
            .validate(self.replicas.len())
            .map_err(|p| err("spec.shield", p.to_string()))?;

        Ok(Plan {
            prometheus,
            istio,
            slo,
            shield,
            replicas: self.replicas.iter().map(|r| r.name.clone()).collect(),
        })
    }
}
