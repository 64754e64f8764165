//! Running the experiment: one arm at a time — reset the lab, start `weir run` (unless the
//! arm is `static`), play the script under load while monitors record HAProxy's weights,
//! the replicas' lag and the primary's CPU — then the verdict over all arms.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::Conn;
use weir_policy::PolicyKind;

use super::calibrate::{Calibration, calibrate, load_config};
use super::config::weir_config;
use super::report::{ArmResult, Gates, Report, summarise, verdict};
use super::{CPU_SAMPLE, ExperimentConfig, LagSample, PHASES, STATIC_ARM, WeightSample};
use crate::cluster;
use crate::faults::Stall;
use crate::lab::Lab;
use crate::layout::SERVERS;
use crate::load::Load;
use crate::procs;

/// A timeline a monitor task appends to.
type Shared<T> = Arc<Mutex<Vec<T>>>;

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
    let weir = if arm == STATIC_ARM {
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

pub(crate) async fn wait_weir_deciding(port: u16, log: &Path) -> Result<()> {
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

/// Runs the whole experiment on a lab that is up.
pub async fn run(lab: &mut Lab, cfg: &ExperimentConfig, gates: &Gates) -> Result<Report> {
    if !cfg.weir_bin.is_file() && cfg.arms.iter().any(|a| a != STATIC_ARM) {
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
    let (verdict, passed) = verdict(&arms, gates, |arm| {
        PolicyKind::parse(arm).is_ok_and(PolicyKind::needs_model)
    });
    Ok(Report {
        config: cfg.clone(),
        calibration,
        arms,
        verdict,
        passed,
    })
}
