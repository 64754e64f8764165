//! The local rate limit, circuit breaking (connection and pending-request limits) and outlier
//! ejection.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, Probe, send};
use crate::upstream::UpstreamSpec;

/// The admitted rate's tolerance around the limit (the issue's ±5 %).
pub const RATE_TOLERANCE: f64 = 0.05;

fn one_subset(name: &str, extra: &str) -> String {
    crate::policy(
        name,
        &format!(
            "  subsets: [ {{ name: s, labels: {{ version: s }} }} ]\n  \
             routes: [ {{ name: all, destinations: [ {{ subset: s }} ] }} ]\n{extra}"
        ),
    )
}

/// Whether `admitted` over `seconds` is within ±5 % of `limit` per second.
pub fn rate_holds(admitted: u64, seconds: f64, limit: f64) -> bool {
    seconds > 0.0 && ((admitted as f64 / seconds) - limit).abs() <= RATE_TOLERANCE * limit
}

/// At 3× the limit, the admitted rate is the limit (±5 %) and the rest get 429.
pub async fn local_rate_limit(ctx: &Ctx) -> Vec<Check> {
    let line = "rate_limit: { local: { requests: 20, per: second, burst: 20 } }";
    super::or_failed("local rate limit", line, local_inner(ctx, line).await)
}

async fn local_inner(ctx: &Ctx, line: &str) -> Result<Vec<Check>, crate::Error> {
    let name = "local-rate-limit";
    let running = ctx
        .start(
            name,
            &one_subset(name, &format!("  {line}\n")),
            &Caller::default(),
            &[UpstreamSpec::new("s-a", "s")],
        )
        .await?;
    let (limit, offered, seconds) = (20.0_f64, 60u32, 3u32);
    // Empty the bucket first, so that the window measures the refill rate, not the burst.
    let mut drained = 0;
    for _ in 0..100 {
        drained += 1;
        if send(&ctx.client, running.base(), &Probe::get())
            .await
            .status
            == 429
        {
            break;
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(offered)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for _ in 0..offered * seconds {
        tick.tick().await;
        let (c, base) = (ctx.client.clone(), running.base().to_string());
        tasks.spawn(async move { send(&c, &base, &Probe::get()).await });
    }
    let offered_for = started.elapsed().as_secs_f64() + 1.0 / f64::from(offered);
    let mut tally = Tally::new();
    let mut labelled = 0u64;
    while let Some(Ok(o)) = tasks.join_next().await {
        match (o.status, &o.answer) {
            (200, Some(_)) => tally.add("admitted"),
            (429, _) => {
                tally.add("429");
                if o.header("x-weir-rate-limited") == Some("local") {
                    labelled += 1;
                }
            }
            _ => tally.add(&o.who()),
        }
    }
    let admitted = tally.get("admitted");
    let limited = tally.get("429");
    let sent = u64::from(offered * seconds);
    Ok(vec![Check {
        feature: "local rate limit".into(),
        policy_line: line.into(),
        requests: sent + drained,
        expected: format!(
            "{offered}/s offered for {seconds} s after emptying the bucket: admitted {limit}/s \
             ±5%, every other request 429 with `x-weir-rate-limited: local`"
        ),
        observed: format!(
            "{} over {offered_for:.2} s = {:.1}/s admitted; 429 with the header: \
             {labelled}/{limited}; bucket emptied after {drained} requests",
            tally.describe(),
            admitted as f64 / offered_for
        ),
        pass: rate_holds(admitted, offered_for, limit)
            && admitted + limited == sent
            && labelled == limited,
    }])
}

/// Beyond `max_connections` + `max_pending_requests`, requests fail fast with 503 and
/// `x-envoy-overloaded`.
pub async fn circuit_breaker(ctx: &Ctx) -> Vec<Check> {
    let line = "circuit_breaker: { max_connections: 1, max_pending_requests: 1 }";
    super::or_failed("circuit breaking", line, breaker_inner(ctx, line).await)
}

async fn breaker_inner(ctx: &Ctx, line: &str) -> Result<Vec<Check>, crate::Error> {
    let name = "circuit-breaker";
    // One worker: each worker has its own connection pool, and a pool with no connection may
    // open one past the cluster's limit (measured: 2 at once at the upstream with 2 workers).
    let running = ctx
        .start_with(
            name,
            &one_subset(name, &format!("  {line}\n")),
            &Caller::default(),
            &[UpstreamSpec::new("s-a", "s")],
            1,
        )
        .await?;
    let delay = Duration::from_secs(1);
    if let Some(u) = running.upstream("s-a") {
        u.set_delay(delay);
    }
    let n = 10u64;
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (c, base) = (ctx.client.clone(), running.base().to_string());
        tasks.spawn(async move { send(&c, &base, &Probe::get()).await });
    }
    let mut tally = Tally::new();
    let mut slowest_overload = Duration::ZERO;
    while let Some(Ok(o)) = tasks.join_next().await {
        if o.status == 503 && o.header("x-envoy-overloaded") == Some("true") {
            tally.add("503 x-envoy-overloaded");
            slowest_overload = slowest_overload.max(o.elapsed);
        } else if o.status == 200 && o.answer.is_some() {
            tally.add("200");
        } else {
            tally.add(&o.who());
        }
    }
    running.proxy.snapshot(ctx, "after").await;
    let peak = running.upstream("s-a").map_or(0, |u| u.peak_in_flight());
    let overloaded = tally.get("503 x-envoy-overloaded");
    let answered = tally.get("200");
    Ok(vec![Check {
        feature: "circuit breaking (connections, pending)".into(),
        policy_line: line.into(),
        requests: n,
        expected: format!(
            "{n} concurrent requests through an Envoy with 1 worker, upstream answering in {} \
             ms: at most 1 request at the \
             upstream at once; at most 1 connection + 1 pending answered 200; every other \
             request fails fast (before the upstream's delay) with 503 + `x-envoy-overloaded`",
            delay.as_millis(),
        ),
        observed: format!(
            "{}; slowest overloaded answer {} ms; peak requests at the upstream {peak}",
            tally.describe(),
            slowest_overload.as_millis()
        ),
        pass: peak <= 1
            && (1..=2).contains(&answered)
            && answered + overloaded == n
            && slowest_overload < delay,
    }])
}

/// An upstream answering 5xx is ejected after `consecutive_5xx` and comes back after
/// `base_ejection_s`.
pub async fn outlier_ejection(ctx: &Ctx) -> Vec<Check> {
    let line = "circuit_breaker: { consecutive_5xx: 3, interval_s: 1, base_ejection_s: 3, \
                max_ejection_percent: 100 }";
    super::or_failed("outlier ejection", line, outlier_inner(ctx, line).await)
}

async fn outlier_inner(ctx: &Ctx, line: &str) -> Result<Vec<Check>, crate::Error> {
    let name = "outlier-ejection";
    let running = ctx
        .start(
            name,
            &one_subset(name, &format!("  {line}\n")),
            &Caller::default(),
            &[
                UpstreamSpec::new("good", "s"),
                UpstreamSpec::new("bad", "s"),
            ],
        )
        .await?;
    let (consecutive, base_ejection, interval) = (3u64, 3.0_f64, 1.0_f64);
    let Some(bad) = running.upstream("bad") else {
        return Err(crate::Error::Policy {
            name: name.into(),
            problems: "no upstream `bad`".into(),
        });
    };
    bad.set_failing(true);
    // What Envoy sends `bad` is read from `bad` itself: Istio's default retry policy (which the
    // standalone target renders too) sends each of its 503s on to `good`, so clients see 200.
    // Until `bad` has received nothing for 50 requests in a row.
    let mut sent = 0u64;
    let mut quiet = 0;
    let mut seen = Tally::new();
    let mut last = bad.received();
    let mut last_error = Instant::now();
    while quiet < 50 && sent < 1_000 {
        let o = send(&ctx.client, running.base(), &Probe::get()).await;
        sent += 1;
        seen.add(&if o.status == 200 {
            "200".to_string()
        } else {
            o.who()
        });
        let now = bad.received();
        if now == last {
            quiet += 1;
        } else {
            quiet = 0;
            last = now;
            last_error = Instant::now();
        }
    }
    let errors = bad.received();
    // It recovers; how long until Envoy sends it a request again?
    bad.set_failing(false);
    let mut back_after = None;
    let mut polled = 0u64;
    let give_up = Duration::from_secs_f64(base_ejection + interval + 5.0);
    while last_error.elapsed() < give_up {
        let _ = send(&ctx.client, running.base(), &Probe::get()).await;
        polled += 1;
        if bad.received() > errors {
            back_after = Some(last_error.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ejected = errors == consecutive && quiet >= 50 && seen.get("200") == sent;
    let back = back_after.is_some_and(|s| s >= base_ejection - 0.1);
    Ok(vec![
        Check {
            feature: "outlier ejection".into(),
            policy_line: line.into(),
            requests: sent,
            expected: format!(
                "upstream `bad` answers 503: it receives {consecutive} requests, is ejected, \
                 then receives none for 50 in a row; clients get 200 throughout (Istio's default \
                 retry sends each 503 on to `good`)"
            ),
            observed: format!(
                "`bad` received {errors} (answered 503), then none for {quiet} requests in a \
                 row; clients got {}",
                seen.describe()
            ),
            pass: ejected,
        },
        Check {
            feature: "outlier ejection: return".into(),
            policy_line: line.into(),
            requests: polled,
            expected: format!(
                "`bad`, healthy again, receives requests again no sooner than base_ejection_s = \
                 {base_ejection} s after its ejection (Envoy checks every interval_s = \
                 {interval} s)"
            ),
            observed: match back_after {
                Some(s) => format!("received a request again {s:.2} s after its last 503"),
                None => format!("not back within {} s", give_up.as_secs()),
            },
            pass: back,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_tolerance_is_five_percent() {
        assert!(rate_holds(60, 3.0, 20.0));
        assert!(rate_holds(63, 3.0, 20.0));
        assert!(rate_holds(57, 3.0, 20.0));
        assert!(!rate_holds(64, 3.0, 20.0));
        assert!(!rate_holds(56, 3.0, 20.0));
        assert!(!rate_holds(60, 0.0, 20.0));
    }

    #[test]
    fn limit_policies_compile() {
        for extra in [
            "  rate_limit: { local: { requests: 20, per: second, burst: 20 } }\n",
            "  circuit_breaker: { max_connections: 1, max_pending_requests: 1 }\n",
            "  circuit_breaker: { consecutive_5xx: 3, interval_s: 1, base_ejection_s: 3, \
             max_ejection_percent: 100 }\n",
        ] {
            let ps = weir_govern::parse(&one_subset("l", extra), "l").unwrap();
            weir_govern::compile(&ps[0], "l").unwrap();
        }
    }
}
