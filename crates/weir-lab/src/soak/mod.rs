//! The soak (issue 17, item 5): `weir run` for hours on a real lab, watched from outside for
//! what only time shows — memory that creeps, file descriptors or metric series that pile
//! up, disk that fills, a loop that slows down or stops.
//!
//! A fresh lab, the load generator at the lab's steady rate, and `weir run` as the fault
//! campaign configures it (the default policy, enforce mode, the learned state saved after
//! every decision) with a 1-second control interval, for `--duration`. Every `--stall-every`
//! replica-1's apply is stalled for `--stall-for` (FTWRL, a backup's lock), so weights,
//! decisions, live events and state saves keep changing: a constant steady state would only
//! prove that an idle loop does not leak.
//!
//! Every `--sample-every`, from outside the process: its RSS, threads (`/proc/<pid>/status`)
//! and open file descriptors (`/proc/<pid>/fd`); the series per metric family on its
//! `/metrics` (cardinality must not grow); the size of its state directory, audit log and
//! log (disk use an operator has to plan for); the decisions made so far (`/api/state`);
//! HAProxy's weights and how often they changed; the live events received on one
//! `/api/events` stream held open all along. Each sample is appended to
//! `<dir>/soak/samples.jsonl` as it is taken, so an interrupted run still leaves its data;
//! at the end the summary, the verdict and the table go to `<dir>/soak/summary.json` and
//! `<dir>/soak/table.md`.
//!
//! The verdict compares the end with the warm-up (the first sample once weir's bounded
//! buffers are full, see [`report::warmup_s`]): fds at most +2, the same number of series,
//! RSS flat over the second half (least squares) and within ×1.25 + 4 MB, at least 90% of
//! the intervals decided, the state saved throughout, and weir alive at the end — if it
//! died, the soak fails with its log's tail.
//!
//! - `report` — the samples, parsing what is sampled, the summary, verdict and table (pure,
//!   tested).
//! - `run` — the session: weir, the stalls, the monitors and the sampler.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::campaign::POLICY;
use crate::experiment::ExperimentConfig;
use crate::lab::{self, Lab, LabOptions};
use crate::layout::Layout;
use crate::procs;

mod report;
mod run;

/// `weir-lab soak`'s arguments.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Run directory (a fresh lab is made here).
    #[arg(long, default_value_os_t = lab::default_dir().with_file_name("weir-lab-soak"))]
    dir: PathBuf,
    /// First of the ports on 127.0.0.1 the lab uses (apart from the campaign's 23500).
    #[arg(long, alias = "port-base", default_value_t = 24500)]
    base_port: u16,
    /// How long `weir run` runs: `2h`, `90m`, `1h30m`, `45s` or plain seconds.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    duration: Duration,
    /// The same in minutes (instead of --duration).
    #[arg(long, conflicts_with = "duration")]
    minutes: Option<f64>,
    /// Stall replica-1 this often (the first one after a minute, or half of this if sooner).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    stall_every: Duration,
    /// For this long each time.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    stall_for: Duration,
    /// Sample weir this often.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sample_every: Duration,
    #[command(flatten)]
    shape: crate::LoadShape,
    /// Weir's control interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    interval_s: f64,
    /// The `weir` binary (default: beside this one).
    #[arg(long)]
    weir_bin: Option<PathBuf>,
    /// Exit non-zero unless the verdict passed: weir alive throughout and deciding ≥ 90% of
    /// the intervals, fds and /metrics series not growing after the warm-up, RSS flat over
    /// the second half and within ×1.25 + 4 MB of the warm-up, the state saved throughout.
    #[arg(long)]
    check: bool,
}

/// Everything one soak needs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Load shape, Weir's interval and the `weir` binary (the experiment's settings: the soak
    /// reuses its calibration and config template, as the campaign does).
    pub base: ExperimentConfig,
    /// How long `weir run` runs.
    pub duration: Duration,
    /// Stalls start this often.
    pub stall_every: Duration,
    /// Each lasts this long.
    pub stall_for: Duration,
    /// Samples are taken this often.
    pub sample_every: Duration,
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `1.5h` or plain seconds (`7200`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return checked(secs, text);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            _ => return Err(format!("`{text}`: unknown unit `{c}` (use s, m, h or d)")),
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("`{text}`: a number must come before `{c}`"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "`{text}`: `{number}` has no unit (use s, m, h or d)"
        ));
    }
    checked(total, text)
}

fn checked(secs: f64, text: &str) -> Result<Duration, String> {
    if secs.is_finite() && secs >= 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{text}`: not a duration"))
    }
}

/// When each stall starts, seconds into a run of `planned_s`: the first after a minute (or
/// after half the period, if that is sooner — so short runs stall too, and a long run's
/// warm-up already includes a stall and its recovery), then every `every_s`; only stalls that
/// end before the run does.
pub fn stall_starts(planned_s: f64, every_s: f64, for_s: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if every_s <= 0.0 {
        return out;
    }
    let mut t = (every_s / 2.0).min(60.0);
    while t + for_s <= planned_s {
        out.push(t);
        t += every_s;
    }
    out
}

/// `weir-lab soak`: brings up a fresh lab, soaks `weir run`, prints the table and the
/// verdict, writes them under `<dir>/soak`.
pub async fn command(a: SoakArgs) -> Result<ExitCode> {
    let duration = match a.minutes {
        Some(m) if m.is_finite() && m > 0.0 => Duration::from_secs_f64(m * 60.0),
        Some(m) => bail!("--minutes {m}: must be positive"),
        None => a.duration,
    };
    if a.sample_every < Duration::from_secs(1) {
        bail!("--sample-every must be at least 1 s");
    }
    if duration < a.sample_every * 2 {
        bail!("the soak must last at least two --sample-every periods");
    }
    if a.stall_for.is_zero() || a.stall_for >= a.stall_every {
        bail!("--stall-for must be positive and shorter than --stall-every");
    }
    if !(a.interval_s.is_finite() && a.interval_s >= 1.0) {
        bail!("--interval-s must be at least 1 (weir run's shortest control interval)");
    }
    let layout = Layout::new(&a.dir, a.base_port)?;
    let cfg = SoakConfig {
        base: a
            .shape
            .weir_under_load(a.interval_s, crate::weir_beside_me(a.weir_bin)?),
        duration,
        stall_every: a.stall_every,
        stall_for: a.stall_for,
        sample_every: a.sample_every,
    };
    let started = Instant::now();
    let mut lab = Lab::up(layout.clone(), &LabOptions::default(), true)
        .await
        .context("bringing up the soak's lab")?;
    eprintln!("lab: up in {:.1} s", started.elapsed().as_secs_f64());
    let summary = run::run(&mut lab, &cfg).await;
    let stopped = lab.down()?;
    eprintln!("lab: stopped {} process(es)", stopped.len());
    let summary = summary?;
    let table = report::table(&summary);
    println!("{table}");
    for line in &summary.verdict {
        println!("{line}");
    }
    println!(
        "(policy {}, interval {} s, {} reads/s and {} writes/s: {} reads, {} failed, {} stale over {} s; replica-1 stalled {} s every {} s; warm-up {:.1} min; total {:.0} s)",
        POLICY.as_str(),
        a.interval_s,
        a.shape.read_rate,
        a.shape.write_rate,
        summary.facts.reads,
        summary.facts.reads_failed,
        summary.facts.stale_reads,
        a.shape.max_staleness_s,
        cfg.stall_for.as_secs_f64(),
        cfg.stall_every.as_secs_f64(),
        summary.facts.warmup_s / 60.0,
        started.elapsed().as_secs_f64()
    );
    let out = layout.path("soak");
    procs::write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .context("serialising the soak summary")?
            .as_bytes(),
    )?;
    procs::write_atomic(&out.join("table.md"), table.as_bytes())?;
    println!(
        "wrote {0}/samples.jsonl, {0}/summary.json and {0}/table.md",
        out.display()
    );
    Ok(if a.check && !summary.passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        let d = |s: &str| parse_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(d("2h"), Ok(7200.0));
        assert_eq!(d("90m"), Ok(5400.0));
        assert_eq!(d("1h30m"), Ok(5400.0));
        assert_eq!(d("20s"), Ok(20.0));
        assert_eq!(d("1.5h"), Ok(5400.0));
        assert_eq!(d("7200"), Ok(7200.0));
        assert!(d("").is_err());
        assert!(d("10x").is_err());
        assert!(d("1h30").is_err());
        assert!(d("h").is_err());
        assert!(d("-5").is_err());
    }

    #[test]
    fn stalls_start_early_and_every_period_and_end_before_the_run() {
        // Two hours, every 10 minutes for 60 s: at 1, 11, ..., 111 min.
        let s = stall_starts(7200.0, 600.0, 60.0);
        assert_eq!(s.len(), 12);
        assert_eq!(s[0], 60.0);
        assert_eq!(s[11], 60.0 + 11.0 * 600.0);
        // The smoke run: 4 minutes, every 90 s for 60 s: at 45 and 135 s (225 + 60 > 240).
        assert_eq!(stall_starts(240.0, 90.0, 60.0), vec![45.0, 135.0]);
        assert!(stall_starts(30.0, 90.0, 60.0).is_empty());
    }

    #[test]
    fn the_arguments_parse_as_documented() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            soak: SoakArgs,
        }
        let c = Cli::try_parse_from(["soak"]).expect("defaults");
        assert_eq!(c.soak.duration, Duration::from_secs(7200));
        assert_eq!(c.soak.stall_every, Duration::from_secs(600));
        assert_eq!(c.soak.sample_every, Duration::from_secs(60));
        assert_eq!(c.soak.base_port, 24500);
        assert!(c.soak.dir.ends_with("weir-lab-soak"));
        let c = Cli::try_parse_from([
            "soak",
            "--minutes",
            "4",
            "--stall-every",
            "90s",
            "--sample-every",
            "20s",
            "--port-base",
            "24600",
        ])
        .expect("the smoke run's flags");
        assert_eq!(c.soak.minutes, Some(4.0));
        assert_eq!(c.soak.base_port, 24600);
        assert!(Cli::try_parse_from(["soak", "--minutes", "4", "--duration", "2h"]).is_err());
    }
}
