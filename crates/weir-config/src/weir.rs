//! The settings of `weir run` and `weir check`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weir_core::{RewardConfig, Slo};
use weir_edge::Mode;
use weir_policy::PolicyKind;
use weir_prom::PromConfig;
use weir_shield::ShieldConfig;

use crate::ConfigError;

/// An example configuration: the file `weir run --help` points to and the tests parse.
pub const EXAMPLE: &str = include_str!("../../../deploy/weir.example.toml");

/// Everything `weir run` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeirConfig {
    /// `enforce` applies decisions, `shadow` only records them, `dry-run` logs what it would
    /// send. Start with `shadow`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Seconds between decisions.
    #[serde(default = "default_interval_s")]
    pub interval_s: f64,
    /// Time allowed for one observation or one actuation, seconds.
    #[serde(default = "default_step_timeout_s")]
    pub step_timeout_s: f64,
    /// Address of the HTTP API and metrics (keep it on loopback or behind a proxy).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token that enables pause, resume, override and mode switches over HTTP. Off
    /// when absent. Prefer `WEIR__API_TOKEN` to writing it here.
    #[serde(default, skip_serializing)]
    pub api_token: Option<String>,
    /// Append one JSON line per decision here (the audit log).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Where the policy's learned state is saved (atomically) and restored from.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where observations come from, and which replicas exist (their order is the order of
    /// the weights everywhere).
    pub prometheus: PromConfig,
    /// Objectives.
    #[serde(default)]
    pub slo: Slo,
    /// Safety shield.
    #[serde(default)]
    pub shield: ShieldConfig,
    /// The user's priorities: how bad a stale read is against a failed read, primary load and
    /// moving traffic (the reward online learning and the dashboard use), and the primary
    /// reserve the shield enforces. `[reward]` is accepted as its older name.
    #[serde(default, alias = "reward")]
    pub priorities: RewardConfig,
    /// The decision maker.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Where decisions go: a `kind` and that kind's settings, which the actuator registry
    /// (`weir-actuators`) reads and checks.
    pub actuator: ActuatorSection,
}

/// Which policy decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `dqn`, `qlearn`, `shun`, `threshold` or `static`.
    pub kind: PolicyKind,
    /// Model file for a learned policy (`weir train` output). Absent: the model shipped in
    /// the binary (`models/` of its source tree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Keep learning from the shielded decisions in service (the table is saved to
    /// `state_dir` and restored at start).
    pub online_learning: bool,
    /// Save learned state every this many decisions (and at shutdown).
    pub save_every: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            kind: PolicyKind::Dqn,
            model: None,
            online_learning: false,
            save_every: 20,
        }
    }
}

/// The `[actuator]` section as written: its `kind` and the rest of its settings, left for the
/// actuator of that kind to read (each component owns its configuration; this crate does not
/// know every actuator's settings). Environment overrides are already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ActuatorSection {
    /// `haproxy`, `istio`, `dry-run`, ...
    pub kind: String,
    /// Everything else in the section.
    pub settings: toml::Table,
}

impl<'de> Deserialize<'de> for ActuatorSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut settings = toml::Table::deserialize(d)?;
        let kind = match settings.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`kind` must be a string, got {other}"
                )));
            }
            None => return Err(D::Error::missing_field("kind")),
        };
        Ok(ActuatorSection { kind, settings })
    }
}

impl Serialize for ActuatorSection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut table = self.settings.clone();
        table.insert("kind".to_string(), toml::Value::String(self.kind.clone()));
        table.serialize(s)
    }
}

fn default_mode() -> Mode {
    Mode::Shadow
}

fn default_interval_s() -> f64 {
    15.0
}

fn default_step_timeout_s() -> f64 {
    10.0
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("weir-state")
}

impl WeirConfig {
    /// Reads `path` with overrides from `env` and checks the result as a whole.
    pub fn load(
        path: &std::path::Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<WeirConfig, ConfigError> {
        let cfg: WeirConfig = crate::load(path, env)?;
        cfg.validate(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Names of the replicas, in weight order.
    pub fn replica_names(&self) -> Vec<String> {
        self.prometheus
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Checks the settings against each other; errors name the field. The `[actuator]`
    /// section's own settings are checked by the actuator registry (`weir-actuators`), which
    /// knows each kind.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let field = |field: &str, message: String| ConfigError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        if !(self.interval_s.is_finite() && self.interval_s >= 1.0) {
            return Err(field(
                "interval_s",
                format!("must be at least 1 second, got {}", self.interval_s),
            ));
        }
        if !(self.step_timeout_s.is_finite() && self.step_timeout_s > 0.0) {
            return Err(field(
                "step_timeout_s",
                format!("must be a positive number, got {}", self.step_timeout_s),
            ));
        }
        if let Err(errors) = self.prometheus.validate() {
            let first = &errors[0];
            return Err(field(
                &format!("prometheus.{}", first.field),
                first.problem.clone(),
            ));
        }
        let n = self.prometheus.replicas.len();
        if n == 0 {
            return Err(field(
                "prometheus.replicas",
                "list at least one replica".to_string(),
            ));
        }
        self.slo
            .validate()
            .map_err(|e| field("slo", e.to_string()))?;
        self.shield
            .validate(n)
            .map_err(|e| field("shield", e.to_string()))?;
        self.priorities
            .validate()
            .map_err(|e| field(&format!("priorities.{}", e.field), e.problem))?;
        if self.policy.save_every == 0 {
            return Err(field("policy.save_every", "must be at least 1".to_string()));
        }
        // `mode = "dry-run"` with a real actuator section is allowed on purpose: the binary
        // logs the exact commands or patch that actuator would send, without sending them.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_toml_str;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_parses_and_validates() {
        let c: WeirConfig = from_toml_str(EXAMPLE, "weir.example.toml", env(&[])).unwrap();
        c.validate("weir.example.toml").unwrap();
        assert_eq!(c.mode, Mode::Shadow);
        assert_eq!(c.replica_names().len(), 2);
        assert_eq!(c.actuator.kind, "haproxy");
        assert_eq!(c.policy.kind, PolicyKind::Dqn);
    }

    #[test]
    fn env_overrides_reach_nested_sections() {
        let c: WeirConfig = from_toml_str(
            EXAMPLE,
            "weir.example.toml",
            env(&[
                ("WEIR__MODE", "enforce"),
                ("WEIR__PROMETHEUS__BEARER_TOKEN", "t0ken"),
                ("WEIR__SHIELD__MAX_STEP", "10"),
                ("WEIR__API_TOKEN", "op"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.prometheus.bearer_token.as_deref(), Some("t0ken"));
        assert_eq!(c.shield.max_step, 10);
        assert_eq!(c.api_token.as_deref(), Some("op"));
    }

    #[test]
    fn priorities_are_one_section_and_reward_is_its_old_name() {
        let c: WeirConfig = from_toml_str(EXAMPLE, "w.toml", env(&[])).unwrap();
        assert_eq!(c.priorities, RewardConfig::default());
        let old = EXAMPLE.replace("[priorities]", "[reward]");
        let c: WeirConfig =
            from_toml_str(&old, "w.toml", env(&[("WEIR__REWARD__JITTER", "3")])).unwrap();
        assert_eq!(c.priorities.jitter, 3.0);
        let c: WeirConfig = from_toml_str(
            EXAMPLE,
            "w.toml",
            env(&[("WEIR__PRIORITIES__PRIMARY_RESERVE", "0.1")]),
        )
        .unwrap();
        assert_eq!(c.priorities.primary_reserve_points(), 10);
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                EXAMPLE.replace("interval_s = 15", "interval_s = 0.1"),
                "interval_s",
            ),
            (
                EXAMPLE.replace("mode = \"shadow\"", "mode = \"yolo\""),
                "mode",
            ),
            (
                EXAMPLE.replace("kind = \"dqn\"", "kind = \"magic\""),
                "policy.kind",
            ),
            (EXAMPLE.replace("max_step = 25", "max_step = 0"), "shield"),
            (EXAMPLE.replace("[slo]", "[slo]\ncolour = 1"), "slo"),
            (
                EXAMPLE.replace("primary_reserve = 0.0", "primary_reserve = 2"),
                "priorities.primary_reserve",
            ),
            (
                EXAMPLE.replace("stale = 20 ", "stale = -1 "),
                "priorities.stale",
            ),
            (
                EXAMPLE.replace("switch = 0.5 ", "switch = -1 "),
                "priorities.switch",
            ),
        ];
        for (text, want) in cases {
            let e = from_toml_str::<WeirConfig>(&text, "w.toml", env(&[]))
                .and_then(|c| c.validate("w.toml").map(|_| c))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.starts_with("w.toml"), "{e}");
        }
    }
}
