//! `weir-conformance`: Weir's traffic conformance suite — policies run by a real Envoy, real
//! requests, every check stating the policy line it proves.
//!
//! ```text
//! weir-conformance run                          # every check, the table on stdout
//! weir-conformance run --short --check          # fewer requests (CI); exit 1 on a failure
//! weir-conformance run --markdown docs/table.md --json out.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use weir_conformance::{Ctx, check, envoy, harness};

/// Weir's traffic conformance suite: policies run by a real Envoy, real requests to small
/// upstreams on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "weir-conformance", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run every check and print the table.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Fewer requests per check (CI); every check still runs.
    #[arg(long)]
    short: bool,
    /// Write the table as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write the checks as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit non-zero when any check fails.
    #[arg(long)]
    check: bool,
    /// The Envoy binary (default: $WEIR_ENVOY_BIN, else the one `cargo xtask prerequisites`
    /// installs).
    #[arg(long, value_name = "PATH")]
    envoy: Option<PathBuf>,
    /// Run only these suites (repeatable): matches, weights, affinity, affinity-payoff,
    /// local-rate-limit, circuit-breaker, outlier-ejection, nearby, environments,
    /// global-rate-limit.
    #[arg(long, value_name = "SUITE", value_parser = clap::builder::PossibleValuesParser::new(weir_conformance::SUITES))]
    only: Vec<String>,
    /// Where each scenario's policy, inventory, bootstrap and Envoy log are written.
    #[arg(long, value_name = "DIR", default_value = "target/weir-conformance")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main() -> Result<ExitCode> {
    let Cmd::Run(args) = Cli::parse().command;
    let ctx = Ctx {
        envoy_bin: envoy::binary(args.envoy.as_deref())?,
        dir: args.dir.clone(),
        short: args.short,
        client: harness::client(None)?,
    };
    std::fs::create_dir_all(&ctx.dir).with_context(|| format!("creating {}", ctx.dir.display()))?;
    let started = Instant::now();
    let checks = weir_conformance::run(&ctx, &args.only).await;
    let seconds = started.elapsed().as_secs_f64();
    print!("{}", check::text(&checks));
    println!("in {seconds:.1} s");
    let command = format!(
        "weir-conformance run{}",
        if args.short { " --short" } else { "" }
    );
    if let Some(path) = &args.markdown {
        let (passed, failed) = check::summary(&checks);
        let text = format!(
            "<!-- `{command}`: {passed} passed, {failed} failed, {seconds:.1} s -->\n{}",
            check::markdown(&checks)
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "command": command,
            "short": args.short,
            "seconds": seconds,
            "checks": checks,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let (_, failed) = check::summary(&checks);
    Ok(if args.check && failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
