//! Realistic records for tests (this crate's, and `weir-api`'s through the `fixtures` feature).

use weir_core::{
    Decision, Explanation, Intervention, Observation, Outcome, Proposal, Rule, Slo, Weights,
};
use weir_shield::ShieldStatus;
use weir_test_support::ObsBuilder;

use weir_edge::Mode;

use crate::record::{Actuation, ErrorInfo, StepRecord};

/// A record for `obs` deciding `weights`, applied in enforce mode, no interventions.
pub fn record(seq: u64, obs: Observation, weights: Weights) -> StepRecord {
    let decision = Decision {
        at_s: obs.at_s,
        weights: weights.clone(),
        proposal: Proposal::new(weights.clone(), "test"),
        interventions: Vec::new(),
    };
    let expected = Outcome::expected(&obs, &weights, &weights, &Slo::default());
    StepRecord {
        seq,
        at_s: obs.at_s,
        observation: obs,
        decision,
        explanation: Explanation::default(),
        outcome: None,
        expected,
        reward: None,
        mode: Mode::Enforce,
        actuation: Actuation::Applied,
        source_error: None,
        drift: None,
        in_force: weights,
        shield: ShieldStatus {
            decisions: seq + 1,
            ..ShieldStatus::default()
        },
        policy: "threshold".to_string(),
        loop_duration_s: 0.002,
    }
}

/// Two records: a calm one, then one where replica-1 lags 42 s, replica-2's lag is
/// unknown, the shield moved reads off replica-1 and the source had timed out earlier.
pub fn two_records() -> [StepRecord; 2] {
    let calm = record(0, ObsBuilder::new(2).at(15.0).build(), Weights::even(2));
    let obs = ObsBuilder::new(2)
        .at(30.0)
        .lag(0, 42.0)
        .lag_unknown(1)
        .primary(0.41, 400.0)
        .build();
    let mut lagging = record(
        1,
        obs,
        Weights {
            primary: 10,
            replicas: vec![0, 90],
        },
    );
    lagging.reward = Some(-1.234);
    lagging.decision.interventions.push(Intervention {
        rule: Rule::HardStaleness,
        detail: "replica-1 lag 42.0s > 30s".to_string(),
    });
    lagging.source_error = Some(ErrorInfo::new("timeout", "prometheus: timed out after 10s"));
    [calm, lagging]
}
