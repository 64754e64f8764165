//! The loop against a scripted source, a recording actuator and tokio's paused clock: every
//! test is deterministic and takes no real time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use weir_core::{
    Decision, DecisionContext, Explanation, Observation, Outcome, Policy, Proposal, RewardConfig,
    Rule, Slo, Weights,
};
use weir_edge::{ActuatorError, SourceError};
use weir_shield::{Shield, ShieldConfig};
use weir_test_support::ObsBuilder;

use super::*;
use crate::{DEFAULT_STEP_TIMEOUT_S, WallClock};

/// Always proposes the same target.
struct Propose(Weights);

impl Policy for Propose {
    fn name(&self) -> &str {
        "propose"
    }
    fn decide(&mut self, _ctx: &DecisionContext<'_>) -> Proposal {
        Proposal::new(self.0.clone(), "fixed target")
    }
    fn explain(&self) -> Explanation {
        Explanation {
            policy: "propose".into(),
            ..Explanation::default()
        }
    }
}

fn all_on_replica_1() -> Weights {
    Weights {
        primary: 0,
        replicas: vec![100, 0],
    }
}

fn w(primary: u32, r1: u32, r2: u32) -> Weights {
    Weights {
        primary,
        replicas: vec![r1, r2],
    }
}

fn pipeline(target: Weights) -> ControlStep {
    ControlStep::new(
        Box::new(Propose(target)),
        Shield::new(ShieldConfig::default(), Slo::default(), 2),
        Slo::default(),
        RewardConfig::default(),
        Weights::even(2),
        100,
    )
}

/// Scripted observations (healthy by default), remembering when it was asked.
#[derive(Default)]
struct FakeSource {
    script: VecDeque<Result<(), SourceError>>,
    /// Seconds the next calls take, on the clock.
    delays: VecDeque<f64>,
    asked_at: Arc<Mutex<Vec<f64>>>,
    /// The true outcome reported with every observation.
    outcome: Option<Outcome>,
}

impl Source for FakeSource {
    async fn observe(&mut self, now_s: f64) -> Result<Observation, SourceError> {
        if let Ok(mut v) = self.asked_at.lock() {
            v.push(now_s);
        }
        if let Some(d) = self.delays.pop_front() {
            tokio::time::sleep(std::time::Duration::from_secs_f64(d)).await;
        }
        self.script.pop_front().unwrap_or(Ok(()))?;
        Ok(ObsBuilder::new(2).at(now_s).build())
    }

    fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome
    }
}

/// Records what it applied; fails as scripted.
#[derive(Default)]
struct FakeActuator {
    failures: VecDeque<Option<ActuatorError>>,
    always_fail: bool,
    attempts: Arc<Mutex<Vec<Weights>>>,
    applied: Arc<Mutex<Vec<Weights>>>,
    /// Reads back exactly (like HAProxy): the weights at the target, which the test can
    /// change behind Weir's back.
    exact: bool,
    target: Arc<Mutex<Option<Weights>>>,
}

impl Actuator for FakeActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        if let Ok(mut v) = self.attempts.lock() {
            v.push(decision.weights.clone());
        }
        if self.always_fail {
            return Err(ActuatorError::Unreachable("connection refused".into()));
        }
        if let Some(Some(e)) = self.failures.pop_front() {
            return Err(e);
        }
        if let Ok(mut v) = self.applied.lock() {
            v.push(decision.weights.clone());
        }
        if let Ok(mut t) = self.target.lock() {
            *t = Some(decision.weights.clone());
        }
        Ok(())
    }
    fn name(&self) -> &str {
        "fake"
    }
    fn reads_back_exactly(&self) -> bool {
        self.exact
    }
    async fn read_current(&self, replicas: usize) -> Result<Weights, ActuatorError> {
        let t = self.target.lock().map(|t| t.clone()).ok().flatten();
        Ok(t.unwrap_or_else(|| Weights::even(replicas)))
    }
}

fn controller(
    source: FakeSource,
    actuator: FakeActuator,
    mode: Mode,
) -> Controller<FakeSource, FakeActuator, WallClock> {
    let config = ControllerConfig::new(15.0, mode);
    Controller::new(
        pipeline(all_on_replica_1()),
        source,
        actuator,
        WallClock::new(),
        Recorder::new(100),
        config,
    )
    .expect("valid config")
}

fn applied(a: &Arc<Mutex<Vec<Weights>>>) -> Vec<Weights> {
    a.lock().map(|v| v.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn enforce_actuates_every_decision_on_aligned_ticks() {
    let source = FakeSource::default();
    let asked = Arc::clone(&source.asked_at);
    let actuator = FakeActuator::default();
    let done = Arc::clone(&actuator.applied);
    let mut c = controller(source, actuator, Mode::Enforce);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    c = c.on_step(move |r| {
        if let Ok(mut v) = sink.lock() {
            v.push(weir_recorder::decision_line(r));
        }
    });
    let summary = c.run_steps(3).await.expect("runs");
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.stopped, StopReason::MaxSteps);
    let asked = asked.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(asked.len(), 3);
    for (t, want) in asked.iter().zip([0.0, 15.0, 30.0]) {
        assert!((t - want).abs() < 1e-6, "{asked:?}");
    }
    // 50/50 → 100/0 in steps of at most 25 points.
    assert_eq!(
        applied(&done),
        vec![w(0, 75, 25), w(0, 100, 0), w(0, 100, 0)]
    );
    assert_eq!(summary.in_force, w(0, 100, 0));
    assert_eq!(c.recorder().recorded(), 3);
    let latest = c.recorder().latest().expect("recorded");
    assert_eq!(latest.seq, 2);
    assert_eq!(latest.actuation, Actuation::Applied);
    assert_eq!(latest.policy, "propose");
    assert!(latest.reward.is_some());
    assert_eq!(lines.lock().map(|v| v.len()).unwrap_or(0), 3);
}

#[tokio::test(start_paused = true)]
async fn drift_at_the_target_is_noticed_recorded_and_repaired() {
    let actuator = FakeActuator {
        exact: true,
        ..FakeActuator::default()
    };
    let target = Arc::clone(&actuator.target);
    let done = Arc::clone(&actuator.applied);
    let mut c = controller(FakeSource::default(), actuator, Mode::Enforce);
    c.run_steps(3).await.expect("runs");
    // Weir's own weights read back: no drift.
    assert!(c.recorder().history(None).iter().all(|r| r.drift.is_none()));
    assert_eq!(c.in_force(), &w(0, 100, 0));
    // A restart puts the configuration file's weights back behind Weir's back.
    if let Ok(mut t) = target.lock() {
        *t = Some(w(0, 50, 50));
    }
    c.run_steps(1).await.expect("runs");
    let rec = c.recorder().latest().expect("recorded");
    let drift = rec.drift.clone().expect("drift noticed");
    assert_eq!(drift.expected, w(0, 100, 0));
    assert_eq!(drift.found, w(0, 50, 50));
    assert!(weir_recorder::decision_line(&rec).contains("drift=found P0/50/50"));
    // ... and repaired in the same interval: Weir's weights applied again.
    assert_eq!(applied(&done).last(), Some(&w(0, 100, 0)));
    assert_eq!(
        target.lock().map(|t| t.clone()).ok().flatten(),
        Some(w(0, 100, 0))
    );
    assert!(
        c.recorder()
            .encode_metrics()
            .contains("weir_weights_drift_total 1")
    );
    c.run_steps(1).await.expect("runs");
    assert!(c.recorder().latest().expect("recorded").drift.is_none());
}

#[tokio::test(start_paused = true)]
async fn drift_is_not_checked_where_the_read_back_is_not_exact() {
    let actuator = FakeActuator::default();
    let target = Arc::clone(&actuator.target);
    let mut c = controller(FakeSource::default(), actuator, Mode::Enforce);
    c.run_steps(2).await.expect("runs");
    if let Ok(mut t) = target.lock() {
        *t = Some(w(0, 50, 50));
    }
    c.run_steps(1).await.expect("runs");
    assert!(c.recorder().history(None).iter().all(|r| r.drift.is_none()));
}

#[tokio::test(start_paused = true)]
async fn shadow_records_but_never_actuates() {
    let actuator = FakeActuator::default();
    let attempts = Arc::clone(&actuator.attempts);
    let mut c = controller(FakeSource::default(), actuator, Mode::Shadow);
    c.run_steps(2).await.expect("runs");
    assert!(applied(&attempts).is_empty());
    let latest = c.recorder().latest().expect("recorded");
    assert_eq!(latest.mode, Mode::Shadow);
    assert!(matches!(latest.actuation, Actuation::Skipped { .. }));
    // The shadow pipeline follows its own decisions; nothing real changed.
    assert_eq!(latest.decision.weights, w(0, 100, 0));
    assert_eq!(latest.in_force, Weights::even(2));
}

#[tokio::test(start_paused = true)]
async fn dry_run_calls_the_actuator_and_says_so() {
    let actuator = FakeActuator::default();
    let done = Arc::clone(&actuator.applied);
    let mut c = controller(FakeSource::default(), actuator, Mode::DryRun);
    c.run_steps(1).await.expect("runs");
    assert_eq!(applied(&done), vec![w(0, 75, 25)]);
    assert_eq!(c.recorder().latest().map(|r| r.mode), Some(Mode::DryRun));
}

#[tokio::test(start_paused = true)]
async fn source_error_becomes_a_blank_observation_and_the_shield_holds() {
    let source = FakeSource {
        script: [Ok(()), Err(SourceError::Unreachable("refused".into()))].into(),
        ..FakeSource::default()
    };
    let mut c = controller(source, FakeActuator::default(), Mode::Enforce);
    let summary = c.run_steps(2).await.expect("runs");
    assert_eq!(summary.source_errors, 1);
    let rec = c.recorder().latest().expect("recorded");
    let err = rec.source_error.as_ref().expect("source error recorded");
    assert_eq!(err.kind, "unreachable");
    assert!(rec.observation.freshest_age_s().is_none());
    let names: Vec<&str> = rec
        .observation
        .replicas
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["replica-1", "replica-2"]);
    assert_eq!(
        rec.decision.interventions.first().map(|i| i.rule),
        Some(Rule::StaleObservation)
    );
    assert_eq!(rec.decision.weights, w(0, 75, 25), "held the last decision");
    let metrics = c.recorder().encode_metrics();
    assert!(
        metrics.contains("weir_source_errors_total{kind=\"unreachable\"} 1"),
        "{metrics}"
    );
    let last = c.recorder().last_error().expect("last error");
    assert_eq!(last.origin, ErrorOrigin::Source);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_knows_the_truth_scores_with_it() {
    let truth = Outcome {
        failed_fraction: 1.0,
        primary_cpu: 0.3,
        ..Outcome::default()
    };
    let source = FakeSource {
        outcome: Some(truth),
        ..FakeSource::default()
    };
    let mut c = controller(source, FakeActuator::default(), Mode::Enforce);
    c.run_once().await;
    let rec = c.run_once().await;
    assert_eq!(rec.outcome.map(|o| o.failed_fraction), Some(1.0));
    assert!(rec.reward.is_some_and(|r| r <= -20.0), "{:?}", rec.reward);
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_times_out_on_the_injected_clock() {
    let source = FakeSource {
        delays: [60.0].into(),
        ..FakeSource::default()
    };
    let mut c = controller(source, FakeActuator::default(), Mode::Enforce);
    let rec = c.run_once().await;
    assert_eq!(
        rec.source_error.map(|e| e.kind),
        Some("timeout".to_string())
    );
    assert!((c.clock().now_s() - DEFAULT_STEP_TIMEOUT_S).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn failed_actuation_keeps_the_old_weights_in_force() {
    let actuator = FakeActuator {
        failures: [Some(ActuatorError::Conflict("resourceVersion".into()))].into(),
        ..FakeActuator::default()
    };
    let done = Arc::clone(&actuator.applied);
    let mut c = controller(FakeSource::default(), actuator, Mode::Enforce);
    let first = c.run_once().await;
    assert!(matches!(
        &first.actuation,
        Actuation::Failed { error } if error.kind == "conflict"
    ));
    assert_eq!(first.in_force, Weights::even(2));
    assert_eq!(c.step().current(), &Weights::even(2));
    // The next step starts from 50/50 again, so the step limit allows 75/25 once more.
    let second = c.run_once().await;
    assert_eq!(second.decision.weights, w(0, 75, 25));
    assert_eq!(second.actuation, Actuation::Applied);
    assert_eq!(applied(&done), vec![w(0, 75, 25)]);
    let metrics = c.recorder().encode_metrics();
    assert!(metrics.contains("weir_actuation_errors_total{kind=\"conflict\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn actuation_retries_back_off_exponentially() {
    let actuator = FakeActuator {
        always_fail: true,
        ..FakeActuator::default()
    };
    let attempts = Arc::clone(&actuator.attempts);
    let mut c = controller(FakeSource::default(), actuator, Mode::Enforce);
    let summary = c.run_steps(9).await.expect("runs");
    // Attempts at steps 0, 1, 3, 7 (waits of 1, 2, 4 intervals).
    assert_eq!(applied(&attempts).len(), 4);
    assert_eq!(summary.actuation_errors, 4);
    let history = c.recorder().history(None);
    let skipped: Vec<u64> = history
        .iter()
        .filter(|r| matches!(r.actuation, Actuation::Skipped { .. }))
        .map(|r| r.seq)
        .collect();
    assert_eq!(skipped, vec![2, 4, 5, 6, 8]);
    // Nothing ever got through: the pipeline never drifted from what is in force.
    assert!(history.iter().all(|r| r.in_force == Weights::even(2)));
    assert!(history.iter().all(|r| r.decision.weights == w(0, 75, 25)));
}

#[tokio::test(start_paused = true)]
async fn a_tick_reports_the_typed_errors_and_the_governor_remembers_the_failure() {
    let source = FakeSource {
        script: [Err(SourceError::Timeout { after_s: 3.0 })].into(),
        ..FakeSource::default()
    };
    let actuator = FakeActuator {
        failures: [Some(ActuatorError::TargetMissing("route".into())), None].into(),
        ..FakeActuator::default()
    };
    let mut g = Governor::new(
        pipeline(all_on_replica_1()),
        source,
        actuator,
        GovernorConfig::new(Mode::Enforce),
    )
    .expect("valid config");
    let clock = WallClock::new();
    let tick = g.tick(&clock).await;
    assert_eq!(
        tick.source_error,
        Some(SourceError::Timeout { after_s: 3.0 })
    );
    assert_eq!(
        tick.actuation_error,
        Some(ActuatorError::TargetMissing("route".into()))
    );
    // The record carries the same failure as a label: a missing target counts as rejected.
    assert!(matches!(
        &tick.record.actuation,
        Actuation::Failed { error } if error.kind == "rejected"
    ));
    assert!(g.failing().is_some());
    assert_eq!(g.decisions(), 1);
    // The next attempt (one interval later) succeeds and clears the failure.
    let tick = g.tick(&clock).await;
    assert!(tick.actuation_error.is_none());
    assert_eq!(tick.record.actuation, Actuation::Applied);
    assert!(g.failing().is_none());
}

#[tokio::test(start_paused = true)]
async fn standing_controls_are_reported_after_each_command_and_restore_on_a_new_loop() {
    let (tx, rx) = mpsc::channel(8);
    let seen: Arc<Mutex<Vec<weir_edge::Controls>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let mut c = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    )
    .with_commands(rx)
    .on_controls(move |ctl| {
        if let Ok(mut v) = sink.lock() {
            v.push(ctl.clone());
        }
    });
    c.run_once().await;
    tx.send(Command::Pause).await.expect("queued");
    tx.send(Command::Override {
        weights: Weights::all_primary(2),
        duration_s: 100.0,
    })
    .await
    .expect("queued");
    tx.send(Command::SetMode { mode: Mode::Shadow })
        .await
        .expect("queued");
    c.run_once().await;
    let last = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(last.len(), 3, "one report per command: {last:?}");
    let standing = last.last().cloned().expect("reported");
    assert!(standing.paused);
    assert_eq!(standing.mode, Mode::Shadow);
    let o = standing.override_.clone().expect("override standing");
    assert_eq!(o.weights, Weights::all_primary(2));
    assert!(o.remaining_s > 0.0 && o.remaining_s <= 100.0, "{o:?}");

    // A new loop (a restart) given the restored commands is paused, overridden and shadowing.
    let (tx2, rx2) = mpsc::channel(8);
    let mut fresh = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    )
    .with_commands(rx2);
    for cmd in standing.restore(Mode::Enforce, 10.0) {
        tx2.send(cmd).await.expect("queued");
    }
    let rec = fresh.run_once().await;
    assert!(rec.shield.paused);
    assert_eq!(rec.mode, Mode::Shadow);
    assert_eq!(rec.decision.weights, Weights::all_primary(2));
}

#[tokio::test(start_paused = true)]
async fn operator_commands_apply_before_the_next_decision() {
    let (tx, rx) = mpsc::channel(8);
    let mut c = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    )
    .with_commands(rx);
    c.run_once().await;
    tx.send(Command::Pause).await.expect("queued");
    let rec = c.run_once().await;
    assert_eq!(
        rec.decision.interventions.first().map(|i| i.rule),
        Some(Rule::Paused)
    );
    assert!(rec.shield.paused);
    assert_eq!(rec.decision.weights, w(0, 75, 25));

    tx.send(Command::Resume).await.expect("queued");
    tx.send(Command::Override {
        weights: Weights::all_primary(2),
        duration_s: 100.0,
    })
    .await
    .expect("queued");
    let rec = c.run_once().await;
    assert_eq!(rec.decision.weights, Weights::all_primary(2));
    assert_eq!(
        rec.decision.interventions.first().map(|i| i.rule),
        Some(Rule::ManualOverride)
    );

    // A malformed override is refused and reported, not applied.
    tx.send(Command::ClearOverride).await.expect("queued");
    tx.send(Command::Override {
        weights: Weights {
            primary: 100,
            replicas: vec![0],
        },
        duration_s: 100.0,
    })
    .await
    .expect("queued");
    let rec = c.run_once().await;
    assert!(rec.shield.override_.is_none());
    let err = c.recorder().last_error().expect("refusal noted");
    assert_eq!(err.origin, ErrorOrigin::Command);
    assert_eq!(err.error.kind, "invalid_override");
}

#[tokio::test(start_paused = true)]
async fn mode_switches_only_to_shadow_or_back() {
    let (tx, rx) = mpsc::channel(8);
    let actuator = FakeActuator::default();
    let attempts = Arc::clone(&actuator.attempts);
    let mut c = controller(FakeSource::default(), actuator, Mode::DryRun).with_commands(rx);
    tx.send(Command::SetMode { mode: Mode::Shadow })
        .await
        .expect("queued");
    let rec = c.run_once().await;
    assert_eq!(rec.mode, Mode::Shadow);
    assert!(applied(&attempts).is_empty());
    // The dry-run actuator cannot enforce: refused.
    tx.send(Command::SetMode {
        mode: Mode::Enforce,
    })
    .await
    .expect("queued");
    let rec = c.run_once().await;
    assert_eq!(rec.mode, Mode::Shadow);
    assert_eq!(
        c.recorder().last_error().map(|e| e.error.kind),
        Some("invalid_mode".to_string())
    );
    // Back to dry-run: the pipeline restarts from what is really in force (50/50).
    tx.send(Command::SetMode { mode: Mode::DryRun })
        .await
        .expect("queued");
    let rec = c.run_once().await;
    assert_eq!(rec.mode, Mode::DryRun);
    assert_eq!(rec.decision.weights, w(0, 75, 25));
    assert_eq!(applied(&attempts), vec![w(0, 75, 25)]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_between_decisions() {
    let mut c = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    );
    let shutdown = tokio::time::sleep(std::time::Duration::from_secs(40));
    let summary = c.run(shutdown).await.expect("runs");
    assert_eq!(summary.stopped, StopReason::Shutdown);
    // Decisions at 0, 15 and 30 s; the shutdown at 40 s ends the wait for 45 s.
    assert_eq!(summary.steps, 3);
}

#[tokio::test(start_paused = true)]
async fn the_loop_is_spawnable() {
    let c = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    );
    let handle = tokio::spawn(async move {
        let mut c = c;
        c.run_steps(2).await
    });
    let summary = handle.await.expect("joins").expect("runs");
    assert_eq!(summary.steps, 2);
}

#[test]
fn bad_configuration_is_refused_with_the_field_named() {
    let mut config = ControllerConfig::new(0.0, Mode::Enforce);
    let err = Controller::new(
        pipeline(all_on_replica_1()),
        FakeSource::default(),
        FakeActuator::default(),
        WallClock::new(),
        Recorder::default(),
        config.clone(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("interval_s"), "{err}");
    config.interval_s = 15.0;
    config.replica_names = vec!["only-one".into()];
    let err = Controller::new(
        pipeline(all_on_replica_1()),
        FakeSource::default(),
        FakeActuator::default(),
        WallClock::new(),
        Recorder::default(),
        config,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("replica_names"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn checkpoints_hand_over_the_policy_every_n_decisions() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let mut c = controller(
        FakeSource::default(),
        FakeActuator::default(),
        Mode::Enforce,
    )
    .on_checkpoint(2, move |p| {
        if let Ok(mut v) = sink.lock() {
            v.push(p.name().to_string());
        }
    });
    c.run_steps(5).await.expect("runs");
    assert_eq!(
        seen.lock().map(|v| v.clone()).unwrap_or_default(),
        vec!["propose", "propose"]
    );
}
