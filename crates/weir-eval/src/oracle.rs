//! The lookahead oracle: the reference, not a product policy.
//!
//! At each decision it sees the simulator's true current state (not the delayed, noisy
//! observation), tries every allowed action for one control interval on a copy of the
//! simulator, and keeps the one with the best reward. It is myopic (one interval) but
//! omniscient about the present, which makes it a strong yardstick for the normalised score
//! `(R − R_static) / (R_lookahead − R_static)`; a policy can beat it where looking further
//! ahead pays.

use std::sync::{Arc, Mutex};

use weir_core::{
    ActionValue, DecisionContext, Explanation, Policy, Proposal, RewardConfig, Weights,
};
use weir_policy::Teacher;
use weir_shield::Shield;
use weir_sim::Simulator;

/// The oracle's name in `--policies` and in reports.
pub const LOOKAHEAD: &str = "lookahead";

/// What the episode runner shows an oracle before each decision: the true simulator state,
/// and the decision pipeline's shield and weights as they are before this decision (so an
/// oracle can plan with the constraints the real shield will apply).
#[derive(Debug, Clone)]
pub struct OracleView {
    /// The simulator, true state.
    pub sim: Simulator,
    /// The episode's shield, before this decision's `apply`.
    pub shield: Shield,
    /// The weights in force.
    pub current: Weights,
}

/// Shared slot through which the episode runner shows an oracle the truth before each
/// decision ([`OracleView`]); `None` outside an episode.
pub type OracleSlot = Arc<Mutex<Option<OracleView>>>;

/// Primary levels the oracle tries, percent.
const LEVELS: [u32; 11] = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
/// Per-replica factors the oracle tries.
const FACTORS: [f64; 3] = [1.0, 1.0 / 3.0, 0.0];

/// The oracle policy.
pub struct Lookahead {
    reward: RewardConfig,
    slot: OracleSlot,
    last: Explanation,
}

impl Lookahead {
    /// An oracle that reads the true simulator from `slot` at each decision.
    pub fn new(reward: RewardConfig, slot: OracleSlot) -> Self {
        Lookahead {
            reward,
            slot,
            last: Explanation::default(),
        }
    }

    /// Every candidate weight vector for `n` replicas (deduplicated, deterministic order).
    pub fn candidates(n: usize) -> Vec<Weights> {
        let mut out: Vec<Weights> = Vec::new();
        let combos = FACTORS.len().pow(n as u32);
        for &level in &LEVELS {
            for c in 0..combos {
                let mut k = c;
                let factors: Vec<f64> = (0..n)
                    .map(|_| {
                        let f = FACTORS[k % FACTORS.len()];
                        k /= FACTORS.len();
                        f
                    })
                    .collect();
                let w = Weights::from_parts(level as f64 / 100.0, &factors);
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        out
    }
}

/// The reward of applying `w` (moving from `current`) for one control interval of `sim`.
pub fn one_interval_reward(
    sim: &Simulator,
    w: &Weights,
    current: &Weights,
    reward: &RewardConfig,
) -> f64 {
    let interval = sim.scenario().timing.control_interval_s;
    let mut s = sim.clone();
    s.set_weights(w);
    let stats = s.run_for(interval);
    reward.reward(
        &stats.outcome(current.moved_fraction(w)),
        &sim.scenario().slo,
    )
}

/// The oracle as a training teacher: among the learner's own allowed actions it picks the one
/// with the best true reward one interval ahead.
pub struct OracleTeacher {
    reward: RewardConfig,
    slot: OracleSlot,
}

impl OracleTeacher {
    /// A teacher reading the true simulator from `slot`.
    pub fn new(reward: RewardConfig, slot: OracleSlot) -> Self {
        OracleTeacher { reward, slot }
    }
}

impl Teacher for OracleTeacher {
    fn choose(
        &mut self,
        candidates: &[Weights],
        allowed: &[bool],
        current: &Weights,
    ) -> Option<usize> {
        let sim = self
            .slot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|v| v.sim.clone()))?;
        let mut best: Option<(usize, f64)> = None;
        for (a, w) in candidates.iter().enumerate() {
            if !allowed.get(a).copied().unwrap_or(false) {
                continue;
            }
            let r = one_interval_reward(&sim, w, current, &self.reward);
            let better = match best {
                None => true,
                Some((b, rb)) => r > rb || (r == rb && *w == *current && candidates[b] != *current),
            };
            if better {
                best = Some((a, r));
            }
        }
        best.map(|(a, _)| a)
    }
}

impl Policy for Lookahead {
    fn name(&self) -> &str {
        LOOKAHEAD
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        let sim = self
            .slot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|v| v.sim.clone()));
        let Some(sim) = sim else {
            return Proposal::new(
                ctx.current.clone(),
                "lookahead: no simulator attached, hold",
            );
        };
        let mut scored: Vec<ActionValue> = Vec::new();
        for w in Lookahead::candidates(ctx.obs.replicas.len()) {
            if !ctx.mask.allows(&w) {
                continue;
            }
            let r = one_interval_reward(&sim, &w, ctx.current, &self.reward);
            scored.push(ActionValue {
                label: w.to_string(),
                weights: w,
                value: Some(r),
                allowed: true,
            });
        }
        // Best reward first; ties keep the current weights, then the earlier candidate.
        scored.sort_by(|a, b| {
            let (va, vb) = (a.value.unwrap_or(f64::MIN), b.value.unwrap_or(f64::MIN));
            vb.total_cmp(&va)
                .then((b.weights == *ctx.current).cmp(&(a.weights == *ctx.current)))
        });
        let proposal = match scored.first() {
            Some(best) => Proposal::new(
                best.weights.clone(),
                format!(
                    "lookahead: best of {} allowed actions, reward {:.3}",
                    scored.len(),
                    best.value.unwrap_or(0.0)
                ),
            ),
            None => Proposal::new(ctx.current.clone(), "lookahead: nothing allowed, hold"),
        };
        scored.truncate(12);
        self.last = Explanation {
            policy: LOOKAHEAD.to_string(),
            state: "true simulator state".to_string(),
            actions: scored,
            fallback: None,
        };
        proposal
    }

    fn explain(&self) -> Explanation {
        self.last.clone()
    }
}
