//! Scale benchmark (not a test): N ReadSplits (default 1,000) reconciled every 15 s on ONE
//! core (a current-thread runtime), against the same fake API server the tests use, in this
//! process. Prints the CPU time and memory of the process over the measured window.
//!
//!   cargo bench -p weir-operator --bench scale -- [readsplits] [seconds]
//!
//! What it includes: the reconciler (policy, shield, status, events, state ConfigMaps, the
//! Istio planner's GET and JSON Patch through kube's client stack) AND the fake API server
//! answering all of it (JSON parsing, JSON Patch application), so the CPU figure is an upper
//! bound for the operator alone. What it leaves out: Prometheus queries (a canned source
//! stands in) and the watch stream (reconciliations are scheduled here every interval, as
//! the controller's requeue would).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use support::{FakeApiServer, readsplit_json, rs_path, virtual_service, vs_path};
use weir_controller::{Source, SourceError};
use weir_core::Observation;
use weir_operator::ReadSplit;
use weir_operator::reconcile::{Context, SourceFactory, reconcile};
use weir_prom::PromConfig;
use weir_test_support::ObsBuilder;

/// Every tenth ReadSplit's replica-1 lags for 4 of every 8 decisions, so weights, events and
/// state ConfigMaps really change; the rest are healthy.
struct Flapping {
    tick: Arc<AtomicU64>,
}

struct FlappingSource {
    lagging: bool,
    tick: Arc<AtomicU64>,
    n: u64,
}

impl Source for FlappingSource {
    async fn observe(&mut self, now_s: f64) -> Result<Observation, SourceError> {
        self.n += 1;
        let phase = (self.n + self.tick.load(Ordering::Relaxed)) / 4 % 2 == 1;
        let lag = if self.lagging && phase { 45.0 } else { 0.3 };
        Ok(ObsBuilder::new(2).at(now_s).lag(0, lag).lag(1, 0.2).build())
    }
}

impl SourceFactory for Flapping {
    type Source = FlappingSource;
    fn build(&self, key: &str, _c: &PromConfig) -> Result<FlappingSource, String> {
        let i: u64 = key
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(FlappingSource {
            lagging: i.is_multiple_of(10),
            tick: self.tick.clone(),
            n: i % 8,
        })
    }
}

/// (user + system CPU seconds, VmRSS kB, VmHWM kB) of this process.
fn usage() -> (f64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks / 100.0, kb("VmRSS:"), kb("VmHWM:"))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(120);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let api = FakeApiServer::new();
        let mut objects = Vec::with_capacity(n);
        for i in 0..n {
            let ns = format!("team-{}", i % 50);
            let name = format!("db-{i}");
            api.put(&vs_path(&ns, &name), virtual_service(&ns, &name));
            api.put(&rs_path(&ns, &name), readsplit_json(&ns, &name, &name, "Enforce"));
            objects.push((ns, name));
        }
        api.only_count();
        // The fake cluster's objects live in this process too: measure them first.
        let (_, rss_cluster, _) = usage();
        let tick = Arc::new(AtomicU64::new(0));
        let ctx = Arc::new(Context::new(
            api.client(),
            Flapping { tick: tick.clone() },
            Arc::new(Timestamp::now),
            Some("bench".into()),
        ));
        let interval = Duration::from_secs(15);
        let spacing = interval / u32::try_from(n.max(1)).unwrap();
        let reconcile_all = |round: u64| {
            let ctx = ctx.clone();
            let api = api.clone();
            let objects = objects.clone();
            async move {
                let started = Instant::now();
                for (k, (ns, name)) in objects.iter().enumerate() {
                    // Spread the ReadSplits over the interval, as requeues would.
                    let due = spacing * u32::try_from(k).unwrap();
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let rs: ReadSplit = serde_json::from_value(api.get(&rs_path(ns, name)).unwrap()).unwrap();
                    if let Err(e) = reconcile(Arc::new(rs), ctx.clone()).await {
                        eprintln!("round {round}: {ns}/{name}: {e}");
                    }
                }
                if let Some(rest) = interval.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                } else {
                    eprintln!("round {round} overran the interval: {:?}", started.elapsed());
                }
            }
        };
        // Warm-up round: builds every governed ReadSplit (first reads, first state saves).
        reconcile_all(0).await;
        api.take_request_count();
        let (cpu0, _, _) = usage();
        let t0 = Instant::now();
        let rounds = seconds.div_ceil(15).max(1);
        for round in 1..=rounds {
            tick.fetch_add(1, Ordering::Relaxed);
            reconcile_all(round).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        let (cpu1, rss, hwm) = usage();
        let requests = api.take_request_count();
        println!(
            "readsplits {n}, interval 15 s, {rounds} rounds in {wall:.1} s on one core: CPU {:.1}% of a core ({:.2} s, operator + fake API server); RSS {:.1} MB (peak {:.1} MB), of which the fake cluster's objects {:.1} MB before governing, so governing {n} ReadSplits added {:.1} MB; governed {}, API requests {requests} ({:.0}/s)",
            100.0 * (cpu1 - cpu0) / wall,
            cpu1 - cpu0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss_cluster as f64 / 1024.0,
            (rss.saturating_sub(rss_cluster)) as f64 / 1024.0,
            ctx.governed_count(),
            requests as f64 / wall,
        );
    });
}
