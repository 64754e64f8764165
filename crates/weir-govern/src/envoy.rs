//! Envoy's own configuration (v3 API, in its JSON form) for what the compiler produces: the
//! routes of a [`VirtualService`] as Envoy route entries, a minimal static bootstrap around
//! them, and `EnvoyFilter` patches applied to it the way Istio applies them.
//!
//! Istio translates a `VirtualService` into Envoy routes itself; rendering the same thing here
//! lets the tests hand every match and every `EnvoyFilter` patch to a real Envoy
//! (`envoy --mode validate`), and is the start of the standalone Envoy target.
//!
//! Matches are rendered as Istio's `TranslateRouteMatch` renders them:
//!
//! - `uri`: `exact` → `path`, `prefix` → `prefix`, `regex` → `safe_regex` (RE2); none → prefix
//!   `/`; paths are case-sensitive;
//! - `headers`: `string_match` (`exact`, `prefix`, `safe_regex`), or `present_match` for `{}`;
//! - `withoutHeaders`: the same matcher with `invert_match`; a value matcher also gets
//!   `treat_missing_header_as_empty`, so a request *without* the header is not excluded (unless
//!   the matcher matches the empty value), and `{}` becomes an inverted `present_match`: the
//!   header is absent. (Plain Envoy does not match an inverted value matcher on a missing
//!   header at all; current Istio sets the flag, see istio/istio#49537.)
//! - headers (both kinds) sorted by name, then `method` as a `:method` header matcher;
//! - `queryParams`: `string_match`, or `present_match` for `{}`.
//!
//! `sourceLabels` select the calling *workload*, which only Istio's control plane knows: a
//! standalone Envoy has nothing to match them against, so they are refused
//! ([`RenderError::SourceLabels`]).
//!
//! **Never:** IO. The caller writes the configuration and runs Envoy.

use serde_json::{Map, Value, json};

use crate::istio::{
    DestinationRef, HttpMatchRequest, HttpRoute, HttpRouteDestination, VirtualService,
};
use crate::matcher::StringMatch;

/// `name` of the HTTP connection manager network filter.
pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
/// `name` of the router HTTP filter (always the last one).
pub const ROUTER: &str = "envoy.filters.http.router";

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_PROTOCOL_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Why something cannot be rendered for Envoy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A match on the caller's labels.
    #[error(
        "route {route:?}: sourceLabels {labels} select the calling workload, which only Istio's \
         control plane knows; a standalone Envoy cannot match on them"
    )]
    SourceLabels {
        /// The route.
        route: String,
        /// The labels, `k=v,...`.
        labels: String,
    },
    /// A route without destinations.
    #[error("route {route:?} has no destination")]
    NoDestination {
        /// The route.
        route: String,
    },
    /// An `EnvoyFilter` patch this module does not know how to apply.
    #[error("EnvoyFilter {filter} configPatches[{index}]: {message}")]
    Patch {
        /// The filter's `namespace/name`.
        filter: String,
        /// The patch's index.
        index: usize,
        /// What is not understood or not found.
        message: String,
    },
    /// A configuration without the shape [`bootstrap`] gives it.
    #[error("not a bootstrap of this module's shape: {0}")]
    Shape(String),
}

/// One Envoy `StringMatcher`; `None` for Istio's catch-all `{}` (a presence match).
fn string_matcher(m: &StringMatch) -> Option<Value> {
    match m {
        StringMatch::Exact(v) => Some(json!({ "exact": v })),
        StringMatch::Prefix(v) => Some(json!({ "prefix": v })),
        StringMatch::Regex(r) => Some(json!({ "safe_regex": { "regex": r } })),
        StringMatch::Present => None,
    }
}

/// An Envoy `HeaderMatcher` for `name`.
fn header_matcher(name: &str, m: &StringMatch, inverted: bool) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    match string_matcher(m) {
        Some(sm) => {
            out.insert("string_match".into(), sm);
            if inverted {
                out.insert("invert_match".into(), json!(true));
                out.insert("treat_missing_header_as_empty".into(), json!(true));
            }
        }
        None => {
            out.insert("present_match".into(), json!(true));
            if inverted {
                out.insert("invert_match".into(), json!(true));
            }
        }
    }
    Value::Object(out)
}

/// One Istio `HTTPMatchRequest` as an Envoy `RouteMatch`.
pub fn route_match(route: &str, m: &HttpMatchRequest) -> Result<Value, RenderError> {
    if !m.source_labels.is_empty() {
        return Err(RenderError::SourceLabels {
            route: route.to_string(),
            labels: m
                .source_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    let mut out = Map::new();
    match &m.uri {
        Some(StringMatch::Exact(p)) => out.insert("path".into(), json!(p)),
        Some(StringMatch::Prefix(p)) => out.insert("prefix".into(), json!(p)),
        Some(StringMatch::Regex(r)) => out.insert("safe_regex".into(), json!({ "regex": r })),
        Some(StringMatch::Present) | None => out.insert("prefix".into(), json!("/")),
    };
    out.insert("case_sensitive".into(), json!(true));
    let mut headers: Vec<(&str, Value)> = m
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), header_matcher(k, v, false)))
        .chain(
            m.without_headers
                .iter()
                .map(|(k, v)| (k.as_str(), header_matcher(k, v, true))),
        )
        .collect();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut headers: Vec<Value> = headers.into_iter().map(|(_, v)| v).collect();
    if let Some(method) = &m.method {
        headers.push(header_matcher(":method", method, false));
    }
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    let query: Vec<Value> = m
        .query_params
        .iter()
        .map(|(k, v)| match string_matcher(v) {
            Some(sm) => json!({ "name": k, "string_match": sm }),
            None => json!({ "name": k, "present_match": true }),
        })
        .collect();
    if !query.is_empty() {
        out.insert("query_parameters".into(), Value::Array(query));
    }
    Ok(Value::Object(out))
}

/// Istio's name for the cluster of a destination: `outbound|<port>|<subset>|<host>`, the port
/// being `service_port` when the destination names none.
pub fn cluster_name(dest: &DestinationRef, service_port: u32) -> String {
    format!(
        "outbound|{}|{}|{}",
        dest.port.as_ref().map_or(service_port, |p| p.number),
        dest.subset.as_deref().unwrap_or(""),
        dest.host
    )
}

/// The `route` action of one Istio route: one cluster, or weighted clusters.
fn route_action(
    route: &HttpRoute,
    service_port: u32,
    dests: &[HttpRouteDestination],
) -> Result<Value, RenderError> {
    match dests {
        [] => Err(RenderError::NoDestination {
            route: route.name.clone(),
        }),
        [one] => Ok(json!({ "cluster": cluster_name(&one.destination, service_port) })),
        several => Ok(json!({
            "weighted_clusters": {
                "clusters": several.iter().map(|d| json!({
                    "name": cluster_name(&d.destination, service_port),
                    "weight": d.weight.unwrap_or(0),
                })).collect::<Vec<_>>(),
            }
        })),
    }
}

/// The retry policy Istio gives every route whose VirtualService sets no `retries` (the
/// compiler never sets them): 2 retries on connect failure, refused stream, gRPC
/// `unavailable`/`cancelled` and HTTP 503, each to another host — except under consistent
/// hashing, where a retry must stay on the key's host (Istio's `DefaultPolicy` and
/// `DefaultConsistentHashPolicy`, pilot/pkg/networking/core/route/retry).
pub fn istio_default_retry_policy(consistent_hash: bool) -> Value {
    let mut p = json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retriable_status_codes": [503],
    });
    if !consistent_hash {
        p["retry_host_predicate"] = json!([{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }]);
        p["host_selection_retry_max_attempts"] = json!(5);
    }
    p
}

/// One Istio route as Envoy routes: one per match entry (Istio ORs them), or one catch-all for
/// a route without a match; header `set` operations become `request_headers_to_add`; Istio's
/// default retry policy ([`istio_default_retry_policy`], without consistent hashing).
pub fn routes(route: &HttpRoute, service_port: u32) -> Result<Vec<Value>, RenderError> {
    let mut action = route_action(route, service_port, &route.route)?;
    action["retry_policy"] = istio_default_retry_policy(false);
    let matches = if route.matches.is_empty() {
        vec![route_match(&route.name, &HttpMatchRequest::default())?]
    } else {
        route
            .matches
            .iter()
            .map(|m| route_match(&route.name, m))
            .collect::<Result<_, _>>()?
    };
    let headers: Vec<Value> = route
        .headers
        .iter()
        .flat_map(|h| &h.request.set)
        .map(|(k, v)| {
            json!({
                "header": { "key": k, "value": v },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            })
        })
        .collect();
    Ok(matches
        .into_iter()
        .map(|m| {
            let mut r = json!({ "name": route.name, "match": m, "route": action });
            if !headers.is_empty() {
                r["request_headers_to_add"] = Value::Array(headers.clone());
            }
            r
        })
        .collect())
}

/// A virtual host `name` with every route of `vs`, in order, answering for its hosts (and
/// `host:port`).
pub fn virtual_host(
    vs: &VirtualService,
    name: &str,
    service_port: u32,
) -> Result<Value, RenderError> {
    let mut domains = Vec::new();
    for h in &vs.spec.hosts {
        domains.push(h.clone());
        domains.push(format!("{h}:{service_port}"));
    }
    let mut out = Vec::new();
    for r in &vs.spec.http {
        out.extend(routes(r, service_port)?);
    }
    Ok(json!({ "name": name, "domains": domains, "routes": out }))
}

/// A static cluster `name` of one endpoint; `http2` for gRPC services (the rate-limit service).
pub fn static_cluster(name: &str, address: &str, port: u16, http2: bool) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": address, "port_value": port }
            }}}]}],
        },
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                "explicit_http_config": { "http2_protocol_options": {} },
            }
        });
    }
    c
}

/// A static bootstrap: one listener on `address:port` whose HTTP connection manager has only
/// the router filter and one route configuration with `vhosts`; no clusters yet (see
/// [`missing_clusters`]).
pub fn bootstrap(address: &str, port: u16, vhosts: Vec<Value>) -> Value {
    json!({
        "static_resources": {
            "listeners": [{
                "name": "weir",
                "address": { "socket_address": { "address": address, "port_value": port } },
                "filter_chains": [{ "filters": [{
                    "name": HTTP_CONNECTION_MANAGER,
                    "typed_config": {
                        "@type": HCM_TYPE,
                        "stat_prefix": "weir",
                        "route_config": { "name": "weir", "virtual_hosts": vhosts },
                        "http_filters": [{ "name": ROUTER, "typed_config": { "@type": ROUTER_TYPE } }],
                    },
                }]}],
            }],
            "clusters": [],
        }
    })
}

/// The first listener's HTTP connection manager configuration.
fn hcm(config: &mut Value) -> Result<&mut Value, RenderError> {
    let filters = config
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| RenderError::Shape("no listener filter chain".into()))?;
    filters
        .iter_mut()
        .find(|f| f["name"] == HTTP_CONNECTION_MANAGER)
        .map(|f| &mut f["typed_config"])
        .ok_or_else(|| RenderError::Shape("no HTTP connection manager".into()))
}

/// Merges `patch` into `target` as protobuf's `Merge` (Istio's `MERGE`) does on the JSON form:
/// objects field by field, lists appended, anything else replaced.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => t.extend(p.iter().cloned()),
        (t, p) => *t = p.clone(),
    }
}

/// Checks that `value` (an object) has only the `allowed` keys.
fn only_keys(value: &Value, allowed: &[&str], what: &str) -> Result<(), String> {
    let Some(map) = value.as_object() else {
        return Err(format!("{what} is not an object"));
    };
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what}.{k} is not understood here (only {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// Applies every patch of an `EnvoyFilter` object (its JSON, as `Output::objects` gives it) to a
/// configuration of [`bootstrap`]'s shape, as Istio would to the proxies it selects (the
/// bootstrap's one listener and route configuration stand for every one the filter's `context`
/// and port select). Understood: `HTTP_FILTER` `INSERT_BEFORE` / `INSERT_AFTER` /
/// `INSERT_FIRST` / `MERGE` relative to a sub-filter of the HTTP connection manager;
/// `VIRTUAL_HOST` `MERGE` (by virtual host name, or all); `ROUTE_CONFIGURATION` `MERGE`;
/// `CLUSTER` `ADD`. Anything else is an error, never skipped.
pub fn apply_envoy_filter(config: &mut Value, filter: &Value) -> Result<(), RenderError> {
    let id = format!(
        "{}/{}",
        filter["metadata"]["namespace"].as_str().unwrap_or(""),
        filter["metadata"]["name"].as_str().unwrap_or("")
    );
    let patches = filter["spec"]["configPatches"]
        .as_array()
        .ok_or_else(|| RenderError::Patch {
            filter: id.clone(),
            index: 0,
            message: "spec.configPatches is not a list".into(),
        })?;
    for (index, p) in patches.iter().enumerate() {
        apply_patch(config, p).map_err(|message| RenderError::Patch {
            filter: id.clone(),
            index,
            message,
        })?;
    }
    Ok(())
}

fn apply_patch(config: &mut Value, p: &Value) -> Result<(), String> {
    only_keys(p, &["applyTo", "match", "patch"], "patch entry")?;
    let apply_to = p["applyTo"].as_str().ok_or("applyTo is not a string")?;
    let m = &p["match"];
    only_keys(
        m,
        &[
            "context",
            "proxy",
            "listener",
            "routeConfiguration",
            "cluster",
        ],
        "match",
    )?;
    match m["context"].as_str() {
        None | Some("ANY" | "SIDECAR_INBOUND" | "SIDECAR_OUTBOUND" | "GATEWAY") => {}
        Some(other) => return Err(format!("match.context {other} is not understood")),
    }
    only_keys(&p["patch"], &["operation", "value"], "patch")?;
    let op = p["patch"]["operation"]
        .as_str()
        .ok_or("patch.operation is not a string")?;
    let value = &p["patch"]["value"];
    if !value.is_object() {
        return Err("patch.value is not an object".into());
    }
    match (apply_to, op) {
        ("HTTP_FILTER", "INSERT_BEFORE" | "INSERT_AFTER" | "INSERT_FIRST" | "MERGE") => {
            let listener = &m["listener"];
            only_keys(
                listener,
                &["filterChain", "portNumber", "name"],
                "match.listener",
            )?;
            only_keys(
                &listener["filterChain"],
                &["filter"],
                "match.listener.filterChain",
            )?;
            let fm = &listener["filterChain"]["filter"];
            only_keys(
                fm,
                &["name", "subFilter"],
                "match.listener.filterChain.filter",
            )?;
            if fm["name"] != HTTP_CONNECTION_MANAGER {
                return Err(format!(
                    "HTTP_FILTER patches need match.listener.filterChain.filter.name {HTTP_CONNECTION_MANAGER}, not {}",
                    fm["name"]
                ));
            }
            let sub = fm["subFilter"]["name"].as_str();
            let hcm = hcm(config).map_err(|e| e.to_string())?;
            let filters = hcm["http_filters"]
                .as_array_mut()
                .ok_or("the HTTP connection manager has no http_filters")?;
            let at = match sub {
                Some(name) => Some(
                    filters
                        .iter()
                        .position(|f| f["name"] == name)
                        .ok_or_else(|| format!("no HTTP filter {name} to patch relative to"))?,
                ),
                None => None,
            };
            match (op, at) {
                ("INSERT_FIRST", _) => filters.insert(0, value.clone()),
                ("INSERT_BEFORE", Some(i)) => filters.insert(i, value.clone()),
                ("INSERT_AFTER", Some(i)) => filters.insert(i + 1, value.clone()),
                ("MERGE", Some(i)) => merge(&mut filters[i], value),
                (_, None) => return Err(format!("{op} needs match.listener...subFilter.name")),
                _ => unreachable!("operations are matched above"),
            }
        }
        ("VIRTUAL_HOST", "MERGE") => {
            let rc = &m["routeConfiguration"];
            only_keys(
                rc,
                &["vhost", "portNumber", "portName", "name"],
                "match.routeConfiguration",
            )?;
            only_keys(&rc["vhost"], &["name"], "match.routeConfiguration.vhost")?;
            let name = rc["vhost"]["name"].as_str();
            let hcm = hcm(config).map_err(|e| e.to_string())?;
            let vhosts = hcm["route_config"]["virtual_hosts"]
                .as_array_mut()
                .ok_or("the route configuration has no virtual_hosts")?;
            let mut hit = false;
            for vh in vhosts.iter_mut() {
                if name.is_none_or(|n| vh["name"] == n) {
                    merge(vh, value);
                    hit = true;
                }
            }
            if !hit {
                return Err(format!(
                    "no virtual host {} (there are {})",
                    name.unwrap_or("*"),
                    vhosts
                        .iter()
                        .map(|v| v["name"].to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        ("ROUTE_CONFIGURATION", "MERGE") => {
            let rc = &m["routeConfiguration"];
            if !rc.is_null() {
                only_keys(
                    rc,
                    &["portNumber", "portName", "name"],
                    "match.routeConfiguration",
                )?;
            }
            let hcm = hcm(config).map_err(|e| e.to_string())?;
            merge(&mut hcm["route_config"], value);
        }
        ("CLUSTER", "ADD") => {
            let clusters = config
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
                .ok_or("the configuration has no static_resources.clusters")?;
            clusters.push(value.clone());
        }
        _ => {
            return Err(format!(
                "applyTo {apply_to} with operation {op} is not understood here"
            ));
        }
    }
    Ok(())
}

/// Every cluster the configuration names (routes, weighted clusters, gRPC services) that it
/// does not define, in order of first mention, each with whether it is reached by gRPC
/// (`envoy_grpc`, so it needs HTTP/2).
pub fn missing_clusters(config: &Value) -> Vec<(String, bool)> {
    fn walk(v: &Value, parent: &str, out: &mut Vec<(String, bool)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let named = match (parent, k.as_str(), child) {
                        (_, "cluster", Value::String(s)) => Some((s, false)),
                        ("envoy_grpc", "cluster_name", Value::String(s)) => Some((s, true)),
                        ("clusters", "name", Value::String(s)) => Some((s, false)),
                        _ => None,
                    };
                    if let Some((name, grpc)) = named {
                        match out.iter_mut().find(|(n, _)| n == name) {
                            Some(entry) => entry.1 |= grpc,
                            None => out.push((name.clone(), grpc)),
                        }
                    }
                    walk(child, k, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, parent, out);
                }
            }
            _ => {}
        }
    }
    let mut named = Vec::new();
    if let Some(listeners) = config.pointer("/static_resources/listeners") {
        walk(listeners, "listeners", &mut named);
    }
    let defined: Vec<&str> = config
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    named
        .into_iter()
        .filter(|(n, _)| !defined.contains(&n.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::istio::{HeaderOperations, Headers, PortSelector, VirtualServiceSpec};

    fn dest(subset: &str, weight: Option<u32>) -> HttpRouteDestination {
        HttpRouteDestination {
            destination: DestinationRef {
                host: "checkout.shop.svc.cluster.local".into(),
                subset: Some(subset.into()),
                port: None,
            },
            weight,
        }
    }

    #[test]
    fn an_empty_match_is_every_path() {
        let m = route_match("r", &HttpMatchRequest::default()).unwrap();
        assert_eq!(m, json!({ "prefix": "/", "case_sensitive": true }));
    }

    #[test]
    fn uri_method_headers_and_query_render_as_istio_does() {
        let m = HttpMatchRequest {
            uri: Some(StringMatch::Exact("/a".into())),
            method: Some(StringMatch::Regex("GET|HEAD".into())),
            headers: BTreeMap::from([
                ("x-b".into(), StringMatch::Prefix("be".into())),
                ("x-z".into(), StringMatch::Present),
            ]),
            query_params: BTreeMap::from([
                ("uid".into(), StringMatch::Regex("1[0-9]{3}".into())),
                ("debug".into(), StringMatch::Present),
            ]),
            without_headers: BTreeMap::from([
                ("x-a".into(), StringMatch::Exact("no".into())),
                ("x-c".into(), StringMatch::Present),
            ]),
            source_labels: BTreeMap::new(),
        };
        let got = route_match("r", &m).unwrap();
        assert_eq!(
            got,
            json!({
                "path": "/a",
                "case_sensitive": true,
                "headers": [
                    { "name": "x-a", "string_match": { "exact": "no" }, "invert_match": true,
                      "treat_missing_header_as_empty": true },
                    { "name": "x-b", "string_match": { "prefix": "be" } },
                    { "name": "x-c", "present_match": true, "invert_match": true },
                    { "name": "x-z", "present_match": true },
                    { "name": ":method", "string_match": { "safe_regex": { "regex": "GET|HEAD" } } },
                ],
                "query_parameters": [
                    { "name": "debug", "present_match": true },
                    { "name": "uid", "string_match": { "safe_regex": { "regex": "1[0-9]{3}" } } },
                ],
            })
        );
    }

    #[test]
    fn path_prefix_and_regex() {
        let prefix = HttpMatchRequest {
            uri: Some(StringMatch::Prefix("/api/".into())),
            ..Default::default()
        };
        assert_eq!(route_match("r", &prefix).unwrap()["prefix"], "/api/");
        let re = HttpMatchRequest {
            uri: Some(StringMatch::Regex("/v[0-9]+/.*".into())),
            ..Default::default()
        };
        assert_eq!(
            route_match("r", &re).unwrap()["safe_regex"],
            json!({ "regex": "/v[0-9]+/.*" })
        );
    }

    #[test]
    fn source_labels_are_refused_with_the_reason() {
        let m = HttpMatchRequest {
            source_labels: BTreeMap::from([("app".into(), "web".into())]),
            ..Default::default()
        };
        let err = route_match("beta", &m).unwrap_err();
        assert_eq!(
            err,
            RenderError::SourceLabels {
                route: "beta".into(),
                labels: "app=web".into()
            }
        );
        assert!(err.to_string().contains("standalone Envoy cannot match"));
    }

    #[test]
    fn routes_carry_weights_headers_and_one_entry_per_match() {
        let route = HttpRoute {
            name: "canary".into(),
            matches: vec![
                HttpMatchRequest {
                    method: Some(StringMatch::Exact("GET".into())),
                    ..Default::default()
                },
                HttpMatchRequest {
                    uri: Some(StringMatch::Prefix("/b".into())),
                    ..Default::default()
                },
            ],
            route: vec![dest("v1", Some(90)), dest("v2", Some(10))],
            headers: Some(Headers {
                request: HeaderOperations {
                    set: BTreeMap::from([("x-env".into(), "beta".into())]),
                },
            }),
        };
        let got = routes(&route, 8080).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["match"]["prefix"], "/b");
        assert_eq!(
            got[0]["route"]["weighted_clusters"],
            json!({ "clusters": [
                { "name": "outbound|8080|v1|checkout.shop.svc.cluster.local", "weight": 90 },
                { "name": "outbound|8080|v2|checkout.shop.svc.cluster.local", "weight": 10 },
            ]})
        );
        // Istio's default retries, as its sidecars get them.
        assert_eq!(
            got[0]["route"]["retry_policy"],
            json!({
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "num_retries": 2,
                "retriable_status_codes": [503],
                "retry_host_predicate": [{
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
                }],
                "host_selection_retry_max_attempts": 5,
            })
        );
        assert_eq!(
            got[0]["request_headers_to_add"],
            json!([{ "header": { "key": "x-env", "value": "beta" },
                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }])
        );
        let empty = HttpRoute {
            route: vec![],
            ..route
        };
        assert!(matches!(
            routes(&empty, 80),
            Err(RenderError::NoDestination { .. })
        ));
    }

    #[test]
    fn cluster_names_follow_istio() {
        let mut d = dest("v1", None).destination;
        assert_eq!(
            cluster_name(&d, 80),
            "outbound|80|v1|checkout.shop.svc.cluster.local"
        );
        d.port = Some(PortSelector { number: 9090 });
        d.subset = None;
        assert_eq!(
            cluster_name(&d, 80),
            "outbound|9090||checkout.shop.svc.cluster.local"
        );
    }

    fn vs() -> VirtualService {
        VirtualService {
            api_version: crate::istio::NETWORKING_V1,
            kind: "VirtualService",
            metadata: crate::istio::ObjectMeta {
                name: "checkout".into(),
                namespace: Some("shop".into()),
                labels: BTreeMap::new(),
            },
            spec: VirtualServiceSpec {
                hosts: vec!["checkout.shop.svc.cluster.local".into()],
                http: vec![HttpRoute {
                    name: "default".into(),
                    matches: vec![],
                    route: vec![dest("v1", None)],
                    headers: None,
                }],
            },
        }
    }

    fn filter(patches: Value) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": { "name": "rl", "namespace": "shop" },
            "spec": { "workloadSelector": { "labels": { "app": "checkout" } },
                      "configPatches": patches },
        })
    }

    fn http_filter_patch(op: &str, name: &str) -> Value {
        json!({
            "applyTo": "HTTP_FILTER",
            "match": { "context": "SIDECAR_INBOUND", "listener": { "filterChain": { "filter": {
                "name": HTTP_CONNECTION_MANAGER, "subFilter": { "name": ROUTER } } } } },
            "patch": { "operation": op, "value": { "name": name } },
        })
    }

    #[test]
    fn bootstrap_routes_to_clusters_it_reports_missing() {
        let vh = virtual_host(&vs(), "inbound|http|8080", 8080).unwrap();
        assert_eq!(
            vh["domains"],
            json!([
                "checkout.shop.svc.cluster.local",
                "checkout.shop.svc.cluster.local:8080"
            ])
        );
        let mut b = bootstrap("127.0.0.1", 10000, vec![vh]);
        let missing = missing_clusters(&b);
        assert_eq!(
            missing,
            vec![(
                "outbound|8080|v1|checkout.shop.svc.cluster.local".to_string(),
                false
            )]
        );
        b["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap()
            .push(static_cluster(&missing[0].0, "127.0.0.1", 1, false));
        assert!(missing_clusters(&b).is_empty());
    }

    #[test]
    fn http_filters_are_inserted_relative_to_the_router() {
        let mut b = bootstrap("127.0.0.1", 10000, vec![]);
        let f = filter(json!([
            http_filter_patch("INSERT_BEFORE", "a"),
            http_filter_patch("INSERT_BEFORE", "b"),
            http_filter_patch("INSERT_FIRST", "first"),
        ]));
        apply_envoy_filter(&mut b, &f).unwrap();
        let names: Vec<_> = hcm(&mut b).unwrap()["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["first", "a", "b", ROUTER]);
    }

    #[test]
    fn merges_append_lists_and_replace_scalars() {
        let vh = virtual_host(&vs(), "inbound|http|8080", 8080).unwrap();
        let mut b = bootstrap("127.0.0.1", 10000, vec![vh]);
        let f = filter(json!([
            { "applyTo": "VIRTUAL_HOST",
              "match": { "context": "SIDECAR_INBOUND",
                         "routeConfiguration": { "vhost": { "name": "inbound|http|8080" } } },
              "patch": { "operation": "MERGE", "value": { "rate_limits": [
                  { "actions": [{ "generic_key": { "descriptor_value": "x" } }] } ] } } },
            { "applyTo": "ROUTE_CONFIGURATION",
              "match": { "context": "SIDECAR_INBOUND" },
              "patch": { "operation": "MERGE", "value": {
                  "request_headers_to_remove": ["x-a"], "name": "renamed" } } },
            { "applyTo": "ROUTE_CONFIGURATION",
              "match": { "context": "SIDECAR_INBOUND" },
              "patch": { "operation": "MERGE", "value": { "request_headers_to_remove": ["x-b"] } } },
        ]));
        apply_envoy_filter(&mut b, &f).unwrap();
        let rc = &hcm(&mut b).unwrap()["route_config"];
        assert_eq!(rc["request_headers_to_remove"], json!(["x-a", "x-b"]));
        assert_eq!(rc["name"], "renamed");
        assert_eq!(
            rc["virtual_hosts"][0]["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_value"],
            "x"
        );
        assert_eq!(
            rc["virtual_hosts"][0]["routes"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn unknown_patches_are_errors_not_skipped() {
        let vh = virtual_host(&vs(), "inbound|http|8080", 8080).unwrap();
        let b = bootstrap("127.0.0.1", 10000, vec![vh]);
        let bad = [
            json!({ "applyTo": "LISTENER", "match": {}, "patch": { "operation": "MERGE", "value": {} } }),
            json!({ "applyTo": "HTTP_FILTER", "match": {}, "patch": { "operation": "REMOVE", "value": {} } }),
            json!({ "applyTo": "VIRTUAL_HOST",
                    "match": { "routeConfiguration": { "vhost": { "name": "nope" } } },
                    "patch": { "operation": "MERGE", "value": {} } }),
            json!({ "applyTo": "VIRTUAL_HOST",
                    "match": { "routeConfiguration": { "vhost": { "name": "inbound|http|8080",
                                                                  "route": { "name": "x" } } } },
                    "patch": { "operation": "MERGE", "value": {} } }),
            {
                let mut p = http_filter_patch("INSERT_BEFORE", "a");
                p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] =
                    json!("envoy.filters.http.cors");
                p
            },
            {
                let mut p = http_filter_patch("INSERT_BEFORE", "a");
                p["patch"]["filterClass"] = json!("AUTHZ");
                p
            },
        ];
        for p in bad {
            let mut config = b.clone();
            let err = apply_envoy_filter(&mut config, &filter(json!([p]))).unwrap_err();
            assert!(
                matches!(&err, RenderError::Patch { filter, index: 0, .. } if filter == "shop/rl"),
                "{err}"
            );
        }
    }

    #[test]
    fn grpc_clusters_are_found_and_need_http2() {
        let mut b = bootstrap("127.0.0.1", 10000, vec![]);
        let f = filter(json!([{
            "applyTo": "HTTP_FILTER",
            "match": { "context": "SIDECAR_INBOUND", "listener": { "filterChain": { "filter": {
                "name": HTTP_CONNECTION_MANAGER, "subFilter": { "name": ROUTER } } } } },
            "patch": { "operation": "INSERT_BEFORE", "value": {
                "name": "envoy.filters.http.ratelimit",
                "typed_config": { "rate_limit_service": { "grpc_service": { "envoy_grpc": {
                    "cluster_name": "outbound|8081||ratelimit.ratelimit.svc.cluster.local" } } } } } },
        }]));
        apply_envoy_filter(&mut b, &f).unwrap();
        assert_eq!(
            missing_clusters(&b),
            vec![(
                "outbound|8081||ratelimit.ratelimit.svc.cluster.local".to_string(),
                true
            )]
        );
        let c = static_cluster("x", "127.0.0.1", 8081, true);
        assert!(
            c["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
                .get("http2_protocol_options")
                .is_some()
        );
    }
}
