//! The Q-table and its file: versioned JSON (`format = "weir-admit-qtable"`, `version = 1`)
//! carrying the state/action encoding and how the table was trained; only visited states are
//! stored (`[state, [visits per action], [q per action]]`). `f32` values round-trip exactly
//! through JSON. Written atomically with [`weir_persist::write_atomic`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state::{Encoding, HOLD, N_ACTIONS, N_STATES, encoding};
use super::train::TrainConfig;

/// The `format` field of a table file.
pub const FORMAT: &str = "weir-admit-qtable";
/// The table file version this build reads and writes.
pub const VERSION: u64 = 1;

/// The table shipped with the crate (trained with `cargo run --release -p weir-admit
/// --example qlearn_train`).
const EMBEDDED: &str = include_str!("../../models/qlearn-v1.json");
const EMBEDDED_NAME: &str = "<embedded weir-admit/models/qlearn-v1.json>";

/// How a table was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainInfo {
    /// Episodes run.
    pub episodes: u32,
    /// Q updates made.
    pub decisions: u64,
    /// The training configuration (seed included).
    pub config: TrainConfig,
}

/// Why a table could not be used. `file` is the path, or the embedded table's name.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// No such file.
    #[error("Q-table {file}: not found")]
    NotFound {
        /// The file.
        file: String,
    },
    /// Reading or writing failed. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("Q-table {file}: {error}")]
    Io {
        /// The file.
        file: String,
        /// Cause.
        error: std::io::Error,
    },
    /// Not JSON, or not the expected structure.
    #[error("Q-table {file} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// Another program's file.
    #[error("Q-table {file} has format {found:?}, expected {FORMAT:?}")]
    WrongFormat {
        /// The file.
        file: String,
        /// The `format` found.
        found: String,
    },
    /// Written by an incompatible version.
    #[error("Q-table {file} has version {found}; this build reads version {VERSION} (retrain)")]
    WrongVersion {
        /// The file.
        file: String,
        /// The version found.
        found: u64,
    },
    /// A different state or action encoding.
    #[error("Q-table {file} has the wrong dimensions: {detail} (retrain)")]
    WrongDimensions {
        /// The file.
        file: String,
        /// What differs.
        detail: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row(u32, [u32; N_ACTIONS], [f32; N_ACTIONS]);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    format: String,
    version: u64,
    states: usize,
    actions: usize,
    encoding: Encoding,
    training: Option<TrainInfo>,
    rows: Vec<Row>,
}

/// Q-values and visit counts for every state × action.
#[derive(Debug, Clone, PartialEq)]
pub struct QTable {
    pub(crate) q: Vec<f32>,
    pub(crate) visits: Vec<u32>,
    pub(crate) training: Option<TrainInfo>,
}

impl Default for QTable {
    fn default() -> Self {
        QTable::zero()
    }
}

impl QTable {
    /// An untrained table: every state holds the limit.
    pub fn zero() -> QTable {
        QTable {
            q: vec![0.0; N_STATES * N_ACTIONS],
            visits: vec![0; N_STATES * N_ACTIONS],
            training: None,
        }
    }

    /// The table shipped with the crate.
    pub fn embedded() -> Result<QTable, TableError> {
        QTable::from_json(EMBEDDED, EMBEDDED_NAME)
    }

    /// How the table was trained (`None` for an untrained one).
    pub fn training(&self) -> Option<&TrainInfo> {
        self.training.as_ref()
    }

    /// Q(state, action).
    pub fn q(&self, state: usize, action: usize) -> f32 {
        self.q[state * N_ACTIONS + action]
    }

    /// Updates visited during training of (state, action).
    pub fn visits(&self, state: usize, action: usize) -> u32 {
        self.visits[state * N_ACTIONS + action]
    }

    /// States with at least one visit.
    pub fn visited_states(&self) -> usize {
        self.visits
            .chunks(N_ACTIONS)
            .filter(|v| v.iter().any(|&n| n > 0))
            .count()
    }

    /// The greedy action: the highest Q among tried actions; an unvisited state, or a tie
    /// with "hold", holds.
    pub fn greedy(&self, state: usize) -> usize {
        let row = state * N_ACTIONS;
        let mut best = HOLD;
        let mut best_q = f32::NEG_INFINITY;
        if self.visits[row + HOLD] > 0 {
            best_q = self.q[row + HOLD];
        }
        for a in 0..N_ACTIONS {
            if self.visits[row + a] > 0 && self.q[row + a] > best_q {
                best = a;
                best_q = self.q[row + a];
            }
        }
        best
    }

    /// The largest Q of a state (0 when unvisited).
    pub(crate) fn max_q(&self, state: usize) -> f32 {
        let row = state * N_ACTIONS;
        (0..N_ACTIONS)
            .filter(|&a| self.visits[row + a] > 0)
            .map(|a| self.q[row + a])
            .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
            .unwrap_or(0.0)
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let rows = (0..N_STATES)
            .filter_map(|s| {
                let v: [u32; N_ACTIONS] = self.visits[s * N_ACTIONS..(s + 1) * N_ACTIONS]
                    .try_into()
                    .ok()?;
                let q: [f32; N_ACTIONS] =
                    self.q[s * N_ACTIONS..(s + 1) * N_ACTIONS].try_into().ok()?;
                v.iter().any(|&n| n > 0).then_some(Row(s as u32, v, q))
            })
            .collect();
        let file = TableFile {
            format: FORMAT.to_string(),
            version: VERSION,
            states: N_STATES,
            actions: N_ACTIONS,
            encoding: encoding(),
            training: self.training.clone(),
            rows,
        };
        // Plain data with finite numbers: serialising to a String cannot fail.
        serde_json::to_string(&file).unwrap_or_default()
    }

    /// Parses a table; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<QTable, TableError> {
        let corrupt = |detail: String| TableError::Corrupt {
            file: file.to_string(),
            detail,
        };
        let dims = |detail: String| TableError::WrongDimensions {
            file: file.to_string(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(TableError::WrongFormat {
                file: file.to_string(),
                found: format.unwrap_or("(missing)").to_string(),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(VERSION) => {}
            Some(found) => {
                return Err(TableError::WrongVersion {
                    file: file.to_string(),
                    found,
                });
            }
            None => return Err(corrupt("missing or non-integer `version`".into())),
        }
        let count = |k: &str| value.get(k).and_then(|v| v.as_u64());
        if count("states") != Some(N_STATES as u64) || count("actions") != Some(N_ACTIONS as u64) {
            return Err(dims(format!(
                "{:?} states x {:?} actions, this build uses {N_STATES} x {N_ACTIONS}",
                count("states"),
                count("actions")
            )));
        }
        let enc = value
            .get("encoding")
            .cloned()
            .map(serde_json::from_value::<Encoding>)
            .transpose()
            .map_err(|e| corrupt(format!("encoding: {e}")))?;
        if enc.as_ref() != Some(&encoding()) {
            return Err(dims(
                "the state/action encoding differs from this build's".into(),
            ));
        }
        let parsed: TableFile =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        let mut t = QTable::zero();
        for (k, Row(s, v, q)) in parsed.rows.into_iter().enumerate() {
            let s = s as usize;
            if s >= N_STATES {
                return Err(corrupt(format!(
                    "rows[{k}]: state {s} is out of range (< {N_STATES})"
                )));
            }
            if let Some(bad) = q.iter().find(|x| !x.is_finite()) {
                return Err(corrupt(format!("rows[{k}]: non-finite value {bad}")));
            }
            t.visits[s * N_ACTIONS..(s + 1) * N_ACTIONS].copy_from_slice(&v);
            t.q[s * N_ACTIONS..(s + 1) * N_ACTIONS].copy_from_slice(&q);
        }
        t.training = parsed.training;
        Ok(t)
    }

    /// Writes the table atomically.
    pub fn save(&self, path: &Path) -> Result<(), TableError> {
        weir_persist::write_atomic(path, self.to_json().as_bytes()).map_err(|error| {
            TableError::Io {
                file: path.display().to_string(),
                error,
            }
        })
    }

    /// Reads a table file.
    pub fn load(path: &Path) -> Result<QTable, TableError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TableError::NotFound { file: file.clone() }
            } else {
                TableError::Io {
                    file: file.clone(),
                    error: source,
                }
            }
        })?;
        QTable::from_json(&text, &file)
    }
}
