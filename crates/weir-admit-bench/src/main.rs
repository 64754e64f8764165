//! `weir-admit-bench`: `serve` (the server under test), `load` (one open-loop run, per-second
//! rows to stdout) and `run` (the whole benchmark, report into `--out`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weir_admit_bench::arms::{self, ArmParams};
use weir_admit_bench::load::{self, LoadSpec, Phase};
use weir_admit_bench::runner::{self, BenchConfig};
use weir_admit_bench::server::{self, ServerConfig, Variant};

#[derive(Parser)]
#[command(about = "The benchmark of Weir's admission control (issue 15)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The server's shape (W slots, service time, CPU work, variant).
#[derive(clap::Args)]
struct Shape {
    /// Concurrent slots (W).
    #[arg(long, default_value_t = 8)]
    slots: u32,
    /// Mean service time of /work, ms.
    #[arg(long, default_value_t = 5.0)]
    service_ms: f64,
    /// CPU work per request, µs (io variant).
    #[arg(long, default_value_t = 200)]
    cpu_us: u64,
    #[arg(long, value_enum, default_value_t = Variant::Io)]
    variant: Variant,
}

impl Shape {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.slots > 0, "slots = 0: must be at least 1");
        anyhow::ensure!(
            self.service_ms > 0.0 && self.service_ms.is_finite(),
            "service-ms = {}: must be > 0",
            self.service_ms
        );
        Ok(())
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// The server under test, on 127.0.0.1.
    Serve {
        #[arg(long)]
        port: u16,
        #[command(flatten)]
        shape: Shape,
        /// Admission arm.
        #[arg(long, default_value = "none")]
        arm: String,
        /// Concurrency limit of the static arms (start of the adaptive ones).
        #[arg(long, default_value_t = 16)]
        limit: u32,
        /// Latency bound for controllers that take one (AIMD's threshold), ms.
        #[arg(long, default_value_t = 50.0)]
        latency_bound_ms: f64,
        /// Seed of the service-time RNG.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Lognormal sigma of the service time.
        #[arg(long, default_value_t = 0.5)]
        sigma: f64,
        /// Double the service time this many seconds after start.
        #[arg(long)]
        double_after_s: Option<f64>,
        /// Server worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Exit when stdin closes (the runner's way to never leave a server behind).
        #[arg(long)]
        exit_on_stdin_eof: bool,
        /// Rounds of CPU work per µs (`cpu` variant; measured at start when absent).
        #[arg(long)]
        rounds_per_us: Option<f64>,
    },
    /// One open-loop load run; prints per-second rows and totals.
    Load {
        /// Server address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        addr: SocketAddr,
        /// Offered rate, req/s.
        #[arg(long)]
        rate: f64,
        /// Length, s.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Answers within this are good, ms.
        #[arg(long, default_value_t = 50.0)]
        slo_ms: f64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Fraction sent to /expensive (rest /cheap); all /work if absent.
        #[arg(long)]
        expensive_frac: Option<f64>,
        /// Fraction marked critical (rest sheddable); unmarked if absent.
        #[arg(long)]
        critical_frac: Option<f64>,
    },
    /// One load point measured by our generator and by `oha`, each against a fresh server.
    Crosscheck {
        /// The `oha` binary (how to install it: the crate README, "Commands").
        #[arg(long, default_value = "target/tools/bin/oha")]
        oha: PathBuf,
        /// Offered rate, req/s (3× capacity is about 3,900 on the reference machine).
        #[arg(long)]
        rate: f64,
        /// Length of each run, s.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Admission arm of the server.
        #[arg(long, default_value = "weir-static")]
        arm: String,
        /// Concurrency limit of the static arms.
        #[arg(long, default_value_t = 24)]
        limit: u32,
        /// oha's connections (enough that the rate never waits for one).
        #[arg(long, default_value_t = 256)]
        connections: u32,
        #[command(flatten)]
        shape: Shape,
        /// Do not pin to cores.
        #[arg(long)]
        no_pin: bool,
    },
    /// Writes report.md again from a report.json (e.g. after changing the report).
    Report {
        /// The report.json.
        #[arg(long)]
        json: PathBuf,
        /// Where report.md (and report.json) go; the json's folder if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The benchmark: calibration, every arm and seed, report.md + report.json.
    Run {
        /// The smoke subset: 0.5×, 1×, 3×, 1 seed, arms none + weir-static.
        #[arg(long)]
        short: bool,
        /// Arms, comma-separated.
        #[arg(long, value_delimiter = ',')]
        arms: Option<Vec<String>>,
        /// Seeds, comma-separated.
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        #[arg(long, default_value = "target/weir-admit-bench")]
        out: PathBuf,
        #[command(flatten)]
        shape: Shape,
        /// Static limit; tuned at 1× when absent.
        #[arg(long)]
        limit: Option<u32>,
        /// Do not pin to cores.
        #[arg(long)]
        no_pin: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve {
            port,
            shape,
            arm,
            limit,
            latency_bound_ms,
            seed,
            sigma,
            double_after_s,
            threads,
            exit_on_stdin_eof,
            rounds_per_us,
        } => {
            if exit_on_stdin_eof {
                std::thread::spawn(|| {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    std::process::exit(0);
                });
            }
            arms::check_arm(&arm)?;
            shape.check()?;
            anyhow::ensure!(
                latency_bound_ms > 0.0 && latency_bound_ms.is_finite(),
                "latency-bound-ms = {latency_bound_ms}: must be > 0"
            );
            anyhow::ensure!(
                (0.0..=3.0).contains(&sigma),
                "sigma = {sigma}: must be in 0..=3"
            );
            anyhow::ensure!(threads > 0, "threads = 0: must be at least 1");
            let cfg = ServerConfig {
                slots: shape.slots,
                service: Duration::from_secs_f64(shape.service_ms / 1000.0),
                cpu: Duration::from_micros(shape.cpu_us),
                variant: shape.variant,
                seed,
                sigma,
                rounds_per_us,
            };
            let p = ArmParams {
                limit,
                slots: shape.slots,
                latency_bound: Duration::from_secs_f64(latency_bound_ms / 1000.0),
            };
            let double = match double_after_s {
                Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
                Some(s) => anyhow::bail!("double-after-s = {s}: must be ≥ 0"),
                None => None,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
                .block_on(server::serve(
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    cfg,
                    &arm,
                    &p,
                    double,
                ))
        }
        Cmd::Load {
            addr,
            rate,
            secs,
            seed,
            slo_ms,
            timeout_ms,
            expensive_frac,
            critical_frac,
        } => {
            anyhow::ensure!(
                slo_ms > 0.0 && slo_ms.is_finite(),
                "slo-ms = {slo_ms}: must be > 0"
            );
            for (name, f) in [
                ("expensive-frac", expensive_frac),
                ("critical-frac", critical_frac),
            ] {
                if let Some(f) = f {
                    anyhow::ensure!((0.0..=1.0).contains(&f), "{name} = {f}: must be in 0..=1");
                }
            }
            let spec = LoadSpec {
                addr,
                phases: vec![Phase { secs, rate }],
                seed,
                expensive_frac,
                critical_frac,
                slo: Duration::from_secs_f64(slo_ms / 1000.0),
                timeout: Duration::from_millis(timeout_ms),
                probes: Vec::new(),
            };
            let run = load::run_blocking(&spec)?;
            println!("second offered ok_in_slo ok_late rejected timed_out errors p99_ms");
            for r in run.rows() {
                let w = r.w;
                println!(
                    "{:>6} {:>7} {:>9} {:>7} {:>8} {:>9} {:>6} {:>6.1}",
                    r.second,
                    w.offered,
                    w.ok_in_slo,
                    w.ok_late,
                    w.rejected,
                    w.timed_out,
                    w.errors,
                    w.p99_ms
                );
            }
            let w = run.window(0.0, run.secs, |_| true);
            println!(
                "total: offered {} goodput {:.0}/s p50 {:.2} ms p99 {:.2} ms max {:.1} ms reject {:.1}% timeout {:.1}% errors {:.1}%",
                w.offered,
                w.goodput(),
                w.p50_ms,
                w.p99_ms,
                w.max_ms,
                w.reject_pct(),
                w.timeout_pct(),
                w.error_pct()
            );
            if critical_frac.is_some() {
                for class in [load::Class::Critical, load::Class::Sheddable] {
                    let w = run.window(0.0, run.secs, |r| r.class == class);
                    println!(
                        "{class:?}: offered {} served in SLO {:.1}% rejected {:.1}% p99 {:.2} ms",
                        w.offered,
                        100.0 * w.ok_in_slo as f64 / w.offered.max(1) as f64,
                        w.reject_pct(),
                        w.p99_ms
                    );
                }
            }
            println!(
                "send lag: p50 {:.2} ms p99 {:.2} ms max {:.1} ms{}",
                run.lag.p50_ms,
                run.lag.p99_ms,
                run.lag.max_ms,
                run.discarded
                    .map(|d| format!(" — DISCARDED: {d}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Report { json, out } => {
            let v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&json).map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?,
            )?;
            let res: runner::Results = serde_json::from_value(v["results"].clone())
                .map_err(|e| anyhow::anyhow!("{}: not a report.json: {e}", json.display()))?;
            let out = out
                .or_else(|| json.parent().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("."));
            runner::write(&res, &out)?;
            eprintln!("wrote {}", out.join("report.md").display());
            Ok(())
        }
        Cmd::Crosscheck {
            oha,
            rate,
            secs,
            arm,
            limit,
            connections,
            shape,
            no_pin,
        } => {
            shape.check()?;
            arms::check_arm(&arm)?;
            anyhow::ensure!(rate > 0.0 && rate.is_finite(), "rate = {rate}: must be > 0");
            anyhow::ensure!(secs > 0.0 && secs.is_finite(), "secs = {secs}: must be > 0");
            anyhow::ensure!(limit > 0, "limit = 0: must be at least 1");
            anyhow::ensure!(connections > 0, "connections = 0: must be at least 1");
            anyhow::ensure!(
                oha.exists(),
                "{}: no oha there (install it: cargo install oha --locked --no-default-features --features native-tls --root target/tools)",
                oha.display()
            );
            let mut cfg = BenchConfig::new(std::env::current_exe()?);
            cfg.slots = shape.slots;
            cfg.service_ms = shape.service_ms;
            cfg.cpu_us = shape.cpu_us;
            cfg.variant = shape.variant;
            let pinned = !no_pin && runner::can_pin();
            if pinned {
                runner::pin_self()?;
            }
            let p = ArmParams {
                limit,
                slots: shape.slots,
                latency_bound: Duration::from_millis(50),
            };
            let server = runner::start_server(&cfg, pinned, &arm, &p, 1)?;
            let run = load::run_blocking(&LoadSpec {
                addr: server.addr,
                phases: vec![Phase { secs, rate }],
                seed: 1,
                expensive_frac: None,
                critical_frac: None,
                slo: Duration::from_millis(50),
                timeout: cfg.timeout,
                probes: Vec::new(),
            })?;
            drop(server);
            if let Some(why) = &run.discarded {
                eprintln!("warning: our generator fell behind ({why}): its row is indicative only");
            }
            let server = runner::start_server(&cfg, pinned, &arm, &p, 1)?;
            let url = format!("http://{}/work", server.addr);
            let theirs =
                weir_admit_bench::crosscheck::run_oha(&oha, &url, rate, secs, connections, pinned)?;
            drop(server);
            let ours = weir_admit_bench::crosscheck::ours(&run);
            print!(
                "{}",
                weir_admit_bench::crosscheck::render(rate, secs, &arm, &theirs, &ours)
            );
            Ok(())
        }
        Cmd::Run {
            short,
            arms: arm_list,
            seeds,
            out,
            shape,
            limit,
            no_pin,
        } => {
            shape.check()?;
            if limit == Some(0) {
                anyhow::bail!("limit = 0: must be at least 1");
            }
            let mut cfg = BenchConfig::new(std::env::current_exe()?);
            cfg.short = short;
            if short {
                cfg.arms = vec!["none".into(), "weir-static".into()];
                cfg.seeds = vec![1];
            }
            if let Some(a) = arm_list {
                cfg.arms = a;
            }
            if let Some(s) = seeds {
                cfg.seeds = s;
            }
            cfg.out = out;
            cfg.slots = shape.slots;
            cfg.service_ms = shape.service_ms;
            cfg.cpu_us = shape.cpu_us;
            cfg.variant = shape.variant;
            cfg.limit = limit;
            cfg.pin = !no_pin;
            cfg.command = std::env::args().collect::<Vec<_>>().join(" ");
            let res = runner::run(&cfg)?;
            eprintln!(
                "wrote {} and {} ({:.0} s)",
                cfg.out.join("report.md").display(),
                cfg.out.join("report.json").display(),
                res.wall_s
            );
            Ok(())
        }
    }
}
