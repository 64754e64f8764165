//! The soak session: `weir run` as a recorded child, the monitors (HAProxy's weights every
//! 250 ms, one live `/api/events` stream, SIGINT/SIGTERM), the stalls on their schedule, and
//! the sampler, which appends each sample to `samples.jsonl` the moment it is taken.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;

use super::report::{self, RunFacts, Sample, SseCounter, Summary};
use super::{SoakConfig, stall_starts};
use crate::campaign::POLICY;
use crate::experiment::{calibrate, load_config, wait_weir_deciding, weir_config_with};
use crate::faults::{Stall, StallKind};
use crate::lab::Lab;
use crate::layout::{BACKEND, SERVERS};
use crate::load::{Load, LoadReport};
use crate::procs;

/// Lines of weir's log shown when it died.
const LOG_TAIL: usize = 30;

struct Session<'a> {
    lab: &'a mut Lab,
    cfg: &'a SoakConfig,
    config: PathBuf,
    log: PathBuf,
    audit_path: PathBuf,
    state_dir: PathBuf,
    weir: Option<Child>,
    pid: u32,
    /// When `weir run` was started: sample times count from here.
    t0: Instant,
    stall: Option<Stall>,
    stalls: usize,
    load: Option<Load>,
    weights: Arc<Mutex<Option<[u32; 3]>>>,
    weight_changes: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
    signalled: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    samples: Vec<Sample>,
    out: std::fs::File,
    audit_offset: u64,
    audit_lines: u64,
    died: Option<String>,
    interrupted: Option<String>,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Bytes and regular files under `dir` (recursively), and the newest modification time.
fn dir_usage(dir: &Path) -> (u64, u64, Option<SystemTime>) {
    let (mut bytes, mut files, mut newest) = (0, 0, None::<SystemTime>);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                bytes += m.len();
                files += 1;
                if let Ok(t) = m.modified() {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
    }
    (bytes, files, newest)
}

/// The last `n` lines of `path`.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Session<'_> {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn start_monitors(&mut self) {
        let (weights, changes, api) = (
            self.weights.clone(),
            self.weight_changes.clone(),
            self.lab.haproxy().clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            let mut last: Option<[u32; 3]> = None;
            loop {
                let mut cur = [0u32; 3];
                let mut ok = true;
                for (i, s) in SERVERS.iter().enumerate() {
                    match api.get_weight(BACKEND, s).await {
                        Ok(x) => cur[i] = x.current,
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    if last.is_some_and(|l| l != cur) {
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    last = Some(cur);
                }
                if let Ok(mut w) = weights.lock() {
                    *w = ok.then_some(cur);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
        let flag = self.signalled.clone();
        self.tasks.push(tokio::spawn(async move {
            if crate::wait_for_signal().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        }));
    }

    /// One `/api/events` stream held open for the whole run (reconnecting if it drops), so
    /// the live broadcast is exercised as a dashboard would.
    fn start_event_stream(&mut self) {
        let url = format!(
            "http://127.0.0.1:{}/api/events",
            self.lab.layout.weir_port()
        );
        let events = self.events.clone();
        self.tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                if let Ok(mut resp) = client.get(&url).send().await
                    && resp.status().is_success()
                {
                    let mut counter = SseCounter::default();
                    let mut seen = 0;
                    while let Ok(Some(chunk)) = resp.chunk().await {
                        counter.feed(&chunk);
                        events.fetch_add(counter.decisions - seen, Ordering::Relaxed);
                        seen = counter.decisions;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    async fn start_stall(&mut self) {
        match Stall::start(self.lab.layout.mysql_port(1), StallKind::Ftwrl).await {
            Ok(stall) => {
                self.stall = Some(stall);
                self.stalls += 1;
                if let Some(l) = &self.load {
                    l.set_phase(1);
                }
                eprintln!(
                    "soak: {:.1} min: replica-1 stalled (stall {})",
                    self.now() / 60.0,
                    self.stalls
                );
            }
            Err(e) => eprintln!(
                "soak: {:.1} min: could not stall replica-1: {e:#}",
                self.now() / 60.0
            ),
        }
    }

    async fn end_stall(&mut self) -> Result<()> {
        if let Some(stall) = self.stall.take() {
            stall.end().await.context("releasing replica-1's stall")?;
            if let Some(l) = &self.load {
                l.set_phase(0);
            }
            eprintln!("soak: {:.1} min: replica-1 released", self.now() / 60.0);
        }
        Ok(())
    }

    /// Audit-log lines appended since the last call.
    fn count_new_audit_lines(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.audit_path) else {
            return;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.audit_offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            // Only complete lines: a line being written is counted next time.
            let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.audit_lines += buf[..complete].iter().filter(|b| **b == b'\n').count() as u64;
            self.audit_offset += complete as u64;
        }
    }

    async fn sample(&mut self) -> Result<()> {
        let t_s = self.now();
        let pid = self.pid;
        let mut errors = Vec::new();
        let mut s = Sample {
            t_s,
            unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            pid,
            stalls: self.stalls,
            stalled: self.stall.is_some(),
            weight_changes: self.weight_changes.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            weights: self.weights.lock().ok().and_then(|w| *w),
            ..Sample::default()
        };
        if self.weir.is_some() {
            match std::fs::read_to_string(format!("/proc/{pid}/status")) {
                Ok(text) => {
                    s.alive = true;
                    (s.rss_kb, s.threads) = report::parse_status(&text);
                }
                Err(e) => errors.push(format!("/proc/{pid}/status: {e}")),
            }
            match std::fs::read_dir(format!("/proc/{pid}/fd")) {
                Ok(d) => s.fds = Some(d.count() as u64),
                Err(e) => errors.push(format!("/proc/{pid}/fd: {e}")),
            }
            s.cpu_s = procs::cpu_ticks(pid).map(|t| t as f64 / procs::ticks_per_second());
            let port = self.lab.layout.weir_port();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .context("building the sampler's HTTP client")?;
            let metrics = match client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(r) => r.text().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match metrics {
                Ok(text) => {
                    let families = report::series_by_family(&text);
                    s.series_total = Some(families.values().sum());
                    s.series = Some(families);
                    s.decisions =
                        report::metric_value(&text, "weir_decisions_total").map(|v| v as u64);
                }
                Err(e) => errors.push(format!("GET /metrics: {e}")),
            }
            let state = match client
                .get(format!("http://127.0.0.1:{port}/api/state"))
                .send()
                .await
                .and_then(|r| r.error_for_status())
            {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match state {
                Ok(v) => {
                    if let Some(d) = v["decisions"].as_u64() {
                        s.decisions = Some(d);
                    }
                    if !v["last_error"].is_null() {
                        s.last_error = Some(v["last_error"].to_string());
                    }
                }
                Err(e) => errors.push(format!("GET /api/state: {e}")),
            }
        }
        self.count_new_audit_lines();
        s.audit_lines = self.audit_lines;
        s.audit_log_bytes = file_len(&self.audit_path);
        s.weir_log_bytes = file_len(&self.log);
        let (bytes, files, newest) = dir_usage(&self.state_dir);
        (s.state_dir_bytes, s.state_dir_files) = (bytes, files);
        s.state_age_s = newest.map(|t| t.elapsed().map_or(0.0, |d| d.as_secs_f64()));
        s.errors = errors;

        let line = serde_json::to_string(&s).context("serialising a soak sample")?;
        self.out
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.out.sync_data())
            .context("appending to samples.jsonl")?;
        eprintln!(
            "soak: {:5.1}/{:.0} min  rss {} MB  fds {}  threads {}  series {}  decisions {}  stalls {}  weight changes {}  events {}{}",
            t_s / 60.0,
            self.cfg.duration.as_secs_f64() / 60.0,
            s.rss_kb
                .map_or("?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
            s.fds.map_or("?".into(), |v| v.to_string()),
            s.threads.map_or("?".into(), |v| v.to_string()),
            s.series_total.map_or("?".into(), |v| v.to_string()),
            s.decisions.map_or("?".into(), |v| v.to_string()),
            s.stalls,
            s.weight_changes,
            s.events,
            if s.errors.is_empty() {
                String::new()
            } else {
                format!("  errors: {}", s.errors.join("; "))
            }
        );
        self.samples.push(s);
        Ok(())
    }

    /// Whether `weir run` has exited; if so, reaps it and records how (or that the soak was
    /// interrupted, when a Ctrl-C in the terminal reached it too).
    async fn weir_exited(&mut self) -> Result<bool> {
        let Some(child) = self.weir.as_mut() else {
            return Ok(true);
        };
        let Some(status) = child.try_wait().context("checking on weir run")? else {
            return Ok(false);
        };
        let child = self.weir.take().context("weir run is not running")?;
        self.lab.reap_weir(child)?;
        // A Ctrl-C in the terminal reaches weir as well: give our own handler a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if self.signalled.load(Ordering::SeqCst) {
            self.interrupted = Some(format!(
                "SIGINT/SIGTERM; weir run exited with it ({status})"
            ));
        } else {
            self.died = Some(format!(
                "at {:.1} min, {status}; the tail of {} (newest last):\n{}",
                self.now() / 60.0,
                self.log.display(),
                tail(&self.log, LOG_TAIL)
            ));
        }
        Ok(true)
    }

    async fn soak(&mut self) -> Result<()> {
        let planned = self.cfg.duration.as_secs_f64();
        let every = self.cfg.sample_every.as_secs_f64();
        let stall_for = self.cfg.stall_for.as_secs_f64();
        let starts = stall_starts(planned, self.cfg.stall_every.as_secs_f64(), stall_for);
        let mut next_stall = 0;
        let mut stall_end: Option<f64> = None;
        let mut next_sample = 0.0;
        loop {
            if self.weir_exited().await? {
                self.sample().await?;
                return Ok(());
            }
            if self.signalled.load(Ordering::SeqCst) {
                self.interrupted = Some("SIGINT/SIGTERM".into());
                self.sample().await?;
                return Ok(());
            }
            let now = self.now();
            if stall_end.is_some_and(|e| now >= e) {
                self.end_stall().await?;
                stall_end = None;
            }
            if stall_end.is_none() && starts.get(next_stall).is_some_and(|s| now >= *s) {
                self.start_stall().await;
                stall_end = Some(now + stall_for);
                next_stall += 1;
            }
            if now >= planned {
                self.sample().await?;
                return Ok(());
            }
            if now >= next_sample {
                self.sample().await?;
                while next_sample <= now {
                    next_sample += every;
                }
            }
            let wake = [
                Some(next_sample),
                Some(planned),
                stall_end,
                starts.get(next_stall).copied(),
            ]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
            let nap = (wake - self.now()).clamp(0.05, 1.0);
            tokio::time::sleep(Duration::from_secs_f64(nap)).await;
        }
    }

    async fn teardown(&mut self) -> (Result<()>, Option<LoadReport>) {
        let stall = self.end_stall().await;
        let load = match self.load.take() {
            Some(l) => Some(l.stop().await),
            None => None,
        };
        for t in &self.tasks {
            t.abort();
        }
        let stopped = match self.weir.take() {
            Some(child) => self.lab.stop_weir(child),
            None => Ok(()),
        };
        (stall.and(stopped), load)
    }
}

/// Runs the soak on a lab that is up: calibrates the primary (the experiment's calibration,
/// so weir's config is the campaign's), starts the load, the monitors and `weir run`, stalls
/// and samples on schedule until the duration is over, weir dies or a signal arrives.
pub async fn run(lab: &mut Lab, cfg: &SoakConfig) -> Result<Summary> {
    if !cfg.base.weir_bin.is_file() {
        bail!(
            "{}: no weir binary; build it first (`cargo build -p weir`) or pass --weir-bin",
            cfg.base.weir_bin.display()
        );
    }
    let cal = calibrate(lab, &cfg.base)
        .await
        .context("calibrating the primary")?;
    eprintln!(
        "soak: primary budget {:.3} cores ({:.0} reads/s)",
        cal.budget_cores, cal.read_capacity_qps
    );
    let dir = lab.layout.path("soak");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("weir.toml");
    procs::write_atomic(
        &config,
        weir_config_with(&lab.layout, &cfg.base, &cal, POLICY.as_str(), &dir, Some(1)).as_bytes(),
    )?;
    let samples_path = dir.join("samples.jsonl");
    let out = std::fs::File::create(&samples_path)
        .with_context(|| format!("creating {}", samples_path.display()))?;
    lab.set_weights([0, 50, 50]).await?;
    let load = Load::start(load_config(lab, &cfg.base), 2, lab.metrics.clone())
        .await
        .context("starting the load generator")?;
    let mut s = Session {
        cfg,
        config,
        log: dir.join("weir.log"),
        audit_path: dir.join("audit.jsonl"),
        state_dir: dir.join("state"),
        weir: None,
        pid: 0,
        t0: Instant::now(),
        stall: None,
        stalls: 0,
        load: Some(load),
        weights: Arc::default(),
        weight_changes: Arc::default(),
        events: Arc::default(),
        signalled: Arc::default(),
        tasks: Vec::new(),
        samples: Vec::new(),
        out,
        audit_offset: 0,
        audit_lines: 0,
        died: None,
        interrupted: None,
        lab,
    };
    s.start_monitors();
    let outcome = async {
        let child = s
            .lab
            .start_weir(&s.cfg.base.weir_bin, &s.config, &s.log)
            .context("starting weir run")?;
        s.t0 = Instant::now();
        s.pid = child.id();
        s.weir = Some(child);
        wait_weir_deciding(s.lab.layout.weir_port(), &s.log).await?;
        eprintln!(
            "soak: weir run (pid {}) is deciding; soaking for {:.1} min, samples in {}",
            s.pid,
            s.cfg.duration.as_secs_f64() / 60.0,
            samples_path.display()
        );
        s.start_event_stream();
        s.soak().await
    }
    .await;
    let (stopped, load) = s.teardown().await;
    outcome?;
    stopped?;
    let planned = cfg.duration.as_secs_f64();
    let mut facts = RunFacts {
        planned_s: planned,
        interval_s: cfg.base.interval_s,
        warmup_s: report::warmup_s(planned, cfg.base.interval_s, weir_recorder::DEFAULT_HISTORY),
        stalls_planned: stall_starts(
            planned,
            cfg.stall_every.as_secs_f64(),
            cfg.stall_for.as_secs_f64(),
        )
        .len(),
        died: s.died.take(),
        interrupted: s.interrupted.take(),
        reads: 0,
        reads_failed: 0,
        stale_reads: 0,
    };
    if let Some(l) = load {
        for p in &l.phases {
            facts.reads += p.reads;
            facts.reads_failed += p.errors;
            facts.stale_reads += p.stale;
        }
    }
    Ok(report::summarise(facts, &s.samples))
}
