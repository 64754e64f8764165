//! The `TrafficPolicy` custom resource (`weir.dev/v1alpha1`) and its reconciler.
//!
//! A TrafficPolicy's `spec` is a policy file's `spec` (`weir_govern::policy::TrafficPolicySpec`,
//! the same schema). Each reconciliation compiles it with `weir-govern` — the policy's name,
//! namespace and labels are the resource's — and then:
//!
//! - a policy that does not compile is `Ready=False`, reason `Invalid`, with every problem
//!   (`TrafficPolicy shop/checkout: spec.routes[0]... = ...: ...`); nothing is applied;
//! - otherwise every generated object is applied with server-side apply as field manager
//!   [`GOVERN_MANAGER`], never forced, owned by the TrafficPolicy (a controller owner
//!   reference that blocks its deletion), in the compiler's order (DestinationRules before the
//!   VirtualService that names their subsets);
//! - an apply refused because another field manager owns a field is the `Conflict` condition
//!   (naming that manager and its fields); the operator stops there and never forces;
//! - objects an earlier generation generated that this one does not (the EnvoyFilter of a rate
//!   limit since removed) are deleted: they carry the labels `weir.dev/traffic-policy=<name>`
//!   and `app.kubernetes.io/managed-by=weir` and an owner reference to this TrafficPolicy;
//! - status: `Ready` (and `Conflict`), `observedGeneration`, the numbers of routes and objects,
//!   the objects applied and the compiler's notes.
//!
//! The kinds a compiled policy may contain, and the resource each is applied as, are
//! [`GENERATED_KINDS`]; the operator's RBAC (`crate::deploy`) is derived from the same table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::{Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::MANAGER;
use crate::metrics::Metrics;
use crate::reconcile::{new_condition, truncate};

/// The field manager of every object compiled from a TrafficPolicy.
pub const GOVERN_MANAGER: &str = "weir-govern";

/// A kind a compiled policy may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedKind {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// The resource it is applied as.
    pub plural: &'static str,
    /// Whether a policy may stop generating it (so the reconciler looks for leftovers to
    /// delete). Every policy compiles into its DestinationRule and VirtualService, named after
    /// it; the rate-limit ConfigMap and the EnvoyFilters come and go with its `rate_limit`, the
    /// PrometheusRule with its `monitoring`.
    pub optional: bool,
}

/// Every kind a compiled policy may contain. An object of any other kind is refused before
/// anything is applied.
pub const GENERATED_KINDS: &[GeneratedKind] = &[
    GeneratedKind {
        api_version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        optional: true,
    },
    GeneratedKind {
        api_version: "networking.istio.io/v1",
        kind: "DestinationRule",
        plural: "destinationrules",
        optional: false,
    },
    GeneratedKind {
        api_version: "networking.istio.io/v1alpha3",
        kind: "EnvoyFilter",
        plural: "envoyfilters",
        optional: true,
    },
    GeneratedKind {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        plural: "virtualservices",
        optional: false,
    },
    GeneratedKind {
        api_version: "monitoring.coreos.com/v1",
        kind: "PrometheusRule",
        plural: "prometheusrules",
        optional: true,
    },
];

impl GeneratedKind {
    /// Its API group (`""` for the core group).
    pub fn group(&self) -> &'static str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// The verbs the reconciler uses on it: server-side apply (`patch`, and `create` when the
    /// object is new); for an optional kind also `list` (to find what the policy no longer
    /// generates) and `delete`.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.optional {
            &["create", "patch", "list", "delete"]
        } else {
            &["create", "patch"]
        }
    }

    fn resource(&self) -> ApiResource {
        let version = self
            .api_version
            .rsplit('/')
            .next()
            .unwrap_or(self.api_version);
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), version, self.kind),
            self.plural,
        )
    }
}

/// How long after a failed or conflicting reconciliation it is tried again.
const RETRY: Duration = Duration::from_secs(60);
/// How often an applied policy is applied again (repairing edits other writers made to
/// fields it owns without taking them over).
const RESYNC: Duration = Duration::from_secs(600);

/// A TrafficPolicy's desired state: a policy file's `spec`, unchanged.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    plural = "trafficpolicies",
    shortname = "tpol",
    namespaced,
    status = "TrafficPolicyStatus",
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct TrafficPolicySpec(pub weir_govern::policy::TrafficPolicySpec);

/// What the operator last did with a TrafficPolicy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Routes in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<u32>,
    /// Objects the policy compiles into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u32>,
    /// The objects applied, in order, as `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    /// The compiler's caveats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `Ready` (reasons `Applied`, `Invalid`, `Conflict`, `ApplyFailed`, `UnsupportedKind`)
    /// and `Conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Why a TrafficPolicy reconciliation failed; [`TrafficError::metric_label`] is its stable
/// metric label.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The API server refused or could not be reached. (Each message carries its cause, so
    /// no variant has a `source`: `{:#}` prints the cause once.)
    #[error("kubernetes API: {}", weir_edge::with_causes(.0))]
    Kube(kube::Error),
    /// The TrafficPolicy has no namespace (it is namespaced; a malformed object).
    #[error("TrafficPolicy {0} has no namespace")]
    NoNamespace(String),
    /// The compiled objects could not be serialised.
    #[error("TrafficPolicy {origin}: serialising the compiled objects: {error}")]
    Serialize {
        /// `TrafficPolicy ns/name`.
        origin: String,
        /// The cause.
        error: serde_json::Error,
    },
    /// The compiler produced an object of a kind the operator does not know how to apply.
    #[error(
        "TrafficPolicy {origin}: compiled object {name} is {api_version} {kind}, which the operator does not apply (known: {known})"
    )]
    UnknownKind {
        /// `TrafficPolicy ns/name`.
        origin: String,
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// The object's name.
        name: String,
        /// The kinds it knows.
        known: String,
    },
}

impl From<kube::Error> for TrafficError {
    fn from(e: kube::Error) -> Self {
        TrafficError::Kube(e)
    }
}

impl TrafficError {
    /// Stable snake_case label for `weir_operator_traffic_policy_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TrafficError::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            TrafficError::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            TrafficError::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            TrafficError::Kube(_) => "kube",
            TrafficError::NoNamespace(_) => "malformed",
            TrafficError::Serialize { .. } => "serialize",
            TrafficError::UnknownKind { .. } => "unsupported_kind",
        }
    }
}

/// Shared by every TrafficPolicy reconciliation.
pub struct TrafficContext {
    client: Client,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// The operator's metrics (shared with the ReadSplit reconciler).
    pub metrics: Arc<Metrics>,
}

impl TrafficContext {
    /// A context on `client`, reading time (for condition transitions) from `clock`.
    pub fn new(
        client: Client,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        metrics: Arc<Metrics>,
    ) -> Self {
        TrafficContext {
            client,
            clock,
            metrics,
        }
    }
}

/// The resource of a compiled object, or why it has none.
fn resource_of(object: &Value, origin: &str) -> Result<ApiResource, TrafficError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some(generated) = GENERATED_KINDS
        .iter()
        .find(|g| g.api_version == api_version && g.kind == kind)
    else {
        return Err(TrafficError::UnknownKind {
            origin: origin.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            known: GENERATED_KINDS
                .iter()
                .map(|g| format!("{} {}", g.api_version, g.kind))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    Ok(generated.resource())
}

/// `Kind/name` of a compiled object.
fn describe(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The policy as `weir-govern` reads it: the resource's name, namespace and labels with its
/// spec.
fn policy_of(tp: &TrafficPolicy, ns: &str) -> weir_govern::TrafficPolicy {
    weir_govern::TrafficPolicy {
        api_version: weir_govern::policy::API_VERSION.to_string(),
        kind: weir_govern::policy::KIND.to_string(),
        metadata: weir_govern::policy::Metadata {
            name: tp.name_any(),
            namespace: Some(ns.to_string()),
            labels: tp.labels().clone(),
            annotations: Default::default(),
        },
        spec: tp.spec.0.clone(),
    }
}

/// What one reconciliation ends in, for the status.
enum Outcome {
    /// Everything applied.
    Applied {
        applied: Vec<String>,
        notes: Vec<String>,
        objects: usize,
    },
    /// Not applied, with the `Ready` reason and message (and, for a conflict, the `Conflict`
    /// condition's message).
    NotReady {
        reason: &'static str,
        message: String,
        conflict: Option<String>,
        applied: Vec<String>,
    },
}

impl Outcome {
    /// Not applied, for `reason`, without a conflict.
    fn failed(reason: &'static str, message: String, applied: Vec<String>) -> Outcome {
        Outcome::NotReady {
            reason,
            message,
            conflict: None,
            applied,
        }
    }
}

/// The kube-runtime reconciler for TrafficPolicies.
pub async fn reconcile(
    tp: Arc<TrafficPolicy>,
    ctx: Arc<TrafficContext>,
) -> Result<Action, TrafficError> {
    let name = tp.name_any();
    let ns = tp
        .namespace()
        .ok_or_else(|| TrafficError::NoNamespace(name.clone()))?;
    if tp.meta().deletion_timestamp.is_some() {
        // Kubernetes deletes what it owns.
        return Ok(Action::await_change());
    }
    let result = govern(&tp, &ctx, &ns, &name).await;
    ctx.metrics.observe_traffic_reconcile(result.is_ok());
    result
}

/// The kube-runtime error policy: count it, try again later.
pub fn error_policy(
    tp: Arc<TrafficPolicy>,
    error: &TrafficError,
    ctx: Arc<TrafficContext>,
) -> Action {
    tracing::warn!(trafficpolicy = %tp.name_any(), kind = error.metric_label(), error = %error, "reconcile failed");
    ctx.metrics.count_traffic_error(error.metric_label());
    Action::requeue(RETRY)
}

async fn govern(
    tp: &TrafficPolicy,
    ctx: &TrafficContext,
    ns: &str,
    name: &str,
) -> Result<Action, TrafficError> {
    let origin = format!("TrafficPolicy {ns}/{name}");
    let policy = policy_of(tp, ns);
    let output = match weir_govern::compile(&policy, &origin) {
        Ok(output) => output,
        Err(problems) => {
            ctx.metrics.count_traffic_error("invalid_policy");
            let outcome = Outcome::failed("Invalid", problems.to_string(), Vec::new());
            patch_status(tp, ctx, ns, name, outcome).await?;
            // Nothing to do until the spec changes.
            return Ok(Action::await_change());
        }
    };
    let objects = output.objects().map_err(|error| TrafficError::Serialize {
        origin: origin.clone(),
        error,
    })?;
    // Every kind is known before anything is applied.
    let resolved = objects
        .iter()
        .map(|o| resource_of(o, &origin))
        .collect::<Result<Vec<_>, _>>();
    let resolved = match resolved {
        Ok(r) => r,
        Err(e) => {
            let outcome = Outcome::failed("UnsupportedKind", e.to_string(), Vec::new());
            patch_status(tp, ctx, ns, name, outcome).await?;
            return Err(e);
        }
    };
    let owner = owner_reference(tp);
    let mut applied = Vec::new();
    for (object, resource) in objects.iter().zip(&resolved) {
        let what = describe(object);
        let mut object = object.clone();
        object["metadata"]["namespace"] = json!(ns);
        object["metadata"]["ownerReferences"] = json!([owner]);
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, resource);
        let object_name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match api
            .patch(
                &object_name,
                &PatchParams::apply(GOVERN_MANAGER),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => applied.push(what),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                ctx.metrics.count_traffic_error("conflict");
                let message = conflict_message(&what, &status);
                tracing::warn!(trafficpolicy = %origin, object = %what, %message, "not applied: another field manager owns a field");
                let outcome = Outcome::NotReady {
                    reason: "Conflict",
                    message: message.clone(),
                    conflict: Some(message),
                    applied,
                };
                patch_status(tp, ctx, ns, name, outcome).await?;
                return Ok(Action::requeue(RETRY));
            }
            Err(e) => {
                let outcome = Outcome::failed("ApplyFailed", format!("{what}: {e}"), applied);
                patch_status(tp, ctx, ns, name, outcome).await?;
                return Err(e.into());
            }
        }
    }
    if let Err(e) = prune(tp, ctx, ns, name, &objects).await {
        let outcome = Outcome::failed(
            "ApplyFailed",
            format!("removing objects the policy no longer generates: {e}"),
            applied,
        );
        patch_status(tp, ctx, ns, name, outcome).await?;
        return Err(e.into());
    }
    let outcome = Outcome::Applied {
        applied,
        notes: output.notes.clone(),
        objects: objects.len(),
    };
    patch_status(tp, ctx, ns, name, outcome).await?;
    Ok(Action::requeue(RESYNC))
}

/// A controller owner reference to `tp` that blocks its deletion until the object is gone.
fn owner_reference(tp: &TrafficPolicy) -> OwnerReference {
    OwnerReference {
        api_version: TrafficPolicy::api_version(&()).into_owned(),
        kind: TrafficPolicy::kind(&()).into_owned(),
        name: tp.name_any(),
        uid: tp.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Deletes the objects of optional kinds this TrafficPolicy generated earlier that `current`
/// no longer holds: found by its labels, deleted only when it owns them.
async fn prune(
    tp: &TrafficPolicy,
    ctx: &TrafficContext,
    ns: &str,
    name: &str,
    current: &[Value],
) -> Result<(), kube::Error> {
    let keep: BTreeSet<String> = current.iter().map(describe).collect();
    let selector = format!(
        "{}={name},{}={}",
        weir_govern::POLICY_LABEL,
        weir_govern::MANAGED_BY.0,
        weir_govern::MANAGED_BY.1
    );
    let uid = tp.uid().unwrap_or_default();
    for generated in GENERATED_KINDS.iter().filter(|g| g.optional) {
        let kind = generated.kind;
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &generated.resource());
        let listed = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            // The kind is not served here (the Prometheus Operator's CRDs are not installed):
            // nothing of it can be left over.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        };
        for object in listed {
            let object_name = object.name_any();
            let owned = object.owner_references().iter().any(|o| o.uid == uid);
            if owned && !keep.contains(&format!("{kind}/{object_name}")) {
                api.delete(&object_name, &DeleteParams::default()).await?;
                tracing::info!(trafficpolicy = %format!("{ns}/{name}"), object = %format!("{kind}/{object_name}"), "deleted: the policy no longer generates it");
            }
        }
    }
    Ok(())
}

/// The `Conflict` condition's message: which manager owns which fields of which object.
fn conflict_message(what: &str, status: &kube::core::Status) -> String {
    let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
    for cause in status.details.iter().flat_map(|d| &d.causes) {
        let manager = cause
            .message
            .split('"')
            .nth(1)
            .unwrap_or(cause.message.as_str())
            .to_string();
        match by_manager.iter_mut().find(|(m, _)| *m == manager) {
            Some((_, fields)) => fields.push(cause.field.clone()),
            None => by_manager.push((manager, vec![cause.field.clone()])),
        }
    }
    let owners = if by_manager.is_empty() {
        status.message.clone()
    } else {
        by_manager
            .iter()
            .map(|(m, fields)| format!("{} owned by field manager \"{m}\"", fields.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    truncate(
        &format!(
            "{what}: {owners}; {GOVERN_MANAGER} does not force: remove the field from that manager's writes (or the object), or change the policy"
        ),
        1000,
    )
}

async fn patch_status(
    tp: &TrafficPolicy,
    ctx: &TrafficContext,
    ns: &str,
    name: &str,
    outcome: Outcome,
) -> Result<(), kube::Error> {
    let now = (ctx.clock)();
    let previous = tp.status.as_ref().map_or(&[][..], |s| &s.conditions);
    let generation = tp.meta().generation;
    let condition = |type_: &str, status: bool, reason: &str, message: &str| {
        new_condition(previous, generation, &now, (type_, status), reason, message)
    };
    let conflict = |owned: Option<&String>| match owned {
        Some(m) => condition("Conflict", true, "FieldManagerConflict", m),
        None => condition(
            "Conflict",
            false,
            "NoConflict",
            "no field owned by another manager",
        ),
    };
    let routes = u32::try_from(tp.spec.0.routes.len()).ok();
    let status = match outcome {
        Outcome::Applied {
            applied,
            notes,
            objects,
        } => TrafficPolicyStatus {
            observed_generation: generation,
            routes,
            objects: u32::try_from(objects).ok(),
            conditions: vec![
                condition(
                    "Ready",
                    true,
                    "Applied",
                    &format!("{} objects applied", applied.len()),
                ),
                conflict(None),
            ],
            applied,
            notes,
        },
        Outcome::NotReady {
            reason,
            message,
            conflict: owned,
            applied,
        } => TrafficPolicyStatus {
            observed_generation: generation,
            routes,
            objects: None,
            applied,
            notes: Vec::new(),
            conditions: vec![
                condition("Ready", false, reason, &message),
                conflict(owned.as_ref()),
            ],
        },
    };
    // A merge patch keeps what it does not name: fields this status leaves out are cleared.
    let mut status = serde_json::to_value(&status).map_err(kube::Error::SerdeError)?;
    for key in [
        "observedGeneration",
        "routes",
        "objects",
        "applied",
        "notes",
        "conditions",
    ] {
        if let Some(map) = status.as_object_mut() {
            map.entry(key).or_insert(Value::Null);
        }
    }
    let api: Api<TrafficPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER), &Patch::Merge(&body))
        .await?;
    Ok(())
}
