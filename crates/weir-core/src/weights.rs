//! Integer routing weights: one for the primary and one per replica.
//!
//! Weir always emits weights that sum to exactly [`Weights::TOTAL`] (percent points). Istio
//! accepts any non-negative int32 weights with a positive total and HAProxy accepts 0..=256,
//! so percent points are valid for both and readable in logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Read-traffic weights. `primary` plus the sum of `replicas` equals [`Weights::TOTAL`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Weights {
    /// Weight of the primary.
    pub primary: u32,
    /// One weight per replica, in the configured replica order.
    pub replicas: Vec<u32>,
}

/// Why a set of weights was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// The weights do not add up to [`Weights::TOTAL`].
    #[error("weights must sum to {expected}, got {got}")]
    BadTotal {
        /// Expected total.
        expected: u32,
        /// Actual total.
        got: u32,
    },
    /// The number of replica weights does not match the number of replicas.
    #[error("expected {expected} replica weights, got {got}")]
    BadLength {
        /// Expected count.
        expected: usize,
        /// Actual count.
        got: usize,
    },
}

impl Weights {
    /// Sum of all weights.
    pub const TOTAL: u32 = 100;

    /// Equal weights over all replicas, nothing on the primary (the usual static setup).
    pub fn even(replicas: usize) -> Weights {
        if replicas == 0 {
            return Weights {
                primary: Self::TOTAL,
                replicas: Vec::new(),
            };
        }
        Weights::from_parts(0.0, &vec![1.0; replicas])
    }

    /// Everything on the primary.
    pub fn all_primary(replicas: usize) -> Weights {
        Weights {
            primary: Self::TOTAL,
            replicas: vec![0; replicas],
        }
    }

    /// Builds weights from a primary share (0..1) and relative replica factors (any scale,
    /// non-negative). If every factor is zero the primary takes everything. Rounding uses
    /// the largest-remainder method, so the total is exact and zero factors stay zero.
    pub fn from_parts(primary_share: f64, factors: &[f64]) -> Weights {
        let total_f: f64 = factors.iter().map(|f| f.max(0.0)).sum();
        let p = if total_f > 0.0 {
            primary_share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let mut exact = Vec::with_capacity(factors.len() + 1);
        exact.push(p * Self::TOTAL as f64);
        for f in factors {
            let f = f.max(0.0);
            exact.push(if total_f > 0.0 {
                (1.0 - p) * Self::TOTAL as f64 * f / total_f
            } else {
                0.0
            });
        }
        let ints = largest_remainder(&exact, Self::TOTAL);
        Weights {
            primary: ints[0],
            replicas: ints[1..].to_vec(),
        }
    }

    /// Weights `self + alpha * (target - self)`, rounded with the largest-remainder method.
    pub fn interpolate(&self, target: &Weights, alpha: f64) -> Weights {
        let alpha = alpha.clamp(0.0, 1.0);
        let exact: Vec<f64> = self
            .iter()
            .zip(target.iter())
            .map(|(a, b)| a as f64 + alpha * (b as f64 - a as f64))
            .collect();
        let ints = largest_remainder(&exact, Self::TOTAL);
        Weights {
            primary: ints[0],
            replicas: ints[1..].to_vec(),
        }
    }

    /// The weights one interval closer to `target` when no destination may move by more than
    /// `max` points: `target` itself when it is within `max`, otherwise the largest
    /// interpolation towards it (in steps of 1%) that is. The shield's step limit and the
    /// policies that resolve their actions under it use this one rule.
    pub fn step_toward(&self, target: &Weights, max: u32) -> Weights {
        let step = self.max_step(target);
        if step <= max {
            return target.clone();
        }
        let mut alpha = f64::from(max) / f64::from(step);
        let mut limited = self.interpolate(target, alpha);
        while self.max_step(&limited) > max && alpha > 0.0 {
            alpha = (alpha - 0.01).max(0.0);
            limited = self.interpolate(target, alpha);
        }
        limited
    }

    /// All weights, primary first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.primary).chain(self.replicas.iter().copied())
    }

    /// Sum of all weights.
    pub fn total(&self) -> u32 {
        self.iter().sum()
    }

    /// Share of reads going to the primary (0..1).
    pub fn primary_share(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            self.primary as f64 / t as f64
        }
    }

    /// Share of reads going to replica `i` (0..1).
    pub fn replica_share(&self, i: usize) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            self.replicas.get(i).copied().unwrap_or(0) as f64 / t as f64
        }
    }

    /// Largest change of any single destination's weight between `self` and `other`.
    pub fn max_step(&self, other: &Weights) -> u32 {
        self.iter()
            .zip(other.iter())
            .map(|(a, b)| a.abs_diff(b))
            .max()
            .unwrap_or(0)
    }

    /// Share of traffic that moves between `self` and `other` (0..1): half the L1 distance.
    pub fn moved_fraction(&self, other: &Weights) -> f64 {
        let l1: u32 = self
            .iter()
            .zip(other.iter())
            .map(|(a, b)| a.abs_diff(b))
            .sum();
        l1 as f64 / (2.0 * Self::TOTAL as f64)
    }

    /// Checks shape and total.
    pub fn validate(&self, replicas: usize) -> Result<(), WeightsError> {
        if self.replicas.len() != replicas {
            return Err(WeightsError::BadLength {
                expected: replicas,
                got: self.replicas.len(),
            });
        }
        let got = self.total();
        if got != Self::TOTAL {
            return Err(WeightsError::BadTotal {
                expected: Self::TOTAL,
                got,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.primary)?;
        for w in &self.replicas {
            write!(f, "/{w}")?;
        }
        Ok(())
    }
}

/// Rounds non-negative reals to integers summing to `total` (largest-remainder method).
/// Entries that are exactly zero stay zero unless every entry is zero.
fn largest_remainder(exact: &[f64], total: u32) -> Vec<u32> {
    let sum: f64 = exact.iter().map(|x| x.max(0.0)).sum();
    let mut ints: Vec<u32> = vec![0; exact.len()];
    if sum <= 0.0 {
        if let Some(first) = ints.first_mut() {
            *first = total;
        }
        return ints;
    }
    let scale = total as f64 / sum;
    let mut assigned = 0u32;
    for (i, x) in exact.iter().enumerate() {
        let v = (x.max(0.0) * scale).floor();
        ints[i] = v as u32;
        assigned += ints[i];
    }
    // Hand out the remaining units one at a time to the largest fractional part; ties go to
    // the earlier destination. `rest` is smaller than the number of destinations, so this
    // quadratic loop over a handful of entries beats sorting (and allocates nothing).
    let mut rest = total.saturating_sub(assigned);
    let mut taken = 0u64; // bit set of entries already rounded up (len <= 64 in practice)
    while rest > 0 {
        let mut best: Option<(usize, f64)> = None;
        for (i, x) in exact.iter().enumerate() {
            let scaled = x.max(0.0) * scale;
            if scaled <= 0.0 || (i < 64 && taken & (1 << i) != 0) {
                continue;
            }
            let frac = scaled - scaled.floor();
            if best.is_none_or(|(_, f)| frac > f) {
                best = Some((i, frac));
            }
        }
        match best {
            Some((i, _)) => {
                ints[i] += 1;
                if i < 64 {
                    taken |= 1 << i;
                }
            }
            // Every positive entry already got one unit (floating error): start over.
            None if taken != 0 => {
                taken = 0;
                continue;
            }
            None => break,
        }
        rest -= 1;
    }
    ints
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn even_weights_sum_to_total() {
        assert_eq!(Weights::even(2).replicas, vec![50, 50]);
        let w = Weights::even(3);
        assert_eq!(w.total(), 100);
        assert_eq!(w.primary, 0);
        assert_eq!(w.replicas, vec![34, 33, 33]);
        assert_eq!(Weights::even(0).primary, 100);
    }

    #[test]
    fn zero_factors_send_everything_to_primary() {
        let w = Weights::from_parts(0.2, &[0.0, 0.0]);
        assert_eq!(w, Weights::all_primary(2));
    }

    #[test]
    fn step_and_moved_fraction() {
        let a = Weights::even(2);
        let b = Weights::from_parts(0.5, &[0.0, 1.0]);
        assert_eq!(
            b,
            Weights {
                primary: 50,
                replicas: vec![0, 50]
            }
        );
        assert_eq!(a.max_step(&b), 50);
        assert!((a.moved_fraction(&b) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn validate_names_the_problem() {
        let w = Weights {
            primary: 10,
            replicas: vec![10],
        };
        assert!(matches!(
            w.validate(1),
            Err(WeightsError::BadTotal { got: 20, .. })
        ));
        assert!(matches!(w.validate(2), Err(WeightsError::BadLength { .. })));
    }

    proptest! {
        #[test]
        fn from_parts_always_sums_to_total(p in 0.0f64..1.0, f in proptest::collection::vec(0.0f64..5.0, 0..6)) {
            let w = Weights::from_parts(p, &f);
            prop_assert_eq!(w.total(), Weights::TOTAL);
            for (i, x) in f.iter().enumerate() {
                if *x == 0.0 { prop_assert_eq!(w.replicas[i], 0); }
            }
        }

        #[test]
        fn interpolate_stays_between_ends(a in proptest::collection::vec(0.0f64..5.0, 3), b in proptest::collection::vec(0.0f64..5.0, 3), alpha in 0.0f64..1.0) {
            let wa = Weights::from_parts(0.1, &a);
            let wb = Weights::from_parts(0.3, &b);
            let m = wa.interpolate(&wb, alpha);
            prop_assert_eq!(m.total(), Weights::TOTAL);
            for ((x, y), z) in wa.iter().zip(wb.iter()).zip(m.iter()) {
                prop_assert!(z + 1 >= x.min(y) && z <= x.max(y) + 1);
                if x == 0 && y == 0 { prop_assert_eq!(z, 0); }
            }
        }

        #[test]
        fn step_toward_moves_at_most_max_and_reaches_a_near_target(a in proptest::collection::vec(0.0f64..5.0, 3), b in proptest::collection::vec(0.0f64..5.0, 3), pa in 0.0f64..1.0, pb in 0.0f64..1.0, max in 1u32..=100) {
            let wa = Weights::from_parts(pa, &a);
            let wb = Weights::from_parts(pb, &b);
            let s = wa.step_toward(&wb, max);
            prop_assert_eq!(s.total(), Weights::TOTAL);
            prop_assert!(wa.max_step(&s) <= max);
            if wa.max_step(&wb) <= max {
                prop_assert_eq!(s, wb);
            } else {
                // Closer to the target than the start, never past it.
                prop_assert!(s.max_step(&wb) < wa.max_step(&wb));
                for ((x, y), z) in wa.iter().zip(wb.iter()).zip(s.iter()) {
                    prop_assert!(z + 1 >= x.min(y) && z <= x.max(y) + 1);
                }
            }
        }
    }

    #[test]
    fn step_toward_a_far_target_takes_the_largest_step_the_limit_allows() {
        let from = Weights {
            primary: 50,
            replicas: vec![0, 50],
        };
        let to = Weights::from_parts(0.3, &[1.0, 1.0]);
        assert_eq!(from.max_step(&to), 35);
        let s = from.step_toward(&to, 25);
        assert_eq!(from.max_step(&s), 25);
        assert_eq!(s.replicas[0], 25);
        assert!(s.primary < 50 && s.primary > 30, "{s}");
    }
}
