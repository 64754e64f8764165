//! What the Prometheus source is told: where Prometheus is, which PromQL gives each signal and
//! how a series is matched to a replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the eight signals an [`Observation`](weir_core::Observation) carries, named like
/// its field in [`Queries`] (which is also how errors and reports name a query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignalId {
    /// Per-replica replication lag, seconds.
    ReplicaLagS,
    /// Per-replica up (1) / down (0).
    ReplicaUp,
    /// Per-replica reads per second.
    ReplicaReadQps,
    /// Per-replica read p99, milliseconds.
    ReplicaReadP99Ms,
    /// Primary CPU utilisation, 0..1.
    PrimaryCpu,
    /// Primary reads per second.
    PrimaryReadQps,
    /// Primary writes per second.
    PrimaryWriteQps,
    /// Primary read p99, milliseconds.
    PrimaryReadP99Ms,
}

impl SignalId {
    /// Every signal, in the order queries are reported.
    pub const ALL: [SignalId; 8] = [
        SignalId::ReplicaLagS,
        SignalId::ReplicaUp,
        SignalId::ReplicaReadQps,
        SignalId::ReplicaReadP99Ms,
        SignalId::PrimaryCpu,
        SignalId::PrimaryReadQps,
        SignalId::PrimaryWriteQps,
        SignalId::PrimaryReadP99Ms,
    ];

    /// The field name in [`Queries`], e.g. `replica_lag_s`.
    pub fn name(self) -> &'static str {
        match self {
            SignalId::ReplicaLagS => "replica_lag_s",
            SignalId::ReplicaUp => "replica_up",
            SignalId::ReplicaReadQps => "replica_read_qps",
            SignalId::ReplicaReadP99Ms => "replica_read_p99_ms",
            SignalId::PrimaryCpu => "primary_cpu",
            SignalId::PrimaryReadQps => "primary_read_qps",
            SignalId::PrimaryWriteQps => "primary_write_qps",
            SignalId::PrimaryReadP99Ms => "primary_read_p99_ms",
        }
    }

    /// Whether the query returns one series per replica (else one series for the primary).
    pub fn is_replica(self) -> bool {
        matches!(
            self,
            SignalId::ReplicaLagS
                | SignalId::ReplicaUp
                | SignalId::ReplicaReadQps
                | SignalId::ReplicaReadP99Ms
        )
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The PromQL for one signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// An instant-vector (or scalar, for primary signals) PromQL expression.
    pub query: String,
    /// For replica signals: the label whose value tells which replica a series belongs to
    /// (matched against [`ReplicaTarget::value_for`]). Must be unset for primary signals,
    /// whose query must return a single series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_label: Option<String>,
}

impl QuerySpec {
    fn replica(query: &str, label: &str) -> Self {
        QuerySpec {
            query: query.to_owned(),
            replica_label: Some(label.to_owned()),
        }
    }

    fn primary(query: &str) -> Self {
        QuerySpec {
            query: query.to_owned(),
            replica_label: None,
        }
    }
}

/// Heartbeat lag from mysqld_exporter's `--collect.heartbeat` (pt-heartbeat table).
pub const DEFAULT_REPLICA_LAG: &str =
    "mysql_heartbeat_now_timestamp_seconds - mysql_heartbeat_stored_timestamp_seconds";
/// mysqld_exporter's own view of whether it can reach the server.
pub const DEFAULT_REPLICA_UP: &str = "mysql_up";
/// `Com_select` rate per replica.
pub const DEFAULT_REPLICA_READ_QPS: &str =
    r#"rate(mysql_global_status_commands_total{command="select"}[1m])"#;
/// Istio destination-side request latency per replica workload (HTTP traffic only).
pub const DEFAULT_REPLICA_READ_P99: &str = "histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket[1m])))";
/// Non-idle share of the primary host's CPUs, from node_exporter.
pub const DEFAULT_PRIMARY_CPU: &str =
    r#"1 - avg(rate(node_cpu_seconds_total{mode="idle", role="primary"}[1m]))"#;
/// `Com_select` rate on the primary.
pub const DEFAULT_PRIMARY_READ_QPS: &str =
    r#"sum(rate(mysql_global_status_commands_total{command="select", role="primary"}[1m]))"#;
/// Rate of write statements on the primary.
pub const DEFAULT_PRIMARY_WRITE_QPS: &str = r#"sum(rate(mysql_global_status_commands_total{command=~"insert|update|delete|replace|insert_select|replace_select|update_multi|delete_multi", role="primary"}[1m]))"#;
/// Istio destination-side request latency of the primary workload (HTTP traffic only).
pub const DEFAULT_PRIMARY_READ_P99: &str = r#"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{destination_workload="mysql-primary"}[1m])))"#;

/// One PromQL query per signal. Every field has a default that works with mysqld_exporter,
/// node_exporter and Istio (see the crate documentation for where each metric comes from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queries {
    /// Replication lag, seconds, one series per replica.
    pub replica_lag_s: QuerySpec,
    /// 1 when the replica is up, 0 when down, one series per replica.
    pub replica_up: QuerySpec,
    /// Reads per second, one series per replica.
    pub replica_read_qps: QuerySpec,
    /// Read p99 in milliseconds, one series per replica.
    pub replica_read_p99_ms: QuerySpec,
    /// Primary CPU utilisation 0..1, one series.
    pub primary_cpu: QuerySpec,
    /// Primary reads per second, one series.
    pub primary_read_qps: QuerySpec,
    /// Primary writes per second, one series.
    pub primary_write_qps: QuerySpec,
    /// Primary read p99 in milliseconds, one series.
    pub primary_read_p99_ms: QuerySpec,
}

impl Default for Queries {
    fn default() -> Self {
        Queries {
            replica_lag_s: QuerySpec::replica(DEFAULT_REPLICA_LAG, "instance"),
            replica_up: QuerySpec::replica(DEFAULT_REPLICA_UP, "instance"),
            replica_read_qps: QuerySpec::replica(DEFAULT_REPLICA_READ_QPS, "instance"),
            replica_read_p99_ms: QuerySpec::replica(
                DEFAULT_REPLICA_READ_P99,
                "destination_workload",
            ),
            primary_cpu: QuerySpec::primary(DEFAULT_PRIMARY_CPU),
            primary_read_qps: QuerySpec::primary(DEFAULT_PRIMARY_READ_QPS),
            primary_write_qps: QuerySpec::primary(DEFAULT_PRIMARY_WRITE_QPS),
            primary_read_p99_ms: QuerySpec::primary(DEFAULT_PRIMARY_READ_P99),
        }
    }
}

impl Queries {
    /// The query for one signal.
    pub fn get(&self, id: SignalId) -> &QuerySpec {
        match id {
            SignalId::ReplicaLagS => &self.replica_lag_s,
            SignalId::ReplicaUp => &self.replica_up,
            SignalId::ReplicaReadQps => &self.replica_read_qps,
            SignalId::ReplicaReadP99Ms => &self.replica_read_p99_ms,
            SignalId::PrimaryCpu => &self.primary_cpu,
            SignalId::PrimaryReadQps => &self.primary_read_qps,
            SignalId::PrimaryWriteQps => &self.primary_write_qps,
            SignalId::PrimaryReadP99Ms => &self.primary_read_p99_ms,
        }
    }
}

/// One read replica as Prometheus labels it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaTarget {
    /// Weir's name for the replica (the actuator's destination name; the order of the
    /// replicas here is the order of the weights).
    pub name: String,
    /// The value of each query's `replica_label` on this replica's series, e.g. the
    /// `instance` of its mysqld_exporter target.
    pub label_value: String,
    /// Per-label exceptions, for when queries key replicas by different labels: e.g.
    /// `{ destination_workload = "mysql-replica-1" }` for the Istio p99 query while the
    /// mysqld_exporter queries use `label_value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ReplicaTarget {
    /// A replica whose series carry `label_value` under every query's replica label.
    pub fn new(name: impl Into<String>, label_value: impl Into<String>) -> Self {
        ReplicaTarget {
            name: name.into(),
            label_value: label_value.into(),
            labels: BTreeMap::new(),
        }
    }

    /// The value that identifies this replica under `label`.
    pub fn value_for(&self, label: &str) -> &str {
        self.labels.get(label).unwrap_or(&self.label_value)
    }
}

/// Default per-request timeout, seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 5.0;
/// Default maximum sample age, seconds (sent to Prometheus as `lookback_delta`).
pub const DEFAULT_MAX_SAMPLE_AGE_S: f64 = 60.0;

/// Configuration of [`PromSource`](crate::PromSource).
///
/// `Debug` and `Serialize` never show the bearer token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    /// Base URL of Prometheus (or of a compatible API such as Thanos Query), e.g.
    /// `http://prometheus:9090` or `https://example/prometheus`; `/api/v1/query` is appended.
    pub url: String,
    /// Per-query HTTP timeout, seconds; also sent to Prometheus as the evaluation timeout.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Sent as `Authorization: Bearer …` when set. Never logged or serialised.
    #[serde(default, skip_serializing)]
    pub bearer_token: Option<String>,
    /// The oldest raw sample a query may use, seconds. Sent as the `lookback_delta` query
    /// parameter, so a series whose latest sample is older is absent (→ `NoSeries`) instead
    /// of being carried forward for Prometheus's default five minutes. Must exceed the
    /// scrape interval (two intervals or more is safe).
    #[serde(default = "default_max_sample_age_s")]
    pub max_sample_age_s: f64,
    /// The replicas, in weight order.
    pub replicas: Vec<ReplicaTarget>,
    /// PromQL per signal.
    #[serde(default)]
    pub queries: Queries,
}

fn default_timeout_s() -> f64 {
    DEFAULT_TIMEOUT_S
}

fn default_max_sample_age_s() -> f64 {
    DEFAULT_MAX_SAMPLE_AGE_S
}

impl fmt::Debug for PromConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromConfig")
            .field("url", &self.url)
            .field("timeout_s", &self.timeout_s)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_sample_age_s", &self.max_sample_age_s)
            .field("replicas", &self.replicas)
            .field("queries", &self.queries)
            .finish()
    }
}

/// A configuration mistake, naming the field (as a dotted path) that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prometheus config: `{field}`: {problem}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `queries.replica_lag_s.replica_label`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl PromConfig {
    /// A configuration with the default queries and timeouts.
    pub fn new(url: impl Into<String>, replicas: Vec<ReplicaTarget>) -> Self {
        PromConfig {
            url: url.into(),
            timeout_s: DEFAULT_TIMEOUT_S,
            bearer_token: None,
            max_sample_age_s: DEFAULT_MAX_SAMPLE_AGE_S,
            replicas,
            queries: Queries::default(),
        }
    }

    /// The Prometheus address to show a person: the configured URL, with any user name and
    /// password in it replaced by `***` (a URL may carry basic-auth credentials).
    pub fn display_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                // Neither can fail on an http(s) URL with a host, the only kind that has them.
                let _ = url.set_username("***");
                let _ = url.set_password(None);
                url.to_string()
            }
            Ok(_) => self.url.clone(),
            Err(_) => "<not a URL>".to_string(),
        }
    }

    /// Every problem in the configuration (empty when it is usable).
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        match url::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                if url.query().is_some() || url.fragment().is_some() {
                    errors.push(ConfigError::new(
                        "url",
                        "must be a base URL without `?query` or `#fragment`",
                    ));
                }
            }
            Ok(url) => errors.push(ConfigError::new(
                "url",
                format!("scheme `{}` is not http or https", url.scheme()),
            )),
            Err(e) => errors.push(ConfigError::new("url", format!("not a URL: {e}"))),
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 600.0) {
            errors.push(ConfigError::new(
                "timeout_s",
                format!("must be in (0, 600], got {}", self.timeout_s),
            ));
        }
        if !(self.max_sample_age_s.is_finite() && self.max_sample_age_s >= 1.0) {
            errors.push(ConfigError::new(
                "max_sample_age_s",
                format!("must be at least 1 second, got {}", self.max_sample_age_s),
            ));
        }
        if let Some(token) = &self.bearer_token
            && (token.is_empty() || http::HeaderValue::from_str(token).is_err())
        {
            errors.push(ConfigError::new(
                "bearer_token",
                "must be non-empty visible ASCII",
            ));
        }
        self.validate_replicas(&mut errors);
        for id in SignalId::ALL {
            let spec = self.queries.get(id);
            let field = format!("queries.{id}");
            if spec.query.trim().is_empty() {
                errors.push(ConfigError::new(format!("{field}.query"), "is empty"));
            }
            match (&spec.replica_label, id.is_replica()) {
                (None, true) => errors.push(ConfigError::new(
                    format!("{field}.replica_label"),
                    "is required for a per-replica query",
                )),
                (Some(label), true) if !is_label_name(label) => errors.push(ConfigError::new(
                    format!("{field}.replica_label"),
                    format!("`{label}` is not a Prometheus label name"),
                )),
                (Some(_), false) => errors.push(ConfigError::new(
                    format!("{field}.replica_label"),
                    "must not be set for a primary query (it must return one series)",
                )),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn validate_replicas(&self, errors: &mut Vec<ConfigError>) {
        if self.replicas.is_empty() {
            errors.push(ConfigError::new(
                "replicas",
                "at least one replica is needed",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if r.name.trim().is_empty() {
                errors.push(ConfigError::new(format!("replicas[{i}].name"), "is empty"));
            } else if !names.insert(r.name.as_str()) {
                errors.push(ConfigError::new(
                    format!("replicas[{i}].name"),
                    format!("`{}` is used twice", r.name),
                ));
            }
            if r.label_value.is_empty() {
                errors.push(ConfigError::new(
                    format!("replicas[{i}].label_value"),
                    "is empty",
                ));
            }
            for label in r.labels.keys() {
                if !is_label_name(label) {
                    errors.push(ConfigError::new(
                        format!("replicas[{i}].labels.{label}"),
                        "is not a Prometheus label name",
                    ));
                }
            }
        }
        // Two replicas with the same value under one query's label could never be told apart.
        for id in SignalId::ALL {
            let Some(label) = &self.queries.get(id).replica_label else {
                continue;
            };
            let mut seen = BTreeMap::new();
            for (i, r) in self.replicas.iter().enumerate() {
                if let Some(first) = seen.insert(r.value_for(label), i) {
                    errors.push(ConfigError::new(
                        format!("replicas[{i}].label_value"),
                        format!(
                            "replicas[{first}] and replicas[{i}] both have {label}=\"{}\" (used by queries.{id})",
                            r.value_for(label)
                        ),
                    ));
                }
            }
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's label name syntax.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_replicas() -> PromConfig {
        PromConfig::new(
            "http://127.0.0.1:9090",
            vec![
                ReplicaTarget::new("replica-1", "10.0.0.2:9104"),
                ReplicaTarget::new("replica-2", "10.0.0.3:9104"),
            ],
        )
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(two_replicas().validate(), Ok(()));
    }

    #[test]
    fn the_display_url_never_shows_credentials() {
        let mut c = two_replicas();
        assert_eq!(c.display_url(), "http://127.0.0.1:9090");
        c.url = "https://weir:s3cret@prom.example/prometheus".into();
        assert_eq!(c.display_url(), "https://***@prom.example/prometheus");
        c.url = "https://:s3cret@prom.example".into();
        assert!(!c.display_url().contains("s3cret"), "{}", c.display_url());
        c.url = "nope".into();
        assert_eq!(c.display_url(), "<not a URL>");
    }

    #[test]
    fn toml_with_defaults_and_unknown_fields() {
        let cfg: PromConfig = toml::from_str(
            r#"
            url = "http://prom:9090"
            bearer_token = "s3cret"
            [[replicas]]
            name = "r1"
            label_value = "r1:9104"
            labels = { destination_workload = "mysql-r1" }
            [queries.replica_lag_s]
            query = "mysql_slave_status_seconds_behind_master"
            replica_label = "instance"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.timeout_s, DEFAULT_TIMEOUT_S);
        assert_eq!(cfg.max_sample_age_s, DEFAULT_MAX_SAMPLE_AGE_S);
        assert_eq!(
            cfg.queries.replica_lag_s.query,
            "mysql_slave_status_seconds_behind_master"
        );
        assert_eq!(cfg.queries.replica_up.query, DEFAULT_REPLICA_UP);
        assert_eq!(
            cfg.replicas[0].value_for("destination_workload"),
            "mysql-r1"
        );
        assert_eq!(cfg.replicas[0].value_for("instance"), "r1:9104");
        assert_eq!(cfg.validate(), Ok(()));
        // The token never shows.
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&cfg).unwrap().contains("s3cret"));

        let err = toml::from_str::<PromConfig>(
            "url = \"http://p\"\nreplicas = []\n[queries.replica_lag]\nquery = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("replica_lag"), "{err}");
    }

    #[test]
    fn validate_names_every_bad_field() {
        let mut cfg = two_replicas();
        cfg.url = "ftp://x".into();
        cfg.timeout_s = 0.0;
        cfg.max_sample_age_s = f64::NAN;
        cfg.queries.replica_lag_s.replica_label = None;
        cfg.queries.primary_cpu.replica_label = Some("instance".into());
        cfg.queries.replica_up.query = " ".into();
        cfg.queries.replica_read_qps.replica_label = Some("bad-label".into());
        cfg.replicas
            .push(ReplicaTarget::new("replica-1", "10.0.0.2:9104"));
        let fields: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        for expected in [
            "url",
            "timeout_s",
            "max_sample_age_s",
            "queries.replica_lag_s.replica_label",
            "queries.primary_cpu.replica_label",
            "queries.replica_up.query",
            "queries.replica_read_qps.replica_label",
            "replicas[2].name",
            "replicas[2].label_value",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing in {fields:?}"
            );
        }
    }

    #[test]
    fn no_replicas_is_an_error() {
        let mut cfg = two_replicas();
        cfg.replicas.clear();
        let errs = cfg.validate().unwrap_err();
        assert_eq!(errs[0].field, "replicas");
    }
}
