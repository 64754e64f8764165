//! One control interval with its IO: observe with a timeout, decide, actuate with back-off.
//!
//! [`Governor::tick`] is the one place that orchestrates a decision's IO. `weir run` and the
//! demo call it from the [`Controller`](crate::Controller) loop on a schedule; the Kubernetes
//! operator calls it from its reconciler, once per `ReadSplit` interval. Both therefore share
//! the same semantics:
//!
//! - a failed, timed-out or mis-shaped observation becomes a blank one (every signal unknown),
//!   so the shield holds and, if it lasts, fails safe;
//! - in shadow mode the actuator is never called and the pipeline follows its own decisions;
//!   otherwise (enforce, dry-run) the decision goes to the actuator the caller chose for the
//!   mode;
//! - a failed actuation leaves the previous weights in force, tells the pipeline so, and the
//!   next attempts back off exponentially (`min(2^(N-1), max_backoff_intervals)` intervals
//!   after N failures in a row);
//! - operator [`Command`]s are checked and applied between ticks.

use std::time::Instant;

use weir_core::{Decision, Observation, Unknown, Weights};
use weir_edge::{
    Actuator, ActuatorError, Command, Controls, Mode, Source, SourceError, StandingOverride,
};
use weir_recorder::{Actuation, Drift, ErrorInfo, StepRecord};

use crate::clock::Clock;
use crate::step::ControlStep;

/// Default per-call timeout for the source and the actuator, seconds.
pub const DEFAULT_STEP_TIMEOUT_S: f64 = 10.0;
/// Default cap of the actuation back-off, in intervals.
pub const DEFAULT_MAX_BACKOFF_INTERVALS: u32 = 8;

/// How one governed cluster treats its edges.
#[derive(Debug, Clone, PartialEq)]
pub struct GovernorConfig {
    /// Enforce, shadow or dry-run (the mode the actuator was chosen for).
    pub mode: Mode,
    /// Timeout for each call to the source and to the actuator, seconds (clock seconds).
    pub step_timeout_s: f64,
    /// After N consecutive actuation failures the next attempt waits
    /// `min(2^(N-1), max_backoff_intervals)` intervals.
    pub max_backoff_intervals: u32,
    /// Replica names for blank observations when the source fails before it ever answered.
    /// Empty means `replica-1`, `replica-2`, ...; otherwise one per replica weight.
    pub replica_names: Vec<String>,
}

impl GovernorConfig {
    /// A configuration with the default timeout and back-off.
    pub fn new(mode: Mode) -> Self {
        GovernorConfig {
            mode,
            step_timeout_s: DEFAULT_STEP_TIMEOUT_S,
            max_backoff_intervals: DEFAULT_MAX_BACKOFF_INTERVALS,
            replica_names: Vec::new(),
        }
    }

    pub(crate) fn validate(&self, replicas: usize) -> Result<(), ControllerError> {
        let bad = |m: String| Err(ControllerError::InvalidConfig(m));
        if !(self.step_timeout_s.is_finite() && self.step_timeout_s > 0.0) {
            return bad(format!(
                "step_timeout_s must be a positive number, got {}",
                self.step_timeout_s
            ));
        }
        if self.max_backoff_intervals == 0 {
            return bad("max_backoff_intervals must be at least 1".to_string());
        }
        if !self.replica_names.is_empty() && self.replica_names.len() != replicas {
            return bad(format!(
                "replica_names has {} names but the weights have {replicas} replicas",
                self.replica_names.len()
            ));
        }
        Ok(())
    }
}

/// Why a governor or a controller could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControllerError {
    /// A setting is out of range; the message names it.
    #[error("invalid controller configuration: {0}")]
    InvalidConfig(String),
}

/// An operator command the governor would not apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CommandRefused {
    /// Stable label (`invalid_override`, `invalid_mode`).
    pub kind: &'static str,
    /// Why, for people.
    pub message: String,
}

/// What one [`Governor::tick`] did: the record, and the edge errors behind it in full (the
/// record carries them as labels and messages only).
#[derive(Debug, Clone)]
pub struct Tick {
    /// Everything about the interval.
    pub record: StepRecord,
    /// The source's failure, when the observation is a blank stand-in.
    pub source_error: Option<SourceError>,
    /// The actuator's failure this interval.
    pub actuation_error: Option<ActuatorError>,
}

/// An actuator call bounded by `timeout_s` seconds of `clock`: past it, a timeout error.
async fn bounded<C: Clock, T>(
    clock: &C,
    timeout_s: f64,
    call: impl std::future::Future<Output = Result<T, ActuatorError>>,
) -> Result<T, ActuatorError> {
    let deadline = clock.now_s() + timeout_s;
    tokio::select! {
        biased;
        r = call => r,
        () = clock.sleep_until(deadline) => Err(ActuatorError::Timeout { after_s: timeout_s }),
    }
}

/// Policy + shield (a [`ControlStep`]) between a [`Source`] and an [`Actuator`]: one managed
/// cluster's decisions and the IO around them, one [`Governor::tick`] per control interval.
pub struct Governor<S, A> {
    step: ControlStep,
    source: S,
    actuator: A,
    config: GovernorConfig,
    /// The mode in force (the configured one, or shadow after an operator's switch).
    mode: Mode,
    /// The weights the actuator last accepted (initially the pipeline's initial weights).
    in_force: Weights,
    /// Names for blank observations: from the last good observation, else the config.
    replica_names: Vec<String>,
    seq: u64,
    consecutive_failures: u32,
    /// Actuation is skipped (backing off) until this sequence number.
    retry_at_seq: u64,
    /// The latest actuation failure, until an actuation succeeds.
    last_actuation_error: Option<ActuatorError>,
}

impl<S: Source, A: Actuator> Governor<S, A> {
    /// A governor around `step`, whose current weights are taken to be in force now.
    pub fn new(
        step: ControlStep,
        source: S,
        actuator: A,
        config: GovernorConfig,
    ) -> Result<Self, ControllerError> {
        let replicas = step.current().replicas.len();
        config.validate(replicas)?;
        let replica_names = if config.replica_names.is_empty() {
            (1..=replicas).map(|i| format!("replica-{i}")).collect()
        } else {
            config.replica_names.clone()
        };
        Ok(Governor {
            in_force: step.current().clone(),
            step,
            source,
            actuator,
            mode: config.mode,
            config,
            replica_names,
            seq: 0,
            consecutive_failures: 0,
            retry_at_seq: 0,
            last_actuation_error: None,
        })
    }

    /// One interval now: observes (bounded by the step timeout on `clock`), decides, actuates
    /// (unless shadowing or backing off) and returns the record. The decision is made at
    /// `clock.now_s()`.
    pub async fn tick<C: Clock>(&mut self, clock: &C) -> Tick {
        let started = Instant::now();
        let now = clock.now_s();
        let timeout = self.config.step_timeout_s;

        let observed = tokio::select! {
            biased;
            r = self.source.observe(now) => r,
            () = clock.sleep_until(now + timeout) => Err(SourceError::Timeout { after_s: timeout }),
        };
        let observed = observed.and_then(|obs| self.check_shape(obs));
        let (obs, true_outcome, source_error) = match observed {
            Ok(obs) => {
                self.replica_names = obs.replicas.iter().map(|r| r.name.clone()).collect();
                (obs, self.source.take_outcome(), None)
            }
            Err(e) => {
                tracing::warn!(kind = e.kind(), error = %e, "observation failed; deciding on a blank one");
                (self.blank_observation(now), None, Some(e))
            }
        };

        let drift = self.check_drift(clock).await;
        let out = self.step.step(obs.clone(), true_outcome);
        let (actuation, actuation_error) = self.actuate(&out.decision, clock).await;

        let record = StepRecord {
            seq: self.seq,
            at_s: now,
            observation: obs,
            decision: out.decision,
            explanation: out.explanation,
            outcome: out.outcome,
            expected: out.expected,
            reward: out.reward,
            mode: self.mode,
            actuation,
            source_error: source_error
                .as_ref()
                .map(|e| ErrorInfo::new(e.kind(), e.to_string())),
            drift,
            in_force: self.in_force.clone(),
            shield: self.step.shield().status().clone(),
            policy: self.step.policy().name().to_string(),
            loop_duration_s: started.elapsed().as_secs_f64(),
        };
        self.seq += 1;
        tracing::debug!(seq = record.seq, weights = %record.decision.weights, "decision recorded");
        Tick {
            record,
            source_error,
            actuation_error,
        }
    }

    /// In enforce mode, with an actuator that reads back exactly and no failure pending:
    /// reads the target's weights and reports them if they are not the ones last applied.
    /// The decision is still made from Weir's own (judged safe when applied) and re-applied
    /// in this interval, which repairs the drift; a failed read is left to the actuation to
    /// report.
    async fn check_drift<C: Clock>(&mut self, clock: &C) -> Option<Drift> {
        if self.mode != Mode::Enforce
            || !self.actuator.reads_back_exactly()
            || self.last_actuation_error.is_some()
            || self.seq < self.retry_at_seq
        {
            return None;
        }
        let n = self.in_force.replicas.len();
        let timeout = self.config.step_timeout_s;
        let read = bounded(clock, timeout, self.actuator.read_current(n)).await;
        match read {
            Ok(found) if found != self.in_force => {
                tracing::warn!(
                    actuator = self.actuator.name(),
                    expected = %self.in_force,
                    %found,
                    "the weights in force are not the ones Weir applied (a reload, a restart or a hand edit?); re-applying Weir's decision"
                );
                Some(Drift {
                    expected: self.in_force.clone(),
                    found,
                })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(kind = e.kind(), error = %e, "could not read the weights back before deciding");
                None
            }
        }
    }

    /// Hands the decision to the actuator unless shadowing or backing off, and keeps the
    /// pipeline's idea of the current weights equal to what is really in force.
    async fn actuate<C: Clock>(
        &mut self,
        decision: &Decision,
        clock: &C,
    ) -> (Actuation, Option<ActuatorError>) {
        if !self.mode.actuates() {
            let reason = "shadow mode".to_string();
            return (Actuation::Skipped { reason }, None);
        }
        if self.seq < self.retry_at_seq {
            self.step.set_current(self.in_force.clone());
            let reason = format!(
                "backing off after {} failed actuations until step {}",
                self.consecutive_failures, self.retry_at_seq
            );
            return (Actuation::Skipped { reason }, None);
        }
        let timeout = self.config.step_timeout_s;
        let applied = bounded(clock, timeout, self.actuator.apply(decision)).await;
        match applied {
            Ok(()) => {
                self.in_force = decision.weights.clone();
                self.consecutive_failures = 0;
                self.last_actuation_error = None;
                (Actuation::Applied, None)
            }
            Err(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let wait = 2u64
                    .saturating_pow(self.consecutive_failures - 1)
                    .min(u64::from(self.config.max_backoff_intervals));
                self.retry_at_seq = self.seq + wait;
                self.step.set_current(self.in_force.clone());
                tracing::warn!(
                    actuator = self.actuator.name(),
                    kind = e.kind(),
                    error = %e,
                    failures = self.consecutive_failures,
                    in_force = %self.in_force,
                    "actuation failed; previous weights stay in force"
                );
                self.last_actuation_error = Some(e.clone());
                let error = ErrorInfo::new(e.kind(), e.to_string());
                (Actuation::Failed { error }, Some(e))
            }
        }
    }

    /// An observation whose replica list does not match the weights cannot be acted on.
    fn check_shape(&self, obs: Observation) -> Result<Observation, SourceError> {
        let want = self.in_force.replicas.len();
        if obs.replicas.len() == want {
            Ok(obs)
        } else {
            Err(SourceError::BadResponse(format!(
                "observation has {} replicas, the weights have {want}",
                obs.replicas.len()
            )))
        }
    }

    /// Every signal unknown because of a source error: the shield holds, then fails safe.
    fn blank_observation(&self, now: f64) -> Observation {
        Observation::blank(now, &self.replica_names, Unknown::SourceError)
    }

    /// The operator's standing controls at controller time `now_s` (what a restart must
    /// restore).
    pub fn controls(&self, now_s: f64) -> Controls {
        let status = self.step.shield().status();
        Controls {
            paused: status.paused,
            override_: status
                .override_
                .as_ref()
                .filter(|o| o.until_s > now_s)
                .map(|o| StandingOverride {
                    weights: o.weights.clone(),
                    remaining_s: o.until_s - now_s,
                }),
            mode: self.mode,
        }
    }

    /// Applies an operator command at controller time `now_s` (before the next tick).
    pub fn command(&mut self, cmd: Command, now_s: f64) -> Result<(), CommandRefused> {
        let refused = |kind, message| Err(CommandRefused { kind, message });
        match cmd {
            Command::Pause => self.step.shield_mut().pause(),
            Command::Resume => self.step.shield_mut().resume(),
            Command::ClearOverride => self.step.shield_mut().clear_override(),
            Command::Override {
                weights,
                duration_s,
            } => {
                if !(duration_s.is_finite() && duration_s > 0.0) {
                    return refused(
                        "invalid_override",
                        format!("duration_s must be a positive number, got {duration_s}"),
                    );
                }
                if let Err(e) = self
                    .step
                    .shield_mut()
                    .set_override(weights, now_s + duration_s)
                {
                    return refused("invalid_override", format!("weights: {e}"));
                }
            }
            Command::SetMode { mode } => {
                let configured = self.config.mode;
                if mode != Mode::Shadow && mode != configured {
                    return refused(
                        "invalid_mode",
                        format!(
                            "cannot switch to {mode}: this controller's actuator was set up for {configured}; \
                             only {configured} or shadow are possible"
                        ),
                    );
                }
                if self.mode == Mode::Shadow && mode != Mode::Shadow {
                    // Shadow decisions were never applied: start again from what is.
                    self.step.set_current(self.in_force.clone());
                }
                self.mode = mode;
            }
        }
        Ok(())
    }
}

impl<S, A> Governor<S, A> {
    /// Decisions made so far by this governor (the next record's `seq`).
    pub fn decisions(&self) -> u64 {
        self.seq
    }

    /// The decision pipeline (policy, shield, history).
    pub fn step(&self) -> &ControlStep {
        &self.step
    }

    /// The decision pipeline, mutably (e.g. to save a learned policy).
    pub fn step_mut(&mut self) -> &mut ControlStep {
        &mut self.step
    }

    /// Gives the pipeline back (e.g. to persist the policy after a run).
    pub fn into_step(self) -> ControlStep {
        self.step
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Replaces the source (e.g. when its queries changed); the pipeline carries on.
    pub fn set_source(&mut self, source: S) {
        self.source = source;
    }

    /// The actuator.
    pub fn actuator(&self) -> &A {
        &self.actuator
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The weights in force, as far as the governor knows: the last ones the actuator
    /// accepted (in dry-run, the dry run's).
    pub fn in_force(&self) -> &Weights {
        &self.in_force
    }

    /// Whether the actuator is being left alone after failures, and the failure that started
    /// it: `Some` while the latest actuation failed or the next one waits.
    pub fn failing(&self) -> Option<&ActuatorError> {
        self.last_actuation_error.as_ref()
    }
}
