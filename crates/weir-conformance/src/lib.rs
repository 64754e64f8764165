//! Weir's traffic conformance suite: every governance feature proved with real requests
//! through a real Envoy.
//!
//! For each feature a policy is written inline, its upstreams (small HTTP servers on
//! 127.0.0.1 that answer with their identity, locality and the headers they got,
//! [`upstream`]) are started, the inventory a user would write is generated, the standalone
//! bootstrap is rendered by `weir_govern::standalone` and run by a real Envoy ([`envoy`],
//! [`harness`]), and requests are sent through it. Every [`check::Check`] states the policy
//! line it proves, the requests sent, what the policy says should happen and what did.
//!
//! **Never:** a hard-coded result, a pass/fail on wall-clock time beyond the tolerances the
//! issue states (timings are measured and reported), or anything bound beyond 127.0.0.x.

pub mod check;
pub mod envoy;
pub mod harness;
pub mod suites;
pub mod upstream;

use std::path::PathBuf;

pub use check::Check;
pub use harness::Ctx;

/// What can go wrong while setting a check up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        error: std::io::Error,
    },
    /// The policy (or the inventory) did not compile or render.
    #[error("policy {name}: {problems}")]
    Policy {
        /// The scenario.
        name: String,
        /// Every problem.
        problems: String,
    },
    /// No Envoy binary.
    #[error(
        "Envoy not found at {}: run `cargo xtask prerequisites` from the repository root, or \
         set WEIR_ENVOY_BIN",
        .0.display()
    )]
    EnvoyMissing(PathBuf),
    /// Envoy did not become ready.
    #[error("Envoy did not become ready ({why}); its log: {}", .log.display())]
    EnvoyNotReady {
        /// Its log file.
        log: PathBuf,
        /// What happened.
        why: String,
    },
    /// No `redis-server` (the global rate limit's counters).
    #[error(
        "`redis-server` is not installed: `apt-get install -y redis-server` (cargo xtask test \
         installs it)"
    )]
    RedisMissing,
    /// The rate-limit service could not start or stop.
    #[error("weir ratelimit: {0}")]
    RateLimit(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
}

impl Error {
    /// An IO error with what was being done.
    pub fn io(what: &str, error: std::io::Error) -> Error {
        Error::Io {
            what: what.to_string(),
            error,
        }
    }
}

/// A policy document named `name` for host `name.conformance.svc.cluster.local:8080`; `spec`
/// is the rest of the spec, indented by two spaces.
pub fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: TrafficPolicy\n\
         metadata: {{ name: {name}, namespace: conformance }}\n\
         spec:\n  host: {name}.conformance.svc.cluster.local\n  port: 8080\n{spec}"
    )
}

/// The suites, in the order they run.
pub const SUITES: [&str; 10] = [
    "matches",
    "weights",
    "affinity",
    "affinity-payoff",
    "local-rate-limit",
    "circuit-breaker",
    "outlier-ejection",
    "nearby",
    "environments",
    "global-rate-limit",
];

/// Runs one suite of [`SUITES`] (an unknown name runs nothing).
pub async fn run_suite(ctx: &Ctx, suite: &str) -> Vec<Check> {
    match suite {
        "matches" => suites::matches::run(ctx).await,
        "weights" => suites::traffic::weights(ctx).await,
        "affinity" => suites::traffic::affinity(ctx).await,
        "affinity-payoff" => suites::payoff::run(ctx).await,
        "local-rate-limit" => suites::limits::local_rate_limit(ctx).await,
        "circuit-breaker" => suites::limits::circuit_breaker(ctx).await,
        "outlier-ejection" => suites::limits::outlier_ejection(ctx).await,
        "nearby" => suites::nearby::run(ctx).await,
        "environments" => suites::environments::run(ctx).await,
        "global-rate-limit" => suites::global::run(ctx).await,
        _ => Vec::new(),
    }
}

/// Runs the suites named in `only` (every suite when empty).
pub async fn run(ctx: &Ctx, only: &[String]) -> Vec<Check> {
    let mut checks = Vec::new();
    for s in SUITES {
        if only.is_empty() || only.iter().any(|o| o == s) {
            checks.extend(run_suite(ctx, s).await);
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    #[test]
    fn policies_parse() {
        let p = super::policy(
            "t",
            "  subsets: [ { name: v1, labels: { version: v1 } } ]\n  \
             routes: [ { name: all, destinations: [ { subset: v1 } ] } ]\n",
        );
        let ps = weir_govern::parse(&p, "t").unwrap();
        assert_eq!(ps[0].spec.host, "t.conformance.svc.cluster.local");
        weir_govern::compile(&ps[0], "t").unwrap();
    }
}
