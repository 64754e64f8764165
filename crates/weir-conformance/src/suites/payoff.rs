//! Affinity's payoff: what request affinity buys a service that keeps per-key state warm (the
//! seed's headline: Cash App cut a service from 100 pods to 15 with affinity).
//!
//! Four upstreams of one subset each keep a bounded cache of user keys (an LRU of
//! [`CAPACITY`] keys on the `x-user-id` header, [`crate::upstream::Lru`]). The same seeded,
//! skewed sequence of keys is sent through two policies that differ only in one line:
//!
//! - **no affinity**: the route alone, which the compiler renders as Envoy's `LEAST_REQUEST`
//!   (with equal loads, two random choices: any upstream may get any key);
//! - **header affinity**: `affinity: { hash: { header: x-user-id } }` (ring hash, the
//!   default algorithm), so each key goes to one upstream.
//!
//! Reported per policy: the hit rate (hits over requests sent, over the whole run and over its
//! second half, once every cache has filled), requests per upstream (balance), distinct keys
//! per upstream and upstreams per key (the replication factor: how many caches hold the same
//! key), for every key and for the [`HOT`] hottest. A third run, affinity with outlier
//! ejection, stops the upstream that serves the hottest key halfway through and reports what
//! the remapping costs.
//!
//! **The numbers, chosen before any run and not tuned**: [`KEYS`] = 2,000 keys, popularity
//! Zipf with exponent [`ZIPF_S`] = 0.99 (YCSB's default request distribution, the usual stand-in
//! for user and key popularity), [`CAPACITY`] = 200 keys per upstream (10 % of the key space; the
//! four caches together hold 40 %, so no policy can hit every time and the difference is only
//! how the capacity is used: without affinity every cache must hold the same hot keys, with it
//! each key is held once), [`REQUESTS`] = 5,000 requests ([`SHORT_REQUESTS`] = 2,000 with
//! `--short`, still past the point where the caches are full), 8 at a time, keys from
//! [`SplitMix64`] seeded with [`SEED`]. Everything is stated in the table.
//!
//! **Pass/fail** is behaviour, never a hit rate: without affinity, every one of the hottest
//! keys lands on more than one upstream (the waste affinity removes; if this fails the
//! comparison means nothing); with affinity, every key is served by exactly one upstream, the
//! keys are spread over all four, and the hit rate is at least the one without affinity; with
//! an upstream stopped, requests fail only until Envoy ejects it (within the first quarter of
//! the requests after the stop) and, in the second half of those requests, every key is on
//! one survivor. Removing the `affinity` line fails the second check.

use std::collections::BTreeSet;

use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, Outcome, Probe, Running, send_all};
use crate::suites::traffic::{KeyMap, SPREAD_MIN_PERCENT, spread_holds};
use crate::upstream::{CacheResult, UpstreamSpec};

/// Distinct keys (`user-1` is the hottest).
pub const KEYS: usize = 2_000;
/// The Zipf exponent of key popularity.
pub const ZIPF_S: f64 = 0.99;
/// Keys each upstream's cache holds.
pub const CAPACITY: usize = 200;
/// Requests per policy.
pub const REQUESTS: usize = 5_000;
/// Requests per policy with `--short`.
pub const SHORT_REQUESTS: usize = 2_000;
/// The key sequence's seed.
pub const SEED: u64 = 14;
/// How many of the hottest keys the replication of hot keys is reported for.
pub const HOT: usize = 10;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// The header the key travels in, and the caches are keyed on.
const HEADER: &str = "x-user-id";
/// The upstreams, all of subset `s`.
const UPSTREAMS: [&str; 4] = ["p-a", "p-b", "p-c", "p-d"];

/// The affinity line.
const AFFINITY: &str = "affinity: { hash: { header: x-user-id } }";
/// Outlier ejection for the run that stops an upstream (without it Envoy keeps hashing the
/// stopped upstream's keys to it).
const EJECTION: &str = "circuit_breaker: { consecutive_5xx: 2, interval_s: 1, base_ejection_s: 60, \
                        max_ejection_percent: 100 }";
/// The policy line of the run without affinity.
const NO_AFFINITY: &str =
    "routes: [ { name: all, destinations: [ { subset: s } ] } ] (no affinity)";

/// The policy `name` with `extra` lines (each a top-level spec line).
fn policy(name: &str, extra: &[&str]) -> String {
    let mut spec = String::from(
        "  subsets: [ { name: s, labels: { version: s } } ]\n  \
         routes: [ { name: all, destinations: [ { subset: s } ] } ]\n",
    );
    for line in extra {
        spec.push_str("  ");
        spec.push_str(line);
        spec.push('\n');
    }
    crate::policy(name, &spec)
}

/// SplitMix64: a small, fixed random stream, so the key sequence never changes with a
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf-distributed ranks 0..n (rank 0 the most popular: P(k) ∝ 1 / (k + 1)^s), drawn by
/// inverting the cumulative distribution.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Ranks 0..n with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf }
    }

    /// The rank for a uniform draw `u` in [0, 1).
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

/// `n` key ranks drawn from Zipf([`KEYS`], [`ZIPF_S`]) with `seed`.
pub fn key_sequence(n: usize, seed: u64) -> Vec<usize> {
    let zipf = Zipf::new(KEYS, ZIPF_S);
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| zipf.rank(rng.next_f64())).collect()
}

/// The key sent for rank `rank` (`user-1` is the hottest).
pub fn key_name(rank: usize) -> String {
    format!("user-{}", rank + 1)
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The key's rank.
    pub key: usize,
    /// The upstream that answered 200, if one did.
    pub upstream: Option<String>,
    /// Who answered otherwise (`status 503`, `no answer`).
    pub failure: Option<String>,
    /// Whether the upstream's cache had the key.
    pub hit: bool,
}

impl Served {
    /// From the request for `key` and its outcome.
    pub fn new(key: usize, o: &Outcome) -> Served {
        match &o.answer {
            Some(a) if o.status == 200 => Served {
                key,
                upstream: Some(a.id.clone()),
                failure: None,
                hit: a.cache == Some(CacheResult::Hit),
            },
            _ => Served {
                key,
                upstream: None,
                failure: Some(o.who()),
                hit: false,
            },
        }
    }
}

/// Hits over requests sent, in percent (a failed request is not a hit).
pub fn hit_rate(served: &[Served]) -> f64 {
    if served.is_empty() {
        return 0.0;
    }
    100.0 * served.iter().filter(|s| s.hit).count() as f64 / served.len() as f64
}

/// For each key (by name), the upstreams that answered it.
pub fn key_map(served: &[Served]) -> KeyMap {
    let mut map = KeyMap::new();
    for s in served {
        if let Some(u) = &s.upstream {
            map.entry(key_name(s.key)).or_default().insert(u.clone());
        }
    }
    map
}

/// The mean number of upstreams per key, over the keys of `map` that `keep` accepts (0 when
/// none).
pub fn replication(map: &KeyMap, keep: impl Fn(&str) -> bool) -> (f64, usize) {
    let counts: Vec<usize> = map
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(_, ups)| ups.len())
        .collect();
    if counts.is_empty() {
        return (0.0, 0);
    }
    let n = counts.len();
    (counts.iter().sum::<usize>() as f64 / n as f64, n)
}

/// The names of the [`HOT`] hottest keys.
fn hot_keys() -> BTreeSet<String> {
    (0..HOT).map(key_name).collect()
}

/// One policy's run, summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Requests sent.
    pub sent: usize,
    /// Hit rate over the run, percent.
    pub hit_rate: f64,
    /// Hit rate over the run's second half, percent.
    pub second_half: f64,
    /// Requests per upstream (and failures by who answered).
    pub requests: Tally,
    /// Distinct keys each upstream served.
    pub keys_per_upstream: Tally,
    /// Mean upstreams per key, and over how many keys.
    pub replication: (f64, usize),
    /// Mean upstreams per hot key, and over how many.
    pub hot_replication: (f64, usize),
    /// Hot keys served by a single upstream.
    pub hot_on_one: usize,
    /// Keys served by several upstreams.
    pub split: usize,
    /// Requests not answered by an upstream.
    pub failed: usize,
    /// For each key, its upstreams.
    pub map: KeyMap,
}

impl Stats {
    /// Sums up `served`.
    pub fn of(served: &[Served]) -> Stats {
        let mut requests = Tally::new();
        for s in served {
            match (&s.upstream, &s.failure) {
                (Some(u), _) => requests.add(u),
                (None, Some(f)) => requests.add(f),
                (None, None) => requests.add("?"),
            }
        }
        let map = key_map(served);
        let mut keys_per_upstream = Tally::new();
        for ups in map.values() {
            for u in ups {
                keys_per_upstream.add(u);
            }
        }
        let hot = hot_keys();
        let hot_on_one = map
            .iter()
            .filter(|(k, ups)| hot.contains(*k) && ups.len() == 1)
            .count();
        Stats {
            sent: served.len(),
            hit_rate: hit_rate(served),
            second_half: hit_rate(&served[served.len() / 2..]),
            requests,
            keys_per_upstream,
            replication: replication(&map, |_| true),
            hot_replication: replication(&map, |k| hot.contains(k)),
            hot_on_one,
            split: map.values().filter(|u| u.len() > 1).count(),
            failed: served.iter().filter(|s| s.upstream.is_none()).count(),
            map,
        }
    }

    /// The observed column; `compare` follows the hit rate.
    pub fn describe(&self, compare: &str) -> String {
        format!(
            "hit rate {:.1}% (second half {:.1}%){compare}; upstreams per key {:.2} over {} keys, \
             {:.2} over the {} hottest; requests per upstream: {}; distinct keys per upstream: {}",
            self.hit_rate,
            self.second_half,
            self.replication.0,
            self.replication.1,
            self.hot_replication.0,
            self.hot_replication.1,
            self.requests.describe(),
            self.keys_per_upstream.describe()
        )
    }
}

/// The workload, for the expected column.
fn workload(n: usize) -> String {
    format!(
        "{n} requests ({CONCURRENCY} at a time), {HEADER} user-1…user-{KEYS} drawn Zipf(s = \
         {ZIPF_S}), seed {SEED}; {} upstreams, each caching {CAPACITY} keys (LRU)",
        UPSTREAMS.len()
    )
}

/// The requests for a key sequence.
fn probes(keys: &[usize]) -> Vec<Probe> {
    keys.iter()
        .map(|k| Probe::get().header(HEADER, &key_name(*k)))
        .collect()
}

/// Sends `keys` through `r`, in order, [`CONCURRENCY`] at a time.
async fn send_keys(ctx: &Ctx, r: &Running, keys: &[usize]) -> Vec<Served> {
    let outcomes = send_all(&ctx.client, r.base(), &probes(keys), CONCURRENCY).await;
    keys.iter()
        .zip(&outcomes)
        .map(|(k, o)| Served::new(*k, o))
        .collect()
}

/// The cache hits and misses the upstreams counted.
fn counted(r: &Running) -> (u64, u64) {
    r.upstreams.iter().fold((0, 0), |(h, m), u| {
        let (uh, um) = u.cache_counts();
        (h + uh, m + um)
    })
}

/// The cluster's `lb_policy` in the rendered bootstrap.
fn lb_policy(r: &Running) -> String {
    r.proxy
        .rendered
        .bootstrap_yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("lb_policy:"))
        .map_or_else(|| "?".to_string(), |p| p.trim().to_string())
}

/// Four cached upstreams behind an Envoy running `policy`.
async fn start(ctx: &Ctx, name: &str, policy: &str) -> Result<Running, crate::Error> {
    let upstreams: Vec<UpstreamSpec> = UPSTREAMS
        .iter()
        .map(|id| UpstreamSpec::new(id, "s").cached(HEADER, CAPACITY))
        .collect();
    ctx.start(name, policy, &Caller::default(), &upstreams)
        .await
}

/// A whole run: the stats, the upstreams' own counts (hits, misses), the `lb_policy`.
struct Measured {
    stats: Stats,
    served: Vec<Served>,
    counted: (u64, u64),
    lb_policy: String,
}

impl Measured {
    /// Whether the upstreams counted what their answers said.
    fn counts_agree(&self) -> bool {
        let hits = self.served.iter().filter(|s| s.hit).count() as u64;
        let answered = (self.stats.sent - self.stats.failed) as u64;
        self.counted.0 == hits && self.counted.0 + self.counted.1 == answered
    }

    fn counts(&self) -> String {
        format!(
            "the upstreams counted {} hits, {} misses; Envoy's lb_policy {}",
            self.counted.0, self.counted.1, self.lb_policy
        )
    }
}

async fn measure(
    ctx: &Ctx,
    name: &str,
    policy: &str,
    keys: &[usize],
) -> Result<Measured, crate::Error> {
    let r = start(ctx, name, policy).await?;
    let served = send_keys(ctx, &r, keys).await;
    Ok(Measured {
        stats: Stats::of(&served),
        served,
        counted: counted(&r),
        lb_policy: lb_policy(&r),
    })
}

/// The three runs.
pub async fn run(ctx: &Ctx) -> Vec<Check> {
    let n = if ctx.short { SHORT_REQUESTS } else { REQUESTS };
    let keys = key_sequence(n, SEED);
    let mut checks = Vec::new();
    let none = measure(ctx, "payoff-none", &policy("payoff-none", &[]), &keys).await;
    checks.push(match &none {
        Ok(m) => baseline_check(m, n),
        Err(e) => Check::failed_to_run(FEATURE_NONE, NO_AFFINITY, &e.to_string()),
    });
    let aff = measure(
        ctx,
        "payoff-affinity",
        &policy("payoff-affinity", &[AFFINITY]),
        &keys,
    )
    .await;
    checks.push(match &aff {
        Ok(m) => affinity_check(m, none.as_ref().ok(), n),
        Err(e) => Check::failed_to_run(FEATURE_AFFINITY, AFFINITY, &e.to_string()),
    });
    let line = format!("{AFFINITY}; {EJECTION}");
    checks.extend(super::or_failed(
        FEATURE_STOPPED,
        &line,
        stopped(ctx, &keys, aff.as_ref().ok(), &line)
            .await
            .map(|c| vec![c]),
    ));
    checks
}

const FEATURE_NONE: &str = "affinity's payoff: no affinity (baseline)";
const FEATURE_AFFINITY: &str = "affinity's payoff: header affinity";
const FEATURE_STOPPED: &str = "affinity's payoff: one upstream stopped mid-run";

fn baseline_check(m: &Measured, n: usize) -> Check {
    let s = &m.stats;
    Check {
        feature: FEATURE_NONE.into(),
        policy_line: NO_AFFINITY.into(),
        requests: s.sent as u64,
        expected: format!(
            "{}: every request answered; each of the {HOT} hottest keys lands on more than one \
             upstream (the copies affinity removes); hit rate measured",
            workload(n)
        ),
        observed: format!(
            "{}; hot keys on one upstream: {}/{HOT}; failed: {}; {}",
            s.describe(""),
            s.hot_on_one,
            s.failed,
            m.counts()
        ),
        pass: s.failed == 0 && s.hot_replication.1 == HOT && s.hot_on_one == 0 && m.counts_agree(),
    }
}

fn affinity_check(m: &Measured, none: Option<&Measured>, n: usize) -> Check {
    let s = &m.stats;
    let vs = none.map_or_else(
        || " (no baseline to compare with: it did not run)".to_string(),
        |b| {
            format!(
                " vs {:.1}% (second half {:.1}%) without affinity",
                b.stats.hit_rate, b.stats.second_half
            )
        },
    );
    let better = none.is_some_and(|b| s.hit_rate >= b.stats.hit_rate);
    Check {
        feature: FEATURE_AFFINITY.into(),
        policy_line: AFFINITY.into(),
        requests: s.sent as u64,
        expected: format!(
            "the same {}: every request answered; every key → exactly one upstream (upstreams \
             per key 1.00); every upstream ≥ {SPREAD_MIN_PERCENT}% of the keys; hit rate ≥ the \
             run without affinity",
            workload(n)
        ),
        observed: format!(
            "{}; keys on several upstreams: {}; failed: {}; {}",
            s.describe(&vs),
            s.split,
            s.failed,
            m.counts()
        ),
        pass: s.failed == 0 && spread_holds(&s.map, UPSTREAMS.len()) && better && m.counts_agree(),
    }
}

/// What stopping an upstream halfway did.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// Requests after the stop up to and including the last that failed.
    pub window: usize,
    /// Failures after the stop.
    pub failed: Tally,
    /// Keys answered by more than one survivor after the stop (each worker of Envoy rebuilds
    /// its hash ring when the main thread tells it, so a key can hop while that happens).
    pub hopped: usize,
    /// Keys served in the second half of the requests after the stop by several upstreams, or
    /// by the stopped one.
    pub inconsistent: usize,
    /// The stopped upstream's keys seen in that second half: (on one survivor, all).
    pub moved: (usize, usize),
    /// The survivors' keys seen before the stop and in that second half: (on another survivor
    /// now, all).
    pub reshuffled: (usize, usize),
}

/// Compares the requests before the stop with those after it; consistency is judged on the
/// second half of those after it, once Envoy has ejected the stopped upstream and every
/// worker has its new ring.
pub fn failover(before: &[Served], after: &[Served], stopped: &str) -> Failover {
    let window = after
        .iter()
        .rposition(|s| s.upstream.is_none())
        .map_or(0, |i| i + 1);
    let mut failed = Tally::new();
    for s in after {
        if let Some(f) = &s.failure {
            failed.add(f);
        }
    }
    let hopped = key_map(after).values().filter(|u| u.len() > 1).count();
    let old = key_map(before);
    let new = key_map(&after[after.len() / 2..]);
    let inconsistent = new
        .values()
        .filter(|ups| ups.len() > 1 || ups.contains(stopped))
        .count();
    let (mut moved, mut theirs, mut reshuffled, mut survivors) = (0, 0, 0, 0);
    for (key, ups) in &new {
        let Some(was) = old.get(key) else { continue };
        if was.len() != 1 {
            continue;
        }
        if was.contains(stopped) {
            theirs += 1;
            moved += usize::from(ups.len() == 1 && !ups.contains(stopped));
        } else {
            survivors += 1;
            reshuffled += usize::from(ups != was);
        }
    }
    Failover {
        window,
        failed,
        hopped,
        inconsistent,
        moved: (moved, theirs),
        reshuffled: (reshuffled, survivors),
    }
}

/// The upstream that served the hottest key, if one did.
fn hottest_upstream(served: &[Served]) -> Option<String> {
    let map = key_map(served);
    map.get(&key_name(0))?.iter().next().cloned()
}

async fn stopped(
    ctx: &Ctx,
    keys: &[usize],
    plain: Option<&Measured>,
    line: &str,
) -> Result<Check, crate::Error> {
    let name = "payoff-stopped";
    let r = start(ctx, name, &policy(name, &[AFFINITY, EJECTION])).await?;
    let half = keys.len() / 2;
    let before = send_keys(ctx, &r, &keys[..half]).await;
    // The worst case: the upstream holding the hottest key.
    let victim = hottest_upstream(&before).unwrap_or_else(|| UPSTREAMS[0].to_string());
    if let Some(u) = r.upstream(&victim) {
        u.stop();
    }
    let after = send_keys(ctx, &r, &keys[half..]).await;
    r.proxy.snapshot(ctx, "stopped").await;
    let stat = |what: &'static str| {
        let name = format!("cluster.outbound|8080|s|{name}.conformance.svc.cluster.local.{what}");
        let (client, envoy) = (&ctx.client, &r.proxy.envoy);
        async move {
            envoy
                .stat(client, &name)
                .await
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        }
    };
    let ejected = stat("outlier_detection.ejections_active").await;
    let ring = stat("ring_hash_lb.size").await;
    let per_host = stat("ring_hash_lb.min_hashes_per_host").await;
    let f = failover(&before, &after, &victim);
    let tenth = (keys.len() - half) / 10;
    let dip = match plain {
        Some(p) => {
            let same = &p.served[half..];
            format!(
                "after the stop {:.1}% (first {tenth}: {:.1}%) vs {:.1}% (first {tenth}: \
                 {:.1}%) for the same requests with all four up",
                hit_rate(&after),
                hit_rate(&after[..tenth]),
                hit_rate(same),
                hit_rate(&same[..tenth])
            )
        }
        None => format!(
            "after the stop {:.1}% (first {tenth}: {:.1}%)",
            hit_rate(&after),
            hit_rate(&after[..tenth])
        ),
    };
    let limit = (keys.len() - half) / 4;
    let settled = keys.len() - half - (keys.len() - half) / 2;
    Ok(Check {
        feature: FEATURE_STOPPED.into(),
        policy_line: line.to_string(),
        requests: keys.len() as u64,
        expected: format!(
            "the same requests; after {half}, the upstream serving user-1 stops: Envoy ejects \
             it (failures only within the first {limit} requests after the stop); in the last \
             {settled} requests each key → one surviving upstream, the stopped upstream's keys \
             on one survivor each; hit rates measured"
        ),
        observed: format!(
            "stopped {victim}; hit rate before the stop {:.1}%, {dip}; failed after the stop: \
             {} ({}), the last at request {} after it; keys answered by two survivors while \
             the ring changed: {}; in the last {settled}: {}/{} of its keys on one survivor, \
             {}/{} of the survivors' keys on another survivor than before, keys on several or \
             on the stopped upstream: {}; endpoints ejected: {ejected}; Envoy's ring now {ring} \
             entries, {per_host} per host",
            hit_rate(&before),
            f.failed.total(),
            f.failed.describe(),
            f.window,
            f.hopped,
            f.moved.0,
            f.moved.1,
            f.reshuffled.0,
            f.reshuffled.1,
            f.inconsistent,
        ),
        pass: f.window <= limit
            && f.inconsistent == 0
            && f.moved.1 > 0
            && f.moved.0 == f.moved.1
            && hit_rate(&before) > 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(key: usize, upstream: &str, hit: bool) -> Served {
        Served {
            key,
            upstream: Some(upstream.into()),
            failure: None,
            hit,
        }
    }

    fn failed(key: usize) -> Served {
        Served {
            key,
            upstream: None,
            failure: Some("status 503".into()),
            hit: false,
        }
    }

    #[test]
    fn the_policies_compile() {
        for (name, extra) in [
            ("payoff-none", vec![]),
            ("payoff-affinity", vec![AFFINITY]),
            ("payoff-stopped", vec![AFFINITY, EJECTION]),
        ] {
            let ps = weir_govern::parse(&policy(name, &extra), name).unwrap();
            let out = weir_govern::compile(&ps[0], name).unwrap();
            let has_hash = format!("{out:?}").contains("x-user-id");
            assert_eq!(has_hash, !extra.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_key_sequence_is_fixed_and_skewed() {
        let a = key_sequence(5_000, SEED);
        assert_eq!(a, key_sequence(5_000, SEED));
        assert_ne!(a, key_sequence(5_000, SEED + 1));
        assert!(a.iter().all(|k| *k < KEYS));
        let mut counts = vec![0usize; KEYS];
        for k in &a {
            counts[*k] += 1;
        }
        // Zipf(0.99) over 2,000 keys: user-1 has about 12 % of the requests, the top 10
        // about 37 %; far from uniform (0.05 % each).
        let top: usize = counts[..10].iter().sum();
        assert!(
            counts[0] > counts[1] && counts[1] > counts[9],
            "{:?}",
            &counts[..10]
        );
        assert!((400..800).contains(&counts[0]), "{}", counts[0]);
        assert!((1_500..2_200).contains(&top), "{top}");
    }

    #[test]
    fn zipf_ranks_invert_the_distribution() {
        let z = Zipf::new(3, 1.0);
        // P = 6/11, 3/11, 2/11.
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(0.54), 0);
        assert_eq!(z.rank(0.55), 1);
        assert_eq!(z.rank(0.81), 1);
        assert_eq!(z.rank(0.82), 2);
        assert_eq!(z.rank(0.999_999), 2);
        assert_eq!(z.rank(1.0), 2, "clamped");
        let mut r = SplitMix64::new(1);
        assert!(
            (0..1_000)
                .map(|_| r.next_f64())
                .all(|u| (0.0..1.0).contains(&u))
        );
    }

    #[test]
    fn stats_count_hits_replication_and_spread() {
        let s = vec![
            served(0, "p-a", false),
            served(0, "p-b", false),
            served(0, "p-a", true),
            served(1, "p-c", false),
            served(1, "p-c", true),
            failed(2),
        ];
        let st = Stats::of(&s);
        assert_eq!(st.sent, 6);
        assert!((st.hit_rate - 100.0 / 3.0).abs() < 1e-9);
        assert!((st.second_half - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(st.failed, 1);
        assert_eq!(st.split, 1);
        assert_eq!(st.replication, (1.5, 2));
        assert_eq!(st.hot_replication, (1.5, 2));
        assert_eq!(st.hot_on_one, 1);
        assert_eq!(st.requests.get("p-a"), 2);
        assert_eq!(st.requests.get("status 503"), 1);
        assert_eq!(st.keys_per_upstream.get("p-a"), 1);
        assert_eq!(st.keys_per_upstream.get("p-c"), 1);
        assert_eq!(hit_rate(&[]), 0.0);
    }

    #[test]
    fn failover_finds_the_window_and_the_moves() {
        let before = vec![
            served(0, "p-a", false),
            served(1, "p-b", false),
            served(2, "p-c", false),
            served(3, "p-a", false),
        ];
        let after = vec![
            failed(0),
            served(1, "p-b", true),
            failed(3),
            served(0, "p-c", false),
            served(3, "p-b", false),
            served(1, "p-b", true),
            served(2, "p-d", false),
        ];
        let f = failover(&before, &after, "p-a");
        assert_eq!(f.window, 3);
        assert_eq!(f.failed.total(), 2);
        assert_eq!(f.hopped, 0);
        assert_eq!(f.inconsistent, 0);
        assert_eq!(f.moved, (2, 2));
        assert_eq!(f.reshuffled, (1, 2), "user-3 moved from p-c to p-d");
        let mut bad = after.clone();
        bad.push(served(0, "p-a", true));
        bad.push(served(1, "p-c", false));
        bad.push(served(2, "p-d", false));
        let f = failover(&before, &bad, "p-a");
        assert_eq!(
            f.inconsistent, 2,
            "user-1 on the stopped p-a, user-2 on p-b and p-c"
        );
        assert_eq!(f.hopped, 2);
        // A hop early after the stop (while the ring changes) is reported, not judged.
        let mut early = after.clone();
        early.insert(1, served(2, "p-b", false));
        let f = failover(&before, &early, "p-a");
        assert_eq!((f.hopped, f.inconsistent), (1, 0));
        assert_eq!(failover(&before, &before, "p-z").window, 0);
    }
}
