//! [`IstioActuator`]: reads the VirtualService, plans the weight-only patch, sends it, and
//! starts again from a fresh read when someone else wrote in between.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;
use weir_core::{Decision, Weights};
use weir_edge::{Actuator, ActuatorError};

use crate::config::IstioConfig;
use crate::error::IstioError;
use crate::plan::{Plan, current_weights, plan_patch};

/// The field manager Weir's patches are recorded under in `metadata.managedFields`, unless
/// the process names its own ([`IstioActuator::with_field_manager`]).
pub const FIELD_MANAGER: &str = "weir";

/// What [`IstioActuator::apply_weights`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The route already had these weights: nothing was sent.
    Unchanged,
    /// The patch was accepted after this many PATCH requests (1 unless a race was lost).
    Patched {
        /// PATCH requests sent, the accepted one included.
        attempts: u32,
    },
}

/// Applies Weir's weights to one route of one Istio VirtualService
/// (`networking.istio.io/v1`), by JSON Patch only.
#[derive(Clone)]
pub struct IstioActuator {
    api: Api<DynamicObject>,
    config: IstioConfig,
    field_manager: String,
}

impl std::fmt::Debug for IstioActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IstioActuator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IstioConfig {
    /// Builds the actuator this configuration describes, on `client`. Reads nothing yet.
    pub fn build(&self, client: Client) -> IstioActuator {
        IstioActuator::new(client, self.clone())
    }
}

/// The VirtualService resource, without an Istio type crate.
pub fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

impl IstioActuator {
    /// An actuator for the VirtualService and route named in `config`. Nothing is read until
    /// the first call.
    pub fn new(client: Client, config: IstioConfig) -> Self {
        let api = Api::namespaced_with(client, &config.namespace, &virtual_service_resource());
        IstioActuator {
            api,
            config,
            field_manager: FIELD_MANAGER.to_string(),
        }
    }

    /// Records patches under `manager` (one identity per process: the operator writes its
    /// status, state and VirtualService patches under the same name).
    pub fn with_field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// Its configuration.
    pub fn config(&self) -> &IstioConfig {
        &self.config
    }

    /// The managed route's current weights as Weir weights over `replicas` replicas, summing
    /// to [`Weights::TOTAL`]. With the `two_services` layout the reader service's share is
    /// split evenly over the replicas (Istio cannot tell them apart); with `per_replica`,
    /// `replicas` must equal the number of configured replica destinations.
    pub async fn read_current(&self, replicas: usize) -> Result<Weights, IstioError> {
        let object = self.fetch().await?;
        current_weights(&object, &self.config, replicas)
    }

    /// The exact patch that applying `decision` would send now (for `weir check` and
    /// dry-run). Reads the VirtualService; writes nothing.
    pub async fn plan(&self, decision: &Decision) -> Result<json_patch::Patch, IstioError> {
        Ok(self.plan_weights(&decision.weights).await?.patch)
    }

    /// [`IstioActuator::plan`] as the JSON array that would be sent as the request body.
    pub async fn plan_json(&self, decision: &Decision) -> Result<Value, IstioError> {
        let patch = self.plan(decision).await?;
        serde_json::to_value(&patch)
            .map_err(|e| IstioError::Malformed(format!("cannot serialise the patch: {e}")))
    }

    /// The full [`Plan`] for `weights` against the VirtualService as it is now.
    pub async fn plan_weights(&self, weights: &Weights) -> Result<Plan, IstioError> {
        let object = self.fetch().await?;
        plan_patch(&object, &self.config, weights)
    }

    /// Sets the managed route to `weights`.
    ///
    /// Every attempt starts from a fresh GET and sends a patch whose `test` operations pin
    /// the `resourceVersion`, the route's identity and its destinations, so a concurrent edit
    /// makes the API server refuse it (409, or 422 for a failed `test`) instead of writing
    /// weights into the wrong route. Then Weir re-reads and tries again, up to `max_retries`
    /// times. A 422 on an object that did not change is a validation refusal, not a race, and
    /// is not retried.
    pub async fn apply_weights(&self, weights: &Weights) -> Result<ApplyOutcome, IstioError> {
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        let mut attempts = 0u32;
        let mut object = self.fetch().await?;
        loop {
            let plan = plan_patch(&object, &self.config, weights)?;
            if plan.unchanged {
                tracing::debug!(route = %plan.route_path, %weights, "istio: weights already in place");
                return Ok(ApplyOutcome::Unchanged);
            }
            attempts += 1;
            let sent = self
                .api
                .patch(
                    &self.config.virtual_service,
                    &params,
                    &Patch::Json::<()>(plan.patch),
                )
                .await;
            let status = match sent {
                Ok(_) => {
                    tracing::info!(
                        vs = %self.vs_name(),
                        route = %plan.route_path,
                        weights = ?plan.weights,
                        attempts,
                        "istio: weights patched"
                    );
                    return Ok(ApplyOutcome::Patched { attempts });
                }
                Err(kube::Error::Api(status)) => status,
                Err(other) => return Err(IstioError::from_kube(other)),
            };
            let last = format!("{} {}", status.code, status.message);
            match status.code {
                404 => return Err(self.not_found()),
                409 | 422 => {}
                _ => return Err(IstioError::from_kube(kube::Error::Api(status))),
            }
            let mut reread = false;
            if status.code == 422 {
                // A 422 is either a failed `test` (someone wrote in between) or a validation
                // refusal. Only a fresh read tells them apart.
                object = self.fetch().await?;
                reread = true;
                if resource_version(&object) == Some(&plan.resource_version) {
                    // Our tests were computed from this very object, so they held: the
                    // server refused the new weights themselves.
                    return Err(IstioError::Refused {
                        code: status.code,
                        message: status.message,
                    });
                }
            }
            if attempts > self.config.max_retries {
                return Err(IstioError::Conflict {
                    vs: self.vs_name(),
                    attempts,
                    last,
                });
            }
            if !reread {
                object = self.fetch().await?;
            }
            tracing::debug!(vs = %self.vs_name(), attempts, %last, "istio: lost a race, retrying from a fresh read");
        }
    }

    /// GETs the VirtualService as JSON.
    async fn fetch(&self) -> Result<Value, IstioError> {
        match self.api.get(&self.config.virtual_service).await {
            Ok(object) => serde_json::to_value(object)
                .map_err(|e| IstioError::Malformed(format!("cannot re-encode the object: {e}"))),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(self.not_found()),
            Err(e) => Err(IstioError::from_kube(e)),
        }
    }

    fn not_found(&self) -> IstioError {
        IstioError::VirtualServiceNotFound {
            namespace: self.config.namespace.clone(),
            name: self.config.virtual_service.clone(),
        }
    }

    fn vs_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.virtual_service)
    }
}

fn resource_version(object: &Value) -> Option<&String> {
    match object.pointer("/metadata/resourceVersion") {
        Some(Value::String(rv)) => Some(rv),
        _ => None,
    }
}

impl Actuator for IstioActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        self.apply_weights(&decision.weights)
            .await
            .map(|_| ())
            .map_err(ActuatorError::from)
    }

    fn name(&self) -> &str {
        "istio"
    }

    async fn read_current(&self, replicas: usize) -> Result<Weights, ActuatorError> {
        IstioActuator::read_current(self, replicas)
            .await
            .map_err(ActuatorError::from)
    }

    async fn plan(&self, decision: &Decision) -> Result<Vec<String>, ActuatorError> {
        let plan = self
            .plan_weights(&decision.weights)
            .await
            .map_err(ActuatorError::from)?;
        if plan.unchanged {
            return Ok(Vec::new());
        }
        let body = serde_json::to_string_pretty(&plan.patch)
            .map_err(|e| ActuatorError::Other(format!("cannot serialise the patch: {e}")))?;
        Ok(vec![body])
    }

    fn connection_note(&self) -> Option<&'static str> {
        Some(crate::connection_lifetime_note())
    }
}
