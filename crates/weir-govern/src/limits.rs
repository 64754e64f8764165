//! Rate limits → EnvoyFilters, and the global rate-limit service's configuration.
//!
//! A local limit is Envoy's `envoy.filters.http.local_ratelimit` (a token bucket in every
//! proxy of the service). A global limit takes three pieces, all generated from the same list
//! so they cannot disagree: the `envoy.filters.http.ratelimit` filter (before the router)
//! that calls the service, the virtual host's `rate_limits` actions that actually send each
//! descriptor (without them the filter never asks anything — the seed's mistake), and the
//! service's descriptors with their limits.

use serde_json::{Value, json};

use crate::istio::{
    ConfigPatch, EnvoyFilter, EnvoyFilterSpec, FilterChainMatch, FilterMatch, ListenerMatch,
    NETWORKING_V1ALPHA3, ObjectMeta, Patch, PatchMatch, ProxyMatch, RouteConfigurationMatch,
    SubFilterMatch, VirtualHostMatch, WorkloadSelector,
};
use crate::matcher::{check_re2, escape};
use crate::policy::{
    FailureMode, GlobalLimit, Limit, LimitKey, LocalLimit, Per, TrafficPolicy as Policy,
};
use crate::problem::Report;
use crate::ratelimit::{Descriptor, RateLimitConfig, RateLimitValue, Unit};

/// Envoy's HTTP connection manager, the network filter HTTP filters live in.
pub const HCM: &str = "envoy.filters.network.http_connection_manager";
/// Envoy's router: the last HTTP filter; rate limits go before it.
pub const ROUTER: &str = "envoy.filters.http.router";
/// Response header a local-limit rejection carries.
pub const LOCAL_LIMIT_HEADER: &str = "x-weir-rate-limited";

impl From<Per> for Unit {
    fn from(p: Per) -> Unit {
        match p {
            Per::Second => Unit::Second,
            Per::Minute => Unit::Minute,
            Per::Hour => Unit::Hour,
            Per::Day => Unit::Day,
        }
    }
}

/// The EnvoyFilters and the rate-limit service configuration `policy` needs.
pub(crate) fn compile(
    policy: &Policy,
    meta: &ObjectMeta,
    report: &mut Report,
    notes: &mut Vec<String>,
) -> (Vec<EnvoyFilter>, Option<RateLimitConfig>) {
    let Some(rl) = &policy.spec.rate_limit else {
        return (Vec::new(), None);
    };
    let mut filters = Vec::new();
    if rl.local.is_none() && rl.global.is_none() {
        report.add(
            "spec.rate_limit",
            None,
            "give `local`, `global` or both (or leave rate_limit out)",
        );
    }
    let proxy = proxy_match(policy, report);
    let selector = selector(policy, "the rate limit", notes);
    let mut config = None;
    if let Some(local) = &rl.local
        && let Some(value) = local_filter(local, report)
    {
        filters.push(envoy_filter(
            meta,
            "local-ratelimit",
            &selector,
            vec![http_filter_patch(proxy.clone(), value)],
        ));
    }
    if let Some(global) = &rl.global {
        let port = policy.spec.target_port.or(policy.spec.port);
        if port.is_none() {
            report.add(
                "spec.port",
                None,
                "global rate limits are attached to the inbound route of one port: give \
                 spec.port (and spec.target_port when the containers listen elsewhere)",
            );
        }
        if global.timeout_ms == Some(0) || global.timeout_ms.is_some_and(|t| t > 60_000) {
            report.add(
                "spec.rate_limit.global.timeout_ms",
                global.timeout_ms.map(|t| t.to_string()),
                "between 1 and 60000 milliseconds",
            );
        }
        let cluster = service_cluster(global, report);
        let actions = actions(global, report);
        let c = service_config(global);
        for (path, message) in c.check() {
            let (path, value) = match path.strip_prefix("descriptors") {
                Some(rest) => (format!("spec.rate_limit.global.limits{rest}"), None),
                None => (
                    format!("spec.rate_limit.global.{path}"),
                    Some(format!("{:?}", c.domain)),
                ),
            };
            report.add(&path, value, message);
        }
        if let (Some(port), Some(cluster), Some(actions)) = (port, cluster, actions) {
            filters.push(envoy_filter(
                meta,
                "global-ratelimit",
                &selector,
                vec![
                    http_filter_patch(proxy.clone(), global_filter(global, &cluster)),
                    ConfigPatch {
                        apply_to: "VIRTUAL_HOST",
                        match_: PatchMatch {
                            context: "SIDECAR_INBOUND",
                            proxy: proxy.clone(),
                            listener: None,
                            route_configuration: Some(RouteConfigurationMatch {
                                vhost: Some(VirtualHostMatch {
                                    name: inbound_vhost(port),
                                }),
                            }),
                        },
                        patch: Patch {
                            operation: "MERGE",
                            value: json!({ "rate_limits": actions }),
                        },
                    },
                ],
            ));
        }
        config = Some(c);
    }
    (filters, config)
}

/// The name Istio gives the inbound virtual host of a port.
pub fn inbound_vhost(port: u32) -> String {
    format!("inbound|http|{port}")
}

/// The Istio cluster name of a service (`outbound|PORT||HOST`).
pub fn outbound_cluster(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// `spec.proxy_version`, checked.
pub(crate) fn proxy_match(policy: &Policy, report: &mut Report) -> Option<ProxyMatch> {
    let v = policy.spec.proxy_version.as_ref()?;
    if let Err(e) = check_re2(v) {
        report.add("spec.proxy_version", Some(format!("{v:?}")), e);
        return None;
    }
    Some(ProxyMatch {
        proxy_version: v.clone(),
    })
}

/// `spec.selector`; unset, Istio's convention — `app: <the host's first label>` — said in
/// `notes` (once), since pods labelled otherwise would silently get nothing.
pub(crate) fn selector(
    policy: &Policy,
    why: &str,
    notes: &mut Vec<String>,
) -> std::collections::BTreeMap<String, String> {
    let s = &policy.spec.selector;
    if !s.is_empty() {
        return s.clone();
    }
    let app = policy
        .spec
        .host
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let note = format!(
        "spec.selector is not set: {why} is installed in the proxies of pods labelled \
         app={app} (Istio's convention); if the service's pods are labelled otherwise, set \
         spec.selector to its Kubernetes Service's selector, or nothing is installed"
    );
    if !notes.contains(&note) {
        notes.push(note);
    }
    std::collections::BTreeMap::from([("app".to_string(), app)])
}

/// An EnvoyFilter named `<policy>-<suffix>`.
pub(crate) fn envoy_filter(
    meta: &ObjectMeta,
    suffix: &str,
    selector: &std::collections::BTreeMap<String, String>,
    config_patches: Vec<ConfigPatch>,
) -> EnvoyFilter {
    EnvoyFilter {
        api_version: NETWORKING_V1ALPHA3,
        kind: "EnvoyFilter",
        metadata: ObjectMeta {
            name: format!("{}-{suffix}", meta.name),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
        },
        spec: EnvoyFilterSpec {
            workload_selector: WorkloadSelector {
                labels: selector.clone(),
            },
            config_patches,
        },
    }
}

/// Inserts an HTTP filter just before the router of the inbound connection manager.
fn http_filter_patch(proxy: Option<ProxyMatch>, value: Value) -> ConfigPatch {
    ConfigPatch {
        apply_to: "HTTP_FILTER",
        match_: PatchMatch {
            context: "SIDECAR_INBOUND",
            proxy,
            listener: Some(ListenerMatch {
                filter_chain: FilterChainMatch {
                    filter: FilterMatch {
                        name: HCM,
                        sub_filter: Some(SubFilterMatch { name: ROUTER }),
                    },
                },
            }),
            route_configuration: None,
        },
        patch: Patch {
            operation: "INSERT_BEFORE",
            value,
        },
    }
}

fn percent_100(key: &str) -> Value {
    json!({
        "runtime_key": key,
        "default_value": { "numerator": 100, "denominator": "HUNDRED" },
    })
}

/// The local token bucket filter.
fn local_filter(l: &LocalLimit, report: &mut Report) -> Option<Value> {
    let path = "spec.rate_limit.local";
    if l.requests == 0 {
        report.add(
            &format!("{path}.requests"),
            Some("0".into()),
            "must be positive (0 would refuse every request)",
        );
        return None;
    }
    let burst = l.burst.unwrap_or(l.requests);
    if burst < l.requests {
        report.add(
            &format!("{path}.burst"),
            Some(burst.to_string()),
            format!(
                "smaller than requests ({}): the bucket holds at most `burst` tokens, so the \
                 limit would silently be {burst} per {}",
                l.requests,
                Unit::from(l.per).seconds()
            ),
        );
        return None;
    }
    Some(json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {
                "max_tokens": burst,
                "tokens_per_fill": l.requests,
                "fill_interval": format!("{}s", Unit::from(l.per).seconds()),
            },
            "filter_enabled": percent_100("local_rate_limit_enabled"),
            "filter_enforced": percent_100("local_rate_limit_enforced"),
            "response_headers_to_add": [{
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "header": { "key": LOCAL_LIMIT_HEADER, "value": "local" },
            }],
        },
    }))
}

/// The Istio cluster of the rate-limit service, from `service: HOST:PORT`.
/// The Istio cluster of the rate-limit service, from `service: HOST:PORT`, with the host
/// (the gRPC `:authority`).
fn service_cluster(g: &GlobalLimit, report: &mut Report) -> Option<(String, String)> {
    let path = "spec.rate_limit.global.service";
    let value = Some(format!("{:?}", g.service));
    let Some((host, port)) = g.service.rsplit_once(':') else {
        report.add(
            path,
            value,
            "write HOST:PORT, the rate-limit service's gRPC port (ratelimit.ratelimit.svc.cluster.local:8081)",
        );
        return None;
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            report.add(path, value, format!("{port:?} is not a port (1..=65535)"));
            return None;
        }
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.trim_matches(['[', ']']).contains(':') {
        report.add(
            path,
            value,
            "name the service by its host in the mesh (ratelimit.ratelimit.svc.cluster.local): \
             Istio builds clusters for services, not addresses",
        );
        return None;
    }
    if !host.contains('.') || host.starts_with('.') || host.ends_with('.') {
        report.add(
            path,
            value,
            "write the service's full host name (ratelimit.<namespace>.svc.cluster.local): \
             Istio's cluster for it is named after the full name, and a short name names no \
             cluster, so every check would fail",
        );
        return None;
    }
    Some((outbound_cluster(host, port), host.to_string()))
}

/// The global rate-limit filter. The gRPC `:authority` is the service's host: without it Envoy
/// sends the cluster name, whose `|` an HTTP/2 server refuses (every check would fail).
fn global_filter(g: &GlobalLimit, (cluster, host): &(String, String)) -> Value {
    let mut f = json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": g.domain,
            "failure_mode_deny": g.failure_mode == FailureMode::Deny,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": {
                    "envoy_grpc": { "cluster_name": cluster, "authority": host },
                },
                "transport_api_version": "V3",
            },
        },
    });
    if let Some(ms) = g.timeout_ms {
        f["typed_config"]["timeout"] = json!(format!("{}.{:03}s", ms / 1000, ms % 1000));
    }
    f
}

/// The descriptor key and value a limit sends.
pub fn descriptor_key(l: &Limit) -> (String, Option<String>) {
    match l.key {
        LimitKey::Header => (l.name.clone().unwrap_or_default(), None),
        LimitKey::RemoteAddress => ("remote_address".to_string(), None),
        LimitKey::Path => ("path".to_string(), l.value.clone()),
    }
}

/// One `rate_limits` entry per limit, each with the one action that sends its descriptor.
fn actions(g: &GlobalLimit, report: &mut Report) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let before = report.count();
    if g.limits.is_empty() {
        report.add(
            "spec.rate_limit.global.limits",
            None,
            "give at least one limit",
        );
    }
    for (i, l) in g.limits.iter().enumerate() {
        let path = format!("spec.rate_limit.global.limits[{i}]");
        if l.requests == 0 {
            report.add(
                &format!("{path}.requests"),
                Some("0".into()),
                "must be positive",
            );
        }
        let wrong = |report: &mut Report, field: &str, v: &str| {
            report.add(
                &format!("{path}.{field}"),
                Some(format!("{v:?}")),
                format!("`key: {}` takes no `{field}`", key_name(l.key)),
            );
        };
        let action = match l.key {
            LimitKey::Header => {
                if let Some(v) = &l.value {
                    wrong(report, "value", v);
                }
                match l.name.as_deref() {
                    Some(n) if valid_header_name(n) => json!({
                        "request_headers": { "header_name": n, "descriptor_key": n },
                    }),
                    other => {
                        report.add(
                            &format!("{path}.name"),
                            other.map(|n| format!("{n:?}")),
                            "name the header, in lower case (each of its values is counted on \
                             its own)",
                        );
                        continue;
                    }
                }
            }
            LimitKey::RemoteAddress => {
                if let Some(v) = &l.name {
                    wrong(report, "name", v);
                }
                if let Some(v) = &l.value {
                    wrong(report, "value", v);
                }
                json!({ "remote_address": {} })
            }
            LimitKey::Path => {
                if let Some(v) = &l.name {
                    wrong(report, "name", v);
                }
                match l.value.as_deref() {
                    Some(p) if p.starts_with('/') && !p.contains('?') => json!({
                        "header_value_match": {
                            "descriptor_key": "path",
                            "descriptor_value": p,
                            "headers": [{
                                "name": ":path",
                                "string_match": {
                                    "safe_regex": { "regex": format!("{}(\\?.*)?", escape(p)) },
                                },
                            }],
                        },
                    }),
                    other => {
                        report.add(
                            &format!("{path}.value"),
                            other.map(|v| format!("{v:?}")),
                            "give the path, starting with `/`, without a query string",
                        );
                        continue;
                    }
                }
            }
        };
        out.push(json!({ "actions": [action] }));
    }
    (report.count() == before).then_some(out)
}

fn key_name(k: LimitKey) -> &'static str {
    match k {
        LimitKey::Header => "header",
        LimitKey::RemoteAddress => "remote_address",
        LimitKey::Path => "path",
    }
}

/// A lower-case HTTP header name (RFC 9110 token characters).
pub(crate) fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// The rate-limit service's configuration: one top-level descriptor per limit.
fn service_config(g: &GlobalLimit) -> RateLimitConfig {
    RateLimitConfig {
        domain: g.domain.clone(),
        descriptors: g
            .limits
            .iter()
            .map(|l| {
                let (key, value) = descriptor_key(l);
                Descriptor {
                    key,
                    value,
                    rate_limit: Some(RateLimitValue::per(l.per.into(), l.requests)),
                    shadow_mode: false,
                    detailed_metric: false,
                    descriptors: Vec::new(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
