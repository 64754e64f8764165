//! Nearby routing: traffic stays in the caller's zone, fails over to its region, then
//! further, as the zone's upstreams die.

use std::time::{Duration, Instant};

use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, Probe, Running, send, send_all};
use crate::upstream::{Locality, UpstreamSpec};

const LOCALITY: &str = "locality: { levels: [zone, region] }";
const BREAKER: &str = "circuit_breaker: { consecutive_5xx: 2, interval_s: 1, base_ejection_s: 60, \
                       max_ejection_percent: 100 }";

fn policy() -> String {
    crate::policy(
        "nearby",
        &format!(
            "  subsets: [ {{ name: s, labels: {{ version: s }} }} ]\n  \
             routes: [ {{ name: all, destinations: [ {{ subset: s }} ] }} ]\n  {LOCALITY}\n  \
             {BREAKER}\n"
        ),
    )
}

/// Runs the three phases.
pub async fn run(ctx: &Ctx) -> Vec<Check> {
    super::or_failed("nearby routing", LOCALITY, run_inner(ctx).await)
}

/// How long failover may take before the check gives up: Envoy ejects the second host of a
/// priority only at the next detection interval (`interval_s: 1`; envoyproxy/envoy#28304), so
/// a burst sent inside that second keeps reaching a dead host. Far above the 1 s it takes.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// How long after the last ejection shows in the stats until load balancing surely reflects it:
/// one detection interval (`interval_s: 1`) and a margin. `ejections_active` and `/clusters`
/// show a host ejected while the workers' healthy-host lists may still hold it until the
/// detector's next tick (measured: a request failed right after both were counted).
const APPLIED: Duration = Duration::from_millis(1_200);

/// The admin stat counting ejected endpoints.
const EJECTED: &str = "cluster.outbound|8080|s|nearby.conformance.svc.cluster.local.outlier_detection.ejections_active";

/// What failing over cost: requests sent, those that failed, and how long until every stopped
/// endpoint was ejected (plus [`APPLIED`]) and 20 requests in a row were answered.
struct Settled {
    sent: u64,
    failed: Tally,
    took: Duration,
}

async fn ejected(ctx: &Ctx, r: &Running) -> Option<u64> {
    r.proxy.envoy.stat(&ctx.client, EJECTED).await
}

/// Requests, 20 ms apart while they fail, until Envoy has ejected `stopped` endpoints, one
/// [`APPLIED`] has passed since, and 20 requests in a row are answered. Istio's default retries (rendered by the standalone target
/// too) hide most failures before the ejections are done, so answers alone do not show that
/// failover is complete.
async fn settle(ctx: &Ctx, r: &Running, stopped: u64) -> Settled {
    let started = Instant::now();
    let mut failed = Tally::new();
    let mut in_a_row = 0;
    let mut sent = 0;
    let mut all_ejected = None;
    while started.elapsed() < SETTLE_DEADLINE {
        let o = send(&ctx.client, r.base(), &Probe::get()).await;
        sent += 1;
        if o.answer.is_some() && o.status == 200 {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            failed.add(&o.who());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if all_ejected.is_none() && ejected(ctx, r).await.is_some_and(|n| n >= stopped) {
            all_ejected = Some(Instant::now());
        }
        if in_a_row >= 20 && all_ejected.is_some_and(|t| t.elapsed() >= APPLIED) {
            break;
        }
    }
    Settled {
        sent,
        failed,
        took: started.elapsed(),
    }
}

async fn phase(
    ctx: &Ctx,
    r: &Running,
    n: usize,
    what: &str,
    expected: &str,
    settling: Option<Settled>,
) -> Check {
    let outcomes = send_all(&ctx.client, r.base(), &vec![Probe::get(); n], 8).await;
    let mut tally = Tally::new();
    for o in &outcomes {
        match &o.answer {
            Some(a) if o.status == 200 => tally.add(&a.locality),
            _ => tally.add(&o.who()),
        }
    }
    let ejected = ejected(ctx, r)
        .await
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    Check {
        feature: format!("nearby routing: {what}"),
        policy_line: format!("{LOCALITY} (caller east/east-1)"),
        requests: n as u64 + settling.as_ref().map_or(0, |s| s.sent),
        expected: format!("all {n} answered in {expected}"),
        observed: match &settling {
            Some(s) => format!(
                "{}; failing over (every stopped endpoint ejected, 1.2 s more, 20 answered in a \
                 row) took {} ms, {} of {} requests failed meanwhile ({}); endpoints ejected: \
                 {ejected}",
                tally.describe(),
                s.took.as_millis(),
                s.failed.total(),
                s.sent,
                s.failed.describe()
            ),
            None => format!("{}; endpoints ejected: {ejected}", tally.describe()),
        },
        pass: tally.get(expected) == n as u64,
    }
}

async fn run_inner(ctx: &Ctx) -> Result<Vec<Check>, crate::Error> {
    let caller = Caller {
        locality: Locality::zone("east", "east-1"),
        ..Caller::default()
    };
    let r = ctx
        .start(
            "nearby",
            &policy(),
            &caller,
            &[
                UpstreamSpec::new("e1-a", "s").at(Locality::zone("east", "east-1")),
                UpstreamSpec::new("e1-b", "s").at(Locality::zone("east", "east-1")),
                UpstreamSpec::new("e2-a", "s").at(Locality::zone("east", "east-2")),
                UpstreamSpec::new("w1-a", "s").at(Locality::zone("west", "west-1")),
            ],
        )
        .await?;
    let n = if ctx.short { 100 } else { 300 };
    let mut checks = vec![phase(ctx, &r, n, "all healthy", "east/east-1", None).await];
    for id in ["e1-a", "e1-b"] {
        if let Some(u) = r.upstream(id) {
            u.stop();
        }
    }
    let s = settle(ctx, &r, 2).await;
    r.proxy.snapshot(ctx, "zone-stopped").await;
    checks.push(phase(ctx, &r, n, "zone east-1 stopped", "east/east-2", Some(s)).await);
    if let Some(u) = r.upstream("e2-a") {
        u.stop();
    }
    let s = settle(ctx, &r, 3).await;
    r.proxy.snapshot(ctx, "region-stopped").await;
    checks.push(phase(ctx, &r, n, "region east stopped", "west/west-1", Some(s)).await);
    Ok(checks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_compiles() {
        let ps = weir_govern::parse(&super::policy(), "nearby").unwrap();
        weir_govern::compile(&ps[0], "nearby").unwrap();
    }
}
