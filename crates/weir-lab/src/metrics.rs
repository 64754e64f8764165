//! The lab's own `/metrics`, scraped by Prometheus beside the exporters: what a real
//! deployment gets from node_exporter/cAdvisor and from a client-side latency histogram,
//! measured here for real —
//! `weir_lab_process_cpu_seconds_total{server}` (user + system CPU of each `mariadbd`, from
//! `/proc/<pid>/stat`; all servers share this machine, so host CPU would not tell them apart)
//! and `weir_lab_read_duration_seconds{server}` (every read the load generator makes,
//! labelled by the server that answered it).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::procs;

/// Label set: which database server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// `primary`, `replica-1`, ...
    pub server: String,
}

/// Label set: which server answered, and how the read ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabel {
    /// The server that answered (`unknown` when the read failed).
    pub server: String,
    /// `ok`, `stale` (answered, but older than the SLO) or `error`.
    pub outcome: String,
}

fn read_histogram() -> Histogram {
    // 0.25 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The lab's metrics.
pub struct LabMetrics {
    registry: Registry,
    cpu: Family<ServerLabel, Counter<f64, AtomicU64>>,
    /// Read latency by answering server.
    pub read_duration: Family<ServerLabel, Histogram, fn() -> Histogram>,
    /// Reads by server and outcome.
    pub reads: Family<ReadLabel, Counter>,
    last_cpu: Mutex<Vec<(String, u32, u64)>>,
}

impl LabMetrics {
    /// Registers everything.
    pub fn new() -> Arc<LabMetrics> {
        let mut registry = Registry::default();
        let cpu = Family::<ServerLabel, Counter<f64, AtomicU64>>::default();
        let read_duration =
            Family::<ServerLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                read_histogram as fn() -> Histogram,
            );
        let reads = Family::<ReadLabel, Counter>::default();
        registry.register(
            "weir_lab_process_cpu_seconds",
            "CPU time (user + system) of each mariadbd process",
            cpu.clone(),
        );
        registry.register(
            "weir_lab_read_duration_seconds",
            "Latency of the load generator's reads, by the server that answered",
            read_duration.clone(),
        );
        registry.register(
            "weir_lab_reads",
            "Reads made by the load generator, by answering server and outcome",
            reads.clone(),
        );
        Arc::new(LabMetrics {
            registry,
            cpu,
            read_duration,
            reads,
            last_cpu: Mutex::new(Vec::new()),
        })
    }

    /// Adds the CPU each server's process used since the last call. `pids` maps server →
    /// current pid (a restarted server continues the same counter).
    pub fn sample_cpu(&self, pids: &[(String, Option<u32>)]) {
        let hz = procs::ticks_per_second();
        let Ok(mut last) = self.last_cpu.lock() else {
            return;
        };
        for (server, pid) in pids {
            let Some(pid) = *pid else { continue };
            let Some(now) = procs::cpu_ticks(pid) else {
                continue;
            };
            let prev = last.iter_mut().find(|(s, _, _)| s == server);
            let delta = match prev {
                Some((_, p, t)) if *p == pid => {
                    let d = now.saturating_sub(*t);
                    *t = now;
                    d
                }
                Some(entry) => {
                    // A new process (restart): count all of its CPU so far.
                    *entry = (server.clone(), pid, now);
                    now
                }
                None => {
                    last.push((server.clone(), pid, now));
                    now
                }
            };
            self.cpu
                .get_or_create(&ServerLabel {
                    server: server.clone(),
                })
                .inc_by(delta as f64 / hz);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` on 127.0.0.1:`port` until the task is dropped, sampling CPU every
/// `every` from the pids `pids()` returns.
pub async fn serve(
    metrics: Arc<LabMetrics>,
    port: u16,
    pids: Arc<dyn Fn() -> Vec<(String, Option<u32>)> + Send + Sync>,
    every: Duration,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the lab's /metrics on 127.0.0.1:{port}"))?;
    let m = metrics.clone();
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            m.sample_cpu(&pids());
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let r = axum::serve(listener, app).await;
    sampler.abort();
    r.context("lab /metrics server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_of_a_real_process_is_counted_and_encoded() {
        let m = LabMetrics::new();
        let me = std::process::id();
        // Burn CPU until the kernel has counted a few ticks of it.
        let t0 = procs::cpu_ticks(me).expect("own stat");
        let mut x = 0u64;
        while procs::cpu_ticks(me).unwrap_or(u64::MAX) < t0 + 3 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        m.sample_cpu(&[("primary".into(), Some(me)), ("replica-1".into(), None)]);
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("weir_lab_process_cpu_seconds_total{server=\"primary\"}"))
            .unwrap_or_else(|| panic!("no cpu line in\n{text}"));
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0);
        assert!(v > 0.0, "{line}");
        assert!(!text.contains("replica-1"), "no pid, no series:\n{text}");
    }

    #[test]
    fn reads_are_labelled_by_server_and_outcome() {
        let m = LabMetrics::new();
        m.read_duration
            .get_or_create(&ServerLabel {
                server: "replica-2".into(),
            })
            .observe(0.003);
        m.reads
            .get_or_create(&ReadLabel {
                server: "replica-2".into(),
                outcome: "stale".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains(
                "weir_lab_read_duration_seconds_bucket{le=\"0.004\",server=\"replica-2\"} 1"
            ) || text.contains("weir_lab_read_duration_seconds_count{server=\"replica-2\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weir_lab_reads_total{server=\"replica-2\",outcome=\"stale\"} 1"),
            "{text}"
        );
    }
}
