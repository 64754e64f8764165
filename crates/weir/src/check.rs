//! `weir check`: validate the config, run every query once, read the target, and print the
//! exact change the current observation would produce — without sending it.

use anyhow::{Context, Result};
use weir_actuators::ActuatorConfig;
use weir_config::WeirConfig;
use weir_controller::ControlStep;
use weir_core::{Signal, Weights};
use weir_edge::{Actuator, Source};
use weir_policy::Loaded;
use weir_prom::ProbeValues;
use weir_shield::Shield;

use crate::cli::CheckArgs;
use crate::run::build_policy;

fn show(s: &Signal) -> String {
    match (s.value, s.unknown) {
        (Some(v), _) => format!("{v:.3}"),
        (None, Some(why)) => format!("unknown ({why:?})"),
        (None, None) => "unknown".to_string(),
    }
}

pub fn run(args: CheckArgs) -> Result<()> {
    let cfg = WeirConfig::load(&args.config, std::env::vars())?;
    let actuator = ActuatorConfig::from_config(&cfg, &args.config.display().to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let problems = runtime.block_on(check(&args, &cfg, &actuator))?;
    if problems.is_empty() {
        println!("\ncheck: ok");
        Ok(())
    } else {
        println!("\ncheck: {} problem(s):", problems.len());
        for p in &problems {
            println!("  - {p}");
        }
        anyhow::bail!("weir check found {} problem(s)", problems.len())
    }
}

async fn check(
    args: &CheckArgs,
    cfg: &WeirConfig,
    actuator: &ActuatorConfig,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let names = cfg.replica_names();
    let n = names.len();
    println!("config {}: ok", args.config.display());
    println!(
        "  mode {}, a decision every {}s, replicas: {}, policy {}, actuator {}",
        cfg.mode.as_str(),
        cfg.interval_s,
        names.join(", "),
        cfg.policy.kind,
        actuator.describe()
    );

    println!("\nprometheus {}:", cfg.prometheus.url);
    let mut source = cfg.prometheus.build().context("prometheus")?;
    for report in source.probe().await {
        println!("  {} = {}", report.signal.name(), report.query);
        match &report.result {
            Ok(ProbeValues::Primary(s)) => println!("      primary: {}", show(s)),
            Ok(ProbeValues::Replicas {
                per_replica,
                unmatched,
            }) => {
                for (name, s) in per_replica {
                    println!("      {name}: {}", show(s));
                }
                if !unmatched.is_empty() {
                    println!(
                        "      (series matching no configured replica: {})",
                        unmatched.join(", ")
                    );
                }
            }
            Err(e) => {
                println!("      error: {e}");
                problems.push(format!("query {}: {e}", report.signal.name()));
            }
        }
    }
    let observation = match source.observe(0.0).await {
        Ok(o) => {
            let lags_known = o
                .replicas
                .iter()
                .filter(|r| r.lag_s.value.is_some())
                .count();
            if lags_known == 0 {
                problems.push(
                    "no replica lag is known: check prometheus.queries.replica_lag_s and each replica's label_value"
                        .to_string(),
                );
            }
            if o.primary.cpu.value.is_none() {
                problems.push(
                    "the primary's CPU is unknown: the shield will not let the primary take more reads (check prometheus.queries.primary_cpu)"
                        .to_string(),
                );
            }
            Some(o)
        }
        Err(e) => {
            problems.push(format!("prometheus: {e}"));
            None
        }
    };

    let real = match actuator.build().await {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let current = match &real {
        Some(r) => match r.read_current(n).await {
            Ok(w) => {
                println!(
                    "\ntarget: current weights {w} (primary/{})",
                    names.join("/")
                );
                w
            }
            Err(e) => {
                problems.push(format!("actuator: {e}"));
                Weights::even(n)
            }
        },
        None => {
            println!("\ntarget: dry-run actuator (nothing to read); assuming even replica weights");
            Weights::even(n)
        }
    };

    if let Some(obs) = observation {
        let Loaded {
            policy,
            description: desc,
        } = build_policy(cfg)?;
        let shield =
            Shield::new(cfg.shield.clone(), cfg.slo.clone(), n).with_priorities(&cfg.priorities);
        let mut step: ControlStep = ControlStep::new(
            policy,
            shield,
            cfg.slo.clone(),
            cfg.priorities.clone(),
            current.clone(),
            8,
        );
        let out = step.step(obs, None);
        let d = &out.decision;
        println!("\ndecision now ({desc}):");
        println!(
            "  policy proposes {}: {}",
            d.proposal.weights, d.proposal.reason
        );
        for i in &d.interventions {
            println!("  shield {}: {}", i.rule, i.detail);
        }
        println!("  would apply {} (from {current})", d.weights);
        match &real {
            Some(r) if d.weights != current => match r.plan(d).await {
                Ok(lines) => {
                    println!("  exactly this would be sent (not sent):");
                    for l in lines {
                        for line in l.lines() {
                            println!("    {line}");
                        }
                    }
                }
                Err(e) => problems.push(format!("planning the change: {e}")),
            },
            Some(_) => println!("  nothing would be sent: the weights already match"),
            None => {}
        }
    }
    if let Some(note) = real.as_ref().and_then(Actuator::connection_note) {
        println!("\nnote: {note}");
    }
    Ok(problems)
}
