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

#[cfg(test)]
mod tests {
    use super::*;

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
