//! What survives a restart or a change of leader: per ReadSplit, a ConfigMap
//! `weir-state-<name>` owned by the ReadSplit (so Kubernetes deletes it with it), holding the
//! weights in force, the decision count and, for a learning policy, its table.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use weir_core::Weights;

use crate::crd::ReadSplit;
use crate::reconcile::MANAGER;

/// Format version of `state.json`.
const VERSION: u32 = 1;

/// The saved state of one ReadSplit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedState {
    /// Decisions made so far.
    pub decisions: u64,
    /// The weights in force at the last save.
    pub in_force: Weights,
    /// A learning policy's snapshot (`policy.json`), when it learns online.
    #[serde(skip)]
    pub policy: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    version: u32,
    decisions: u64,
    in_force: Weights,
}

/// The state ConfigMap's name for ReadSplit `name`.
pub fn config_map_name(name: &str) -> String {
    format!("weir-state-{name}")
}

/// Reads the saved state. `None` when there is none yet, or when it cannot be used (logged:
/// a corrupt or newer-format state is never half-read; it is replaced at the next save).
pub async fn load(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<SavedState>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm_name = config_map_name(name);
    let Some(cm) = api.get_opt(&cm_name).await? else {
        return Ok(None);
    };
    let data = cm.data.unwrap_or_default();
    let Some(text) = data.get("state.json") else {
        tracing::warn!(configmap = %format!("{ns}/{cm_name}"), "state ConfigMap has no state.json; starting afresh");
        return Ok(None);
    };
    match serde_json::from_str::<Stored>(text) {
        Ok(s) if s.version == VERSION => Ok(Some(SavedState {
            decisions: s.decisions,
            in_force: s.in_force,
            policy: data.get("policy.json").cloned(),
        })),
        Ok(s) => {
            tracing::error!(configmap = %format!("{ns}/{cm_name}"), version = s.version, "state.json has an unknown version; starting afresh");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(configmap = %format!("{ns}/{cm_name}"), error = %e, "state.json is unreadable; starting afresh");
            Ok(None)
        }
    }
}

/// Writes the state (server-side apply: creates the ConfigMap or updates it in one request),
/// owned by `rs`.
pub async fn save(client: &Client, rs: &ReadSplit, state: &SavedState) -> Result<(), kube::Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = config_map_name(&rs.name_any());
    let stored = Stored {
        version: VERSION,
        decisions: state.decisions,
        in_force: state.in_force.clone(),
    };
    let mut data = serde_json::Map::new();
    data.insert(
        "state.json".into(),
        serde_json::Value::String(serde_json::to_string(&stored).unwrap_or_default()),
    );
    if let Some(p) = &state.policy {
        data.insert("policy.json".into(), serde_json::Value::String(p.clone()));
    }
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGER,
                "weir.dev/readsplit": rs.name_any(),
            },
            // No blockOwnerDeletion: it would need `update` on readsplits/finalizers where
            // the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
            "ownerReferences": rs
                .controller_owner_ref(&())
                .map(|mut o| {
                    o.block_owner_deletion = None;
                    o
                })
                .into_iter()
                .collect::<Vec<_>>(),
        },
        "data": data,
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The text under `key` in ConfigMap `ns/name`; the error says which was missing.
pub async fn config_map_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(cm)) => cm
            .data
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| format!("ConfigMap {ns}/{name} has no key {key:?}")),
        Ok(None) => Err(format!("ConfigMap {ns}/{name} not found")),
        Err(e) => Err(format!("reading ConfigMap {ns}/{name}: {e}")),
    }
}
