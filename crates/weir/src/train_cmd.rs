//! `weir train`.

use anyhow::{Context, Result};
use weir_eval::{TrainOptions, train};
use weir_policy::QLearn;

use crate::cli::TrainArgs;

pub fn run(args: TrainArgs) -> Result<()> {
    let scenarios = weir_sim::load_dir(&args.scenarios).with_context(|| {
        format!(
            "loading training scenarios from {}",
            args.scenarios.display()
        )
    })?;
    let start = match &args.resume {
        Some(p) => Some(QLearn::load(p)?),
        None => None,
    };
    let command = format!(
        "weir train --scenarios {} --episodes {} --seed {} --jitter {} --teacher-rate {} --reward {} --out {}",
        args.scenarios.display(),
        args.episodes,
        args.seed,
        args.jitter,
        args.teacher_rate,
        format!("{:?}", args.reward).to_lowercase(),
        args.out.display()
    );
    let opts = TrainOptions {
        scenarios,
        episodes: args.episodes,
        seed: args.seed,
        jitter: args.jitter,
        teacher_rate: args.teacher_rate,
        run: weir_eval::RunOptions {
            reward: args.reward.config(),
            ..weir_eval::RunOptions::default()
        },
        command,
        ..TrainOptions::default()
    };
    let q = train_with_progress(&opts, start, args.progress_every)?;
    q.save(&args.out)?;
    println!(
        "wrote {} ({} states visited, {} episodes, {} learning steps)",
        args.out.display(),
        q.visited_states(),
        q.info().episodes,
        q.info().steps
    );
    Ok(())
}

/// Trains, printing a progress line every `every` episodes (mean of the window).
pub fn train_with_progress(
    opts: &TrainOptions,
    start: Option<QLearn>,
    every: u64,
) -> Result<QLearn> {
    let every = every.max(1);
    let mut window = (0.0, 0.0, 0u64);
    let started = std::time::Instant::now();
    let q = train(opts, start, |p| {
        window.0 += p.mean_reward;
        window.1 += p.stale_read_pct;
        window.2 += 1;
        if p.episode % every == 0 || p.episode == p.episodes {
            let k = window.2.max(1) as f64;
            println!(
                "episode {:>5}/{}  ε={:.3}  mean reward {:>8.3}  stale {:>6.2}%  states {:>5}  steps {:>8}  ticks {:>10}  {:.1}s",
                p.episode,
                p.episodes,
                p.epsilon,
                window.0 / k,
                window.1 / k,
                p.visited_states,
                p.steps,
                p.ticks,
                started.elapsed().as_secs_f64()
            );
            window = (0.0, 0.0, 0);
        }
    })
    .map_err(anyhow::Error::msg)?;
    Ok(q)
}
