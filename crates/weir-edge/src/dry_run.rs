//! [`DryRunActuator`]: applies nothing, shows what would be applied.

use weir_core::{Decision, Weights};

use crate::{Actuator, ActuatorError, BoxActuator};

/// An actuator that changes nothing.
///
/// Alone ([`DryRunActuator::new`]) it logs the weights it would apply. Given the real actuator
/// ([`DryRunActuator::planning_with`]) it asks that one, every interval, for the exact commands
/// or patch it would send ([`Actuator::plan`]), logs them whenever the weights change, and
/// reports a planning failure (the route is missing, the target is unreachable) as the
/// actuation error the real run would hit: a dry run that cannot plan is not a success.
pub struct DryRunActuator {
    target: Option<BoxActuator>,
    last: Option<Weights>,
}

impl std::fmt::Debug for DryRunActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRunActuator")
            .field("target", &self.target)
            .field("last", &self.last)
            .finish()
    }
}

impl Default for DryRunActuator {
    fn default() -> Self {
        DryRunActuator::new()
    }
}

impl DryRunActuator {
    /// A dry run with no target: it logs the weights only.
    pub fn new() -> Self {
        DryRunActuator {
            target: None,
            last: None,
        }
    }

    /// A dry run of `target`: plans with it, never applies.
    pub fn planning_with(target: impl Actuator) -> Self {
        DryRunActuator {
            target: Some(BoxActuator::new(target)),
            last: None,
        }
    }

    /// The weights it would have applied last.
    pub fn last(&self) -> Option<&Weights> {
        self.last.as_ref()
    }
}

impl Actuator for DryRunActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        let changed = self.last.as_ref() != Some(&decision.weights);
        if let Some(target) = &self.target {
            let plan = target.plan(decision).await?;
            if changed {
                for line in plan {
                    tracing::info!(actuator = target.name(), plan = %line, "dry-run: would send");
                }
            }
        }
        if changed {
            tracing::info!(weights = %decision.weights, at_s = decision.at_s, "dry-run: would apply");
        }
        self.last = Some(decision.weights.clone());
        Ok(())
    }

    fn name(&self) -> &str {
        "dry-run"
    }

    async fn read_current(&self, replicas: usize) -> Result<Weights, ActuatorError> {
        match &self.target {
            Some(t) => t.read_current(replicas).await,
            None => Err(ActuatorError::Other(
                "a dry run without a target has no weights to read".to_string(),
            )),
        }
    }

    async fn plan(&self, decision: &Decision) -> Result<Vec<String>, ActuatorError> {
        match &self.target {
            Some(t) => t.plan(decision).await,
            None => Ok(Vec::new()),
        }
    }

    fn connection_note(&self) -> Option<&'static str> {
        self.target.as_ref().and_then(Actuator::connection_note)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use weir_core::Proposal;

    use super::*;

    /// Counts applies; plans one line per decision, or fails as told.
    struct Target {
        applied: Arc<Mutex<u32>>,
        fail: Option<ActuatorError>,
    }

    impl Actuator for Target {
        async fn apply(&mut self, _decision: &Decision) -> Result<(), ActuatorError> {
            if let Ok(mut n) = self.applied.lock() {
                *n += 1;
            }
            Ok(())
        }
        fn name(&self) -> &str {
            "target"
        }
        async fn plan(&self, decision: &Decision) -> Result<Vec<String>, ActuatorError> {
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok(vec![format!("set {}", decision.weights)]),
            }
        }
        fn connection_note(&self) -> Option<&'static str> {
            Some("new connections only")
        }
    }

    fn decision(w: Weights) -> Decision {
        Decision {
            at_s: 0.0,
            proposal: Proposal::new(w.clone(), "test"),
            weights: w,
            interventions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn plans_with_the_target_and_never_applies() {
        let applied = Arc::new(Mutex::new(0));
        let mut dry = DryRunActuator::planning_with(Target {
            applied: applied.clone(),
            fail: None,
        });
        let d = decision(Weights::even(2));
        dry.apply(&d).await.expect("dry run");
        assert_eq!(*applied.lock().unwrap(), 0);
        assert_eq!(dry.last(), Some(&Weights::even(2)));
        assert_eq!(dry.plan(&d).await.unwrap(), vec!["set P0/50/50"]);
        assert_eq!(dry.connection_note(), Some("new connections only"));
        assert_eq!(dry.name(), "dry-run");
    }

    #[tokio::test]
    async fn a_plan_that_fails_is_the_actuation_error() {
        let mut dry = DryRunActuator::planning_with(Target {
            applied: Arc::default(),
            fail: Some(ActuatorError::TargetMissing("no route".into())),
        });
        let err = dry.apply(&decision(Weights::even(2))).await.unwrap_err();
        assert_eq!(err.kind(), "rejected");
        assert!(dry.last().is_none());
    }

    #[tokio::test]
    async fn without_a_target_it_only_remembers() {
        let mut dry = DryRunActuator::new();
        dry.apply(&decision(Weights::all_primary(1))).await.unwrap();
        assert_eq!(dry.last(), Some(&Weights::all_primary(1)));
        assert!(dry.read_current(1).await.is_err());
        assert!(
            dry.plan(&decision(Weights::even(1)))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
