//! Multi-environment routing (PolarisMesh's baseline + feature environments) with traffic
//! dyeing, compiled into routes ahead of the user's.
//!
//! A subset belongs to the environment its `environments.label` names (no label: the
//! baseline). For every feature environment E with a subset here, two routes come first:
//! requests whose `environments.header` is E go to E's subset (dynamic dyeing: whoever set the
//! header, a gateway or a `set_headers` on an earlier hop); requests from a workload labelled
//! E that carry no header go to E's subset too, and get the header set (static dyeing), so the
//! next hop sees it. Everything else — no header, or an environment without an instance of
//! this service — takes the user's routes, which may only send to baseline subsets: that is
//! the feature → baseline fallback.
//!
//! Headers only travel on if the application copies them from its inbound request to its
//! outbound ones; a proxy cannot. What the mesh can do for the seed's one-hop headers
//! (`x-metadata-disposable-*`) it does: they are removed from this service's outbound
//! requests.

use std::collections::{BTreeMap, BTreeSet};

use crate::istio::{
    ConfigPatch, DestinationRef, EnvoyFilter, HeaderOperations, Headers, HttpMatchRequest,
    HttpRoute, HttpRouteDestination, ObjectMeta, Patch, PatchMatch, PortSelector,
    RouteConfigurationMatch,
};
use crate::limits::{envoy_filter, proxy_match, selector, valid_header_name};
use crate::matcher::StringMatch;
use crate::policy::{Source, TrafficPolicy as Policy};
use crate::problem::Report;

/// The seed's prefix of headers that travel one hop only.
pub const DISPOSABLE_PREFIX: &str = "x-metadata-disposable-";
/// The seed's prefix of headers that travel along the whole chain.
pub const TRANSITIVE_PREFIX: &str = "x-metadata-transitive-";

/// Feature environments (name → subset) and baseline subsets, or `None` when environments
/// are not used or are wrongly given (reported).
pub(crate) struct Plan {
    /// Feature environment → its one subset.
    pub features: BTreeMap<String, String>,
    /// Subsets of the baseline.
    pub baseline: BTreeSet<String>,
}

/// Reads `spec.environments` against the subsets.
pub(crate) fn plan(policy: &Policy, report: &mut Report) -> Option<Plan> {
    let env = policy.spec.environments.as_ref()?;
    let before = report.count();
    let path = "spec.environments";
    if env.label.is_empty() {
        report.add(
            &format!("{path}.label"),
            None,
            "name the pod label of environments",
        );
    }
    if !valid_header_name(&env.header) {
        report.add(
            &format!("{path}.header"),
            Some(format!("{:?}", env.header)),
            "a header name, in lower case",
        );
    }
    for (i, h) in env.propagate.iter().enumerate() {
        if !valid_header_name(h) {
            report.add(
                &format!("{path}.propagate[{i}]"),
                Some(format!("{h:?}")),
                "a header name, in lower case",
            );
        }
    }
    let mut features: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut baseline = BTreeSet::new();
    for s in &policy.spec.subsets {
        match s.labels.get(&env.label) {
            Some(e) if *e != env.baseline => {
                features.entry(e.clone()).or_default().push(s.name.clone())
            }
            _ => {
                baseline.insert(s.name.clone());
            }
        }
    }
    if baseline.is_empty() {
        report.add(
            &format!("{path}.baseline"),
            Some(format!("{:?}", env.baseline)),
            format!(
                "no subset belongs to the baseline (label {}={} or no {} label): requests \
                 without an environment would have nowhere to go",
                env.label, env.baseline, env.label
            ),
        );
    }
    for (e, subsets) in &features {
        if subsets.len() > 1 {
            report.add(
                "spec.subsets",
                Some(format!("{e:?}")),
                format!(
                    "feature environment {e:?} has several subsets ({}): give it one",
                    subsets.join(", ")
                ),
            );
        }
    }
    for (i, r) in policy.spec.routes.iter().enumerate() {
        for (j, d) in r.destinations.iter().enumerate() {
            if let Some((e, _)) = features.iter().find(|(_, s)| s.contains(&d.subset)) {
                report.add(
                    &format!("spec.routes[{i}].destinations[{j}].subset"),
                    Some(format!("{:?}", d.subset)),
                    format!(
                        "belongs to feature environment {e:?}: it gets the requests dyed {e:?} \
                         (routed ahead of every route); routes send the rest to the baseline"
                    ),
                );
            }
        }
        for (j, c) in r.matches.iter().enumerate() {
            if c.source == Source::Header
                && c.key.as_deref().map(str::to_ascii_lowercase).as_deref()
                    == Some(env.header.as_str())
            {
                report.add(
                    &format!("spec.routes[{i}].match[{j}].key"),
                    Some(format!("{:?}", env.header)),
                    "the environment header is routed by spec.environments, ahead of every route",
                );
            }
        }
    }
    (report.count() == before).then(|| Plan {
        features: features
            .into_iter()
            .map(|(e, mut s)| (e, s.remove(0)))
            .collect(),
        baseline,
    })
}

/// The environment routes (ahead of the user's), and the baseline fallback when the policy
/// has no routes of its own.
pub(crate) fn routes(policy: &Policy, plan: &Plan, report: &mut Report) -> Vec<HttpRoute> {
    let Some(env) = &policy.spec.environments else {
        return Vec::new();
    };
    let spec = &policy.spec;
    let to = |subset: &str| {
        vec![HttpRouteDestination {
            destination: DestinationRef {
                host: spec.host.clone(),
                subset: Some(subset.to_string()),
                port: spec.port.map(|number| PortSelector { number }),
            },
            weight: None,
        }]
    };
    let mut out = Vec::new();
    for (e, subset) in &plan.features {
        out.push(HttpRoute {
            name: format!("env-{e}"),
            matches: vec![HttpMatchRequest {
                headers: BTreeMap::from([(env.header.clone(), StringMatch::Exact(e.clone()))]),
                ..HttpMatchRequest::default()
            }],
            route: to(subset),
            headers: None,
        });
        out.push(HttpRoute {
            name: format!("env-{e}-caller"),
            matches: vec![HttpMatchRequest {
                source_labels: BTreeMap::from([(env.label.clone(), e.clone())]),
                without_headers: BTreeMap::from([(env.header.clone(), StringMatch::Present)]),
                ..HttpMatchRequest::default()
            }],
            route: to(subset),
            headers: Some(Headers {
                request: HeaderOperations {
                    set: BTreeMap::from([(env.header.clone(), e.clone())]),
                },
            }),
        });
    }
    if spec.routes.is_empty() {
        if plan.baseline.len() == 1 {
            let b = plan.baseline.first().cloned().unwrap_or_default();
            out.push(HttpRoute {
                name: "baseline".to_string(),
                matches: Vec::new(),
                route: to(&b),
                headers: None,
            });
        } else {
            report.add(
                "spec.routes",
                None,
                format!(
                    "the baseline has several subsets ({}): give routes that say how to \
                     split it",
                    plan.baseline.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    for r in &out {
        if spec.routes.iter().any(|u| u.name == r.name) {
            report.add(
                "spec.routes",
                Some(format!("{:?}", r.name)),
                "this route name is taken by a generated environment route: rename the route",
            );
        }
    }
    out
}

/// Removes the one-hop headers listed in `propagate` from the service's outbound requests.
pub(crate) fn filters(
    policy: &Policy,
    meta: &ObjectMeta,
    report: &mut Report,
    notes: &mut Vec<String>,
) -> Vec<EnvoyFilter> {
    let Some(env) = &policy.spec.environments else {
        return Vec::new();
    };
    let disposable: Vec<&String> = env
        .propagate
        .iter()
        .filter(|h| h.starts_with(DISPOSABLE_PREFIX))
        .collect();
    if disposable.is_empty() {
        return Vec::new();
    }
    let selector = selector(
        policy,
        "the removal of one-hop headers (spec.environments.propagate)",
        notes,
    );
    let proxy = proxy_match(policy, report);
    vec![envoy_filter(
        meta,
        "disposable-headers",
        &selector,
        vec![ConfigPatch {
            apply_to: "ROUTE_CONFIGURATION",
            match_: PatchMatch {
                context: "SIDECAR_OUTBOUND",
                proxy,
                listener: None,
                route_configuration: Some(RouteConfigurationMatch { vhost: None }),
            },
            patch: Patch {
                operation: "MERGE",
                value: serde_json::json!({ "request_headers_to_remove": disposable }),
            },
        }],
    )]
}

#[cfg(test)]
mod tests;
