//! The DQN's actions: a fixed list, whatever the number of replicas.
//!
//! Each action is a primary share level, a demotion factor for the worst replica and one for
//! the second-worst (the replicas are resolved per decision, see [`super::features::rank`]),
//! or `hold`: keep the current weights (no movement cost, so the network can learn to sit
//! still). The other replicas share the rest evenly.

use weir_core::Weights;

/// Primary share levels, percent.
pub const LEVELS: [u32; 7] = [0, 10, 20, 30, 50, 70, 100];
/// Factors of the worst replica (1 = like the others, 0 = out).
pub const WORST: [f64; 3] = [1.0, 1.0 / 3.0, 0.0];
/// Factors of the second-worst replica.
pub const SECOND: [f64; 2] = [1.0, 0.0];
/// Number of actions: the grid plus `hold`.
pub const N_ACTIONS: usize = LEVELS.len() * WORST.len() * SECOND.len() + 1;
/// Index of `hold`.
pub const HOLD: usize = N_ACTIONS - 1;

/// An action of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Keep the current weights.
    Hold,
    /// Move to a point of the grid.
    Set {
        /// Primary share, percent.
        level: u32,
        /// Factor of the worst replica.
        worst: f64,
        /// Factor of the second-worst replica.
        second: f64,
    },
}

/// The action at `index` (`< N_ACTIONS`).
pub fn action(index: usize) -> Action {
    if index >= HOLD {
        return Action::Hold;
    }
    let ns = SECOND.len();
    let nw = WORST.len();
    Action::Set {
        level: LEVELS[index / (nw * ns)],
        worst: WORST[(index / ns) % nw],
        second: SECOND[index % ns],
    }
}

fn factor_label(f: f64) -> String {
    if f == 1.0 {
        "1".to_string()
    } else if f == 0.0 {
        "0".to_string()
    } else {
        "1/3".to_string()
    }
}

/// Stable label of action `index` (recorded in the model file): `p=20 w=1/3 s=1`, `hold`.
pub fn label(index: usize) -> String {
    match action(index) {
        Action::Hold => "hold".to_string(),
        Action::Set {
            level,
            worst,
            second,
        } => format!(
            "p={level} w={} s={}",
            factor_label(worst),
            factor_label(second)
        ),
    }
}

/// Every label, in index order.
pub fn labels() -> Vec<String> {
    (0..N_ACTIONS).map(label).collect()
}

/// The target weights of every action for this decision: `n` replicas, the worst and
/// second-worst resolved, `current` for `hold`.
pub fn candidates(
    n: usize,
    worst: Option<usize>,
    second: Option<usize>,
    current: &Weights,
) -> Vec<Weights> {
    (0..N_ACTIONS)
        .map(|a| match action(a) {
            Action::Hold => current.clone(),
            Action::Set {
                level,
                worst: fw,
                second: fs,
            } => {
                let mut factors = vec![1.0; n];
                if let Some(w) = worst {
                    factors[w] = fw;
                }
                if let Some(s) = second {
                    factors[s] = fs;
                }
                Weights::from_parts(f64::from(level) / f64::from(Weights::TOTAL), &factors)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_maps_to_weights_for_any_replica_count() {
        assert_eq!(N_ACTIONS, 43);
        assert_eq!(label(0), "p=0 w=1 s=1");
        assert_eq!(label(HOLD), "hold");
        assert_eq!(labels().len(), N_ACTIONS);
        let cur = Weights::even(3);
        let c = candidates(3, Some(2), Some(0), &cur);
        assert_eq!(c[HOLD], cur);
        // p=20, worst out, second out: everything else on replica 1.
        let a = (0..N_ACTIONS)
            .find(|&a| label(a) == "p=20 w=0 s=0")
            .unwrap();
        assert_eq!(
            c[a],
            Weights {
                primary: 20,
                replicas: vec![0, 80, 0]
            }
        );
        // One replica: the second factor does nothing.
        let one = candidates(1, Some(0), None, &Weights::even(1));
        assert_eq!(one[0], Weights::even(1));
        assert_eq!(one[1], Weights::even(1));
        // Every replica out: all on the primary.
        let two = candidates(2, Some(0), Some(1), &Weights::even(2));
        let out = (0..N_ACTIONS).find(|&a| label(a) == "p=0 w=0 s=0").unwrap();
        assert_eq!(two[out], Weights::all_primary(2));
    }
}
