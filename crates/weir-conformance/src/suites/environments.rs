//! Environments and traffic dyeing: a dyed request reaches its feature subset, falls back to
//! the baseline where the feature environment has no subset, and headers are set as the
//! policy says — from a baseline caller and from a caller in the feature environment.

use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, EndpointLine, Outcome, Probe, Proxy, send_all};
use crate::upstream::UpstreamSpec;

const ENVIRONMENTS: &str =
    "environments: { label: env, baseline: base, header: x-env, propagate: [x-env, x-request-id] }";

fn policy() -> String {
    crate::policy(
        "environments",
        &format!(
            "  subsets:\n    - {{ name: stable, labels: {{ env: base, version: v1 }} }}\n    \
             - {{ name: canary, labels: {{ env: base, version: v2 }} }}\n    \
             - {{ name: feature-pay, labels: {{ env: feature-pay }} }}\n  routes:\n    \
             - name: staff-canary\n      \
             match: [ {{ source: header, key: x-user-group, op: equals, value: staff }} ]\n      \
             destinations: [ {{ subset: canary }} ]\n      set_headers: {{ x-canary: \"1\" }}\n    \
             - name: default\n      destinations: [ {{ subset: stable }} ]\n  {ENVIRONMENTS}\n"
        ),
    )
}

/// Runs the dyeing checks.
pub async fn run(ctx: &Ctx) -> Vec<Check> {
    super::or_failed("environments", ENVIRONMENTS, run_inner(ctx).await)
}

/// (subset, `header` as the upstream saw it) for each answer.
fn seen(outcomes: &[Outcome], header: &str) -> Tally {
    let mut t = Tally::new();
    for o in outcomes {
        match &o.answer {
            Some(a) if o.status == 200 => t.add(&format!(
                "{} ({header}: {})",
                a.subset,
                a.headers.get(header).map_or("none", String::as_str)
            )),
            _ => t.add(&o.who()),
        }
    }
    t
}

struct Case<'a> {
    feature: &'a str,
    line: &'a str,
    proxy: &'a Proxy,
    probe: Probe,
    header: &'a str,
    expected: &'a str,
}

async fn check(ctx: &Ctx, n: usize, c: Case<'_>) -> Check {
    let outcomes = send_all(&ctx.client, &c.proxy.base, &vec![c.probe; n], 8).await;
    let t = seen(&outcomes, c.header);
    Check {
        feature: format!("environments: {}", c.feature),
        policy_line: c.line.into(),
        requests: n as u64,
        expected: format!("all {n}: {}", c.expected),
        observed: t.describe(),
        pass: t.get(c.expected) == n as u64,
    }
}

async fn run_inner(ctx: &Ctx) -> Result<Vec<Check>, crate::Error> {
    let base_caller = Caller::labelled("env", "base");
    let running = ctx
        .start(
            "environments",
            &policy(),
            &base_caller,
            &[
                UpstreamSpec::new("stable-a", "stable"),
                UpstreamSpec::new("canary-a", "canary"),
                UpstreamSpec::new("pay-a", "feature-pay"),
            ],
        )
        .await?;
    let endpoints: Vec<EndpointLine> = running
        .upstreams
        .iter()
        .map(|u| EndpointLine {
            subset: u.spec.subset.clone(),
            address: u.addr,
            locality: None,
        })
        .collect();
    let feature_caller = ctx
        .proxy(
            "environments-feature-caller",
            &policy(),
            &Caller::labelled("env", "feature-pay"),
            None,
            &endpoints,
            crate::harness::DEFAULT_WORKERS,
        )
        .await?;
    let n = if ctx.short { 20 } else { 50 };
    let base = &running.proxy;
    let cases = [
        Case {
            feature: "dynamic dyeing",
            line: "subset feature-pay (env: feature-pay); header x-env",
            proxy: base,
            probe: Probe::get().header("x-env", "feature-pay"),
            header: "x-env",
            expected: "feature-pay (x-env: feature-pay)",
        },
        Case {
            feature: "fallback to baseline",
            line: "route default → stable (no subset has env: feature-other)",
            proxy: base,
            probe: Probe::get().header("x-env", "feature-other"),
            header: "x-env",
            expected: "stable (x-env: feature-other)",
        },
        Case {
            feature: "fallback keeps the user's routes",
            line: "route staff-canary: header x-user-group equals staff → canary; set_headers: { x-canary: \"1\" }",
            proxy: base,
            probe: Probe::get()
                .header("x-env", "feature-other")
                .header("x-user-group", "staff"),
            header: "x-canary",
            expected: "canary (x-canary: 1)",
        },
        Case {
            feature: "undyed from the baseline",
            line: "route default → stable",
            proxy: base,
            probe: Probe::get(),
            header: "x-env",
            expected: "stable (x-env: none)",
        },
        Case {
            feature: "static dyeing",
            line: "caller labelled env: feature-pay, no x-env → feature-pay, x-env set",
            proxy: &feature_caller,
            probe: Probe::get(),
            header: "x-env",
            expected: "feature-pay (x-env: feature-pay)",
        },
    ];
    let mut checks = Vec::new();
    for c in cases {
        checks.push(check(ctx, n, c).await);
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_compiles() {
        let ps = weir_govern::parse(&super::policy(), "environments").unwrap();
        weir_govern::compile(&ps[0], "environments").unwrap();
    }
}
