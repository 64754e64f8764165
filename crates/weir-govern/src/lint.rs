//! `weir govern lint`: the compiler's semantic checks, run on Istio YAML a user wrote by hand
//! (VirtualServices, DestinationRules, EnvoyFilters), plus the ways hand-written EnvoyFilters
//! are known to fail silently.
//!
//! Objects are read as plain YAML values, not typed, so that any object a user has can be
//! looked at. Each finding names the file, the object, the field path and what goes wrong in
//! the proxy. Codes `IST0xxx` are the `istioctl analyze` messages a check corresponds to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::limits::{HCM, ROUTER};
use crate::matcher::check_re2;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object does something other than what it says, or nothing at all.
    Error,
    /// It works, with a caveat worth knowing.
    Warning,
}

/// One thing wrong with a hand-written object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub origin: String,
    /// `Kind name` (with `(document N)` when the file has several).
    pub object: String,
    /// The field, from the object's root.
    pub path: String,
    /// Error or warning.
    pub severity: Severity,
    /// A stable code (`IST0101` where istioctl has one, `WEIR-…` otherwise).
    pub code: &'static str,
    /// What happens, and what to write instead.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}: {}: {}: {level}[{}]: {}",
            self.origin, self.object, self.path, self.code, self.message
        )
    }
}

/// One parsed object.
struct Object {
    origin: String,
    object: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    value: Value,
}

struct Lint {
    out: Vec<Finding>,
}

impl Lint {
    fn add(
        &mut self,
        o: &Object,
        path: &str,
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.out.push(Finding {
            origin: o.origin.clone(),
            object: o.object.clone(),
            path: path.to_string(),
            severity,
            code,
            message: message.into(),
        });
    }
}

/// Lints every object in `text` (multi-document YAML) read from `origin`. A document that is
/// not YAML is one error finding; kinds Weir does not check are passed over.
pub fn lint(text: &str, origin: &str) -> Vec<Finding> {
    lint_all(&[(origin, text)])
}

/// Lints the objects of several files together (`(origin, text)` each), so that a
/// VirtualService is checked against the DestinationRules of every file, hosts across all of
/// them, and rate-limit filters against every file's `rate_limits`.
pub fn lint_all(files: &[(&str, &str)]) -> Vec<Finding> {
    let mut l = Lint { out: Vec::new() };
    let mut objects = Vec::new();
    for (origin, text) in files {
        read_objects(origin, text, &mut objects, &mut l);
    }
    for o in &objects {
        match o.kind.as_str() {
            "VirtualService" => virtual_service(&mut l, o, &objects),
            "DestinationRule" => destination_rule(&mut l, o),
            "EnvoyFilter" => envoy_filter(&mut l, o, &objects),
            _ => {}
        }
    }
    conflicting_hosts(&mut l, &objects);
    l.out
}

fn read_objects(origin: &str, text: &str, objects: &mut Vec<Object>, l: &mut Lint) {
    let (count, _) = crate::scan_yaml(text);
    let several = count > 1;
    for (i, doc) in serde_norway::Deserializer::from_str(text)
        .take(count)
        .enumerate()
    {
        let label = if several {
            format!("(document {}) ", i + 1)
        } else {
            String::new()
        };
        let value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                l.out.push(Finding {
                    origin: origin.to_string(),
                    object: format!("{label}document"),
                    path: String::new(),
                    severity: Severity::Error,
                    code: "WEIR-YAML",
                    message: format!("not YAML: {e}"),
                });
                // The reader does not get past a syntax error (nor end after one).
                break;
            }
        };
        let kind = str_at(&value, &["kind"]).unwrap_or("?").to_string();
        let name = str_at(&value, &["metadata", "name"])
            .unwrap_or("?")
            .to_string();
        objects.push(Object {
            origin: origin.to_string(),
            object: format!("{label}{kind} {name}"),
            namespace: str_at(&value, &["metadata", "namespace"]).map(str::to_string),
            kind,
            name,
            value,
        });
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The host a short name stands for in `namespace` (Istio resolves short names in the
/// rule's namespace).
fn fqdn(host: &str, namespace: Option<&str>) -> String {
    match (host.contains('.'), namespace) {
        (false, Some(ns)) => format!("{host}.{ns}.svc.cluster.local"),
        _ => host.to_string(),
    }
}

// ---------------------------------------------------------------- VirtualService

fn virtual_service(l: &mut Lint, o: &Object, all: &[Object]) {
    let spec = &o.value["spec"];
    let hosts = items(spec.get("hosts"));
    if hosts.is_empty() {
        l.add(
            o,
            "spec.hosts",
            Severity::Error,
            "WEIR-VS01",
            "no hosts: the rule applies to nothing",
        );
    }
    let gateways: Vec<&str> = items(spec.get("gateways"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !gateways.is_empty() && !gateways.contains(&"mesh") {
        l.add(
            o,
            "spec.gateways",
            Severity::Warning,
            "WEIR-VS02",
            format!(
                "bound to gateway(s) {} only: calls from inside the mesh ignore these routes \
                 (add `mesh` to the list to govern them too)",
                gateways.join(", ")
            ),
        );
    }
    let http = items(spec.get("http"));
    let mut earlier: Vec<(usize, Vec<&Value>)> = Vec::new();
    for (i, route) in http.iter().enumerate() {
        let path = format!("spec.http[{i}]");
        let matches: Vec<&Value> = items(route.get("match")).iter().collect();
        if let Some((j, _)) = earlier.iter().find(|(_, m)| {
            m.is_empty()
                || m.iter()
                    .any(|x| x.as_object().is_some_and(|x| x.is_empty()))
                || (!matches.is_empty() && matches.iter().all(|x| m.contains(x)))
        }) {
            let code = if earlier[*j].1.is_empty() {
                "IST0130"
            } else {
                "IST0131"
            };
            l.add(
                o,
                &format!("{path}.match"),
                Severity::Error,
                code,
                format!(
                    "unreachable: spec.http[{j}] comes first and matches every request this \
                     rule matches"
                ),
            );
        }
        earlier.push((i, matches.clone()));
        for (k, m) in matches.iter().enumerate() {
            regexes(l, o, m, &format!("{path}.match[{k}]"));
        }
        destinations(l, o, route, &path, all);
    }
}

/// Every `regex` under a match must be RE2.
fn regexes(l: &mut Lint, o: &Object, v: &Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let p = format!("{path}.{k}");
                if k == "regex"
                    && let Some(re) = x.as_str()
                    && let Err(e) = check_re2(re)
                {
                    l.add(o, &p, Severity::Error, "WEIR-RE2", format!("{re:?}: {e}"));
                }
                regexes(l, o, x, &p);
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                regexes(l, o, x, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn destinations(l: &mut Lint, o: &Object, route: &Value, path: &str, all: &[Object]) {
    let dests = items(route.get("route"));
    if dests.len() > 1 {
        let weights: Vec<Option<u64>> = dests
            .iter()
            .map(|d| d.get("weight").and_then(Value::as_u64))
            .collect();
        let sum: u64 = weights.iter().flatten().sum();
        if weights.iter().any(Option::is_none) || sum != 100 {
            l.add(
                o,
                &format!("{path}.route"),
                Severity::Warning,
                "WEIR-VS03",
                format!(
                    "weights sum to {sum}{}: older Istio versions refuse the rule and newer \
                     ones normalise it, so the split is not what it reads",
                    if weights.iter().any(Option::is_none) {
                        " (some missing)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    for (k, d) in dests.iter().enumerate() {
        let Some(subset) = str_at(d, &["destination", "subset"]) else {
            continue;
        };
        let host = fqdn(
            str_at(d, &["destination", "host"]).unwrap_or_default(),
            o.namespace.as_deref(),
        );
        let rules: Vec<&Object> = all
            .iter()
            .filter(|r| {
                r.kind == "DestinationRule"
                    && str_at(&r.value, &["spec", "host"])
                        .is_some_and(|h| fqdn(h, r.namespace.as_deref()) == host)
            })
            .collect();
        let defined = rules.iter().any(|r| {
            items(at(&r.value, &["spec", "subsets"]))
                .iter()
                .any(|s| str_at(s, &["name"]) == Some(subset))
        });
        if !defined {
            let why = if rules.is_empty() {
                "no DestinationRule in these files is for this host".to_string()
            } else {
                format!(
                    "DestinationRule {} defines no such subset",
                    rules
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            l.add(
                o,
                &format!("{path}.route[{k}].destination.subset"),
                if rules.is_empty() {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                "IST0101",
                format!("subset {subset:?} of {host}: {why}; requests to it fail with 503 (NR)"),
            );
        }
    }
}

fn conflicting_hosts(l: &mut Lint, all: &[Object]) {
    let mut seen: BTreeMap<(String, BTreeSet<String>), &Object> = BTreeMap::new();
    for o in all.iter().filter(|o| o.kind == "VirtualService") {
        let spec = &o.value["spec"];
        let mut gateways: BTreeSet<String> = items(spec.get("gateways"))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if gateways.is_empty() {
            gateways.insert("mesh".to_string());
        }
        for (i, h) in items(spec.get("hosts")).iter().enumerate() {
            let Some(h) = h.as_str() else { continue };
            let key = (fqdn(h, o.namespace.as_deref()), gateways.clone());
            if let Some(first) = seen.get(&key) {
                let message = format!(
                    "host {h} is also routed by {}: Istio merges or drops one of them, so \
                     which routes apply is undefined",
                    first.object
                );
                l.add(
                    o,
                    &format!("spec.hosts[{i}]"),
                    Severity::Error,
                    "IST0109",
                    message,
                );
            } else {
                seen.insert(key, o);
            }
        }
    }
}

// --------------------------------------------------------------- DestinationRule

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn destination_rule(l: &mut Lint, o: &Object) {
    let spec = &o.value["spec"];
    let mut policies = vec![("spec.trafficPolicy".to_string(), spec.get("trafficPolicy"))];
    for (i, s) in items(spec.get("subsets")).iter().enumerate() {
        policies.push((
            format!("spec.subsets[{i}].trafficPolicy"),
            s.get("trafficPolicy"),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, s) in items(spec.get("subsets")).iter().enumerate() {
        let name = str_at(s, &["name"]).unwrap_or_default();
        if !names.insert(name) {
            l.add(
                o,
                &format!("spec.subsets[{i}].name"),
                Severity::Error,
                "WEIR-DR01",
                format!("subset {name:?} is defined twice: one of them is ignored"),
            );
        }
        if s.get("labels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            l.add(
                o,
                &format!("spec.subsets[{i}].labels"),
                Severity::Warning,
                "WEIR-DR02",
                "no labels: the subset is every instance of the host",
            );
        }
    }
    for (path, tp) in policies {
        let Some(tp) = tp else { continue };
        let lb = tp.get("loadBalancer");
        let hash = lb.and_then(|lb| lb.get("consistentHash"));
        let locality_off = lb
            .and_then(|lb| at(lb, &["localityLbSetting", "enabled"]))
            .and_then(Value::as_bool)
            == Some(false);
        if hash.is_some() && !locality_off {
            l.add(
                o,
                &format!("{path}.loadBalancer.localityLbSetting"),
                Severity::Warning,
                "WEIR-DR03",
                "consistent hashing with locality load balancing left on (the mesh default \
                 when outlier detection is set): each locality hashes over its own instances, \
                 so one key reaches different instances from different callers — set \
                 localityLbSetting: { enabled: false } unless that is wanted",
            );
        }
        if let Some(size) = hash
            .and_then(|h| at(h, &["maglev", "tableSize"]))
            .and_then(Value::as_u64)
            && !is_prime(size)
        {
            l.add(
                o,
                &format!("{path}.loadBalancer.consistentHash.maglev.tableSize"),
                Severity::Error,
                "WEIR-DR04",
                format!("{size} is not a prime: Envoy refuses the cluster"),
            );
        }
        if let Some(od) = tp.get("outlierDetection") {
            let pct = od.get("maxEjectionPercent").and_then(Value::as_u64);
            let min_health = od
                .get("minHealthPercent")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if pct == Some(100) && min_health == 0 {
                l.add(
                    o,
                    &format!("{path}.outlierDetection.maxEjectionPercent"),
                    Severity::Warning,
                    "WEIR-DR05",
                    "100 lets outlier detection eject every instance at once, and with \
                     minHealthPercent 0 (Istio's default: no panic mode) a shared cause — a bad \
                     dependency, a bad deploy — leaves no endpoint: every request fails with \
                     503 (UH) instead of degrading; keep it well below 100 (Istio's default is \
                     10) or set minHealthPercent",
                );
            }
        }
    }
}

// ------------------------------------------------------------------ EnvoyFilter

/// Envoy's legacy filter names (lookup by them was removed) → the names Istio generates.
const LEGACY_NAMES: [(&str, &str); 5] = [
    ("envoy.http_connection_manager", HCM),
    ("envoy.router", ROUTER),
    ("envoy.rate_limit", "envoy.filters.http.ratelimit"),
    ("envoy.cors", "envoy.filters.http.cors"),
    ("envoy.fault", "envoy.filters.http.fault"),
];

const MATCH_FIELDS: [&str; 5] = [
    "context",
    "proxy",
    "listener",
    "routeConfiguration",
    "cluster",
];

fn envoy_filter(l: &mut Lint, o: &Object, all: &[Object]) {
    let spec = &o.value["spec"];
    if spec.get("workloadSelector").is_none() && spec.get("targetRefs").is_none() {
        l.add(
            o,
            "spec.workloadSelector",
            Severity::Warning,
            "WEIR-EF01",
            "no workloadSelector: the patches apply to every proxy in the namespace (every \
             proxy in the mesh when in the root namespace)",
        );
    }
    for (i, p) in items(spec.get("configPatches")).iter().enumerate() {
        let path = format!("spec.configPatches[{i}]");
        let apply_to = str_at(p, &["applyTo"]).unwrap_or_default();
        let m = p.get("match");
        if let Some(map) = m.and_then(Value::as_object) {
            for k in map.keys().filter(|k| !MATCH_FIELDS.contains(&k.as_str())) {
                let hint = match k.as_str() {
                    "filter" => " — it belongs under match.listener.filterChain.filter",
                    "subFilter" => {
                        " — it belongs under match.listener.filterChain.filter.subFilter"
                    }
                    _ => "",
                };
                l.add(
                    o,
                    &format!("{path}.match.{k}"),
                    Severity::Error,
                    "WEIR-EF02",
                    format!(
                        "match has no field `{k}`{hint}: the API server prunes it without a \
                         word, so the patch matches more (or other) places than it says"
                    ),
                );
            }
        }
        if let Some(v) = m.and_then(|m| str_at(m, &["proxy", "proxyVersion"])) {
            l.add(
                o,
                &format!("{path}.match.proxy.proxyVersion"),
                Severity::Error,
                "WEIR-EF03",
                format!(
                    "pinned to proxies whose version matches {v:?} (an unanchored regex): \
                     after an upgrade the patch silently applies to nothing; leave it out, or \
                     anchor a range you test (`^1\\.2[4-9]\\.`)"
                ),
            );
        }
        if let Some(ctx) = m.and_then(|m| str_at(m, &["context"]))
            && ctx == "ANY"
            && apply_to == "HTTP_FILTER"
        {
            l.add(
                o,
                &format!("{path}.match.context"),
                Severity::Warning,
                "WEIR-EF04",
                "context ANY inserts the filter into gateways, inbound and outbound listeners: \
                 a call between two meshed services passes it twice (SIDECAR_INBOUND limits \
                 the service's own traffic)",
            );
        }
        let filter = m.and_then(|m| at(m, &["listener", "filterChain", "filter"]));
        for (field, v) in [
            ("name", filter.and_then(|f| str_at(f, &["name"]))),
            (
                "subFilter.name",
                filter.and_then(|f| str_at(f, &["subFilter", "name"])),
            ),
        ] {
            legacy(
                l,
                o,
                &format!("{path}.match.listener.filterChain.filter.{field}"),
                v,
                true,
            );
        }
        let op = str_at(p, &["patch", "operation"]).unwrap_or_default();
        if apply_to == "HTTP_FILTER"
            && matches!(op, "INSERT_BEFORE" | "INSERT_AFTER")
            && filter.and_then(|f| f.get("subFilter")).is_none()
        {
            l.add(
                o,
                &format!("{path}.match.listener.filterChain.filter.subFilter"),
                Severity::Warning,
                "WEIR-EF05",
                format!(
                    "{op} without a subFilter places the filter at the head of the chain, \
                     ahead of authentication and the others: name the filter it goes before \
                     ({ROUTER})"
                ),
            );
        }
        let value = p.get("patch").and_then(|p| p.get("value"));
        if let Some(v) = value {
            legacy(
                l,
                o,
                &format!("{path}.patch.value.name"),
                str_at(v, &["name"]),
                false,
            );
            typed_configs(l, o, v, &format!("{path}.patch.value"));
        }
        if is_ratelimit_filter(value) && !sends_descriptors(all) {
            l.add(
                o,
                &format!("{path}.patch.value"),
                Severity::Error,
                "WEIR-EF06",
                "the rate-limit filter only asks the service about descriptors that routes \
                 send, and no route or virtual host here has `rate_limits` actions: nothing \
                 is ever limited — add a VIRTUAL_HOST or HTTP_ROUTE patch with rate_limits",
            );
        }
        if let Some(v) = value {
            grpc_authority(l, o, v, &format!("{path}.patch.value"));
        }
        if apply_to == "CLUSTER"
            && op == "ADD"
            && let Some(c) = value
        {
            cluster(l, o, c, &format!("{path}.patch.value"), all);
        }
    }
}

/// A legacy filter name: in a match it finds nothing (Istio stopped matching legacy names in
/// 1.19); as the name of an inserted filter it is only a label (Envoy picks the extension by
/// `typed_config`), but later patches looking for the real name miss it.
fn legacy(l: &mut Lint, o: &Object, path: &str, name: Option<&str>, in_match: bool) {
    let Some(n) = name else { return };
    let Some((_, new)) = LEGACY_NAMES.iter().find(|(old, _)| *old == n) else {
        return;
    };
    let (severity, what) = if in_match {
        (
            Severity::Error,
            "Istio generates the canonical name and stopped matching legacy ones in 1.19, \
             so this match finds nothing and the patch is silently skipped",
        )
    } else {
        (
            Severity::Warning,
            "Envoy picks the filter by typed_config, so it loads, but other patches and tools \
             looking for the canonical name do not find it",
        )
    };
    l.add(
        o,
        path,
        severity,
        "WEIR-EF07",
        format!("{n:?} is a legacy name for {new:?}: {what} — write {new:?}"),
    );
}

/// `typed_config` of removed API versions (v2).
fn typed_configs(l: &mut Lint, o: &Object, v: &Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let p = format!("{path}.{k}");
                if k == "@type"
                    && let Some(t) = x.as_str()
                    && (t.contains(".v2.") || t.contains(".v2alpha."))
                {
                    l.add(
                        o,
                        &p,
                        Severity::Error,
                        "WEIR-EF08",
                        format!("{t}: the v2 API was removed from Envoy; use the v3 type"),
                    );
                }
                typed_configs(l, o, x, &p);
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                typed_configs(l, o, x, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn is_ratelimit_filter(v: Option<&Value>) -> bool {
    let Some(v) = v else { return false };
    let name = str_at(v, &["name"]).unwrap_or_default();
    let ty = str_at(v, &["typed_config", "@type"]).unwrap_or_default();
    name == "envoy.filters.http.ratelimit"
        || name == "envoy.rate_limit"
        || ty.ends_with("filters.http.ratelimit.v3.RateLimit")
}

/// Whether any patch in the files adds `rate_limits` (to a virtual host, a route, or the
/// route configuration).
fn sends_descriptors(all: &[Object]) -> bool {
    fn has(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, x)| k == "rate_limits" || has(x)),
            Value::Array(xs) => xs.iter().any(has),
            _ => false,
        }
    }
    all.iter()
        .filter(|o| o.kind == "EnvoyFilter")
        .flat_map(|o| items(at(&o.value, &["spec", "configPatches"])))
        .filter(|p| {
            matches!(
                str_at(p, &["applyTo"]),
                Some("VIRTUAL_HOST" | "HTTP_ROUTE" | "ROUTE_CONFIGURATION")
            )
        })
        .any(|p| p.get("patch").is_some_and(has))
}

/// A cluster an EnvoyFilter adds.
fn cluster(l: &mut Lint, o: &Object, c: &Value, path: &str, all: &[Object]) {
    let ty = str_at(c, &["type"]).unwrap_or("STATIC");
    let name = str_at(c, &["name"]).unwrap_or_default();
    for (i, e) in items(at(c, &["load_assignment", "endpoints"]))
        .iter()
        .enumerate()
    {
        for (j, lb) in items(e.get("lb_endpoints")).iter().enumerate() {
            let addr = at(lb, &["endpoint", "address", "socket_address", "address"])
                .and_then(Value::as_str);
            if ty == "STATIC"
                && let Some(a) = addr
                && a.parse::<std::net::IpAddr>().is_err()
            {
                l.add(
                    o,
                    &format!(
                        "{path}.load_assignment.endpoints[{i}].lb_endpoints[{j}].endpoint.address.socket_address.address"
                    ),
                    Severity::Error,
                    "WEIR-EF09",
                    format!(
                        "{a:?} is a DNS name in a STATIC cluster, which takes IP addresses only: \
                         Envoy rejects the cluster; use type STRICT_DNS, or better the cluster \
                         Istio already has for the service (outbound|PORT||HOST)"
                    ),
                );
            }
        }
    }
    // A cluster a gRPC service uses must speak HTTP/2.
    let grpc_user = all
        .iter()
        .filter(|x| x.kind == "EnvoyFilter")
        .any(|x| mentions_grpc_cluster(&x.value, name));
    let h2 = c.get("http2_protocol_options").is_some()
        || at(
            c,
            &[
                "typed_extension_protocol_options",
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config",
                "http2_protocol_options",
            ],
        )
        .is_some();
    if grpc_user && !h2 {
        l.add(
            o,
            path,
            Severity::Error,
            "WEIR-EF10",
            format!(
                "cluster {name:?} carries gRPC (a filter's envoy_grpc names it) but is not \
                 HTTP/2: every call fails; add typed_extension_protocol_options with \
                 explicit_http_config.http2_protocol_options"
            ),
        );
    }
}

/// An `envoy_grpc` whose cluster name is not a valid HTTP/2 authority (Istio's
/// `outbound|PORT||HOST`) needs `authority`: Envoy sends the cluster name otherwise, and an
/// HTTP/2 server refuses the `|` and resets every call.
fn grpc_authority(l: &mut Lint, o: &Object, v: &Value, path: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if k == "envoy_grpc"
                    && let Some(name) = str_at(x, &["cluster_name"])
                    && name.contains('|')
                    && x.get("authority").is_none()
                {
                    l.add(
                        o,
                        &p,
                        Severity::Error,
                        "WEIR-EF11",
                        format!(
                            "no `authority`: Envoy sends the cluster name {name:?} as the gRPC \
                             :authority, an HTTP/2 server refuses its `|` and resets the call, \
                             so every check takes the failure mode — set authority to the \
                             service's host"
                        ),
                    );
                }
                grpc_authority(l, o, x, &p);
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                grpc_authority(l, o, x, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn mentions_grpc_cluster(v: &Value, name: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            (k == "envoy_grpc" && str_at(x, &["cluster_name"]) == Some(name))
                || mentions_grpc_cluster(x, name)
        }),
        Value::Array(xs) => xs.iter().any(|x| mentions_grpc_cluster(x, name)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
