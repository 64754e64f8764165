//! Weighted splits and request affinity.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, Probe, Running, client, send, send_all};
use crate::upstream::UpstreamSpec;

/// The weights' tolerance, in percentage points (the issue's).
pub const WEIGHT_TOLERANCE_PP: f64 = 2.0;
/// With many keys, every upstream must serve at least this share of them (percent).
pub const SPREAD_MIN_PERCENT: f64 = 10.0;

/// Requests for the weights check: the 10,000 even with `--short` (about 2 s), since
/// with fewer the ±2 pp tolerance is under 3 standard deviations of a fair split.
fn weight_requests(_ctx: &Ctx) -> usize {
    10_000
}

/// Whether every subset's share is within the tolerance of its weight.
pub fn weights_hold(tally: &Tally, weights: &[(&str, u32)]) -> bool {
    tally.total() > 0
        && tally.keys().all(|k| weights.iter().any(|(s, _)| *s == k))
        && weights
            .iter()
            .all(|(s, w)| (tally.percent(s) - f64::from(*w)).abs() <= WEIGHT_TOLERANCE_PP)
}

/// `route default: a 60% / b 30% / c 10%`: N requests, each subset within ±2 pp.
pub async fn weights(ctx: &Ctx) -> Vec<Check> {
    let line = "destinations: [ { subset: a, weight: 60 }, { subset: b, weight: 30 }, \
                { subset: c, weight: 10 } ]";
    super::or_failed("weights", line, weights_inner(ctx, line).await)
}

async fn weights_inner(ctx: &Ctx, line: &str) -> Result<Vec<Check>, crate::Error> {
    let spec = format!(
        "  subsets:\n    - {{ name: a, labels: {{ version: a }} }}\n    \
         - {{ name: b, labels: {{ version: b }} }}\n    - {{ name: c, labels: {{ version: c }} }}\n  \
         routes:\n    - name: default\n      {line}\n"
    );
    let running = ctx
        .start(
            "weights",
            &crate::policy("weights", &spec),
            &Caller::default(),
            &[
                UpstreamSpec::new("a-1", "a"),
                UpstreamSpec::new("b-1", "b"),
                UpstreamSpec::new("c-1", "c"),
            ],
        )
        .await?;
    let n = weight_requests(ctx);
    let probes = vec![Probe::get(); n];
    let outcomes = send_all(&ctx.client, running.base(), &probes, 32).await;
    let mut tally = Tally::new();
    for o in &outcomes {
        match &o.answer {
            Some(a) => tally.add(&a.subset),
            None => tally.add(&o.who()),
        }
    }
    let weights = [("a", 60), ("b", 30), ("c", 10)];
    Ok(vec![Check {
        feature: "weights".into(),
        policy_line: line.into(),
        requests: n as u64,
        expected: format!("each subset within ±{WEIGHT_TOLERANCE_PP} pp of its weight"),
        observed: tally.describe(),
        pass: weights_hold(&tally, &weights),
    }])
}

/// For each key, the upstreams that answered it.
pub type KeyMap = BTreeMap<String, BTreeSet<String>>;

/// (keys answered by more than one upstream, upstreams' shares of the keys).
pub fn key_spread(map: &KeyMap) -> (usize, Tally) {
    let mut tally = Tally::new();
    let mut split = 0;
    for ups in map.values() {
        if ups.len() == 1 {
            if let Some(u) = ups.iter().next() {
                tally.add(u);
            }
        } else {
            split += 1;
        }
    }
    (split, tally)
}

/// Whether the keys are consistent (one upstream each) and spread over all `upstreams`.
pub fn spread_holds(map: &KeyMap, upstreams: usize) -> bool {
    let (split, tally) = key_spread(map);
    split == 0
        && tally.keys().count() == upstreams
        && tally.keys().all(|u| tally.percent(u) >= SPREAD_MIN_PERCENT)
}

fn affinity_policy(name: &str, affinity: &str) -> String {
    crate::policy(
        name,
        &format!(
            "  subsets: [ {{ name: s, labels: {{ version: s }} }} ]\n  \
             routes: [ {{ name: all, destinations: [ {{ subset: s }} ] }} ]\n  affinity: {affinity}\n"
        ),
    )
}

/// Three upstreams of subset `s` behind an Envoy with `affinity`.
async fn start(ctx: &Ctx, name: &str, affinity: &str) -> Result<Running, crate::Error> {
    let upstreams = three();
    ctx.start(
        name,
        &affinity_policy(name, affinity),
        &Caller::default(),
        &upstreams,
    )
    .await
}

fn three() -> Vec<UpstreamSpec> {
    ["s-a", "s-b", "s-c"]
        .iter()
        .map(|id| UpstreamSpec::new(id, "s"))
        .collect()
}

/// Header, query, cookie and source-IP affinity.
pub async fn affinity(ctx: &Ctx) -> Vec<Check> {
    let mut checks = Vec::new();
    let header = "{ hash: { header: x-topic }, algorithm: ring_hash, min_ring_size: 1024 }";
    checks.extend(super::or_failed(
        "affinity (header)",
        header,
        keyed_affinity(ctx, "affinity-header", header, Key::Header).await,
    ));
    let query = "{ hash: { query: user }, algorithm: maglev, table_size: 65537 }";
    checks.extend(super::or_failed(
        "affinity (query)",
        query,
        keyed_affinity(ctx, "affinity-query", query, Key::Query).await,
    ));
    let cookie = "{ hash: { cookie: { name: session, ttl_s: 3600, path: / } } }";
    checks.extend(super::or_failed(
        "affinity (cookie)",
        cookie,
        cookie_affinity(ctx, cookie).await,
    ));
    let source = "{ hash: { source_ip: true } }";
    checks.extend(super::or_failed(
        "affinity (source IP)",
        source,
        source_ip_affinity(ctx, source).await,
    ));
    checks
}

#[derive(Clone, Copy)]
enum Key {
    Header,
    Query,
}

fn keyed(key: Key, value: &str) -> Probe {
    match key {
        Key::Header => Probe::get().header("x-topic", value),
        Key::Query => Probe::get().path(&format!("/?user={value}")),
    }
}

async fn keyed_affinity(
    ctx: &Ctx,
    name: &str,
    affinity: &str,
    key: Key,
) -> Result<Vec<Check>, crate::Error> {
    let running = start(ctx, name, affinity).await?;
    let what = match key {
        Key::Header => "header x-topic",
        Key::Query => "query user",
    };
    let (one, many) = if ctx.short { (300, 150) } else { (1_000, 300) };
    // One key.
    let probes = vec![keyed(key, "order-42"); one];
    let outcomes = send_all(&ctx.client, running.base(), &probes, 16).await;
    let mut tally = Tally::new();
    for o in &outcomes {
        tally.add(&o.who());
    }
    let single = tally.keys().count() == 1 && tally.keys().all(|k| k.starts_with("s-"));
    let mut checks = vec![Check {
        feature: format!("affinity ({what}), one key"),
        policy_line: format!("affinity: {affinity}"),
        requests: one as u64,
        expected: "every request with one key → one upstream".into(),
        observed: tally.describe(),
        pass: single,
    }];
    // Many keys, each twice.
    let keys: Vec<String> = (0..many).map(|i| format!("key-{i}")).collect();
    let probes: Vec<Probe> = keys.iter().chain(&keys).map(|k| keyed(key, k)).collect();
    let outcomes = send_all(&ctx.client, running.base(), &probes, 16).await;
    let mut map = KeyMap::new();
    for (k, o) in keys.iter().chain(&keys).zip(&outcomes) {
        map.entry(k.clone()).or_default().insert(o.who());
    }
    let (split, shares) = key_spread(&map);
    checks.push(Check {
        feature: format!("affinity ({what}), many keys"),
        policy_line: format!("affinity: {affinity}"),
        requests: probes.len() as u64,
        expected: format!(
            "each of {many} keys (sent twice) → one upstream; every upstream ≥ \
             {SPREAD_MIN_PERCENT}% of the keys"
        ),
        observed: format!(
            "keys on several upstreams: {split}; keys per upstream: {}",
            shares.describe()
        ),
        pass: spread_holds(&map, 3),
    });
    Ok(checks)
}

/// `session=…; Max-Age=3600; Path=/` from a `set-cookie` value: (value, max-age, path).
pub fn parse_set_cookie(
    header: &str,
    name: &str,
) -> Option<(String, Option<String>, Option<String>)> {
    let mut parts = header.split(';').map(str::trim);
    let (n, v) = parts.next()?.split_once('=')?;
    if n != name {
        return None;
    }
    let mut max_age = None;
    let mut path = None;
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            match k.to_ascii_lowercase().as_str() {
                "max-age" => max_age = Some(val.to_string()),
                "path" => path = Some(val.to_string()),
                _ => {}
            }
        }
    }
    Some((v.to_string(), max_age, path))
}

async fn cookie_affinity(ctx: &Ctx, affinity: &str) -> Result<Vec<Check>, crate::Error> {
    let running = start(ctx, "affinity-cookie", affinity).await?;
    let sessions = if ctx.short { 20 } else { 60 };
    let follow = if ctx.short { 10 } else { 30 };
    let mut set = 0;
    let mut attrs_ok = true;
    let mut sticky = 0;
    let mut firsts = Tally::new();
    let mut sent = 0u64;
    let mut sample = String::new();
    for _ in 0..sessions {
        let first = send(&ctx.client, running.base(), &Probe::get()).await;
        sent += 1;
        let Some(cookie) = first
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| parse_set_cookie(v, "session"))
        else {
            continue;
        };
        set += 1;
        if sample.is_empty() {
            sample = first.header("set-cookie").unwrap_or_default().to_string();
        }
        attrs_ok &= cookie.1.as_deref() == Some("3600") && cookie.2.as_deref() == Some("/");
        firsts.add(&first.who());
        let probes = vec![Probe::get().header("cookie", &format!("session={}", cookie.0)); follow];
        let outcomes = send_all(&ctx.client, running.base(), &probes, 8).await;
        sent += follow as u64;
        let again_set = outcomes.iter().any(|o| o.header("set-cookie").is_some());
        if !again_set && outcomes.iter().all(|o| o.who() == first.who()) {
            sticky += 1;
        }
    }
    Ok(vec![Check {
        feature: "affinity (cookie)".into(),
        policy_line: format!("affinity: {affinity}"),
        requests: sent,
        expected: format!(
            "a request without the cookie gets `set-cookie: session=…; Max-Age=3600; Path=/`; \
             {follow} requests with it → the first answer's upstream, no new cookie \
             ({sessions} sessions)"
        ),
        observed: format!(
            "cookie set {set}/{sessions} (e.g. {sample:?}); sessions sticky {sticky}/{sessions}; \
             first answers: {}",
            firsts.describe()
        ),
        pass: set == sessions && attrs_ok && sticky == sessions && firsts.keys().count() > 1,
    }])
}

async fn source_ip_affinity(ctx: &Ctx, affinity: &str) -> Result<Vec<Check>, crate::Error> {
    let running = start(ctx, "affinity-source-ip", affinity).await?;
    let per = if ctx.short { 20 } else { 50 };
    let mut by_ip = KeyMap::new();
    let mut sent = 0u64;
    for last in 2..=13u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let c = client(Some(ip))?;
        let outcomes = send_all(&c, running.base(), &vec![Probe::get(); per], 4).await;
        sent += per as u64;
        let ups = by_ip.entry(ip.to_string()).or_default();
        for o in &outcomes {
            ups.insert(o.who());
        }
    }
    let (split, tally) = key_spread(&by_ip);
    Ok(vec![Check {
        feature: "affinity (source IP)".into(),
        policy_line: format!("affinity: {affinity}"),
        requests: sent,
        expected: format!(
            "{per} requests from each of 127.0.0.2–127.0.0.13 → one upstream per address; the \
             addresses spread over more than one upstream"
        ),
        observed: format!(
            "addresses on several upstreams: {split}; addresses per upstream: {}",
            tally.describe()
        ),
        pass: split == 0 && tally.keys().count() > 1 && tally.keys().all(|k| k.starts_with("s-")),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_within_two_points() {
        let mut t = Tally::new();
        for (k, n) in [("a", 6150), ("b", 2900), ("c", 950)] {
            for _ in 0..n {
                t.add(k);
            }
        }
        let w = [("a", 60), ("b", 30), ("c", 10)];
        assert!(weights_hold(&t, &w));
        for _ in 0..500 {
            t.add("a");
        }
        assert!(!weights_hold(&t, &w), "a at 63.3% is off by 3.3 pp");
        let mut errors = Tally::new();
        errors.add("status 503");
        assert!(!weights_hold(&errors, &w));
    }

    #[test]
    fn spread_needs_consistency_and_every_upstream() {
        let mut m = KeyMap::new();
        for i in 0..30 {
            let u = ["s-a", "s-b", "s-c"][i % 3];
            m.entry(format!("k{i}")).or_default().insert(u.into());
        }
        assert!(spread_holds(&m, 3));
        m.entry("k0".into()).or_default().insert("s-b".into());
        assert!(!spread_holds(&m, 3));
        assert_eq!(key_spread(&m).0, 1);
        let mut lopsided = KeyMap::new();
        for i in 0..30 {
            let u = if i == 0 {
                "s-c"
            } else if i % 2 == 0 {
                "s-a"
            } else {
                "s-b"
            };
            lopsided
                .entry(format!("k{i}"))
                .or_default()
                .insert(u.into());
        }
        assert!(!spread_holds(&lopsided, 3), "s-c has 1 key of 30");
    }

    #[test]
    fn set_cookie_attributes() {
        assert_eq!(
            parse_set_cookie("session=\"abc\"; Max-Age=3600; Path=/; HttpOnly", "session"),
            Some(("\"abc\"".into(), Some("3600".into()), Some("/".into())))
        );
        assert_eq!(parse_set_cookie("other=1", "session"), None);
        assert_eq!(parse_set_cookie("garbage", "session"), None);
    }

    #[test]
    fn affinity_policies_compile() {
        for a in [
            "{ hash: { header: x-topic }, algorithm: ring_hash, min_ring_size: 1024 }",
            "{ hash: { query: user }, algorithm: maglev, table_size: 65537 }",
            "{ hash: { cookie: { name: session, ttl_s: 3600, path: / } } }",
            "{ hash: { source_ip: true } }",
        ] {
            let ps = weir_govern::parse(&affinity_policy("a", a), "a").unwrap();
            weir_govern::compile(&ps[0], "a").unwrap();
        }
    }
}
