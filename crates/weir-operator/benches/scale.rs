//! Scale benchmark (not a test): the whole operator — `serve`, with the Lease, the
//! controller's list + watch and requeues, status patches, events, state ConfigMaps, the
//! Istio patches and weir-prom's real HTTP client — governing N ReadSplits (default 1,000) at a
//! 15 s interval on ONE core (a current-thread runtime). In the same process and on the same
//! core: the fake API server the tests use, and a fake Prometheus on 127.0.0.1 answering the
//! eight queries each ReadSplit sends per interval. Prints CPU time, memory, API requests,
//! Prometheus queries and decisions over the measured window.
//!
//!   cargo bench -p weir-operator --bench scale -- [readsplits] [seconds]
//!
//! Every tenth ReadSplit's replica-1 lags 45 s for one minute in two, so weights, events and
//! state saves really happen; the rest stay healthy. The CPU figure includes the fake API
//! server (JSON, JSON Patch, watch events) and the fake Prometheus, so it is an upper bound
//! for the operator alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::routing::post;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use support::{FakeApiServer, readsplit_json, rs_path, virtual_service, vs_path};
use weir_operator::operator::{OperatorOptions, serve};
use weir_operator::reconcile::PromSources;

const INTERVAL_S: u64 = 15;

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

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Series the operator's `/metrics` exposes (sample lines), to show cardinality stays flat.
async fn series(addr: std::net::SocketAddr) -> usize {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The fake Prometheus: `weir_bench_<signal>{readsplit="ns/name"}` → a vector like
/// mysqld_exporter's would give (two replica series by `instance`, or one primary series).
fn prometheus(started: Instant, queries: Arc<AtomicU64>) -> axum::Router {
    axum::Router::new().route(
        "/api/v1/query",
        post(move |Form(form): Form<HashMap<String, String>>| {
            let queries = queries.clone();
            async move {
                queries.fetch_add(1, Ordering::Relaxed);
                let q = form.get("query").cloned().unwrap_or_default();
                let signal = q
                    .strip_prefix("weir_bench_")
                    .and_then(|r| r.split('{').next())
                    .unwrap_or_default()
                    .to_string();
                let index: u64 = q
                    .rsplit("/db-")
                    .next()
                    .and_then(|r| r.trim_end_matches("\"}").parse().ok())
                    .unwrap_or(1);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                let lagging =
                    index.is_multiple_of(10) && (started.elapsed().as_secs() / 60) % 2 == 1;
                let series = |instance: Option<&str>, v: f64| {
                    let metric = instance.map_or(json!({}), |i| json!({ "instance": i }));
                    json!({ "metric": metric, "value": [now, v.to_string()] })
                };
                let result = match signal.as_str() {
                    "lag" => vec![
                        series(Some("r1:9104"), if lagging { 45.0 } else { 0.3 }),
                        series(Some("r2:9104"), 0.2),
                    ],
                    "up" => vec![series(Some("r1:9104"), 1.0), series(Some("r2:9104"), 1.0)],
                    "qps" => vec![
                        series(Some("r1:9104"), 2000.0),
                        series(Some("r2:9104"), 2000.0),
                    ],
                    "p99" => vec![series(Some("r1:9104"), 8.0), series(Some("r2:9104"), 7.0)],
                    "cpu" => vec![series(None, 0.3)],
                    "primary_reads" => vec![series(None, 500.0)],
                    "primary_writes" => vec![series(None, 300.0)],
                    "primary_p99" => vec![series(None, 6.0)],
                    _ => Vec::new(),
                };
                axum::Json(json!({
                    "status": "success",
                    "data": { "resultType": "vector", "result": result }
                }))
            }
        }),
    )
}

fn readsplit(ns: &str, name: &str, prometheus_url: &str) -> Value {
    let mut rs = readsplit_json(ns, name, name, "Enforce");
    let q = |signal: &str| format!(r#"weir_bench_{signal}{{readsplit="{ns}/{name}"}}"#);
    rs["spec"]["intervalSeconds"] = json!(INTERVAL_S);
    rs["spec"]["prometheus"] = json!({
        "url": prometheus_url,
        "queries": {
            "replicaLagSeconds": { "query": q("lag"), "replicaLabel": "instance" },
            "replicaUp": { "query": q("up"), "replicaLabel": "instance" },
            "replicaReadQps": { "query": q("qps"), "replicaLabel": "instance" },
            "replicaReadP99Ms": { "query": q("p99"), "replicaLabel": "instance" },
            "primaryCpu": { "query": q("cpu") },
            "primaryReadQps": { "query": q("primary_reads") },
            "primaryWriteQps": { "query": q("primary_writes") },
            "primaryReadP99Ms": { "query": q("primary_p99") },
        }
    });
    rs
}

/// Sum of the `weir_operator_reconciliations_total` series with `result`.
async fn reconciliations(addr: std::net::SocketAddr, result: &str) -> f64 {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("weir_operator_reconciliations_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
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
        let started = Instant::now();
        let queries = Arc::new(AtomicU64::new(0));
        let prom = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let prom_url = format!("http://{}", prom.local_addr().unwrap());
        let app = prometheus(started, queries.clone());
        tokio::spawn(async move { axum::serve(prom, app).await.unwrap() });

        let api = FakeApiServer::new();
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let ns = format!("team-{}", i % 50);
            let name = format!("db-{i}");
            api.put(&vs_path(&ns, &name), virtual_service(&ns, &name));
            api.put(&rs_path(&ns, &name), readsplit(&ns, &name, &prom_url));
            keys.push((ns, name));
        }
        api.only_count();
        // The fake cluster's objects live in this process too: measure them first.
        let (_, rss_cluster, _) = usage();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = OperatorOptions {
            listen: addr,
            namespace: None,
            lease_name: "weir-operator".into(),
            lease_namespace: "weir-system".into(),
            identity: "bench".into(),
            lease_duration_s: 15,
            concurrency: 16,
        };
        let operator = tokio::spawn(serve(
            api.client(),
            listener,
            PromSources::new().unwrap(),
            Arc::new(Timestamp::now),
            opts,
            async move {
                let _ = stopped.await;
            },
        ));

        // Warm-up: every ReadSplit has decided once, then one more interval.
        let decided = |api: &FakeApiServer| {
            keys.iter()
                .filter(|(ns, name)| {
                    api.get(&rs_path(ns, name))
                        .is_some_and(|rs| rs["status"]["observedGeneration"].is_number())
                })
                .count()
        };
        while decided(&api) < n {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "only {} of {n} ReadSplits decided in 300 s",
                decided(&api)
            );
        }
        let warm = started.elapsed();
        tokio::time::sleep(Duration::from_secs(INTERVAL_S)).await;

        api.take_request_count();
        let q0 = queries.load(Ordering::Relaxed);
        let ok0 = reconciliations(addr, "ok").await;
        let err0 = reconciliations(addr, "error").await;
        let (cpu0, _, _) = usage();
        let t0 = Instant::now();
        // RSS once per interval, to tell a steady state from growth; file descriptors and
        // the operator's metric series at the start and the end (a soak: `-- 1000 7200`).
        let (fds0, series0) = (fds(), series(addr).await);
        let mut rss_series = Vec::new();
        while t0.elapsed() < Duration::from_secs(seconds) {
            let left = Duration::from_secs(seconds).saturating_sub(t0.elapsed());
            tokio::time::sleep(left.min(Duration::from_secs(INTERVAL_S))).await;
            rss_series.push(format!("{:.0}", usage().1 as f64 / 1024.0));
        }
        let (fds1, series1) = (fds(), series(addr).await);
        let wall = t0.elapsed().as_secs_f64();
        let (cpu1, rss, hwm) = usage();
        let requests = api.take_request_count();
        let prom_queries = queries.load(Ordering::Relaxed) - q0;
        let ok = reconciliations(addr, "ok").await - ok0;
        let errors = reconciliations(addr, "error").await - err0;
        let ready = keys
            .iter()
            .filter(|(ns, name)| {
                api.get(&rs_path(ns, name)).is_some_and(|rs| {
                    rs["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        stop.send(()).unwrap();
        operator.await.unwrap().unwrap();
        println!(
            "readsplits {n}, interval {INTERVAL_S} s, all decided after {:.1} s; measured {wall:.1} s on one core:\n  CPU {:.1}% of a core ({:.2} s; operator + fake API server + fake Prometheus)\n  RSS {:.1} MB (peak {:.1} MB); the fake cluster's objects {:.1} MB before the operator started, so the operator added {:.1} MB\n  reconciliations {ok:.0} ok / {errors:.0} failed, of which decisions (one per eight Prometheus queries) {:.1}/s, expected {:.1}/s; Ready at the end: {ready}/{n}\n  API requests {requests} ({:.0}/s), Prometheus queries {prom_queries} ({:.0}/s)\n  file descriptors {fds0} → {fds1}; metric series {series0} → {series1}\n  RSS every {INTERVAL_S} s (MB): {}",
            warm.as_secs_f64(),
            100.0 * (cpu1 - cpu0) / wall,
            cpu1 - cpu0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss_cluster as f64 / 1024.0,
            (rss.saturating_sub(rss_cluster)) as f64 / 1024.0,
            prom_queries as f64 / 8.0 / wall,
            n as f64 / INTERVAL_S as f64,
            requests as f64 / wall,
            prom_queries as f64 / wall,
            rss_series.join(" "),
        );
    });
}
