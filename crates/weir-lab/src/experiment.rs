//! The experiment: one script — steady load, a replica stall, recovery, a replica kill — run
//! once per arm (static weights without Weir, then `weir run` with each policy) on the same
//! lab, and one comparison table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::Conn;
use serde::Serialize;

use crate::cluster;
use crate::faults::{Stall, StallKind};
use crate::lab::Lab;
use crate::layout::{Layout, SERVERS};
use crate::load::{Load, LoadConfig, LoadReport, PhaseStats};
use crate::procs;

/// Primary CPU is sampled over windows this long (a small budget is a few clock ticks per
/// second: shorter windows would be mostly rounding).
const CPU_SAMPLE: Duration = Duration::from_secs(2);

/// Seconds since the arm started, and the weights (primary, replica-1, replica-2).
type WeightSample = (f64, [u32; 3]);
/// Seconds since the arm started, and the heartbeat lag of replica-1 and replica-2.
type LagSample = (f64, Option<f64>, Option<f64>);
/// A timeline a monitor task appends to.
type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Names of the script's phases, in order.
pub const PHASES: [&str; 4] = ["steady", "stall", "recovery", "kill"];

/// Phase lengths, seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Script {
    /// Steady load before anything happens.
    pub steady_s: f64,
    /// replica-1's apply is stalled.
    pub stall_s: f64,
    /// After the stall is released.
    pub recovery_s: f64,
    /// After replica-2 is killed.
    pub kill_s: f64,
}

impl Script {
    /// The full experiment (~3 minutes per arm).
    pub const FULL: Script = Script {
        steady_s: 30.0,
        stall_s: 60.0,
        recovery_s: 45.0,
        kill_s: 30.0,
    };
    /// The CI version (~80 s per arm).
    pub const SHORT: Script = Script {
        steady_s: 12.0,
        stall_s: 30.0,
        recovery_s: 20.0,
        kill_s: 15.0,
    };

    fn lengths(&self) -> [f64; 4] {
        [self.steady_s, self.stall_s, self.recovery_s, self.kill_s]
    }
}

/// Everything one experiment needs.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentConfig {
    /// Arms in order: `static` (fixed weights, no Weir) or a policy kind for `weir run`.
    pub arms: Vec<String>,
    /// Phase lengths.
    pub script: Script,
    /// How the replica is stalled.
    pub stall: StallKind,
    /// Reads per second through HAProxy.
    pub read_rate: f64,
    /// Writes per second on the primary.
    pub write_rate: f64,
    /// Reader connections.
    pub readers: usize,
    /// Reader connection lifetime, milliseconds.
    pub conn_lifetime_ms: u64,
    /// Rows each read aggregates.
    pub read_rows: u32,
    /// Staleness SLO, seconds (a read older than this is stale).
    pub max_staleness_s: f64,
    /// Weir's control interval, seconds.
    pub interval_s: f64,
    /// The share of the read load the primary is sized for (its CPU budget is calibrated
    /// from this: the CPU it uses serving that share, plus what it uses at rest).
    pub primary_capacity_share: f64,
    /// The primary's CPU cap (fraction of its budget) Weir's shield keeps it under.
    pub primary_cpu_max: f64,
    /// The `weir` binary.
    #[serde(skip)]
    pub weir_bin: PathBuf,
    /// The Q-learning model.
    pub model: PathBuf,
}

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

/// Results of one phase of one arm.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Phase name.
    pub phase: String,
    /// Load statistics.
    #[serde(flatten)]
    pub stats: PhaseStats,
    /// Stale reads, percent of attempted.
    pub stale_pct: f64,
    /// Read latency p50 and p99, ms.
    pub p50_ms: Option<f64>,
    /// Read latency p99, ms.
    pub p99_ms: Option<f64>,
    /// Primary CPU, fraction of its budget: mean and max over 2-s samples.
    pub primary_cpu_mean: f64,
    /// See `primary_cpu_mean`.
    pub primary_cpu_max: f64,
    /// Seconds with the primary over its CPU cap.
    pub primary_over_cap_s: f64,
}

/// Results of one arm.
#[derive(Debug, Clone, Serialize)]
pub struct ArmResult {
    /// `static` or the policy kind.
    pub arm: String,
    /// Per phase.
    pub phases: Vec<PhaseResult>,
    /// The whole run.
    pub total: PhaseResult,
    /// Seconds from the stall's start until replica-1's heartbeat lag crossed the SLO.
    pub slo_crossed_s: Option<f64>,
    /// Seconds from the stall's start to the first cut of replica-1's weight.
    pub reaction_s: Option<f64>,
    /// Seconds from the stall's release until replica-1 got reads again (its weight rose).
    pub return_s: Option<f64>,
    /// replica-1's weight at the end of the recovery phase, and before the stall.
    pub r1_weight_end_of_recovery: Option<u32>,
    /// See `r1_weight_end_of_recovery`.
    pub r1_weight_before_stall: Option<u32>,
    /// Seconds from the kill to replica-2's weight reaching 0.
    pub kill_out_s: Option<f64>,
    /// Weight changes: seconds since the arm started, weights (primary, replica-1, replica-2).
    pub weights: Vec<(f64, [u32; 3])>,
    /// Per second: reads per server (primary, replica-1, replica-2), stale, errors.
    pub timeline: Vec<[u32; 5]>,
    /// Heartbeat lag of replica-1 and replica-2, every 250 ms: (seconds, lag1, lag2).
    pub lag: Vec<(f64, Option<f64>, Option<f64>)>,
    /// Phase start times, seconds since the arm started.
    pub phase_starts: Vec<f64>,
}

/// The experiment's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The inputs.
    pub config: ExperimentConfig,
    /// The primary's budget.
    pub calibration: Calibration,
    /// One per arm.
    pub arms: Vec<ArmResult>,
    /// Pass/fail lines of the check.
    pub verdict: Vec<String>,
    /// Whether every check passed.
    pub passed: bool,
}

/// Weir's config for one arm.
pub fn weir_config(
    layout: &Layout,
    cfg: &ExperimentConfig,
    cal: &Calibration,
    policy: &str,
    arm_dir: &Path,
) -> String {
    let rate_window = "5s";
    let budget = cal.budget_cores;
    format!(
        r#"# Generated by weir-lab for the `{policy}` arm.
mode = "enforce"
interval_s = {interval}
step_timeout_s = {timeout}
listen = "127.0.0.1:{weir_port}"
audit_log = "{audit}"
state_dir = "{state}"

[prometheus]
url = "http://127.0.0.1:{prom_port}"
timeout_s = {timeout}
max_sample_age_s = 5
replicas = [
  {{ name = "replica-1", label_value = "replica-1" }},
  {{ name = "replica-2", label_value = "replica-2" }},
]

[prometheus.queries.replica_lag_s]
query = "mysql_heartbeat_now_timestamp_seconds - mysql_heartbeat_stored_timestamp_seconds"
replica_label = "server"

[prometheus.queries.replica_up]
query = "mysql_up"
replica_label = "server"

[prometheus.queries.replica_read_qps]
query = 'sum by (server) (rate(weir_lab_reads_total{{outcome!="error"}}[{rate_window}]))'
replica_label = "server"

[prometheus.queries.replica_read_p99_ms]
query = "1000 * histogram_quantile(0.99, sum by (le, server) (rate(weir_lab_read_duration_seconds_bucket[{rate_window}])))"
replica_label = "server"

[prometheus.queries.primary_cpu]
query = 'sum(rate(weir_lab_process_cpu_seconds_total{{server="primary"}}[{rate_window}])) / {budget:.6}'

[prometheus.queries.primary_read_qps]
query = 'sum(rate(weir_lab_reads_total{{server="primary", outcome!="error"}}[{rate_window}])) or vector(0)'

[prometheus.queries.primary_write_qps]
query = 'sum(rate(mysql_global_status_commands_total{{role="primary", command=~"insert|update|delete|replace"}}[{rate_window}]))'

[prometheus.queries.primary_read_p99_ms]
query = '1000 * histogram_quantile(0.99, sum by (le) (rate(weir_lab_read_duration_seconds_bucket{{server="primary"}}[{rate_window}])))'

[slo]
max_staleness_s = {slo}
hard_staleness_s = {hard}
primary_cpu_target = {cpu_target}
primary_cpu_max = {cpu_max}
read_p99_slo_ms = 50

[shield]
max_step = 25
stale_after_s = 5
fail_safe_after = 3
fail_safe = "baseline"
primary_read_capacity_qps = {capacity:.1}

[policy]
kind = "{policy}"
model = "{model}"
online_learning = false

[actuator]
kind = "haproxy"
address = "tcp://127.0.0.1:{admin}"
backend = "mysql_reads"
primary_server = "primary"
replica_servers = ["replica-1", "replica-2"]
"#,
        interval = cfg.interval_s,
        timeout = (cfg.interval_s * 0.8).max(0.5),
        weir_port = layout.weir_port(),
        audit = arm_dir.join("audit.jsonl").display(),
        state = arm_dir.join("state").display(),
        prom_port = layout.prometheus_port(),
        slo = cfg.max_staleness_s,
        hard = cfg.max_staleness_s * 10.0,
        cpu_target = (cfg.primary_cpu_max - 0.2).max(0.1),
        cpu_max = cfg.primary_cpu_max,
        capacity = cal.read_capacity_qps,
        model = cfg.model.display(),
        admin = layout.haproxy_admin_port(),
    )
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

fn load_config(lab: &Lab, cfg: &ExperimentConfig) -> LoadConfig {
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

/// Brings the lab back to the start state: every server up and caught up, the baseline
/// weights, no Weir.
async fn reset(lab: &mut Lab) -> Result<()> {
    for i in 0..SERVERS.len() {
        lab.restart_server(i).await?;
    }
    cluster::wait_caught_up(&lab.layout, 1.0, Duration::from_secs(120)).await?;
    lab.set_weights([0, 50, 50]).await?;
    // Let HAProxy's checks and Prometheus' rate windows settle.
    tokio::time::sleep(Duration::from_secs(6)).await;
    Ok(())
}

/// Runs one arm of the script.
pub async fn run_arm(
    lab: &mut Lab,
    cfg: &ExperimentConfig,
    cal: &Calibration,
    arm: &str,
) -> Result<ArmResult> {
    reset(lab)
        .await
        .with_context(|| format!("resetting the lab before `{arm}`"))?;
    let arm_dir = lab.layout.path(format!("arms/{arm}"));
    if arm_dir.exists() {
        std::fs::remove_dir_all(&arm_dir)?;
    }
    std::fs::create_dir_all(&arm_dir)?;
    let weir = if arm == "static" {
        None
    } else {
        let config = arm_dir.join("weir.toml");
        procs::write_atomic(
            &config,
            weir_config(&lab.layout, cfg, cal, arm, &arm_dir).as_bytes(),
        )?;
        let child = lab.start_weir(&cfg.weir_bin, &config, &arm_dir.join("weir.log"))?;
        wait_weir_deciding(lab.layout.weir_port(), &arm_dir.join("weir.log")).await?;
        Some(child)
    };
    let start = Instant::now();
    let since = move || start.elapsed().as_secs_f64();

    // Monitors: HAProxy weights every 100 ms, replica lag every 250 ms, primary CPU every 1 s.
    let weights: Shared<WeightSample> = Arc::default();
    let lag: Shared<LagSample> = Arc::default();
    let cpu: Shared<(f64, f64)> = Arc::default();
    let mut monitors = Vec::new();
    {
        let (w, api) = (weights.clone(), lab.haproxy().clone());
        monitors.push(tokio::spawn(async move {
            let mut last = None;
            loop {
                let mut cur = [0u32; 3];
                let mut ok = true;
                for (i, s) in SERVERS.iter().enumerate() {
                    match api.get_weight(crate::layout::BACKEND, s).await {
                        Ok(x) => cur[i] = x.current,
                        Err(_) => ok = false,
                    }
                }
                if ok && last != Some(cur) {
                    last = Some(cur);
                    if let Ok(mut v) = w.lock() {
                        v.push((since(), cur));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    {
        let (l, ports) = (
            lag.clone(),
            [lab.layout.mysql_port(1), lab.layout.mysql_port(2)],
        );
        monitors.push(tokio::spawn(async move {
            let mut conns: [Option<Conn>; 2] = [None, None];
            loop {
                let mut out = [None, None];
                for k in 0..2 {
                    if conns[k].is_none() {
                        conns[k] = tokio::time::timeout(
                            Duration::from_millis(200),
                            Conn::new(cluster::root(ports[k])),
                        )
                        .await
                        .ok()
                        .and_then(Result::ok);
                    }
                    if let Some(c) = conns[k].as_mut() {
                        out[k] = cluster::heartbeat_lag(c).await;
                        if out[k].is_none() {
                            conns[k] = None;
                        }
                    }
                }
                if let Ok(mut v) = l.lock() {
                    v.push((since(), out[0], out[1]));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }
    let primary_pid = lab.server_pid(0).context("primary not running")?;
    {
        let (c, budget) = (cpu.clone(), cal.budget_cores);
        monitors.push(tokio::spawn(async move {
            let hz = procs::ticks_per_second();
            let mut prev = procs::cpu_ticks(primary_pid).map(|t| (t, Instant::now()));
            loop {
                tokio::time::sleep(CPU_SAMPLE).await;
                let now = procs::cpu_ticks(primary_pid).map(|t| (t, Instant::now()));
                if let (Some((t0, i0)), Some((t1, i1))) = (prev, now) {
                    let cores = (t1.saturating_sub(t0)) as f64 / hz / (i1 - i0).as_secs_f64();
                    if let Ok(mut v) = c.lock() {
                        v.push((since(), cores / budget));
                    }
                }
                prev = now;
            }
        }));
    }

    let load = Load::start(load_config(lab, cfg), PHASES.len(), lab.metrics.clone()).await?;
    let lengths = cfg.script.lengths();
    let mut phase_starts = Vec::new();
    let run = async {
        phase_starts.push(since());
        tokio::time::sleep(Duration::from_secs_f64(lengths[0])).await;
        load.set_phase(1);
        phase_starts.push(since());
        let stall = Stall::start(lab.layout.mysql_port(1), cfg.stall).await?;
        tokio::time::sleep(Duration::from_secs_f64(lengths[1])).await;
        load.set_phase(2);
        phase_starts.push(since());
        stall.end().await?;
        tokio::time::sleep(Duration::from_secs_f64(lengths[2])).await;
        load.set_phase(3);
        phase_starts.push(since());
        lab.kill_server(2)?;
        tokio::time::sleep(Duration::from_secs_f64(lengths[3])).await;
        anyhow::Ok(())
    };
    let outcome = run.await;
    let end = since();
    let report = load.stop().await;
    for m in &monitors {
        m.abort();
    }
    if let Some(child) = weir {
        lab.stop_weir(child)?;
    }
    outcome?;

    let weights = weights.lock().map(|v| v.clone()).unwrap_or_default();
    let lag = lag.lock().map(|v| v.clone()).unwrap_or_default();
    let cpu = cpu.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(summarise(
        arm,
        cfg,
        report,
        weights,
        lag,
        cpu,
        phase_starts,
        end,
    ))
}

async fn wait_weir_deciding(port: u16, log: &Path) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "weir run not ready after 30 s; {} (newest first):\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    arm: &str,
    cfg: &ExperimentConfig,
    report: LoadReport,
    weights: Vec<WeightSample>,
    lag: Vec<LagSample>,
    cpu: Vec<(f64, f64)>,
    phase_starts: Vec<f64>,
    end: f64,
) -> ArmResult {
    let bounds = |i: usize| {
        (
            phase_starts.get(i).copied().unwrap_or(end),
            phase_starts.get(i + 1).copied().unwrap_or(end),
        )
    };
    let phase_result = |name: &str, stats: PhaseStats, from: f64, to: f64| {
        let samples: Vec<f64> = cpu
            .iter()
            .filter(|(t, _)| *t > from && *t <= to)
            .map(|(_, c)| *c)
            .collect();
        PhaseResult {
            phase: name.to_string(),
            stale_pct: stats.stale_pct(),
            p50_ms: stats.latency_ms(0.5),
            p99_ms: stats.latency_ms(0.99),
            primary_cpu_mean: mean(&samples),
            primary_cpu_max: samples.iter().copied().fold(0.0, f64::max),
            primary_over_cap_s: samples.iter().filter(|c| **c > cfg.primary_cpu_max).count() as f64
                * CPU_SAMPLE.as_secs_f64(),
            stats,
        }
    };
    let mut phases = Vec::new();
    let mut total = PhaseStats::default();
    for (i, stats) in report.phases.into_iter().enumerate() {
        total.merge(&stats);
        let (a, b) = bounds(i);
        phases.push(phase_result(PHASES[i], stats, a, b));
    }
    let total = phase_result("total", total, 0.0, end);

    let weight_at = |t: f64| -> Option<[u32; 3]> {
        weights
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map(|(_, w)| *w)
    };
    let (stall_at, _) = bounds(1);
    let (recover_at, _) = bounds(2);
    let (kill_at, _) = bounds(3);
    let before = weight_at(stall_at).map(|w| w[1]);
    let reaction_s = before.and_then(|b| {
        weights
            .iter()
            .find(|(t, w)| *t >= stall_at && *t < recover_at && w[1] < b)
            .map(|(t, _)| t - stall_at)
    });
    let return_s = weight_at(recover_at).and_then(|at_release| {
        weights
            .iter()
            .find(|(t, w)| *t >= recover_at && *t < kill_at && w[1] > at_release[1])
            .map(|(t, _)| t - recover_at)
    });
    let r1_weight_end_of_recovery = weight_at(kill_at - 1e-6).map(|w| w[1]);
    let kill_out_s = weights
        .iter()
        .find(|(t, w)| *t >= kill_at && w[2] == 0)
        .map(|(t, _)| t - kill_at);
    let slo_crossed_s = lag
        .iter()
        .find(|(t, l1, _)| *t >= stall_at && l1.is_some_and(|l| l > cfg.max_staleness_s))
        .map(|(t, _, _)| t - stall_at);
    ArmResult {
        arm: arm.to_string(),
        phases,
        total,
        slo_crossed_s,
        reaction_s,
        return_s,
        r1_weight_end_of_recovery,
        r1_weight_before_stall: before,
        kill_out_s,
        weights,
        timeline: report.timeline,
        lag,
        phase_starts,
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Checks the result against what CI requires: each Weir arm cuts the stall's stale reads to
/// at most `max_ratio` of static weights' and fails no read outside the kill phase; static
/// weights must themselves have served stale reads (else the stall did not bite and the run
/// proves nothing).
pub fn verdict(arms: &[ArmResult], max_ratio: f64) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    let Some(stat) = arms.iter().find(|a| a.arm == "static") else {
        return (vec!["no `static` arm to compare with".into()], false);
    };
    let base = stat.phases.get(1).map(|p| p.stale_pct).unwrap_or(0.0);
    if base < 5.0 {
        ok = false;
        lines.push(format!(
            "FAIL static weights served only {base:.2}% stale reads during the stall: the stall did not bite"
        ));
    }
    for a in arms.iter().filter(|a| a.arm != "static") {
        let stall = a.phases.get(1).map(|p| p.stale_pct).unwrap_or(100.0);
        let ratio = if base > 0.0 {
            stall / base
        } else {
            f64::INFINITY
        };
        let pass = ratio <= max_ratio;
        ok &= pass;
        lines.push(format!(
            "{} {}: stall stale reads {stall:.2}% vs static {base:.2}% = {:.1}% of static (CI limit {:.0}%, goal 10%)",
            if pass { "PASS" } else { "FAIL" },
            a.arm,
            ratio * 100.0,
            max_ratio * 100.0
        ));
        let errors: u64 = a.phases.iter().take(3).map(|p| p.stats.errors).sum();
        let pass = errors == 0;
        ok &= pass;
        lines.push(format!(
            "{} {}: {errors} failed reads before the kill (steady, stall, recovery)",
            if pass { "PASS" } else { "FAIL" },
            a.arm
        ));
    }
    (lines, ok)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

/// The comparison table (Markdown).
pub fn table(report: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "| arm | stale reads, stall | stale reads, all | max staleness s | read p99 ms (stall) | failed reads (stall / recovery / kill) | reads P/R1/R2 % (stall) | primary CPU mean / max (stall) | s over CPU cap | SLO crossed s | reaction s | return s | R1 weight before / after | killed replica out s |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for a in &report.arms {
        let st = &a.phases[1];
        let share = |srv: &str| {
            let n = st.stats.by_server.get(srv).map(|r| r.reads).unwrap_or(0);
            100.0 * n as f64 / st.stats.reads.max(1) as f64
        };
        s.push_str(&format!(
            "| {} | {:.2}% | {:.2}% | {:.1} | {} | {} / {} / {} | {:.0}/{:.0}/{:.0} | {:.0}% / {:.0}% | {:.0} | {} | {} | {} | {} / {} | {} |\n",
            a.arm,
            st.stale_pct,
            a.total.stale_pct,
            a.total.stats.max_staleness_s,
            opt(st.p99_ms, 1),
            st.stats.errors,
            a.phases[2].stats.errors,
            a.phases[3].stats.errors,
            share("primary"),
            share("replica-1"),
            share("replica-2"),
            st.primary_cpu_mean * 100.0,
            st.primary_cpu_max * 100.0,
            a.total.primary_over_cap_s,
            opt(a.slo_crossed_s, 1),
            opt(a.reaction_s, 1),
            opt(a.return_s, 1),
            a.r1_weight_before_stall.map(|w| w.to_string()).unwrap_or_else(|| "—".into()),
            a.r1_weight_end_of_recovery.map(|w| w.to_string()).unwrap_or_else(|| "—".into()),
            opt(a.kill_out_s, 1),
        ));
    }
    s
}

/// Runs the whole experiment on a lab that is up.
pub async fn run(lab: &mut Lab, cfg: &ExperimentConfig, max_ratio: f64) -> Result<Report> {
    if !cfg.weir_bin.is_file() && cfg.arms.iter().any(|a| a != "static") {
        bail!(
            "{}: no weir binary; build it first (`cargo build -p weir`) or pass --weir-bin",
            cfg.weir_bin.display()
        );
    }
    let calibration = calibrate(lab, cfg)
        .await
        .context("calibrating the primary")?;
    eprintln!(
        "lab: primary at rest {:.3} cores, {:.3} core-ms per read → budget {:.3} cores = {:.0} reads/s at 100%",
        calibration.idle_cores,
        calibration.cpu_ms_per_read,
        calibration.budget_cores,
        calibration.read_capacity_qps
    );
    let mut arms = Vec::new();
    for arm in &cfg.arms {
        eprintln!("lab: arm `{arm}` ...");
        let r = run_arm(lab, cfg, &calibration, arm).await?;
        eprintln!(
            "lab: arm `{arm}`: stall stale reads {:.2}%, failed reads {}",
            r.phases[1].stale_pct, r.total.stats.errors
        );
        arms.push(r);
    }
    let (verdict, passed) = verdict(&arms, max_ratio);
    Ok(Report {
        config: cfg.clone(),
        calibration,
        arms,
        verdict,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, stall_stale: u64, errors: [u64; 4]) -> ArmResult {
        let phases: Vec<PhaseStats> = (0..4)
            .map(|i| PhaseStats {
                reads: 1000,
                stale: if i == 1 { stall_stale } else { 0 },
                errors: errors[i],
                ..Default::default()
            })
            .collect();
        let report = LoadReport {
            phases,
            timeline: Vec::new(),
        };
        let cfg = test_config();
        let weights = vec![
            (0.0, [0, 50, 50]),
            (14.0, [0, 25, 75]),
            (15.0, [0, 0, 100]),
            (52.0, [0, 50, 50]),
            (64.0, [0, 100, 0]),
        ];
        let lag = vec![(10.0, Some(0.1), Some(0.1)), (13.0, Some(2.5), Some(0.1))];
        summarise(
            name,
            &cfg,
            report,
            weights,
            lag,
            vec![(11.0, 0.5), (20.0, 0.9), (30.0, 0.2)],
            vec![0.0, 10.0, 50.0, 62.0],
            80.0,
        )
    }

    fn test_config() -> ExperimentConfig {
        ExperimentConfig {
            arms: vec!["static".into(), "qlearn".into()],
            script: Script::SHORT,
            stall: StallKind::Ftwrl,
            read_rate: 200.0,
            write_rate: 50.0,
            readers: 8,
            conn_lifetime_ms: 1000,
            read_rows: 100,
            max_staleness_s: 2.0,
            interval_s: 1.0,
            primary_capacity_share: 0.5,
            primary_cpu_max: 0.85,
            weir_bin: PathBuf::from("weir"),
            model: PathBuf::from("models/qlearn.json"),
        }
    }

    #[test]
    fn timings_are_measured_from_the_phase_starts() {
        let a = arm("qlearn", 10, [0; 4]);
        assert_eq!(a.reaction_s, Some(4.0));
        assert_eq!(a.return_s, Some(2.0));
        assert_eq!(a.r1_weight_before_stall, Some(50));
        assert_eq!(a.r1_weight_end_of_recovery, Some(50));
        assert_eq!(a.kill_out_s, Some(2.0));
        assert_eq!(a.slo_crossed_s, Some(3.0));
        assert_eq!(
            a.phases[1].primary_over_cap_s, 2.0,
            "one 2-s sample over the cap"
        );
        assert!((a.phases[1].primary_cpu_max - 0.9).abs() < 1e-9);
        assert!((a.phases[1].stale_pct - 1.0).abs() < 1e-9);
    }

    #[test]
    fn verdict_requires_a_biting_stall_a_cut_and_no_errors() {
        let stat = arm("static", 400, [0, 0, 0, 9]);
        let good = arm("qlearn", 20, [0, 0, 0, 3]);
        let (lines, ok) = verdict(&[stat.clone(), good], 0.5);
        assert!(ok, "{lines:?}");
        let bad = arm("shun", 300, [0, 0, 0, 0]);
        let (_, ok) = verdict(&[stat.clone(), bad], 0.5);
        assert!(!ok, "75% of static is not a cut");
        let erring = arm("shun", 10, [0, 2, 0, 0]);
        let (lines, ok) = verdict(&[stat, erring], 0.5);
        assert!(!ok);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("FAIL shun: 2 failed reads")),
            "{lines:?}"
        );
        let (_, ok) = verdict(&[arm("static", 3, [0; 4]), arm("qlearn", 0, [0; 4])], 0.5);
        assert!(!ok, "a stall static weights did not notice proves nothing");
    }

    #[test]
    fn generated_weir_config_names_the_lab_ports_and_budget() {
        let layout = Layout::new("/tmp/lab", 23300).expect("layout");
        let cal = Calibration {
            idle_cores: 0.02,
            cpu_ms_per_read: 0.2,
            reads: 1000,
            budget_cores: 0.05,
            read_capacity_qps: 250.0,
        };
        let text = weir_config(
            &layout,
            &test_config(),
            &cal,
            "qlearn",
            Path::new("/tmp/lab/arms/q"),
        );
        assert!(text.contains("listen = \"127.0.0.1:23332\""), "{text}");
        assert!(
            text.contains("address = \"tcp://127.0.0.1:23321\""),
            "{text}"
        );
        assert!(text.contains("primary_read_capacity_qps = 250.0"), "{text}");
        assert!(text.contains("/ 0.050000"), "{text}");
        // What `weir run` will load: parses and validates as a whole.
        let parsed: weir_config::WeirConfig =
            weir_config::from_toml_str(&text, "generated", Vec::new()).expect("valid config");
        parsed.validate("generated").expect("consistent config");
        assert_eq!(parsed.policy.kind, "qlearn");
        assert_eq!(parsed.prometheus.replicas.len(), 2);
    }
}
