//! The `weir` command: a thin layer that parses arguments and wires the crates together.

mod admit_cmd;
mod bench_cmd;
mod check;
mod cli;
mod demo;
mod govern_cmd;
mod operator_cmd;
mod ratelimit_cmd;
mod run;
mod scenarios_cmd;
mod train_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format);
    let result = match cli.command {
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Train(args) => train_cmd::run(args),
        cli::Command::Bench(args) => bench_cmd::run(args),
        cli::Command::Scenarios(args) => bench_cmd::check_scenarios(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Check(args) => check::run(args),
        cli::Command::Operator(args) => operator_cmd::run(args),
        cli::Command::Manifests(args) => operator_cmd::manifests(&args),
        cli::Command::Govern(cmd) => govern_cmd::run(cmd),
        cli::Command::Ratelimit(args) => ratelimit_cmd::run(args),
        cli::Command::Admit(cmd) => admit_cmd::run(cmd),
        cli::Command::Crd => weir_operator::crds_yaml()
            .map(|y| print!("{y}"))
            .map_err(|e| anyhow::anyhow!("rendering the CRDs: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A fresh identifier for this process's controller run (process id and start time): the
/// dashboard starts over when it changes.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}
