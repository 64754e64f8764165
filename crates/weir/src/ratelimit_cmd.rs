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
    /// Milliseconds one gRPC request may take; past it the service answers CANCELLED, which
    /// Envoy counts as a failure of the service (its filter's failure mode answers). Envoy's
    /// filter also gives up after its own `timeout` (a policy's
    /// `rate_limit.global.timeout_ms`): the shorter one decides.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub grpc_timeout_ms: u64,
}

/// `--failure-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureModeArg {
    /// Answer OK while Redis is down.
    Allow,
    /// Answer UNAVAILABLE while Redis is down.
    Deny,
}

/// The service's settings from the command line.
fn settings(args: RatelimitArgs) -> Settings {
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
    settings.grpc_timeout = Duration::from_millis(args.grpc_timeout_ms);
    settings
}

pub fn run(args: RatelimitArgs) -> Result<()> {
    let settings = settings(args);
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parsed(extra: &[&str]) -> Result<RatelimitArgs, clap::Error> {
        let mut argv = vec!["weir", "ratelimit", "--config", "limits.yaml"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Ratelimit(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_grpc_timeout_reaches_the_service_and_out_of_range_values_are_refused_by_name() {
        let default = settings(parsed(&[]).expect("parses"));
        assert_eq!(default.grpc_timeout, Duration::from_secs(5));
        let set = settings(parsed(&["--grpc-timeout-ms", "250"]).expect("parses"));
        assert_eq!(set.grpc_timeout, Duration::from_millis(250));
        assert_eq!(set.redis_timeout, Duration::from_millis(500));
        for bad in ["0", "60001", "-1", "soon"] {
            let e = parsed(&[&format!("--grpc-timeout-ms={bad}")])
                .expect_err("out of range")
                .to_string();
            assert!(e.contains("--grpc-timeout-ms"), "{bad}: {e}");
        }
    }
}
