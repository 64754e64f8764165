//! Calibration of the primary's CPU budget: its CPU at rest and per read, measured with the
//! experiment's own load, sized to the share of the read load the primary is meant to carry.
//! Also the load generator's settings, which calibration and every arm share.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::ExperimentConfig;
use crate::lab::Lab;
use crate::load::{Load, LoadConfig};
use crate::procs;

/// What the primary's CPU budget was calibrated to.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// CPU the primary uses at rest (heartbeats, scrapes, the write load), cores.
    pub idle_cores: f64,
    /// CPU per read on the primary, core-milliseconds.
    pub cpu_ms_per_read: f64,
    /// Reads measured.
    pub reads: u64,
    /// The budget: idle + the configured share of the read load, cores.
    pub budget_cores: f64,
    /// Reads/s the primary can serve at 100% of its budget (the shield's capacity).
    pub read_capacity_qps: f64,
}

/// Measures the primary's CPU at rest and per read, and sizes its budget. Reads are measured
/// the way the experiment makes them — the same load generator through HAProxy, with every
/// read sent to the primary — so connection churn and the write load are part of the cost.
pub async fn calibrate(lab: &Lab, cfg: &ExperimentConfig) -> Result<Calibration> {
    let pid = lab.server_pid(0).context("primary not running")?;
    let hz = procs::ticks_per_second();
    let cpu = || procs::cpu_ticks(pid).map(|t| t as f64 / hz).unwrap_or(0.0);
    let window = Duration::from_secs(5);
    // At rest: the write load only (it is part of every arm).
    let writes = LoadConfig {
        read_rate: 0.1,
        ..load_config(lab, cfg)
    };
    let load = Load::start(writes, 1, lab.metrics.clone()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (cpu(), Instant::now());
    tokio::time::sleep(window).await;
    let idle_cores = (cpu() - c0) / t0.elapsed().as_secs_f64();
    load.stop().await;
    // Every read on the primary.
    lab.set_weights([100, 0, 0]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = Load::start(load_config(lab, cfg), 2, lab.metrics.clone()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.set_phase(1);
    let (c1, t1) = (cpu(), Instant::now());
    tokio::time::sleep(window).await;
    let elapsed = t1.elapsed().as_secs_f64();
    let busy = (cpu() - c1) - idle_cores * elapsed;
    let report = load.stop().await;
    lab.set_weights([0, 50, 50]).await?;
    let measured = &report.phases[1];
    let reads = measured
        .by_server
        .get("primary")
        .map(|r| r.reads)
        .unwrap_or(0);
    if reads == 0 || busy <= 0.0 || measured.errors > 0 {
        bail!(
            "calibration measured {busy:.3} CPU-seconds for {reads} reads on the primary ({} failed)",
            measured.errors
        );
    }
    let per_read = busy / reads as f64;
    let budget_cores = idle_cores + cfg.primary_capacity_share * cfg.read_rate * per_read;
    Ok(Calibration {
        idle_cores,
        cpu_ms_per_read: per_read * 1000.0,
        reads,
        budget_cores,
        read_capacity_qps: budget_cores / per_read,
    })
}

pub(crate) fn load_config(lab: &Lab, cfg: &ExperimentConfig) -> LoadConfig {
    LoadConfig {
        read_port: lab.layout.haproxy_read_port(),
        primary_port: lab.layout.mysql_port(0),
        read_rate: cfg.read_rate,
        write_rate: cfg.write_rate,
        readers: cfg.readers,
        conn_lifetime: Duration::from_millis(cfg.conn_lifetime_ms),
        read_rows: cfg.read_rows,
        slo_staleness_s: cfg.max_staleness_s,
        read_timeout: Duration::from_secs(2),
    }
}
