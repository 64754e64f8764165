//! How the loop treats its decisions ([`Mode`]), and the operator's instructions
//! ([`Command`]) that reach it between two intervals.

use std::fmt;

use serde::{Deserialize, Serialize};
use weir_core::Weights;

/// How the controller treats its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decisions are applied by the real actuator.
    #[default]
    Enforce,
    /// Decisions are computed and recorded; the actuator is never called.
    Shadow,
    /// Decisions are handed to a dry-run actuator (it logs or prints the patch it would
    /// apply). The loop treats this like [`Mode::Enforce`]; the binary picks the actuator.
    #[serde(alias = "dry-run")]
    DryRun,
}

impl Mode {
    /// Stable label for logs, metrics and the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
            Mode::DryRun => "dry_run",
        }
    }

    /// Whether the actuator is called in this mode.
    pub fn actuates(self) -> bool {
        !matches!(self, Mode::Shadow)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's instruction, sent from the HTTP API to the controller, which applies it
/// between two intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Hold the current weights until [`Command::Resume`].
    Pause,
    /// End a pause.
    Resume,
    /// Apply `weights` as given for `duration_s` seconds of controller time.
    Override {
        /// Weights to apply.
        weights: Weights,
        /// How long, in seconds.
        duration_s: f64,
    },
    /// Cancel a manual override.
    ClearOverride,
    /// Switch mode. The controller only accepts its configured mode and `shadow`: the
    /// actuator was chosen for the configured mode.
    SetMode {
        /// The new mode.
        mode: Mode,
    },
}

impl Command {
    /// Stable label for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Override { .. } => "override",
            Command::ClearOverride => "clear_override",
            Command::SetMode { .. } => "set_mode",
        }
    }
}

/// A manual override still to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingOverride {
    /// Weights to apply.
    pub weights: Weights,
    /// Seconds it had left when the controls were taken.
    pub remaining_s: f64,
}

/// The operator's standing instructions, as they are after a command: what a restart must
/// restore (`weir run` keeps them in its state directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controls {
    /// Paused.
    pub paused: bool,
    /// The manual override in force, if any.
    #[serde(default, rename = "override")]
    pub override_: Option<StandingOverride>,
    /// The mode in force.
    pub mode: Mode,
}

impl Controls {
    /// The commands that bring a controller configured for `configured` back to these
    /// controls, `elapsed_s` after they were taken: an override that ran out in between is
    /// dropped, and a mode other than `configured` or shadow is not asked for (the
    /// controller would refuse it).
    pub fn restore(&self, configured: Mode, elapsed_s: f64) -> Vec<Command> {
        let mut out = Vec::new();
        if self.paused {
            out.push(Command::Pause);
        }
        if let Some(o) = &self.override_ {
            let left = o.remaining_s - elapsed_s.max(0.0);
            if left.is_finite() && left > 0.0 {
                out.push(Command::Override {
                    weights: o.weights.clone(),
                    duration_s: left,
                });
            }
        }
        if self.mode == Mode::Shadow && configured != Mode::Shadow {
            out.push(Command::SetMode { mode: Mode::Shadow });
        }
        out
    }

    /// Whether there is anything to restore (a pause, an override or shadowing).
    pub fn standing(&self, configured: Mode) -> bool {
        self.paused || self.override_.is_some() || self.mode != configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_restore_what_is_still_standing() {
        let c = Controls {
            paused: true,
            override_: Some(StandingOverride {
                weights: Weights::all_primary(2),
                remaining_s: 300.0,
            }),
            mode: Mode::Shadow,
        };
        assert_eq!(
            c.restore(Mode::Enforce, 100.0),
            vec![
                Command::Pause,
                Command::Override {
                    weights: Weights::all_primary(2),
                    duration_s: 200.0
                },
                Command::SetMode { mode: Mode::Shadow }
            ]
        );
        // The override ran out while the process was down; a clock that went back does not
        // make it longer.
        assert_eq!(c.restore(Mode::Enforce, 301.0).len(), 2);
        assert_eq!(
            c.restore(Mode::Shadow, -50.0)[1],
            Command::Override {
                weights: Weights::all_primary(2),
                duration_s: 300.0
            }
        );
        let none = Controls {
            paused: false,
            override_: None,
            mode: Mode::Enforce,
        };
        assert!(none.restore(Mode::Enforce, 0.0).is_empty());
        assert!(!none.standing(Mode::Enforce));
        // The file's form: `override`, unknown fields refused.
        let json = serde_json::to_string(&c).expect("serialises");
        assert!(json.contains("\"override\":{"), "{json}");
        assert_eq!(serde_json::from_str::<Controls>(&json).ok(), Some(c));
        assert!(
            serde_json::from_str::<Controls>(r#"{"paused":true,"mode":"enforce","x":1}"#).is_err()
        );
    }

    #[test]
    fn mode_accepts_dry_run_spellings() {
        for s in ["\"dry_run\"", "\"dry-run\""] {
            let m: Mode = serde_json::from_str(s).expect("mode parses");
            assert_eq!(m, Mode::DryRun);
        }
        assert_eq!(
            serde_json::to_string(&Mode::DryRun).expect("serialises"),
            "\"dry_run\""
        );
        assert!(serde_json::from_str::<Mode>("\"yolo\"").is_err());
    }
}
