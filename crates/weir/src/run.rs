//! `weir run`: the real controller against Prometheus and HAProxy or Istio.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};
use weir_actuators::ActuatorConfig;
use weir_api::AuditSink;
use weir_config::WeirConfig;
use weir_controller::{ControlStep, Controller, ControllerConfig, WallClock};
use weir_core::{Policy, Weights};
use weir_edge::{Actuator, Command, Controls, Mode};
use weir_persist::write_atomic;
use weir_policy::{Loaded, load_for_service};
use weir_recorder::{Recorder, Setup, StepRecord, decision_line};
use weir_shield::Shield;

use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> Result<()> {
    let cfg = WeirConfig::load(&args.config, std::env::vars())?;
    let actuator = ActuatorConfig::from_config(&cfg, &args.config.display().to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(cfg, actuator, &args.config))
}

/// `url` without a `user:password@` part: the setup is shown on an unauthenticated page.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// The file the learned policy state is kept in.
pub fn state_file(cfg: &WeirConfig) -> PathBuf {
    cfg.state_dir
        .join(cfg.policy.kind.snapshot_file().unwrap_or("policy.state"))
}

/// Builds the configured policy; a learned policy is restored from `state_dir` when a saved
/// state exists, from the model file otherwise.
pub fn build_policy(cfg: &WeirConfig) -> Result<Loaded> {
    load_for_service(
        cfg.policy.kind,
        cfg.policy.model.as_deref(),
        &state_file(cfg),
        cfg.policy.online_learning,
    )
    .with_context(|| format!("policy ({})", cfg.policy.kind))
}

/// The file the operator's standing controls (pause, override, mode) are kept in, so that a
/// restart does not silently undo them.
pub fn controls_file(cfg: &WeirConfig) -> PathBuf {
    cfg.state_dir.join("controls.json")
}

/// What `controls.json` holds: the controls and when they were taken (Unix seconds), so an
/// override's remaining time counts the time the process was down.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedControls {
    saved_unix_s: f64,
    controls: Controls,
}

fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The commands that restore the controls saved in `path` (none when there is no file). A
/// file that does not parse is an error naming it: starting without a pause an operator set
/// would be worse than not starting.
fn restore_controls(path: &Path, configured: Mode) -> Result<Vec<Command>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let saved: SavedControls = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not Weir's saved operator controls (fix it, or delete it to start without a pause or override)",
            path.display()
        )
    })?;
    if !saved.saved_unix_s.is_finite() {
        anyhow::bail!("{}: saved_unix_s must be a number", path.display());
    }
    let elapsed = unix_now_s() - saved.saved_unix_s;
    let commands = saved.controls.restore(configured, elapsed);
    if !commands.is_empty() {
        let what: Vec<&str> = commands.iter().map(Command::as_str).collect();
        tracing::warn!(
            path = %path.display(),
            restored = %what.join(","),
            "restoring the operator's controls from before the restart"
        );
    }
    Ok(commands)
}

/// Saves the operator's controls atomically; a failure is reported like a state save error.
fn save_controls(path: &Path, controls: &Controls, recorder: &Recorder) {
    let saved = SavedControls {
        saved_unix_s: unix_now_s(),
        controls: controls.clone(),
    };
    let written = serde_json::to_vec_pretty(&saved)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "could not save the operator's controls");
        recorder.note_save_error(format!("saving {}: {e}", path.display()));
    }
}

/// Saves the policy's state; a failure is logged, shown as `/api/state`'s last error and
/// counted in `weir_state_save_errors_total` (the previous state stays on disk).
fn save_policy(policy: &dyn Policy, path: &Path, recorder: &Recorder) {
    if let Some(bytes) = policy.snapshot() {
        match write_atomic(path, &bytes) {
            Ok(()) => tracing::info!(path = %path.display(), "policy state saved"),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "could not save the policy state");
                recorder.note_save_error(format!("saving {}: {e}", path.display()));
            }
        }
    }
}

/// The audit log: one JSON line per decision or API request, appended; a write error is
/// logged, never fatal. [`AuditLog::reopen`] (on SIGHUP) starts writing to whatever file is
/// at the path now, so that logrotate can move the file away and signal (Weir does not
/// rotate it itself; see docs/running.md).
struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    fn open_file(path: &Path) -> Result<std::fs::File> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("audit_log: creating {}", dir.display()))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("audit_log: opening {}", path.display()))
    }

    fn open(path: PathBuf) -> Result<AuditLog> {
        let file = Mutex::new(AuditLog::open_file(&path)?);
        Ok(AuditLog { path, file })
    }

    /// Writes from now on to the file at the path (created if it was moved away). On error
    /// the old file is kept.
    fn reopen(&self) -> Result<()> {
        let fresh = AuditLog::open_file(&self.path)?;
        if let Ok(mut f) = self.file.lock() {
            *f = fresh;
        }
        Ok(())
    }
}

fn audit_writer(path: Option<PathBuf>) -> Result<Option<Arc<AuditLog>>> {
    path.map(|p| AuditLog::open(p).map(Arc::new)).transpose()
}

/// Reopens the audit log on every SIGHUP (after logrotate moved it).
fn reopen_on_sighup(log: Arc<AuditLog>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the audit log will not be reopened");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match log.reopen() {
                Ok(()) => tracing::info!(path = %log.path.display(), "SIGHUP: audit log reopened"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: could not reopen the audit log; still writing to the old file")
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(log);
}

/// Appends one JSON line to the audit log: a decision's [`StepRecord`], or an API request's
/// [`weir_api::AuditEntry`] (`"audit": "control"`).
fn audit(file: &Option<Arc<AuditLog>>, json: serde_json::Result<String>) {
    let Some(log) = file else { return };
    let line = match json {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "audit log: could not serialise a record");
            return;
        }
    };
    if let Ok(mut f) = log.file.lock()
        && let Err(e) = writeln!(f, "{line}")
    {
        tracing::error!(error = %e, "audit log: write failed");
    }
}

/// How long `weir run` lets the decision in flight finish after SIGTERM before it abandons it
/// (then the state is saved and the HTTP server gets [`weir_api::SHUTDOWN_GRACE`]): well within
/// the unit's `TimeoutStopSec` (deploy/systemd/weir.service).
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Runs `work` to its end, unless it is still running `deadline` after `stopping` resolved:
/// then it is dropped (abandoned) and `None` is returned.
async fn within_deadline<T>(
    work: impl Future<Output = T>,
    stopping: impl Future<Output = ()>,
    deadline: Duration,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        () = async {
            stopping.await;
            tokio::time::sleep(deadline).await;
        } => None,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_async(cfg: WeirConfig, actuator_cfg: ActuatorConfig, path: &Path) -> Result<()> {
    let names = cfg.replica_names();
    let n = names.len();
    let source = cfg.prometheus.build().context("prometheus")?;
    let actuator = actuator_cfg.build_for(cfg.mode).await?;
    let initial = if actuator_cfg.has_target() {
        match actuator.read_current(n).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the current weights; assuming even replica weights");
                Weights::even(n)
            }
        }
    } else {
        Weights::even(n)
    };
    let Loaded {
        policy,
        description: policy_desc,
    } = build_policy(&cfg)?;
    let shield =
        Shield::new(cfg.shield.clone(), cfg.slo.clone(), n).with_priorities(&cfg.priorities);
    let step = ControlStep::new(
        policy,
        shield,
        cfg.slo.clone(),
        cfg.priorities.clone(),
        initial.clone(),
        512,
    );
    let recorder = Recorder::default();
    let config = ControllerConfig {
        step_timeout_s: cfg.step_timeout_s,
        replica_names: names.clone(),
        ..ControllerConfig::new(cfg.interval_s, cfg.mode)
    };
    let audit_file = audit_writer(cfg.audit_log.clone())?;
    if let Some(log) = &audit_file {
        reopen_on_sighup(Arc::clone(log));
    }
    let controls_path = controls_file(&cfg);
    let restored = restore_controls(&controls_path, cfg.mode)?;
    let (tx, rx) = mpsc::channel(16);
    for cmd in restored {
        // Applied before the first decision (the queue is empty and larger than this).
        let _ = tx.try_send(cmd);
    }
    let mut controller = Controller::new(
        step,
        source,
        actuator,
        WallClock::new(),
        recorder.clone(),
        config,
    )?
    .with_commands(rx)
    .on_controls({
        let rec = recorder.clone();
        move |c: &Controls| save_controls(&controls_path, c, &rec)
    })
    .on_step({
        let audit_file = audit_file.clone();
        move |r: &StepRecord| {
            audit(&audit_file, serde_json::to_string(r));
            tracing::info!(target: "weir::decision", "{}", decision_line(r));
        }
    });
    recorder.set_setup(Setup {
        run_id: crate::run_id(),
        title: format!("weir run {}", path.display()),
        description: format!(
            "{} replica{} ({}) observed through Prometheus {}; weights applied by {} ({} mode), policy {}",
            n,
            if n == 1 { "" } else { "s" },
            names.join(", "),
            without_credentials(&cfg.prometheus.url),
            controller.actuator().name(),
            cfg.mode,
            policy_desc
        ),
        mode: cfg.mode,
        slo: cfg.slo.clone(),
        interval_s: cfg.interval_s,
        stale_after_s: cfg.shield.stale_after_s,
    });

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen: binding {}", cfg.listen))?;
    let token = cfg.api_token.clone().filter(|t| !t.is_empty());
    // Requests to the controls go to the audit log next to the decisions (and to the log).
    let mut api = weir_api::Api::new(recorder.clone()).audit(move |e: &weir_api::AuditEntry| {
        weir_api::LogAudit.record(e);
        audit(&audit_file, serde_json::to_string(e));
    });
    if let Some(t) = &token {
        api = api.controls(tx.clone(), t);
    }
    let app = api.router();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(weir_api::serve_listener(listener, app, async move {
        let _ = http_stop.wait_for(|v| *v).await;
    }));
    tracing::info!(
        mode = cfg.mode.as_str(),
        replicas = %names.join(","),
        actuator = controller.actuator().name(),
        policy = %policy_desc,
        listen = %cfg.listen,
        initial = %initial,
        "weir run: started"
    );

    tokio::spawn(async move {
        termination().await;
        tracing::info!("shutting down: finishing the current decision");
        let _ = stop_tx.send(true);
    });
    let state = state_file(&cfg);
    if cfg.policy.online_learning {
        let path = state.clone();
        let rec = recorder.clone();
        controller =
            controller.on_checkpoint(cfg.policy.save_every, move |p| save_policy(p, &path, &rec));
    }
    let mut stop = stop_rx.clone();
    let mut stopping = stop_rx.clone();
    let finished = within_deadline(
        controller.run(async move {
            let _ = stop.wait_for(|v| *v).await;
        }),
        async move {
            let _ = stopping.wait_for(|v| *v).await;
        },
        STOP_DEADLINE,
    )
    .await;
    match finished {
        Some(result) => {
            result?;
        }
        None => tracing::warn!(
            deadline_s = STOP_DEADLINE.as_secs(),
            "the decision in flight did not finish within the stop deadline; abandoned"
        ),
    }
    if cfg.policy.online_learning {
        save_policy(controller.step().policy(), &state, &recorder);
    }
    recorder.close();
    let _ = server.await;
    tracing::info!("weir run: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{AuditLog, audit, restore_controls, save_controls};
    use super::{STOP_DEADLINE, within_deadline, without_credentials};
    use weir_core::Weights;
    use weir_edge::{Command, Controls, Mode, StandingOverride};
    use weir_recorder::Recorder;

    #[test]
    fn the_audit_log_reopens_at_its_path_after_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit/audit.jsonl");
        let log = Some(std::sync::Arc::new(
            AuditLog::open(path.clone()).expect("opens"),
        ));
        audit(&log, Ok("{\"seq\":0}".into()));
        // logrotate moves the file away, then signals.
        let rotated = dir.path().join("audit/audit.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rename");
        audit(&log, Ok("{\"seq\":1}".into()));
        log.as_ref().expect("open").reopen().expect("reopens");
        audit(&log, Ok("{\"seq\":2}".into()));
        let old = std::fs::read_to_string(&rotated).expect("rotated file");
        let new = std::fs::read_to_string(&path).expect("new file");
        assert_eq!(old, "{\"seq\":0}\n{\"seq\":1}\n");
        assert_eq!(new, "{\"seq\":2}\n");
    }

    #[test]
    fn operator_controls_survive_a_restart_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/controls.json");
        // Nothing saved: nothing to restore.
        assert!(
            restore_controls(&path, Mode::Enforce)
                .expect("ok")
                .is_empty()
        );
        let controls = Controls {
            paused: true,
            override_: Some(StandingOverride {
                weights: Weights::all_primary(2),
                remaining_s: 600.0,
            }),
            mode: Mode::Shadow,
        };
        let recorder = Recorder::default();
        save_controls(&path, &controls, &recorder);
        assert!(recorder.last_error().is_none());
        let cmds = restore_controls(&path, Mode::Enforce).expect("restores");
        assert_eq!(cmds.len(), 3, "{cmds:?}");
        assert_eq!(cmds[0], Command::Pause);
        assert!(matches!(
            &cmds[1],
            Command::Override { weights, duration_s }
                if *weights == Weights::all_primary(2) && *duration_s > 590.0 && *duration_s <= 600.0
        ));
        assert_eq!(cmds[2], Command::SetMode { mode: Mode::Shadow });
        // A hand-edited file that does not parse stops the start, naming the file.
        std::fs::write(&path, "{\"paused\": tru").expect("write");
        let err = format!("{:#}", restore_controls(&path, Mode::Enforce).unwrap_err());
        assert!(err.contains("controls.json"), "{err}");
        // A save that cannot be written is reported, like a failed state save.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "not a directory").expect("write");
        save_controls(&blocked.join("controls.json"), &controls, &recorder);
        assert!(recorder.last_error().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_decision_that_never_finishes_is_abandoned_at_the_stop_deadline() {
        // Stopping asked at once; the work never ends: only the deadline ends the wait.
        let out = within_deadline(
            std::future::pending::<u32>(),
            std::future::ready(()),
            STOP_DEADLINE,
        )
        .await;
        assert_eq!(out, None);
        // Work that finishes is waited for, even when it takes a while.
        let out = within_deadline(
            async {
                tokio::time::sleep(STOP_DEADLINE / 2).await;
                7
            },
            std::future::ready(()),
            STOP_DEADLINE,
        )
        .await;
        assert_eq!(out, Some(7));
        // No stop asked: no deadline.
        let out = within_deadline(
            async {
                tokio::time::sleep(STOP_DEADLINE * 10).await;
                8
            },
            std::future::pending(),
            STOP_DEADLINE,
        )
        .await;
        assert_eq!(out, Some(8));
    }

    #[test]
    fn credentials_never_reach_the_setup_description() {
        assert_eq!(
            without_credentials("https://weir:s3cret@prom.example:9090/api"),
            "https://prom.example:9090/api"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:9090"),
            "http://127.0.0.1:9090"
        );
        // An @ in the path is not a user part.
        assert_eq!(without_credentials("http://prom/a@b"), "http://prom/a@b");
    }
}
