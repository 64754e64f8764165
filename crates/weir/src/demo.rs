//! `weir demo`: a simulated cluster governed by the real controller loop.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use weir_controller::{ControlStep, Controller, ControllerConfig};
use weir_core::RewardConfig;
use weir_edge::Mode;
use weir_eval::RunOptions;
use weir_eval::episode::shield_for;
use weir_eval::live::{SimActuator, SimClock, SimSource};
use weir_policy::{Model, PolicyKind};
use weir_recorder::{Recorder, Setup, decision_line, explained_line};
use weir_sim::{Scenario, Simulator};

use crate::cli::DemoArgs;

/// The default demo scenario, embedded so that `weir demo` runs from anywhere.
const DEMO_SCENARIO: &str = include_str!("../../../scenarios/demo.toml");

/// The model of `kind`: the file given with `--model`, else the one shipped in the binary.
pub fn load_model(kind: PolicyKind, path: Option<&std::path::Path>) -> Result<Model> {
    match path {
        Some(p) => Model::load(kind, p).with_context(|| format!("loading --model {}", p.display())),
        None => Model::shipped(kind)
            .with_context(|| format!("policy {kind} has no shipped model: pass --model"))?
            .with_context(|| format!("the shipped {kind} model")),
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::from_toml_str(DEMO_SCENARIO, "scenarios/demo.toml (embedded)")?,
    };
    let model = if args.policy.needs_model() {
        Some(load_model(args.policy, args.model.as_deref())?)
    } else {
        None
    };
    let policy = args.policy.build(model.as_ref(), false)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args, scenario, policy, model, seed))
}

async fn run_async(
    args: DemoArgs,
    scenario: Scenario,
    policy: Box<dyn weir_core::Policy>,
    model: Option<Model>,
    seed: u64,
) -> Result<()> {
    let sim = Simulator::new(&scenario, seed);
    let initial = sim.weights().clone();
    let names = sim.replica_names();
    let sim = Arc::new(Mutex::new(sim));
    let opts = RunOptions {
        reward: RewardConfig::default(),
        ..RunOptions::default()
    };
    let shield = shield_for(&scenario, &opts.shield, true).with_priorities(&opts.reward);
    let step = ControlStep::new(
        policy,
        shield,
        scenario.slo.clone(),
        opts.reward.clone(),
        initial,
        64,
    );
    let recorder = Recorder::default();
    recorder.set_setup(Setup {
        run_id: crate::run_id(),
        title: format!("weir demo: scenario {:?} (simulated)", scenario.name),
        description: scenario.description.clone(),
        mode: Mode::Enforce,
        slo: scenario.slo.clone(),
        interval_s: scenario.timing.control_interval_s,
        stale_after_s: step.shield().config().stale_after_s,
    });
    let explain = args.explain;
    let interval = scenario.timing.control_interval_s;
    let steps = (scenario.duration_s / interval).ceil() as u64;
    let config = ControllerConfig {
        max_steps: Some(steps),
        replica_names: names.clone(),
        ..ControllerConfig::new(interval, Mode::Enforce)
    };
    let source = SimSource::new(sim.clone());
    let totals = source.totals();
    let (tx, rx) = mpsc::channel(16);
    let mut controller = Controller::new(
        step,
        source,
        SimActuator::new(sim.clone()),
        SimClock::new(args.speed),
        recorder.clone(),
        config,
    )?
    .with_commands(rx)
    .on_step(move |r| {
        let line = if explain {
            explained_line(r)
        } else {
            decision_line(r)
        };
        println!("{line}");
    });

    println!(
        "weir demo — scenario {:?}: {}",
        scenario.name, scenario.description
    );
    println!(
        "  {} replicas ({}), {:.0} simulated minutes, a decision every {:.0}s, speed {}×, policy {}",
        names.len(),
        names.join(", "),
        scenario.duration_s / 60.0,
        interval,
        if args.speed > 0.0 {
            format!("{:.0}", args.speed)
        } else {
            "max".to_string()
        },
        args.policy
    );
    if let Some(m) = &model {
        let origin = args
            .model
            .as_ref()
            .map_or_else(|| "shipped".to_string(), |p| p.display().to_string());
        println!("  model {origin}: {}", m.describe());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = if args.no_serve {
        None
    } else {
        let app = weir_api::router(
            recorder.clone(),
            args.api_token
                .clone()
                .filter(|t| !t.is_empty())
                .map(|t| (tx.clone(), t)),
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "binding {} (use --listen to pick another address or --no-serve)",
                    args.listen
                )
            })?;
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| args.listen.to_string());
        println!(
            "  dashboard: http://{addr}/  (API: /api/state, /api/history, /api/events; /metrics)"
        );
        let mut rx = stop_rx.clone();
        Some(tokio::spawn(weir_api::serve_listener(
            listener,
            app,
            async move {
                let _ = rx.wait_for(|v| *v).await;
            },
        )))
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let summary = controller.run(ctrl_c).await?;
    let t = totals.lock().map(|t| *t).unwrap_or_default();
    let status = controller.step().shield().status().clone();
    println!(
        "\nsummary: {} decisions; true stale reads {:.2}% (mean staleness {:.1}s), failed reads {:.2}%, mean primary CPU {:.0}%, max {:.0}%; shield interventions {}, hard-limit violations {}",
        summary.steps,
        100.0 * t.stale_fraction(),
        t.mean_staleness_s(),
        100.0 * t.failed_fraction(),
        100.0 * t.mean_primary_cpu(),
        100.0 * t.primary_cpu_max,
        status.interventions.values().sum::<u64>(),
        status.hard_limit_violations
    );
    if let Some(handle) = server {
        if args.linger {
            println!("scenario over; still serving until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
        recorder.close();
        let _ = stop_tx.send(true);
        let _ = handle.await;
    }
    Ok(())
}
