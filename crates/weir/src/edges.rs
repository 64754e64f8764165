//! The configured source and actuator, built from a [`WeirConfig`].

use anyhow::{Context, Result};
use weir_config::{ActuatorConfig, WeirConfig};
use weir_controller::{Actuator, ActuatorError, DryRunActuator};
use weir_core::{Decision, Weights};
use weir_haproxy::HaproxyActuator;
use weir_istio::IstioActuator;

/// A real actuator of either kind.
pub enum Real {
    /// HAProxy runtime API.
    Haproxy(HaproxyActuator),
    /// Istio VirtualService.
    Istio(Box<IstioActuator>),
}

impl Real {
    /// Builds the actuator the config names (`None` for `kind = "dry-run"`).
    pub async fn build(cfg: &WeirConfig) -> Result<Option<Real>> {
        Ok(match &cfg.actuator {
            ActuatorConfig::Haproxy(h) => Some(Real::Haproxy(
                HaproxyActuator::new(h.clone()).context("actuator (haproxy)")?,
            )),
            ActuatorConfig::Istio(i) => {
                let client = kube::Client::try_default()
                    .await
                    .context("actuator (istio): no Kubernetes config found (in-cluster service account or KUBECONFIG)")?;
                Some(Real::Istio(Box::new(IstioActuator::new(client, i.clone()))))
            }
            ActuatorConfig::DryRun => None,
        })
    }

    /// The weights in force now.
    pub async fn read_current(&self, replicas: usize) -> Result<Weights> {
        match self {
            Real::Haproxy(h) => Ok(h.read_current().await?),
            Real::Istio(i) => Ok(i.read_current(replicas).await?),
        }
    }

    /// Exactly what applying `decision` would send, one line per command or patch.
    pub async fn plan(&self, decision: &Decision) -> Result<Vec<String>> {
        match self {
            Real::Haproxy(h) => Ok(h.plan(decision)?),
            Real::Istio(i) => {
                let patch = i.plan_json(decision).await?;
                Ok(vec![serde_json::to_string_pretty(&patch)?])
            }
        }
    }

    /// The note on connection lifetime for this kind of actuator.
    pub fn connection_note(&self) -> &'static str {
        match self {
            Real::Haproxy(_) => weir_haproxy::connection_lifetime_note(),
            Real::Istio(_) => weir_istio::connection_lifetime_note(),
        }
    }
}

/// What `weir run` actuates with: the real actuator, or a dry-run that logs the real
/// actuator's exact plan without sending it.
pub enum AnyActuator {
    /// Apply for real.
    Real(Real),
    /// Log what would be sent (with the real actuator's plan when one is configured).
    DryRun(DryRunActuator, Option<Real>),
}

impl Actuator for AnyActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        match self {
            AnyActuator::Real(Real::Haproxy(h)) => h.apply(decision).await,
            AnyActuator::Real(Real::Istio(i)) => i.apply(decision).await,
            AnyActuator::DryRun(d, real) => {
                if d.last() != Some(&decision.weights)
                    && let Some(r) = real
                {
                    match r.plan(decision).await {
                        Ok(lines) => {
                            for l in lines {
                                tracing::info!(plan = %l, "dry-run: would send");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "dry-run: could not plan")
                        }
                    }
                }
                d.apply(decision).await
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            AnyActuator::Real(Real::Haproxy(_)) => "haproxy",
            AnyActuator::Real(Real::Istio(_)) => "istio",
            AnyActuator::DryRun(..) => "dry-run",
        }
    }
}
