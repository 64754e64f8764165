//! Trains the DQN and benchmarks it without building the whole `weir` binary (same code and
//! defaults as `weir train --policy dqn` and `weir bench`).
//!
//! ```text
//! cargo run --release -p weir-eval --example dqn -- train EPISODES SEED OUT
//! cargo run --release -p weir-eval --example dqn -- bench DQN_MODEL QLEARN_MODEL SCENARIO_DIR
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use weir_eval::{
    BenchOptions, DqnTrainOptions, PolicySpec, RunOptions, jittered_files, run_bench, train_dqn,
};
use weir_policy::{Model, PolicyKind};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("train") => {
            let episodes: u64 = args[1].parse().unwrap();
            let seed: u64 = args[2].parse().unwrap();
            let out = Path::new(&args[3]);
            let scenarios = weir_sim::load_dir("scenarios/train").unwrap();
            let opts = DqnTrainOptions {
                episodes,
                seed,
                command: format!(
                    "weir train --policy dqn --scenarios scenarios/train --episodes {episodes} --seed {seed} --jitter 0.2 --teacher-rate 0.3 --reward multi --out {}",
                    out.display()
                ),
                ..DqnTrainOptions::default()
            };
            let started = Instant::now();
            let mut window = Vec::new();
            let m = train_dqn(&opts, jittered_files(scenarios, 0.2), |p| {
                window.push(p.mean_reward);
                if p.episode.is_multiple_of(100) || p.episode == p.episodes {
                    let mean = window.iter().sum::<f64>() / window.len() as f64;
                    window.clear();
                    println!(
                        "episode {:>5}/{}  reward(100) {mean:>7.3}  ε {:.3}  loss {:.4}  updates {}  {:.1}s",
                        p.episode,
                        p.episodes,
                        p.epsilon,
                        p.loss,
                        p.updates,
                        started.elapsed().as_secs_f64()
                    );
                }
            })
            .unwrap();
            m.save(out).unwrap();
            println!(
                "wrote {} ({}) in {:.1}s",
                out.display(),
                m.describe(),
                started.elapsed().as_secs_f64()
            );
        }
        Some("bench") => {
            let dqn = Model::load(PolicyKind::Dqn, Path::new(&args[1])).unwrap();
            let q = Model::load(PolicyKind::Qlearn, Path::new(&args[2])).unwrap();
            let scenarios = weir_sim::load_dir(&args[3]).unwrap();
            let policies = args
                .get(4)
                .map_or(
                    "static,threshold+shield,shun,shun+shield,qlearn,dqn,lookahead",
                    String::as_str,
                )
                .split(',')
                .map(|p| PolicySpec::parse(p).unwrap())
                .collect();
            let opts = BenchOptions {
                scenarios,
                policies,
                seeds: vec![1, 2, 3],
                models: vec![q, dqn],
                run: RunOptions::default(),
                threads: 2,
            };
            let report = run_bench(&opts).unwrap();
            print!("{}", report.to_table());
        }
        _ => eprintln!("usage: dqn train EPISODES SEED OUT | dqn bench DQN QLEARN DIR [POLICIES]"),
    }
}
