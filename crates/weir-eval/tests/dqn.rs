//! The shipped DQN model (`models/dqn.safetensors`) against an untrained network and the
//! shun rule, inside the shield, on one training scenario with the same seeds: it fails if
//! training stopped producing something useful.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use weir_eval::episode::Agent;
use weir_eval::{PolicySpec, RunOptions, run_episode};
use weir_policy::{DqnConfig, DqnModel, Model, PolicyKind};
use weir_sim::Scenario;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mean_reward(spec: &str, model: Option<&Model>, scn: &Scenario, seeds: &[u64]) -> f64 {
    let opts = RunOptions::default();
    let spec = PolicySpec::parse(spec).unwrap();
    let total: f64 = seeds
        .iter()
        .map(|&seed| {
            let agent = Agent::build(&spec, model, &opts).unwrap();
            run_episode(scn, seed, agent, &opts, None).0.mean_reward
        })
        .sum();
    total / seeds.len() as f64
}

#[test]
fn the_shipped_model_beats_an_untrained_network_and_shun() {
    let path = root().join("models/dqn.safetensors");
    let trained = Model::load(PolicyKind::Dqn, &path).unwrap();
    let untrained = Model::from(DqnModel::untrained(DqnConfig::default(), 1).unwrap());
    // A stall of replica-1 during a backup, then its catch-up.
    let scn = Scenario::load(root().join("scenarios/train/01-replica-backup.toml")).unwrap();
    let seeds = [101, 102];
    let r_trained = mean_reward("dqn", Some(&trained), &scn, &seeds);
    let r_untrained = mean_reward("dqn", Some(&untrained), &scn, &seeds);
    let r_shun = mean_reward("shun+shield", None, &scn, &seeds);
    assert!(
        r_trained > r_untrained + 0.1,
        "trained {r_trained:.3} vs untrained {r_untrained:.3}"
    );
    assert!(
        r_trained > r_shun,
        "trained {r_trained:.3} vs shun+shield {r_shun:.3}"
    );
}
