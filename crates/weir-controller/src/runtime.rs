//! The async loop: every interval, observe → decide → shield → actuate → record.
//!
//! The same loop runs in production (Prometheus in, Istio/HAProxy out, [`WallClock`]) and in
//! the demo (the simulator on both edges, an accelerated clock). Failures at the edges never
//! stop it: a failed observation becomes a blank one, so the shield holds and, if it lasts,
//! fails safe; a failed actuation leaves the old weights in force, which the pipeline is told
//! about, and retries back off exponentially.
//!
//! [`WallClock`]: crate::WallClock

use std::future::Future;
use std::pin::pin;
use std::time::Instant;

use tokio::sync::mpsc;
use weir_core::{Observation, Unknown, Weights};
use weir_recorder::{Actuation, Command, ErrorInfo, ErrorOrigin, Mode, Recorder, StepRecord};

use crate::clock::Clock;
use crate::io::{Actuator, ActuatorError, Source, SourceError};
use crate::step::ControlStep;

/// Default per-call timeout for the source and the actuator, seconds.
pub const DEFAULT_STEP_TIMEOUT_S: f64 = 10.0;
/// Default cap of the actuation back-off, in intervals.
pub const DEFAULT_MAX_BACKOFF_INTERVALS: u32 = 8;

/// How the loop runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Seconds between decisions (on the injected clock).
    pub interval_s: f64,
    /// Enforce, shadow or dry-run.
    pub mode: Mode,
    /// Timeout for each call to the source and to the actuator, seconds (clock seconds).
    pub step_timeout_s: f64,
    /// After N consecutive actuation failures the next attempt waits
    /// `min(2^(N-1), max_backoff_intervals)` intervals.
    pub max_backoff_intervals: u32,
    /// Stop after this many decisions (tests, bounded demos); `None` runs until shutdown.
    pub max_steps: Option<u64>,
    /// Replica names for blank observations when the source fails before it ever answered.
    /// Empty means `replica-1`, `replica-2`, ...; otherwise one per replica weight.
    pub replica_names: Vec<String>,
}

impl ControllerConfig {
    /// A configuration with the default timeout and back-off, running until shutdown.
    pub fn new(interval_s: f64, mode: Mode) -> Self {
        ControllerConfig {
            interval_s,
            mode,
            step_timeout_s: DEFAULT_STEP_TIMEOUT_S,
            max_backoff_intervals: DEFAULT_MAX_BACKOFF_INTERVALS,
            max_steps: None,
            replica_names: Vec::new(),
        }
    }

    fn validate(&self, replicas: usize) -> Result<(), ControllerError> {
        let bad = |m: String| Err(ControllerError::InvalidConfig(m));
        if !(self.interval_s.is_finite() && self.interval_s > 0.0) {
            return bad(format!(
                "interval_s must be a positive number, got {}",
                self.interval_s
            ));
        }
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

/// Why the controller could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControllerError {
    /// A setting is out of range; the message names it.
    #[error("invalid controller configuration: {0}")]
    InvalidConfig(String),
}

/// Why [`Controller::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The shutdown future completed.
    Shutdown,
    /// `max_steps` decisions were made.
    MaxSteps,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Decisions made during this run.
    pub steps: u64,
    /// Failed observations during this run.
    pub source_errors: u64,
    /// Failed actuations during this run.
    pub actuation_errors: u64,
    /// Weights in force at the end, as far as the controller knows.
    pub in_force: Weights,
    /// Why it stopped.
    pub stopped: StopReason,
}

/// Called with every record, after it was recorded (the demo prints
/// [`weir_recorder::decision_line`] from here).
pub type StepHook = Box<dyn FnMut(&StepRecord) + Send>;

/// Called every N decisions with the policy, to persist what it learned.
pub type CheckpointHook = Box<dyn FnMut(&dyn weir_core::Policy) + Send>;

/// The control loop of one managed cluster.
pub struct Controller<S, A, C> {
    step: ControlStep,
    source: S,
    actuator: A,
    clock: C,
    recorder: Recorder,
    config: ControllerConfig,
    commands: Option<mpsc::Receiver<Command>>,
    on_step: Option<StepHook>,
    checkpoint: Option<(u64, CheckpointHook)>,
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
}

impl<S: Source, A: Actuator, C: Clock> Controller<S, A, C> {
    /// A controller around `step`, whose current weights are taken to be in force now.
    pub fn new(
        step: ControlStep,
        source: S,
        actuator: A,
        clock: C,
        recorder: Recorder,
        config: ControllerConfig,
    ) -> Result<Self, ControllerError> {
        let replicas = step.current().replicas.len();
        config.validate(replicas)?;
        let replica_names = if config.replica_names.is_empty() {
            (1..=replicas).map(|i| format!("replica-{i}")).collect()
        } else {
            config.replica_names.clone()
        };
        Ok(Controller {
            in_force: step.current().clone(),
            step,
            source,
            actuator,
            clock,
            recorder,
            mode: config.mode,
            config,
            commands: None,
            on_step: None,
            checkpoint: None,
            replica_names,
            seq: 0,
            consecutive_failures: 0,
            retry_at_seq: 0,
        })
    }

    /// Takes operator commands from `commands` (the HTTP API's queue), applied before each
    /// decision.
    pub fn with_commands(mut self, commands: mpsc::Receiver<Command>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Calls `hook` with every record.
    pub fn on_step(mut self, hook: impl FnMut(&StepRecord) + Send + 'static) -> Self {
        self.on_step = Some(Box::new(hook));
        self
    }

    /// Calls `hook` with the policy after every `every` decisions (periodic persistence of
    /// learned state; the caller saves once more at shutdown).
    pub fn on_checkpoint(
        mut self,
        every: u64,
        hook: impl FnMut(&dyn weir_core::Policy) + Send + 'static,
    ) -> Self {
        self.checkpoint = Some((every.max(1), Box::new(hook)));
        self
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

    /// The actuator.
    pub fn actuator(&self) -> &A {
        &self.actuator
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The weights in force, as far as the controller knows.
    pub fn in_force(&self) -> &Weights {
        &self.in_force
    }

    /// Runs until `shutdown` completes (or `max_steps` decisions), one decision every
    /// `interval_s` aligned to `start + k * interval_s` on the clock. The first decision is
    /// made at once. A decision in progress is finished before stopping; if one overruns
    /// the interval, the missed ticks are skipped rather than bunched up.
    pub async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, ControllerError> {
        let mut shutdown = pin!(shutdown);
        let interval = self.config.interval_s;
        let start = self.clock.now_s();
        let mut k: u64 = 0;
        let mut steps: u64 = 0;
        let mut source_errors = 0;
        let mut actuation_errors = 0;
        let stopped = loop {
            if self.config.max_steps.is_some_and(|max| steps >= max) {
                break StopReason::MaxSteps;
            }
            let tick = start + k as f64 * interval;
            tokio::select! {
                biased;
                () = &mut shutdown => break StopReason::Shutdown,
                () = self.clock.sleep_until(tick) => {}
            }
            let rec = self.run_once().await;
            steps += 1;
            source_errors += u64::from(rec.source_error.is_some());
            actuation_errors += u64::from(matches!(rec.actuation, Actuation::Failed { .. }));
            let elapsed = (self.clock.now_s() - start) / interval;
            let next = (k + 1).max(elapsed.ceil() as u64);
            if next > k + 1 {
                tracing::warn!(
                    skipped = next - k - 1,
                    "decision overran the interval; skipping missed ticks"
                );
            }
            k = next;
        };
        tracing::info!(steps, reason = ?stopped, "controller stopped");
        Ok(RunSummary {
            steps,
            source_errors,
            actuation_errors,
            in_force: self.in_force.clone(),
            stopped,
        })
    }

    /// Runs `n` decisions on the aligned schedule (no shutdown signal).
    pub async fn run_steps(&mut self, n: u64) -> Result<RunSummary, ControllerError> {
        let saved = self.config.max_steps.replace(n);
        let out = self.run(std::future::pending()).await;
        self.config.max_steps = saved;
        out
    }

    /// One interval now, without waiting for the schedule: applies queued operator
    /// commands, observes, decides, actuates (unless shadowing or backing off), records.
    pub async fn run_once(&mut self) -> StepRecord {
        self.apply_commands();
        let started = Instant::now();
        let now = self.clock.now_s();
        let timeout = self.config.step_timeout_s;

        let observed = tokio::select! {
            biased;
            r = self.source.observe(now) => r,
            () = self.clock.sleep_until(now + timeout) => Err(SourceError::Timeout { after_s: timeout }),
        };
        let observed = observed.and_then(|obs| self.check_shape(obs));
        let (obs, true_outcome, source_error) = match observed {
            Ok(obs) => {
                self.replica_names = obs.replicas.iter().map(|r| r.name.clone()).collect();
                (obs, self.source.take_outcome(), None)
            }
            Err(e) => {
                tracing::warn!(kind = e.kind(), error = %e, "observation failed; deciding on a blank one");
                (
                    self.blank_observation(now),
                    None,
                    Some(ErrorInfo::new(e.kind(), e.to_string())),
                )
            }
        };

        let out = self.step.step(obs.clone(), true_outcome);
        let actuation = self.actuate(&out.decision).await;

        let rec = StepRecord {
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
            source_error,
            in_force: self.in_force.clone(),
            shield: self.step.shield().status().clone(),
            policy: self.step.policy().name().to_string(),
            loop_duration_s: started.elapsed().as_secs_f64(),
        };
        self.seq += 1;
        tracing::debug!(seq = rec.seq, weights = %rec.decision.weights, "decision recorded");
        self.recorder.record(rec.clone());
        if let Some(hook) = &mut self.on_step {
            hook(&rec);
        }
        if let Some((every, hook)) = &mut self.checkpoint
            && self.seq.is_multiple_of(*every)
        {
            hook(self.step.policy());
        }
        rec
    }

    /// Hands the decision to the actuator unless shadowing or backing off, and keeps the
    /// pipeline's idea of the current weights equal to what is really in force.
    async fn actuate(&mut self, decision: &weir_core::Decision) -> Actuation {
        if !self.mode.actuates() {
            return Actuation::Skipped {
                reason: "shadow mode".to_string(),
            };
        }
        if self.seq < self.retry_at_seq {
            self.step.set_current(self.in_force.clone());
            return Actuation::Skipped {
                reason: format!(
                    "backing off after {} failed actuations until step {}",
                    self.consecutive_failures, self.retry_at_seq
                ),
            };
        }
        let timeout = self.config.step_timeout_s;
        let deadline = self.clock.now_s() + timeout;
        let applied = tokio::select! {
            biased;
            r = self.actuator.apply(decision) => r,
            () = self.clock.sleep_until(deadline) => Err(ActuatorError::Timeout { after_s: timeout }),
        };
        match applied {
            Ok(()) => {
                self.in_force = decision.weights.clone();
                self.consecutive_failures = 0;
                Actuation::Applied
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
                Actuation::Failed {
                    error: ErrorInfo::new(e.kind(), e.to_string()),
                }
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

    fn apply_commands(&mut self) {
        let Some(rx) = &mut self.commands else {
            return;
        };
        let mut queued = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            queued.push(cmd);
        }
        for cmd in queued {
            self.apply_command(cmd);
        }
    }

    fn apply_command(&mut self, cmd: Command) {
        let now = self.clock.now_s();
        let label = cmd.as_str();
        let refused = |recorder: &Recorder, kind: &str, message: String| {
            tracing::warn!(command = label, %message, "operator command refused");
            recorder.note_error(ErrorOrigin::Command, now, ErrorInfo::new(kind, message));
        };
        match cmd {
            Command::Pause => self.step.shield_mut().pause(),
            Command::Resume => self.step.shield_mut().resume(),
            Command::ClearOverride => self.step.shield_mut().clear_override(),
            Command::Override {
                weights,
                duration_s,
            } => {
                if !(duration_s.is_finite() && duration_s > 0.0) {
                    refused(
                        &self.recorder,
                        "invalid_override",
                        format!("duration_s must be a positive number, got {duration_s}"),
                    );
                    return;
                }
                if let Err(e) = self
                    .step
                    .shield_mut()
                    .set_override(weights, now + duration_s)
                {
                    refused(&self.recorder, "invalid_override", format!("weights: {e}"));
                    return;
                }
            }
            Command::SetMode { mode } => {
                if mode != Mode::Shadow && mode != self.config.mode {
                    refused(
                        &self.recorder,
                        "invalid_mode",
                        format!(
                            "cannot switch to {mode}: this controller's actuator was set up for {}; \
                             only {} or shadow are possible",
                            self.config.mode, self.config.mode
                        ),
                    );
                    return;
                }
                if self.mode == Mode::Shadow && mode != Mode::Shadow {
                    // Shadow decisions were never applied: start again from what is.
                    self.step.set_current(self.in_force.clone());
                }
                self.mode = mode;
            }
        }
        tracing::info!(command = label, at_s = now, "operator command applied");
    }
}

#[cfg(test)]
mod tests;
