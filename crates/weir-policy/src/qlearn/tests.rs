use std::path::Path;

use weir_core::{
    DecisionContext, History, Mask, Observation, Outcome, Policy, Slo, Transition, Weights,
};
use weir_shield::{Shield, ShieldConfig};
use weir_test_support::ObsBuilder;

use super::{ModelError, QConfig, QLearn};

fn decide(
    q: &mut QLearn,
    obs: &Observation,
    current: &Weights,
    mask: &dyn Mask,
) -> weir_core::Proposal {
    let h = History::with_capacity(4);
    let slo = Slo::default();
    let ctx = DecisionContext {
        obs,
        current,
        history: &h,
        slo: &slo,
        mask,
    };
    q.decide(&ctx)
}

fn feedback(q: &mut QLearn, applied: Weights, reward: f64) {
    q.learn(&Transition {
        applied,
        outcome: Outcome::default(),
        reward,
    });
}

/// Trains on a one-state problem where only "replica-1 out, primary 20%" is rewarded.
fn trained() -> QLearn {
    let mut q = QLearn::new(QConfig::default());
    q.train_mode(0.5, 3);
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let shield = Shield::new(ShieldConfig::default(), Slo::default(), 2);
    let good = Weights {
        primary: 20,
        replicas: vec![0, 80],
    };
    let current = Weights::even(2);
    for _ in 0..3000 {
        let mask = shield.mask(&obs, &current);
        let p = decide(&mut q, &obs, &current, &mask);
        let r = if p.weights == good { 0.0 } else { -1.0 };
        feedback(&mut q, p.weights, r);
    }
    q
}

#[test]
fn learns_the_rewarded_action_and_serves_it_greedily() {
    let mut q = trained();
    q.serve_mode(false);
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let p = decide(
        &mut q,
        &obs,
        &Weights::even(2),
        &weir_core::policy::AllowAll,
    );
    assert_eq!(
        p.weights,
        Weights {
            primary: 20,
            replicas: vec![0, 80]
        },
        "{}",
        p.reason
    );
    assert!(p.reason.starts_with("greedy"));
    let e = q.explain();
    assert!(e.state.contains("worst=replica-1"), "{}", e.state);
    assert_eq!(e.actions[0].weights, p.weights);
}

#[test]
fn only_allowed_actions_are_chosen() {
    let mut q = QLearn::new(QConfig::default());
    q.train_mode(1.0, 9);
    let shield = Shield::new(ShieldConfig::default(), Slo::default(), 2);
    // replica-1 is far beyond the hard limit: no action may give it weight.
    let obs = ObsBuilder::new(2).lag(0, 100.0).build();
    let current = Weights {
        primary: 0,
        replicas: vec![0, 100],
    };
    for _ in 0..200 {
        let mask = shield.mask(&obs, &current);
        let p = decide(&mut q, &obs, &current, &mask);
        assert_eq!(p.weights.replicas[0], 0);
        assert!(mask.allows(&p.weights));
    }
}

#[test]
fn unvisited_state_falls_back_to_shun() {
    let mut q = QLearn::new(QConfig::default());
    q.serve_mode(false);
    let obs = ObsBuilder::new(3).lag(1, 8.0).build();
    let p = decide(
        &mut q,
        &obs,
        &Weights::even(3),
        &weir_core::policy::AllowAll,
    );
    assert_eq!(
        p.weights,
        Weights {
            primary: 0,
            replicas: vec![50, 0, 50]
        }
    );
    assert!(p.reason.contains("fallback"));
}

#[test]
fn model_round_trips_exactly() {
    let q = trained();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    q.save(&path).unwrap();
    let back = QLearn::load(&path).unwrap();
    assert!(back.same_table(&q));
    assert!(q.visited_states() > 0);
    assert_eq!(back.to_json(), q.to_json());
}

#[test]
fn bad_model_files_give_clear_errors() {
    let p = Path::new("m.json");
    let err = QLearn::from_json("{not json", p).unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("m.json"));

    let json = trained().to_json();
    let v2 = json.replacen("\"version\":1", "\"version\":2", 1);
    let err = QLearn::from_json(&v2, p).unwrap_err();
    assert!(
        matches!(err, ModelError::WrongVersion { found: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("weir train"));

    let other = json.replacen("weir-qlearn", "something-else", 1);
    assert!(matches!(
        QLearn::from_json(&other, p).unwrap_err(),
        ModelError::WrongFormat { .. }
    ));

    let truncated = &json[..json.len() / 2];
    assert!(matches!(
        QLearn::from_json(truncated, p).unwrap_err(),
        ModelError::Corrupt { .. }
    ));

    let bad_dims = json.replacen("\"dims\":[7,", "\"dims\":[8,", 1);
    let err = QLearn::from_json(&bad_dims, p).unwrap_err();
    assert!(err.to_string().contains("dimensions"), "{err}");

    let err = QLearn::load(Path::new("/nonexistent/weir/model.json")).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }));
}

#[test]
fn switching_margin_keeps_a_tried_current_action() {
    let mut q = trained();
    q.serve_mode(false);
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let current = Weights::even(2);
    let allow = weir_core::policy::AllowAll;
    // Without a margin the learned best action wins.
    let p = decide(&mut q, &obs, &current, &allow);
    assert_eq!(
        p.weights,
        Weights {
            primary: 20,
            replicas: vec![0, 80]
        }
    );
    // With a margin wider than any difference of values, the current (tried) action is kept.
    let mut config = q.config().clone();
    config.switch_margin = 100.0;
    let mut sticky = QLearn::from_json(
        &q.to_json()
            .replace("\"switch_margin\":0.0", "\"switch_margin\":100.0"),
        Path::new("m"),
    )
    .unwrap();
    sticky.serve_mode(false);
    assert_eq!(sticky.config(), &config);
    let p = decide(&mut sticky, &obs, &current, &allow);
    assert_eq!(p.weights, current, "{}", p.reason);
    assert!(p.reason.starts_with("hold"));
}

#[test]
fn mismatched_observation_is_held_not_a_panic() {
    let mut q = trained();
    q.serve_mode(false);
    let p = decide(
        &mut q,
        &ObsBuilder::new(3).build(),
        &Weights::even(2),
        &weir_core::policy::AllowAll,
    );
    assert_eq!(p.weights, Weights::even(2));
    assert!(p.reason.contains("hold"));
}
