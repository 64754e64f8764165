//! The `ReadSplit` custom resource (`weir.dev/v1alpha1`): one database cluster whose reads
//! Weir governs through one route of one Istio VirtualService.
//!
//! Field names follow Kubernetes conventions (camelCase, durations in seconds with a
//! `Seconds` suffix). Everything the spec says is converted into the same configuration types
//! `weir run` uses ([`ReadSplitSpec::plan`](crate::spec)), so the operator and the single-cluster
//! binary share one validation and one meaning for every field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_edge::Mode;
/// The deciding policies Weir ships: the policy registry's list.
pub use weir_policy::PolicyKind;

/// Desired state of one governed database cluster.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "ReadSplit",
    plural = "readsplits",
    shortname = "rsplit",
    namespaced,
    status = "ReadSplitStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Weights","type":"string","description":"primary/replicas, out of 100","jsonPath":".status.weightsSummary"}"#,
    printcolumn = r#"{"name":"Max lag","type":"string","jsonPath":".status.lastObservation.maxLag"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReadSplitSpec {
    /// The VirtualService whose route Weir edits (only that route's weights).
    pub virtual_service: VirtualServiceRef,
    /// Which route of the VirtualService carries the reads.
    pub route: RouteSpec,
    /// The primary's destination in that route.
    pub primary: DestinationSpec,
    /// The replicas, in order. With `reader` set, the route has one reader destination and
    /// these only name the replicas for metrics; without it each replica is its own
    /// destination (usually a DestinationRule subset).
    pub replicas: Vec<ReplicaSpec>,
    /// The reader service's destination when replicas are not addressed one by one (the
    /// `db-writer-proxy` / `db-reader-proxy` layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<DestinationSpec>,
    /// Where the metrics come from.
    pub prometheus: PrometheusSpec,
    /// Objectives.
    #[serde(default)]
    pub slo: SloSpec,
    /// Hard limits the shield enforces on every decision.
    #[serde(default)]
    pub shield: ShieldSpec,
    /// The deciding policy.
    #[serde(default)]
    pub policy: PolicySpec,
    /// `Shadow` (decide and record, touch nothing), `DryRun` (also log the patch) or
    /// `Enforce`.
    #[serde(default)]
    pub mode: ModeSpec,
    /// Seconds between decisions.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: u32,
}

fn default_interval() -> u32 {
    15
}

/// A VirtualService by name, in the ReadSplit's namespace unless given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceRef {
    /// `metadata.name`.
    pub name: String,
    /// Namespace; the ReadSplit's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How to find the one managed route: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The `spec.http[]` route with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_name: Option<String>,
    /// The `spec.tcp[]` route one of whose `match[].port` is this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u32>,
    /// The route whose destination hosts are exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_hosts: Option<Vec<String>>,
}

/// One `route[].destination`, as written in the VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// `destination.host` (short name or FQDN, exactly as in the VirtualService).
    pub host: String,
    /// `destination.subset`, if the route names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

/// One replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// Weir's name for it (metrics, events, status).
    pub name: String,
    /// The value of the queries' replica label for this replica (e.g. the exporter's
    /// `instance`).
    pub label_value: String,
    /// Its own destination in the route (per-replica layout); absent with `reader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationSpec>,
}

/// The Prometheus to query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// Seconds a query may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Samples older than this many seconds count as unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sample_age_seconds: Option<f64>,
    /// Query overrides by signal (`replicaLagSeconds`, `replicaUp`, `replicaReadQps`,
    /// `replicaReadP99Ms`, `primaryCpu`, `primaryReadQps`, `primaryWriteQps`,
    /// `primaryReadP99Ms`); the rest come from `queriesFrom` or Weir's mysqld_exporter
    /// defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queries: BTreeMap<String, QuerySpec>,
    /// A ConfigMap in the ReadSplit's namespace whose `queries.json` holds shared query
    /// overrides, so many ReadSplits can share one set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries_from: Option<String>,
}

/// One PromQL query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpec {
    /// The PromQL expression.
    pub query: String,
    /// The label that names the replica in its result (per-replica signals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_label: Option<String>,
}

/// Objectives; see `weir_core::Slo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// A read from a replica lagging more than this many seconds is stale (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness_seconds: Option<f64>,
    /// Beyond this lag a replica gets no reads while any other option exists (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_staleness_seconds: Option<f64>,
    /// Primary CPU (0..1) above which load is charged (default 0.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cpu_target: Option<f64>,
    /// Primary CPU (0..1) the shield never plans to exceed (default 0.85).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cpu_max: Option<f64>,
    /// Read latency objective, p99, milliseconds (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_p99_ms: Option<f64>,
}

/// The shield's limits; see `weir_shield::ShieldConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShieldSpec {
    /// Largest change of any weight per decision, points of 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<u32>,
    /// A signal older than this many seconds is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_seconds: Option<f64>,
    /// Stale intervals before the fail-safe weights are applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_safe_after: Option<u32>,
    /// Reads per second the primary can take on top of its own load (enables the capacity
    /// check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_read_capacity_qps: Option<f64>,
}

/// Which policy decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// The policy.
    #[serde(default = "default_policy_kind")]
    pub kind: PolicyKind,
    /// A ConfigMap in the ReadSplit's namespace holding the learned policy's model
    /// (`weir train` output): `model.json` under `data` for `qlearn`, `model.safetensors`
    /// under `binaryData` for `dqn` (`kubectl create configmap --from-file` puts it there).
    /// Without it, the model built into the operator's binary is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_config_map: Option<String>,
    /// Keep learning from live rewards; the learned state is kept in the ReadSplit's state
    /// ConfigMap.
    #[serde(default)]
    pub online_learning: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            kind: default_policy_kind(),
            model_config_map: None,
            online_learning: false,
        }
    }
}

/// A ReadSplit without a policy shuns lagging replicas: it needs no model.
fn default_policy_kind() -> PolicyKind {
    PolicyKind::Shun
}

/// How decisions are used: the CRD's spelling of [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ModeSpec {
    /// Decide and record; never touch the VirtualService.
    #[default]
    Shadow,
    /// Decide and record, and log the patch that would be sent.
    DryRun,
    /// Apply decisions.
    Enforce,
}

impl From<ModeSpec> for Mode {
    fn from(m: ModeSpec) -> Mode {
        match m {
            ModeSpec::Shadow => Mode::Shadow,
            ModeSpec::DryRun => Mode::DryRun,
            ModeSpec::Enforce => Mode::Enforce,
        }
    }
}

/// What the operator last saw and did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadSplitStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Weights in force, by destination name (`primary`, then each replica), out of 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// The same, compact, for `kubectl get`: `P20/40/40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_summary: Option<String>,
    /// A summary of the latest observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observation: Option<ObservationSummary>,
    /// When the latest decision was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision_time: Option<String>,
    /// `Ready` and `Degraded`, with reasons such as `MetricsUnavailable`, `RouteNotFound`,
    /// `Conflict`, `ShieldFailSafe`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The latest observation, in brief.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservationSummary {
    /// The largest known replica lag, for people (`4.2s`, `unknown`).
    pub max_lag: String,
    /// Lag per replica in seconds; absent when unknown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag_seconds: BTreeMap<String, f64>,
    /// Replicas over the staleness SLO, down or of unknown lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
    /// Primary CPU (0..1), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cpu: Option<f64>,
}
