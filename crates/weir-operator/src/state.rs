//! What survives a restart or a change of leader: per ReadSplit, a ConfigMap
//! `weir-state-<name>` owned by the ReadSplit (so Kubernetes deletes it with it), holding the
//! weights in force, the decision count and, for a learning policy, its table.
//!
//! `data["state.json"]` holds the weights and the count; the table is gzip-compressed in
//! `binaryData["policy.json.gz"]` (builds before it wrote `data["policy.json"]`, still read).
//! A ConfigMap holds at most 1 MiB: when `state.json` and the compressed table together would
//! exceed [`BUDGET_BYTES`], the state is saved without the table
//! ([`SaveOutcome::PolicyTooLarge`]).
//! `encode` and `decode` are the IO-free halves of [`save`] and [`load`].

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use weir_core::Weights;

use crate::MANAGER;
use crate::crd::ReadSplit;

/// Format version of `state.json`.
const VERSION: u32 = 1;

/// Key of the weights and decision count (`data`).
const STATE_KEY: &str = "state.json";
/// Key of the gzip-compressed policy snapshot (`binaryData`).
const POLICY_GZ_KEY: &str = "policy.json.gz";
/// Key of the uncompressed policy snapshot (`data`) that earlier builds wrote; read, never
/// written.
const LEGACY_POLICY_KEY: &str = "policy.json";

/// Most bytes `state.json` plus the compressed policy may take: the API server refuses a
/// ConfigMap whose values exceed 1 MiB, and this leaves room for the rest of the object.
pub const BUDGET_BYTES: usize = 900 * 1024;

/// Most bytes a policy snapshot may decompress to; a larger one is refused on load (a small
/// gzip can expand a thousandfold) and, for the same reason, never saved.
pub const MAX_POLICY_BYTES: usize = 64 * 1024 * 1024;

/// The saved state of one ReadSplit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedState {
    /// Decisions made so far.
    pub decisions: u64,
    /// The weights in force at the last save.
    pub in_force: Weights,
    /// A learning policy's snapshot (bytes: its model file's contents), when it learns
    /// online.
    #[serde(skip)]
    pub policy: Option<Vec<u8>>,
}

/// What [`save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SaveOutcome {
    /// Everything, the policy snapshot (if any) included.
    Saved,
    /// The weights in force and the decision count, but not the policy snapshot: it would not
    /// fit in [`BUDGET_BYTES`] (or exceeds [`MAX_POLICY_BYTES`] uncompressed). Any snapshot
    /// saved before is removed with it; a restart starts the policy from its model.
    PolicyTooLarge {
        /// The snapshot's size, uncompressed.
        policy_bytes: usize,
        /// Its size gzip-compressed; `None` when it was over [`MAX_POLICY_BYTES`] and so not
        /// compressed.
        compressed_bytes: Option<usize>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    version: u32,
    decisions: u64,
    in_force: Weights,
}

/// The contents of a state ConfigMap, ready to apply.
#[derive(Debug)]
struct Encoded {
    data: BTreeMap<String, String>,
    binary_data: BTreeMap<String, ByteString>,
    outcome: SaveOutcome,
}

/// Why the state could not be encoded (neither happens in practice: both write to memory).
/// (The messages carry the causes, so no variant has a `source`: `{:#}` prints each once.)
#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error("serialising state.json: {0}")]
    Json(serde_json::Error),
    #[error("compressing the policy snapshot: {0}")]
    Compress(std::io::Error),
}

impl From<serde_json::Error> for EncodeError {
    fn from(e: serde_json::Error) -> Self {
        EncodeError::Json(e)
    }
}

impl From<EncodeError> for kube::Error {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Json(e) => kube::Error::SerdeError(e),
            EncodeError::Compress(e) => kube::Error::SerdeError(serde_json::Error::io(e)),
        }
    }
}

/// Why a compressed policy snapshot could not be read.
#[derive(Debug, thiserror::Error)]
enum GunzipError {
    #[error("not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("decompresses to more than {0} bytes")]
    TooLarge(usize),
}

/// The state ConfigMap's name for ReadSplit `name`.
pub fn config_map_name(name: &str) -> String {
    format!("weir-state-{name}")
}

/// The `data` and `binaryData` that store `state`, and whether the policy fitted.
fn encode(state: &SavedState) -> Result<Encoded, EncodeError> {
    let stored = Stored {
        version: VERSION,
        decisions: state.decisions,
        in_force: state.in_force.clone(),
    };
    let state_json = serde_json::to_string(&stored)?;
    let state_bytes = state_json.len();
    let data = BTreeMap::from([(STATE_KEY.to_string(), state_json)]);
    let mut binary_data = BTreeMap::new();
    let mut outcome = SaveOutcome::Saved;
    if let Some(policy) = &state.policy {
        if policy.len() > MAX_POLICY_BYTES {
            outcome = SaveOutcome::PolicyTooLarge {
                policy_bytes: policy.len(),
                compressed_bytes: None,
            };
        } else {
            let gz = gzip(policy).map_err(EncodeError::Compress)?;
            if state_bytes + gz.len() > BUDGET_BYTES {
                outcome = SaveOutcome::PolicyTooLarge {
                    policy_bytes: policy.len(),
                    compressed_bytes: Some(gz.len()),
                };
            } else {
                binary_data.insert(POLICY_GZ_KEY.to_string(), ByteString(gz));
            }
        }
    }
    Ok(Encoded {
        data,
        binary_data,
        outcome,
    })
}

/// The state a ConfigMap holds. `None` when it cannot be used (logged: a corrupt or
/// newer-format state is never half-read; it is replaced at the next save). A policy snapshot
/// that cannot be read is logged and left out, the rest of the state kept.
fn decode(cm: &ConfigMap) -> Option<SavedState> {
    let at = format!(
        "{}/{}",
        cm.metadata.namespace.as_deref().unwrap_or_default(),
        cm.name_any()
    );
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(STATE_KEY)) else {
        tracing::warn!(configmap = %at, "state ConfigMap has no state.json; starting afresh");
        return None;
    };
    let stored = match serde_json::from_str::<Stored>(text) {
        Ok(s) if s.version == VERSION => s,
        Ok(s) => {
            tracing::error!(configmap = %at, version = s.version, "state.json has an unknown version; starting afresh");
            return None;
        }
        Err(e) => {
            tracing::error!(configmap = %at, error = %e, "state.json is unreadable; starting afresh");
            return None;
        }
    };
    Some(SavedState {
        decisions: stored.decisions,
        in_force: stored.in_force,
        policy: decode_policy(cm, &at),
    })
}

/// The policy snapshot: compressed if there is one, else the uncompressed one of earlier
/// builds. A compressed one that cannot be read is logged and counts as none (the older
/// layout is not tried: it would be staler than the one that failed).
fn decode_policy(cm: &ConfigMap, at: &str) -> Option<Vec<u8>> {
    if let Some(gz) = cm.binary_data.as_ref().and_then(|b| b.get(POLICY_GZ_KEY)) {
        return match gunzip(&gz.0, MAX_POLICY_BYTES) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!(configmap = %at, key = POLICY_GZ_KEY, error = %e, "the saved policy is unreadable; the policy starts from its model");
                None
            }
        };
    }
    cm.data
        .as_ref()
        .and_then(|d| d.get(LEGACY_POLICY_KEY))
        .map(|text| text.clone().into_bytes())
}

/// `bytes` gzip-compressed.
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// The bytes gzip `bytes` decompress to, refused beyond `cap` bytes without reading further.
/// (Whether they are a usable snapshot is for the policy's model reader to say.)
fn gunzip(bytes: &[u8], cap: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    GzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(GunzipError::Gzip)?;
    if out.len() > cap {
        return Err(GunzipError::TooLarge(cap));
    }
    Ok(out)
}

/// Reads the saved state. `None` when there is none yet, or when it cannot be used (see
/// `decode`).
pub async fn load(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<SavedState>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = api.get_opt(&config_map_name(name)).await? else {
        return Ok(None);
    };
    Ok(decode(&cm))
}

/// Writes the state (server-side apply: creates the ConfigMap or updates it in one request),
/// owned by `rs`. Keys not applied any more (the uncompressed `policy.json` of earlier builds,
/// a policy left out) are removed by the apply. A policy left out is logged here; the caller
/// counts it.
pub async fn save(
    client: &Client,
    rs: &ReadSplit,
    state: &SavedState,
) -> Result<SaveOutcome, kube::Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = config_map_name(&rs.name_any());
    let encoded = encode(state).inspect_err(|e| {
        tracing::error!(configmap = %format!("{ns}/{name}"), error = %e, "could not encode the state");
    })?;
    if let SaveOutcome::PolicyTooLarge {
        policy_bytes,
        compressed_bytes,
    } = encoded.outcome
    {
        tracing::warn!(
            configmap = %format!("{ns}/{name}"),
            policy_bytes,
            compressed_bytes,
            budget_bytes = BUDGET_BYTES,
            "the learned policy does not fit in the state ConfigMap; saving the weights in force and the decision count without it"
        );
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    MANAGER.to_string(),
                ),
                ("weir.dev/readsplit".to_string(), rs.name_any()),
            ])),
            // No blockOwnerDeletion: it would need `update` on readsplits/finalizers where
            // the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
            owner_references: Some(
                rs.controller_owner_ref(&())
                    .map(|mut o| {
                        o.block_owner_deletion = None;
                        o
                    })
                    .into_iter()
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(encoded.data),
        binary_data: (!encoded.binary_data.is_empty()).then_some(encoded.binary_data),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(encoded.outcome)
}

/// The text under `key` in ConfigMap `ns/name`; the error says which was missing.
pub async fn config_map_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, ConfigMapError> {
    config_map_entry(client, ns, name, key)
        .await
        .map(|(text, _)| text)
}

/// [`config_map_key`] with the ConfigMap's `resourceVersion`, to tell when it changes.
pub async fn config_map_entry(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<(String, Option<String>), ConfigMapError> {
    let cm = get_config_map(client, ns, name).await?;
    let version = cm.metadata.resource_version;
    cm.data
        .and_then(|d| d.get(key).cloned())
        .map(|text| (text, version))
        .ok_or_else(|| ConfigMapError::NoKey {
            at: format!("{ns}/{name}"),
            key: key.to_string(),
        })
}

/// The bytes under `key` in ConfigMap `ns/name`, from `binaryData` (binary files such as a
/// network's safetensors) or else from `data` (text such as a Q-table's JSON).
pub async fn config_map_bytes(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, ConfigMapError> {
    let cm = get_config_map(client, ns, name).await?;
    if let Some(b) = cm.binary_data.and_then(|mut d| d.remove(key)) {
        return Ok(b.0);
    }
    cm.data
        .and_then(|mut d| d.remove(key))
        .map(String::into_bytes)
        .ok_or_else(|| ConfigMapError::NoKey {
            at: format!("{ns}/{name}"),
            key: key.to_string(),
        })
}

async fn get_config_map(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<ConfigMap, ConfigMapError> {
    let at = || format!("{ns}/{name}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(cm),
        Ok(None) => Err(ConfigMapError::NotFound { at: at() }),
        Err(error) => Err(ConfigMapError::Read { at: at(), error }),
    }
}

/// Why a key of a user's ConfigMap could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    /// The ConfigMap does not exist.
    #[error("ConfigMap {at} not found")]
    NotFound {
        /// `namespace/name`.
        at: String,
    },
    /// It has no such key (under `data`, or `binaryData` where bytes are read).
    #[error("ConfigMap {at} has no key {key:?}")]
    NoKey {
        /// `namespace/name`.
        at: String,
        /// The key.
        key: String,
    },
    /// The API server could not be asked. (The message carries the cause, so it is no
    /// `source`: `{:#}` prints it once.)
    #[error("reading ConfigMap {at}: {}", weir_edge::with_causes(.error))]
    Read {
        /// `namespace/name`.
        at: String,
        /// The cause.
        error: kube::Error,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fmt::Write as _;

    use super::*;

    /// A small seeded PRNG (xorshift64*), so the tests need no dependency and are repeatable.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in `[0, 1)`.
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A Q-table snapshot laid out like `models/qlearn.json` (24 actions per state, some never
    /// tried), with random values, of at least `bytes` bytes.
    fn q_table(seed: u64, bytes: usize) -> String {
        let mut rng = Rng(seed);
        let mut s = String::from(
            r#"{"format":"weir-qlearn","version":1,"config":{"levels":[0,10,20,30,40,50,70,100],"factors":[1.0,0.3333333333333333,0.0],"gamma":0.9,"alpha_min":0.05,"min_visits":3},"dims":[7,3,3,4,3,3,3],"info":{"episodes":18000,"steps":3690000,"seed":1,"scenarios":["replica-backup"],"command":"weir train"},"entries":["#,
        );
        let mut state = 0;
        while s.len() < bytes {
            if state > 0 {
                s.push(',');
            }
            let tried: Vec<bool> = (0..24).map(|_| rng.unit() < 0.6).collect();
            let q: Vec<String> = tried
                .iter()
                .map(|&t| {
                    let v = if t { -(rng.unit() * 5.0) as f32 } else { 0.0 };
                    format!("{v:?}")
                })
                .collect();
            let visits: Vec<String> = tried
                .iter()
                .map(|&t| if t { 1 + rng.next() % 400 } else { 0 }.to_string())
                .collect();
            write!(
                s,
                r#"{{"state":{state},"q":[{}],"visits":[{}]}}"#,
                q.join(","),
                visits.join(",")
            )
            .unwrap();
            state += 1;
        }
        s.push_str("]}");
        s
    }

    /// `n` random ASCII letters and digits: compresses to about three quarters.
    fn noise(seed: u64, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = Rng(seed);
        (0..n)
            .map(|_| char::from(ALPHABET[(rng.next() % 62) as usize]))
            .collect()
    }

    fn saved(policy: Option<String>) -> SavedState {
        SavedState {
            decisions: 1234,
            in_force: Weights {
                primary: 20,
                replicas: vec![50, 30],
            },
            policy: policy.map(String::into_bytes),
        }
    }

    /// The ConfigMap the API server would return for `encoded`.
    fn config_map(encoded: Encoded) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("weir-state-orders".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            data: Some(encoded.data),
            binary_data: (!encoded.binary_data.is_empty()).then_some(encoded.binary_data),
            ..ConfigMap::default()
        }
    }

    /// Through the JSON the API server sends and receives (base64 `binaryData`).
    fn over_the_wire(cm: &ConfigMap) -> ConfigMap {
        serde_json::from_str(&serde_json::to_string(cm).unwrap()).unwrap()
    }

    fn compressed_len(cm: &ConfigMap) -> usize {
        cm.binary_data.as_ref().unwrap()[POLICY_GZ_KEY].0.len()
    }

    #[test]
    fn a_realistic_policy_is_compressed_under_the_budget_and_round_trips_exactly() {
        let policy = q_table(1, 750_000);
        assert!(
            (750_000..760_000).contains(&policy.len()),
            "{}",
            policy.len()
        );
        let state = saved(Some(policy));
        let encoded = encode(&state).unwrap();
        assert_eq!(encoded.outcome, SaveOutcome::Saved);
        let cm = over_the_wire(&config_map(encoded));
        assert!(!cm.data.as_ref().unwrap().contains_key(LEGACY_POLICY_KEY));
        let state_len = cm.data.as_ref().unwrap()[STATE_KEY].len();
        let compressed = compressed_len(&cm);
        assert!(state_len + compressed <= BUDGET_BYTES, "{compressed}");
        assert!(compressed < 750_000 / 2, "{compressed}");
        assert_eq!(decode(&cm), Some(state));
    }

    #[test]
    fn the_shipped_model_compresses_to_a_quarter() {
        let model = include_str!("../../../models/qlearn.json");
        let cm = config_map(encode(&saved(Some(model.to_string()))).unwrap());
        assert!(
            compressed_len(&cm) < model.len() / 4,
            "{}",
            compressed_len(&cm)
        );
        assert_eq!(
            decode(&cm).unwrap().policy.as_deref(),
            Some(model.as_bytes())
        );
    }

    #[test]
    fn a_binary_snapshot_round_trips_byte_for_byte() {
        // A network's weights are not text: every byte value, and invalid UTF-8.
        let weights: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let state = SavedState {
            policy: Some(weights),
            ..saved(None)
        };
        let encoded = encode(&state).unwrap();
        assert_eq!(encoded.outcome, SaveOutcome::Saved);
        assert_eq!(decode(&over_the_wire(&config_map(encoded))), Some(state));
    }

    #[test]
    fn no_policy_writes_no_binary_data() {
        let state = saved(None);
        let encoded = encode(&state).unwrap();
        assert_eq!(encoded.outcome, SaveOutcome::Saved);
        assert!(encoded.binary_data.is_empty());
        assert_eq!(decode(&over_the_wire(&config_map(encoded))), Some(state));
    }

    #[test]
    fn the_uncompressed_layout_of_earlier_builds_still_loads() {
        let policy = q_table(2, 10_000);
        let mut cm = config_map(encode(&saved(None)).unwrap());
        cm.data
            .as_mut()
            .unwrap()
            .insert(LEGACY_POLICY_KEY.into(), policy.clone());
        assert_eq!(decode(&over_the_wire(&cm)), Some(saved(Some(policy))));
    }

    #[test]
    fn the_compressed_policy_wins_over_an_old_uncompressed_one() {
        let mut cm = config_map(encode(&saved(Some("new".into()))).unwrap());
        cm.data
            .as_mut()
            .unwrap()
            .insert(LEGACY_POLICY_KEY.into(), "old".into());
        assert_eq!(decode(&cm).unwrap().policy.as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_corrupt_policy_is_left_out_and_the_rest_kept() {
        let good = gzip(q_table(3, 10_000).as_bytes()).unwrap();
        let mut truncated = good.clone();
        truncated.truncate(good.len() / 2);
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        for bad in [b"not gzip at all".to_vec(), Vec::new(), truncated, flipped] {
            let mut cm = config_map(encode(&saved(Some("x".into()))).unwrap());
            // Even with the older layout present, a bad compressed policy counts as none.
            cm.data
                .as_mut()
                .unwrap()
                .insert(LEGACY_POLICY_KEY.into(), "old".into());
            cm.binary_data
                .as_mut()
                .unwrap()
                .insert(POLICY_GZ_KEY.into(), ByteString(bad));
            assert_eq!(decode(&cm), Some(saved(None)));
        }
    }

    #[test]
    fn an_incompressible_policy_over_budget_is_left_out_and_the_rest_saved() {
        let policy = noise(4, 1_400_000);
        let state = saved(Some(policy));
        let encoded = encode(&state).unwrap();
        let SaveOutcome::PolicyTooLarge {
            policy_bytes,
            compressed_bytes: Some(compressed),
        } = encoded.outcome
        else {
            panic!("{:?}", encoded.outcome);
        };
        assert_eq!(policy_bytes, 1_400_000);
        assert!(compressed > BUDGET_BYTES, "{compressed}");
        assert!(encoded.binary_data.is_empty());
        assert_eq!(
            decode(&over_the_wire(&config_map(encoded))),
            Some(saved(None))
        );
    }

    #[test]
    fn the_budget_counts_state_json_too() {
        // A policy just under the budget alone, and a state.json of exactly the rest, then
        // one byte more.
        let policy = noise(5, BUDGET_BYTES * 4 / 3 - 8192);
        let compressed = gzip(policy.as_bytes()).unwrap().len();
        let policy = policy.into_bytes();
        assert!(compressed <= BUDGET_BYTES, "{compressed}");
        assert!(BUDGET_BYTES - compressed < 20_000, "{compressed}");
        let state_of_len = |target: usize| {
            // `"replicas":[0,0,…]` grows by two bytes a replica, `decisions` by one a digit.
            let stored_len = |decisions: u64, replicas: usize| {
                let stored = Stored {
                    version: VERSION,
                    decisions,
                    in_force: Weights {
                        primary: 0,
                        replicas: vec![0; replicas],
                    },
                };
                serde_json::to_string(&stored).unwrap().len()
            };
            let (decisions, one) = [1, 10]
                .into_iter()
                .map(|d| (d, stored_len(d, 1)))
                .find(|&(_, one)| (target - one).is_multiple_of(2))
                .unwrap();
            let replicas = 1 + (target - one) / 2;
            assert_eq!(stored_len(decisions, replicas), target);
            SavedState {
                decisions,
                in_force: Weights {
                    primary: 0,
                    replicas: vec![0; replicas],
                },
                policy: Some(policy.clone()),
            }
        };
        let fits = encode(&state_of_len(BUDGET_BYTES - compressed)).unwrap();
        assert_eq!(fits.outcome, SaveOutcome::Saved);
        assert_eq!(fits.binary_data[POLICY_GZ_KEY].0.len(), compressed);
        let over = encode(&state_of_len(BUDGET_BYTES - compressed + 1)).unwrap();
        assert_eq!(
            over.outcome,
            SaveOutcome::PolicyTooLarge {
                policy_bytes: policy.len(),
                compressed_bytes: Some(compressed),
            }
        );
        assert!(over.binary_data.is_empty());
    }

    #[test]
    fn a_policy_over_the_decompression_cap_is_not_saved() {
        let state = saved(Some(" ".repeat(MAX_POLICY_BYTES + 1)));
        let encoded = encode(&state).unwrap();
        assert_eq!(
            encoded.outcome,
            SaveOutcome::PolicyTooLarge {
                policy_bytes: MAX_POLICY_BYTES + 1,
                compressed_bytes: None,
            }
        );
        assert!(encoded.binary_data.is_empty());
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_cap() {
        // 64 MiB and one byte of spaces: valid UTF-8, about 65 kB compressed.
        let bomb = gzip(" ".repeat(MAX_POLICY_BYTES + 1).as_bytes()).unwrap();
        assert!(bomb.len() < BUDGET_BYTES, "{}", bomb.len());
        let mut cm = config_map(encode(&saved(None)).unwrap());
        cm.binary_data = Some(BTreeMap::from([(
            POLICY_GZ_KEY.to_string(),
            ByteString(bomb),
        )]));
        assert_eq!(decode(&cm), Some(saved(None)));
    }

    #[test]
    fn gunzip_reads_up_to_the_cap_exactly() {
        let text = q_table(6, 5_000);
        let gz = gzip(text.as_bytes()).unwrap();
        assert_eq!(gunzip(&gz, text.len()).unwrap(), text.as_bytes());
        assert!(matches!(
            gunzip(&gz, text.len() - 1),
            Err(GunzipError::TooLarge(_))
        ));
    }

    #[test]
    fn an_unusable_state_json_is_none() {
        let mut cm = config_map(encode(&saved(None)).unwrap());
        let data = cm.data.as_mut().unwrap();
        data.insert(STATE_KEY.into(), "{not json".into());
        assert_eq!(decode(&cm), None);
        let data = cm.data.as_mut().unwrap();
        data.insert(
            STATE_KEY.into(),
            r#"{"version":2,"decisions":1,"inForce":{"primary":100,"replicas":[]}}"#.into(),
        );
        assert_eq!(decode(&cm), None);
        cm.data = None;
        assert_eq!(decode(&cm), None);
    }
}
