//! Tabular Q-learning inside the shield.
//!
//! Actions are pairs (primary share level, demotion of the worst replica): the primary takes
//! `level`% of reads and the worst replica gets `factor` times the weight of each other
//! replica. The table is trained offline in the simulator with ε-greedy exploration over the
//! actions the shield's mask allows, so it never learns an unsafe move; in service it is
//! greedy (ties keep the current action, which damps flapping) and it learns online only from
//! what the shield let through. In a state it never visited often enough it falls back to
//! the shun rule, which the shield then bounds as usual.

mod model;
pub mod state;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_core::{
    ActionValue, DecisionContext, Explanation, Policy, Proposal, Transition, Weights, rng::Rng,
};

pub use model::{MergeError, ModelError, TrainInfo};

use state::{Features, dims, features};

use crate::{PolicyKind, ShunPolicy};

/// Hyper-parameters and the action grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QConfig {
    /// Primary share levels, percent.
    pub levels: Vec<u32>,
    /// Demotion factors for the worst replica (1 = equal to the others, 0 = excluded).
    pub factors: Vec<f64>,
    /// Discount per control interval.
    pub gamma: f64,
    /// Floor of the learning rate (which starts at 1/visits).
    pub alpha_min: f64,
    /// Visits of a state below which the greedy policy falls back to the shun rule.
    pub min_visits: u32,
    /// In service, the current action is kept unless another beats its value by this much
    /// (0 = off: on the training files it cut weight changes by 40% at 0.25 but lowered the
    /// mean reward).
    #[serde(default = "default_switch_margin")]
    pub switch_margin: f64,
}

fn default_switch_margin() -> f64 {
    0.0
}

impl Default for QConfig {
    fn default() -> Self {
        QConfig {
            levels: vec![0, 10, 20, 30, 40, 50, 70, 100],
            factors: vec![1.0, 1.0 / 3.0, 0.0],
            gamma: 0.9,
            alpha_min: 0.05,
            min_visits: 3,
            switch_margin: default_switch_margin(),
        }
    }
}

impl QConfig {
    /// Number of actions.
    pub fn actions(&self) -> usize {
        self.levels.len() * self.factors.len()
    }

    /// Number of states.
    pub fn states(&self) -> usize {
        dims(self.levels.len(), self.factors.len()).iter().product()
    }

    /// Checks the grid; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidQConfig> {
        let bad = |field, problem: String| Err(InvalidQConfig { field, problem });
        if self.levels.is_empty() || self.levels.iter().any(|&l| l > Weights::TOTAL) {
            return bad(
                "levels",
                format!(
                    "must be non-empty percents within 0..=100, got {:?}",
                    self.levels
                ),
            );
        }
        if self.factors.is_empty() || self.factors.iter().any(|f| !(0.0..=1.0).contains(f)) {
            return bad(
                "factors",
                format!("must be non-empty within 0..=1, got {:?}", self.factors),
            );
        }
        if !(0.0..1.0).contains(&self.gamma) {
            return bad("gamma", format!("must be within 0..1, got {}", self.gamma));
        }
        if !(self.switch_margin.is_finite() && self.switch_margin >= 0.0) {
            return bad(
                "switch_margin",
                format!("must be a non-negative number, got {}", self.switch_margin),
            );
        }
        if !(self.alpha_min > 0.0 && self.alpha_min <= 1.0) {
            return bad(
                "alpha_min",
                format!("must be within (0, 1], got {}", self.alpha_min),
            );
        }
        Ok(())
    }
}

/// A Q-learning grid or learning setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidQConfig {
    /// The field of [`QConfig`].
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Chooses a behaviour action during training (e.g. the lookahead oracle).
pub trait Teacher: Send {
    /// Index into `candidates` of the action to take, among the `allowed` ones.
    fn choose(
        &mut self,
        candidates: &[Weights],
        allowed: &[bool],
        current: &Weights,
    ) -> Option<usize>;
}

/// (worst replica, replica count): the action weights depend on nothing else.
type CandidateKey = (Option<usize>, usize);

/// What the last decision was, to credit it when its reward arrives.
#[derive(Debug, Clone)]
struct Pending {
    state: usize,
    action: Option<usize>,
    /// Key of the candidate set of that decision (to map what was applied back).
    key: CandidateKey,
    reward: Option<f64>,
}

/// The Q-learning policy.
#[derive(Clone)]
pub struct QLearn {
    config: QConfig,
    q: Vec<f32>,
    visits: Vec<u32>,
    /// Exploration rate; 0 in service.
    epsilon: f64,
    /// Whether to update the table from feedback.
    learning: bool,
    /// Offline training (exploration allowed, no fallback).
    training: bool,
    rng: Rng,
    pending: Option<Pending>,
    last: Explanation,
    info: TrainInfo,
    /// States with at least one visit.
    visited: usize,
    /// Optional guide for exploration in training.
    teacher: Option<Arc<std::sync::Mutex<dyn Teacher>>>,
    /// Probability that the teacher picks the behaviour action.
    teacher_rate: f64,
    /// Action weights per (worst replica, replica count): they never change.
    candidate_cache: Vec<(CandidateKey, Arc<Vec<Weights>>)>,
}

impl std::fmt::Debug for QLearn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QLearn")
            .field("config", &self.config)
            .field("visited_states", &self.visited)
            .field("epsilon", &self.epsilon)
            .field("training", &self.training)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl QLearn {
    /// An untrained table.
    pub fn new(config: QConfig) -> Self {
        let states = config.states();
        let actions = config.actions();
        QLearn {
            q: vec![0.0; states * actions],
            visits: vec![0; states * actions],
            config,
            epsilon: 0.0,
            learning: false,
            training: false,
            rng: Rng::new(0),
            pending: None,
            last: Explanation::default(),
            info: TrainInfo::default(),
            visited: 0,
            teacher: None,
            teacher_rate: 0.0,
            candidate_cache: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QConfig {
        &self.config
    }

    /// During training, lets `teacher` choose the behaviour action with probability `rate`.
    /// Q-learning is off-policy, so the table still learns the value of its own greedy
    /// policy; the teacher only steers exploration towards states worth knowing.
    pub fn set_teacher(&mut self, teacher: Option<Arc<std::sync::Mutex<dyn Teacher>>>, rate: f64) {
        self.teacher = teacher;
        self.teacher_rate = rate.clamp(0.0, 1.0);
    }

    /// Turns on training: ε-greedy exploration with the given rate and seed, and learning.
    pub fn train_mode(&mut self, epsilon: f64, seed: u64) {
        self.epsilon = epsilon.clamp(0.0, 1.0);
        self.learning = true;
        self.training = true;
        self.rng = Rng::new(seed);
    }

    /// Changes the exploration rate (a training schedule).
    pub fn set_epsilon(&mut self, epsilon: f64) {
        self.epsilon = epsilon.clamp(0.0, 1.0);
    }

    /// Serving: greedy; `online` keeps learning from shielded feedback.
    pub fn serve_mode(&mut self, online: bool) {
        self.epsilon = 0.0;
        self.learning = online;
        self.training = false;
    }

    /// Training metadata carried in the model file.
    pub fn info(&self) -> &TrainInfo {
        &self.info
    }

    /// Sets the training metadata.
    pub fn set_info(&mut self, info: TrainInfo) {
        self.info = info;
    }

    /// Number of states visited at least once.
    pub fn visited_states(&self) -> usize {
        self.visited
    }

    pub(crate) fn recount_visited(&mut self) {
        let a = self.config.actions();
        self.visited = self
            .visits
            .chunks(a)
            .filter(|c| c.iter().any(|&v| v > 0))
            .count();
    }

    fn candidates(&mut self, worst: Option<usize>, n: usize) -> Arc<Vec<Weights>> {
        let key = (worst, n);
        if let Some((_, c)) = self.candidate_cache.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = Arc::new(
            (0..self.config.actions())
                .map(|a| self.action_weights(a, worst, n))
                .collect::<Vec<_>>(),
        );
        self.candidate_cache.push((key, c.clone()));
        c
    }

    fn action_weights(&self, a: usize, worst: Option<usize>, n: usize) -> Weights {
        let nf = self.config.factors.len();
        let level = self.config.levels[a / nf];
        let factor = self.config.factors[a % nf];
        let mut factors = vec![1.0; n];
        if let Some(w) = worst {
            factors[w] = factor;
        }
        Weights::from_parts(level as f64 / Weights::TOTAL as f64, &factors)
    }

    fn label(&self, a: usize, worst_name: &str) -> String {
        let nf = self.config.factors.len();
        let f = self.config.factors[a % nf];
        let fs = if f == 1.0 {
            "even".to_string()
        } else if f == 0.0 {
            format!("{worst_name} out")
        } else {
            format!("{worst_name}×{f:.2}")
        };
        format!("primary {}% {fs}", self.config.levels[a / nf])
    }

    fn state_visits(&self, s: usize) -> u32 {
        let a = self.config.actions();
        self.visits[s * a..(s + 1) * a].iter().sum()
    }

    fn update(&mut self, s: usize, a: usize, target: f64) {
        if self.state_visits(s) == 0 {
            self.visited += 1;
        }
        let idx = s * self.config.actions() + a;
        self.visits[idx] = self.visits[idx].saturating_add(1);
        let alpha = (1.0 / self.visits[idx] as f64).max(self.config.alpha_min);
        let q = self.q[idx] as f64;
        self.q[idx] = (q + alpha * (target - q)) as f32;
    }
}

impl Policy for QLearn {
    fn name(&self) -> &str {
        PolicyKind::Qlearn.as_str()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        if let Some(hold) = crate::rules::hold_on_replica_mismatch(ctx) {
            // Not a state the policy can describe.
            self.pending = None;
            return hold;
        }
        let n = ctx.obs.replicas.len();
        let na = self.config.actions();
        let f: Features = features(ctx, &self.config.levels, &self.config.factors);
        let s = f.index(self.config.levels.len(), self.config.factors.len());
        let candidates = self.candidates(f.worst, n);
        let allowed: Vec<bool> = candidates.iter().map(|w| ctx.mask.allows(w)).collect();
        let row = &self.q[s * na..(s + 1) * na];
        let best_next = (0..na)
            .filter(|&a| allowed[a])
            .map(|a| row[a] as f64)
            .reduce(f64::max);

        // Credit the previous decision now that its successor state and mask are known.
        if self.learning
            && let Some(Pending {
                state,
                action: Some(a),
                reward: Some(r),
                ..
            }) = self.pending.take()
        {
            let target = r + self.config.gamma * best_next.unwrap_or(0.0);
            self.update(state, a, target);
        }

        let current_action = candidates.iter().position(|w| w == ctx.current);
        // In service only actions tried in training compete: an untried action's initial
        // value says nothing about it.
        let tried = |a: usize| self.training || self.visits[s * na + a] > 0;
        let greedy = (0..na)
            .filter(|&a| allowed[a] && tried(a))
            .max_by(|&a, &b| {
                let (qa, qb) = (self.q[s * na + a], self.q[s * na + b]);
                qa.total_cmp(&qb)
                    .then((Some(a) == current_action).cmp(&(Some(b) == current_action)))
                    .then(b.cmp(&a))
            });
        let explore = self.epsilon > 0.0 && self.rng.uniform() < self.epsilon;
        let worst_name = f
            .worst
            .map_or("-", |w| ctx.obs.replicas[w].name.as_str())
            .to_string();
        let any_allowed = allowed.iter().any(|&x| x);
        let taught = match &mut self.teacher {
            Some(t) if self.training && any_allowed && self.rng.uniform() < self.teacher_rate => t
                .lock()
                .ok()
                .and_then(|mut t| t.choose(&candidates, &allowed, ctx.current))
                .filter(|&a| a < na && allowed[a]),
            _ => None,
        };
        let (action, weights, reason) = if !any_allowed {
            (
                None,
                ctx.current.clone(),
                "no action allowed by the shield: hold".to_string(),
            )
        } else if let Some(a) = taught {
            (
                Some(a),
                candidates[a].clone(),
                format!("teacher: {}", self.label(a, &worst_name)),
            )
        } else if explore {
            let options: Vec<usize> = (0..na).filter(|&a| allowed[a]).collect();
            let a = options[self.rng.below(options.len())];
            (
                Some(a),
                candidates[a].clone(),
                format!("explore: {}", self.label(a, &worst_name)),
            )
        } else if greedy.is_none()
            || (!self.training && self.state_visits(s) < self.config.min_visits)
        {
            let (w, _) = ShunPolicy::weights(ctx.obs, ctx.slo);
            let a = candidates.iter().position(|c| *c == w);
            (
                a,
                w,
                "fallback to shun: state rarely seen in training".to_string(),
            )
        } else {
            let best = greedy.unwrap_or(0);
            // Hysteresis in service: keep the current action unless the best one is clearly
            // better, so that noise near a band edge does not flip the weights back and forth.
            let keep = current_action.filter(|&c| {
                !self.training
                    && c != best
                    && allowed[c]
                    && tried(c)
                    && self.q[s * na + best] - self.q[s * na + c] < self.config.switch_margin as f32
            });
            match keep {
                Some(c) => (
                    Some(c),
                    candidates[c].clone(),
                    format!(
                        "hold: {} (Q={:.2}) within {:.2} of the best, {}",
                        self.label(c, &worst_name),
                        self.q[s * na + c],
                        self.config.switch_margin,
                        self.label(best, &worst_name)
                    ),
                ),
                None => (
                    Some(best),
                    candidates[best].clone(),
                    format!(
                        "greedy: {} (Q={:.2})",
                        self.label(best, &worst_name),
                        self.q[s * na + best]
                    ),
                ),
            }
        };

        // Explanations cost more than the decision itself; training never reads them.
        if !self.training {
            let values: Vec<ActionValue> = (0..na)
                .map(|a| ActionValue {
                    label: self.label(a, &worst_name),
                    weights: candidates[a].clone(),
                    value: Some(self.q[s * na + a] as f64),
                    allowed: allowed[a],
                })
                .collect();
            self.last = Explanation {
                policy: PolicyKind::Qlearn.to_string(),
                state: format!(
                    "{} (state {s}, {} visits)",
                    f.describe(ctx.obs),
                    self.state_visits(s)
                ),
                actions: crate::ranked(values),
                fallback: None,
            };
        }
        self.pending = Some(Pending {
            state: s,
            action,
            key: (f.worst, n),
            reward: None,
        });
        Proposal {
            weights,
            action,
            reason,
        }
    }

    fn learn(&mut self, t: &Transition) {
        if let Some(p) = &mut self.pending {
            // Credit the action that was really applied (the shield may have changed it).
            let key = p.key;
            let applied = self
                .candidate_cache
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, c)| c.iter().position(|w| *w == t.applied));
            p.action = applied;
            p.reward = Some(t.reward);
        }
    }

    fn explain(&self) -> Explanation {
        self.last.clone()
    }

    fn reset(&mut self) {
        self.pending = None;
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.to_json().into_bytes())
    }
}

#[cfg(test)]
mod tests;
