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
    pin_matmul_threads();
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

/// candle 0.11 decides each matrix product's threads by calling `num_cpus::get_physical()`,
/// which parses `/proc/cpuinfo`, unless `RAYON_NUM_THREADS` is set: that was half of
/// `weir train`'s time (13.1 s against 6.9 s for a 60-episode network, the same bytes out) and
/// a file read per layer of every DQN decision. Weir's networks are too small to gain from
/// threads, so when the variable is unset the process re-executes itself once with
/// `RAYON_NUM_THREADS=1`. `exec` keeps the process id, so signals and the exit status are this
/// process's; a value the user set is kept; if the re-execution fails, Weir carries on as it
/// is. (The variable cannot be set in-process: `set_var` is `unsafe` in Rust 2024, and the
/// workspace forbids `unsafe`.)
fn pin_matmul_threads() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        const VAR: &str = "RAYON_NUM_THREADS";
        if std::env::var_os(VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // Only returns on failure; the command then runs here, with candle's default.
        let _ = std::process::Command::new(&exe)
            .arg0(arg0)
            .args(args)
            .env(VAR, "1")
            .exec();
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
