//! The policy registry: every product policy by name, and how each is built.
//!
//! [`PolicyKind`] is the one list of product policies. Everything that names a policy — the
//! `[policy] kind` of `weir run`, the `ReadSplit`'s `spec.policy.kind`, `weir demo --policy`,
//! `weir bench --policies`, the lab's arms — parses it from here, and [`PolicyKind::build`]
//! is the one place that turns a name (and, for a learned policy, its [`Model`]) into a
//! `Box<dyn Policy>`. Adding a policy means adding a variant here and its arms below; nothing
//! else in the workspace matches on policy names.
//!
//! A learned policy's model and its snapshots are bytes ([`Model::from_bytes`],
//! [`weir_core::Policy::snapshot`]): the tabular model is JSON text, a network's weights are
//! binary. [`PolicyKind::snapshot_file`] names the file a snapshot is kept in.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use weir_core::Policy;

use crate::dqn::{Dqn, DqnModel, DqnModelError};
use crate::qlearn::{ModelError, QLearn};
use crate::rules::{ShunPolicy, StaticPolicy, ThresholdPolicy};

/// The product policies. (The lookahead oracle is a benchmark yardstick that needs the
/// simulator; it lives in `weir-eval` and is not listed here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// ProxySQL-style: a replica over the SLO gets no reads, back when healthy.
    Shun,
    /// The seed design's threshold rule.
    Threshold,
    /// Tabular Q-learning (needs a model), inside the shield.
    Qlearn,
    /// A deep Q-network (needs a model), inside the shield.
    Dqn,
    /// Fixed weights; the shield still applies.
    Static,
}

/// A name that is not a product policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {name:?}: expected {}", PolicyKind::names())]
pub struct UnknownPolicy {
    /// The name given.
    pub name: String,
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy decides from a trained model and none was given.
    #[error("policy {0} needs a model (train one with `weir train`)")]
    NeedsModel(PolicyKind),
    /// The model was trained for another policy.
    #[error("policy {kind} cannot use a model of policy {model}")]
    WrongModel {
        /// The policy asked for.
        kind: PolicyKind,
        /// The policy the model belongs to.
        model: PolicyKind,
    },
    /// The policy has no model to load.
    #[error("policy {0} has no model")]
    NoModel(PolicyKind),
    /// The model could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The DQN model could not be read.
    #[error(transparent)]
    DqnModel(#[from] DqnModelError),
}

impl PolicyKind {
    /// Every product policy, in the order they are listed to people.
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::Shun,
        PolicyKind::Threshold,
        PolicyKind::Qlearn,
        PolicyKind::Dqn,
        PolicyKind::Static,
    ];

    /// The name, as written in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Shun => "shun",
            PolicyKind::Threshold => "threshold",
            PolicyKind::Qlearn => "qlearn",
            PolicyKind::Dqn => "dqn",
            PolicyKind::Static => "static",
        }
    }

    /// Parses a name (`shun`, `threshold`, `qlearn`, `dqn`, `static`).
    pub fn parse(name: &str) -> Result<PolicyKind, UnknownPolicy> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownPolicy {
                name: name.to_string(),
            })
    }

    /// Every name, for messages: `shun, threshold, qlearn, dqn or static`.
    pub fn names() -> String {
        let names: Vec<&str> = PolicyKind::ALL.iter().map(|k| k.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// Whether the policy decides from a trained model.
    pub fn needs_model(self) -> bool {
        matches!(self, PolicyKind::Qlearn | PolicyKind::Dqn)
    }

    /// Whether the policy can keep learning in service (and so has state to save). The DQN
    /// does not: it is trained offline only (online gradient steps on live feedback are
    /// neither cheap nor safe to leave unattended).
    pub fn learns(self) -> bool {
        matches!(self, PolicyKind::Qlearn)
    }

    /// The file name a snapshot of this policy's learned state is kept under (in a state
    /// directory, or as a ConfigMap key); `None` for policies that learn nothing.
    pub fn snapshot_file(self) -> Option<&'static str> {
        match self {
            PolicyKind::Qlearn => Some("policy.json"),
            PolicyKind::Dqn => Some("policy.safetensors"),
            PolicyKind::Shun | PolicyKind::Threshold | PolicyKind::Static => None,
        }
    }

    /// The file name of this policy's model as `weir train` writes it by default, and the key
    /// a Kubernetes ConfigMap holds it under (`data` for the table's JSON, `binaryData` for
    /// the network's safetensors); `None` for policies without a model.
    pub fn model_file(self) -> Option<&'static str> {
        match self {
            PolicyKind::Qlearn => Some("model.json"),
            PolicyKind::Dqn => Some("model.safetensors"),
            PolicyKind::Shun | PolicyKind::Threshold | PolicyKind::Static => None,
        }
    }

    /// Builds the policy. `model` is required when [`PolicyKind::needs_model`]; a learned
    /// policy is served greedily, and keeps learning from live rewards when
    /// `online_learning` is set.
    pub fn build(
        self,
        model: Option<&Model>,
        online_learning: bool,
    ) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(match self {
            PolicyKind::Shun => Box::new(ShunPolicy::default()),
            PolicyKind::Threshold => Box::new(ThresholdPolicy::default()),
            PolicyKind::Static => Box::new(StaticPolicy::default()),
            PolicyKind::Qlearn => match model.ok_or(PolicyError::NeedsModel(self))? {
                Model::Qlearn(q) => {
                    let mut q: QLearn = (**q).clone();
                    q.serve_mode(online_learning);
                    Box::new(q)
                }
                other => {
                    return Err(PolicyError::WrongModel {
                        kind: self,
                        model: other.kind(),
                    });
                }
            },
            PolicyKind::Dqn => match model.ok_or(PolicyError::NeedsModel(self))? {
                // Served greedily; it does not learn online (see `learns`).
                Model::Dqn(m) => Box::new(Dqn::new((**m).clone())),
                other => {
                    return Err(PolicyError::WrongModel {
                        kind: self,
                        model: other.kind(),
                    });
                }
            },
        })
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::parse(s)
    }
}

impl PartialEq<str> for PolicyKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PolicyKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A trained model, loaded and checked, for the policy that reads it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Model {
    /// A Q-table (boxed: it is much larger than a DQN's handle).
    Qlearn(Box<QLearn>),
    /// A DQN's network and metadata (boxed, like the table).
    Dqn(Box<DqnModel>),
}

impl Model {
    /// Reads the model of policy `kind` from `bytes` (a file's or a snapshot's contents);
    /// `origin` names where they came from in errors.
    pub fn from_bytes(kind: PolicyKind, bytes: &[u8], origin: &Path) -> Result<Model, PolicyError> {
        match kind {
            PolicyKind::Qlearn => {
                let text = std::str::from_utf8(bytes).map_err(|e| ModelError::Corrupt {
                    path: origin.to_path_buf(),
                    detail: format!("not UTF-8 text: {e}"),
                })?;
                Ok(Model::Qlearn(Box::new(QLearn::from_json(text, origin)?)))
            }
            PolicyKind::Dqn => Ok(Model::Dqn(Box::new(DqnModel::from_bytes(bytes, origin)?))),
            PolicyKind::Shun | PolicyKind::Threshold | PolicyKind::Static => {
                Err(PolicyError::NoModel(kind))
            }
        }
    }

    /// The model shipped inside the binary for policy `kind` (`models/` of the source tree,
    /// made by `weir train` with the command recorded in it), so a learned policy runs from
    /// any directory and from an installed binary; `None` for policies without a model.
    pub fn shipped(kind: PolicyKind) -> Option<Result<Model, PolicyError>> {
        let (bytes, origin): (&[u8], &str) = match kind {
            PolicyKind::Qlearn => (
                include_bytes!("../../../models/qlearn.json"),
                "models/qlearn.json (shipped)",
            ),
            PolicyKind::Dqn => (
                include_bytes!("../../../models/dqn.safetensors"),
                "models/dqn.safetensors (shipped)",
            ),
            PolicyKind::Shun | PolicyKind::Threshold | PolicyKind::Static => return None,
        };
        Some(Model::from_bytes(kind, bytes, Path::new(origin)))
    }

    /// The model file at `path` when one is named, else the model shipped in the binary;
    /// with where it came from, for logs (`model models/dqn.safetensors`, `shipped model`).
    pub fn load_or_shipped(
        kind: PolicyKind,
        path: Option<&Path>,
    ) -> Result<(Model, String), PolicyError> {
        match path {
            Some(p) => Ok((Model::load(kind, p)?, format!("model {}", p.display()))),
            None => {
                let m = Model::shipped(kind).ok_or(PolicyError::NoModel(kind))??;
                Ok((m, "the model shipped in the binary".to_string()))
            }
        }
    }

    /// Reads the model file of policy `kind` at `path`.
    pub fn load(kind: PolicyKind, path: &Path) -> Result<Model, PolicyError> {
        let bytes = std::fs::read(path).map_err(|error| match kind {
            PolicyKind::Dqn => PolicyError::DqnModel(DqnModelError::Io {
                path: path.to_path_buf(),
                error,
            }),
            _ => PolicyError::Model(ModelError::Io {
                path: path.to_path_buf(),
                error,
            }),
        })?;
        Model::from_bytes(kind, &bytes, path)
    }

    /// The policy it belongs to.
    pub fn kind(&self) -> PolicyKind {
        match self {
            Model::Qlearn(_) => PolicyKind::Qlearn,
            Model::Dqn(_) => PolicyKind::Dqn,
        }
    }

    /// Its size, for people (`1234 states`).
    pub fn size(&self) -> String {
        match self {
            Model::Qlearn(q) => format!("{} states", q.visited_states()),
            Model::Dqn(m) => format!(
                "{} parameters",
                m.net
                    .layers()
                    .iter()
                    .map(|l| l.weight.elem_count() + l.bias.elem_count())
                    .sum::<usize>()
            ),
        }
    }

    /// One line for people: size and provenance.
    pub fn describe(&self) -> String {
        match self {
            Model::Qlearn(q) => format!(
                "{} states, {} training episodes ({})",
                q.visited_states(),
                q.info().episodes,
                q.info().command
            ),
            Model::Dqn(m) => m.describe(),
        }
    }

    /// Its contents as they are saved (the model file's bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Model::Qlearn(q) => q.to_json().into_bytes(),
            Model::Dqn(m) => m.to_bytes(),
        }
    }
}

impl From<QLearn> for Model {
    fn from(q: QLearn) -> Model {
        Model::Qlearn(Box::new(q))
    }
}

impl From<DqnModel> for Model {
    fn from(m: DqnModel) -> Model {
        Model::Dqn(Box::new(m))
    }
}

/// A policy ready to serve, and how it was obtained.
pub struct Loaded {
    /// The policy.
    pub policy: Box<dyn Policy>,
    /// For people: `shun (rule)`, `qlearn from model models/qlearn.json (…)`.
    pub description: String,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("policy", &self.policy.name())
            .field("description", &self.description)
            .finish()
    }
}

/// The policy a long-running controller serves: a rule as is, a learned policy from its last
/// saved snapshot (`saved`, when that file exists) or else from its model file.
pub fn load_for_service(
    kind: PolicyKind,
    model: Option<&Path>,
    saved: &Path,
    online_learning: bool,
) -> Result<Loaded, PolicyError> {
    if !kind.needs_model() {
        return Ok(Loaded {
            policy: kind.build(None, online_learning)?,
            description: format!("{kind} (rule)"),
        });
    }
    let (m, origin) = if saved.exists() {
        (
            Model::load(kind, saved)?,
            format!("restored state {}", saved.display()),
        )
    } else {
        Model::load_or_shipped(kind, model)?
    };
    let description = format!(
        "{kind} from {origin} ({}, online learning {})",
        m.size(),
        if online_learning { "on" } else { "off" }
    );
    Ok(Loaded {
        policy: kind.build(Some(&m), online_learning)?,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QConfig;

    #[test]
    fn every_name_round_trips_and_unknown_names_list_the_known_ones() {
        for k in PolicyKind::ALL {
            assert_eq!(PolicyKind::parse(k.as_str()), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<PolicyKind>(&json).unwrap(), k);
        }
        let err = PolicyKind::parse("magic").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown policy \"magic\": expected shun, threshold, qlearn, dqn or static"
        );
        assert!(PolicyKind::Qlearn == "qlearn");
    }

    #[test]
    fn builds_each_policy_under_its_own_name() {
        let model = Model::from(QLearn::new(QConfig::default()));
        let dqn = Model::from(DqnModel::untrained(crate::DqnConfig::default(), 1).unwrap());
        for k in PolicyKind::ALL {
            let m = if k == PolicyKind::Dqn { &dqn } else { &model };
            let p = k.build(Some(m), false).unwrap();
            assert_eq!(p.name(), k.as_str());
        }
        assert!(matches!(
            PolicyKind::Dqn.build(Some(&model), false),
            Err(PolicyError::WrongModel {
                kind: PolicyKind::Dqn,
                model: PolicyKind::Qlearn
            })
        ));
        assert_eq!(PolicyKind::Dqn.snapshot_file(), Some("policy.safetensors"));
        assert_eq!(PolicyKind::Dqn.model_file(), Some("model.safetensors"));
        assert_eq!(PolicyKind::Shun.model_file(), None);
        assert!(PolicyKind::Dqn.needs_model() && !PolicyKind::Dqn.learns());
        assert!(matches!(
            PolicyKind::Qlearn.build(None, false),
            Err(PolicyError::NeedsModel(PolicyKind::Qlearn))
        ));
    }

    #[test]
    fn every_learned_policy_ships_a_model_that_loads() {
        for k in PolicyKind::ALL {
            match Model::shipped(k) {
                Some(m) => {
                    let m = m.unwrap();
                    assert_eq!(m.kind(), k);
                    assert!(k.build(Some(&m), false).is_ok());
                }
                None => assert!(!k.needs_model(), "{k} needs a model and ships none"),
            }
        }
    }

    #[test]
    fn models_are_bytes_checked_on_load() {
        let q = QLearn::new(QConfig::default());
        let bytes = Model::from(q.clone()).to_bytes();
        let back = Model::from_bytes(PolicyKind::Qlearn, &bytes, Path::new("m")).unwrap();
        let Model::Qlearn(back) = back else {
            panic!("not a Q-table")
        };
        assert!(back.same_table(&q));
        let err = Model::from_bytes(PolicyKind::Qlearn, &[0xff, 0xfe], Path::new("m.bin"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.bin") && err.contains("UTF-8"), "{err}");
        assert!(matches!(
            Model::from_bytes(PolicyKind::Shun, b"{}", Path::new("m")),
            Err(PolicyError::NoModel(PolicyKind::Shun))
        ));
    }

    #[test]
    fn a_service_restores_saved_state_before_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.json");
        let saved = dir.path().join("policy.json");
        QLearn::new(QConfig::default()).save(&model).unwrap();
        let l = load_for_service(PolicyKind::Qlearn, Some(&model), &saved, false).unwrap();
        assert!(l.description.contains("from model"), "{}", l.description);
        assert!(l.description.contains("0 states"), "{}", l.description);
        QLearn::new(QConfig::default()).save(&saved).unwrap();
        let l = load_for_service(PolicyKind::Qlearn, Some(&model), &saved, true).unwrap();
        assert!(
            l.description.contains("restored state"),
            "{}",
            l.description
        );
        assert!(
            l.description.contains("online learning on"),
            "{}",
            l.description
        );
        let l = load_for_service(PolicyKind::Shun, Some(&model), &saved, false).unwrap();
        assert_eq!(l.description, "shun (rule)");
        assert_eq!(l.policy.name(), "shun");
        let err = load_for_service(
            PolicyKind::Qlearn,
            Some(&dir.path().join("none")),
            &saved.with_extension("x"),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("none"), "{err}");
        // No model named: the one shipped in the binary.
        for kind in [PolicyKind::Qlearn, PolicyKind::Dqn] {
            let l = load_for_service(kind, None, &saved.with_extension("x"), false).unwrap();
            assert!(l.description.contains("shipped"), "{}", l.description);
            assert_eq!(l.policy.name(), kind.as_str());
        }
    }
}
