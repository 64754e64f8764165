//! Measures the receding-horizon oracle for several search settings: mean reward per
//! scenario and wall time per episode (one core), against the one-step lookahead.
//!
//! `cargo run --release -p weir-eval --example horizon_tune -- scenarios/eval 1,2,3 5:8:2 4:8:2`
//! (settings are `horizon:beam:per_first[:discount]`).

use std::time::Instant;

use weir_eval::bench::episode_seed;
use weir_eval::episode::Agent;
use weir_eval::{Horizon, HorizonConfig, PolicySpec, RunOptions, run_episode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map_or("scenarios/eval", String::as_str);
    let seeds: Vec<u64> = args
        .get(1)
        .map_or("1,2,3", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut configs = Vec::new();
    for a in args.iter().skip(2) {
        let p: Vec<&str> = a.split(':').collect();
        let get = |i: usize, d: &str| p.get(i).copied().unwrap_or(d).to_string();
        configs.push(HorizonConfig {
            horizon: get(0, "5").parse()?,
            beam: get(1, "8").parse()?,
            per_first: get(2, "2").parse()?,
            discount: get(3, "1").parse()?,
        });
    }
    if configs.is_empty() {
        configs.push(HorizonConfig::default());
    }
    let scenarios = weir_sim::load_dir(dir)?;
    let opts = RunOptions::default();
    println!("| scenario | policy | mean reward | breaches | s/episode |");
    println!("|---|---|---:|---:|---:|");
    for scn in &scenarios {
        let mut entrants: Vec<(String, Box<dyn Fn() -> Agent>)> = Vec::new();
        for name in ["lookahead", "horizon"] {
            if name == "horizon" {
                break;
            }
            let spec = PolicySpec::parse(name)?;
            let o = opts.clone();
            entrants.push((
                name.to_string(),
                Box::new(move || Agent::build(&spec, None, &o).expect("agent")),
            ));
        }
        for c in &configs {
            let c = c.clone();
            let reward = opts.reward.clone();
            entrants.push((
                format!(
                    "horizon {}:{}:{}:{}",
                    c.horizon, c.beam, c.per_first, c.discount
                ),
                Box::new(move || {
                    let (h, slot) = Horizon::with_slot(reward.clone(), c.clone());
                    Agent {
                        policy: Box::new(h),
                        oracle: Some(slot),
                        shielded: true,
                    }
                }),
            ));
        }
        for (label, make) in &entrants {
            let t0 = Instant::now();
            let mut reward = 0.0;
            let mut breaches = 0;
            for &seed in &seeds {
                let (m, _) = run_episode(scn, episode_seed(scn, seed), make(), &opts, None);
                reward += m.mean_reward;
                breaches += m.hard_limit_violations;
            }
            let k = seeds.len() as f64;
            println!(
                "| {} | {label} | {:.4} | {breaches} | {:.2} |",
                scn.name,
                reward / k,
                t0.elapsed().as_secs_f64() / k
            );
        }
    }
    Ok(())
}
