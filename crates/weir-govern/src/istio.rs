//! The Istio objects Weir writes (`networking.istio.io/v1`), typed: only the fields the
//! compiler sets, serialised in the order Istio documents them, empty fields left out.
//!
//! Written by hand: the Istio type crates on crates.io are unmaintained generated code for old
//! API versions; the fields here are checked against Istio's published schemas in the tests.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::matcher::StringMatch;

/// `apiVersion` of the objects.
pub const NETWORKING_V1: &str = "networking.istio.io/v1";

/// Object metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectMeta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A `VirtualService`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    /// `networking.istio.io/v1`.
    pub api_version: &'static str,
    /// `VirtualService`.
    pub kind: &'static str,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Hosts and routes.
    pub spec: VirtualServiceSpec,
}

/// `VirtualService.spec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualServiceSpec {
    /// The governed host.
    pub hosts: Vec<String>,
    /// Ordered HTTP routes.
    pub http: Vec<HttpRoute>,
}

/// One `spec.http[]` route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRoute {
    /// Its name.
    pub name: String,
    /// Its match (one entry: every condition ANDed); absent for the fallback.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Where matching requests go.
    pub route: Vec<HttpRouteDestination>,
    /// Header operations on matching requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// One `HTTPMatchRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// The path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Request headers that must match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Query parameters that must match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Request headers that must not match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Labels the calling workload must have.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
}

impl Serialize for StringMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (key, value) = match self {
            StringMatch::Exact(v) => ("exact", v),
            StringMatch::Prefix(v) => ("prefix", v),
            StringMatch::Regex(v) => ("regex", v),
            StringMatch::Present => return s.serialize_map(Some(0))?.end(),
        };
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(key, value)?;
        map.end()
    }
}

/// One weighted destination of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRouteDestination {
    /// The destination.
    pub destination: DestinationRef,
    /// Its share, percent (left out when it is the route's only destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `destination`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationRef {
    /// The service host.
    pub host: String,
    /// The subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The service port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `port`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// `headers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headers {
    /// Operations on the request.
    pub request: HeaderOperations,
}

/// `HeaderOperations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderOperations {
    /// Headers set (overwritten).
    pub set: BTreeMap<String, String>,
}

/// A `DestinationRule`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    /// `networking.istio.io/v1`.
    pub api_version: &'static str,
    /// `DestinationRule`.
    pub kind: &'static str,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Host, traffic policy, subsets.
    pub spec: DestinationRuleSpec,
}

/// `DestinationRule.spec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The governed host.
    pub host: String,
    /// Policies for every subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// The subsets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<SubsetDef>,
}

/// A `Subset`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetDef {
    /// Its name.
    pub name: String,
    /// The pod labels selecting it.
    pub labels: BTreeMap<String, String>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Load balancing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Connection limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Outlier ejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// `LoadBalancerSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Consistent hashing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// Locality load balancing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLbSetting>,
}

/// `ConsistentHashLB`: one key, one algorithm.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// Hash a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash a cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash the source IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash a query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
}

/// `HTTPCookie`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpCookie {
    /// Name.
    pub name: String,
    /// Path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime (`3600s`; `0s` for a session cookie).
    pub ttl: String,
}

/// `RingHash`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum virtual nodes.
    pub minimum_ring_size: u64,
}

/// `MagLev`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// Lookup table size (prime).
    pub table_size: u64,
}

/// `LocalityLoadBalancerSetting`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalityLbSetting {
    /// Whether locality load balancing is on.
    pub enabled: bool,
    /// Labels, broadest first, endpoints are prioritised by.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ConnectionPool {
    /// TCP settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// `TCPSettings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Most connections.
    pub max_connections: u32,
}

/// `HTTPSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Most pending requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<u32>,
    /// Most requests per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx responses that eject an endpoint.
    #[serde(
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// Sweep interval (`10s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Minimum ejection time (`30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Most endpoints ejected, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// A duration as Istio writes it.
pub fn seconds(s: u64) -> String {
    format!("{s}s")
}

/// `apiVersion` of `EnvoyFilter` (only served as `v1alpha3`).
pub const NETWORKING_V1ALPHA3: &str = "networking.istio.io/v1alpha3";

/// An `EnvoyFilter`: patches to the Envoy configuration Istio generates for some workloads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilter {
    /// `networking.istio.io/v1alpha3`.
    pub api_version: &'static str,
    /// `EnvoyFilter`.
    pub kind: &'static str,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Which workloads, which patches.
    pub spec: EnvoyFilterSpec,
}

/// `EnvoyFilter.spec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilterSpec {
    /// The pods whose proxies are patched.
    pub workload_selector: WorkloadSelector,
    /// The patches, applied in order.
    pub config_patches: Vec<ConfigPatch>,
}

/// `WorkloadSelector`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSelector {
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
}

/// One `EnvoyConfigObjectPatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch {
    /// `HTTP_FILTER`, `VIRTUAL_HOST`, `ROUTE_CONFIGURATION`.
    pub apply_to: &'static str,
    /// Where in the generated configuration.
    #[serde(rename = "match")]
    pub match_: PatchMatch,
    /// What to do there.
    pub patch: Patch,
}

/// `EnvoyConfigObjectMatch`: exactly one of `listener` and `route_configuration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchMatch {
    /// `SIDECAR_INBOUND`, `SIDECAR_OUTBOUND`.
    pub context: &'static str,
    /// Proxy version regex (only when the user asks for one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMatch>,
    /// A listener's filter chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    /// A route configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_configuration: Option<RouteConfigurationMatch>,
}

/// `ProxyMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyMatch {
    /// A regex over the proxy's version.
    pub proxy_version: String,
}

/// `ListenerMatch`: the HTTP connection manager, and a filter within it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMatch {
    /// The filter chain.
    pub filter_chain: FilterChainMatch,
}

/// `FilterChainMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterChainMatch {
    /// The network filter.
    pub filter: FilterMatch,
}

/// `FilterMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterMatch {
    /// `envoy.filters.network.http_connection_manager`.
    pub name: &'static str,
    /// The HTTP filter the patch is placed relative to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// `SubFilterMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubFilterMatch {
    /// `envoy.filters.http.router`.
    pub name: &'static str,
}

/// `RouteConfigurationMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfigurationMatch {
    /// A virtual host by name (`inbound|http|8080`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
}

/// `VirtualHostMatch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHostMatch {
    /// Its name.
    pub name: String,
}

/// `Patch`: an operation and Envoy configuration (checked by a real Envoy in the tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patch {
    /// `INSERT_BEFORE`, `MERGE`.
    pub operation: &'static str,
    /// Envoy's own configuration, in its JSON form.
    pub value: serde_json::Value,
}
