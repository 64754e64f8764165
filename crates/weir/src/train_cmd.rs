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
        "weir train --scenarios {} --episodes {} --members {} --seed {} --jitter {} --teacher-rate {} --reward {} --out {}",
        args.scenarios.display(),
        args.episodes,
        args.members,
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
        members: args.members,
        threads: args.threads,
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

/// Trains, printing a progress line every `every` episodes (across all ensemble members; the
/// means are over the episodes since the previous line).
pub fn train_with_progress(
    opts: &TrainOptions,
    start: Option<QLearn>,
    every: u64,
) -> Result<QLearn> {
    let every = every.max(1);
    let total = opts.episodes * u64::from(opts.members.max(1));
    let mut done = 0u64;
    let mut window = (0.0, 0.0, 0u64);
    let (mut steps, mut ticks) = (
        vec![0u64; opts.members.max(1) as usize],
        vec![0u64; opts.members.max(1) as usize],
    );
    let started = std::time::Instant::now();
    let q = train(opts, start, |p| {
        done += 1;
        window.0 += p.mean_reward;
        window.1 += p.stale_read_pct;
        window.2 += 1;
        if let (Some(s), Some(t)) = (
            steps.get_mut(p.member as usize),
            ticks.get_mut(p.member as usize),
        ) {
            *s = p.steps;
            *t = p.ticks;
        }
        if done.is_multiple_of(every) || done == total {
            let k = window.2.max(1) as f64;
            println!(
                "episodes {:>6}/{}  ({} members)  ε≈{:.3}  mean reward {:>8.3}  stale {:>6.2}%  steps {:>9}  ticks {:>11}  {:.1}s",
                done,
                total,
                opts.members.max(1),
                p.epsilon,
                window.0 / k,
                window.1 / k,
                steps.iter().sum::<u64>(),
                ticks.iter().sum::<u64>(),
                started.elapsed().as_secs_f64()
            );
            window = (0.0, 0.0, 0);
        }
    })?;
    Ok(q)
}
