//! `weir admit …`: the admission-control sidecar (`weir_admit_proxy::serve_until`), stopped
//! by Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use weir_admit_proxy::{Proxy, ProxyConfig};

/// `weir admit …`.
#[derive(Debug, Subcommand)]
pub enum AdmitCommand {
    /// A reverse proxy with the admission layer in front of a service not written in Rust:
    /// requests over the limit get 429 (or gRPC RESOURCE_EXHAUSTED) at once; /metrics,
    /// /explain and /healthz on --admin.
    Proxy(ProxyArgs),
    /// Train the `qlearn` admission table in the queueing simulator (domain-randomised
    /// servers and loads) and write it atomically; deterministic for a seed. Serve it with
    /// `[controller] kind = "qlearn"`, `table = FILE`.
    Train(TrainArgs),
}

/// Options of `weir admit train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Where the table goes (JSON, versioned; replaced atomically).
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Training episodes (the shipped table: the default).
    #[arg(long)]
    pub episodes: Option<u32>,
    /// Master seed (the shipped table: the default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print a progress line every N episodes.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u32).range(1..))]
    pub progress_every: u32,
}

/// Options of `weir admit proxy`; flags override the file.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// A TOML file: listen, upstream, admin, upstream_timeout_ms, max_body_bytes,
    /// max_connections, header_timeout_ms, [controller] (kind =
    /// "static" | "bbr" | …, and its fields), [admit] (reject_status, retry_after_s,
    /// exempt_paths, criticality_header, class_shares, partitions). See docs/admit.md.
    #[arg(long, value_name = "FILE", env = "WEIR_ADMIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where clients connect (default 127.0.0.1:8080).
    #[arg(long, env = "WEIR_ADMIT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The service behind the proxy: http://HOST:PORT.
    #[arg(long, env = "WEIR_ADMIT_UPSTREAM")]
    pub upstream: Option<String>,
    /// /metrics, /explain and /healthz (default 127.0.0.1:9466).
    #[arg(long, env = "WEIR_ADMIT_ADMIN")]
    pub admin: Option<SocketAddr>,
}

pub fn run(cmd: AdmitCommand) -> Result<()> {
    match cmd {
        AdmitCommand::Proxy(args) => proxy(args),
        AdmitCommand::Train(args) => train(args),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let mut config = weir_admit::qlearn::TrainConfig::default();
    if let Some(n) = args.episodes {
        config.episodes = n;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    let started = std::time::Instant::now();
    let (mut sum, mut n) = (0.0, 0u32);
    let table = weir_admit::qlearn::train(&config, &mut |p| {
        sum += p.goodput_share;
        n += 1;
        if p.episode % args.progress_every == 0 || p.episode == p.episodes {
            eprintln!(
                "episode {:>6}/{}  {:>3.0}%  states {:>5}  goodput/capacity (recent) {:.3}  {:.0} s",
                p.episode,
                p.episodes,
                100.0 * f64::from(p.episode) / f64::from(p.episodes.max(1)),
                p.visited_states,
                sum / f64::from(n.max(1)),
                started.elapsed().as_secs_f64()
            );
            (sum, n) = (0.0, 0);
        }
    })
    .context("training settings")?;
    table
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} (seed {}, {} episodes, {} states visited) in {:.0} s",
        args.out.display(),
        config.seed,
        config.episodes,
        table.visited_states(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn proxy(args: ProxyArgs) -> Result<()> {
    let (mut config, source) = match &args.config {
        Some(path) => (ProxyConfig::load(path)?, path.clone()),
        None => (ProxyConfig::default(), PathBuf::from("<command line>")),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(u) = args.upstream {
        config.upstream = u;
    }
    if let Some(a) = args.admin {
        config.admin = a;
    }
    let built = Proxy::build(&config, Path::new(&source))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let admin = tokio::net::TcpListener::bind(config.admin)
            .await
            .with_context(|| format!("admin address {}", config.admin))?;
        weir_admit_proxy::serve_until(built, listener, admin, crate::run::termination())
            .await
            .context("serving")
    })?;
    tracing::info!("weir admit proxy: stopped");
    Ok(())
}
