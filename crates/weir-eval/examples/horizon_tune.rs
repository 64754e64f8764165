//! Measures the receding-horizon oracle for several search settings: mean reward per
//! scenario and time per episode, against the one-step lookahead. Episodes run one after the
//! other on one thread; the time reported is this process's CPU time per episode (user +
//! system, from `/proc/self/stat`, so other load on the machine does not inflate it), with
//! the wall time next to it.
//!
//! `cargo run --release -p weir-eval --example horizon_tune -- scenarios/eval 1,2,3 5:8:2 4:8:2`
//! (settings are `horizon:beam:per_first[:discount]`; none given = the default).

use std::time::Instant;

use weir_eval::bench::episode_seed;
use weir_eval::episode::Agent;
use weir_eval::oracle::Lookahead;
use weir_eval::{Horizon, HorizonConfig, OracleSlot, RunOptions, run_episode};

/// CPU seconds used by this process so far (Linux; 0 elsewhere).
fn cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest starts at field 3 (state): utime = field 14 → index 11, stime → 12.
    (ticks(11) + ticks(12)) / 100.0
}

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
    let scenarios = if std::path::Path::new(dir).is_dir() {
        weir_sim::load_dir(dir)?
    } else {
        vec![weir_sim::Scenario::load(dir)?]
    };
    let opts = RunOptions::default();
    println!("| scenario | policy | mean reward | breaches | CPU s/episode | wall s/episode |");
    println!("|---|---|---:|---:|---:|---:|");
    for scn in &scenarios {
        let mut entrants: Vec<(String, Option<HorizonConfig>)> = vec![("lookahead".into(), None)];
        for c in &configs {
            entrants.push((
                format!(
                    "horizon {}:{}:{}:{}",
                    c.horizon, c.beam, c.per_first, c.discount
                ),
                Some(c.clone()),
            ));
        }
        for (label, config) in &entrants {
            let (t0, c0) = (Instant::now(), cpu_s());
            let mut reward = 0.0;
            let mut breaches = 0;
            for &seed in &seeds {
                let slot: OracleSlot = OracleSlot::default();
                let policy: Box<dyn weir_core::Policy> = match config {
                    Some(c) => Box::new(Horizon::new(opts.reward.clone(), c.clone(), slot.clone())),
                    None => Box::new(Lookahead::new(opts.reward.clone(), slot.clone())),
                };
                let agent = Agent {
                    policy,
                    oracle: Some(slot),
                    shielded: true,
                };
                let (m, _) = run_episode(scn, episode_seed(scn, seed), agent, &opts, None);
                reward += m.mean_reward;
                breaches += m.hard_limit_violations;
            }
            let k = seeds.len() as f64;
            println!(
                "| {} | {label} | {:.4} | {breaches} | {:.2} | {:.2} |",
                scn.name,
                reward / k,
                (cpu_s() - c0) / k,
                t0.elapsed().as_secs_f64() / k
            );
        }
    }
    Ok(())
}
