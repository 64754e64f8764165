//! The async loop: every interval, a [`Governor`] tick (observe → decide → shield → actuate),
//! recorded.
//!
//! The same loop runs in production (Prometheus in, Istio/HAProxy out, [`WallClock`]) and in
//! the demo (the simulator on both edges, an accelerated clock). What one interval does at
//! the edges — blank observations on failure, back-off after failed actuations — is the
//! governor's; the loop adds the schedule, the recorder, operator commands and hooks.
//!
//! [`WallClock`]: crate::WallClock

use std::future::Future;
use std::pin::pin;

use tokio::sync::mpsc;
use weir_core::Weights;
use weir_edge::{Actuator, Command, Controls, Mode, Source};
use weir_recorder::{Actuation, ErrorInfo, ErrorOrigin, Recorder, StepRecord};

use crate::clock::Clock;
use crate::governor::{ControllerError, Governor, GovernorConfig};
use crate::step::ControlStep;

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
            step_timeout_s: crate::DEFAULT_STEP_TIMEOUT_S,
            max_backoff_intervals: crate::DEFAULT_MAX_BACKOFF_INTERVALS,
            max_steps: None,
            replica_names: Vec::new(),
        }
    }

    /// The part of the configuration that governs one interval.
    pub fn governor(&self) -> GovernorConfig {
        GovernorConfig {
            mode: self.mode,
            step_timeout_s: self.step_timeout_s,
            max_backoff_intervals: self.max_backoff_intervals,
            replica_names: self.replica_names.clone(),
        }
    }
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

/// The control loop of one managed cluster: a [`Governor`] ticked on a schedule of an injected
/// [`Clock`], recording every interval and taking operator commands between them.
pub struct Controller<S, A, C> {
    governor: Governor<S, A>,
    clock: C,
    recorder: Recorder,
    interval_s: f64,
    max_steps: Option<u64>,
    commands: Option<mpsc::Receiver<Command>>,
    on_step: Option<StepHook>,
    checkpoint: Option<(u64, CheckpointHook)>,
    on_controls: Option<ControlsHook>,
}

/// Called with the operator's standing controls after each command that changed them.
pub type ControlsHook = Box<dyn FnMut(&Controls) + Send>;

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
        if !(config.interval_s.is_finite() && config.interval_s > 0.0) {
            return Err(ControllerError::InvalidConfig(format!(
                "interval_s must be a positive number, got {}",
                config.interval_s
            )));
        }
        let governor = Governor::new(step, source, actuator, config.governor())?;
        Ok(Controller {
            governor,
            clock,
            recorder,
            interval_s: config.interval_s,
            max_steps: config.max_steps,
            commands: None,
            on_step: None,
            checkpoint: None,
            on_controls: None,
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

    /// Calls `hook` with the operator's standing controls (pause, override, mode) after
    /// every command applied, so that they can be kept across a restart.
    pub fn on_controls(mut self, hook: impl FnMut(&Controls) + Send + 'static) -> Self {
        self.on_controls = Some(Box::new(hook));
        self
    }

    /// The governor: pipeline, edges, mode and weights in force.
    pub fn governor(&self) -> &Governor<S, A> {
        &self.governor
    }

    /// The decision pipeline (policy, shield, history).
    pub fn step(&self) -> &ControlStep {
        self.governor.step()
    }

    /// The decision pipeline, mutably (e.g. to save a learned policy).
    pub fn step_mut(&mut self) -> &mut ControlStep {
        self.governor.step_mut()
    }

    /// Gives the pipeline back (e.g. to persist the policy after a run).
    pub fn into_step(self) -> ControlStep {
        self.governor.into_step()
    }

    /// The source.
    pub fn source(&self) -> &S {
        self.governor.source()
    }

    /// The actuator.
    pub fn actuator(&self) -> &A {
        self.governor.actuator()
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
        self.governor.mode()
    }

    /// The weights in force, as far as the controller knows.
    pub fn in_force(&self) -> &Weights {
        self.governor.in_force()
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
        let interval = self.interval_s;
        let start = self.clock.now_s();
        let mut k: u64 = 0;
        let mut steps: u64 = 0;
        let mut source_errors = 0;
        let mut actuation_errors = 0;
        let stopped = loop {
            if self.max_steps.is_some_and(|max| steps >= max) {
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
            in_force: self.governor.in_force().clone(),
            stopped,
        })
    }

    /// Runs `n` decisions on the aligned schedule (no shutdown signal).
    pub async fn run_steps(&mut self, n: u64) -> Result<RunSummary, ControllerError> {
        let saved = self.max_steps.replace(n);
        let out = self.run(std::future::pending()).await;
        self.max_steps = saved;
        out
    }

    /// One interval now, without waiting for the schedule: applies queued operator
    /// commands, then ticks the governor (observe, decide, actuate unless shadowing or backing
    /// off) and records.
    pub async fn run_once(&mut self) -> StepRecord {
        self.apply_commands();
        let rec = self.governor.tick(&self.clock).await.record;
        self.recorder.record(rec.clone());
        if let Some(hook) = &mut self.on_step {
            hook(&rec);
        }
        if let Some((every, hook)) = &mut self.checkpoint
            && self.governor.decisions().is_multiple_of(*every)
        {
            hook(self.governor.step().policy());
        }
        rec
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
            let now = self.clock.now_s();
            let label = cmd.as_str();
            match self.governor.command(cmd, now) {
                Ok(()) => {
                    tracing::info!(command = label, at_s = now, "operator command applied");
                    if let Some(hook) = &mut self.on_controls {
                        hook(&self.governor.controls(now));
                    }
                }
                Err(refused) => {
                    tracing::warn!(command = label, message = %refused.message, "operator command refused");
                    self.recorder.note_error(
                        ErrorOrigin::Command,
                        now,
                        ErrorInfo::new(refused.kind, refused.message),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
