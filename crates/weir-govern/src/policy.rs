//! The `TrafficPolicy` file: what a user writes. Unknown fields are rejected everywhere, so a
//! typo fails loudly instead of silently governing nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `apiVersion` of a policy file (and of the custom resource).
pub const API_VERSION: &str = "weir.dev/v1alpha1";
/// `kind` of a policy file.
pub const KIND: &str = "TrafficPolicy";

/// One policy file: how traffic to one service is governed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// `weir.dev/v1alpha1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `TrafficPolicy`.
    pub kind: String,
    /// Name and namespace of the generated objects.
    pub metadata: Metadata,
    /// What to do.
    pub spec: TrafficPolicySpec,
}

/// Names the policy, and with it every object compiled from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The objects' `metadata.name`.
    pub name: String,
    /// The objects' namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Extra labels for the generated objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (kept on the policy; not copied).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The governed service and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicySpec {
    /// The service's host, as Istio knows it (`checkout.shop.svc.cluster.local`).
    pub host: String,
    /// The service port the routes send to (required when the service has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// The port the service's containers listen on, when it differs from `port`: Istio names
    /// the inbound route configuration after it (rate limits are attached there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
    /// The pod labels of the service's workloads (its Kubernetes Service's `selector`): the
    /// proxies that rate limits and environment header clean-up are installed in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Restrict the generated EnvoyFilters to proxies whose version matches this regex
    /// (`^1\\.2[4-9].*`). Unset: every proxy (a pinned version silently stops applying after
    /// an upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_version: Option<String>,
    /// Named groups of instances, by pod labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Ordered routes, first match wins; a route without `match` is the fallback and comes last.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Request affinity by consistent hashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Connection limits and outlier ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Local (per proxy) and global (shared) rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Nearby routing: prefer instances in the caller's campus, then zone, then region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// Multi-environment routing (baseline + feature environments) with traffic dyeing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Environments>,
    /// Alerts and a dashboard over Istio's standard metrics for the governed service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

/// Alerts (a PrometheusRule and a plain rules file) and a Grafana dashboard for the governed
/// service, over Istio's standard metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Alert when a subset answers more than this percentage of requests with 5xx (default 5,
    /// the seed's threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_percent: Option<f64>,
    /// Alert when more than this percentage of requests is refused by a rate limit (default
    /// 10; only with `rate_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_percent: Option<f64>,
    /// How long a condition must hold before its alert fires (Prometheus duration, default
    /// `5m`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// The rate window (Prometheus duration, default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The alerts' `severity` label (default `warning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Extra labels on every alert (routing in Alertmanager: `team: shop`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A named group of instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// Its name (`v1`).
    pub name: String,
    /// The pod labels that select it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Its name (also the Istio route's name).
    pub name: String,
    /// Conditions that must all hold (AND). None: the fallback route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Condition>,
    /// Where matching requests go.
    pub destinations: Vec<Destination>,
    /// Request headers set on this route (dynamic traffic dyeing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_headers: BTreeMap<String, String>,
}

/// A share of a route's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The subset.
    pub subset: String,
    /// Percent of the route's requests (all destinations of a route give one, summing to
    /// 100, or none do and the split is even).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// Where a condition reads the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A request header (also gRPC metadata). Takes `key`.
    Header,
    /// A query parameter. Takes `key`.
    Query,
    /// A cookie. Takes `key`.
    Cookie,
    /// A label of the calling workload. Takes `key`.
    SourceLabel,
    /// The request path.
    Path,
    /// The request method.
    Method,
}

impl Source {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Query => "query",
            Source::Cookie => "cookie",
            Source::SourceLabel => "source_label",
            Source::Path => "path",
            Source::Method => "method",
        }
    }

    /// Whether the source is named by a `key`.
    pub fn takes_key(self) -> bool {
        matches!(
            self,
            Source::Header | Source::Query | Source::Cookie | Source::SourceLabel
        )
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal to `value`.
    Equals,
    /// Not equal to `value` (or absent).
    NotEquals,
    /// Starts with `value`.
    Prefix,
    /// Full match of the RE2 regex `value`.
    Regex,
    /// One of `values`.
    In,
    /// None of `values` (or absent).
    NotIn,
    /// An integer in `[min, max]`.
    Range,
    /// An integer below `value`.
    LessThan,
    /// An integer above `value`.
    GreaterThan,
    /// Present, with any value.
    Exists,
    /// Not present.
    Absent,
}

impl Op {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::NotEquals => "not_equals",
            Op::Prefix => "prefix",
            Op::Regex => "regex",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Range => "range",
            Op::LessThan => "less_than",
            Op::GreaterThan => "greater_than",
            Op::Exists => "exists",
            Op::Absent => "absent",
        }
    }

    /// Whether a request matches when the condition does *not* hold on a present value —
    /// the operators that select by exclusion.
    pub fn is_negative(self) -> bool {
        matches!(self, Op::NotEquals | Op::NotIn | Op::Absent)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string or an integer, as YAML gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

/// In the CRD's schema a scalar is Kubernetes' int-or-string (an untagged `anyOf` would not be
/// a structural schema).
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

impl Scalar {
    /// The value as request text (`5` for the integer 5).
    pub fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// One condition on the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Where to read.
    pub source: Source,
    /// Which header, parameter, cookie or label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How to compare.
    pub op: Op,
    /// The operand of `equals`, `not_equals`, `prefix`, `regex`, `less_than`, `greater_than`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Scalar>,
    /// The operands of `in` and `not_in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Scalar>>,
    /// Lower bound of `range`, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Upper bound of `range`, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// Request affinity: requests with the same key go to the same instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// What is hashed.
    pub hash: HashKey,
    /// `ring_hash` (default) or `maglev`.
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// Ring hash: the minimum number of virtual nodes (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ring_size: Option<u64>,
    /// Maglev: the lookup table size, a prime (default 65537).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
    /// Accept affinity on a route split by weight across subsets: the subset is chosen by
    /// weight first and the hash only picks an instance within it, so the same key can land
    /// in different subsets.
    #[serde(default)]
    pub allow_weighted_split: bool,
}

/// What a consistent hash is computed over: written as a map with exactly one of `header`,
/// `cookie`, `source_ip`, `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    rename_all = "snake_case",
    try_from = "HashKeyFields",
    into = "HashKeyFields"
)]
pub enum HashKey {
    /// A request header.
    Header(String),
    /// A cookie (generated by the proxy when absent).
    Cookie(CookieKey),
    /// The caller's IP address.
    SourceIp(bool),
    /// A query parameter.
    Query(String),
}

/// [`HashKey`] as written: one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct HashKeyFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<CookieKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
}

impl TryFrom<HashKeyFields> for HashKey {
    type Error = String;
    fn try_from(f: HashKeyFields) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(h) = f.header {
            keys.push(HashKey::Header(h));
        }
        if let Some(c) = f.cookie {
            keys.push(HashKey::Cookie(c));
        }
        if let Some(s) = f.source_ip {
            keys.push(HashKey::SourceIp(s));
        }
        if let Some(q) = f.query {
            keys.push(HashKey::Query(q));
        }
        match keys.len() {
            1 => Ok(keys.remove(0)),
            n => Err(format!(
                "give exactly one of `header`, `cookie`, `source_ip`, `query` (found {n})"
            )),
        }
    }
}

impl From<HashKey> for HashKeyFields {
    fn from(k: HashKey) -> Self {
        let mut f = HashKeyFields::default();
        match k {
            HashKey::Header(h) => f.header = Some(h),
            HashKey::Cookie(c) => f.cookie = Some(c),
            HashKey::SourceIp(s) => f.source_ip = Some(s),
            HashKey::Query(q) => f.query = Some(q),
        }
        f
    }
}

/// The cookie hashed for affinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CookieKey {
    /// Its name.
    pub name: String,
    /// Lifetime of a generated cookie, seconds (0: a session cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The consistent-hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// Ketama ring hash.
    #[default]
    RingHash,
    /// Maglev.
    Maglev,
}

/// Connection limits and outlier ejection (Istio's DestinationRule traffic policy).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Most TCP connections to the service, per proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Most requests waiting for a connection, per proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Most requests per connection (0: unlimited; 1 disables keep-alive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// Consecutive 5xx responses that eject an instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// Seconds between ejection sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
    /// Minimum ejection time, seconds (multiplied by the number of ejections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_s: Option<u64>,
    /// Most instances ejected at once, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// A rate-limit period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

/// Rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// A token bucket in every proxy of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalLimit>,
    /// Limits shared by every proxy, counted by a rate-limit service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalLimit>,
}

/// A local (per proxy) token bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LocalLimit {
    /// Tokens added per period.
    pub requests: u32,
    /// The period.
    pub per: Per,
    /// Bucket size (default: `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// What happens when the rate-limit service cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// Limits counted by a shared rate-limit service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GlobalLimit {
    /// The rate-limit service's domain.
    pub domain: String,
    /// Where it listens (`host:port`, gRPC).
    pub service: String,
    /// When it cannot be asked.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// How long a proxy waits for the service's answer, milliseconds (default: Envoy's 20); a
    /// later answer counts as a failure (`failure_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// The limits.
    pub limits: Vec<Limit>,
}

/// What a global limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// Each value of a header (`name`).
    Header,
    /// Each client address.
    RemoteAddress,
    /// One path (`value`).
    Path,
}

/// One global limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// What it counts by.
    pub key: LimitKey,
    /// The header, for `key: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The path, for `key: path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    pub per: Per,
}

/// A locality level, from narrowest to broadest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A campus (Istio's subzone).
    Campus,
    /// An availability zone.
    Zone,
    /// A region.
    Region,
}

/// Nearby routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Locality {
    /// The levels to prefer, narrowest first (`[zone, region]`).
    pub levels: Vec<Level>,
    /// Never leave the broadest level (`false`: fail over anywhere when nothing nearby is
    /// healthy).
    #[serde(default)]
    pub strict: bool,
}

/// Baseline and feature environments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Environments {
    /// The pod label that names an instance's environment.
    pub label: String,
    /// The environment every request falls back to.
    pub baseline: String,
    /// The request header that names a request's environment.
    pub header: String,
    /// Headers that must travel along the call chain.
    #[serde(default)]
    pub propagate: Vec<String>,
}
