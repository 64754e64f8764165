//! The experiment: one script — steady load, a replica stall, recovery, a replica kill — run
//! once per arm (static weights without Weir, then `weir run` with each policy) on the same
//! lab, and one comparison table.
//!
//! This module holds what every part shares: the script ([`Script`], [`PHASES`]), the
//! experiment's inputs ([`ExperimentConfig`]) and the samples an arm records. The parts:
//!
//! - `calibrate` — measures the primary's CPU at rest and per read and sizes its CPU budget
//!   (`Calibration`); also the load generator's settings calibration and every arm use.
//! - `config` — the `weir run` config file each Weir arm is started with.
//! - `arm` — runs one arm (reset the lab, start Weir, record weights, lag and CPU while the
//!   script plays) and the whole experiment, arm after arm ([`run`]).
//! - `report` — turns an arm's raw measurements into per-phase results (`ArmResult`), the
//!   pass/fail verdict and the Markdown comparison table ([`table`]) of the `Report`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::faults::StallKind;

mod arm;
mod calibrate;
mod config;
mod report;

pub use arm::run;
pub(crate) use arm::wait_weir_deciding;
pub(crate) use calibrate::{calibrate, load_config};
pub(crate) use config::weir_config_with;
pub use report::{Gates, table};

/// Primary CPU is sampled over windows this long (a small budget is a few clock ticks per
/// second: shorter windows would be mostly rounding).
const CPU_SAMPLE: Duration = Duration::from_secs(2);

/// Seconds since the arm started, and the weights (primary, replica-1, replica-2).
type WeightSample = (f64, [u32; 3]);
/// Seconds since the arm started, and the heartbeat lag of replica-1 and replica-2.
type LagSample = (f64, Option<f64>, Option<f64>);

/// Names of the script's phases, in order.
pub const PHASES: [&str; 4] = ["steady", "stall", "recovery", "kill"];

/// Phase lengths, seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Script {
    /// Steady load before anything happens.
    pub steady_s: f64,
    /// replica-1's apply is stalled.
    pub stall_s: f64,
    /// After the stall is released.
    pub recovery_s: f64,
    /// After replica-2 is killed.
    pub kill_s: f64,
}

impl Script {
    /// The full experiment (~3 minutes per arm).
    pub const FULL: Script = Script {
        steady_s: 30.0,
        stall_s: 60.0,
        recovery_s: 45.0,
        kill_s: 30.0,
    };
    /// The CI version (~80 s per arm).
    pub const SHORT: Script = Script {
        steady_s: 12.0,
        stall_s: 30.0,
        recovery_s: 20.0,
        kill_s: 15.0,
    };

    fn lengths(&self) -> [f64; 4] {
        [self.steady_s, self.stall_s, self.recovery_s, self.kill_s]
    }
}

/// The arm with fixed weights and no Weir: the baseline every other arm (a policy run by
/// `weir run`) is compared with.
pub const STATIC_ARM: &str = "static";

/// Everything one experiment needs.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentConfig {
    /// Arms in order: [`STATIC_ARM`] (fixed weights, no Weir) or a policy kind for `weir run`.
    pub arms: Vec<String>,
    /// Phase lengths.
    pub script: Script,
    /// How the replica is stalled.
    pub stall: StallKind,
    /// Reads per second through HAProxy.
    pub read_rate: f64,
    /// Writes per second on the primary.
    pub write_rate: f64,
    /// Reader connections.
    pub readers: usize,
    /// Reader connection lifetime, milliseconds.
    pub conn_lifetime_ms: u64,
    /// Rows each read aggregates.
    pub read_rows: u32,
    /// Staleness SLO, seconds (a read older than this is stale).
    pub max_staleness_s: f64,
    /// Weir's control interval, seconds.
    pub interval_s: f64,
    /// The share of the read load the primary is sized for (its CPU budget is calibrated
    /// from this: the CPU it uses serving that share, plus what it uses at rest).
    pub primary_capacity_share: f64,
    /// The primary's CPU cap (fraction of its budget) Weir's shield keeps it under.
    pub primary_cpu_max: f64,
    /// The `weir` binary.
    #[serde(skip)]
    pub weir_bin: PathBuf,
    /// Model file for the learned arm; `None`: the model shipped in the weir binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
}

/// Test helpers shared by the submodules' tests.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) fn test_config() -> ExperimentConfig {
        ExperimentConfig {
            arms: vec!["static".into(), "qlearn".into()],
            script: Script::SHORT,
            stall: StallKind::Ftwrl,
            read_rate: 200.0,
            write_rate: 50.0,
            readers: 8,
            conn_lifetime_ms: 1000,
            read_rows: 100,
            max_staleness_s: 2.0,
            interval_s: 1.0,
            primary_capacity_share: 0.5,
            primary_cpu_max: 0.85,
            weir_bin: PathBuf::from("weir"),
            model: None,
        }
    }
}
