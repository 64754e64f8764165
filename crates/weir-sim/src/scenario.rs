//! Scenario files: the cluster, its workload, its objectives and a script of events.
//!
//! The field names are part of Weir's public surface (scenario files written elsewhere must
//! run unchanged), so every struct denies unknown fields and every error names the file, the
//! field path and the problem. See `scenarios/README.md` for the field reference.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_core::Slo;
use weir_core::rng::Rng;

/// Why a scenario could not be loaded. The `Display` form always starts with the file name.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file or directory could not be read. (The message carries the cause, so it is no
    /// `source`: the binary's `{:#}` prints it once.)
    #[error("{origin}: {error}")]
    Io {
        /// The file or directory.
        origin: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The text is not valid TOML or does not match the scenario schema (unknown or missing
    /// field, wrong type). The message comes from the TOML parser and carries line and column.
    #[error("{origin}: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// The scenario parsed but a value is out of range or inconsistent.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// Path of the offending field, e.g. `replicas[0].capacity`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A scenario directory held no `*.toml` file.
    #[error("{origin}: no scenario files (*.toml) found")]
    Empty {
        /// The directory.
        origin: String,
    },
}

/// One simulated cluster and what happens to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, used in reports.
    pub name: String,
    /// One line saying what happens.
    #[serde(default)]
    pub description: String,
    /// Simulated length, seconds.
    pub duration_s: f64,
    /// Default seed for noise and scrape phase (callers may override it).
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Tick, control and scrape timing.
    #[serde(default)]
    pub timing: Timing,
    /// How new weights reach the traffic (connection turnover).
    #[serde(default)]
    pub routing: Routing,
    /// The objectives the run is judged against.
    #[serde(default)]
    pub slo: Slo,
    /// The primary (writer).
    pub primary: PrimaryConfig,
    /// The read replicas, in weight order.
    pub replicas: Vec<ReplicaConfig>,
    /// Offered load.
    pub workload: Workload,
    /// Scripted events.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Where the scenario came from (file path or a label), for error messages.
    #[serde(skip)]
    pub origin: String,
}

/// Simulation and observation timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Simulation step, seconds.
    pub tick_s: f64,
    /// How often the controller decides, seconds.
    pub control_interval_s: f64,
    /// How often metrics are scraped, seconds.
    pub scrape_interval_s: f64,
    /// Delay between a scrape and the moment a query can see it, seconds.
    pub scrape_delay_s: f64,
    /// Relative noise (standard deviation) on observed metrics.
    pub metric_noise: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick_s: 1.0,
            control_interval_s: 15.0,
            scrape_interval_s: 15.0,
            scrape_delay_s: 2.0,
            metric_noise: 0.02,
        }
    }
}

/// How a change of weights reaches the traffic.
///
/// A proxy balancing connections rather than queries (HAProxy in TCP mode, a client-side
/// pool) applies a new weight only to new connections: the traffic follows as connections
/// turn over. With a mean connection lifetime `L > 0` the effective shares relax toward the
/// weights each tick as `eff += (target − eff) · (1 − exp(−dt/L))`; with `L = 0` (the
/// default) a weight change takes effect on the next tick.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Mean lifetime of a client connection, seconds (0 = weights act instantly).
    pub connection_lifetime_s: f64,
}

/// Upper bound on `routing.connection_lifetime_s` (an hour): longer is a configuration
/// mistake, and the simulated runs are shorter than that anyway.
pub const MAX_CONNECTION_LIFETIME_S: f64 = 3600.0;

/// The primary database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryConfig {
    /// Read-equivalent operations per second at 100% CPU.
    pub capacity: f64,
    /// Cost of one write, in read units.
    pub write_cost: f64,
    /// Read latency at zero load, milliseconds.
    pub base_latency_ms: f64,
}

/// One read replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// Unique name (the destination name in weights and observations).
    pub name: String,
    /// Reads per second at 100% utilisation.
    pub capacity: f64,
    /// Writes per second the replica applies when it serves no reads.
    pub apply_capacity: f64,
    /// Fraction of apply capacity lost at full read load (0..1).
    pub read_apply_interference: f64,
    /// Read latency at zero load, milliseconds.
    pub base_latency_ms: f64,
}

/// Offered load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Mean reads per second.
    pub read_qps: f64,
    /// Mean writes per second.
    pub write_qps: f64,
    /// Relative amplitude of the daily sine wave (0..1).
    #[serde(default)]
    pub diurnal_amplitude: f64,
    /// Period of the sine wave, seconds.
    #[serde(default = "defaults::diurnal_period_s")]
    pub diurnal_period_s: f64,
    /// Relative standard deviation of the smoothed random load noise.
    #[serde(default)]
    pub noise: f64,
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The target replica stops applying (a backup, a lock, a stopped SQL thread).
    ReplicaStall,
    /// The target replica applies `factor` times as fast.
    ReplicaSlow,
    /// The target replica is unreachable: reads fail, apply stops, its exporter is down.
    ReplicaDown,
    /// Writes are multiplied by `factor`.
    WriteBurst,
    /// Reads are multiplied by `factor`.
    ReadSurge,
    /// The primary's capacity is multiplied by `factor`.
    PrimaryDegraded,
    /// No scrape succeeds: every observation goes stale.
    MetricsGap,
}

impl EventKind {
    /// Whether the event acts on one replica (and so needs a `target`).
    pub fn targets_replica(self) -> bool {
        matches!(
            self,
            EventKind::ReplicaStall | EventKind::ReplicaSlow | EventKind::ReplicaDown
        )
    }

    /// Whether the event needs a `factor`.
    pub fn takes_factor(self) -> bool {
        matches!(
            self,
            EventKind::ReplicaSlow
                | EventKind::WriteBurst
                | EventKind::ReadSurge
                | EventKind::PrimaryDegraded
        )
    }

    /// The snake_case name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReplicaStall => "replica_stall",
            EventKind::ReplicaSlow => "replica_slow",
            EventKind::ReplicaDown => "replica_down",
            EventKind::WriteBurst => "write_burst",
            EventKind::ReadSurge => "read_surge",
            EventKind::PrimaryDegraded => "primary_degraded",
            EventKind::MetricsGap => "metrics_gap",
        }
    }
}

/// One scripted event, active during `[at_s, at_s + duration_s)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// What happens.
    pub kind: EventKind,
    /// The replica it happens to (replica kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Start, seconds from the beginning of the run.
    pub at_s: f64,
    /// Length, seconds.
    pub duration_s: f64,
    /// Multiplier (only for `replica_slow`, `write_burst`, `read_surge`, `primary_degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
}

impl Event {
    /// End of the event (exclusive), seconds.
    pub fn end_s(&self) -> f64 {
        self.at_s + self.duration_s
    }
}

mod defaults {
    pub fn seed() -> u64 {
        1
    }
    pub fn diurnal_period_s() -> f64 {
        86_400.0
    }
}

/// Upper bound on `timing.scrape_delay_s`: a bigger delay is a configuration mistake, and it
/// bounds the memory the simulator keeps for scrapes in flight.
pub const MAX_SCRAPE_DELAY_S: f64 = 600.0;

impl Scenario {
    /// Parses and validates a scenario. `origin` (usually the file path) prefixes every error.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        scenario.origin = origin.to_string();
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Io {
            origin: origin.clone(),
            error,
        })?;
        Scenario::from_toml_str(&text, &origin)
    }

    /// Serialises the scenario back to TOML (for `weir bench --save` style tooling and tests).
    pub fn to_toml_string(&self) -> Result<String, ScenarioError> {
        toml::to_string(self).map_err(|e| ScenarioError::Parse {
            origin: self.origin.clone(),
            message: e.to_string(),
        })
    }

    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            origin: self.origin.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Checks every range and cross-reference; the error names the field path.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let positive = |field: &str, v: f64| -> Result<(), ScenarioError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(self.invalid(field, format!("must be a positive number, got {v}")))
            }
        };
        let non_negative = |field: &str, v: f64| -> Result<(), ScenarioError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(self.invalid(field, format!("must be a non-negative number, got {v}")))
            }
        };
        let unit = |field: &str, v: f64| -> Result<(), ScenarioError> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(self.invalid(field, format!("must be within 0..=1, got {v}")))
            }
        };

        if self.name.trim().is_empty() {
            return Err(self.invalid("name", "must not be empty"));
        }
        positive("duration_s", self.duration_s)?;

        let t = &self.timing;
        positive("timing.tick_s", t.tick_s)?;
        positive("timing.control_interval_s", t.control_interval_s)?;
        positive("timing.scrape_interval_s", t.scrape_interval_s)?;
        non_negative("timing.scrape_delay_s", t.scrape_delay_s)?;
        if t.scrape_delay_s > MAX_SCRAPE_DELAY_S {
            return Err(self.invalid(
                "timing.scrape_delay_s",
                format!(
                    "must be at most {MAX_SCRAPE_DELAY_S}, got {}",
                    t.scrape_delay_s
                ),
            ));
        }
        unit("timing.metric_noise", t.metric_noise)?;
        if t.tick_s > t.control_interval_s {
            return Err(self.invalid(
                "timing.tick_s",
                format!(
                    "must be <= timing.control_interval_s ({}), got {}",
                    t.control_interval_s, t.tick_s
                ),
            ));
        }
        if t.tick_s > self.duration_s {
            return Err(self.invalid(
                "timing.tick_s",
                format!(
                    "must be <= duration_s ({}), got {}",
                    self.duration_s, t.tick_s
                ),
            ));
        }

        non_negative(
            "routing.connection_lifetime_s",
            self.routing.connection_lifetime_s,
        )?;
        if self.routing.connection_lifetime_s > MAX_CONNECTION_LIFETIME_S {
            return Err(self.invalid(
                "routing.connection_lifetime_s",
                format!(
                    "must be at most {MAX_CONNECTION_LIFETIME_S}, got {}",
                    self.routing.connection_lifetime_s
                ),
            ));
        }

        self.slo
            .validate()
            .map_err(|e| self.invalid_slo(&e.to_string()))?;

        positive("primary.capacity", self.primary.capacity)?;
        non_negative("primary.write_cost", self.primary.write_cost)?;
        positive("primary.base_latency_ms", self.primary.base_latency_ms)?;

        if self.replicas.is_empty() {
            return Err(self.invalid("replicas", "at least one replica is required"));
        }
        for (i, r) in self.replicas.iter().enumerate() {
            let f = |name: &str| format!("replicas[{i}].{name}");
            if r.name.trim().is_empty() {
                return Err(self.invalid(f("name"), "must not be empty"));
            }
            if let Some(j) = self.replicas[..i].iter().position(|o| o.name == r.name) {
                return Err(self.invalid(
                    f("name"),
                    format!("replica \"{}\" is already defined by replicas[{j}]", r.name),
                ));
            }
            positive(&f("capacity"), r.capacity)?;
            positive(&f("apply_capacity"), r.apply_capacity)?;
            unit(&f("read_apply_interference"), r.read_apply_interference)?;
            positive(&f("base_latency_ms"), r.base_latency_ms)?;
        }

        let w = &self.workload;
        non_negative("workload.read_qps", w.read_qps)?;
        non_negative("workload.write_qps", w.write_qps)?;
        unit("workload.diurnal_amplitude", w.diurnal_amplitude)?;
        positive("workload.diurnal_period_s", w.diurnal_period_s)?;
        unit("workload.noise", w.noise)?;

        for (i, e) in self.events.iter().enumerate() {
            let f = |name: &str| format!("events[{i}].{name}");
            non_negative(&f("at_s"), e.at_s)?;
            positive(&f("duration_s"), e.duration_s)?;
            match (&e.target, e.kind.targets_replica()) {
                (None, true) => {
                    return Err(self.invalid(
                        f("target"),
                        format!(
                            "{} needs a target replica (replicas: {})",
                            e.kind.as_str(),
                            self.replica_list()
                        ),
                    ));
                }
                (Some(name), true) => {
                    if !self.replicas.iter().any(|r| &r.name == name) {
                        return Err(self.invalid(
                            f("target"),
                            format!(
                                "replica \"{name}\" is not defined (replicas: {})",
                                self.replica_list()
                            ),
                        ));
                    }
                }
                (Some(_), false) => {
                    return Err(self.invalid(
                        f("target"),
                        format!(
                            "{} acts on the whole cluster and takes no target",
                            e.kind.as_str()
                        ),
                    ));
                }
                (None, false) => {}
            }
            match (e.factor, e.kind.takes_factor()) {
                (None, true) => {
                    return Err(self.invalid(
                        f("factor"),
                        format!("{} needs a factor (a multiplier >= 0)", e.kind.as_str()),
                    ));
                }
                (Some(v), true) => non_negative(&f("factor"), v)?,
                (Some(_), false) => {
                    return Err(
                        self.invalid(f("factor"), format!("{} takes no factor", e.kind.as_str()))
                    );
                }
                (None, false) => {}
            }
        }
        Ok(())
    }

    fn invalid_slo(&self, message: &str) -> ScenarioError {
        // weir_core::Slo::validate starts its message with the field name.
        let (field, rest) = match message.split_once(' ') {
            Some((field, rest))
                if !field.is_empty()
                    && field.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) =>
            {
                (format!("slo.{field}"), rest.to_string())
            }
            _ => ("slo".to_string(), message.to_string()),
        };
        self.invalid(field, rest)
    }

    fn replica_list(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", r.name);
        }
        out
    }

    /// Index of the replica called `name`.
    pub fn replica_index(&self, name: &str) -> Option<usize> {
        self.replicas.iter().position(|r| r.name == name)
    }

    /// A copy with capacities, apply capacities, workload rates and event times, durations
    /// and factors each scaled by an independent factor in `1 ± amount` (`amount` is clamped
    /// to `0..=0.9`). Used for training with parameter jitter so a policy does not overfit
    /// one exact cluster. The result stays valid: scaled values keep their sign, and event
    /// durations stay positive.
    pub fn jittered(&self, rng: &mut Rng, amount: f64) -> Scenario {
        let amount = if amount.is_finite() {
            amount.clamp(0.0, 0.9)
        } else {
            0.0
        };
        let mut scale = |v: f64| v * (1.0 + rng.range(-amount, amount));
        let mut out = self.clone();
        out.primary.capacity = scale(out.primary.capacity);
        for r in &mut out.replicas {
            r.capacity = scale(r.capacity);
            r.apply_capacity = scale(r.apply_capacity);
        }
        out.workload.read_qps = scale(out.workload.read_qps);
        out.workload.write_qps = scale(out.workload.write_qps);
        for e in &mut out.events {
            e.at_s = scale(e.at_s).max(0.0);
            e.duration_s = scale(e.duration_s).max(out.timing.tick_s.min(e.duration_s));
            if let Some(f) = e.factor.as_mut() {
                *f = scale(*f).max(0.0);
            }
        }
        out
    }
}

/// Loads every `*.toml` file of `dir`, sorted by file name. Fails on the first bad file, and
/// when the directory holds no scenario at all (a mistyped path should not look like success).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Scenario>, ScenarioError> {
    let dir = dir.as_ref();
    let io = |error| ScenarioError::Io {
        origin: dir.display().to_string(),
        error,
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(ScenarioError::Empty {
            origin: dir.display().to_string(),
        });
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    paths.iter().map(Scenario::load).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
description = "test"
duration_s = 600
seed = 3
[timing]
tick_s = 1.0
[primary]
capacity = 4000
write_cost = 3
base_latency_ms = 2
[[replicas]]
name = "replica-1"
capacity = 3000
apply_capacity = 1000
read_apply_interference = 0.6
base_latency_ms = 2
[[replicas]]
name = "replica-2"
capacity = 3000
apply_capacity = 1000
read_apply_interference = 0.6
base_latency_ms = 2
[workload]
read_qps = 4000
write_qps = 350
[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 100
duration_s = 60
[[events]]
kind = "write_burst"
at_s = 200
duration_s = 60
factor = 2.0
"#;

    fn err(text: &str) -> String {
        match Scenario::from_toml_str(text, "scenarios/x.toml") {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_scenario_parses_with_defaults() {
        let s = Scenario::from_toml_str(GOOD, "good.toml").expect("valid");
        assert_eq!(s.timing.control_interval_s, 15.0);
        assert_eq!(s.timing.scrape_delay_s, 2.0);
        assert_eq!(s.slo, Slo::default());
        assert_eq!(s.workload.diurnal_period_s, 86_400.0);
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.origin, "good.toml");
        // Round trip through TOML.
        let text = s.to_toml_string().expect("serialise");
        let back = Scenario::from_toml_str(&text, "good.toml").expect("reparse");
        assert_eq!(back, s);
    }

    #[test]
    fn unknown_field_names_file_and_key() {
        let e = err(&GOOD.replace("seed = 3", "seed = 3\nsede = 4"));
        assert!(e.starts_with("scenarios/x.toml: "), "{e}");
        assert!(e.contains("sede"), "{e}");
        let e = err(&GOOD.replace("write_cost = 3", "write_cost = 3\nwrite_costs = 3"));
        assert!(e.contains("write_costs"), "{e}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = err("name = \"x\"\nduration_s = = 3\n");
        assert!(e.starts_with("scenarios/x.toml: "), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_target_lists_replicas() {
        let e = err(&GOOD.replace("target = \"replica-1\"", "target = \"replica-9\""));
        assert_eq!(
            e,
            "scenarios/x.toml: events[0].target: replica \"replica-9\" is not defined (replicas: replica-1, replica-2)"
        );
    }

    #[test]
    fn missing_and_extra_factor_and_target() {
        let e = err(&GOOD.replace("factor = 2.0", ""));
        assert!(
            e.starts_with("scenarios/x.toml: events[1].factor: write_burst needs a factor"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "duration_s = 60\n[[events]]",
            "duration_s = 60\nfactor = 0.5\n[[events]]",
        ));
        assert!(
            e.starts_with("scenarios/x.toml: events[0].factor: replica_stall takes no factor"),
            "{e}"
        );
        let e = err(&GOOD.replace("target = \"replica-1\"\n", ""));
        assert!(
            e.starts_with("scenarios/x.toml: events[0].target: replica_stall needs a target"),
            "{e}"
        );
        let e = err(&GOOD.replace("factor = 2.0", "factor = 2.0\ntarget = \"replica-1\""));
        assert!(
            e.starts_with(
                "scenarios/x.toml: events[1].target: write_burst acts on the whole cluster"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace("factor = 2.0", "factor = -1.0"));
        assert!(
            e.starts_with("scenarios/x.toml: events[1].factor: must be a non-negative"),
            "{e}"
        );
    }

    #[test]
    fn connection_lifetime_is_optional_and_checked() {
        let s = Scenario::from_toml_str(GOOD, "good.toml").expect("valid");
        assert_eq!(s.routing, Routing::default());
        assert_eq!(s.routing.connection_lifetime_s, 0.0);
        let with = GOOD.replace(
            "[primary]",
            "[routing]\nconnection_lifetime_s = 20\n[primary]",
        );
        let s = Scenario::from_toml_str(&with, "good.toml").expect("valid");
        assert_eq!(s.routing.connection_lifetime_s, 20.0);
        let e = err(&GOOD.replace(
            "[primary]",
            "[routing]\nconnection_lifetime_s = -1\n[primary]",
        ));
        assert!(
            e.starts_with("scenarios/x.toml: routing.connection_lifetime_s: "),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "[primary]",
            "[routing]\nconnection_lifetime_s = 1e6\n[primary]",
        ));
        assert!(
            e.starts_with("scenarios/x.toml: routing.connection_lifetime_s: must be at most"),
            "{e}"
        );
        let e = err(&GOOD.replace("[primary]", "[routing]\nlifetime_s = 1\n[primary]"));
        assert!(e.contains("lifetime_s"), "{e}");
    }

    #[test]
    fn interference_out_of_range() {
        let e = err(&GOOD.replacen(
            "read_apply_interference = 0.6",
            "read_apply_interference = 1.5",
            1,
        ));
        assert_eq!(
            e,
            "scenarios/x.toml: replicas[0].read_apply_interference: must be within 0..=1, got 1.5"
        );
    }

    #[test]
    fn other_range_errors_name_the_field() {
        let e = err(&GOOD.replacen("capacity = 3000", "capacity = 0", 1));
        assert!(
            e.starts_with("scenarios/x.toml: replicas[0].capacity: "),
            "{e}"
        );
        let e = err(&GOOD.replace("\"replica-2\"", "\"replica-1\""));
        assert!(e.starts_with("scenarios/x.toml: replicas[1].name: "), "{e}");
        let e = err(&GOOD.replace("tick_s = 1.0", "tick_s = 30.0"));
        assert!(e.starts_with("scenarios/x.toml: timing.tick_s: "), "{e}");
        let e = err(&GOOD.replace("at_s = 100", "at_s = -1"));
        assert!(e.starts_with("scenarios/x.toml: events[0].at_s: "), "{e}");
        let e = err(&GOOD.replace("duration_s = 600", "duration_s = 0"));
        assert!(e.starts_with("scenarios/x.toml: duration_s: "), "{e}");
        let e = err(&GOOD.replace(
            "[timing]",
            "[slo]\nmax_staleness_s = 50\nhard_staleness_s = 10\n[timing]",
        ));
        assert!(
            e.starts_with("scenarios/x.toml: slo.hard_staleness_s: "),
            "{e}"
        );
    }

    #[test]
    fn missing_required_sections() {
        let no_replicas: String = GOOD
            .split("[[replicas]]")
            .next()
            .map(|head| format!("{head}[workload]\nread_qps = 1\nwrite_qps = 1\n"))
            .unwrap_or_default();
        let e = err(&no_replicas);
        assert!(e.starts_with("scenarios/x.toml: "), "{e}");
        assert!(e.contains("replicas"), "{e}");
        let e = err(&GOOD.replace("[primary]", "[primaryx]"));
        assert!(e.contains("primaryx"), "{e}");
    }

    #[test]
    fn jitter_keeps_scenarios_valid() {
        let s = Scenario::from_toml_str(GOOD, "good.toml").expect("valid");
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let j = s.jittered(&mut rng, 0.3);
            j.validate().expect("jittered scenario stays valid");
            let ratio = j.primary.capacity / s.primary.capacity;
            assert!((0.7..=1.3).contains(&ratio), "{ratio}");
        }
        let j = s.jittered(&mut rng, 0.0);
        assert_eq!(j, s);
    }

    #[test]
    fn load_dir_sorts_and_rejects_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_dir(dir.path()),
            Err(ScenarioError::Empty { .. })
        ));
        std::fs::write(
            dir.path().join("b.toml"),
            GOOD.replace("name = \"t\"", "name = \"b\""),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("a.toml"),
            GOOD.replace("name = \"t\"", "name = \"a\""),
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.md"), "ignored").expect("write");
        let all = load_dir(dir.path()).expect("load");
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(all[0].origin.ends_with("a.toml"));
        std::fs::write(dir.path().join("c.toml"), "name = 1").expect("write");
        let e = load_dir(dir.path()).expect_err("bad file").to_string();
        assert!(e.contains("c.toml: "), "{e}");
    }

    fn shipped(sub: &str) -> Vec<Scenario> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scenarios")
            .join(sub);
        match load_dir(&dir) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn shipped_scenarios_load() {
        let train = shipped("train");
        let eval = shipped("eval");
        assert!(train.len() >= 7, "{}", train.len());
        assert!(eval.len() >= 5, "{}", eval.len());
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/demo.toml");
        let demo = Scenario::load(&demo).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.replicas.len(), 2);
        let mut names: Vec<&str> = train.iter().chain(&eval).map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "scenario names must be unique");
        for s in train.iter().chain(&eval).chain(std::iter::once(&demo)) {
            assert!(!s.description.is_empty(), "{}: no description", s.origin);
        }
        // Every event kind is exercised by the training set.
        for kind in [
            EventKind::ReplicaStall,
            EventKind::ReplicaSlow,
            EventKind::ReplicaDown,
            EventKind::WriteBurst,
            EventKind::ReadSurge,
            EventKind::PrimaryDegraded,
            EventKind::MetricsGap,
        ] {
            assert!(
                train
                    .iter()
                    .any(|s| s.events.iter().any(|e| e.kind == kind)),
                "no training scenario uses {}",
                kind.as_str()
            );
        }
    }
}
