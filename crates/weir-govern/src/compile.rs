//! A checked policy → Istio objects, or every problem with it.

use std::collections::{BTreeMap, BTreeSet};

use crate::istio::{
    ConnectionPool, ConsistentHash, DestinationRef, DestinationRule, DestinationRuleSpec,
    EnvoyFilter, HeaderOperations, Headers, HttpCookie, HttpMatchRequest, HttpRoute,
    HttpRouteDestination, HttpSettings, LoadBalancer, LocalityLbSetting, Maglev, NETWORKING_V1,
    ObjectMeta, OutlierDetection, PortSelector, RingHash, SubsetDef, TcpSettings, TrafficPolicy,
    VirtualService, VirtualServiceSpec, seconds,
};
use crate::matcher::{self, Compiled, StringMatch, Target};
use crate::monitoring::{self, MonitoringOutput};
use crate::policy::{
    API_VERSION, Affinity, CircuitBreaker, HashAlgorithm, HashKey, KIND, Level, Locality, Route,
    TrafficPolicy as Policy,
};
use crate::problem::{Problems, Report};
use crate::ratelimit::RateLimitConfig;
use crate::{environments, limits};

/// The label every generated object carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "weir");
/// The label naming the policy an object was compiled from.
pub const POLICY_LABEL: &str = "weir.dev/traffic-policy";

/// Envoy's outlier-detection defaults, used when locality failover needs outlier detection
/// and the policy set none.
const DEFAULT_OUTLIER: (u32, u64, u64) = (5, 10, 30);
/// Ring hash's default minimum ring size.
const DEFAULT_RING: u64 = 1024;
/// Maglev's default table size (prime).
const DEFAULT_MAGLEV: u64 = 65537;
/// Maglev's table size limit (Envoy's).
const MAGLEV_MAX: u64 = 5_000_011;

/// What one policy compiles into.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The subsets and traffic policy.
    pub destination_rule: DestinationRule,
    /// The routes.
    pub virtual_service: VirtualService,
    /// Rate-limit filters and actions, and header clean-up for environments.
    pub envoy_filters: Vec<EnvoyFilter>,
    /// The global rate-limit service's configuration (envoyproxy/ratelimit's format), also
    /// carried by [`Output::ratelimit_config_map`].
    pub ratelimit: Option<RateLimitConfig>,
    /// Alert rules and a dashboard, when the policy asks for monitoring.
    pub monitoring: Option<MonitoringOutput>,
    /// What a user should know about the result (Istio caveats, defaults added).
    pub notes: Vec<String>,
}

impl Output {
    /// The rate-limit service's configuration as a ConfigMap named `<policy>-ratelimit` in the
    /// policy's namespace, one key `<domain>.yaml`, for the service to mount.
    pub fn ratelimit_config_map(&self) -> Result<Option<serde_json::Value>, serde_norway::Error> {
        let Some(rl) = &self.ratelimit else {
            return Ok(None);
        };
        let meta = &self.destination_rule.metadata;
        let mut metadata = serde_json::json!({
            "name": format!("{}-ratelimit", meta.name),
            "labels": meta.labels,
        });
        if let Some(ns) = &meta.namespace {
            metadata["namespace"] = serde_json::Value::String(ns.clone());
        }
        Ok(Some(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": { format!("{}.yaml", rl.domain): serde_norway::to_string(rl)? },
        })))
    }

    /// Every Kubernetes object, in the order to apply them (make before break): the
    /// rate-limit ConfigMap, the DestinationRule, the EnvoyFilters, the VirtualService, the
    /// PrometheusRule.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut out = Vec::new();
        if let Some(cm) = self
            .ratelimit_config_map()
            .map_err(serde::ser::Error::custom)?
        {
            out.push(cm);
        }
        out.push(serde_json::to_value(&self.destination_rule)?);
        for f in &self.envoy_filters {
            out.push(serde_json::to_value(f)?);
        }
        out.push(serde_json::to_value(&self.virtual_service)?);
        if let Some(m) = &self.monitoring {
            out.push(m.prometheus_rule.clone());
        }
        Ok(out)
    }
}

/// Compiles `policy` (read from `origin`); every problem is reported, not only the first.
pub fn compile(policy: &Policy, origin: &str) -> Result<Output, Problems> {
    let mut report = Report::new(origin);
    let mut notes = Vec::new();
    if policy.api_version != API_VERSION {
        report.add(
            "apiVersion",
            Some(format!("{:?}", policy.api_version)),
            format!("expected {API_VERSION}"),
        );
    }
    if policy.kind != KIND {
        report.add(
            "kind",
            Some(format!("{:?}", policy.kind)),
            format!("expected {KIND}"),
        );
    }
    check_name(&mut report, "metadata.name", &policy.metadata.name);
    if let Some(ns) = &policy.metadata.namespace {
        check_name(&mut report, "metadata.namespace", ns);
    }
    let spec = &policy.spec;
    if spec.host.trim().is_empty() {
        report.add("spec.host", None, "name the governed service's host");
    }
    if spec.port == Some(0) || spec.port.is_some_and(|p| p > 65535) {
        report.add(
            "spec.port",
            spec.port.map(|p| p.to_string()),
            "a port is 1..=65535",
        );
    }

    let subsets = check_subsets(policy, &mut report);
    // Environment routes come first: they route on the environment header, which the user's
    // routes may not use.
    let mut routes = environments::plan(policy, &mut report)
        .map(|plan| environments::routes(policy, &plan, &mut report))
        .unwrap_or_default();
    routes.extend(compile_routes(policy, &subsets, &mut report, &mut notes));
    let traffic_policy = traffic_policy(policy, &mut report, &mut notes);
    let mut labels = policy.metadata.labels.clone();
    labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
    labels.insert(POLICY_LABEL.to_string(), policy.metadata.name.clone());
    let metadata = ObjectMeta {
        name: policy.metadata.name.clone(),
        namespace: policy.metadata.namespace.clone(),
        labels,
    };
    let (mut envoy_filters, ratelimit) =
        limits::compile(policy, &metadata, &mut report, &mut notes);
    envoy_filters.extend(environments::filters(
        policy,
        &metadata,
        &mut report,
        &mut notes,
    ));
    let monitoring = monitoring::compile(policy, &metadata, &mut report, &mut notes);
    let destination_rule = DestinationRule {
        api_version: NETWORKING_V1,
        kind: "DestinationRule",
        metadata: metadata.clone(),
        spec: DestinationRuleSpec {
            host: spec.host.clone(),
            traffic_policy,
            subsets: spec
                .subsets
                .iter()
                .map(|s| SubsetDef {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                })
                .collect(),
        },
    };
    let virtual_service = VirtualService {
        api_version: NETWORKING_V1,
        kind: "VirtualService",
        metadata,
        spec: VirtualServiceSpec {
            hosts: vec![spec.host.clone()],
            http: routes,
        },
    };
    report.finish(Output {
        destination_rule,
        virtual_service,
        envoy_filters,
        ratelimit,
        monitoring,
        notes,
    })
}

/// A Kubernetes object name (RFC 1123 label, at most 63 characters).
fn check_name(report: &mut Report, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        report.add(
            path,
            Some(format!("{name:?}")),
            "must be a DNS label: lower-case letters, digits and `-`, at most 63 characters",
        );
    }
}

/// `{path}.name` is a DNS label not used before; `taken` says so when it was.
fn check_unique_name(
    report: &mut Report,
    path: &str,
    name: &str,
    seen: &mut BTreeSet<String>,
    taken: &str,
) {
    let field = format!("{path}.name");
    check_name(report, &field, name);
    if !seen.insert(name.to_string()) {
        report.add(&field, Some(format!("{name:?}")), taken);
    }
}

fn check_subsets(policy: &Policy, report: &mut Report) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, s) in policy.spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        check_unique_name(
            report,
            &path,
            &s.name,
            &mut names,
            "a subset of this name is already defined",
        );
        if s.labels.is_empty() {
            report.add(
                &format!("{path}.labels"),
                None,
                "a subset without labels selects every instance: give the labels that tell it apart",
            );
        }
    }
    names
}

/// One route's conditions, compiled and merged into an Istio match.
fn route_match(
    route: &Route,
    path: &str,
    report: &mut Report,
) -> Option<(HttpMatchRequest, BTreeSet<CompiledKey>)> {
    let mut m = HttpMatchRequest::default();
    let mut keys = BTreeSet::new();
    let mut negated: BTreeMap<String, Vec<StringMatch>> = BTreeMap::new();
    let mut ok = true;
    for (j, c) in route.matches.iter().enumerate() {
        let cpath = format!("{path}.match[{j}]");
        let Some(compiled) = matcher::compile(c, &cpath, report) else {
            ok = false;
            continue;
        };
        keys.insert(CompiledKey::from(&compiled));
        let Compiled {
            target,
            negated: neg,
            matcher,
        } = compiled;
        let clash = |report: &mut Report, what: &str| {
            report.add(
                &cpath,
                None,
                format!(
                    "a second condition on {what} in the same route: Istio keeps one matcher per \
                     {what}, and two conditions cannot be merged into one without changing what \
                     they match — split the route"
                ),
            );
        };
        let what = match &target {
            Target::Header(n) => format!("header {n}"),
            Target::Query(n) => format!("query parameter {n}"),
            Target::SourceLabel(n) => format!("source label {n}"),
            Target::Uri => "the path".to_string(),
            Target::Method => "the method".to_string(),
        };
        let added = match (target, neg) {
            (Target::Header(name), true) => {
                negated.entry(name).or_default().push(matcher);
                true
            }
            (Target::Header(name), false) => insert_once(&mut m.headers, name, matcher),
            (Target::Query(name), _) => insert_once(&mut m.query_params, name, matcher),
            (Target::SourceLabel(name), _) => match matcher {
                StringMatch::Exact(v) => insert_once(&mut m.source_labels, name, v),
                _ => true,
            },
            (Target::Uri, _) => m.uri.replace(matcher).is_none(),
            (Target::Method, _) => m.method.replace(matcher).is_none(),
        };
        if !added {
            clash(report, &what);
            ok = false;
        }
    }
    // Several exclusions on one header: the request must match none of them, which is one
    // exclusion of their alternation.
    for (name, mut ms) in negated {
        let merged = if ms.len() == 1 {
            ms.remove(0)
        } else if ms.contains(&StringMatch::Present) {
            StringMatch::Present
        } else {
            StringMatch::Regex(
                ms.iter()
                    .map(|m| format!("(?:{})", m.as_regex()))
                    .collect::<Vec<_>>()
                    .join("|"),
            )
        };
        m.without_headers.insert(name, merged);
    }
    ok.then_some((m, keys))
}

/// Inserts `value` under `key` unless the key is taken; whether it was inserted.
fn insert_once<V>(map: &mut BTreeMap<String, V>, key: String, value: V) -> bool {
    match map.entry(key) {
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(value);
            true
        }
        std::collections::btree_map::Entry::Occupied(_) => false,
    }
}

/// A compiled condition in comparable form (for shadowing checks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CompiledKey {
    target: Target,
    negated: bool,
    matcher: StringMatch,
}

impl From<&Compiled> for CompiledKey {
    fn from(c: &Compiled) -> Self {
        CompiledKey {
            target: c.target.clone(),
            negated: c.negated,
            matcher: c.matcher.clone(),
        }
    }
}

/// Integer weights summing to 100: as given, or an even split (the first destinations get
/// the remainder, so the result is deterministic).
fn weights(route: &Route, path: &str, report: &mut Report) -> Option<Vec<u32>> {
    let given: Vec<Option<u32>> = route.destinations.iter().map(|d| d.weight).collect();
    if given.iter().all(Option::is_some) {
        let ws: Vec<u32> = given.into_iter().flatten().collect();
        let total: u64 = ws.iter().map(|&w| u64::from(w)).sum();
        if total != 100 {
            report.add(
                &format!("{path}.destinations"),
                Some(
                    ws.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" + "),
                ),
                format!("weights must sum to 100, not {total}"),
            );
            return None;
        }
        Some(ws)
    } else if given.iter().all(Option::is_none) {
        let n = u32::try_from(given.len()).unwrap_or(u32::MAX).max(1);
        let (base, extra) = (100 / n, 100 % n);
        Some((0..n).map(|i| base + u32::from(i < extra)).collect())
    } else {
        report.add(
            &format!("{path}.destinations"),
            None,
            "give a weight to every destination of the route, or to none (an even split)",
        );
        None
    }
}

fn compile_routes(
    policy: &Policy,
    subsets: &BTreeSet<String>,
    report: &mut Report,
    notes: &mut Vec<String>,
) -> Vec<HttpRoute> {
    let spec = &policy.spec;
    if spec.routes.is_empty() && spec.environments.is_none() {
        report.add(
            "spec.routes",
            None,
            "give at least one route (a route without `match` sends everything to its destinations)",
        );
    }
    let mut names = BTreeSet::new();
    let mut seen: Vec<(usize, BTreeSet<CompiledKey>)> = Vec::new();
    let mut out = Vec::new();
    for (i, route) in spec.routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        check_unique_name(
            report,
            &path,
            &route.name,
            &mut names,
            "a route of this name already exists",
        );
        if route.destinations.is_empty() {
            report.add(
                &format!("{path}.destinations"),
                None,
                "give at least one destination",
            );
        }
        for (j, d) in route.destinations.iter().enumerate() {
            if !subsets.contains(&d.subset) {
                report.add(
                    &format!("{path}.destinations[{j}].subset"),
                    Some(format!("{:?}", d.subset)),
                    format!(
                        "no such subset in spec.subsets (Istio: IST0101, requests to it fail with \
                         503 NR); defined: {}",
                        subsets.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        for name in route.set_headers.keys() {
            if name != &name.to_ascii_lowercase() || name.is_empty() {
                report.add(
                    &format!("{path}.set_headers"),
                    Some(format!("{name:?}")),
                    "header names are written in lower case",
                );
            }
        }
        let ws = weights(route, &path, report);
        let Some((m, keys)) = route_match(route, &path, report) else {
            continue;
        };
        // A route is unreachable when an earlier one matches everything it matches: its
        // conditions include every condition of the earlier one (Istio: IST0130/IST0131).
        if let Some((earlier, _)) = seen.iter().find(|(_, k)| k.is_subset(&keys)) {
            let what = if spec.routes[*earlier].matches.is_empty() {
                "matches every request (a fallback must come last)".to_string()
            } else {
                "matches every request this one matches".to_string()
            };
            report.add(
                &format!("{path}.match"),
                Some(format!("{:?}", route.name)),
                format!(
                    "unreachable: route {:?} (spec.routes[{earlier}]) comes first and {what}",
                    spec.routes[*earlier].name
                ),
            );
        }
        seen.push((i, keys));
        let Some(ws) = ws else { continue };
        let single = route.destinations.len() == 1;
        let route_out = HttpRoute {
            name: route.name.clone(),
            matches: if route.matches.is_empty() {
                Vec::new()
            } else {
                vec![m]
            },
            route: route
                .destinations
                .iter()
                .zip(ws)
                .map(|(d, w)| HttpRouteDestination {
                    destination: DestinationRef {
                        host: spec.host.clone(),
                        subset: Some(d.subset.clone()),
                        port: spec.port.map(|number| PortSelector { number }),
                    },
                    weight: (!single).then_some(w),
                })
                .collect(),
            headers: (!route.set_headers.is_empty()).then(|| Headers {
                request: HeaderOperations {
                    set: route.set_headers.clone(),
                },
            }),
        };
        out.push(route_out);
    }
    if !spec.routes.is_empty() && spec.routes.iter().all(|r| !r.matches.is_empty()) {
        notes.push(
            "no fallback route: a request that matches no route gets 404 (Envoy's NR flag); add a \
             last route without `match` to send it somewhere"
                .to_string(),
        );
    }
    out
}

fn traffic_policy(
    policy: &Policy,
    report: &mut Report,
    notes: &mut Vec<String>,
) -> Option<TrafficPolicy> {
    let spec = &policy.spec;
    let mut tp = TrafficPolicy::default();
    if let Some(cb) = &spec.circuit_breaker {
        circuit_breaker(cb, &mut tp, report);
    }
    let mut lb = LoadBalancer::default();
    if let Some(a) = &spec.affinity {
        lb.consistent_hash = affinity(a, policy, report);
        if spec.locality.is_none() {
            lb.locality_lb_setting = Some(LocalityLbSetting {
                enabled: false,
                failover_priority: Vec::new(),
            });
            notes.push(
                "affinity without `locality`: locality load balancing is turned off for this host \
                 (localityLbSetting.enabled: false), otherwise proxies in different localities \
                 would pick different instances for the same key"
                    .to_string(),
            );
        } else {
            notes.push(
                "affinity with `locality`: a key maps to the same instance only among callers in \
                 the same locality; callers elsewhere hash over their own nearest instances"
                    .to_string(),
            );
        }
    }
    if let Some(l) = &spec.locality {
        lb.locality_lb_setting = locality(l, report);
        if tp
            .outlier_detection
            .as_ref()
            .is_none_or(|o| o.consecutive_5xx_errors.is_none())
        {
            let (n, interval, base) = DEFAULT_OUTLIER;
            let od = tp
                .outlier_detection
                .get_or_insert_with(OutlierDetection::default);
            od.consecutive_5xx_errors = Some(n);
            od.interval.get_or_insert_with(|| seconds(interval));
            od.base_ejection_time.get_or_insert_with(|| seconds(base));
            notes.push(format!(
                "locality failover only happens when unhealthy instances are ejected, so outlier \
                 detection was added (consecutive5xxErrors {n}, interval {interval}s, \
                 baseEjectionTime {base}s — Envoy's defaults); set circuit_breaker to choose"
            ));
        }
    }
    if lb != LoadBalancer::default() {
        tp.load_balancer = Some(lb);
    }
    (tp != TrafficPolicy::default()).then_some(tp)
}

fn circuit_breaker(cb: &CircuitBreaker, tp: &mut TrafficPolicy, report: &mut Report) {
    let path = "spec.circuit_breaker";
    let positive = |report: &mut Report, field: &str, v: Option<u32>| {
        if v == Some(0) {
            report.add(
                &format!("{path}.{field}"),
                Some("0".into()),
                "must be at least 1",
            );
        }
    };
    positive(report, "max_connections", cb.max_connections);
    positive(report, "max_pending_requests", cb.max_pending_requests);
    positive(report, "consecutive_5xx", cb.consecutive_5xx);
    for (field, v) in [
        ("interval_s", cb.interval_s),
        ("base_ejection_s", cb.base_ejection_s),
    ] {
        if v == Some(0) {
            report.add(
                &format!("{path}.{field}"),
                Some("0".into()),
                "must be at least 1 second",
            );
        }
    }
    if let Some(p) = cb.max_ejection_percent
        && p > 100
    {
        report.add(
            &format!("{path}.max_ejection_percent"),
            Some(p.to_string()),
            "a percentage is 0..=100",
        );
    }
    let http = HttpSettings {
        http1_max_pending_requests: cb.max_pending_requests,
        max_requests_per_connection: cb.max_requests_per_connection,
    };
    let pool = ConnectionPool {
        tcp: cb
            .max_connections
            .map(|max_connections| TcpSettings { max_connections }),
        http: (http != HttpSettings::default()).then_some(http),
    };
    if pool != ConnectionPool::default() {
        tp.connection_pool = Some(pool);
    }
    let od = OutlierDetection {
        consecutive_5xx_errors: cb.consecutive_5xx,
        interval: cb.interval_s.map(seconds),
        base_ejection_time: cb.base_ejection_s.map(seconds),
        max_ejection_percent: cb.max_ejection_percent,
    };
    if od != OutlierDetection::default() {
        if od.consecutive_5xx_errors.is_none() {
            report.add(
                &format!("{path}.consecutive_5xx"),
                None,
                "outlier detection (interval, ejection time or percent) needs the number of \
                 consecutive 5xx responses that ejects an instance",
            );
        }
        tp.outlier_detection = Some(od);
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn affinity(a: &Affinity, policy: &Policy, report: &mut Report) -> Option<ConsistentHash> {
    let path = "spec.affinity";
    let mut ch = ConsistentHash::default();
    match &a.hash {
        HashKey::Header(h) => {
            if h.is_empty() || h != &h.to_ascii_lowercase() {
                report.add(
                    &format!("{path}.hash.header"),
                    Some(format!("{h:?}")),
                    "a header name, in lower case",
                );
            }
            ch.http_header_name = Some(h.clone());
        }
        HashKey::Cookie(c) => {
            if c.name.is_empty() {
                report.add(&format!("{path}.hash.cookie.name"), None, "name the cookie");
            }
            ch.http_cookie = Some(HttpCookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: seconds(c.ttl_s.unwrap_or(0)),
            });
        }
        HashKey::SourceIp(true) => ch.use_source_ip = Some(true),
        HashKey::SourceIp(false) => {
            report.add(
                &format!("{path}.hash.source_ip"),
                Some("false".into()),
                "`source_ip: true` hashes the caller's address; remove `affinity` for none",
            );
        }
        HashKey::Query(q) => {
            if q.is_empty() {
                report.add(
                    &format!("{path}.hash.query"),
                    None,
                    "name the query parameter",
                );
            }
            ch.http_query_parameter_name = Some(q.clone());
        }
    }
    match a.algorithm {
        HashAlgorithm::RingHash => {
            if let Some(t) = a.table_size {
                report.add(
                    &format!("{path}.table_size"),
                    Some(t.to_string()),
                    "table_size is maglev's; ring_hash takes min_ring_size",
                );
            }
            let size = a.min_ring_size.unwrap_or(DEFAULT_RING);
            if size == 0 {
                report.add(
                    &format!("{path}.min_ring_size"),
                    Some("0".into()),
                    "must be at least 1",
                );
            }
            ch.ring_hash = Some(RingHash {
                minimum_ring_size: size,
            });
        }
        HashAlgorithm::Maglev => {
            if let Some(r) = a.min_ring_size {
                report.add(
                    &format!("{path}.min_ring_size"),
                    Some(r.to_string()),
                    "min_ring_size is ring_hash's; maglev takes table_size",
                );
            }
            let size = a.table_size.unwrap_or(DEFAULT_MAGLEV);
            if !is_prime(size) || size >= MAGLEV_MAX {
                report.add(
                    &format!("{path}.table_size"),
                    Some(size.to_string()),
                    format!(
                        "maglev's table size must be a prime number below {MAGLEV_MAX} (Envoy \
                         refuses others), e.g. 65537"
                    ),
                );
            }
            ch.maglev = Some(Maglev { table_size: size });
        }
    }
    if !a.allow_weighted_split {
        for (i, r) in policy.spec.routes.iter().enumerate() {
            let split = r
                .destinations
                .iter()
                .filter(|d| d.weight != Some(0))
                .count();
            if split > 1 {
                report.add(
                    &format!("spec.routes[{i}].destinations"),
                    Some(format!("{:?}", r.name)),
                    "affinity on a route split by weight across subsets: the subset is picked by \
                     weight first and the hash only chooses an instance inside it, so one key can \
                     land in different subsets. Send the route to one subset, or set \
                     `affinity.allow_weighted_split: true` to accept that",
                );
            }
        }
    }
    Some(ch)
}

/// Istio's topology label for a level.
pub fn topology_label(level: Level) -> &'static str {
    match level {
        Level::Campus => "topology.istio.io/subzone",
        Level::Zone => "topology.kubernetes.io/zone",
        Level::Region => "topology.kubernetes.io/region",
    }
}

fn locality(l: &Locality, report: &mut Report) -> Option<LocalityLbSetting> {
    let path = "spec.locality";
    if l.levels.is_empty() {
        report.add(
            &format!("{path}.levels"),
            None,
            "list the levels to prefer, e.g. [zone, region]",
        );
        return None;
    }
    if !l.levels.windows(2).all(|w| w[0] < w[1]) {
        report.add(
            &format!("{path}.levels"),
            Some(format!("{:?}", l.levels)),
            "list each level once, narrowest first: campus, zone, region",
        );
        return None;
    }
    if l.strict {
        report.add(
            &format!("{path}.strict"),
            Some("true".into()),
            "Istio cannot keep traffic inside the broadest level without naming every locality \
             (localityLbSetting.distribute): with failover priorities it always fails over when \
             nothing nearby is healthy. Use strict: false",
        );
        return None;
    }
    // Broadest first: endpoints sharing every label with the caller come first, then those
    // sharing all but the last, and so on.
    let failover_priority = l
        .levels
        .iter()
        .rev()
        .map(|lvl| topology_label(*lvl).to_string())
        .collect();
    Some(LocalityLbSetting {
        enabled: true,
        failover_priority,
    })
}

/// Renders compiled objects as one multi-document YAML stream, kind by kind in the order of
/// [`Output::objects`]: rate-limit ConfigMaps, DestinationRules (so that the subsets a
/// VirtualService names exist before it does: make before break), EnvoyFilters,
/// VirtualServices, PrometheusRules.
pub fn to_yaml(outputs: &[Output]) -> Result<String, serde_norway::Error> {
    let mut docs = Vec::new();
    for o in outputs {
        if let Some(cm) = o.ratelimit_config_map()? {
            docs.push(serde_norway::to_string(&cm)?);
        }
    }
    for o in outputs {
        docs.push(serde_norway::to_string(&o.destination_rule)?);
    }
    for o in outputs {
        for f in &o.envoy_filters {
            docs.push(serde_norway::to_string(f)?);
        }
    }
    for o in outputs {
        docs.push(serde_norway::to_string(&o.virtual_service)?);
    }
    for o in outputs {
        if let Some(m) = &o.monitoring {
            docs.push(serde_norway::to_string(&m.prometheus_rule)?);
        }
    }
    Ok(docs.join("---\n"))
}
