//! The fault campaign (issue 17, "faults in the lab, on purpose"): a fresh lab, the load
//! generator, and `weir run` in enforce mode with the default policy, learning online and
//! saving its state every decision — then each fault in turn, measured from outside:
//!
//! - **Prometheus** killed with SIGKILL and restarted (same config and data) after a while:
//!   Weir must hold, fail safe, and decide again once it is back.
//! - **HAProxy** killed and started again from its config file while replica-1 is stalled:
//!   its weights go back to the file's (reads on the stalled replica); Weir's actuator
//!   re-applies every interval, which is how the drift is repaired.
//! - **`weir run`** killed with SIGKILL at seeded random moments (half of them aimed at the
//!   state save that follows each decision), restarted each time: the state file must load
//!   after every kill and the restarted Weir must say it restored it.
//! - **Disk full** for the state directory (a small tmpfs, filled up; root only): Weir must
//!   keep deciding, report the failed saves, keep the old state whole, and save again once
//!   space is freed.
//! - **Clock steps** for the `weir run` process only (libfaketime, `CLOCK_REALTIME` only, as
//!   an NTP step moves it; the monotonic clock never steps): +1 h, then −2 h, then back.
//!   Weir must keep deciding every interval.
//! - **A replica cut off** on the network ([`crate::faults::Cut`], `tc` on `lo`; root only):
//!   its replication stream slowed (no lock: the replica is healthy and answers reads) until
//!   its lag is far past the SLO, then restored. Weir must take reads off it while it lags past
//!   the SLO, send none back before it has caught up, and give it reads again after.
//!
//! For each: what Weir did (from the audit log, its log and `/api/state`), time until safe,
//! reads failed and stale reads in the fault's window (from the load generator), HAProxy
//! weight changes Weir made (matched to the audit log), whether every weight was valid and
//! whether the audit log accounts for every change.
//!
//! - `audit` — parsing the audit log and the state directory with Weir's own types, and
//!   attributing every observed weight change (pure, tested).
//! - `cut` — judging the replica cut from the lag and the weights polled (pure, tested).
//! - `report` — the per-fault result, the table and the `--check` verdict (pure, tested).
//! - `run` — the session: Weir's process, the monitors, and each fault's script.

use clap::ValueEnum;
use serde::Serialize;
use weir_policy::PolicyKind;

use crate::experiment::ExperimentConfig;

mod audit;
mod cut;
mod report;
mod run;

pub use report::table;
pub use run::run;

/// The policy the campaign runs: `weir run`'s default (`[policy] kind` when the section is
/// left out; a test checks they agree).
pub const POLICY: PolicyKind = PolicyKind::Dqn;

/// One fault of the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Prometheus killed (SIGKILL) and restarted.
    Prometheus,
    /// HAProxy killed and started again from its config file.
    Haproxy,
    /// `weir run` killed with SIGKILL at random moments and restarted.
    WeirKill,
    /// The state directory's file system full.
    DiskFull,
    /// The system clock (`CLOCK_REALTIME`) of the `weir run` process stepped forward and
    /// back with libfaketime.
    ClockStep,
    /// A replica's replication stream slowed on the network (`tc` on `lo`), then restored.
    ReplicaCut,
}

/// How long the campaign's replica cut lasts, seconds: long enough for the lag to pass the
/// SLO, for Weir to react and for it to be seen keeping the replica out while the lag keeps
/// growing ([`crate::faults::CAMPAIGN_CUT`] says how fast it grows).
pub const CUT_S: f64 = 30.0;

/// Everything one campaign needs.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Faults, in the order run.
    pub faults: Vec<FaultKind>,
    /// Load shape, Weir's interval, the primary's sizing and the `weir` binary (the
    /// experiment's settings: the campaign reuses its calibration and config template).
    pub base: ExperimentConfig,
    /// Seed of the kill moments.
    pub seed: u64,
    /// SIGKILLs of `weir run`.
    pub kills: usize,
    /// How long Prometheus stays down, seconds.
    pub prometheus_down_s: f64,
    /// Steady load before the first fault and between faults, seconds.
    pub settle_s: f64,
    /// How long the disk stays full, seconds.
    pub disk_full_s: f64,
    /// The check's bound on time to safe, seconds.
    pub max_safe_s: f64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_campaign_runs_weir_runs_default_policy() {
        assert_eq!(weir_config::PolicyConfig::default().kind, super::POLICY);
    }
}
