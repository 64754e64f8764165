//! Weir's governance compiler: one readable `TrafficPolicy` file in, Istio objects that are
//! correct by construction out — or every reason why not, each naming the file, the field and
//! the value.
//!
//! A policy ([`policy::TrafficPolicy`], YAML, unknown fields rejected) names a service, its
//! subsets and ordered routes with PolarisMesh-style conditions (`equals`, `not_equals`,
//! `prefix`, `regex`, `in`, `not_in`, `range`, `less_than`, `greater_than`, `exists`,
//! `absent` on headers, query parameters, cookies, caller labels, the path and the method),
//! canary weights, request affinity, circuit breaking, local and global rate limits, nearby
//! routing and baseline/feature environments with traffic dyeing. [`compile()`] turns it
//! into a `DestinationRule`, a `VirtualService` (`networking.istio.io/v1`) and the
//! `EnvoyFilter`s rate limits and one-hop headers need (typed in [`istio`]), plus the global
//! rate-limit service's configuration ([`ratelimit`], envoyproxy/ratelimit's format) and
//! notes on every Istio caveat that applies; [`compile::to_yaml`] writes them as one
//! deterministic YAML stream in apply order; [`explain()`] says it all in words; [`lint`]
//! runs the same checks on Istio YAML written by hand; [`envoy`] renders routes and
//! EnvoyFilter patches for a plain Envoy.
//!
//! What it gets right that hand-written YAML and other generators get wrong:
//!
//! - a condition is never widened: `in` is an escaped RE2 alternation, `not_in` and
//!   `not_equals` are `withoutHeaders`, numeric operators are exact regexes over the canonical
//!   decimal text ([`range`]), a cookie is matched within its own value; what Istio cannot
//!   express (excluding by query parameter, path or method; look-around) is refused;
//! - routes keep their order; a route an earlier one shadows, or anything after the fallback,
//!   is an error; weights are integers summing to 100;
//! - affinity turns locality load balancing off unless locality is asked for (otherwise the
//!   same key reaches different instances from different localities), and is refused on a
//!   route split by weight unless the user accepts that the split happens first;
//! - nearby routing adds the outlier detection locality failover needs, and says so;
//! - a global rate limit comes with the `rate_limits` actions that send its descriptors and
//!   the service configuration that counts them, generated from one list ([`limits`]); the
//!   filter goes before the router, into the service's own inbound proxies, with no pinned
//!   proxy version unless asked for;
//! - environment routes come before the user's, which may only send to the baseline.
//!
//! **Never:** IO, a clock, or a Kubernetes client. The binary reads files and writes output;
//! the operator applies objects.

pub mod compile;
mod environments;
pub mod envoy;
pub mod explain;
pub mod istio;
pub mod limits;
pub mod lint;
pub mod matcher;
pub mod monitoring;
pub mod policy;
mod problem;
pub mod range;
pub mod ratelimit;
pub mod standalone;

pub use compile::{MANAGED_BY, Output, POLICY_LABEL, compile, to_yaml};
pub use explain::explain;
pub use policy::TrafficPolicy;
pub use problem::{Problem, Problems};

/// How many YAML documents `text` has, and its first syntax error with the (1-based) document
/// it is in. The YAML reader's document iterator does not end after a syntax error, so every
/// reader of outside YAML scans first and stops at the first error.
pub(crate) fn scan_yaml(text: &str) -> (usize, Option<(usize, serde_norway::Error)>) {
    use serde::Deserialize as _;
    let mut n = 0;
    for doc in serde_norway::Deserializer::from_str(text) {
        n += 1;
        if let Err(e) = serde::de::IgnoredAny::deserialize(doc) {
            return (n, Some((n, e)));
        }
    }
    (n, None)
}

/// Reads every policy in `text` (one YAML document each; `---` separates several); `origin`
/// names the file in problems.
pub fn parse(text: &str, origin: &str) -> Result<Vec<TrafficPolicy>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let blank = text
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if !blank && let (_, Some((doc, e))) = scan_yaml(text) {
        return Err(Problems(vec![Problem {
            origin: origin.to_string(),
            path: format!("(document {doc})"),
            value: None,
            message: format!("not YAML: {e}"),
        }]));
    }
    let docs: Vec<_> = if blank {
        Vec::new()
    } else {
        serde_norway::Deserializer::from_str(text).collect()
    };
    let several = docs.len() > 1;
    for (i, doc) in docs.into_iter().enumerate() {
        let prefix = if several {
            format!("(document {}) ", i + 1)
        } else {
            String::new()
        };
        match serde_path_to_error::deserialize::<_, TrafficPolicy>(doc) {
            Ok(p) => out.push(p),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                // The YAML reader names the field (or its parent) at the start of its
                // message: the path says it already.
                let message = match message.split_once(": ") {
                    Some((head, rest)) if path.starts_with(head) => rest.to_string(),
                    _ => message,
                };
                problems.push(Problem {
                    origin: origin.to_string(),
                    path: format!(
                        "{prefix}{}",
                        if path == "." {
                            "(document)".to_string()
                        } else {
                            path
                        }
                    ),
                    value: None,
                    message,
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    if out.is_empty() {
        return Err(Problems(vec![Problem {
            origin: origin.to_string(),
            path: "(document)".to_string(),
            value: None,
            message: "no policy in this file".to_string(),
        }]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
