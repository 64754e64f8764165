//! `weir ratelimit`: the global rate-limit service Envoy calls, `weir_ratelimit::serve_until`
//! with its options, stopped by Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use weir_ratelimit::{FailureMode, Settings};

/// Options of `weir ratelimit`.
#[derive(Debug, Args)]
pub struct RatelimitArgs {
    /// A rate-limit configuration file (envoyproxy/ratelimit's format, as `weir govern compile`
    /// writes it) or a directory of `*.yaml` files, such as a mounted ConfigMap. Repeat for
    /// several; each domain in one file only. Re-read every --reload-interval seconds: a change
    /// that does not load is refused and the last good configuration kept (see /status).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// gRPC address of the RateLimitService.
    #[arg(long, default_value = "127.0.0.1:8081", env = "WEIR_RATELIMIT_LISTEN")]
    pub listen: SocketAddr,
    /// Redis holding the counters, shared by every instance: redis://HOST:PORT[/DB].
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "WEIR_RATELIMIT_REDIS"
    )]
    pub redis: String,
    /// HTTP address of /metrics, /status and /healthz.
    #[arg(long, default_value = "127.0.0.1:9465", env = "WEIR_RATELIMIT_METRICS")]
    pub metrics: SocketAddr,
    /// The answer while Redis cannot count: allow (OK) or deny (UNAVAILABLE, which Envoy's
    /// `failure_mode_deny: true` turns into a refusal). Match the filter's setting.
    #[arg(long, value_enum, default_value_t = FailureModeArg::Allow)]
    pub failure_mode: FailureModeArg,
    /// Seconds between reads of the configuration files.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reload_interval: u64,
    /// Milliseconds a connection to Redis or one count may take.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
}

/// `--failure-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureModeArg {
    /// Answer OK while Redis is down.
    Allow,
    /// Answer UNAVAILABLE while Redis is down.
    Deny,
}

pub fn run(args: RatelimitArgs) -> Result<()> {
    let mut settings = Settings::new(
        args.config,
        args.listen,
        args.redis,
        match args.failure_mode {
            FailureModeArg::Allow => FailureMode::Allow,
            FailureModeArg::Deny => FailureMode::Deny,
        },
    );
    settings.metrics_listen = Some(args.metrics);
    settings.reload_interval = Duration::from_secs(args.reload_interval);
    settings.redis_timeout = Duration::from_millis(args.redis_timeout_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(weir_ratelimit::serve_until(
        settings,
        crate::run::termination(),
    ))?;
    tracing::info!("weir ratelimit: stopped");
    Ok(())
}
