//! The Q-table's file format: versioned JSON, sparse (only visited states), written
//! atomically. `f32` values round-trip exactly through JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{QConfig, QLearn, state::dims};
use weir_persist::write_atomic;

const FORMAT: &str = "weir-qlearn";
const VERSION: u32 = 1;

/// How a model was trained (carried in the file, shown by `weir demo` and `/api/state`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainInfo {
    /// Training episodes.
    pub episodes: u64,
    /// Decisions (Q updates) made in training.
    pub steps: u64,
    /// Master seed.
    pub seed: u64,
    /// Scenario names trained on.
    pub scenarios: Vec<String>,
    /// The command that produced the model.
    pub command: String,
}

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing failed. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("model file {path}: {error}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// Not JSON or not the expected structure.
    #[error("model file {path} is corrupt: {detail}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Another program's file.
    #[error(
        "model file {path} is not a Weir Q-learning model (format {found:?}, expected {FORMAT:?})"
    )]
    WrongFormat {
        /// File.
        path: PathBuf,
        /// The format field found.
        found: String,
    },
    /// Written by an incompatible version.
    #[error(
        "model file {path} has format version {found}; this build of Weir reads version {VERSION} (retrain with `weir train`)"
    )]
    WrongVersion {
        /// File.
        path: PathBuf,
        /// Version found.
        found: u64,
    },
}

/// Why two tables cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Their grids or learning settings differ.
    #[error("cannot merge models with different configurations")]
    DifferentConfigs,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    state: usize,
    q: Vec<f32>,
    visits: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: String,
    version: u32,
    config: QConfig,
    dims: Vec<usize>,
    info: TrainInfo,
    entries: Vec<Entry>,
}

impl QLearn {
    /// Serialises the table (visited states only).
    pub fn to_json(&self) -> String {
        let na = self.config.actions();
        let entries = (0..self.config.states())
            .filter(|&s| self.visits[s * na..(s + 1) * na].iter().any(|&v| v > 0))
            .map(|s| Entry {
                state: s,
                q: self.q[s * na..(s + 1) * na].to_vec(),
                visits: self.visits[s * na..(s + 1) * na].to_vec(),
            })
            .collect();
        let file = ModelFile {
            format: FORMAT.to_string(),
            version: VERSION,
            config: self.config.clone(),
            dims: dims(self.config.levels.len(), self.config.factors.len()),
            info: self.info.clone(),
            entries,
        };
        // Serialising plain data to a String cannot fail.
        serde_json::to_string(&file).unwrap_or_default()
    }

    /// Parses a model; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<QLearn, ModelError> {
        let corrupt = |detail: String| ModelError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(ModelError::WrongFormat {
                path: path.to_path_buf(),
                found: format.to_string(),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == VERSION as u64 => {}
            Some(v) => {
                return Err(ModelError::WrongVersion {
                    path: path.to_path_buf(),
                    found: v,
                });
            }
            None => {
                return Err(corrupt(
                    "missing or non-integer field `version`".to_string(),
                ));
            }
        }
        let file: ModelFile = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        file.config
            .validate()
            .map_err(|e| corrupt(format!("config: {e}")))?;
        let expected = dims(file.config.levels.len(), file.config.factors.len());
        if file.dims != expected {
            return Err(corrupt(format!(
                "state dimensions {:?} do not match this build's {:?}",
                file.dims, expected
            )));
        }
        let mut q = QLearn::new(file.config);
        let na = q.config.actions();
        let ns = q.config.states();
        for (k, e) in file.entries.iter().enumerate() {
            if e.state >= ns || e.q.len() != na || e.visits.len() != na {
                return Err(corrupt(format!(
                    "entries[{k}]: state {} with {} values / {} visits (expected state < {ns}, {na} actions)",
                    e.state,
                    e.q.len(),
                    e.visits.len()
                )));
            }
            if let Some(bad) = e.q.iter().find(|x| !x.is_finite()) {
                return Err(corrupt(format!("entries[{k}]: non-finite value {bad}")));
            }
            q.q[e.state * na..(e.state + 1) * na].copy_from_slice(&e.q);
            q.visits[e.state * na..(e.state + 1) * na].copy_from_slice(&e.visits);
        }
        q.info = file.info;
        q.recount_visited();
        Ok(q)
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|error| ModelError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Reads a model.
    pub fn load(path: &Path) -> Result<QLearn, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|error| ModelError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        QLearn::from_json(&text, path)
    }

    /// Folds `other` into this table: each value becomes the visit-weighted mean of the two,
    /// visits add up. Averaging tables trained with different seeds reduces the variance of
    /// the greedy policy (bagging). Fails when the configurations differ.
    pub fn merge(&mut self, other: &QLearn) -> Result<(), MergeError> {
        if self.config != other.config {
            return Err(MergeError::DifferentConfigs);
        }
        for i in 0..self.q.len() {
            let (va, vb) = (self.visits[i] as f64, other.visits[i] as f64);
            if va + vb > 0.0 {
                self.q[i] = ((self.q[i] as f64 * va + other.q[i] as f64 * vb) / (va + vb)) as f32;
            }
            self.visits[i] = self.visits[i].saturating_add(other.visits[i]);
        }
        self.recount_visited();
        Ok(())
    }

    /// Whether two tables are identical (configuration, values, visits, metadata).
    pub fn same_table(&self, other: &QLearn) -> bool {
        self.config == other.config
            && self.visits == other.visits
            && self.info == other.info
            && self.q.len() == other.q.len()
            && self
                .q
                .iter()
                .zip(&other.q)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}
