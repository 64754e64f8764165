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
}

/// Options of `weir admit proxy`; flags override the file.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// A TOML file: listen, upstream, admin, upstream_timeout_ms, [controller] (kind =
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
    }
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
