//! Runs a few fixed routing rules over scenario files and prints how each fares, plus the
//! simulator's raw speed. A quick check that a scenario has tension (no trivial rule wins).
//!
//! `cargo run --release -p weir-sim --example calibrate -- scenarios/train scenarios/eval`

use std::time::Instant;

use weir_core::{Observation, Weights};
use weir_sim::{IntervalStats, Scenario, Simulator, load_dir};

type Rule = fn(&Observation, usize) -> Weights;

fn lagging(obs: &Observation) -> Vec<bool> {
    obs.replicas
        .iter()
        .map(|r| r.up == Some(false) || r.lag_s.value.is_none_or(|l| l > 5.0))
        .collect()
}

fn even(_: &Observation, n: usize) -> Weights {
    Weights::even(n)
}

fn threshold(obs: &Observation, n: usize) -> Weights {
    if lagging(obs).iter().any(|&b| b) {
        Weights::all_primary(n)
    } else {
        Weights::even(n)
    }
}

fn shun(obs: &Observation, n: usize) -> Weights {
    let bad = lagging(obs);
    let f: Vec<f64> = bad.iter().map(|&b| if b { 0.0 } else { 1.0 }).collect();
    if bad.len() != n {
        return Weights::even(n);
    }
    Weights::from_parts(0.0, &f)
}

fn shun_spill(obs: &Observation, n: usize) -> Weights {
    let bad = lagging(obs);
    if bad.len() != n {
        return Weights::even(n);
    }
    let f: Vec<f64> = bad.iter().map(|&b| if b { 0.0 } else { 1.0 }).collect();
    let p = if bad.iter().any(|&b| b) { 0.3 } else { 0.0 };
    Weights::from_parts(p, &f)
}

fn run(s: &Scenario, rule: Rule) -> IntervalStats {
    let mut sim = Simulator::new(s, s.seed);
    let n = sim.replica_count();
    let mut total = IntervalStats::default();
    while !sim.done() {
        let w = rule(&sim.observe(), n);
        sim.set_weights(&w);
        total.merge(&sim.run_for(s.timing.control_interval_s));
    }
    total
}

fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    let mut scenarios = Vec::new();
    for d in &dirs {
        let loaded = if d.ends_with(".toml") {
            Scenario::load(d).map(|s| vec![s])
        } else {
            load_dir(d)
        };
        match loaded {
            Ok(v) => scenarios.extend(v),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let rules: [(&str, Rule); 4] = [
        ("even", even),
        ("threshold", threshold),
        ("shun", shun),
        ("shun+30%", shun_spill),
    ];
    println!(
        "{:<36} {:<10} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7}",
        "scenario", "rule", "stale%", "fail%", "cpu", "cpuMax", "p99max", "maxLag"
    );
    for s in &scenarios {
        for (name, rule) in rules {
            let t = run(s, rule);
            println!(
                "{:<36} {:<10} {:>7.2} {:>7.2} {:>6.2} {:>6.2} {:>8.1} {:>7.1}",
                s.name,
                name,
                100.0 * t.stale_fraction(),
                100.0 * t.failed_fraction(),
                t.mean_primary_cpu(),
                t.primary_cpu_max,
                t.read_p99_max,
                t.max_lag_s
            );
        }
    }
    if let Some(s) = scenarios.iter().find(|s| s.replicas.len() == 2) {
        let mut s = s.clone();
        s.duration_s = 2_000_000.0;
        let mut sim = Simulator::new(&s, 1);
        let start = Instant::now();
        let mut sink = 0.0;
        for _ in 0..2_000_000 {
            sink += sim.step().stale_reads;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "speed: {:.2} M ticks/s (2 replicas) [{sink:.0}]",
            2.0 / secs
        );
    }
}
