//! The decision pipeline under arbitrary observations and arbitrary model files.

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use weir_controller::ControlStep;
use weir_core::Weights;
use weir_policy::{Model, PolicyKind};
use weir_shield::{Shield, ShieldConfig};

use crate::{check_weights, defaults, observation};

/// The policies a decision target drives, each with the model shipped in the binary.
const KINDS: [PolicyKind; 5] = [
    PolicyKind::Static,
    PolicyKind::Threshold,
    PolicyKind::Shun,
    PolicyKind::Qlearn,
    PolicyKind::Dqn,
];

fn shipped(kind: PolicyKind) -> Option<&'static Model> {
    static QLEARN: OnceLock<Model> = OnceLock::new();
    static DQN: OnceLock<Model> = OnceLock::new();
    let cell = match kind {
        PolicyKind::Qlearn => &QLEARN,
        PolicyKind::Dqn => &DQN,
        _ => return None,
    };
    Some(cell.get_or_init(|| {
        Model::shipped(kind)
            .expect("a learned policy ships a model")
            .expect("the shipped model loads")
    }))
}

/// Runs up to `steps` decisions of `kind` (with `model`) on `n` replicas, observations drawn
/// from `u`, checking every decision's weights.
/// Returns how many decisions it checked.
fn drive(
    u: &mut Unstructured<'_>,
    kind: PolicyKind,
    model: Option<&Model>,
    n: usize,
    steps: usize,
) -> usize {
    let Ok(policy) = kind.build(model, false) else {
        return 0;
    };
    let (slo, reward) = defaults();
    let shield = Shield::new(ShieldConfig::default(), slo.clone(), n).with_priorities(&reward);
    let mut step = ControlStep::new(policy, shield, slo.clone(), reward, Weights::even(n), 16);
    let mut at_s = 0.0;
    for done in 0..steps {
        // Time usually moves one interval on; sometimes not at all, or back (a clock step).
        let Ok(dt) = u.int_in_range(-30i16..=120) else {
            return done;
        };
        at_s += f64::from(dt);
        let Ok(obs) = observation(u, at_s, n) else {
            return done;
        };
        let out = step.step(obs.clone(), None);
        check_weights(&obs, &out.decision.weights, n, &slo);
        assert_eq!(step.current(), &out.decision.weights);
    }
    steps
}

/// Observations, including NaN, infinite, negative and stale signals, replicas down and clock
/// steps, through every policy inside the shield: every decision has valid weights and a
/// replica reported down gets none while another one is healthy.
pub fn decide(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let (Ok(k), Ok(n)) = (u.choose_index(KINDS.len()), u.int_in_range(1usize..=5)) else {
        return false;
    };
    let kind = KINDS[k];
    drive(&mut u, kind, shipped(kind), n, 12) > 0
}

/// Model files (a Q-table's JSON when the first byte is even, a network's safetensors when it
/// is odd): a file either loads or is refused with an error naming it; a model that loads
/// serves decisions with valid weights, and writes back to bytes that load again.
pub fn model(data: &[u8]) -> bool {
    let Some((first, bytes)) = data.split_first() else {
        return false;
    };
    let kind = if first % 2 == 0 {
        PolicyKind::Qlearn
    } else {
        PolicyKind::Dqn
    };
    let origin = Path::new("fuzz-model");
    let m = match Model::from_bytes(kind, bytes, origin) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                e.to_string().contains("fuzz-model"),
                "the error does not name the file: {e}"
            );
            return false;
        }
    };
    let again = Model::from_bytes(kind, &m.to_bytes(), origin)
        .unwrap_or_else(|e| panic!("a loaded model does not load after writing back: {e}"));
    assert_eq!(again.describe(), m.describe());
    // Fixed observations: the model is the input here.
    const OBS: &[u8] = &[
        3, 1, 0, 2, 9, 4, 120, 7, 3, 0, 5, 1, 200, 17, 2, 4, 3, 3, 90, 60, 1, 0, 3, 8, 250, 4, 11,
        3, 3, 3, 70, 2, 9, 1, 0, 0, 3, 44, 5, 6, 3, 150, 1, 1, 3, 3, 3, 200, 33, 12, 5,
    ];
    (1..=3).all(|n| drive(&mut Unstructured::new(OBS), kind, Some(&m), n, 6) > 0)
}
