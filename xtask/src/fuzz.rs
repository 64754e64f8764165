//! `cargo xtask fuzz`: builds the cargo-fuzz targets under `fuzz/` with the nightly
//! toolchain and runs each one with libFuzzer for a budget, then prints a table of executions,
//! coverage and crashes per target (also written to `target/weir-fuzz-report/table.md`).
//!
//! cargo-fuzz itself is installed into `target/tools/` (idempotent). Seeds come from
//! `fuzz/corpus/<target>/`; what libFuzzer adds goes to `target/fuzz-corpus/<target>/`, never
//! into the repository. A crash stops the run with the input's path: copy it to
//! `fuzz/regressions/<target>/` with the fix, and the workspace's tests replay it for good.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, StepError};

/// The targets, as `fuzz/Cargo.toml` names them (and `weir_fuzz::TARGETS` lists them).
pub fn targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| StepError(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// How long each target runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// libFuzzer's `-runs`: this many executions.
    Runs(u64),
    /// libFuzzer's `-max_total_time`, seconds.
    Seconds(u64),
}

/// How the targets are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Optimised (cargo-fuzz's default): the campaign's, about 15× the executions per second.
    Release,
    /// `cargo fuzz build --dev`, unoptimised: a third of the release build's time from a
    /// clean `target/` (4.5 min on 2 busy cores), for CI's short smoke run.
    Dev,
}

/// One target's run, from libFuzzer's closing lines.
#[derive(Debug, Default)]
struct Outcome {
    execs: u64,
    seconds: f64,
    cov: u64,
    features: u64,
    corpus: u64,
    crash: Option<String>,
}

fn tool_path(root: &Path) -> PathBuf {
    root.join("target/tools")
}

/// A `cargo +nightly …` command in `fuzz/`, with cargo-fuzz on the PATH and none of the
/// outer (stable) cargo's environment leaking in.
fn nightly_cargo(root: &Path) -> Command {
    let mut path = std::ffi::OsString::from(tool_path(root).join("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root.join("fuzz"))
        .env("PATH", path)
        .stdin(Stdio::null());
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        c.env_remove(var);
    }
    c
}

fn status_ok(c: &mut Command, what: &str) -> Result<()> {
    let s = c
        .status()
        .map_err(|e| StepError(format!("could not start {what}: {e}")))?;
    if s.success() {
        Ok(())
    } else {
        Err(StepError(format!("{what} failed ({s})")))
    }
}

/// Installs cargo-fuzz into `target/tools/` unless it is there, and checks the nightly
/// toolchain.
fn prepare(root: &Path) -> Result<()> {
    if !tool_path(root).join("bin/cargo-fuzz").exists() {
        println!("xtask: installing cargo-fuzz into target/tools/");
        let root_arg = tool_path(root);
        status_ok(
            Command::new(crate::cargo_bin())
                .args([
                    "install",
                    "cargo-fuzz",
                    "--locked",
                    "--version",
                    "0.13.2",
                    "--root",
                ])
                .arg(&root_arg)
                .stdin(Stdio::null()),
            "cargo install cargo-fuzz",
        )?;
    }
    status_ok(
        nightly_cargo(root).arg("--version").stdout(Stdio::null()),
        "the nightly toolchain (`rustup toolchain install nightly`)",
    )
}

/// Builds every target (no sanitizer: the code under test is safe Rust, and coverage
/// instrumentation is what guides libFuzzer) and returns the directory of the binaries.
fn build(root: &Path, how: Build) -> Result<PathBuf> {
    let target_dir = root.join("target/fuzz");
    let mut c = nightly_cargo(root);
    c.args(["fuzz", "build", "--sanitizer", "none"]);
    let profile = match how {
        Build::Release => "release",
        Build::Dev => {
            c.arg("--dev");
            "debug"
        }
    };
    status_ok(
        c.arg("--target-dir").arg(&target_dir),
        "cargo +nightly fuzz build",
    )?;
    let triple = std::fs::read_dir(&target_dir)
        .map_err(|e| StepError(format!("{}: {e}", target_dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(profile))
        .find(|p| p.is_dir())
        .ok_or_else(|| StepError(format!("no {profile} build under {}", target_dir.display())))?;
    Ok(triple)
}

/// Reads libFuzzer's last stats line (`#N DONE cov: C ft: F corp: K/…`) and its `Done N runs
/// in S second(s)` line; a crash is the `Test unit written to <path>` line.
fn parse(stderr: &str) -> Outcome {
    let mut o = Outcome::default();
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        let word = rest.split_whitespace().next()?;
        word.split('/').next()?.parse().ok()
    };
    for line in stderr.lines() {
        // `#<count>\t<KIND> cov: … ft: … corp: <units>/<bytes> …`
        let kind = line.split_whitespace().nth(1).unwrap_or_default();
        if line.starts_with('#') && ["INITED", "NEW", "REDUCE", "pulse", "DONE"].contains(&kind) {
            o.cov = field(line, "cov: ").unwrap_or(o.cov);
            o.features = field(line, "ft: ").unwrap_or(o.features);
            o.corpus = field(line, "corp: ").unwrap_or(o.corpus);
        }
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut words = rest.split_whitespace();
            o.execs = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            o.seconds = words.nth(2).and_then(|w| w.parse().ok()).unwrap_or(0.0);
        }
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            o.crash = Some(path.trim().to_owned());
        }
    }
    o
}

/// Runs one target for `budget`; a crash is an error naming the input.
///
/// The short (dev-build) run starts from the repository's seeds every time, in a corpus of
/// its own: replaying the campaign's grown corpus on an unoptimised build takes minutes
/// (`decide`'s 1,478 inputs: 10 min), which is not a 5-s budget.
fn run_one(root: &Path, bins: &Path, name: &str, budget: Budget, how: Build) -> Result<Outcome> {
    let work = match how {
        Build::Release => root.join("target/fuzz-corpus").join(name),
        Build::Dev => {
            let w = root.join("target/fuzz-corpus-short").join(name);
            if w.exists() {
                std::fs::remove_dir_all(&w)
                    .map_err(|e| StepError(format!("{}: {e}", w.display())))?;
            }
            w
        }
    };
    let artifacts = root.join("target/fuzz-artifacts").join(name);
    for d in [&work, &artifacts] {
        std::fs::create_dir_all(d).map_err(|e| StepError(format!("{}: {e}", d.display())))?;
    }
    let mut c = Command::new(bins.join(name));
    match budget {
        Budget::Runs(n) => c.arg(format!("-runs={n}")),
        Budget::Seconds(s) => c.arg(format!("-max_total_time={s}")),
    };
    c.arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(&work)
        .arg(root.join("fuzz/corpus").join(name))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let started = Instant::now();
    let out = c
        .output()
        .map_err(|e| StepError(format!("could not start fuzz target {name}: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut o = parse(&stderr);
    if o.seconds == 0.0 {
        o.seconds = started.elapsed().as_secs_f64();
    }
    if !out.status.success() || o.crash.is_some() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(StepError(format!(
            "fuzz target {name} failed ({}); input: {}\n{}\nKeep the input as fuzz/regressions/{name}/<name> with the fix.",
            out.status,
            o.crash.as_deref().unwrap_or("(none written)"),
            tail.join("\n")
        )));
    }
    Ok(o)
}

/// `cargo xtask fuzz`: every target (or those named), built `how`, for `budget`, then the
/// table.
pub fn run(root: &Path, budget: Budget, how: Build, only: &[String]) -> Result<()> {
    prepare(root)?;
    let bins = build(root, how)?;
    let all = targets(root)?;
    let chosen: Vec<String> = if only.is_empty() {
        all
    } else {
        for n in only {
            if !all.contains(n) {
                return Err(StepError(format!(
                    "no fuzz target {n:?}; targets: {}",
                    all.join(", ")
                )));
            }
        }
        only.to_vec()
    };
    let mut rows = vec![
        "| target | executions | seconds | exec/s | coverage (edges) | features | corpus | crashes |".to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for name in &chosen {
        println!("xtask: fuzzing {name} ({budget:?}, {how:?} build)");
        let o = run_one(root, &bins, name, budget, how)?;
        let rate = if o.seconds > 0.0 {
            o.execs as f64 / o.seconds
        } else {
            0.0
        };
        let row = format!(
            "| {name} | {} | {:.0} | {rate:.0} | {} | {} | {} | 0 |",
            o.execs, o.seconds, o.cov, o.features, o.corpus
        );
        println!("{row}");
        rows.push(row);
    }
    let table = rows.join("\n") + "\n";
    let dir = root.join("target/weir-fuzz-report");
    std::fs::create_dir_all(&dir).map_err(|e| StepError(format!("{}: {e}", dir.display())))?;
    std::fs::write(dir.join("table.md"), &table)
        .map_err(|e| StepError(format!("{}: {e}", dir.display())))?;
    println!("\n{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_lines() {
        let stderr = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 1/4b exec/s: 0 rss: 30Mb\n\
                      #1000\tDONE   cov: 812 ft: 2301 corp: 97/3112b lim: 4096 exec/s: 5000 rss: 60Mb\n\
                      Done 1000 runs in 0 second(s)\n";
        let o = parse(stderr);
        assert_eq!(
            (o.execs, o.cov, o.features, o.corpus),
            (1000, 812, 2301, 97)
        );
        assert!(o.crash.is_none());
        let crash = "==1== ERROR: libFuzzer: deadly signal\nTest unit written to target/fuzz-artifacts/x/crash-ab12\n";
        assert_eq!(
            parse(crash).crash.as_deref(),
            Some("target/fuzz-artifacts/x/crash-ab12")
        );
    }
}
