//! The rule-based policies Weir is compared against (and falls back on).

use weir_core::{DecisionContext, Explanation, Observation, Policy, Proposal, Slo, Weights};

use crate::PolicyKind;

/// Equal weights on every replica, nothing on the primary.
#[derive(Debug, Clone, Default)]
pub struct StaticPolicy {
    last: Option<Weights>,
}

impl Policy for StaticPolicy {
    fn name(&self) -> &str {
        PolicyKind::Static.as_str()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        let w = Weights::even(ctx.obs.replicas.len());
        self.last = Some(w.clone());
        Proposal::new(w, "static: equal replica weights")
    }

    fn explain(&self) -> Explanation {
        rule_explanation(
            PolicyKind::Static,
            "ignores observations",
            self.last.as_ref(),
        )
    }
}

/// The seed design's rule: if any replica lags more than `threshold_s`, every read goes to
/// the primary; otherwise every read goes to the replicas.
#[derive(Debug, Clone)]
pub struct ThresholdPolicy {
    /// Lag threshold in seconds (the seed uses 5).
    pub threshold_s: f64,
    last: Option<(Weights, String)>,
}

impl ThresholdPolicy {
    /// The seed's rule with its 5 s threshold.
    pub fn new(threshold_s: f64) -> Self {
        ThresholdPolicy {
            threshold_s,
            last: None,
        }
    }
}

impl Default for ThresholdPolicy {
    fn default() -> Self {
        ThresholdPolicy::new(5.0)
    }
}

impl Policy for ThresholdPolicy {
    fn name(&self) -> &str {
        PolicyKind::Threshold.as_str()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        let n = ctx.obs.replicas.len();
        let max_lag = ctx.obs.max_known_lag_s();
        let (w, why) = match max_lag {
            Some(l) if l > self.threshold_s => (
                Weights::all_primary(n),
                format!(
                    "max lag {l:.1}s > {:.0}s: all reads to the primary",
                    self.threshold_s
                ),
            ),
            _ => (
                Weights::even(n),
                "lag under threshold: all reads to the replicas".to_string(),
            ),
        };
        self.last = Some((w.clone(), why.clone()));
        Proposal::new(w, why)
    }

    fn explain(&self) -> Explanation {
        let (w, why) = match &self.last {
            Some((w, why)) => (Some(w), why.as_str()),
            None => (None, ""),
        };
        rule_explanation(PolicyKind::Threshold, why, w)
    }
}

/// ProxySQL-style shunning: a replica whose lag exceeds `max_staleness_s` (or is unknown, as
/// ProxySQL treats a NULL lag as 60 s by default, or is down) gets weight 0; it is back as
/// soon as its lag is under the limit again (no hysteresis). The primary takes reads only
/// when every replica is shunned.
#[derive(Debug, Clone, Default)]
pub struct ShunPolicy {
    last: Option<(Weights, String)>,
}

impl ShunPolicy {
    /// The shun rule as a pure function (also the Q-learner's fallback).
    pub fn weights(obs: &Observation, slo: &Slo) -> (Weights, Vec<usize>) {
        let mut shunned = Vec::new();
        let factors: Vec<f64> = obs
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ok =
                    r.up != Some(false) && r.lag_s.value.is_some_and(|l| l <= slo.max_staleness_s);
                if !ok {
                    shunned.push(i);
                }
                if ok { 1.0 } else { 0.0 }
            })
            .collect();
        (Weights::from_parts(0.0, &factors), shunned)
    }
}

impl Policy for ShunPolicy {
    fn name(&self) -> &str {
        PolicyKind::Shun.as_str()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        let (w, shunned) = ShunPolicy::weights(ctx.obs, ctx.slo);
        let why = if shunned.is_empty() {
            "no replica over the staleness limit".to_string()
        } else {
            let names: Vec<&str> = shunned
                .iter()
                .map(|&i| ctx.obs.replicas[i].name.as_str())
                .collect();
            format!(
                "shunned (lag over {:.0}s, unknown or down): {}",
                ctx.slo.max_staleness_s,
                names.join(", ")
            )
        };
        self.last = Some((w.clone(), why.clone()));
        Proposal::new(w, why)
    }

    fn explain(&self) -> Explanation {
        let (w, why) = match &self.last {
            Some((w, why)) => (Some(w), why.as_str()),
            None => (None, ""),
        };
        rule_explanation(PolicyKind::Shun, why, w)
    }
}

/// A learned policy's answer to an observation whose replicas do not line up with the current
/// weights: hold them (the shield holds in this case too). `None` when they line up.
pub(crate) fn hold_on_replica_mismatch(ctx: &DecisionContext<'_>) -> Option<Proposal> {
    let n = ctx.obs.replicas.len();
    (ctx.current.replicas.len() != n).then(|| {
        Proposal::new(
            ctx.current.clone(),
            format!(
                "observation has {n} replicas, the weights {}: hold",
                ctx.current.replicas.len()
            ),
        )
    })
}

fn rule_explanation(policy: PolicyKind, state: &str, chosen: Option<&Weights>) -> Explanation {
    Explanation {
        policy: policy.to_string(),
        state: state.to_string(),
        actions: chosen
            .map(|w| weir_core::ActionValue {
                label: "rule".to_string(),
                weights: w.clone(),
                value: None,
                allowed: true,
            })
            .into_iter()
            .collect(),
        fallback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{History, policy::AllowAll};
    use weir_test_support::ObsBuilder;

    fn decide(p: &mut dyn Policy, obs: &Observation) -> Weights {
        let h = History::with_capacity(4);
        let slo = Slo::default();
        let current = Weights::even(obs.replicas.len());
        let ctx = DecisionContext {
            obs,
            current: &current,
            history: &h,
            slo: &slo,
            mask: &AllowAll,
        };
        p.decide(&ctx).weights
    }

    #[test]
    fn static_ignores_everything() {
        let obs = ObsBuilder::new(2).lag(0, 100.0).build();
        assert_eq!(decide(&mut StaticPolicy::default(), &obs), Weights::even(2));
    }

    #[test]
    fn threshold_is_all_or_nothing() {
        let mut p = ThresholdPolicy::default();
        assert_eq!(
            decide(&mut p, &ObsBuilder::new(2).lag(1, 4.9).build()),
            Weights::even(2)
        );
        assert_eq!(
            decide(&mut p, &ObsBuilder::new(2).lag(1, 5.1).build()),
            Weights::all_primary(2)
        );
    }

    #[test]
    fn shun_drops_lagging_unknown_and_down_and_uses_primary_only_when_all_are_out() {
        let mut p = ShunPolicy::default();
        let w = decide(&mut p, &ObsBuilder::new(3).lag(0, 6.0).build());
        assert_eq!(
            w,
            Weights {
                primary: 0,
                replicas: vec![0, 50, 50]
            }
        );
        let w = decide(&mut p, &ObsBuilder::new(3).lag_unknown(0).down(1).build());
        assert_eq!(
            w,
            Weights {
                primary: 0,
                replicas: vec![0, 0, 100]
            }
        );
        let w = decide(&mut p, &ObsBuilder::new(2).lag(0, 6.0).lag(1, 7.0).build());
        assert_eq!(w, Weights::all_primary(2));
        // Back at once when under the limit (no hysteresis).
        assert_eq!(
            decide(&mut p, &ObsBuilder::new(2).lag(0, 4.0).build()),
            Weights::even(2)
        );
    }
}
