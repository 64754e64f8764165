//! The DQN's model file: one safetensors file, the layers as `f32` tensors (`l0.weight`,
//! `l0.bias`, `l1.weight`, ...) and everything else as JSON under the single `weir` key of
//! its `__metadata__` header: format and version, feature names, action labels, hidden
//! sizes, per-feature training ranges, the configuration and how it was trained. (One key,
//! because safetensors writes the header's map in hash order: with one key the file is
//! byte-identical for identical models.)
//!
//! Loading checks everything and never panics: each error names the file and what is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use weir_core::rng::Rng;
use weir_persist::write_atomic;

use super::actions::{N_ACTIONS, labels};
use super::features::{N_FEATURES, feature_names};
use super::net::{Layer, Net, sizes};
use super::{DqnConfig, FeatureRange};
use crate::qlearn::TrainInfo;

/// The `format` field of the metadata.
pub const FORMAT: &str = "weir-dqn";
/// The version of the file layout this build reads and writes.
pub const VERSION: u32 = 1;
/// The metadata key.
const KEY: &str = "weir";

/// Why a DQN model could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DqnModelError {
    /// Reading or writing failed. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("model file {path}: {error}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// Not a safetensors file, or its metadata or tensors are not what this build expects.
    #[error("model file {path} is corrupt: {detail}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Another program's safetensors file.
    #[error("model file {path} is not a Weir DQN model (format {found:?}, expected {FORMAT:?})")]
    WrongFormat {
        /// File.
        path: PathBuf,
        /// The format found.
        found: String,
    },
    /// Written by an incompatible version.
    #[error(
        "model file {path} has format version {found}; this build of Weir reads version {VERSION} (retrain with `weir train --policy dqn`)"
    )]
    WrongVersion {
        /// File.
        path: PathBuf,
        /// Version found.
        found: u64,
    },
    /// A tensor operation failed (not expected on the CPU).
    #[error("DQN network: {0}")]
    Candle(String),
    /// Networks that cannot be averaged into one.
    #[error("cannot merge DQN networks: {0}")]
    Ensemble(String),
}

impl DqnModelError {
    pub(crate) fn candle(e: candle_core::Error) -> DqnModelError {
        DqnModelError::Candle(e.to_string())
    }
}

/// Everything but the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: String,
    version: u32,
    features: Vec<String>,
    actions: Vec<String>,
    hidden: Vec<usize>,
    feature_min: Vec<f32>,
    feature_max: Vec<f32>,
    config: DqnConfig,
    train: TrainInfo,
}

/// A trained (or untrained) network with what it needs to serve.
#[derive(Debug, Clone)]
pub struct DqnModel {
    /// The network.
    pub net: Net,
    /// Settings (the hidden sizes match `net`).
    pub config: DqnConfig,
    /// Feature ranges seen in training (empty when untrained: no out-of-range check).
    pub ranges: FeatureRange,
    /// How it was trained.
    pub info: TrainInfo,
}

fn floats(t: &Tensor) -> Result<Vec<f32>, DqnModelError> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(DqnModelError::candle)
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl DqnModel {
    /// An untrained network with Kaiming-uniform weights from `seed`.
    pub fn untrained(config: DqnConfig, seed: u64) -> Result<DqnModel, DqnModelError> {
        let net = Net::init(
            &sizes(N_FEATURES, &config.hidden, N_ACTIONS),
            &mut Rng::new(seed),
        )
        .map_err(DqnModelError::candle)?;
        Ok(DqnModel {
            net,
            config,
            ranges: FeatureRange {
                min: Vec::new(),
                max: Vec::new(),
            },
            info: TrainInfo::default(),
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (min, max) = if self.ranges.is_set() && self.ranges.min.len() == N_FEATURES {
            (self.ranges.min.clone(), self.ranges.max.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        let meta = Meta {
            format: FORMAT.to_string(),
            version: VERSION,
            features: feature_names(),
            actions: labels(),
            hidden: self.config.hidden.clone(),
            feature_min: min,
            feature_max: max,
            config: self.config.clone(),
            train: self.info.clone(),
        };
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (k, l) in self.net.layers().iter().enumerate() {
            for (name, t) in [("weight", &l.weight), ("bias", &l.bias)] {
                // CPU tensors of f32 always convert; an empty tensor marks the impossible.
                let v = floats(t).unwrap_or_default();
                owned.push((format!("l{k}.{name}"), t.dims().to_vec(), le_bytes(&v)));
            }
        }
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .filter_map(|(n, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .ok()
                    .map(|v| (n.clone(), v))
            })
            .collect();
        let mut header = HashMap::new();
        header.insert(
            KEY.to_string(),
            serde_json::to_string(&meta).unwrap_or_default(),
        );
        safetensors::serialize(views, Some(header)).unwrap_or_default()
    }

    /// Parses a model; `path` is only used in error messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<DqnModel, DqnModelError> {
        let corrupt = |detail: String| DqnModelError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(KEY))
            .ok_or_else(|| {
                corrupt(format!(
                    "no `{KEY}` entry in the metadata (__metadata__) header"
                ))
            })?;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| corrupt(format!("metadata `{KEY}` is not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(DqnModelError::WrongFormat {
                path: path.to_path_buf(),
                found: format.to_string(),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(DqnModelError::WrongVersion {
                    path: path.to_path_buf(),
                    found: v,
                });
            }
            None => return Err(corrupt("metadata: missing or non-integer `version`".into())),
        }
        let meta: Meta =
            serde_json::from_value(value).map_err(|e| corrupt(format!("metadata: {e}")))?;
        meta.config
            .validate()
            .map_err(|e| corrupt(format!("metadata: config: {e}")))?;
        if meta.features != feature_names() {
            return Err(corrupt(format!(
                "metadata: features {:?} differ from this build's {:?}",
                meta.features,
                feature_names()
            )));
        }
        if meta.actions != labels() {
            return Err(corrupt(format!(
                "metadata: actions {:?} differ from this build's {:?}",
                meta.actions,
                labels()
            )));
        }
        if meta.hidden != meta.config.hidden {
            return Err(corrupt(format!(
                "metadata: hidden sizes {:?} differ from the config's {:?}",
                meta.hidden, meta.config.hidden
            )));
        }
        let ranged = !meta.feature_min.is_empty() || !meta.feature_max.is_empty();
        if ranged && (meta.feature_min.len() != N_FEATURES || meta.feature_max.len() != N_FEATURES)
        {
            return Err(corrupt(format!(
                "metadata: feature ranges have {} / {} values, expected {N_FEATURES}",
                meta.feature_min.len(),
                meta.feature_max.len()
            )));
        }
        let shape = sizes(N_FEATURES, &meta.hidden, N_ACTIONS);
        let mut layers = Vec::with_capacity(shape.len() - 1);
        for (k, pair) in shape.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let get = |name: String, dims: Vec<usize>| -> Result<Tensor, DqnModelError> {
                let view = st
                    .tensor(&name)
                    .map_err(|_| corrupt(format!("missing tensor `{name}`")))?;
                if view.dtype() != Dtype::F32 {
                    return Err(corrupt(format!(
                        "tensor `{name}` has dtype {:?}, expected F32",
                        view.dtype()
                    )));
                }
                if view.shape() != dims.as_slice() {
                    return Err(corrupt(format!(
                        "tensor `{name}` has shape {:?}, expected {dims:?}",
                        view.shape()
                    )));
                }
                let v: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                    return Err(corrupt(format!("tensor `{name}` holds {bad}")));
                }
                Tensor::from_vec(v, dims, &Device::Cpu).map_err(DqnModelError::candle)
            };
            let weight = get(format!("l{k}.weight"), vec![fan_out, fan_in])?;
            let bias = get(format!("l{k}.bias"), vec![fan_out])?;
            layers.push(Layer { weight, bias });
        }
        let expected = 2 * (shape.len() - 1);
        if st.len() != expected {
            return Err(corrupt(format!(
                "{} tensors, expected {expected} for hidden sizes {:?}",
                st.len(),
                meta.hidden
            )));
        }
        Ok(DqnModel {
            net: Net::from_layers(layers),
            ranges: FeatureRange {
                min: meta.feature_min,
                max: meta.feature_max,
            },
            config: meta.config,
            info: meta.train,
        })
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<(), DqnModelError> {
        write_atomic(path, &self.to_bytes()).map_err(|error| DqnModelError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<DqnModel, DqnModelError> {
        let bytes = std::fs::read(path).map_err(|error| DqnModelError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        DqnModel::from_bytes(&bytes, path)
    }

    /// One network whose Q-values are the mean of `members`' (an ensemble, served at the
    /// cost of one forward pass): the first layers are stacked, the hidden ones placed
    /// block-diagonally, and the output layer is the members' output layers side by side,
    /// each scaled by 1/n. The members must have the same configuration and layer sizes
    /// (each may itself be an ensemble: the result then averages all of theirs). The feature
    /// ranges are the union of the members' (a state is out of range only if it is for
    /// every member); `command` records how the whole was made.
    pub fn ensemble(members: &[DqnModel], command: String) -> Result<DqnModel, DqnModelError> {
        let bad = |m: String| DqnModelError::Ensemble(m);
        let first = members.first().ok_or_else(|| bad("no networks".into()))?;
        let n = members.len();
        if first.net.layers().len() < 2 {
            return Err(bad(format!(
                "network 0 has {} layer(s); an ensemble needs a hidden layer",
                first.net.layers().len()
            )));
        }
        for (i, m) in members.iter().enumerate() {
            if m.config != first.config {
                return Err(bad(format!(
                    "network {i}'s configuration differs from network 0's"
                )));
            }
            if m.net.layers().len() != first.net.layers().len()
                || m.net
                    .layers()
                    .iter()
                    .zip(first.net.layers())
                    .any(|(a, b)| a.weight.dims() != b.weight.dims())
            {
                return Err(bad(format!(
                    "network {i}'s layer sizes differ from network 0's"
                )));
            }
        }
        let last = first.net.layers().len() - 1;
        let mut layers = Vec::with_capacity(last + 1);
        for k in 0..=last {
            let dims = first.net.layers()[k].weight.dims().to_vec();
            let (rows, cols) = (dims[0], dims[1]);
            let mut ws = Vec::with_capacity(n);
            let mut bs = Vec::with_capacity(n);
            for m in members {
                ws.push(floats(&m.net.layers()[k].weight)?);
                bs.push(floats(&m.net.layers()[k].bias)?);
            }
            let (weight, wdims, bias) = if k == 0 {
                // The inputs are shared: stack the rows.
                (ws.concat(), (n * rows, cols), bs.concat())
            } else {
                // Member i's units read only member i's units below.
                let scale = if k == last { 1.0 / n as f32 } else { 1.0 };
                let out_rows = if k == last { rows } else { n * rows };
                let mut w = vec![0f32; out_rows * n * cols];
                for (i, wi) in ws.iter().enumerate() {
                    let row0 = if k == last { 0 } else { i * rows };
                    for r in 0..rows {
                        for c in 0..cols {
                            w[(row0 + r) * n * cols + i * cols + c] = wi[r * cols + c] * scale;
                        }
                    }
                }
                let bias = if k == last {
                    (0..rows)
                        .map(|r| bs.iter().map(|b| b[r]).sum::<f32>() * scale)
                        .collect()
                } else {
                    bs.concat()
                };
                (w, (out_rows, n * cols), bias)
            };
            let len = bias.len();
            layers.push(Layer {
                weight: Tensor::from_vec(weight, wdims, &Device::Cpu)
                    .map_err(DqnModelError::candle)?,
                bias: Tensor::from_vec(bias, len, &Device::Cpu).map_err(DqnModelError::candle)?,
            });
        }
        let ranges = if members
            .iter()
            .all(|m| m.ranges.is_set() && m.ranges.min.len() == N_FEATURES)
        {
            let fold = |pick: fn(&FeatureRange) -> &Vec<f32>, f: fn(f32, f32) -> f32| {
                (0..N_FEATURES)
                    .map(|j| {
                        members
                            .iter()
                            .map(|m| pick(&m.ranges)[j])
                            .reduce(f)
                            .unwrap_or(0.0)
                    })
                    .collect::<Vec<f32>>()
            };
            FeatureRange {
                min: fold(|r| &r.min, f32::min),
                max: fold(|r| &r.max, f32::max),
            }
        } else {
            FeatureRange {
                min: Vec::new(),
                max: Vec::new(),
            }
        };
        let mut scenarios: Vec<String> = Vec::new();
        for name in members.iter().flat_map(|m| &m.info.scenarios) {
            if scenarios.len() < 64 && !scenarios.contains(name) {
                scenarios.push(name.clone());
            }
        }
        let config = DqnConfig {
            hidden: first.config.hidden.iter().map(|h| h * n).collect(),
            members: first.config.members * n as u32,
            ..first.config.clone()
        };
        config.validate().map_err(bad)?;
        Ok(DqnModel {
            net: Net::from_layers(layers),
            config,
            ranges,
            info: TrainInfo {
                episodes: members.iter().map(|m| m.info.episodes).sum(),
                steps: members.iter().map(|m| m.info.steps).sum(),
                seed: first.info.seed,
                scenarios,
                command,
            },
        })
    }

    /// A one-line description: layers, training.
    pub fn describe(&self) -> String {
        let m = self.config.members.max(1) as usize;
        let hidden = |div: usize| {
            self.config
                .hidden
                .iter()
                .map(|h| (h / div).to_string())
                .collect::<Vec<_>>()
                .join("→")
        };
        let shape = if m > 1 {
            format!(
                "mean of {m} networks {N_FEATURES}→{}→{N_ACTIONS} (one {N_FEATURES}→{}→{N_ACTIONS})",
                hidden(m),
                hidden(1)
            )
        } else {
            format!("network {N_FEATURES}→{}→{N_ACTIONS}", hidden(1))
        };
        format!(
            "{shape}, {} training episodes ({})",
            self.info.episodes, self.info.command
        )
    }
}
