//! The runner: calibrates capacity, then for each arm and seed starts a fresh server (a child
//! process, pinned to core 0 with `taskset` when there are two cores) and drives it from
//! this process (pinned to core 1) through the scenarios: load points, a step 1× → 3× → 1×,
//! a mid-run doubling of the service time, an 80/20 cheap/expensive mix, two priority
//! classes. Results go to [`crate::report`].
//!
//! **Never:** reuse a server across scenarios (a queue left by one would bias the next), or
//! end a process it did not start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::arms::{self, ArmParams};
use crate::load::{self, LoadRun, LoadSpec, Phase, Probe, Window};
use crate::server::Variant;

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The short subset: 0.5×, 1×, 3× for a few seconds, load points only.
    pub short: bool,
    /// Arms, in report order.
    pub arms: Vec<String>,
    /// Seeds (repeats).
    pub seeds: Vec<u64>,
    /// Where report.md and report.json go.
    pub out: PathBuf,
    /// Server slots (W).
    pub slots: u32,
    /// Mean service time, ms.
    pub service_ms: f64,
    /// CPU work per request, µs.
    pub cpu_us: u64,
    /// Server variant.
    pub variant: Variant,
    /// The `weir-admit-bench` binary (to start servers with `serve`).
    pub exe: PathBuf,
    /// Pin server to core 0 and this process to core 1 (needs `taskset` and 2 cores).
    pub pin: bool,
    /// Client timeout.
    pub timeout: Duration,
    /// Concurrency limit of the static arms; `None`: tuned at 1× (full) or 2W (short).
    pub limit: Option<u32>,
    /// The command line, for the report.
    pub command: String,
    /// Rounds of CPU work per µs for `cpu` servers (measured once by [`run`] when absent).
    pub rounds_per_us: Option<f64>,
}

impl BenchConfig {
    /// Defaults: W = 8, 5 ms, 200 µs CPU, io, seeds 1,2,3, every arm, pinned.
    pub fn new(exe: PathBuf) -> BenchConfig {
        BenchConfig {
            short: false,
            arms: arms::all_arms().iter().map(|s| s.to_string()).collect(),
            seeds: vec![1, 2, 3],
            out: PathBuf::from("target/weir-admit-bench"),
            slots: 8,
            service_ms: 5.0,
            cpu_us: 200,
            variant: Variant::Io,
            exe,
            pin: true,
            timeout: Duration::from_secs(1),
            limit: None,
            command: String::new(),
            rounds_per_us: None,
        }
    }

    fn durations(&self) -> Durations {
        if self.short {
            Durations {
                point: 3.0,
                warm: 1.0,
                calib: 2.0,
                unloaded: 3.0,
                tune: 0.0,
            }
        } else {
            Durations {
                point: 4.0,
                warm: 1.0,
                calib: 4.0,
                unloaded: 6.0,
                tune: 4.0,
            }
        }
    }

    /// Load points, × capacity.
    pub fn points(&self) -> Vec<f64> {
        if self.short {
            vec![0.5, 1.0, 3.0]
        } else {
            vec![0.5, 1.0, 2.0, 3.0, 5.0]
        }
    }
}

struct Durations {
    point: f64,
    warm: f64,
    calib: f64,
    unloaded: f64,
    tune: f64,
}

/// How capacity and the latency bound were found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// W / mean service time (io) or 1 core / mean (cpu), req/s.
    pub theory_rps: f64,
    /// Completions per second the server managed at 1.5× theory behind tower's limit at 4W
    /// (from its `/stats`), req/s.
    pub measured_rps: f64,
    /// The capacity used: the smaller of the two.
    pub capacity_rps: f64,
    /// p99 of `none` at 0.3× capacity, ms.
    pub unloaded_p99_ms: f64,
    /// 2× the unloaded p99, ms: the latency bound and the SLO of goodput.
    pub bound_ms: f64,
    /// The limit of the static arms.
    pub limit: u32,
    /// Limits tried at 1× with `weir-static` and their goodput (% of capacity).
    pub limit_trials: Vec<(u32, f64)>,
    /// How the limit was chosen, in words.
    pub limit_how: String,
}

/// One arm at one load point, one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// Arm.
    pub arm: String,
    /// Seed.
    pub seed: u64,
    /// × capacity.
    pub mult: f64,
    /// After warm-up.
    pub w: Window,
    /// Why discarded, if it was.
    pub discarded: Option<String>,
    /// p99 send lag, ms.
    pub lag_p99_ms: f64,
}

/// The step 1× → 3× → 1×.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Arm.
    pub arm: String,
    /// Seed.
    pub seed: u64,
    /// Seconds from the step up to the start of the first 1-s window with p99 ≤ bound and
    /// goodput ≥ 90% of capacity (`None`: never during the 3× phase).
    pub converge_s: Option<f64>,
    /// Seconds from the step down to the start of the first 1-s window with p99 ≤ bound and
    /// goodput ≥ 90% of the pre-step goodput (`None`: never).
    pub recover_s: Option<f64>,
    /// Per-second rows.
    pub rows: Vec<load::SecondRow>,
    /// Why discarded, if it was.
    pub discarded: Option<String>,
}

/// The service time doubles mid-run at 1× offered (so 2× the new capacity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoublingResult {
    /// Arm.
    pub arm: String,
    /// Seed.
    pub seed: u64,
    /// Before the doubling (after warm-up).
    pub before: Window,
    /// From 1 s after the doubling to the end.
    pub after: Window,
    /// Why discarded, if it was.
    pub discarded: Option<String>,
}

/// 80/20 cheap/expensive at 3×.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixResult {
    /// Arm.
    pub arm: String,
    /// Seed.
    pub seed: u64,
    /// All requests.
    pub all: Window,
    /// `/cheap`.
    pub cheap: Window,
    /// `/expensive`.
    pub expensive: Window,
    /// Why discarded, if it was.
    pub discarded: Option<String>,
}

/// Critical 30% / sheddable 70% at 3×.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// Arm.
    pub arm: String,
    /// Seed.
    pub seed: u64,
    /// Critical requests.
    pub critical: Window,
    /// Sheddable requests.
    pub sheddable: Window,
    /// Why discarded, if it was.
    pub discarded: Option<String>,
}

/// Everything measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// What was run.
    pub config: BenchConfig,
    /// Whether the processes were pinned to cores.
    pub pinned: bool,
    /// Calibration.
    pub calibration: Calibration,
    /// Load points.
    pub points: Vec<PointResult>,
    /// Steps.
    pub steps: Vec<StepResult>,
    /// Doublings.
    pub doublings: Vec<DoublingResult>,
    /// Mixes.
    pub mixes: Vec<MixResult>,
    /// Classes.
    pub classes: Vec<ClassResult>,
    /// Wall-clock length of the run, s.
    pub wall_s: f64,
    /// When the run started (UTC, from `date`).
    #[serde(default)]
    pub date: String,
}

/// A server child process, killed and reaped when dropped.
pub struct ServerProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `taskset` runs here and there are at least two cores.
pub fn can_pin() -> bool {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cores >= 2
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Pins this process (all its threads) to core 1.
/// Pins this process to core 1 (the generator's core).
pub fn pin_self() -> anyhow::Result<()> {
    let st = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "taskset -a -p -c 1 failed: {st}");
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `exe serve` with `arm`, waits for `/healthz`.
pub fn start_server(
    cfg: &BenchConfig,
    pinned: bool,
    arm: &str,
    p: &ArmParams,
    seed: u64,
) -> anyhow::Result<ServerProc> {
    arms::check_arm(arm)?;
    let port = free_port()?;
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&cfg.exe);
        c
    } else {
        Command::new(&cfg.exe)
    };
    cmd.args(["serve", "--port", &port.to_string()])
        .args(["--slots", &cfg.slots.to_string()])
        .args(["--service-ms", &cfg.service_ms.to_string()])
        .args(["--cpu-us", &cfg.cpu_us.to_string()])
        .args([
            "--variant",
            match cfg.variant {
                Variant::Io => "io",
                Variant::Cpu => "cpu",
            },
        ])
        .args(["--arm", arm, "--limit", &p.limit.to_string()])
        .args([
            "--latency-bound-ms",
            &(p.latency_bound.as_secs_f64() * 1000.0).to_string(),
        ])
        .args(["--seed", &seed.to_string(), "--exit-on-stdin-eof"])
        .args(
            cfg.rounds_per_us
                .map(|r| vec!["--rounds-per-us".to_string(), r.to_string()])
                .unwrap_or_default(),
        )
        // The server ends when this process does (its stdin closes), even if killed.
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", cfg.exe.display()))?;
    let mut server = ServerProc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("http://{}/healthz", server.addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = server.child.try_wait()? {
            anyhow::bail!("the server exited at start: {st}");
        }
        if rt.block_on(load::get(&url)).is_ok_and(|(s, _)| s == 200) {
            return Ok(server);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not answer {url} in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spec(
    addr: SocketAddr,
    phases: Vec<Phase>,
    seed: u64,
    slo: Duration,
    timeout: Duration,
) -> LoadSpec {
    LoadSpec {
        addr,
        phases,
        seed,
        expensive_frac: None,
        critical_frac: None,
        slo,
        timeout,
        probes: Vec::new(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A server with `arm`, one load run against it.
fn drive(
    cfg: &BenchConfig,
    pinned: bool,
    arm: &str,
    p: &ArmParams,
    server_seed: u64,
    spec_of: impl FnOnce(SocketAddr) -> LoadSpec,
) -> anyhow::Result<LoadRun> {
    let server = start_server(cfg, pinned, arm, p, server_seed)?;
    let run = load::run_blocking(&spec_of(server.addr))?;
    drop(server);
    Ok(run)
}

/// Finds capacity, the unloaded p99 and the static limit.
pub fn calibrate(cfg: &BenchConfig, pinned: bool) -> anyhow::Result<Calibration> {
    let d = cfg.durations();
    let mean = cfg.service_ms / 1000.0;
    let theory = match cfg.variant {
        Variant::Io => f64::from(cfg.slots) / mean,
        Variant::Cpu => 1.0 / mean,
    };
    let loose = ArmParams {
        limit: cfg.slots,
        slots: cfg.slots,
        latency_bound: cfg.timeout,
    };
    // Saturation throughput: completions per second the server reports under 1.5× theory,
    // behind tower's limit at 4W (the slots stay busy, rejections are cheap): without a
    // limiter the server's core would also pay for thousands of queued connections.
    let rate = 1.5 * theory;
    let sat = ArmParams {
        limit: 4 * cfg.slots,
        ..loose
    };
    let run = drive(cfg, pinned, "tower", &sat, 7, |addr| LoadSpec {
        probes: vec![(d.warm, Probe::Stats), (d.calib, Probe::Stats)],
        ..spec(
            addr,
            vec![Phase {
                secs: d.calib,
                rate,
            }],
            7,
            cfg.timeout,
            cfg.timeout,
        )
    })?;
    let stats: Vec<_> = run.probes.iter().filter_map(|p| p.stats).collect();
    anyhow::ensure!(
        stats.len() == 2,
        "calibration: /stats probes failed: {:?}",
        run.probes
    );
    let measured = (stats[1].completed - stats[0].completed) as f64 / (d.calib - d.warm);
    let capacity = theory.min(measured);

    let run = drive(cfg, pinned, "none", &loose, 8, |addr| {
        spec(
            addr,
            vec![Phase {
                secs: d.unloaded,
                rate: 0.3 * capacity,
            }],
            8,
            cfg.timeout,
            cfg.timeout,
        )
    })?;
    if let Some(why) = &run.discarded {
        eprintln!("calibration (unloaded p99): {why}; using it anyway, the bound may be loose");
    }
    let unloaded = run.window(d.warm, d.unloaded, |_| true);
    anyhow::ensure!(
        unloaded.p99_ms > 0.0,
        "calibration: no successful request at 0.3×"
    );
    let bound = Duration::from_secs_f64(2.0 * unloaded.p99_ms / 1000.0);

    let (limit, trials, how) = match (cfg.limit, cfg.short) {
        (Some(l), _) => (l, Vec::new(), format!("given on the command line ({l})")),
        (None, true) => (
            2 * cfg.slots,
            Vec::new(),
            format!("2W = {} (the short run does not tune)", 2 * cfg.slots),
        ),
        (None, false) => {
            let mut trials = Vec::new();
            let w = cfg.slots;
            for l in [w, w + w / 2, 2 * w, 3 * w] {
                let p = ArmParams {
                    limit: l,
                    slots: w,
                    latency_bound: bound,
                };
                let run = drive(cfg, pinned, "weir-static", &p, 9, |addr| {
                    spec(
                        addr,
                        vec![Phase {
                            secs: d.tune,
                            rate: capacity,
                        }],
                        9,
                        bound,
                        cfg.timeout,
                    )
                })?;
                let g = run.window(d.warm, d.tune, |_| true).goodput() / capacity * 100.0;
                trials.push((l, g));
            }
            let best = trials.iter().fold(
                (w, f64::MIN),
                |b, &(l, g)| if g > b.1 + 0.5 { (l, g) } else { b },
            );
            (
                best.0,
                trials,
                "the limit with the best goodput at 1× among W, 1.5W, 2W, 3W (weir-static; \
                 a smaller limit wins ties within 0.5 points); tower uses the same"
                    .into(),
            )
        }
    };
    Ok(Calibration {
        theory_rps: theory,
        measured_rps: measured,
        capacity_rps: capacity,
        unloaded_p99_ms: unloaded.p99_ms,
        bound_ms: ms(bound),
        limit,
        limit_trials: trials,
        limit_how: how,
    })
}

/// Start of the first 1-s window (sliding by 0.25 s) in `[from, to)` where `good` holds.
fn first_good(run: &LoadRun, from: f64, to: f64, good: impl Fn(&Window) -> bool) -> Option<f64> {
    let mut o = 0.0;
    while from + o + 1.0 <= to + 1e-9 {
        if good(&run.window(from + o, from + o + 1.0, |_| true)) {
            return Some(o);
        }
        o += 0.25;
    }
    None
}

/// Runs everything and writes the report into `cfg.out`.
pub fn run(cfg: &BenchConfig) -> anyhow::Result<Results> {
    for a in &cfg.arms {
        arms::check_arm(a)?;
    }
    anyhow::ensure!(!cfg.seeds.is_empty(), "seeds: at least one");
    let started = Instant::now();
    let pinned = cfg.pin && can_pin();
    if cfg.pin && !pinned {
        eprintln!("not pinning: needs `taskset` (util-linux) and at least 2 cores");
    }
    if pinned {
        pin_self()?;
    }
    // One amount of CPU work for every `cpu` server, measured here on an idle core: a server
    // measuring its own could start while the previous one is still exiting.
    let mut owned = cfg.clone();
    if cfg.variant == Variant::Cpu && cfg.rounds_per_us.is_none() {
        owned.rounds_per_us = Some(crate::server::calibrate_rounds());
    }
    let cfg = &owned;
    let cal = calibrate(cfg, pinned)?;
    eprintln!(
        "capacity {:.0} req/s (theory {:.0}, measured {:.0}); unloaded p99 {:.2} ms, bound {:.2} ms; limit {}",
        cal.capacity_rps,
        cal.theory_rps,
        cal.measured_rps,
        cal.unloaded_p99_ms,
        cal.bound_ms,
        cal.limit
    );
    let d = cfg.durations();
    let cap = cal.capacity_rps;
    let bound = Duration::from_secs_f64(cal.bound_ms / 1000.0);
    let p = ArmParams {
        limit: cal.limit,
        slots: cfg.slots,
        latency_bound: bound,
    };
    let mut res = Results {
        config: cfg.clone(),
        pinned,
        calibration: cal.clone(),
        points: Vec::new(),
        steps: Vec::new(),
        doublings: Vec::new(),
        mixes: Vec::new(),
        classes: Vec::new(),
        wall_s: 0.0,
        date: crate::report::now_utc(),
    };
    let sp = |addr, phases, seed| spec(addr, phases, seed, bound, cfg.timeout);
    for &seed in &cfg.seeds {
        for arm in &cfg.arms {
            for (i, &m) in cfg.points().iter().enumerate() {
                let run = drive(cfg, pinned, arm, &p, seed * 100 + i as u64, |a| {
                    sp(
                        a,
                        vec![Phase {
                            secs: d.point,
                            rate: m * cap,
                        }],
                        seed,
                    )
                })?;
                let w = run.window(d.warm, d.point, |_| true);
                eprintln!(
                    "{arm} seed {seed} {m}x: goodput {:.0}% p99 {:.1} ms reject {:.1}% timeout {:.1}%{}",
                    w.goodput() / cap * 100.0,
                    w.p99_ms,
                    w.reject_pct(),
                    w.timeout_pct(),
                    run.discarded
                        .as_deref()
                        .map(|s| format!(" DISCARDED: {s}"))
                        .unwrap_or_default()
                );
                res.points.push(PointResult {
                    arm: arm.clone(),
                    seed,
                    mult: m,
                    w,
                    discarded: run.discarded.clone(),
                    lag_p99_ms: run.lag.p99_ms,
                });
            }
            if cfg.short {
                continue;
            }
            // Step 1× → 3× → 1×.
            let (s1, s2, s3) = (3.0, 4.0, 4.0);
            let run = drive(cfg, pinned, arm, &p, seed * 100 + 10, |a| {
                sp(
                    a,
                    vec![
                        Phase {
                            secs: s1,
                            rate: cap,
                        },
                        Phase {
                            secs: s2,
                            rate: 3.0 * cap,
                        },
                        Phase {
                            secs: s3,
                            rate: cap,
                        },
                    ],
                    seed,
                )
            })?;
            let pre = run.window(d.warm, s1, |_| true).goodput();
            let converge_s = first_good(&run, s1, s1 + s2, |w| {
                w.p99_ms <= cal.bound_ms && w.goodput() >= 0.9 * cap
            });
            let recover_s = first_good(&run, s1 + s2, s1 + s2 + s3, |w| {
                w.p99_ms <= cal.bound_ms && w.goodput() >= 0.9 * pre
            });
            res.steps.push(StepResult {
                arm: arm.clone(),
                seed,
                converge_s,
                recover_s,
                rows: run.rows(),
                discarded: run.discarded.clone(),
            });
            // Service time doubles mid-run, offered load stays at 1×.
            let (b, a2) = (4.0, 5.0);
            let run = drive(cfg, pinned, arm, &p, seed * 100 + 11, |a| LoadSpec {
                probes: vec![(b, Probe::ServiceFactor(2.0))],
                ..sp(
                    a,
                    vec![Phase {
                        secs: b + a2,
                        rate: cap,
                    }],
                    seed,
                )
            })?;
            res.doublings.push(DoublingResult {
                arm: arm.clone(),
                seed,
                before: run.window(d.warm, b, |_| true),
                after: run.window(b + 1.0, b + a2, |_| true),
                discarded: run.discarded.clone(),
            });
            // 80/20 cheap/expensive at 3×.
            let three = |a| {
                sp(
                    a,
                    vec![Phase {
                        secs: d.point,
                        rate: 3.0 * cap,
                    }],
                    seed,
                )
            };
            let run = drive(cfg, pinned, arm, &p, seed * 100 + 12, |a| LoadSpec {
                expensive_frac: Some(0.2),
                ..three(a)
            })?;
            use load::{Class, Route};
            res.mixes.push(MixResult {
                arm: arm.clone(),
                seed,
                all: run.window(d.warm, d.point, |_| true),
                cheap: run.window(d.warm, d.point, |r| r.route == Route::Cheap),
                expensive: run.window(d.warm, d.point, |r| r.route == Route::Expensive),
                discarded: run.discarded.clone(),
            });
            // Two classes at 3×.
            let run = drive(cfg, pinned, arm, &p, seed * 100 + 13, |a| LoadSpec {
                critical_frac: Some(0.3),
                ..three(a)
            })?;
            res.classes.push(ClassResult {
                arm: arm.clone(),
                seed,
                critical: run.window(d.warm, d.point, |r| r.class == Class::Critical),
                sheddable: run.window(d.warm, d.point, |r| r.class == Class::Sheddable),
                discarded: run.discarded.clone(),
            });
        }
    }
    res.wall_s = started.elapsed().as_secs_f64();
    write(&res, &cfg.out)?;
    Ok(res)
}

/// Writes `report.md` and `report.json` into `out`.
pub fn write(res: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&crate::report::json(res))?,
    )?;
    std::fs::write(out.join("report.md"), crate::report::markdown(res))?;
    Ok(())
}
