//! One control interval, without IO.

use weir_core::{
    Decision, DecisionContext, Explanation, History, Observation, Outcome, Policy, Record,
    RewardConfig, Slo, Transition, Weights,
};
use weir_shield::Shield;

/// What one [`ControlStep::step`] produced.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The decision to actuate.
    pub decision: Decision,
    /// The outcome of the previous interval (true in the simulator, estimated otherwise).
    pub outcome: Option<Outcome>,
    /// The reward of the previous interval.
    pub reward: Option<f64>,
    /// Why the policy proposed what it did.
    pub explanation: Explanation,
    /// What the controller expects of this decision, judged from the observation it was
    /// made on (stale reads sent to replicas over the SLO, failed reads to replicas down).
    pub expected: Outcome,
}

/// Policy + shield + history: the decision pipeline of one managed cluster. Generic over
/// the policy so that training can take a concrete policy back out; everything else uses the
/// default, `dyn Policy`.
pub struct ControlStep<P: Policy + ?Sized = dyn Policy> {
    policy: Box<P>,
    shield: Shield,
    slo: Slo,
    reward: RewardConfig,
    history: History,
    current: Weights,
    /// Weights in force before the latest decision (for the jitter term).
    before_last: Weights,
}

impl<P: Policy + ?Sized> ControlStep<P> {
    /// A pipeline starting from the weights `initial` currently in force.
    pub fn new(
        policy: Box<P>,
        shield: Shield,
        slo: Slo,
        reward: RewardConfig,
        initial: Weights,
        history_len: usize,
    ) -> Self {
        ControlStep {
            policy,
            shield,
            slo,
            reward,
            history: History::with_capacity(history_len),
            before_last: initial.clone(),
            current: initial,
        }
    }

    /// Runs one interval. `true_outcome` is what really happened since the previous decision
    /// when the caller knows it (the simulator); otherwise the outcome is estimated from the
    /// observation. Its `moved_fraction` is filled in here.
    pub fn step(&mut self, obs: Observation, true_outcome: Option<Outcome>) -> StepOutput {
        let mut outcome = None;
        let mut reward = None;
        if let Some(last) = self.history.last() {
            let applied = last.decision.weights.clone();
            let moved = self.before_last.moved_fraction(&applied);
            let o = match true_outcome {
                Some(o) => Outcome {
                    moved_fraction: moved,
                    ..o
                },
                None => Outcome::expected(&obs, &applied, &self.before_last, &self.slo),
            };
            let r = self.reward.reward(&o, &self.slo);
            self.policy.learn(&Transition {
                applied,
                outcome: o,
                reward: r,
            });
            outcome = Some(o);
            reward = Some(r);
        }
        let proposal = {
            let mask = self.shield.mask(&obs, &self.current);
            let ctx = DecisionContext {
                obs: &obs,
                current: &self.current,
                history: &self.history,
                slo: &self.slo,
                mask: &mask,
            };
            self.policy.decide(&ctx)
        };
        let explanation = self.policy.explain();
        let decision = self.shield.apply(&obs, &self.current, proposal);
        let expected = Outcome::expected(&obs, &decision.weights, &self.current, &self.slo);
        self.before_last = std::mem::replace(&mut self.current, decision.weights.clone());
        self.history.push(Record {
            observation: obs,
            decision: decision.clone(),
            reward,
        });
        StepOutput {
            decision,
            outcome,
            reward,
            explanation,
            expected,
        }
    }

    /// Tells the pipeline which weights are really in force (after a failed actuation, or
    /// when an operator changed them by hand).
    pub fn set_current(&mut self, weights: Weights) {
        self.current = weights;
    }

    /// The weights in force.
    pub fn current(&self) -> &Weights {
        &self.current
    }

    /// Recent records.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The shield (status, pause, override).
    pub fn shield(&self) -> &Shield {
        &self.shield
    }

    /// The shield, mutably.
    pub fn shield_mut(&mut self) -> &mut Shield {
        &mut self.shield
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        self.policy.as_ref()
    }

    /// The policy, mutably (to save or reset it).
    pub fn policy_mut(&mut self) -> &mut P {
        self.policy.as_mut()
    }

    /// The SLO.
    pub fn slo(&self) -> &Slo {
        &self.slo
    }

    /// Gives the policy back (to reuse it in the next episode or save it).
    pub fn into_policy(self) -> Box<P> {
        self.policy
    }

    /// Starts a new episode from `initial` weights: clears history and per-episode state.
    pub fn reset(&mut self, initial: Weights) {
        self.history.clear();
        self.shield.reset_episode();
        self.policy.reset();
        self.before_last = initial.clone();
        self.current = initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Proposal, policy::AllowAll};
    use weir_shield::ShieldConfig;
    use weir_test_support::ObsBuilder;

    /// Always proposes everything on replica 1 and remembers the rewards it was given.
    struct Greedy {
        rewards: Vec<f64>,
    }

    impl Policy for Greedy {
        fn name(&self) -> &str {
            "greedy"
        }
        fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
            let _ = AllowAll;
            let mut w = Weights::all_primary(ctx.obs.replicas.len());
            w.primary = 0;
            w.replicas[0] = 100;
            Proposal::new(w, "all on replica-1")
        }
        fn learn(&mut self, t: &Transition) {
            self.rewards.push(t.reward);
        }
        fn explain(&self) -> Explanation {
            Explanation::default()
        }
    }

    #[test]
    fn step_shields_records_and_feeds_back_reward() {
        let shield = Shield::new(ShieldConfig::default(), Slo::default(), 2);
        let mut step: ControlStep = ControlStep::new(
            Box::new(Greedy { rewards: vec![] }),
            shield,
            Slo::default(),
            RewardConfig::default(),
            Weights::even(2),
            10,
        );
        let out = step.step(ObsBuilder::new(2).at(15.0).build(), None);
        assert!(out.reward.is_none());
        // The step limit turns 50/50 → 100/0 into a 25-point move.
        assert_eq!(out.decision.weights.replicas, vec![75, 25]);
        // Replica 1 now lags beyond the SLO: the estimated outcome counts its reads stale.
        let out = step.step(ObsBuilder::new(2).at(30.0).lag(0, 10.0).build(), None);
        let o = out.outcome.unwrap();
        assert!((o.stale_fraction - 0.75).abs() < 1e-9);
        assert!((o.moved_fraction - 0.25).abs() < 1e-9);
        assert!(out.reward.unwrap() < 0.0);
        // What is expected of the new decision is judged on the same observation: every
        // read it sends to replica 1 (lagging 10 s, over the 5-s SLO) counts stale.
        let sent = out.decision.weights.replica_share(0);
        assert!(sent > 0.75, "{}", out.decision.weights);
        assert!((out.expected.stale_fraction - sent).abs() < 1e-9);
        let before = Weights {
            primary: 0,
            replicas: vec![75, 25],
        };
        let moved = before.moved_fraction(&out.decision.weights);
        assert!((out.expected.moved_fraction - moved).abs() < 1e-9);
        assert_eq!(step.history().len(), 2);
        assert_eq!(step.history().last().unwrap().reward, out.reward);
    }
}
