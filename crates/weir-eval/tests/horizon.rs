//! The receding-horizon oracle on short versions of shipped scenarios: it beats the one-step
//! lookahead and the shielded baselines, keeps the hard limits, and is deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use weir_eval::bench::episode_seed;
use weir_eval::episode::Agent;
use weir_eval::{
    BenchOptions, BenchReport, EpisodeMetrics, HORIZON, LOOKAHEAD, PolicySpec, RunOptions,
    run_bench, run_episode,
};
use weir_sim::Scenario;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The window `[start_s, start_s + duration_s)` of a shipped scenario, events shifted and
/// clipped (debug builds are slow; the full files are for the release benchmark).
fn window(rel: &str, start_s: f64, duration_s: f64) -> Scenario {
    let mut s = Scenario::load(root().join(rel)).unwrap();
    s.name = format!("{}-window", s.name);
    s.duration_s = duration_s;
    s.events.retain_mut(|e| {
        let end = e.at_s + e.duration_s - start_s;
        e.at_s = (e.at_s - start_s).max(0.0);
        e.duration_s = end - e.at_s;
        e.duration_s > 0.0 && e.at_s < duration_s
    });
    s.validate().unwrap();
    s
}

/// A replica stall, a write burst and a metrics blackout.
fn blind_burst() -> Scenario {
    window("scenarios/eval/03-blind-burst.toml", 850.0, 600.0)
}

/// Two replicas stalling one after the other.
fn double_stall() -> Scenario {
    window(
        "scenarios/eval/05-asymmetric-double-stall.toml",
        850.0,
        720.0,
    )
}

fn episode(spec: &str, scn: &Scenario, seed: u64) -> EpisodeMetrics {
    episode_with(spec, scn, seed, &RunOptions::default())
}

fn episode_with(spec: &str, scn: &Scenario, seed: u64, opts: &RunOptions) -> EpisodeMetrics {
    let agent = Agent::build(&PolicySpec::parse(spec).unwrap(), None, opts).unwrap();
    run_episode(scn, episode_seed(scn, seed), agent, opts, None).0
}

#[test]
fn horizon_beats_lookahead_and_the_shielded_baselines() {
    for scn in [blind_burst(), double_stall()] {
        for seed in [1, 2] {
            let h = episode(HORIZON, &scn, seed);
            assert_eq!(h.hard_limit_violations, 0, "{}: {h:?}", scn.name);
            assert!(h.decisions > 20);
            for other in [
                LOOKAHEAD,
                "shun+shield",
                "threshold+shield",
                "static+shield",
            ] {
                let o = episode(other, &scn, seed);
                assert!(
                    h.mean_reward >= o.mean_reward,
                    "{} seed {seed}: horizon {:.4} < {other} {:.4}",
                    scn.name,
                    h.mean_reward,
                    o.mean_reward
                );
            }
        }
    }
}

#[test]
fn horizon_is_deterministic_for_a_seed() {
    let scn = blind_burst();
    let a = episode(HORIZON, &scn, 5);
    let b = episode(HORIZON, &scn, 5);
    assert_eq!(a, b);
    let c = episode(HORIZON, &scn, 6);
    assert_ne!(a, c, "another seed should give another episode");
}

#[test]
fn the_benchmark_normalises_against_horizon_when_it_runs() {
    let scn = blind_burst();
    let specs = |names: &[&str]| {
        names
            .iter()
            .map(|n| PolicySpec::parse(n).unwrap())
            .collect::<Vec<_>>()
    };
    let opts = |names: &[&str]| BenchOptions {
        scenarios: vec![scn.clone()],
        policies: specs(names),
        seeds: vec![1],
        models: Vec::new(),
        run: RunOptions::default(),
        threads: 2,
    };
    let with = run_bench(&opts(&["static", LOOKAHEAD, HORIZON])).unwrap();
    assert_eq!(with.reference.as_deref(), Some(HORIZON));
    let all = with.summary.iter().filter(|s| s.scenario == "ALL");
    for s in all {
        if s.policy == HORIZON {
            assert!((s.score.unwrap() - 1.0).abs() < 1e-9);
        }
    }
    assert!(with.to_table().contains("reference: horizon"));
    let without = run_bench(&opts(&["static", LOOKAHEAD])).unwrap();
    assert_eq!(without.reference.as_deref(), Some(LOOKAHEAD));
}

#[test]
fn a_switch_cost_for_the_oracles_changes_their_plans_not_the_scoring() {
    let scn = double_stall();
    let costly = RunOptions {
        oracle_switch_cost: Some(10.0),
        ..RunOptions::default()
    };
    let (mut plain, mut damped) = (0, 0);
    for seed in [1, 2] {
        let p = episode(HORIZON, &scn, seed);
        let d = episode_with(HORIZON, &scn, seed, &costly);
        plain += p.weight_changes;
        damped += d.weight_changes;
        assert_eq!(d.hard_limit_violations, 0);
        // A rule does not plan: same episode, same score, whatever the oracles' cost.
        assert_eq!(
            episode("shun+shield", &scn, seed),
            episode_with("shun+shield", &scn, seed, &costly)
        );
    }
    assert!(
        damped < plain,
        "a weight change that costs 10 should make the planner move less: {damped} vs {plain}"
    );
    let report = static_and_horizon(scn, costly);
    assert_eq!(report.oracle_switch_cost, Some(10.0));
    assert!(
        report
            .to_table()
            .contains("planned with a switch cost of 10")
    );
    assert!(report.to_json().contains("\"oracle_switch_cost\": 10.0"));
}

#[test]
fn oracles_without_foresight_plan_differently_and_say_so() {
    let scn = double_stall();
    let blind = RunOptions {
        oracle_without_foresight: true,
        ..RunOptions::default()
    };
    let mut differs = false;
    for seed in [1, 2] {
        let exact = episode(HORIZON, &scn, seed);
        let b = episode_with(HORIZON, &scn, seed, &blind);
        assert_eq!(b.hard_limit_violations, 0);
        differs |= b != exact;
        // A rule does not plan: the same episode either way.
        assert_eq!(
            episode("shun+shield", &scn, seed),
            episode_with("shun+shield", &scn, seed, &blind)
        );
    }
    assert!(
        differs,
        "planning without the scripted future changed nothing"
    );
    let report = static_and_horizon(scn, blind);
    assert!(report.oracle_without_foresight);
    assert!(report.to_table().contains("planned without foresight"));
    assert!(
        report
            .to_json()
            .contains("\"oracle_without_foresight\": true")
    );
}

/// A one-seed benchmark of `static` and `horizon` on `scn` with `run`.
fn static_and_horizon(scn: Scenario, run: RunOptions) -> BenchReport {
    run_bench(&BenchOptions {
        scenarios: vec![scn],
        policies: vec![
            PolicySpec::parse("static").unwrap(),
            PolicySpec::parse(HORIZON).unwrap(),
        ],
        seeds: vec![1],
        models: Vec::new(),
        run,
        threads: 2,
    })
    .unwrap()
}
