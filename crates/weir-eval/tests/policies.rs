//! End-to-end checks of training and the benchmark on the shipped scenario files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use weir_eval::episode::Agent;
use weir_eval::{
    BenchOptions, PolicySpec, RunOptions, TrainOptions, run_bench, run_episode, train,
};
use weir_policy::{Model, QLearn};
use weir_sim::Scenario;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scenario(rel: &str) -> Scenario {
    Scenario::load(root().join(rel)).unwrap()
}

fn train_small(episodes: u64, seed: u64) -> QLearn {
    train_members(episodes, seed, 1, 1)
}

fn train_members(episodes: u64, seed: u64, members: u32, threads: usize) -> QLearn {
    let opts = TrainOptions {
        scenarios: weir_sim::load_dir(root().join("scenarios/train")).unwrap(),
        episodes,
        seed,
        members,
        threads,
        ..TrainOptions::default()
    };
    train(&opts, None, |_| {}).unwrap()
}

fn mean_reward(
    spec: &str,
    model: Option<&QLearn>,
    scn: &Scenario,
    seed: u64,
) -> weir_eval::EpisodeMetrics {
    let opts = RunOptions::default();
    let model = model.cloned().map(Model::from);
    let agent = Agent::build(&PolicySpec::parse(spec).unwrap(), model.as_ref(), &opts).unwrap();
    run_episode(scn, seed, agent, &opts, None).0
}

#[test]
fn trained_qlearn_beats_static_and_threshold_on_an_evaluation_scenario() {
    let q = train_small(300, 7);
    let scn = scenario("scenarios/eval/01-long-backup-three-replicas.toml");
    let learned = mean_reward("qlearn", Some(&q), &scn, 11);
    let fixed = mean_reward("static", None, &scn, 11);
    let seed_rule = mean_reward("threshold", None, &scn, 11);
    assert!(
        learned.mean_reward > fixed.mean_reward,
        "{learned:?} vs static {fixed:?}"
    );
    assert!(
        learned.mean_reward > seed_rule.mean_reward,
        "{learned:?} vs threshold {seed_rule:?}"
    );
    assert!(learned.stale_read_pct < fixed.stale_read_pct);
    assert!(learned.cpu_over_max_s < seed_rule.cpu_over_max_s);
    assert_eq!(learned.hard_limit_violations, 0);
}

#[test]
fn the_shipped_model_loads_and_keeps_the_hard_limits() {
    let q = QLearn::load(&root().join("models/qlearn.json")).unwrap();
    assert!(q.visited_states() > 100);
    let scn = scenario("scenarios/eval/05-asymmetric-double-stall.toml");
    let m = mean_reward("qlearn", Some(&q), &scn, 3);
    assert_eq!(m.hard_limit_violations, 0);
    let bare = mean_reward("static", None, &scn, 3);
    assert!(
        bare.hard_limit_violations > 0,
        "the watch-only shield must see static break the limits"
    );
    assert!(m.mean_reward > bare.mean_reward);
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let a = train_small(20, 5);
    let b = train_small(20, 5);
    let c = train_small(20, 6);
    assert!(a.same_table(&b));
    assert_eq!(a.to_json(), b.to_json());
    assert!(!a.same_table(&c));
    // An ensemble is the same whatever the number of threads, and differs from one member.
    let e1 = train_members(10, 5, 3, 1);
    let e2 = train_members(10, 5, 3, 2);
    assert!(e1.same_table(&e2));
    assert!(!e1.same_table(&train_members(10, 5, 1, 1)));
    assert_eq!(e1.info().episodes, 30);
}

#[test]
fn benchmark_output_is_byte_identical_whatever_the_threads() {
    let scn = scenario("scenarios/demo.toml");
    let model = train_small(10, 1);
    let mut opts = BenchOptions {
        scenarios: vec![scn],
        policies: ["static", "threshold", "shun", "qlearn", "lookahead"]
            .iter()
            .map(|p| PolicySpec::parse(p).unwrap())
            .collect(),
        seeds: vec![1, 2],
        models: vec![model.into()],
        run: RunOptions::default(),
        threads: 1,
    };
    let one = run_bench(&opts).unwrap();
    opts.threads = 2;
    let two = run_bench(&opts).unwrap();
    assert_eq!(one.to_json(), two.to_json());
    assert_eq!(one.to_csv(), two.to_csv());
    assert_eq!(one.to_table(), two.to_table());
    // The score is 0 for static and 1 for the oracle by construction.
    let all: Vec<_> = one.summary.iter().filter(|s| s.scenario == "ALL").collect();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].score, Some(0.0));
    assert_eq!(all[4].score, Some(1.0));
    assert_eq!(one.runs.len(), 10);
}

#[test]
fn benchmark_refuses_qlearn_without_a_model() {
    let opts = BenchOptions {
        scenarios: vec![scenario("scenarios/demo.toml")],
        policies: vec![PolicySpec::parse("qlearn").unwrap()],
        seeds: vec![1],
        models: Vec::new(),
        run: RunOptions::default(),
        threads: 1,
    };
    let err = run_bench(&opts).unwrap_err().to_string();
    assert!(err.contains("weir train"), "{err}");
    assert!(
        PolicySpec::parse("magic")
            .unwrap_err()
            .to_string()
            .contains("unknown policy")
    );
}

#[test]
fn lookahead_sees_the_truth_and_avoids_the_stalled_replica() {
    let scn = scenario("scenarios/demo.toml");
    let oracle = mean_reward("lookahead", None, &scn, 1);
    let fixed = mean_reward("static", None, &scn, 1);
    assert!(
        oracle.stale_read_pct < fixed.stale_read_pct / 5.0,
        "{oracle:?} vs {fixed:?}"
    );
    assert_eq!(oracle.hard_limit_violations, 0);
}

/// Holds whatever is in force; when `unsure`, says it fell back on shun and proposes shun's
/// weights instead (the way a learned policy's fallback reports itself).
struct Scripted {
    unsure: bool,
    last: weir_core::Explanation,
}

impl weir_core::Policy for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn decide(&mut self, ctx: &weir_core::DecisionContext<'_>) -> weir_core::Proposal {
        let weights = if self.unsure {
            weir_policy::ShunPolicy::weights(ctx.obs, ctx.slo).0
        } else {
            ctx.current.clone()
        };
        self.last = weir_core::Explanation {
            policy: "scripted".into(),
            state: String::new(),
            actions: Vec::new(),
            fallback: self.unsure.then(|| "unsure".to_string()),
        };
        weir_core::Proposal::new(weights, "scripted")
    }

    fn explain(&self) -> weir_core::Explanation {
        self.last.clone()
    }
}

fn scripted(unsure: bool, scn: &Scenario, seed: u64) -> weir_eval::EpisodeMetrics {
    let agent: Agent = Agent {
        policy: Box::new(Scripted {
            unsure,
            last: weir_core::Explanation::default(),
        }),
        oracle: None,
        shielded: true,
    };
    run_episode(scn, seed, agent, &RunOptions::default(), None).0
}

#[test]
fn weight_changes_are_attributed_to_the_policy_the_shield_or_the_fallback() {
    let scn = scenario("scenarios/eval/05-asymmetric-double-stall.toml");
    // A policy that always holds: every change is the shield's (stalls past the hard limit).
    let hold = scripted(false, &scn, 3);
    assert!(hold.weight_changes > 0, "{hold:?}");
    assert_eq!(hold.changes_by_shield, hold.weight_changes, "{hold:?}");
    assert_eq!(hold.changes_by_fallback, 0, "{hold:?}");
    // Always fallen back on shun: every change the shield did not alter is the fallback's.
    let unsure = scripted(true, &scn, 3);
    assert!(unsure.changes_by_fallback > 0, "{unsure:?}");
    assert_eq!(
        unsure.changes_by_fallback + unsure.changes_by_shield,
        unsure.weight_changes,
        "{unsure:?}"
    );
    // Shun itself, the same moves without the fallback: the policy's own, or trimmed by the
    // shield (the primary's cap during the double stall).
    let shun = mean_reward("shun+shield", None, &scn, 3);
    assert_eq!(shun.weight_changes, unsure.weight_changes);
    assert_eq!(shun.changes_by_shield, unsure.changes_by_shield);
    assert_eq!(shun.changes_by_fallback, 0, "{shun:?}");
    assert!(shun.changes_by_shield > 0, "{shun:?}");
    assert!(shun.changes_by_shield < shun.weight_changes, "{shun:?}");
}
