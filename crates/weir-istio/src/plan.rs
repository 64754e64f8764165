//! The IO-free half of the actuator: find the managed route in a VirtualService read from the
//! API server, check that its destinations are the configured layout, and build the JSON Patch
//! that changes only their weights. Everything here works on the object as JSON, so it can be
//! tested on fixtures and shown by `weir check` without a cluster.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use serde_json::Value;
use weir_core::Weights;

use crate::config::{Destination, IstioConfig, Layout, RouteSelector};
use crate::error::IstioError;

/// The two lists of routes a VirtualService can hold that carry weighted destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `spec.http[]`.
    Http,
    /// `spec.tcp[]`.
    Tcp,
}

impl RouteKind {
    /// The key under `spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "http",
            RouteKind::Tcp => "tcp",
        }
    }
}

/// One `route[]` entry of the managed route, as found.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    /// The whole `destination` object, for the `test` operation.
    raw: Value,
    destination: Destination,
    /// `weight`, if present. Istio's weights are int32.
    weight: Option<u32>,
}

/// The managed route, located and checked against the layout.
#[derive(Debug, Clone, PartialEq)]
struct Located {
    kind: RouteKind,
    index: usize,
    route: Value,
    found: Vec<Found>,
    /// For each of Weir's slots, the index in `found` it maps to. `two_services`: primary,
    /// reader. `per_replica`: primary, then each replica.
    slots: Vec<usize>,
}

/// The patch that moves the managed route to some weights, and what it is based on.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The RFC 6902 patch: `test` operations first, then one `replace`/`add` per weight.
    pub patch: json_patch::Patch,
    /// The `metadata.resourceVersion` the patch was computed from (and tests).
    pub resource_version: String,
    /// JSON pointer of the managed route, e.g. `/spec/tcp/0`.
    pub route_path: String,
    /// The weights to write, in the route's destination order.
    pub weights: Vec<u32>,
    /// Whether every weight already has its target value: applying the patch would change
    /// nothing, so the actuator sends nothing.
    pub unchanged: bool,
}

/// Builds the patch that sets the managed route of `object` (a VirtualService as the API
/// server returns it) to `weights`.
///
/// Fails, without building anything, if the route is missing or ambiguous, if its
/// destinations are not the configured layout, or if the weights are invalid for Istio.
pub fn plan_patch(
    object: &Value,
    config: &IstioConfig,
    weights: &Weights,
) -> Result<Plan, IstioError> {
    let resource_version = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .ok_or_else(|| IstioError::Malformed("metadata.resourceVersion is missing".into()))?
        .to_owned();
    let located = locate(object, config)?;
    let targets = target_weights(&config.layout, weights)?;

    // Istio weights per destination, in the route's own order.
    let mut per_destination = vec![0u32; located.found.len()];
    for (slot, &j) in located.slots.iter().enumerate() {
        per_destination[j] = targets[slot];
    }

    let kind = located.kind.as_str();
    let index = located.index.to_string();
    let route_ptr = |rest: &[&str]| {
        PointerBuf::from_tokens(
            ["spec", kind, index.as_str()]
                .into_iter()
                .chain(rest.iter().copied()),
        )
    };

    let mut ops = vec![PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: Value::String(resource_version.clone()),
    })];
    // Route identity: the index path must still hold the route the selector found.
    let name = located.route.get("name").filter(|v| !v.is_null());
    let matches = located.route.get("match").filter(|v| !v.is_null());
    let (test_name, test_match) = match &config.route {
        RouteSelector::HttpName(_) => (true, false),
        RouteSelector::TcpPort(_) => (false, true),
        RouteSelector::Hosts(_) => (name.is_some(), matches.is_some()),
    };
    if let (true, Some(name)) = (test_name, name) {
        ops.push(PatchOperation::Test(TestOperation {
            path: route_ptr(&["name"]),
            value: name.clone(),
        }));
    }
    if let (true, Some(matches)) = (test_match, matches) {
        ops.push(PatchOperation::Test(TestOperation {
            path: route_ptr(&["match"]),
            value: matches.clone(),
        }));
    }
    for (j, found) in located.found.iter().enumerate() {
        ops.push(PatchOperation::Test(TestOperation {
            path: route_ptr(&["route", &j.to_string(), "destination"]),
            value: found.raw.clone(),
        }));
    }
    for (j, found) in located.found.iter().enumerate() {
        let path = route_ptr(&["route", &j.to_string(), "weight"]);
        let value = Value::from(per_destination[j]);
        ops.push(match found.weight {
            Some(_) => PatchOperation::Replace(ReplaceOperation { path, value }),
            None => PatchOperation::Add(AddOperation { path, value }),
        });
    }

    let unchanged = located
        .found
        .iter()
        .zip(&per_destination)
        .all(|(found, &target)| found.weight == Some(target));
    Ok(Plan {
        patch: json_patch::Patch(ops),
        resource_version,
        route_path: format!("/spec/{kind}/{index}"),
        weights: per_destination,
        unchanged,
    })
}

/// Reads the managed route's current weights as Weir weights over `replicas` replicas,
/// normalised to sum to [`Weights::TOTAL`].
///
/// With `two_services` Istio only knows the reader service's total, so that share is split
/// evenly over the replicas. A destination without `weight` counts as 0, unless it is the
/// only destination with weight 0 in total (Istio then sends it everything).
pub fn current_weights(
    object: &Value,
    config: &IstioConfig,
    replicas: usize,
) -> Result<Weights, IstioError> {
    if let Layout::PerReplica {
        replicas: dests, ..
    } = &config.layout
        && dests.len() != replicas
    {
        return Err(IstioError::InvalidWeights(format!(
            "asked for {replicas} replicas but the per_replica layout names {}",
            dests.len()
        )));
    }
    let located = locate(object, config)?;
    let mut slot_weights: Vec<f64> = located
        .slots
        .iter()
        .map(|&j| f64::from(located.found[j].weight.unwrap_or(0)))
        .collect();
    let total: f64 = slot_weights.iter().sum();
    if total <= 0.0 {
        if located.found.len() == 1 {
            slot_weights[0] = 1.0;
        } else {
            return Err(IstioError::Malformed(format!(
                "route /spec/{}/{} has no positive weight",
                located.kind.as_str(),
                located.index
            )));
        }
    }
    let total: f64 = slot_weights.iter().sum();
    let primary_share = slot_weights[0] / total;
    let factors: Vec<f64> = match &config.layout {
        Layout::TwoServices { .. } => vec![1.0; replicas],
        Layout::PerReplica { .. } => slot_weights[1..].to_vec(),
    };
    Ok(Weights::from_parts(primary_share, &factors))
}

/// Istio weights per slot (see [`Located::slots`]) for Weir's `weights`, validated.
fn target_weights(layout: &Layout, weights: &Weights) -> Result<Vec<u32>, IstioError> {
    let wide: Vec<u64> = match layout {
        Layout::TwoServices { .. } => vec![
            u64::from(weights.primary),
            weights.replicas.iter().copied().map(u64::from).sum(),
        ],
        Layout::PerReplica { replicas, .. } => {
            if weights.replicas.len() != replicas.len() {
                return Err(IstioError::InvalidWeights(format!(
                    "{} replica weights for {} configured replica destinations",
                    weights.replicas.len(),
                    replicas.len()
                )));
            }
            weights.iter().map(u64::from).collect()
        }
    };
    let max = u64::from(i32::MAX.unsigned_abs());
    let mut out = Vec::with_capacity(wide.len());
    for w in &wide {
        match u32::try_from(*w) {
            Ok(w) if u64::from(w) <= max => out.push(w),
            _ => {
                return Err(IstioError::InvalidWeights(format!(
                    "weight {w} exceeds Istio's int32 range"
                )));
            }
        }
    }
    if wide.iter().sum::<u64>() == 0 {
        return Err(IstioError::InvalidWeights(format!(
            "{weights}: every weight is zero, Istio needs a positive total"
        )));
    }
    Ok(out)
}

/// Finds the one route the selector names and checks it against the layout.
fn locate(object: &Value, config: &IstioConfig) -> Result<Located, IstioError> {
    let vs = format!("{}/{}", config.namespace, config.virtual_service);
    let spec = object
        .get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| IstioError::Malformed(format!("{vs} has no spec")))?;
    let kinds: &[RouteKind] = match &config.route {
        RouteSelector::HttpName(_) => &[RouteKind::Http],
        RouteSelector::TcpPort(_) => &[RouteKind::Tcp],
        RouteSelector::Hosts(_) => &[RouteKind::Http, RouteKind::Tcp],
    };
    let mut hits = Vec::new();
    for &kind in kinds {
        let Some(routes) = spec.get(kind.as_str()).and_then(Value::as_array) else {
            continue;
        };
        for (index, route) in routes.iter().enumerate() {
            if selects(&config.route, route) {
                hits.push((kind, index, route));
            }
        }
    }
    let (kind, index, route) = match hits.as_slice() {
        [] => {
            return Err(IstioError::RouteNotFound {
                selector: config.route.to_string(),
                vs,
                found: summarise(spec),
            });
        }
        [one] => *one,
        many => {
            return Err(IstioError::AmbiguousRoute {
                selector: config.route.to_string(),
                vs,
                count: many.len(),
                paths: many
                    .iter()
                    .map(|(k, i, _)| format!("/spec/{}/{i}", k.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let path = format!("/spec/{}/{index}", kind.as_str());
    let found = destinations(route, &path)?;
    let slots = assign(&config.layout, &found, &path)?;
    Ok(Located {
        kind,
        index,
        route: route.clone(),
        found,
        slots,
    })
}

/// Whether `route` is the one the selector names.
fn selects(selector: &RouteSelector, route: &Value) -> bool {
    match selector {
        RouteSelector::HttpName(name) => {
            route.get("name").and_then(Value::as_str) == Some(name.as_str())
        }
        RouteSelector::TcpPort(port) => {
            route
                .get("match")
                .and_then(Value::as_array)
                .is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m.get("port").and_then(Value::as_u64) == Some(u64::from(*port)))
                })
        }
        RouteSelector::Hosts(hosts) => {
            let wanted: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
            let have: BTreeSet<&str> = route
                .get("route")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| d.pointer("/destination/host").and_then(Value::as_str))
                .collect();
            !have.is_empty() && have == wanted
        }
    }
}

/// The route's `route[]` destinations and weights.
fn destinations(route: &Value, path: &str) -> Result<Vec<Found>, IstioError> {
    let list = route
        .get("route")
        .and_then(Value::as_array)
        .ok_or_else(|| IstioError::UnexpectedLayout {
            path: path.to_owned(),
            expected: "a route[] list of destinations".into(),
            found: "no route[] (a redirect, direct response or delegate?)".into(),
        })?;
    let mut out = Vec::with_capacity(list.len());
    for (j, entry) in list.iter().enumerate() {
        let raw = entry
            .get("destination")
            .filter(|d| d.is_object())
            .ok_or_else(|| IstioError::Malformed(format!("{path}/route/{j} has no destination")))?;
        let host = raw
            .get("host")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                IstioError::Malformed(format!("{path}/route/{j}/destination has no host"))
            })?
            .to_owned();
        let subset = match raw.get("subset") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(IstioError::Malformed(format!(
                    "{path}/route/{j}/destination/subset is not a string: {other}"
                )));
            }
        };
        let weight =
            match entry.get("weight") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|w| u32::try_from(w).ok()).ok_or_else(
                    || {
                        IstioError::Malformed(format!(
                            "{path}/route/{j}/weight is not a non-negative int32: {v}"
                        ))
                    },
                )?),
            };
        out.push(Found {
            raw: raw.clone(),
            destination: Destination { host, subset },
            weight,
        });
    }
    Ok(out)
}

/// Maps Weir's slots onto the found destinations, one to one, or explains the mismatch.
fn assign(layout: &Layout, found: &[Found], path: &str) -> Result<Vec<usize>, IstioError> {
    // One wanted destination per slot; each found destination may serve one slot only.
    let (expected, wanted): (String, Vec<Wanted<'_>>) = match layout {
        Layout::TwoServices {
            primary_host,
            replicas_host,
        } => (
            format!("{primary_host} (primary), {replicas_host} (replicas)"),
            vec![Wanted::Host(primary_host), Wanted::Host(replicas_host)],
        ),
        Layout::PerReplica { primary, replicas } => {
            let mut text = format!("{primary} (primary)");
            for r in replicas {
                let _ = write!(text, ", {r}");
            }
            let wanted = std::iter::once(primary)
                .chain(replicas)
                .map(Wanted::Exact)
                .collect();
            (text, wanted)
        }
    };
    let mismatch = || IstioError::UnexpectedLayout {
        path: path.to_owned(),
        expected: expected.clone(),
        found: found
            .iter()
            .map(|f| f.destination.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    if found.len() != wanted.len() {
        return Err(mismatch());
    }
    let mut used = vec![false; found.len()];
    let mut slots = Vec::with_capacity(wanted.len());
    for want in &wanted {
        let j = found
            .iter()
            .enumerate()
            .position(|(j, f)| !used[j] && want.accepts(&f.destination))
            .ok_or_else(mismatch)?;
        used[j] = true;
        slots.push(j);
    }
    Ok(slots)
}

/// What one of Weir's slots needs from a route destination.
enum Wanted<'a> {
    /// `two_services`: this host, whatever the subset.
    Host(&'a str),
    /// `per_replica`: exactly this host and subset.
    Exact(&'a Destination),
}

impl Wanted<'_> {
    fn accepts(&self, d: &Destination) -> bool {
        match self {
            Wanted::Host(host) => d.host == *host,
            Wanted::Exact(want) => d == *want,
        }
    }
}

/// A one-line summary of the routes a VirtualService has, for "route not found".
fn summarise(spec: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(http) = spec.get("http").and_then(Value::as_array) {
        let names: Vec<String> = http
            .iter()
            .map(|r| match r.get("name").and_then(Value::as_str) {
                Some(n) => format!("{n:?}"),
                None => "<unnamed>".into(),
            })
            .collect();
        parts.push(format!("http routes [{}]", names.join(", ")));
    }
    if let Some(tcp) = spec.get("tcp").and_then(Value::as_array) {
        let ports: Vec<String> = tcp
            .iter()
            .map(|r| {
                let ports: Vec<String> = r
                    .get("match")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.get("port").and_then(Value::as_u64))
                    .map(|p| p.to_string())
                    .collect();
                if ports.is_empty() {
                    "<any port>".to_owned()
                } else {
                    format!("port {}", ports.join("|"))
                }
            })
            .collect();
        parts.push(format!("tcp routes [{}]", ports.join(", ")));
    }
    if parts.is_empty() {
        "no http or tcp routes".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests;
