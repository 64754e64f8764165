//! A deep Q-network policy (Double DQN) for any number of replicas, inside the shield.
//!
//! **What is what.** candle (`candle-core`, `candle-nn`, CPU only) provides the tensors,
//! autograd, the dense layers, the Huber loss and the AdamW optimiser. candle has no
//! reinforcement-learning utilities, so everything else is written here by hand: the
//! replica-count-invariant [`features`], the fixed [`actions`] list resolved per decision,
//! the replay ring, Double-DQN targets with a masked max and the target-network copy
//! ([`learner`]), the weight initialisation from Weir's own seeded [`Rng`] (never candle's
//! random init, so training is reproducible), the serving rules and the [`model`] file
//! (one safetensors file, metadata in its header).
//!
//! **Serving.** Greedy over the actions the shield's mask allows, with three anti-flapping
//! rules: `hold` (keep the current weights) is an action with no movement cost, the policy
//! holds unless another allowed action beats `hold` by `switch_margin`, and for `dwell`
//! decisions after the weights changed that margin is `dwell_margin` (a minimum dwell that a
//! clearly better move still breaks, and that a replica crossing the staleness SLO, going
//! down or coming back ends, so news is never waited for; another step towards a target the
//! shield's step limit cut short is not held back either, see [`DqnConfig::step_limit`]). When the
//! observation is unusable (nothing known) or a feature lies outside the range seen in
//! training by more than `ood_margin`, the network is not trusted: the shun rule decides,
//! and [`Explanation::fallback`] says why. The same happens for `surprise_hold` decisions
//! after a *surprise*: the previous decision's outcome fell short of the network's own
//! prediction by more than `surprise_margin` (a TD error, computed in service from the reward
//! the controller reports), which catches situations the feature ranges do not, such as a
//! replica that falls behind because the network keeps sending it reads. Last, a *return
//! guard*: a replica that has been up and fresh (lag at most `return_lag` × the SLO) with no
//! reads for `return_after` decisions in a row gets reads back, the network choosing among
//! the allowed actions that give it some, so a split the network would otherwise hold (all
//! reads on one replica after a fallback, say) does not keep a recovered replica idle.
//!
//! **Training** (offline, in `weir-eval`): ε-greedy over the allowed actions, optionally with
//! a [`Teacher`] (the lookahead oracle) choosing the behaviour action; the transition of
//! each decision is completed by [`Policy::learn`] (the reward, the weights the shield really
//! applied) and the next decision (next state, next mask), then stored in the replay ring.

pub mod actions;
pub mod features;
pub mod learner;
pub mod model;
pub mod net;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir_core::{
    ActionValue, DecisionContext, Explanation, Observation, Policy, Proposal, Transition, Weights,
    rng::Rng,
};

use crate::qlearn::{Teacher, TrainInfo};
use crate::{PolicyKind, ShunPolicy};

use actions::{HOLD, N_ACTIONS, candidates, label};
use features::{Features, N_FEATURES, feature_names, features};
use learner::{ActionMask, Experience, Learner, mask_bits};

pub use model::{DqnModel, DqnModelError, FORMAT, VERSION};

/// Hyper-parameters of the network, its training and its serving rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// Hidden layer sizes.
    pub hidden: Vec<usize>,
    /// Discount per control interval.
    pub gamma: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Minibatch size.
    pub batch: usize,
    /// Replay capacity (steps).
    pub replay: usize,
    /// Steps in the replay before the first gradient step.
    pub warmup: usize,
    /// Experience steps per gradient step.
    pub train_every: usize,
    /// Gradient steps between copies of the online network into the target network.
    pub target_every: u64,
    /// Rewards are multiplied by this before learning (Q-values near 1 suit the Huber loss).
    pub reward_scale: f64,
    /// In service, `hold` is kept unless another action's value beats it by this much
    /// (reward units).
    pub switch_margin: f64,
    /// Minimum dwell: for this many decisions after the weights last changed (by the policy
    /// or by the shield), `hold` is kept unless another action beats it by `dwell_margin`
    /// or a replica crossed the staleness SLO, went down or came back.
    pub dwell: u32,
    /// The margin that applies during the dwell (reward units).
    pub dwell_margin: f64,
    /// A feature more than `ood_margin × max(1, its training range)` outside the range seen
    /// in training sends the decision to the shun rule.
    pub ood_margin: f64,
    /// Weight of the supervised large-margin term on the teacher's choices (0 = plain DQN).
    pub expert_weight: f64,
    /// The margin by which the teacher's action must beat every other allowed action
    /// (reward units).
    pub expert_margin: f64,
    /// Resolve each action to the step towards its target that the shield's step limit
    /// allows ([`weir_core::Mask::max_step`]) instead of leaving a target farther than the limit masked,
    /// so a move back to a recovered replica or out of a lagging one is always on offer.
    /// Absent from model files written before it existed, which were trained without it.
    /// (The field's own default, `false`, not the struct's.)
    #[serde(default)]
    pub step_limit: bool,
    /// Networks averaged in this one ([`DqnModel::ensemble`]): each hidden layer holds
    /// `members` blocks of `hidden / members` units, and the output is the mean of the
    /// blocks' Q-values. 1 for a single network (and for files written before ensembles).
    pub members: u32,
    /// Surprise fallback: when the previous decision turned out worse than the network
    /// predicted by more than this (reward units; the TD error `r + γ·max Q(s′) − Q(s, a)`
    /// below `−surprise_margin`), the network is modelling the situation badly and the shun
    /// rule decides for the next `surprise_hold` decisions.
    pub surprise_margin: f64,
    /// Decisions the shun rule keeps after the last surprise (0 turns the fallback off).
    pub surprise_hold: u32,
    /// Return guard: a replica that is up and at most `return_lag` × the staleness SLO behind,
    /// and has had no reads for this many decisions in a row, gets reads back: the network
    /// chooses among the allowed actions that give it some (0 turns the guard off).
    pub return_after: u32,
    /// The lag, as a share of the staleness SLO, under which a replica counts as recovered
    /// for the return guard.
    pub return_lag: f64,
}

impl Default for DqnConfig {
    fn default() -> Self {
        DqnConfig {
            hidden: vec![64, 64],
            gamma: 0.9,
            learning_rate: 5e-4,
            batch: 64,
            replay: 50_000,
            warmup: 2_000,
            train_every: 2,
            target_every: 500,
            reward_scale: 0.1,
            switch_margin: 0.05,
            dwell: 8,
            dwell_margin: 2.0,
            ood_margin: 0.25,
            expert_weight: 0.0,
            expert_margin: 1.0,
            step_limit: true,
            members: 1,
            surprise_margin: 25.0,
            surprise_hold: 12,
            return_after: 2,
            return_lag: 0.5,
        }
    }
}

impl DqnConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden.is_empty() || self.hidden.iter().any(|&h| h == 0 || h > 4096) {
            return Err(format!(
                "hidden must be 1..=4096 units per layer, got {:?}",
                self.hidden
            ));
        }
        if self.members == 0
            || self
                .hidden
                .iter()
                .any(|&h| !h.is_multiple_of(self.members as usize))
        {
            return Err(format!(
                "members must be at least 1 and divide every hidden size, got {} for {:?}",
                self.members, self.hidden
            ));
        }
        if !(0.0..1.0).contains(&self.gamma) {
            return Err(format!("gamma must be within 0..1, got {}", self.gamma));
        }
        for (name, v) in [
            ("learning_rate", self.learning_rate),
            ("reward_scale", self.reward_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        for (name, v) in [
            ("switch_margin", self.switch_margin),
            ("dwell_margin", self.dwell_margin),
            ("ood_margin", self.ood_margin),
            ("expert_weight", self.expert_weight),
            ("expert_margin", self.expert_margin),
            ("surprise_margin", self.surprise_margin),
            ("return_lag", self.return_lag),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a non-negative number, got {v}"));
            }
        }
        if self.batch == 0 || self.replay < self.batch {
            return Err(format!(
                "batch must be positive and at most replay, got batch {} replay {}",
                self.batch, self.replay
            ));
        }
        Ok(())
    }
}

/// Per-feature range seen in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRange {
    /// Smallest value seen.
    pub min: Vec<f32>,
    /// Largest value seen.
    pub max: Vec<f32>,
}

impl FeatureRange {
    fn empty() -> FeatureRange {
        FeatureRange {
            min: vec![f32::INFINITY; N_FEATURES],
            max: vec![f32::NEG_INFINITY; N_FEATURES],
        }
    }

    fn add(&mut self, x: &[f32]) {
        for (j, &v) in x.iter().enumerate() {
            self.min[j] = self.min[j].min(v);
            self.max[j] = self.max[j].max(v);
        }
    }

    /// Whether anything was recorded.
    pub fn is_set(&self) -> bool {
        self.min.len() == N_FEATURES
            && self.max.len() == N_FEATURES
            && self.min.iter().zip(&self.max).all(|(a, b)| a <= b)
    }

    /// The first feature of `x` outside the range by more than `margin × max(1, range)`:
    /// (index, value, min, max).
    pub fn outlier(&self, x: &[f32], margin: f64) -> Option<(usize, f32, f32, f32)> {
        if !self.is_set() {
            return None;
        }
        x.iter().enumerate().find_map(|(j, &v)| {
            let (lo, hi) = (self.min[j], self.max[j]);
            let tol = (margin * f64::from(hi - lo).max(1.0)) as f32;
            (v < lo - tol || v > hi + tol).then_some((j, v, lo, hi))
        })
    }
}

/// What the last decision was, to complete its transition.
#[derive(Debug, Clone)]
struct Pending {
    state: [f32; N_FEATURES],
    action: Option<usize>,
    candidates: Vec<Weights>,
    current: Weights,
    reward: Option<f64>,
    /// Actions the shield allowed.
    allowed: ActionMask,
    /// The teacher's choice and the actions with the same targets.
    expert: Option<(usize, ActionMask)>,
}

/// The DQN policy.
pub struct Dqn {
    model: DqnModel,
    /// Exploration rate (training only).
    epsilon: f64,
    rng: Rng,
    learner: Option<Box<Learner>>,
    teacher: Option<Arc<Mutex<dyn Teacher>>>,
    teacher_rate: f64,
    pending: Option<Pending>,
    last: Explanation,
    /// The first error met while learning (training stops learning after it).
    error: Option<String>,
    fallbacks: u64,
    /// The weights in force at the previous decision, decisions since they last changed, and
    /// the replicas the shun rule would take out at the previous decision.
    dwell: Option<(Weights, u32, Vec<usize>)>,
    /// The target of the last served action when the step limit cut it short: choosing it
    /// again continues a move in progress, which the dwell does not hold back.
    moving_to: Option<Weights>,
    /// Decisions left to the shun rule after a surprise, and the last surprise's TD error.
    surprise: Option<(u32, f64)>,
    /// Per replica: decisions in a row it was recovered (see [`DqnConfig::return_after`]) and
    /// had no reads.
    idle: Vec<u32>,
}

impl std::fmt::Debug for Dqn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dqn")
            .field("config", &self.model.config)
            .field("training", &self.learner.is_some())
            .field("info", &self.model.info)
            .finish_non_exhaustive()
    }
}

/// Training counters, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DqnStats {
    /// Transitions stored.
    pub steps: u64,
    /// Gradient steps.
    pub updates: u64,
    /// Running mean of the Huber loss.
    pub loss: f64,
}

impl Dqn {
    /// A policy serving `model` greedily.
    pub fn new(model: DqnModel) -> Dqn {
        Dqn {
            model,
            epsilon: 0.0,
            rng: Rng::new(0),
            learner: None,
            teacher: None,
            teacher_rate: 0.0,
            pending: None,
            last: Explanation::default(),
            error: None,
            fallbacks: 0,
            dwell: None,
            moving_to: None,
            surprise: None,
            idle: Vec::new(),
        }
    }

    /// An untrained network, initialised from `seed`.
    pub fn untrained(config: DqnConfig, seed: u64) -> Result<Dqn, DqnModelError> {
        Ok(Dqn::new(DqnModel::untrained(config, seed)?))
    }

    /// The model (with the online network's current weights while training).
    pub fn model(&self) -> Result<DqnModel, DqnModelError> {
        let mut m = self.model.clone();
        if let Some(l) = &self.learner {
            m.net = l.net().map_err(DqnModelError::candle)?;
        }
        Ok(m)
    }

    /// The configuration.
    pub fn config(&self) -> &DqnConfig {
        &self.model.config
    }

    /// Turns on training: ε-greedy exploration, learning, feature ranges recorded. `seed`
    /// drives exploration and minibatch sampling.
    pub fn train_mode(&mut self, epsilon: f64, seed: u64) -> Result<(), DqnModelError> {
        let mut rng = Rng::new(seed);
        self.rng = rng.fork(1);
        let learner = Learner::new(&self.model.net, &self.model.config, rng.next_u64())
            .map_err(DqnModelError::candle)?;
        self.learner = Some(Box::new(learner));
        self.epsilon = epsilon.clamp(0.0, 1.0);
        if !self.model.ranges.is_set() {
            self.model.ranges = FeatureRange::empty();
        }
        Ok(())
    }

    /// Ends training: the learned network becomes the served one.
    pub fn serve_mode(&mut self) -> Result<(), DqnModelError> {
        if self.learner.is_some() {
            self.model = self.model()?;
        }
        self.learner = None;
        self.epsilon = 0.0;
        self.teacher = None;
        self.teacher_rate = 0.0;
        self.pending = None;
        Ok(())
    }

    /// Changes the exploration rate (a training schedule).
    pub fn set_epsilon(&mut self, epsilon: f64) {
        self.epsilon = epsilon.clamp(0.0, 1.0);
    }

    /// During training, lets `teacher` choose the behaviour action with probability `rate`
    /// (DQN is off-policy: the network still learns the value of its own greedy policy).
    pub fn set_teacher(&mut self, teacher: Option<Arc<Mutex<dyn Teacher>>>, rate: f64) {
        self.teacher = teacher;
        self.teacher_rate = rate.clamp(0.0, 1.0);
    }

    /// Sets the training metadata.
    pub fn set_info(&mut self, info: TrainInfo) {
        self.model.info = info;
    }

    /// Training counters.
    pub fn stats(&self) -> DqnStats {
        self.learner
            .as_ref()
            .map_or(DqnStats::default(), |l| DqnStats {
                steps: l.steps,
                updates: l.updates,
                loss: l.loss,
            })
    }

    /// The first error met while learning, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Decisions handed to the shun rule since this policy was built.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks
    }

    fn training(&self) -> bool {
        self.learner.is_some()
    }

    fn q_values(&self, x: &[f32]) -> Result<Vec<f32>, String> {
        let q = match &self.learner {
            Some(l) => l.q(x),
            None => self.model.net.q(x),
        };
        q.map_err(|e| e.to_string()).and_then(|q| {
            if q.len() == N_ACTIONS {
                Ok(q)
            } else {
                Err(format!("network gave {} values", q.len()))
            }
        })
    }

    /// Counts, per replica, the decisions in a row it has been recovered (up, lag known and
    /// at most `return_lag` × the SLO) with no reads, and returns the replicas whose count
    /// reached `return_after`: the return guard's.
    fn idle_recovered(&mut self, ctx: &DecisionContext<'_>) -> Vec<usize> {
        let cfg = &self.model.config;
        let n = ctx.obs.replicas.len();
        self.idle.resize(n, 0);
        let limit = cfg.return_lag * ctx.slo.max_staleness_s;
        for (i, r) in ctx.obs.replicas.iter().enumerate() {
            let recovered = r.up != Some(false) && r.lag_s.value.is_some_and(|l| l <= limit);
            let idle = ctx.current.replicas.get(i) == Some(&0);
            self.idle[i] = if recovered && idle {
                self.idle[i].saturating_add(1)
            } else {
                0
            };
        }
        if cfg.return_after == 0 {
            return Vec::new();
        }
        (0..n)
            .filter(|&i| self.idle[i] >= cfg.return_after)
            .collect()
    }

    /// The surprise fallback's state after this decision: `Some((decisions left, TD error))`
    /// while the shun rule is to decide. A surprise is the previous decision's outcome falling
    /// short of the network's own prediction for it: `r + γ·max Q(s′) − Q(s, a)` below
    /// `−surprise_margin`, with `Q(s, a)` re-evaluated for the action the shield applied
    /// (the best allowed one when none of the actions matched it).
    fn surprised(&mut self, q: &[f32], allowed: &[bool]) -> Option<(u32, f64)> {
        let cfg = &self.model.config;
        if cfg.surprise_hold == 0 {
            self.surprise = None;
            return None;
        }
        let best_of = |q: &[f32], ok: &dyn Fn(usize) -> bool| {
            (0..q.len().min(N_ACTIONS))
                .filter(|&a| ok(a))
                .map(|a| f64::from(q[a]))
                .reduce(f64::max)
        };
        let td = self.pending.as_ref().and_then(|p| {
            let r = p.reward?;
            let before = self.q_values(&p.state).ok()?;
            let predicted = match p.action {
                Some(a) => f64::from(*before.get(a)?),
                None => best_of(&before, &|a| p.allowed & (1 << a) != 0)?,
            };
            let next = best_of(q, &|a| allowed[a])?;
            let td = r * cfg.reward_scale + cfg.gamma * next - predicted;
            (td.is_finite()).then_some(td / cfg.reward_scale)
        });
        let left = match (td, self.surprise) {
            (Some(td), _) if td < -cfg.surprise_margin => Some((cfg.surprise_hold, td)),
            (_, Some((left, td))) if left > 0 => Some((left, td)),
            _ => None,
        };
        self.surprise = left.and_then(|(n, td)| (n > 1).then_some((n - 1, td)));
        left.map(|(n, td)| (n - 1, td))
    }

    fn describe(f: &Features, obs: &Observation) -> String {
        let name = |i: Option<usize>| i.map_or("-", |i| obs.replicas[i].name.as_str());
        let x = &f.x;
        let k = features::REPLICA_FEATURES.len();
        format!(
            "worst={} lag {:.2}×slo slope {:+.2}s/s breach in {:.1} intervals; second={} lag {:.2}×slo; healthy {:.0}%; cpu {:.2}; p99 {:.2}×slo; primary {:.0}%",
            name(f.worst),
            x[0],
            x[1],
            x[2],
            name(f.second),
            x[k],
            x[2 * k] * 100.0,
            x[2 * k + 2],
            x[2 * k + 5],
            x[2 * k + 6] * 100.0
        )
    }

    /// Completes the pending transition with the next state and mask and learns from it.
    fn complete_pending(&mut self, next: &[f32; N_FEATURES], next_allowed: &[bool]) {
        let Some(p) = self.pending.take() else { return };
        let (Some(a), Some(r)) = (p.action, p.reward) else {
            return;
        };
        let scale = self.model.config.reward_scale;
        let e = Experience {
            state: p.state,
            action: a,
            reward: (r * scale) as f32,
            next: *next,
            next_allowed: mask_bits(next_allowed),
            allowed: p.allowed,
            expert: p.expert,
        };
        if let Some(l) = &mut self.learner
            && self.error.is_none()
            && let Err(err) = l.observe(e, &self.model.config)
        {
            self.error = Some(err.to_string());
        }
    }

    fn fallback(
        &mut self,
        ctx: &DecisionContext<'_>,
        why: String,
        f: &Features,
        cands: Vec<Weights>,
    ) -> Proposal {
        self.fallbacks += 1;
        let (w, _) = ShunPolicy::weights(ctx.obs, ctx.slo);
        let action = cands.iter().position(|c| *c == w);
        self.last = Explanation {
            policy: PolicyKind::Dqn.to_string(),
            state: Dqn::describe(f, ctx.obs),
            actions: vec![ActionValue {
                label: "shun".to_string(),
                weights: w.clone(),
                value: None,
                allowed: ctx.mask.allows(&w),
            }],
            fallback: Some(why.clone()),
        };
        let reason = format!("fallback to shun: {why}");
        self.propose(ctx, f, cands, w, action, None, reason)
    }

    /// Remembers the decision (to credit it when its reward arrives, with the teacher's
    /// choice when a teacher made it) and proposes it.
    #[allow(clippy::too_many_arguments)]
    fn propose(
        &mut self,
        ctx: &DecisionContext<'_>,
        f: &Features,
        candidates: Vec<Weights>,
        weights: Weights,
        action: Option<usize>,
        expert: Option<usize>,
        reason: String,
    ) -> Proposal {
        let allowed = mask_bits(
            &candidates
                .iter()
                .map(|w| ctx.mask.allows(w))
                .collect::<Vec<_>>(),
        );
        let expert = expert.filter(|&a| a < candidates.len()).map(|a| {
            let same = mask_bits(
                &candidates
                    .iter()
                    .map(|w| *w == candidates[a])
                    .collect::<Vec<_>>(),
            );
            (a, same)
        });
        self.pending = Some(Pending {
            state: f.x,
            action,
            candidates,
            current: ctx.current.clone(),
            reward: None,
            allowed,
            expert,
        });
        Proposal {
            weights,
            action,
            reason,
        }
    }
}

impl Policy for Dqn {
    fn name(&self) -> &str {
        PolicyKind::Dqn.as_str()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        if let Some(hold) = crate::rules::hold_on_replica_mismatch(ctx) {
            // Not a state the policy can describe.
            self.pending = None;
            return hold;
        }
        let n = ctx.obs.replicas.len();
        let f = features(ctx);
        let targets = candidates(n, f.worst, f.second, ctx.current);
        let mut cands = targets.clone();
        if self.model.config.step_limit
            && let Some(max) = ctx.mask.max_step()
        {
            for c in &mut cands {
                *c = ctx.current.step_toward(c, max);
            }
        }
        let allowed: Vec<bool> = cands.iter().map(|w| ctx.mask.allows(w)).collect();
        let training = self.training();
        if training {
            self.complete_pending(&f.x, &allowed);
            self.model.ranges.add(&f.x);
        }
        // Taken now: a fallback below ends any move in progress.
        let moving_to = self.moving_to.take();
        // Counted before any fallback, so a replica that recovered while the rule decided
        // is due as soon as the network decides again.
        let due = if training {
            Vec::new()
        } else {
            self.idle_recovered(ctx)
        };
        if !training {
            if !f.usable {
                return self.fallback(ctx, "nothing known in the observation".into(), &f, cands);
            }
            if let Some((j, v, lo, hi)) = self
                .model
                .ranges
                .outlier(&f.x, self.model.config.ood_margin)
            {
                let names = feature_names();
                let why = format!(
                    "feature {} = {v:.2} outside the training range {lo:.2}..{hi:.2}",
                    names.get(j).map_or("?", |s| s.as_str())
                );
                return self.fallback(ctx, why, &f, cands);
            }
        }
        let q = match self.q_values(&f.x) {
            Ok(q) => q,
            Err(e) => return self.fallback(ctx, format!("network error: {e}"), &f, cands),
        };
        let scale = self.model.config.reward_scale;
        if !training && let Some((left, td)) = self.surprised(&q, &allowed) {
            let why = format!(
                "surprise: a recent decision came out {:.1} worse than the network predicted (margin {:.1}); the rule decides for {left} more decision(s)",
                -td, self.model.config.surprise_margin
            );
            return self.fallback(ctx, why, &f, cands);
        }
        let greedy = (0..N_ACTIONS)
            .filter(|&a| allowed[a])
            .max_by(|&a, &b| q[a].total_cmp(&q[b]).then(b.cmp(&a)));
        let reason;
        let mut expert = None;
        let action = match greedy {
            None => {
                reason = "no action allowed by the shield: hold".to_string();
                None
            }
            Some(best) if training => {
                let taught = match &self.teacher {
                    Some(t) if self.rng.uniform() < self.teacher_rate => {
                        // The teacher sees each distinct allowed target once.
                        let mut uniq: Vec<Weights> = Vec::new();
                        let mut index: Vec<usize> = Vec::new();
                        for (a, w) in cands.iter().enumerate() {
                            if allowed[a] && !uniq.contains(w) {
                                uniq.push(w.clone());
                                index.push(if *w == *ctx.current { HOLD } else { a });
                            }
                        }
                        let ok = vec![true; uniq.len()];
                        t.lock()
                            .ok()
                            .and_then(|mut t| t.choose(&uniq, &ok, ctx.current))
                            .and_then(|k| index.get(k).copied())
                    }
                    _ => None,
                };
                if let Some(a) = taught {
                    reason = format!("teacher: {}", label(a));
                    expert = Some(a);
                    Some(a)
                } else if self.epsilon > 0.0 && self.rng.uniform() < self.epsilon {
                    let options: Vec<usize> = (0..N_ACTIONS).filter(|&a| allowed[a]).collect();
                    let a = options[self.rng.below(options.len())];
                    reason = format!("explore: {}", label(a));
                    Some(a)
                } else {
                    reason = format!("greedy: {}", label(best));
                    Some(best)
                }
            }
            Some(best) => {
                let cfg = &self.model.config;
                // A replica crossing the staleness SLO (either way), going down or coming
                // back ends the dwell: it damps moves in a steady state, not answers to news.
                let shunned = ShunPolicy::weights(ctx.obs, ctx.slo).1;
                let (since, news) = match &self.dwell {
                    Some((w, n, before)) if w == ctx.current => {
                        (n.saturating_add(1), *before != shunned)
                    }
                    Some(_) => (0, false),
                    None => (u32::MAX, false), // the first decision: nothing changed
                };
                // Another step towards the target the limit cut short is not a switch.
                let continuing = best != HOLD && moving_to.as_ref() == Some(&targets[best]);
                let dwelling = since < cfg.dwell && !news && !continuing;
                // News ends the dwell for good, not for one decision: until the weights change
                // again, the policy answers with the small margin.
                let since = if news { u32::MAX } else { since };
                self.dwell = Some((ctx.current.clone(), since, shunned));
                let m = if dwelling {
                    cfg.dwell_margin.max(cfg.switch_margin)
                } else {
                    cfg.switch_margin
                };
                // The return guard: the best allowed action that gives every due replica reads.
                let gives = |a: usize| due.iter().all(|&i| cands[a].replicas.get(i) > Some(&0));
                let returning = (!due.is_empty())
                    .then(|| {
                        (0..N_ACTIONS)
                            .filter(|&a| allowed[a] && gives(a))
                            .max_by(|&a, &b| q[a].total_cmp(&q[b]).then(b.cmp(&a)))
                    })
                    .flatten();
                if let Some(a) = returning {
                    let names: Vec<&str> = due
                        .iter()
                        .map(|&i| ctx.obs.replicas[i].name.as_str())
                        .collect();
                    let since = due.iter().map(|&i| self.idle[i]).min().unwrap_or(0);
                    reason = format!(
                        "return: {} recovered with no reads for {since} decisions: {} (Q={:.2})",
                        names.join(", "),
                        label(a),
                        f64::from(q[a]) / scale
                    );
                    Some(a)
                } else if best != HOLD && allowed[HOLD] && q[best] - q[HOLD] < (m * scale) as f32 {
                    reason = format!(
                        "hold: {} is within {m:.2} of it{}",
                        label(best),
                        if dwelling {
                            format!(" (dwell: weights changed {since} decisions ago)")
                        } else {
                            String::new()
                        }
                    );
                    Some(HOLD)
                } else {
                    reason = format!(
                        "greedy: {} (Q={:.2})",
                        label(best),
                        f64::from(q[best]) / scale
                    );
                    Some(best)
                }
            }
        };
        let weights = action.map_or_else(|| ctx.current.clone(), |a| cands[a].clone());
        if !training {
            self.moving_to = action
                .filter(|&a| a != HOLD && cands[a] != targets[a])
                .map(|a| targets[a].clone());
            let values: Vec<ActionValue> = (0..N_ACTIONS)
                .map(|a| ActionValue {
                    label: label(a),
                    weights: cands[a].clone(),
                    value: Some(f64::from(q[a]) / scale),
                    allowed: allowed[a],
                })
                .collect();
            self.last = Explanation {
                policy: PolicyKind::Dqn.to_string(),
                state: Dqn::describe(&f, ctx.obs),
                actions: crate::ranked(values),
                fallback: None,
            };
        }
        self.propose(ctx, &f, cands, weights, action, expert, reason)
    }

    fn learn(&mut self, t: &Transition) {
        if let Some(p) = &mut self.pending {
            // Credit the action whose target was really applied (the shield may have
            // replaced it: then the matching action, `hold` if nothing moved, or nothing).
            let applied = match p.action {
                Some(a) if p.candidates.get(a) == Some(&t.applied) => Some(a),
                _ if t.applied == p.current => Some(HOLD),
                _ => p.candidates.iter().position(|w| *w == t.applied),
            };
            p.action = applied;
            p.reward = Some(t.reward);
        }
    }

    fn explain(&self) -> Explanation {
        self.last.clone()
    }

    fn reset(&mut self) {
        self.pending = None;
        self.dwell = None;
        self.moving_to = None;
        self.surprise = None;
        self.idle.clear();
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        self.model().ok().map(|m| m.to_bytes())
    }
}

#[cfg(test)]
mod tests;
