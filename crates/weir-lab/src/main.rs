//! `weir-lab`: Weir on real parts. Brings up MariaDB replication (a primary and two
//! replicas), one mysqld_exporter per server, Prometheus and HAProxy on 127.0.0.1; generates
//! load that measures the staleness of every read; injects faults; and runs the experiment
//! that compares static weights with `weir run` under each policy.
//!
//! ```text
//! weir-lab experiment            # the whole comparison on a fresh lab (~10 min; --short ~5)
//! weir-lab up                    # a lab to play with, until Ctrl-C
//! weir-lab load --seconds 30     # against it, from another terminal
//! weir-lab fault stall --seconds 60
//! weir-lab fault cut --replica 1 --seconds 30   # its replication slowed on lo (root)
//! weir-lab campaign              # break Weir's neighbours one at a time (~8 min)
//! weir-lab soak                  # weir run for 2 h under load and stalls, watched from outside
//! weir-lab down                  # stop whatever a lab in --dir left running
//! ```

mod campaign;
mod cluster;
mod experiment;
mod faults;
mod lab;
mod layout;
mod load;
mod metrics;
mod procs;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use weir_policy::PolicyKind;

use crate::experiment::{ExperimentConfig, STATIC_ARM, Script};
use crate::faults::StallKind;
use crate::lab::{Lab, LabOptions};
use crate::layout::{Layout, SERVERS};
use crate::load::{Load, LoadConfig};
use crate::procs::Registry;

/// Weir's lab: real MariaDB replication, mysqld_exporter, Prometheus and HAProxy on
/// 127.0.0.1, a load generator that measures staleness, faults, and the experiment.
#[derive(Debug, Parser)]
#[command(name = "weir-lab", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a lab and keep it running until Ctrl-C/SIGTERM, then stop everything it started.
    Up(UpArgs),
    /// Stop every process a lab in --dir started (after a crash, or from another terminal).
    Down(Where),
    /// List the processes a lab in --dir started and whether each still runs.
    Status(Where),
    /// Run the load generator against a running lab and print what it measured.
    Load(LoadArgs),
    /// Inject a fault into a running lab.
    #[command(subcommand)]
    Fault(FaultCmd),
    /// Bring up a fresh lab, run the script once per arm (static weights, then `weir run`
    /// with each policy), print the comparison table and write it as JSON.
    Experiment(ExperimentArgs),
    /// Bring up a fresh lab, run `weir run` (default policy, enforce mode, learned state saved
    /// every decision) under load, and break its neighbours one at a time: Prometheus
    /// killed, HAProxy restarted, `weir run` itself killed at random moments, the state
    /// directory's disk full, its clock stepped, a replica's replication slowed on the
    /// network. Prints the table and writes it (Markdown and JSON) under <dir>/campaign.
    Campaign(CampaignArgs),
    /// Bring up a fresh lab and run `weir run` under load for hours (--duration, default 2 h)
    /// with replica-1 stalled every --stall-every, sampling its RSS, fds, threads, /metrics
    /// series, disk use and decisions from outside. Writes <dir>/soak/samples.jsonl while it
    /// runs, then the table and verdict (Markdown and JSON) under <dir>/soak.
    Soak(soak::SoakArgs),
}

#[derive(Debug, Args)]
struct CampaignArgs {
    /// Run directory (a fresh lab is made here).
    #[arg(long, default_value_os_t = lab::default_dir().with_file_name("weir-lab-campaign"))]
    dir: PathBuf,
    /// First of the ports on 127.0.0.1 the lab uses.
    #[arg(long, default_value_t = 23500)]
    base_port: u16,
    /// Faults, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "prometheus,haproxy,weir-kill,disk-full,clock-step,replica-cut"
    )]
    faults: Vec<campaign::FaultKind>,
    #[command(flatten)]
    shape: LoadShape,
    /// Weir's control interval, seconds (short: saves are frequent).
    #[arg(long, default_value_t = 1.0)]
    interval_s: f64,
    /// Seed of the moments `weir run` is killed at.
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// How many times `weir run` is killed.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// How long Prometheus stays down, seconds.
    #[arg(long, default_value_t = 20.0)]
    prometheus_down_s: f64,
    /// Steady load before the first fault and after each, seconds.
    #[arg(long, default_value_t = 15.0)]
    settle_s: f64,
    /// How long the state directory stays full, seconds.
    #[arg(long, default_value_t = 10.0)]
    disk_full_s: f64,
    /// The `weir` binary (default: beside this one).
    #[arg(long)]
    weir_bin: Option<PathBuf>,
    /// Exit non-zero if any fault left invalid weights, a torn state file or an incomplete
    /// audit log, or was not safe again within --max-safe-s.
    #[arg(long)]
    check: bool,
    /// See --check: seconds from the neighbour being back to Weir being safe.
    #[arg(long, default_value_t = 20.0)]
    max_safe_s: f64,
}

#[derive(Debug, Clone, Args)]
struct Where {
    /// Run directory (data dirs, configs, logs, the state file).
    #[arg(long, default_value_os_t = lab::default_dir())]
    dir: PathBuf,
    /// First of the ~35 ports on 127.0.0.1 the lab uses.
    #[arg(long, default_value_t = 23300)]
    base_port: u16,
}

impl Where {
    fn layout(&self) -> Result<Layout> {
        Layout::new(&self.dir, self.base_port)
    }
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    at: Where,
    /// Recreate the data directories instead of reusing them.
    #[arg(long)]
    fresh: bool,
}

/// A duration in seconds from the command line: a finite number above zero (a negative or NaN
/// duration is refused here instead of panicking in `Duration::from_secs_f64`).
fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 1e9 {
        Ok(v)
    } else {
        Err(format!(
            "{s:?}: the duration must be a finite number of seconds above 0"
        ))
    }
}

#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    at: Where,
    /// How long, seconds.
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    seconds: f64,
    #[command(flatten)]
    shape: LoadShape,
}

#[derive(Debug, Clone, Args)]
struct LoadShape {
    /// Reads per second through HAProxy.
    #[arg(long, default_value_t = 300.0)]
    read_rate: f64,
    /// Writes per second on the primary.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// Concurrent reader connections.
    #[arg(long, default_value_t = 8)]
    readers: usize,
    /// Reader connections are replaced after this long, ms (so new weights take effect).
    #[arg(long, default_value_t = 1000)]
    conn_lifetime_ms: u64,
    /// Rows each read aggregates (its cost).
    #[arg(long, default_value_t = 1000)]
    read_rows: u32,
    /// A read older than this is stale, seconds.
    #[arg(long, default_value_t = 2.0)]
    max_staleness_s: f64,
}

impl LoadShape {
    /// The settings of a session with one `weir run` (the default policy) under this load:
    /// the fault campaign's and the soak's.
    fn weir_under_load(&self, interval_s: f64, weir_bin: PathBuf) -> ExperimentConfig {
        ExperimentConfig {
            arms: vec![campaign::POLICY.as_str().to_string()],
            script: Script::SHORT,
            stall: StallKind::Ftwrl,
            read_rate: self.read_rate,
            write_rate: self.write_rate,
            readers: self.readers,
            conn_lifetime_ms: self.conn_lifetime_ms,
            read_rows: self.read_rows,
            max_staleness_s: self.max_staleness_s,
            interval_s,
            primary_capacity_share: 0.5,
            primary_cpu_max: 0.85,
            weir_bin,
            model: None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum FaultCmd {
    /// Stall a replica's apply for a while, then release it.
    Stall {
        #[command(flatten)]
        at: Where,
        /// Replica number (1 or 2).
        #[arg(long, default_value_t = 1)]
        replica: usize,
        /// How.
        #[arg(long, value_enum, default_value = "ftwrl")]
        kind: StallKind,
        /// For how long, seconds.
        #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
        seconds: f64,
    },
    /// Kill a replica's mariadbd with SIGKILL.
    Kill {
        #[command(flatten)]
        at: Where,
        /// Replica number (1 or 2).
        #[arg(long, default_value_t = 2)]
        replica: usize,
    },
    /// Start a killed replica again (replication resumes from its GTID position).
    Restart {
        #[command(flatten)]
        at: Where,
        /// Replica number (1 or 2).
        #[arg(long, default_value_t = 2)]
        replica: usize,
    },
    /// Load the primary's CPU with BENCHMARK() sessions.
    Cpu {
        #[command(flatten)]
        at: Where,
        /// Sessions.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// For how long, seconds.
        #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
        seconds: f64,
    },
    /// Slow one replica's replication stream on the network (tc on lo; root), print its lag
    /// every second, then remove the cut.
    Cut {
        #[command(flatten)]
        at: Where,
        /// Replica number (1 or 2).
        #[arg(long, default_value_t = faults::CAMPAIGN_CUT.replica)]
        replica: usize,
        /// Delay added to each packet, each direction, ms (needs the kernel's netem).
        #[arg(long, default_value_t = faults::CAMPAIGN_CUT.delay_ms)]
        delay_ms: u32,
        /// Packets lost, each direction, percent (needs the kernel's netem).
        #[arg(long, default_value_t = faults::CAMPAIGN_CUT.loss_pct)]
        loss_pct: f64,
        /// Bandwidth of the stream, kbit/s (0: not limited) [default: the campaign's, unless a
        /// delay or a loss is given]
        #[arg(long)]
        rate_kbit: Option<u32>,
        /// For how long, seconds.
        #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
        seconds: f64,
        /// The staleness SLO the lag is followed back under afterwards, seconds.
        #[arg(long, default_value_t = 2.0)]
        max_staleness_s: f64,
    },
}

#[derive(Debug, Args)]
struct ExperimentArgs {
    /// Run directory (a fresh lab is made here).
    #[arg(long, default_value_os_t = lab::default_dir().with_file_name("weir-lab-experiment"))]
    dir: PathBuf,
    /// First of the ports on 127.0.0.1 the lab uses.
    #[arg(long, default_value_t = 23400)]
    base_port: u16,
    /// The CI version: shorter phases (~80 s per arm instead of ~3 min).
    #[arg(long)]
    short: bool,
    /// Arms, in order: `static` (fixed weights, no Weir) and policy kinds for `weir run`.
    #[arg(long, value_delimiter = ',', default_value = "static,shun,dqn")]
    arms: Vec<String>,
    /// How replica-1 is stalled.
    #[arg(long, value_enum, default_value = "ftwrl")]
    stall: StallKind,
    #[command(flatten)]
    shape: LoadShape,
    /// Weir's control interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    interval_s: f64,
    /// Share of the read load the primary is sized for (sets its CPU budget).
    #[arg(long, default_value_t = 0.5)]
    primary_capacity_share: f64,
    /// The primary's CPU cap, as a fraction of its budget.
    #[arg(long, default_value_t = 0.85)]
    primary_cpu_max: f64,
    /// The `weir` binary (default: beside this one).
    #[arg(long)]
    weir_bin: Option<PathBuf>,
    /// Model file for the learned arm (default: the model shipped in the weir binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the table here as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Exit non-zero unless: static weights served stale reads in the stall; a learned arm
    /// ran, cut the stall's stale reads to at most --max-ratio of static's, stayed within the
    /// primary's CPU cap (--max-over-cap-s) and returned reads to the released replica within
    /// --max-return-intervals; and no Weir arm failed a read before the kill.
    #[arg(long)]
    check: bool,
    /// See --check.
    #[arg(long, default_value_t = 0.10)]
    max_ratio: f64,
    /// See --check: seconds over the CPU cap tolerated (one 2-s CPU sample by default).
    #[arg(long, default_value_t = 2.0)]
    max_over_cap_s: f64,
    /// See --check: control intervals (plus one heartbeat second) for the return.
    #[arg(long, default_value_t = 2.0)]
    max_return_intervals: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Up(a) => up(a).await,
        Cmd::Down(w) => {
            let mut reg = Registry::open(&w.layout()?.state_file())?;
            let stopped = reg.stop_all(Duration::from_secs(10))?;
            println!(
                "stopped {} process(es): {}",
                stopped.len(),
                stopped.join(", ")
            );
            if faults::clear_cut(&w.layout()?)? {
                println!("removed the lab's network cut from lo");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status(w) => {
            let reg = Registry::open(&w.layout()?.state_file())?;
            if reg.tracked().is_empty() {
                println!("no lab recorded in {}", w.dir.display());
            }
            for t in reg.tracked() {
                let state = if procs::is_alive(t) {
                    "running"
                } else {
                    "gone"
                };
                println!("{:<28} pid {:<8} {state}", t.name, t.pid);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Load(a) => load_cmd(a).await,
        Cmd::Fault(f) => fault(f).await,
        Cmd::Experiment(a) => experiment_cmd(a).await,
        Cmd::Campaign(a) => campaign_cmd(a).await,
        Cmd::Soak(a) => soak::command(a).await,
    }
}

fn weir_beside_me(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("weir"))
            .context("no directory for the weir binary"),
    }
}

async fn campaign_cmd(a: CampaignArgs) -> Result<ExitCode> {
    let layout = Layout::new(&a.dir, a.base_port)?;
    let cfg = campaign::CampaignConfig {
        faults: a.faults,
        base: a
            .shape
            .weir_under_load(a.interval_s, weir_beside_me(a.weir_bin)?),
        seed: a.seed,
        kills: a.kills,
        prometheus_down_s: a.prometheus_down_s,
        settle_s: a.settle_s,
        disk_full_s: a.disk_full_s,
        max_safe_s: a.max_safe_s,
    };
    let started = std::time::Instant::now();
    let mut lab = Lab::up(layout.clone(), &LabOptions::default(), true).await?;
    eprintln!("lab: up in {:.1} s", started.elapsed().as_secs_f64());
    let report = campaign::run(&mut lab, &cfg).await;
    let stopped = lab.down()?;
    eprintln!("lab: stopped {} process(es)", stopped.len());
    let report = report?;
    let table = campaign::table(&report.faults);
    println!("{table}");
    for line in &report.verdict {
        println!("{line}");
    }
    println!(
        "(reads and stale reads: in each fault's window, of {} reads/s; stale = staleness over {} s; time to safe from the neighbour being back; audit log: {} lines, {} decisions; total {:.0} s)",
        a.shape.read_rate,
        a.shape.max_staleness_s,
        report.audit_lines,
        report.audit_decisions,
        started.elapsed().as_secs_f64()
    );
    let out = layout.path("campaign");
    procs::write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    procs::write_atomic(&out.join("table.md"), table.as_bytes())?;
    println!("wrote {0}/report.json and {0}/table.md", out.display());
    Ok(if a.check && !report.passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn up(a: UpArgs) -> Result<ExitCode> {
    let layout = a.at.layout()?;
    let lab = Lab::up(layout.clone(), &LabOptions::default(), a.fresh).await?;
    println!("lab is up in {} (Ctrl-C stops it):", layout.dir.display());
    for (what, port) in layout.ports() {
        println!("  {what:<26} 127.0.0.1:{port}");
    }
    println!(
        "  mysql -h127.0.0.1 -P{} -ulab -plab lab      # reads through HAProxy",
        layout.haproxy_read_port()
    );
    println!(
        "  weir run: point [prometheus] url at http://127.0.0.1:{} and [actuator] address at tcp://127.0.0.1:{}",
        layout.prometheus_port(),
        layout.haproxy_admin_port()
    );
    // Until Ctrl-C/SIGTERM, or until `weir-lab down` from another terminal removed the state
    // file (then the children are gone and only need reaping).
    let state = layout.state_file();
    tokio::select! {
        r = wait_for_signal() => r?,
        _ = async {
            while state.exists() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } => println!("the lab was stopped by `weir-lab down`"),
    }
    let stopped = lab.down()?;
    println!("stopped {} process(es)", stopped.len());
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn load_config(layout: &Layout, s: &LoadShape) -> LoadConfig {
    LoadConfig {
        read_port: layout.haproxy_read_port(),
        primary_port: layout.mysql_port(0),
        read_rate: s.read_rate,
        write_rate: s.write_rate,
        readers: s.readers,
        conn_lifetime: Duration::from_millis(s.conn_lifetime_ms),
        read_rows: s.read_rows,
        slo_staleness_s: s.max_staleness_s,
        read_timeout: Duration::from_secs(2),
    }
}

async fn load_cmd(a: LoadArgs) -> Result<ExitCode> {
    let layout = a.at.layout()?;
    let load = Load::start(
        load_config(&layout, &a.shape),
        1,
        metrics::LabMetrics::new(),
    )
    .await
    .context("is the lab up? (`weir-lab up`)")?;
    tokio::time::sleep(Duration::from_secs_f64(a.seconds.max(1.0))).await;
    let report = load.stop().await;
    let p = &report.phases[0];
    println!(
        "reads {} ({:.1}/s), stale {:.2}% (max staleness {:.2} s), failed {} {:?}, p50 {} ms, p99 {} ms, writes {} (failed {})",
        p.reads,
        p.reads as f64 / a.seconds,
        p.stale_pct(),
        p.max_staleness_s,
        p.errors,
        p.error_kinds,
        p.latency_ms(0.5)
            .map(|v| format!("{v:.2}"))
            .unwrap_or_default(),
        p.latency_ms(0.99)
            .map(|v| format!("{v:.2}"))
            .unwrap_or_default(),
        p.writes,
        p.write_errors
    );
    for (server, r) in &p.by_server {
        println!("  {server:<10} {:>7} reads, {:>6} stale", r.reads, r.stale);
    }
    Ok(ExitCode::SUCCESS)
}

fn replica_index(replica: usize) -> Result<usize> {
    if !(1..SERVERS.len()).contains(&replica) {
        bail!("--replica {replica}: must be 1 or 2");
    }
    Ok(replica)
}

async fn fault(f: FaultCmd) -> Result<ExitCode> {
    match f {
        FaultCmd::Stall {
            at,
            replica,
            kind,
            seconds,
        } => {
            let i = replica_index(replica)?;
            let layout = at.layout()?;
            let stall = faults::Stall::start(layout.mysql_port(i), kind).await?;
            println!("{} stalled ({kind:?}) for {seconds} s", SERVERS[i]);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
                r = wait_for_signal() => r?,
            }
            stall.end().await?;
            println!("{} released", SERVERS[i]);
        }
        FaultCmd::Kill { at, replica } => {
            let i = replica_index(replica)?;
            let mut reg = Registry::open(&at.layout()?.state_file())?;
            let name = format!("mariadb {}", SERVERS[i]);
            let Some(t) = reg
                .tracked()
                .iter()
                .find(|t| t.name == name && procs::is_alive(t))
                .cloned()
            else {
                bail!("{name} is not running in the lab at {}", at.dir.display());
            };
            procs::crash(t.pid)?;
            reg.forget(t.pid)?;
            println!("{name} (pid {}) killed", t.pid);
        }
        FaultCmd::Restart { at, replica } => {
            let i = replica_index(replica)?;
            let layout = at.layout()?;
            let mut reg = Registry::open(&layout.state_file())?;
            let name = format!("mariadb {}", SERVERS[i]);
            if reg
                .tracked()
                .iter()
                .any(|t| t.name == name && procs::is_alive(t))
            {
                bail!("{name} is already running");
            }
            let mut cmd = cluster::mariadbd(&layout, i)?;
            let log = layout.path(format!("{}/mariadbd.out", SERVERS[i]));
            let child = reg.spawn(&name, &mut cmd, &log)?;
            cluster::wait_ready(
                layout.mysql_port(i),
                Duration::from_secs(60),
                &layout.path(format!("{}/error.log", SERVERS[i])),
            )
            .await?;
            println!("{name} (pid {}) started", child.id());
        }
        FaultCmd::Cpu {
            at,
            sessions,
            seconds,
        } => {
            let layout = at.layout()?;
            println!("loading the primary with {sessions} BENCHMARK() session(s) for {seconds} s");
            faults::cpu_burn(
                layout.mysql_port(0),
                sessions,
                Duration::from_secs_f64(seconds),
            )
            .await?;
        }
        FaultCmd::Cut {
            at,
            replica,
            delay_ms,
            loss_pct,
            rate_kbit,
            seconds,
            max_staleness_s,
        } => {
            let netem_asked = delay_ms > 0 || loss_pct > 0.0;
            let spec = faults::CutSpec {
                replica: replica_index(replica)?,
                delay_ms,
                loss_pct,
                rate_kbit: rate_kbit.unwrap_or(if netem_asked {
                    0
                } else {
                    faults::CAMPAIGN_CUT.rate_kbit
                }),
            };
            let duration = Duration::from_secs_f64(seconds.max(0.0));
            faults::cut_cli(
                &at.layout()?,
                &spec,
                duration,
                max_staleness_s,
                wait_for_signal(),
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn experiment_cmd(a: ExperimentArgs) -> Result<ExitCode> {
    for arm in &a.arms {
        if arm != STATIC_ARM && !PolicyKind::parse(arm).is_ok_and(|k| k != PolicyKind::Static) {
            let policies: Vec<&str> = PolicyKind::ALL
                .iter()
                .filter(|k| **k != PolicyKind::Static)
                .map(|k| k.as_str())
                .collect();
            bail!(
                "--arms: unknown arm `{arm}` ({STATIC_ARM}, or a policy for `weir run`: {})",
                policies.join(", ")
            );
        }
    }
    let layout = Layout::new(&a.dir, a.base_port)?;
    let weir_bin = weir_beside_me(a.weir_bin)?;
    let model = match &a.model {
        Some(m) => {
            let m = std::path::absolute(m)?;
            let mut learned: Vec<PolicyKind> = a
                .arms
                .iter()
                .filter_map(|arm| PolicyKind::parse(arm).ok())
                .filter(|k| k.needs_model())
                .collect();
            learned.dedup();
            if learned.len() > 1 {
                bail!("--model names one model file: run one kind of learned arm with it");
            }
            if !m.is_file() {
                bail!("--model {}: not found", m.display());
            }
            Some(m)
        }
        None => None,
    };
    let cfg = ExperimentConfig {
        arms: a.arms,
        script: if a.short { Script::SHORT } else { Script::FULL },
        stall: a.stall,
        read_rate: a.shape.read_rate,
        write_rate: a.shape.write_rate,
        readers: a.shape.readers,
        conn_lifetime_ms: a.shape.conn_lifetime_ms,
        read_rows: a.shape.read_rows,
        max_staleness_s: a.shape.max_staleness_s,
        interval_s: a.interval_s,
        primary_capacity_share: a.primary_capacity_share,
        primary_cpu_max: a.primary_cpu_max,
        weir_bin,
        model,
    };
    let started = std::time::Instant::now();
    let mut lab = Lab::up(layout, &LabOptions::default(), true).await?;
    eprintln!("lab: up in {:.1} s", started.elapsed().as_secs_f64());
    let gates = experiment::Gates {
        max_ratio: a.max_ratio,
        max_over_cap_s: a.max_over_cap_s,
        max_return_s: a.max_return_intervals * cfg.interval_s + 1.0,
    };
    let report = experiment::run(&mut lab, &cfg, &gates).await;
    let stopped = lab.down()?;
    eprintln!("lab: stopped {} process(es)", stopped.len());
    let report = report?;
    let table = experiment::table(&report);
    println!("{table}");
    for line in &report.verdict {
        println!("{line}");
    }
    println!(
        "(stale = staleness over {} s; primary CPU as a share of its budget of {:.3} cores; total {:.0} s)",
        cfg.max_staleness_s,
        report.calibration.budget_cores,
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = &a.json {
        procs::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &a.markdown {
        procs::write_atomic(p, table.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(if a.check && !report.passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_or_nan_duration_is_refused_by_name() {
        for cmd in [
            vec!["weir-lab", "fault", "stall", "--seconds=-5"],
            vec!["weir-lab", "fault", "cpu", "--seconds", "NaN"],
            vec!["weir-lab", "fault", "cut", "--seconds", "0"],
            vec!["weir-lab", "load", "--seconds", "inf"],
        ] {
            let err = Cli::try_parse_from(&cmd).expect_err("refused").to_string();
            assert!(err.contains("--seconds"), "{cmd:?}: {err}");
        }
        let ok = Cli::try_parse_from(["weir-lab", "fault", "stall", "--seconds", "2.5"]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
