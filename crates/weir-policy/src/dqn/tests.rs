use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use weir_core::policy::AllowAll;
use weir_core::{
    DecisionContext, History, Mask, Observation, Outcome, Policy, Proposal, Slo, Transition,
    Weights,
};
use weir_shield::{Shield, ShieldConfig};
use weir_test_support::ObsBuilder;

use super::actions::{HOLD, N_ACTIONS, label};
use super::features::N_FEATURES;
use super::{Dqn, DqnConfig, DqnModel, DqnModelError, FeatureRange};

fn decide(p: &mut Dqn, obs: &Observation, current: &Weights, mask: &dyn Mask) -> Proposal {
    let h = History::with_capacity(4);
    let slo = Slo::default();
    p.decide(&DecisionContext {
        obs,
        current,
        history: &h,
        slo: &slo,
        mask,
    })
}

fn small() -> DqnConfig {
    DqnConfig {
        hidden: vec![16],
        warmup: 64,
        batch: 32,
        replay: 2000,
        train_every: 1,
        target_every: 50,
        learning_rate: 3e-3,
        ..DqnConfig::default()
    }
}

/// Trains on a one-state problem where only "p=20, worst out" is rewarded.
fn trained(seed: u64) -> Dqn {
    let mut p = Dqn::untrained(small(), seed).unwrap();
    p.train_mode(0.5, seed).unwrap();
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let shield = Shield::new(ShieldConfig::default(), Slo::default(), 2);
    let good = Weights {
        primary: 20,
        replicas: vec![0, 80],
    };
    let current = Weights::even(2);
    for _ in 0..600 {
        let mask = shield.mask(&obs, &current);
        let prop = decide(&mut p, &obs, &current, &mask);
        let r = if prop.weights == good { 0.0 } else { -1.0 };
        p.learn(&Transition {
            applied: prop.weights,
            outcome: Outcome::default(),
            reward: r,
        });
    }
    assert!(p.error().is_none(), "{:?}", p.error());
    p.serve_mode().unwrap();
    p
}

#[test]
fn learns_the_rewarded_action_and_serves_it_greedily() {
    let mut p = trained(3);
    assert!(p.model().unwrap().info.episodes == 0);
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    // Served under the same mask as in training (an action never allowed there was never
    // learned).
    let shield = Shield::new(ShieldConfig::default(), Slo::default(), 2);
    let mask = shield.mask(&obs, &Weights::even(2));
    let prop = decide(&mut p, &obs, &Weights::even(2), &mask);
    assert_eq!(
        prop.weights,
        Weights {
            primary: 20,
            replicas: vec![0, 80]
        },
        "{}",
        prop.reason
    );
    let e = p.explain();
    assert_eq!(e.policy, "dqn");
    assert!(e.fallback.is_none());
    assert!(e.state.contains("worst=replica-1"), "{}", e.state);
    assert_eq!(e.actions[0].weights, prop.weights);
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let a = trained(7).model().unwrap().to_bytes();
    let b = trained(7).model().unwrap().to_bytes();
    assert!(a == b, "same seed, different model files");
    let c = trained(8).model().unwrap().to_bytes();
    assert!(a != c);
}

/// A mask that allows only the listed targets.
struct Only(Vec<Weights>);

impl Mask for Only {
    fn allows(&self, t: &Weights) -> bool {
        self.0.contains(t)
    }
}

#[test]
fn never_chooses_a_masked_action_and_holds_within_the_margin() {
    let mut p = Dqn::untrained(DqnConfig::default(), 1).unwrap();
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let current = Weights::even(2);
    let allowed = Weights {
        primary: 30,
        replicas: vec![35, 35],
    };
    let prop = decide(&mut p, &obs, &current, &Only(vec![allowed.clone()]));
    assert_eq!(prop.weights, allowed, "{}", prop.reason);
    // Nothing allowed: hold.
    let prop = decide(&mut p, &obs, &current, &Only(vec![]));
    assert_eq!(prop.weights, current);
    assert_eq!(prop.action, None);
    // An untrained network's values are all near 0: a large margin keeps the weights.
    let cfg = DqnConfig {
        switch_margin: 1e6,
        ..DqnConfig::default()
    };
    let mut p = Dqn::untrained(cfg, 1).unwrap();
    let prop = decide(&mut p, &obs, &current, &AllowAll);
    assert_eq!(prop.weights, current);
    assert_eq!(prop.action, Some(HOLD), "{}", prop.reason);
    assert!(prop.reason.starts_with("hold"), "{}", prop.reason);
}

/// Margin 0 outside the dwell (the network's best move is taken), an unbeatable one inside,
/// for three decisions.
fn strict_dwell() -> DqnConfig {
    DqnConfig {
        switch_margin: 0.0,
        dwell: 3,
        dwell_margin: 1e6,
        // The dwell alone: the return guard would end it for the replica it leaves idle.
        return_after: 0,
        ..DqnConfig::default()
    }
}

#[test]
fn a_minimum_dwell_holds_after_a_change_until_a_replica_changes_state() {
    let cfg = strict_dwell();
    let lagging = ObsBuilder::new(2).lag(0, 6.0).build();
    let recovered = ObsBuilder::new(2).build();
    let a = Weights::even(2);
    // What an untrained network initialised from `seed` proposes with no dwell (its first
    // decision). The test needs one that moves from `a`, would move on from there while
    // replica-1 lags, and would move elsewhere once it recovers: the first such seed (the
    // search is deterministic), so every assertion below is about the dwell, not about luck.
    let moves = |seed: u64, obs: &Observation, from: &Weights| {
        let mut free = Dqn::untrained(cfg.clone(), seed).unwrap();
        decide(&mut free, obs, from, &AllowAll).weights
    };
    let (seed, b) = (1..200)
        .map(|seed| (seed, moves(seed, &lagging, &a)))
        .find(|(seed, b)| {
            *b != a && moves(*seed, &lagging, b) != *b && moves(*seed, &recovered, b) != *b
        })
        .expect("some initialisation moves");

    let mut p = Dqn::untrained(cfg.clone(), seed).unwrap();
    assert_eq!(decide(&mut p, &lagging, &a, &AllowAll).weights, b);
    for i in 0..3 {
        let prop = decide(&mut p, &lagging, &b, &AllowAll);
        assert_eq!(prop.weights, b, "decision {i} after the change");
        assert!(prop.reason.contains("dwell"), "{}", prop.reason);
    }
    assert_ne!(
        decide(&mut p, &lagging, &b, &AllowAll).weights,
        b,
        "the dwell is over"
    );
    // A new change, then news: replica-1 recovers. The dwell does not delay the answer.
    let mut p = Dqn::untrained(cfg.clone(), seed).unwrap();
    assert_eq!(decide(&mut p, &lagging, &a, &AllowAll).weights, b);
    assert_eq!(decide(&mut p, &lagging, &b, &AllowAll).weights, b);
    let prop = decide(&mut p, &recovered, &b, &AllowAll);
    assert_eq!(prop.weights, moves(seed, &recovered, &b), "{}", prop.reason);
    assert!(!prop.reason.contains("dwell"), "{}", prop.reason);
    // The news ended the dwell, not just one decision of it: with the weights still at `b`
    // (the move was not applied) the next decision answers with the small margin too.
    let prop = decide(&mut p, &recovered, &b, &AllowAll);
    assert_eq!(prop.weights, moves(seed, &recovered, &b), "{}", prop.reason);
    assert!(!prop.reason.contains("dwell"), "{}", prop.reason);
}

/// A shield-like mask: refuses any target more than `max` points from `current`, and says so.
struct StepLimit {
    current: Weights,
    max: u32,
}

impl Mask for StepLimit {
    fn allows(&self, t: &Weights) -> bool {
        self.current.max_step(t) <= self.max
    }

    fn max_step(&self) -> Option<u32> {
        Some(self.max)
    }
}

#[test]
fn far_targets_are_offered_as_the_step_the_limit_allows() {
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let current = Weights {
        primary: 50,
        replicas: vec![0, 50],
    };
    let mask = StepLimit {
        current: current.clone(),
        max: 10,
    };
    let h = History::with_capacity(2);
    let slo = Slo::default();
    let f = super::features::features(&DecisionContext {
        obs: &obs,
        current: &current,
        history: &h,
        slo: &slo,
        mask: &mask,
    });
    let targets = super::actions::candidates(2, f.worst, f.second, &current);
    let index = |l: &str| (0..N_ACTIONS).find(|&a| label(a) == l).unwrap();

    // A model trained before the option existed: far targets stay masked.
    let old = DqnConfig {
        step_limit: false,
        ..DqnConfig::default()
    };
    let mut p = Dqn::untrained(old, 1).unwrap();
    decide(&mut p, &obs, &current, &mask);
    let e = p.explain();
    // (The explanation lists the best 12, allowed ones first: few are within 10 points.)
    assert!(e.actions.iter().any(|a| !a.allowed));
    for a in &e.actions {
        assert_eq!(a.weights, targets[index(&a.label)]);
        assert_eq!(a.allowed, current.max_step(&a.weights) <= 10, "{}", a.label);
    }

    // With it, every action is the step towards its target, and every step is allowed.
    let mut p = Dqn::untrained(DqnConfig::default(), 1).unwrap();
    let prop = decide(&mut p, &obs, &current, &mask);
    let e = p.explain();
    assert_eq!(e.actions.len(), 12);
    for a in &e.actions {
        let target = &targets[index(&a.label)];
        assert_eq!(a.weights, current.step_toward(target, 10), "{}", a.label);
        assert!(a.allowed, "{}", a.label);
    }
    assert!(
        e.actions
            .iter()
            .any(|a| a.weights != targets[index(&a.label)]),
        "some far target was cut to a step"
    );
    assert!(mask.allows(&prop.weights));
    // A mask without a step limit leaves the targets as they are.
    decide(&mut p, &obs, &current, &AllowAll);
    for a in &p.explain().actions {
        assert_eq!(a.weights, targets[index(&a.label)]);
    }
}

#[test]
fn the_dwell_does_not_hold_back_the_next_step_of_a_move_the_limit_cut_short() {
    let cfg = strict_dwell();
    let lagging = ObsBuilder::new(2).lag(0, 6.0).build();
    let limit = |w: &Weights| StepLimit {
        current: w.clone(),
        max: 5,
    };
    let a = Weights::even(2);
    // What an untrained network initialised from `seed` does from `from`, free of any dwell.
    let free = |seed: u64, from: &Weights| {
        let mut p = Dqn::untrained(cfg.clone(), seed).unwrap();
        decide(&mut p, &lagging, from, &limit(from))
    };
    // The first seed (a deterministic search) whose network picks an action at `a` that the
    // limit cuts short, and the same action again from the step it led to.
    let (seed, first, second) = (1..300)
        .map(|seed| {
            let first = free(seed, &a);
            let second = free(seed, &first.weights);
            (seed, first, second)
        })
        .find(|(_, first, second)| {
            first.weights != a
                && first.action.is_some_and(|x| x != HOLD)
                && second.action == first.action
                && second.weights != first.weights
        })
        .expect("some initialisation keeps moving");

    let mut p = Dqn::untrained(cfg.clone(), seed).unwrap();
    assert_eq!(
        decide(&mut p, &lagging, &a, &limit(&a)).weights,
        first.weights
    );
    let b = first.weights;
    let prop = decide(&mut p, &lagging, &b, &limit(&b));
    assert_eq!(prop.weights, second.weights, "{}", prop.reason);
    assert!(!prop.reason.contains("dwell"), "{}", prop.reason);
    // (Without the continuation rule the dwell, margin 1e6, would have held it.)
}

#[test]
fn falls_back_to_shun_out_of_distribution_or_blind() {
    let mut model = DqnModel::untrained(DqnConfig::default(), 1).unwrap();
    // Pretend training only saw two-replica clusters with every replica healthy.
    let obs = ObsBuilder::new(2).build();
    let x = {
        let h = History::with_capacity(2);
        let slo = Slo::default();
        let current = Weights::even(2);
        super::features::features(&DecisionContext {
            obs: &obs,
            current: &current,
            history: &h,
            slo: &slo,
            mask: &AllowAll,
        })
        .x
    };
    model.ranges = FeatureRange {
        min: x.to_vec(),
        max: x.to_vec(),
    };
    let mut p = Dqn::new(model);
    // In range: the network decides.
    decide(&mut p, &obs, &Weights::even(2), &AllowAll);
    assert!(p.explain().fallback.is_none());
    // A lag far beyond anything seen: shun decides, and says why.
    let lagging = ObsBuilder::new(2).lag(0, 12.0).build();
    let prop = decide(&mut p, &lagging, &Weights::even(2), &AllowAll);
    assert_eq!(
        prop.weights,
        Weights {
            primary: 0,
            replicas: vec![0, 100]
        }
    );
    let why = p.explain().fallback.unwrap();
    assert!(why.contains("worst_lag"), "{why}");
    assert!(
        prop.reason.starts_with("fallback to shun"),
        "{}",
        prop.reason
    );
    // Nothing known at all.
    let blank = ObsBuilder::new(2).blank().build();
    decide(&mut p, &blank, &Weights::even(2), &AllowAll);
    assert!(p.explain().fallback.unwrap().contains("nothing known"));
    assert_eq!(p.fallbacks(), 2);
}

#[test]
fn handles_any_replica_count() {
    let mut p = Dqn::untrained(DqnConfig::default(), 2).unwrap();
    for n in 1..=6 {
        let obs = ObsBuilder::new(n).lag(0, 8.0).build();
        let prop = decide(&mut p, &obs, &Weights::even(n), &AllowAll);
        assert_eq!(prop.weights.replicas.len(), n);
        assert_eq!(prop.weights.total(), Weights::TOTAL);
    }
    assert_eq!(label(N_ACTIONS - 1), "hold");
}

// ---- model file ----

fn trained_model() -> DqnModel {
    trained(11).model().unwrap()
}

#[test]
fn model_round_trips_with_the_same_outputs() {
    let m = trained_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dqn.safetensors");
    m.save(&path).unwrap();
    let back = DqnModel::load(&path).unwrap();
    assert_eq!(back.config, m.config);
    assert_eq!(back.ranges, m.ranges);
    assert!(back.ranges.is_set());
    assert_eq!(back.info, m.info);
    for k in 0..5 {
        let x: Vec<f32> = (0..N_FEATURES)
            .map(|j| ((j + k) % 4) as f32 * 0.5)
            .collect();
        assert_eq!(m.net.q(&x).unwrap(), back.net.q(&x).unwrap());
    }
    assert_eq!(back.to_bytes(), m.to_bytes());
}

#[test]
fn an_ensemble_serves_the_mean_of_its_networks_and_keeps_it_through_a_file() {
    // Two hidden layers, so the block-diagonal middle is exercised; untrained members
    // differ by seed, trained ones by their ranges.
    let two = DqnConfig {
        hidden: vec![8, 6],
        ..small()
    };
    let members: Vec<DqnModel> = (1..=3)
        .map(|seed| DqnModel::untrained(two.clone(), seed).unwrap())
        .collect();
    let merged = DqnModel::ensemble(&members, "merged".into()).unwrap();
    assert_eq!(merged.config.hidden, vec![24, 18]);
    assert_eq!(merged.config.members, 3);
    assert!(
        merged.describe().starts_with("mean of 3 networks"),
        "{}",
        merged.describe()
    );
    let mean_of = |ms: &[DqnModel], x: &[f32]| -> Vec<f32> {
        let qs: Vec<Vec<f32>> = ms.iter().map(|m| m.net.q(x).unwrap()).collect();
        (0..N_ACTIONS)
            .map(|a| qs.iter().map(|q| q[a]).sum::<f32>() / ms.len() as f32)
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ensemble.safetensors");
    merged.save(&path).unwrap();
    let back = DqnModel::load(&path).unwrap();
    assert_eq!(back.config, merged.config);
    for k in 0..6 {
        let x: Vec<f32> = (0..N_FEATURES)
            .map(|j| ((j * 7 + k * 3) % 11) as f32 * 0.3 - 1.2)
            .collect();
        let want = mean_of(&members, &x);
        for got in [merged.net.q(&x).unwrap(), back.net.q(&x).unwrap()] {
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
        // No member alone gives the mean (the test would pass with one member's copy).
        assert!(members.iter().any(|m| m.net.q(&x).unwrap() != want));
    }
    // Ensembles of ensembles average everything, with equal weight.
    let nested = DqnModel::ensemble(&[merged.clone(), merged.clone()], "twice".into()).unwrap();
    assert_eq!(nested.config.members, 6);
    let x = vec![0.5f32; N_FEATURES];
    for (g, w) in nested.net.q(&x).unwrap().iter().zip(mean_of(&members, &x)) {
        assert!((g - w).abs() < 1e-5);
    }
    // Ranges are the union of the members'.
    let a = trained_model();
    let mut b = a.clone();
    b.ranges.min[0] -= 3.0;
    b.ranges.max[1] += 2.0;
    let both = DqnModel::ensemble(&[a.clone(), b.clone()], "ranges".into()).unwrap();
    assert_eq!(both.ranges.min[0], b.ranges.min[0]);
    assert_eq!(both.ranges.max[1], b.ranges.max[1]);
    assert_eq!(both.ranges.min[2], a.ranges.min[2]);
    // Networks that do not fit together are refused, saying why.
    let other = DqnModel::untrained(small(), 1).unwrap();
    let e = DqnModel::ensemble(&[members[0].clone(), other], "x".into()).unwrap_err();
    assert!(e.to_string().contains("network 1's configuration"), "{e}");
    let e = DqnModel::ensemble(&[], "x".into()).unwrap_err();
    assert!(e.to_string().contains("no networks"), "{e}");
    let mut flat = members[0].clone();
    flat.net = super::net::Net::from_layers(flat.net.layers()[..1].to_vec());
    let e = DqnModel::ensemble(&[flat.clone(), flat], "x".into()).unwrap_err();
    assert!(e.to_string().contains("needs a hidden layer"), "{e}");
}

/// Re-serialises `bytes` after `edit` changed its tensors or its metadata text.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>, &mut String),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().as_ref().unwrap()["weir"].clone();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let mut h = HashMap::new();
    h.insert("weir".to_string(), meta);
    safetensors::serialize(views, Some(h)).unwrap()
}

fn load_err(bytes: &[u8]) -> (DqnModelError, String) {
    let e = DqnModel::from_bytes(bytes, Path::new("models/bad.safetensors")).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("models/bad.safetensors"), "{s}");
    (e, s)
}

#[test]
fn every_corruption_is_an_error_naming_the_file_and_the_problem() {
    let good = trained_model().to_bytes();
    // Not safetensors at all.
    let (_, s) = load_err(b"{\"format\":\"weir-qlearn\"}");
    assert!(s.contains("not a safetensors file"), "{s}");
    // Truncated.
    let (_, s) = load_err(&good[..good.len() / 2]);
    assert!(s.contains("not a safetensors file"), "{s}");
    // Wrong version.
    let b = rewrite(&good, |_, m| {
        *m = m.replace("\"version\":1", "\"version\":9")
    });
    let (e, s) = load_err(&b);
    assert!(
        matches!(e, DqnModelError::WrongVersion { found: 9, .. }),
        "{s}"
    );
    // Another format.
    let b = rewrite(&good, |_, m| *m = m.replace("weir-dqn", "other"));
    assert!(matches!(load_err(&b).0, DqnModelError::WrongFormat { .. }));
    // Bad metadata: not JSON, a missing field, features of another build.
    let b = rewrite(&good, |_, m| *m = "{not json".to_string());
    assert!(load_err(&b).1.contains("not JSON"));
    let b = rewrite(&good, |_, m| {
        *m = m.replace("\"hidden\"", "\"hidden_sizes\"")
    });
    assert!(load_err(&b).1.contains("metadata"));
    let b = rewrite(&good, |_, m| *m = m.replace("worst_lag", "worst_lag_ms"));
    assert!(load_err(&b).1.contains("features"));
    // A missing tensor.
    let b = rewrite(&good, |t, _| t.retain(|(n, _, _)| n != "l1.bias"));
    let (_, s) = load_err(&b);
    assert!(s.contains("missing tensor `l1.bias`"), "{s}");
    // A wrong shape.
    let b = rewrite(&good, |t, _| {
        for (n, shape, _) in t.iter_mut() {
            if n == "l0.weight" {
                shape.swap(0, 1);
            }
        }
    });
    let (_, s) = load_err(&b);
    assert!(s.contains("l0.weight") && s.contains("shape"), "{s}");
    // A non-finite weight.
    let b = rewrite(&good, |t, _| {
        for (n, _, data) in t.iter_mut() {
            if n == "l0.bias" {
                data[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
    });
    assert!(load_err(&b).1.contains("NaN"));
    // No metadata at all.
    let st = SafeTensors::deserialize(&good).unwrap();
    let views = st.tensors();
    let b = safetensors::serialize(views, None).unwrap();
    assert!(load_err(&b).1.contains("metadata"));
    // A missing file names the file.
    let e = DqnModel::load(Path::new("/nonexistent/dqn.safetensors")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dqn.safetensors"));
}

#[test]
fn a_surprise_hands_the_next_decisions_to_the_shun_rule() {
    let cfg = DqnConfig {
        surprise_margin: 50.0,
        surprise_hold: 3,
        switch_margin: 0.0,
        dwell: 0,
        ..DqnConfig::default()
    };
    let obs = ObsBuilder::new(2).lag(0, 6.0).build();
    let shunned = crate::ShunPolicy::weights(&obs, &Slo::default()).0;
    let outcome = |w: &Weights, reward: f64| Transition {
        applied: w.clone(),
        outcome: Outcome::default(),
        reward,
    };
    let mut p = Dqn::untrained(cfg.clone(), 1).unwrap();
    let mut current = Weights::even(2);
    let first = decide(&mut p, &obs, &current, &AllowAll);
    assert!(p.explain().fallback.is_none());
    // An outcome near an untrained network's values (all near 0) is no surprise.
    p.learn(&outcome(&first.weights, -1.0));
    current = first.weights;
    let prop = decide(&mut p, &obs, &current, &AllowAll);
    assert!(p.explain().fallback.is_none(), "{}", prop.reason);
    // One far worse than predicted: the rule decides for `surprise_hold` decisions.
    p.learn(&outcome(&prop.weights, -1000.0));
    current = prop.weights;
    for left in (0..3).rev() {
        let prop = decide(&mut p, &obs, &current, &AllowAll);
        let why = p.explain().fallback.expect("the surprise fallback");
        assert!(why.starts_with("surprise"), "{why}");
        assert!(why.contains(&format!("for {left} more")), "{why}");
        assert_eq!(prop.weights, shunned, "{}", prop.reason);
        p.learn(&outcome(&prop.weights, -1.0));
        current = prop.weights;
    }
    let prop = decide(&mut p, &obs, &current, &AllowAll);
    assert!(p.explain().fallback.is_none(), "{}", prop.reason);
    assert_eq!(p.fallbacks(), 3);

    // `surprise_hold = 0` turns it off: the same surprise changes nothing.
    let mut p = Dqn::untrained(
        DqnConfig {
            surprise_hold: 0,
            ..cfg
        },
        1,
    )
    .unwrap();
    let prop = decide(&mut p, &obs, &Weights::even(2), &AllowAll);
    p.learn(&outcome(&prop.weights, -1000.0));
    decide(&mut p, &obs, &prop.weights, &AllowAll);
    assert!(p.explain().fallback.is_none());
}

#[test]
fn the_return_guard_gives_a_recovered_replica_reads_after_return_after_decisions() {
    // A network that never moves on its own (every move must beat `hold` by a huge margin).
    let cfg = DqnConfig {
        switch_margin: 1e9,
        dwell: 0,
        surprise_hold: 0,
        return_after: 2,
        return_lag: 0.5,
        ..DqnConfig::default()
    };
    let slo = Slo::default().max_staleness_s;
    let off = Weights {
        primary: 0,
        replicas: vec![0, 100],
    };
    let serve = |cfg: &DqnConfig, obs: &Observation, decisions: usize| {
        let mut p = Dqn::untrained(cfg.clone(), 1).unwrap();
        let mut current = off.clone();
        let mut reasons = Vec::new();
        for _ in 0..decisions {
            let prop = decide(&mut p, obs, &current, &AllowAll);
            reasons.push(prop.reason.clone());
            current = prop.weights;
        }
        (current, reasons)
    };
    let recovered = ObsBuilder::new(2)
        .lag(0, 0.2 * slo)
        .lag(1, 0.2 * slo)
        .build();
    // The first decision holds (one decision recovered is not yet `return_after`) ...
    let (w, reasons) = serve(&cfg, &recovered, 1);
    assert_eq!(w, off, "{reasons:?}");
    // ... the second gives replica 0 reads again, and says why.
    let (w, reasons) = serve(&cfg, &recovered, 2);
    assert!(w.replicas[0] > 0, "{w:?} {reasons:?}");
    assert!(reasons[1].contains("return: "), "{reasons:?}");
    assert!(
        reasons[1].contains(&recovered.replicas[0].name),
        "{reasons:?}"
    );

    // Not for a replica still behind by more than `return_lag` of the SLO, nor one down,
    // nor with the guard off: the network's hold stands.
    let behind = ObsBuilder::new(2)
        .lag(0, 0.7 * slo)
        .lag(1, 0.2 * slo)
        .build();
    assert_eq!(serve(&cfg, &behind, 4).0, off);
    let down = ObsBuilder::new(2)
        .lag(0, 0.0)
        .down(0)
        .lag(1, 0.2 * slo)
        .build();
    assert_eq!(serve(&cfg, &down, 4).0, off);
    let guard_off = DqnConfig {
        return_after: 0,
        ..cfg.clone()
    };
    assert_eq!(serve(&guard_off, &recovered, 4).0, off);
}
