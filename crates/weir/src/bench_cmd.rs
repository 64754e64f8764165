//! `weir bench` and `weir scenarios`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir_eval::{BenchOptions, Entrant, PolicySpec, RunOptions, TrainOptions, run_bench, train};
use weir_persist::write_atomic;
use weir_policy::{Model, PolicyKind};
use weir_sim::{Scenario, Simulator};

use crate::cli::{BenchArgs, ScenarioArgs};

/// Loads files and directories of scenarios, in the order given (directories sorted).
pub fn load_scenarios(paths: &[PathBuf]) -> Result<Vec<Scenario>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(weir_sim::load_dir(p)?);
        } else {
            out.push(Scenario::load(p)?);
        }
    }
    Ok(out)
}

pub fn run(args: BenchArgs) -> Result<()> {
    let scenarios = load_scenarios(&args.scenarios)?;
    if args.throughput {
        return throughput(&scenarios);
    }
    let policies = args
        .policies
        .iter()
        .map(|p| PolicySpec::parse(p.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut models: Vec<Model> = Vec::new();
    for p in &policies {
        let Entrant::Policy(kind) = p.entrant else {
            continue;
        };
        if !kind.needs_model() || models.iter().any(|m| m.kind() == kind) {
            continue;
        }
        let path = match kind {
            PolicyKind::Dqn => &args.dqn_model,
            _ => &args.model,
        };
        let (model, origin) = Model::load_or_shipped(kind, path.as_deref())
            .with_context(|| format!("policy {kind}: its model"))?;
        eprintln!("{kind}: {origin} ({})", model.size());
        models.push(model);
    }
    let opts = BenchOptions {
        scenarios,
        policies,
        seeds: args.seeds.clone(),
        models,
        run: RunOptions {
            reward: args.reward.config(),
            oracle_switch_cost: match args.oracle_switch_cost {
                Some(c) if !(c.is_finite() && c >= 0.0) => {
                    bail!("--oracle-switch-cost must be a non-negative number, got {c}")
                }
                c => c,
            },
            oracle_without_foresight: args.oracle_without_foresight,
            ..RunOptions::default()
        },
        threads: args.threads,
    };
    let report = run_bench(&opts)?;
    print!("{}", report.to_table());
    if let Some(p) = &args.json {
        write(p, report.to_json().as_bytes())?;
        println!("\nwrote {}", p.display());
    }
    if let Some(p) = &args.csv {
        write(p, report.to_csv().as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Wall-clock throughput of the simulator alone and of training (simulator + Q-learning).
fn throughput(scenarios: &[Scenario]) -> Result<()> {
    let Some(scn) = scenarios.first() else {
        bail!("no scenario")
    };
    let mut sim = Simulator::new(scn, 1);
    let ticks = 5_000_000u64;
    let t0 = Instant::now();
    let mut sink = 0.0;
    for _ in 0..ticks {
        sink += sim.step().reads;
    }
    let dt = t0.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    println!(
        "simulator: {:.2} M ticks/s ({} ticks of {}, {} replicas, one core)",
        ticks as f64 / dt / 1e6,
        ticks,
        scn.name,
        scn.replicas.len()
    );
    let opts = TrainOptions {
        scenarios: vec![scn.clone()],
        episodes: 20,
        members: 1,
        ..TrainOptions::default()
    };
    let t0 = Instant::now();
    let mut last = None;
    train(&opts, None, |p| last = Some((p.steps, p.ticks)))?;
    let dt = t0.elapsed().as_secs_f64();
    if let Some((steps, ticks)) = last {
        println!(
            "training: {:.2} M simulator ticks/s with {:.0} k Q-learning decisions/s ({} episodes: {} ticks, {} decisions, one core)",
            ticks as f64 / dt / 1e6,
            steps as f64 / dt / 1e3,
            opts.episodes,
            ticks,
            steps
        );
    }
    Ok(())
}

pub fn check_scenarios(args: ScenarioArgs) -> Result<()> {
    if let Some(crate::cli::ScenarioCommand::Generate(g)) = args.command {
        return crate::scenarios_cmd::generate(&g);
    }
    let scenarios = load_scenarios(&args.paths)?;
    for s in &scenarios {
        let events: Vec<String> = s
            .events
            .iter()
            .map(|e| e.kind.as_str().to_string())
            .collect();
        println!(
            "ok  {:<32} {:>6.0}s  {} replicas  events: {}  — {}",
            s.name,
            s.duration_s,
            s.replicas.len(),
            if events.is_empty() {
                "none".to_string()
            } else {
                events.join(",")
            },
            s.description
        );
    }
    Ok(())
}
