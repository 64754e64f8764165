//! The campaign session: `weir run` as a recorded child, the monitors (HAProxy's weights
//! every 100 ms, the audit log tailed every 100 ms, both stamped with campaign time), the
//! load, and each fault's script. Each script returns what it measured itself (timings,
//! Weir's log and API); the window's reads, weights and audit completeness are judged at the
//! end, over the whole audit log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;
use weir_core::rng::Rng;
use weir_policy::Model;

use super::audit::{self, AuditDecision, AuditLine, Cause, Triple};
use super::cut;
use super::report::{CampaignReport, FaultCheck, FaultResult, verdict};
use super::{CUT_S, CampaignConfig, FaultKind, POLICY};
use crate::cluster;
use crate::experiment::{calibrate, load_config, wait_weir_deciding, weir_config_with};
use crate::faults::{self, CAMPAIGN_CUT, Cut, LagReading, Stall, StallKind};
use crate::lab::Lab;
use crate::layout::{BACKEND, SERVERS};
use crate::load::{Load, LoadReport};
use crate::procs;

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// The operator token of the campaign's `weir run` (loopback only, a throwaway lab).
const API_TOKEN: &str = "weir-lab-campaign";

/// Decisions the restarted, paused `weir run` must hold before the campaign resumes it.
const PAUSED_DECISIONS: usize = 3;

/// A fault's script result, before the window is judged.
struct Pending {
    result: FaultResult,
    /// Load phase of the window (`None`: not exercised).
    phase: Option<usize>,
}

struct Session<'a> {
    lab: &'a mut Lab,
    cfg: &'a CampaignConfig,
    t0: Instant,
    config: PathBuf,
    state_dir: PathBuf,
    audit_path: PathBuf,
    log: PathBuf,
    weir: Option<Child>,
    /// Extra environment for `weir run` (libfaketime during the clock steps).
    weir_env: Vec<(String, String)>,
    /// Byte offset of Weir's log where the current process's output starts.
    log_offset: u64,
    /// Campaign times at which the lab itself changed HAProxy's weights.
    marks: Vec<f64>,
    /// HAProxy's weights whenever they (or their readability) changed.
    samples: Shared<(f64, Option<Triple>)>,
    tail: Shared<AuditLine>,
    tail_offset: Arc<Mutex<u64>>,
    tasks: Vec<JoinHandle<()>>,
    load: Option<Load>,
    phase: usize,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn fmt_w(w: &Triple) -> String {
    format!("{}/{}/{}", w[0], w[1], w[2])
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Reads the complete lines appended to `path` since `offset`; with `finish`, also a last
/// line without its newline (what a crash mid-write leaves).
fn read_new_lines(path: &Path, offset: &mut u64, finish: bool) -> Vec<(String, bool)> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(*offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let mut out: Vec<(String, bool)> = buf[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| (String::from_utf8_lossy(l).into_owned(), true))
        .collect();
    *offset += complete as u64;
    if finish && complete < buf.len() {
        out.push((
            String::from_utf8_lossy(&buf[complete..]).into_owned(),
            false,
        ));
        *offset = (*offset).saturating_add((buf.len() - complete) as u64);
    }
    out
}

impl Session<'_> {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn set_phase(&mut self, i: usize) {
        self.phase = i;
        if let Some(l) = &self.load {
            l.set_phase(i);
        }
    }

    fn haproxy_now(&self) -> Option<(f64, Triple)> {
        let s = self.samples.lock().ok()?;
        let (t, w) = s.last()?;
        w.map(|w| (*t, w))
    }

    /// The decisions read since campaign time `since` (parsed on their own: sequence gaps
    /// at the start of the slice mean nothing here).
    fn decisions_since(&self, since: f64) -> Vec<AuditDecision> {
        let lines: Vec<AuditLine> = self
            .tail
            .lock()
            .map(|t| t.iter().filter(|l| l.t >= since).cloned().collect())
            .unwrap_or_default();
        audit::parse(&lines).decisions
    }

    fn start_monitors(&mut self) {
        let t0 = self.t0;
        let (samples, api) = (self.samples.clone(), self.lab.haproxy().clone());
        self.tasks.push(tokio::spawn(async move {
            let mut last: Option<Option<Triple>> = None;
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
                let now = ok.then_some(cur);
                if last != Some(now) {
                    last = Some(now);
                    if let Ok(mut v) = samples.lock() {
                        v.push((t0.elapsed().as_secs_f64(), now));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        let (tail, offset, path) = (
            self.tail.clone(),
            self.tail_offset.clone(),
            self.audit_path.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            loop {
                let new = match offset.lock() {
                    Ok(mut off) => read_new_lines(&path, &mut off, false),
                    Err(_) => Vec::new(),
                };
                if !new.is_empty() {
                    let t = t0.elapsed().as_secs_f64();
                    if let Ok(mut v) = tail.lock() {
                        v.extend(new.into_iter().map(|(text, terminated)| AuditLine {
                            t,
                            text,
                            terminated,
                        }));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    fn start_weir(&mut self) -> Result<()> {
        if self.weir.is_some() {
            bail!("weir run is already running");
        }
        self.log_offset = file_len(&self.log);
        let child = self.lab.restart_weir(
            &self.cfg.base.weir_bin,
            &self.config,
            &self.log,
            &self.weir_env,
        )?;
        self.weir = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) -> Result<()> {
        wait_weir_deciding(self.lab.layout.weir_port(), &self.log).await
    }

    /// Waits for `decisions` more audit lines, then `offset` seconds, then sends `weir run`
    /// SIGKILL — on a blocking thread, polling every 50 µs. With `at_save`, the offset
    /// counts from the moment the save that follows the last of those decisions has created
    /// its temporary file (a save takes 1–20 ms here: a kill aimed by time alone rarely lands
    /// in it). Returns the pid.
    async fn aim_and_kill(&mut self, decisions: u64, offset: f64, at_save: bool) -> Result<u32> {
        let pid = self.weir.as_ref().context("weir run is not running")?.id();
        let path = self.audit_path.clone();
        let temp = self.state_dir.join(format!(
            ".{}.tmp-{pid}",
            POLICY.snapshot_file().unwrap_or("policy.state")
        ));
        let wait = secs(self.cfg.base.interval_s * 5.0 + 10.0);
        tokio::task::spawn_blocking(move || {
            let mut len = file_len(&path);
            for k in 0..decisions {
                let deadline = Instant::now() + wait;
                let last = k + 1 == decisions;
                loop {
                    let seen = if last && at_save {
                        temp.exists()
                    } else {
                        file_len(&path) != len
                    };
                    if seen || Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                len = file_len(&path);
            }
            std::thread::sleep(secs(offset));
            procs::crash(pid)
        })
        .await??;
        let child = self.weir.take().context("weir run is not running")?;
        self.lab.reap_weir(child)?;
        Ok(pid)
    }

    fn stop_weir(&mut self) -> Result<()> {
        if let Some(child) = self.weir.take() {
            self.lab.stop_weir(child)?;
        }
        Ok(())
    }

    /// Weir's log since the current (or last) process started.
    fn log_of_this_run(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let from = (self.log_offset as usize).min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    async fn api_state(&self) -> Option<serde_json::Value> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .ok()?;
        client
            .get(format!(
                "http://127.0.0.1:{}/api/state",
                self.lab.layout.weir_port()
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// Waits (at most `bound` seconds) for the first applied decision read after `since`
    /// that satisfies `ok` — from the current `weir run` process when `new_run` — with
    /// HAProxy's weights equal to the newest decision's weights in force. Returns the
    /// seconds from `since`, `None` if it did not happen within the bound.
    async fn wait_safe(
        &self,
        since: f64,
        bound: f64,
        new_run: bool,
        ok: impl Fn(&AuditDecision) -> bool,
    ) -> Option<f64> {
        loop {
            let mut ds = self.decisions_since(since);
            if new_run {
                match ds.iter().position(|d| d.seq == 0) {
                    Some(i) => {
                        ds.drain(..i);
                    }
                    None => ds.clear(),
                }
            }
            if let (Some(first), Some(last), Some((t_w, w))) = (
                ds.iter().find(|d| d.applied && ok(d)),
                ds.last(),
                self.haproxy_now(),
            ) && w == last.in_force
            {
                return Some(first.t.max(t_w) - since);
            }
            if self.now() - since > bound {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn settle(&mut self) {
        tokio::time::sleep(secs(self.cfg.settle_s)).await;
    }

    // ---- the faults ----

    async fn prometheus(&mut self) -> Result<FaultResult> {
        let down = self.cfg.prometheus_down_s;
        let mut r = FaultResult {
            fault: format!("Prometheus killed (SIGKILL), restarted after {down:.0} s"),
            ..FaultResult::default()
        };
        let start = self.now();
        self.lab.kill_prometheus()?;
        let killed = self.now();
        tokio::time::sleep(secs(down)).await;
        self.lab.restart_prometheus().await?;
        let back = self.now();
        r.details.push(format!(
            "killed at {killed:.1} s, ready again at {back:.1} s ({:.1} s down)",
            back - killed
        ));
        let bound = self.cfg.max_safe_s + 20.0;
        r.time_to_safe_s = self.wait_safe(back, bound, false, |d| d.deciding()).await;
        tokio::time::sleep(secs(5.0)).await;
        let ds: Vec<AuditDecision> = self
            .decisions_since(start)
            .into_iter()
            .filter(|d| d.t <= back + r.time_to_safe_s.unwrap_or(bound))
            .collect();
        let blind = ds.iter().filter(|d| d.source_error).count();
        let first = |rule: &str| ds.iter().find(|d| d.rules.iter().any(|x| x == rule));
        let hold = first("stale_observation");
        let fail_safe = first("fail_safe");
        let changed: Vec<String> = {
            let mut v: Vec<String> = Vec::new();
            for d in ds.iter().filter(|d| d.t < back) {
                let w = fmt_w(&d.in_force);
                if v.last() != Some(&w) {
                    v.push(w);
                }
            }
            v
        };
        r.what_weir_did = format!(
            "{}; {}; {blind} decisions on a blank observation; weights while Prometheus was down: {}; deciding from Prometheus again {}",
            match hold {
                Some(h) => format!(
                    "held {} (stale_observation) from +{:.1} s",
                    fmt_w(&h.in_force),
                    h.t - killed
                ),
                None => "never held (no stale_observation)".to_string(),
            },
            match fail_safe {
                Some(f) => format!(
                    "fail-safe to {} at +{:.1} s",
                    fmt_w(&f.in_force),
                    f.t - killed
                ),
                None => "no fail-safe".to_string(),
            },
            if changed.is_empty() {
                "none recorded".to_string()
            } else {
                changed.join(" → ")
            },
            match r.time_to_safe_s {
                Some(t) => format!("{t:.1} s after it was ready"),
                None => format!("not within {bound:.0} s of it being ready"),
            }
        );
        Ok(r)
    }

    async fn haproxy(&mut self) -> Result<FaultResult> {
        let mut r = FaultResult {
            fault: "HAProxy killed and restarted from its config file (replica-1 stalled)"
                .to_string(),
            ..FaultResult::default()
        };
        // Before the window: stall replica-1 and let Weir take it out, so that HAProxy's
        // config-file weights (50 on replica-1) differ from Weir's.
        let stall = Stall::start(self.lab.layout.mysql_port(1), StallKind::Ftwrl).await?;
        let stalled = self.now();
        let cut = loop {
            if let Some((t, w)) = self.haproxy_now()
                && w[1] == 0
            {
                break Some(t - stalled);
            }
            if self.now() - stalled > 60.0 {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        r.details.push(match cut {
            Some(c) => {
                format!("replica-1 stalled (FTWRL); Weir set its weight to 0 after {c:.1} s")
            }
            None => "replica-1 stalled (FTWRL); Weir had not set its weight to 0 after 60 s".into(),
        });
        tokio::time::sleep(secs(2.0)).await;
        let phase = self.phase + 1;
        self.set_phase(phase);
        let start = self.now();
        let weir_w = self.haproxy_now().map(|(_, w)| w);
        self.marks.push(self.now());
        self.lab.kill_haproxy()?;
        self.lab.restart_haproxy().await?;
        let back = self.now();
        r.details.push(format!(
            "HAProxy killed at {start:.1} s, answering again at {back:.1} s"
        ));
        let bound = self.cfg.max_safe_s + 20.0;
        r.time_to_safe_s = self.wait_safe(back, bound, false, |_| true).await;
        let reset = {
            let s = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
            s.iter()
                .find(|(t, w)| *t >= start && w.is_some())
                .and_then(|(_, w)| *w)
        };
        tokio::time::sleep(secs(5.0)).await;
        let end = self.now();
        let ds = self.decisions_since(start);
        let failed = ds
            .iter()
            .filter(|d| d.t <= end && d.actuation_failed)
            .count();
        let skipped = ds
            .iter()
            .filter(|d| d.t <= end && !d.applied && !d.actuation_failed)
            .count();
        let noticed = ds.iter().find_map(|d| d.drift.map(|dr| (d.t, dr)));
        r.checks.push(FaultCheck {
            what: match noticed {
                Some((t, (found, own))) => format!(
                    "Weir noticed the drift: its decision at {t:.1} s records found {} (Weir's {})",
                    fmt_w(&found),
                    fmt_w(&own)
                ),
                None => "Weir noticed the drift (no decision in the window records one)".into(),
            },
            pass: noticed.is_some(),
        });
        let restored = self.haproxy_now().map(|(_, w)| w);
        r.what_weir_did = format!(
            "Weir had {}; the restart reset HAProxy to {} (the file's); Weir noticed it ({}) and re-applied {} {}; {failed} failed and {skipped} skipped (back-off) actuations",
            weir_w.map_or("?".into(), |w| fmt_w(&w)),
            reset.map_or("?".into(), |w| fmt_w(&w)),
            if noticed.is_some() {
                "drift in the audit log"
            } else {
                "not recorded"
            },
            restored.map_or("?".into(), |w| fmt_w(&w)),
            match r.time_to_safe_s {
                Some(t) => format!("{t:.1} s after HAProxy answered"),
                None => format!("— not within {bound:.0} s"),
            }
        );
        // After the window: release the stall and let the replica catch up.
        r.window_s = (start, self.now());
        self.set_phase(phase + 1);
        stall.end().await?;
        cluster::wait_caught_up(&self.lab.layout, 1.0, Duration::from_secs(120)).await?;
        Ok(r)
    }

    async fn replica_cut(&mut self) -> Result<FaultResult> {
        let spec = CAMPAIGN_CUT;
        let i = spec.replica;
        let server = SERVERS[i];
        let slo = self.cfg.base.max_staleness_s;
        let fault = format!(
            "{server}'s replication slowed on lo ({}, tc) for {CUT_S:.0} s",
            spec.describe()
        );
        if let Some(why) = faults::cut_unavailable(&self.lab.layout) {
            return Ok(FaultResult::not_exercised(&fault, why));
        }
        let mut r = FaultResult {
            fault,
            ..FaultResult::default()
        };
        // The replica's lag every 250 ms, as Weir sees it (Prometheus) and on the replica,
        // from just before the cut until the window closes.
        let lags: Shared<(f64, LagReading)> = Arc::default();
        let sampler = {
            let (lags, layout, t0) = (lags.clone(), self.lab.layout.clone(), self.t0);
            tokio::spawn(async move {
                let mut conn = None;
                loop {
                    let reading = faults::read_lag(&layout, i, &mut conn).await;
                    if let Ok(mut v) = lags.lock() {
                        v.push((t0.elapsed().as_secs_f64(), reading));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let phase = self.phase + 1;
        let cut = Cut::start(&self.lab.layout, &spec);
        self.set_phase(phase);
        let start = self.now();
        let cut = match cut {
            Ok(c) => c,
            Err(e) => {
                sampler.abort();
                return Err(e);
            }
        };
        tokio::time::sleep(secs(CUT_S)).await;
        // The network is back when the limit is lifted; the drain is part of the recovery.
        let back = self.now();
        let ended = match cut.end().await {
            Ok(e) => e,
            Err(e) => {
                sampler.abort();
                return Err(e);
            }
        };
        let stats = ended.stats;
        let bound = self.cfg.max_safe_s + 20.0;
        r.time_to_safe_s = self
            .wait_safe(back, bound, false, |d| d.in_force[i] > 0)
            .await;
        tokio::time::sleep(secs(5.0)).await;
        let end = self.now();
        sampler.abort();
        r.window_s = (start, end);
        self.set_phase(phase + 1);
        let lags = lags.lock().map(|v| v.clone()).unwrap_or_default();
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        let a = cut::analyse(i, slo, (start, back), &lags, &samples);
        let s1 = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.1}"));
        r.details.push(format!(
            "cut from {start:.1} s to {back:.1} s: {} bytes in {} packets through it, {} dropped; its queue {} {:.2} s after the limit was lifted",
            stats.bytes,
            stats.packets,
            stats.drops,
            if ended.drained { "had drained" } else { "had NOT drained (dropped)" },
            ended.drain_s
        ));
        r.details.push(format!(
            "{server}'s heartbeat lag in Prometheus, each second from the cut: {}",
            cut::per_second(&lags, start, end)
        ));
        let lag_text = format!(
            "{server}'s lag (heartbeat, in Prometheus) {} and peaked at {} s (on the replica {} s); Seconds_Behind_Master peaked at {} s (exporter {} s)",
            match a.over_at {
                Some(t) => format!("passed the {slo} s SLO {:.1} s into the cut", t - start),
                None => format!("never passed the {slo} s SLO"),
            },
            s1(a.worst.prometheus_s),
            s1(a.worst.heartbeat_s),
            s1(a.worst.seconds_behind_master),
            s1(a.worst.prometheus_sbm),
        );
        let off_text = match (a.off_at, a.over_at) {
            (Some((t, w)), _) if t <= start => {
                format!("Weir already gave it no reads ({})", fmt_w(&w))
            }
            (Some((t, w)), Some(over)) => format!(
                "Weir took reads off it ({} → {}) {:.1} s after the lag passed the SLO",
                a.weights_before.map_or("?".into(), |w| fmt_w(&w)),
                fmt_w(&w),
                t - over
            ),
            (Some((t, w)), None) => format!(
                "Weir took reads off it ({}) {:.1} s into the cut",
                fmt_w(&w),
                t - start
            ),
            (None, _) => "Weir never took reads off it".to_string(),
        };
        // Weir's own account: decisions after it first took the replica out that gave it reads
        // although the observation they were made from had its lag past the SLO.
        let seen_over: Vec<String> = match a.off_at {
            Some((off, _)) => self
                .decisions_since(off)
                .iter()
                .filter(|d| d.t <= back && d.in_force[i] > 0)
                .filter_map(|d| {
                    let lag = d.lags.get(i - 1).copied().flatten()?;
                    (lag > slo).then(|| format!("{} at {lag:.1} s", fmt_w(&d.in_force)))
                })
                .collect(),
            None => Vec::new(),
        };
        r.what_weir_did = format!(
            "{lag_text}; {off_text}; {:.1} s with reads on it while it lagged past the SLO after that ({} decision(s) gave it reads with its lag past the SLO in Weir's own observation{}); the lag was back within the SLO {} after the cut ended, and Weir gave it reads again {}",
            a.on_while_over_s,
            seen_over.len(),
            if seen_over.is_empty() {
                String::new()
            } else {
                format!(": {}", seen_over.join(", "))
            },
            a.under_at
                .map_or("never".to_string(), |t| format!("{:.1} s", t - back)),
            match r.time_to_safe_s {
                Some(t) => format!(
                    "{t:.1} s after the cut ended ({})",
                    self.haproxy_now().map_or("?".into(), |(_, w)| fmt_w(&w))
                ),
                None => format!("— not within {bound:.0} s"),
            }
        );
        r.checks.push(FaultCheck {
            what: format!(
                "the cut made {server} lag past the {slo} s SLO (peak {} s in Prometheus)",
                s1(a.worst.prometheus_s)
            ),
            pass: a.over_at.is_some(),
        });
        let reaction = match (a.off_at, a.over_at) {
            (Some((t, _)), Some(over)) => Some(t - over),
            _ => None,
        };
        r.checks.push(FaultCheck {
            what: format!(
                "Weir took reads off {server} within {:.0} s of its lag passing the SLO (after {} s)",
                self.cfg.max_safe_s,
                s1(reaction)
            ),
            pass: reaction.is_some_and(|t| t <= self.cfg.max_safe_s),
        });
        r.checks.push(FaultCheck {
            what: format!(
                "Weir sent no reads back to {server} while it lagged past the SLO ({:.1} s with a weight)",
                a.on_while_over_s
            ),
            pass: a.off_at.is_some() && a.on_while_over_s == 0.0,
        });
        // After the window: let the replica catch up fully before the next fault.
        cluster::wait_caught_up(&self.lab.layout, 1.0, Duration::from_secs(120)).await?;
        Ok(r)
    }

    async fn weir_kills(&mut self) -> Result<FaultResult> {
        let interval = self.cfg.base.interval_s;
        let mut r = FaultResult {
            fault: format!(
                "`weir run` killed (SIGKILL) {} times at random moments, restarted each time",
                self.cfg.kills
            ),
            ..FaultResult::default()
        };
        let mut rng = Rng::new(self.cfg.seed);
        let (mut in_save, mut resumed, mut temp_left) = (0, 0, 0);
        let mut times: Vec<f64> = Vec::new();
        let bound = self.cfg.max_safe_s + 20.0;
        for k in 0..self.cfg.kills {
            // One to three decisions of this process first (each is followed by a save);
            // then half the kills aimed into the save that follows the last of them (within
            // 1 ms of its temporary file appearing), the others anywhere in the interval
            // after the decision.
            let decisions = 1 + rng.below(3) as u64;
            let at_save = k % 2 == 0;
            let offset = if at_save {
                rng.range(0.0, 0.001)
            } else {
                rng.range(0.0, interval)
            };
            let pid = self.aim_and_kill(decisions, offset, at_save).await?;
            let check = audit::check_state_dir(&self.state_dir, POLICY)?;
            let mine = format!("tmp-{pid}");
            let during_save = check.temp_files.iter().any(|f| f.ends_with(&mine));
            in_save += usize::from(during_save);
            temp_left = check.temp_files.len();
            if let Some(e) = &check.torn {
                r.torn_state_files += 1;
                r.details
                    .push(format!("kill {}: state file torn: {e}", k + 1));
            }
            if !check.present {
                r.details
                    .push(format!("kill {}: no state file in the state dir", k + 1));
            }
            self.start_weir()?;
            let back = self.now();
            self.wait_ready().await?;
            let state = self.api_state().await;
            let description = state
                .as_ref()
                .and_then(|s| s["setup"]["description"].as_str())
                .unwrap_or_default()
                .to_string();
            let logged = self
                .log_of_this_run()
                .lines()
                .any(|l| l.contains("weir run: started") && l.contains("restored state"));
            if description.contains("restored state") && logged {
                resumed += 1;
            } else {
                r.details.push(format!(
                    "kill {}: the restarted weir did not say it restored the state (api: {description:?}, log: {logged})",
                    k + 1
                ));
            }
            match self.wait_safe(back, bound, true, |_| true).await {
                Some(t) => times.push(t),
                None => r.details.push(format!(
                    "kill {}: no applied decision matching HAProxy within {bound:.0} s",
                    k + 1
                )),
            }
            r.details.push(format!(
                "kill {} (pid {pid}): +{offset:.4} s after {}{}",
                k + 1,
                if at_save {
                    "its save began"
                } else {
                    "a decision"
                },
                if during_save {
                    ", during a save (its temporary file was left)"
                } else {
                    ""
                }
            ));
        }
        self.pause_survives_a_kill(&mut r).await?;
        let all_safe = times.len() == self.cfg.kills;
        r.time_to_safe_s = if all_safe {
            times
                .iter()
                .copied()
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
        } else {
            None
        };
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        r.what_weir_did = format!(
            "state file loaded after every kill ({} torn); {resumed}/{} restarts resumed from it (\"restored state\" in /api/state and the log); {in_save} kills landed during a save; {} temporary file(s) left in the state dir; first decision matching HAProxy after restart: median {} s, worst {} s",
            r.torn_state_files,
            self.cfg.kills,
            temp_left,
            sorted
                .get(sorted.len() / 2)
                .map_or("—".into(), |t| format!("{t:.1}")),
            sorted.last().map_or("—".into(), |t| format!("{t:.1}")),
        );
        Ok(r)
    }

    /// POSTs `/api/{action}` with the operator token; the status code.
    async fn operator(&self, action: &str) -> Result<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let resp = client
            .post(format!(
                "http://127.0.0.1:{}/api/{action}",
                self.lab.layout.weir_port()
            ))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .with_context(|| format!("POST /api/{action}"))?;
        Ok(resp.status().as_u16())
    }

    /// The operator pauses Weir, then `weir run` is killed (SIGKILL) and restarted: the new
    /// process must come back paused (the controls are saved in the state directory) and
    /// hold HAProxy's weights for [`PAUSED_DECISIONS`] decisions, until the campaign resumes it.
    async fn pause_survives_a_kill(&mut self, r: &mut FaultResult) -> Result<()> {
        let status = self.operator("pause").await?;
        let paused_at = self.now();
        let wait = self.cfg.base.interval_s * 5.0 + 10.0;
        let is_paused = |d: &AuditDecision| d.rules.iter().any(|x| x == "paused");
        while !self.decisions_since(paused_at).iter().any(is_paused) {
            if self.now() - paused_at > wait {
                r.checks.push(FaultCheck {
                    what: format!(
                        "the operator's pause survives a SIGKILL: POST /api/pause answered {status}, and no paused decision followed within {wait:.0} s"
                    ),
                    pass: false,
                });
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let held = self.haproxy_now().map(|(_, w)| w);
        let pid = self.aim_and_kill(1, 0.0, false).await?;
        self.start_weir()?;
        let back = self.now();
        self.wait_ready().await?;
        let api_paused = self
            .api_state()
            .await
            .is_some_and(|s| s["paused"].as_bool() == Some(true));
        let restored_log = self
            .log_of_this_run()
            .lines()
            .any(|l| l.contains("restoring the operator's controls") && l.contains("pause"));
        // The new process's first decisions (its `seq` starts at 0 again).
        let deadline = back + self.cfg.base.interval_s * (PAUSED_DECISIONS as f64 + 5.0) + 10.0;
        let mut first: Vec<AuditDecision> = Vec::new();
        while first.len() < PAUSED_DECISIONS && self.now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ds = self.decisions_since(back);
            first = match ds.iter().position(|d| d.seq == 0) {
                Some(i) => ds[i..].to_vec(),
                None => Vec::new(),
            };
        }
        first.truncate(PAUSED_DECISIONS);
        let all_paused = first.len() == PAUSED_DECISIONS && first.iter().all(is_paused);
        let now = self.haproxy_now().map(|(_, w)| w);
        let weights_held = held.is_some() && now == held;
        let resumed = self.operator("resume").await?;
        r.checks.push(FaultCheck {
            what: format!(
                "the operator's pause survives a SIGKILL (pid {pid}): the restarted weir run {} paused in /api/state, {} the restore, and its first {} decisions were {}paused; HAProxy {} {} → {}; resume answered {resumed}",
                if api_paused { "was" } else { "was not" },
                if restored_log { "logged" } else { "did not log" },
                first.len(),
                if all_paused { "all " } else { "not all " },
                if weights_held { "held" } else { "changed" },
                held.map_or("?".into(), |w| fmt_w(&w)),
                now.map_or("?".into(), |w| fmt_w(&w)),
            ),
            pass: api_paused
                && restored_log
                && all_paused
                && weights_held
                && (200..300).contains(&resumed),
        });
        Ok(())
    }

    async fn clock_steps(&mut self) -> Result<FaultResult> {
        let fault = "System clock of `weir run` stepped +1 h, −2 h, +1 h (libfaketime)";
        let Some(lib) = libfaketime() else {
            return Ok(FaultResult::not_exercised(
                fault,
                "libfaketime not installed (`apt-get install faketime`)".into(),
            ));
        };
        let mut r = FaultResult {
            fault: fault.to_string(),
            ..FaultResult::default()
        };
        let file = self.lab.layout.path("campaign/faketime");
        std::fs::write(&file, "+0\n")?;
        self.stop_weir()?;
        self.weir_env = vec![
            ("LD_PRELOAD".into(), lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            // A system clock step moves CLOCK_REALTIME only.
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
        self.start_weir()?;
        let ready = self.wait_ready().await;
        if ready.is_ok() {
            tokio::time::sleep(secs(3.0)).await;
        }
        let phase = self.phase + 1;
        self.set_phase(phase);
        let start = self.now();
        let hold = 10.0;
        let mut steps = Vec::new();
        if ready.is_ok() {
            for offset in ["+3600", "-3600", "+0"] {
                std::fs::write(&file, format!("{offset}\n"))?;
                steps.push(self.now());
                tokio::time::sleep(secs(hold)).await;
            }
        }
        let last = steps.last().copied().unwrap_or(start);
        let bound = self.cfg.max_safe_s + 20.0;
        r.time_to_safe_s = self.wait_safe(last, bound, false, |d| d.deciding()).await;
        let end = self.now();
        // Decisions per segment, the largest gap between them, and whether the log's
        // timestamps moved (the step took).
        let ds: Vec<AuditDecision> = self
            .decisions_since(start)
            .into_iter()
            .filter(|d| d.t <= end)
            .collect();
        let per_step: Vec<usize> = steps
            .iter()
            .map(|t0| ds.iter().filter(|d| d.t >= *t0 && d.t < t0 + hold).count())
            .collect();
        let gap = ds.windows(2).map(|w| w[1].t - w[0].t).fold(0.0, f64::max);
        let runs = ds
            .iter()
            .map(|d| d.run)
            .collect::<std::collections::BTreeSet<_>>();
        let jumps: Vec<f64> = {
            let stamps: Vec<f64> = self
                .log_of_this_run()
                .lines()
                .filter(|l| l.contains("weir::decision"))
                .filter_map(log_time_s)
                .collect();
            stamps
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|d| d.abs() > 600.0)
                .collect()
        };
        r.details.push(format!(
            "steps at {:?} s; ready: {}",
            steps.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>(),
            ready
                .as_ref()
                .map_or_else(|e| format!("{e:#}"), |()| "yes".into())
        ));
        r.what_weir_did = format!(
            "decided {} times in the {hold:.0} s after each step (interval {:.0} s); largest gap between decisions {gap:.1} s; {} process(es) (no restart); log timestamps jumped {} s (the steps took)",
            per_step
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            self.cfg.base.interval_s,
            runs.len(),
            if jumps.is_empty() {
                "never".to_string()
            } else {
                jumps
                    .iter()
                    .map(|j| format!("{j:+.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        r.window_s = (start, end);
        self.set_phase(phase + 1);
        // Back to the real clock for whatever follows.
        self.stop_weir()?;
        self.weir_env.clear();
        self.start_weir()?;
        self.wait_ready().await?;
        ready?;
        Ok(r)
    }

    async fn disk_full(&mut self) -> Result<FaultResult> {
        let fault = "State directory's disk full (1 MiB tmpfs, filled)";
        if !nix::unistd::geteuid().is_root() {
            return Ok(FaultResult::not_exercised(
                fault,
                "not running as root (mounting a tmpfs needs it)".into(),
            ));
        }
        let name = POLICY
            .snapshot_file()
            .context("the policy saves no state")?;
        let state_file = self.state_dir.join(name);
        // Stop Weir (it saves on the way out), move its state onto a small tmpfs.
        self.stop_weir()?;
        let saved = std::fs::read(&state_file)
            .with_context(|| format!("reading {}", state_file.display()))?;
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(&self.state_dir)
            .output();
        let why = match &mount {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("mount: {e}")),
        };
        if let Some(why) = why {
            self.start_weir()?;
            self.wait_ready().await?;
            return Ok(FaultResult::not_exercised(fault, why));
        }
        let guard = Unmount(self.state_dir.clone());
        let result = self.disk_full_mounted(fault, &state_file, &saved).await;
        // Out of the tmpfs: stop Weir, keep its newest state, unmount, put it back.
        self.stop_weir()?;
        let newest = std::fs::read(&state_file).ok();
        let unmounted = guard.unmount();
        if let Some(bytes) = newest {
            procs::write_atomic(&state_file, &bytes)?;
        }
        self.start_weir()?;
        self.wait_ready().await?;
        let mut r = result?;
        if let Err(e) = unmounted {
            r.details.push(format!("unmount: {e:#}"));
        }
        Ok(r)
    }

    async fn disk_full_mounted(
        &mut self,
        fault: &str,
        state_file: &Path,
        saved: &[u8],
    ) -> Result<FaultResult> {
        let mut r = FaultResult {
            fault: fault.to_string(),
            ..FaultResult::default()
        };
        procs::write_atomic(state_file, saved)?;
        self.start_weir()?;
        self.wait_ready().await?;
        // A save onto the tmpfs first (each save renames a new file in: a new inode).
        let first = inode(state_file);
        let deadline = Instant::now() + Duration::from_secs(20);
        while inode(state_file) == first && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let phase = self.phase + 1;
        self.set_phase(phase);
        let filler = self.state_dir.join("filler");
        let filled = fill(&filler);
        let full_at = self.now();
        let old = std::fs::read(state_file).unwrap_or_default();
        let old_inode = inode(state_file);
        let log_mark = self.log_of_this_run().len();
        r.details.push(format!(
            "filled with {} bytes at {full_at:.1} s",
            filled.unwrap_or(0)
        ));
        let (mut intact, mut checks, mut leftovers) = (true, 0, 0);
        let mut api_error: Option<String> = None;
        let steps = self.cfg.disk_full_s.ceil().max(1.0) as usize;
        for _ in 0..steps {
            tokio::time::sleep(Duration::from_secs(1)).await;
            checks += 1;
            let now = std::fs::read(state_file).unwrap_or_default();
            let loads = Model::load(POLICY, state_file).is_ok();
            if now != old || inode(state_file) != old_inode || !loads {
                intact = false;
            }
            if let Ok(c) = audit::check_state_dir(&self.state_dir, POLICY) {
                leftovers = leftovers.max(c.temp_files.len());
            }
            if api_error.is_none()
                && let Some(s) = self.api_state().await
                && !s["last_error"].is_null()
            {
                api_error = Some(s["last_error"].to_string());
            }
        }
        let freed_at = self.now();
        let log = self.log_of_this_run();
        let during = log.get(log_mark..).unwrap_or_default();
        let save_errors: Vec<&str> = during
            .lines()
            .filter(|l| l.contains("could not save the policy state"))
            .collect();
        let decided = self
            .decisions_since(full_at)
            .iter()
            .filter(|d| d.t <= freed_at)
            .count();
        std::fs::remove_file(&filler).ok();
        let back = self.now();
        let deadline = back + self.cfg.max_safe_s + 20.0;
        r.time_to_safe_s = loop {
            if inode(state_file) != old_inode && Model::load(POLICY, state_file).is_ok() {
                break Some(self.now() - back);
            }
            if self.now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(secs(3.0)).await;
        let example = save_errors
            .first()
            .and_then(|l| l.split("error=").nth(1))
            .unwrap_or("—")
            .trim()
            .to_string();
        r.what_weir_did = format!(
            "kept deciding ({decided} decisions in {:.0} s full); {} save errors in its log ({example}); {}; old state {} ({checks} checks); {leftovers} temporary file(s) left; saves resumed {}",
            freed_at - full_at,
            save_errors.len(),
            match &api_error {
                Some(e) => format!("/api/state last_error: {e}"),
                None => "not reported in /api/state".to_string(),
            },
            if intact {
                "intact: loaded and unchanged"
            } else {
                "CHANGED or unloadable"
            },
            match r.time_to_safe_s {
                Some(t) => format!("{t:.1} s after space was freed"),
                None => "never".to_string(),
            }
        );
        if !intact {
            r.torn_state_files += 1;
        }
        r.window_s = (full_at, self.now());
        self.set_phase(phase + 1);
        Ok(r)
    }
}

/// The inode of `path`: `write_atomic` renames a new file in, so it changes on every save.
fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Seconds since the epoch of a log line's leading RFC 3339 UTC timestamp
/// (`2026-11-30T19:55:15.062235Z ...`, as `weir run` logs).
pub(super) fn log_time_s(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// Where libfaketime's multi-threaded library is (Debian package `faketime`).
fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Fills the file system holding `path` with a file of zeros until it is full; returns how
/// many bytes went in.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut written = 0u64;
    for chunk in [65536usize, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

/// Unmounts the tmpfs on drop if [`Unmount::unmount`] was not called (an error path).
struct Unmount(PathBuf);

impl Unmount {
    fn unmount(self) -> Result<()> {
        let r = umount(&self.0);
        std::mem::forget(self);
        r
    }
}

fn umount(path: &Path) -> Result<()> {
    let out = std::process::Command::new("umount").arg(path).output()?;
    if !out.status.success() {
        // Busy: detach it now, the kernel frees it when the last file closes.
        let lazy = std::process::Command::new("umount")
            .arg("-l")
            .arg(path)
            .output()?;
        if !lazy.status.success() {
            bail!(
                "umount {}: {}",
                path.display(),
                String::from_utf8_lossy(&lazy.stderr).trim()
            );
        }
    }
    Ok(())
}

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Err(e) = umount(&self.0) {
            eprintln!("campaign: {e:#}");
        }
    }
}

/// Runs the campaign on a lab that is up: calibrates the primary (the experiment's
/// calibration, so Weir's config is the experiment's), starts the load and `weir run`,
/// settles, then each fault with a settle after it; judges every window at the end.
pub async fn run(lab: &mut Lab, cfg: &CampaignConfig) -> Result<CampaignReport> {
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
        "campaign: primary budget {:.3} cores ({:.0} reads/s)",
        cal.budget_cores, cal.read_capacity_qps
    );
    let dir = lab.layout.path("campaign");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("weir.toml");
    // The operator token enables /api/pause (the SIGKILL fault pauses Weir before one kill).
    let text = format!(
        "api_token = \"{API_TOKEN}\"\n{}",
        weir_config_with(&lab.layout, &cfg.base, &cal, POLICY.as_str(), &dir, Some(1))
    );
    procs::write_atomic(&config, text.as_bytes())?;
    lab.set_weights([0, 50, 50]).await?;
    let phases = 1 + 2 * cfg.faults.len();
    let load = Load::start(load_config(lab, &cfg.base), phases, lab.metrics.clone()).await?;
    let mut s = Session {
        cfg,
        t0: Instant::now(),
        config,
        state_dir: dir.join("state"),
        audit_path: dir.join("audit.jsonl"),
        log: dir.join("weir.log"),
        weir: None,
        weir_env: Vec::new(),
        log_offset: 0,
        marks: vec![0.0],
        samples: Arc::default(),
        tail: Arc::default(),
        tail_offset: Arc::new(Mutex::new(0)),
        tasks: Vec::new(),
        load: Some(load),
        phase: 0,
        lab,
    };
    s.start_monitors();
    let outcome = campaign(&mut s).await;
    // Tear down in every case: load, Weir, monitors.
    let load = s.load.take();
    let report = match load {
        Some(l) => Some(l.stop().await),
        None => None,
    };
    let stopped = s.stop_weir();
    for t in &s.tasks {
        t.abort();
    }
    let pending = outcome?;
    stopped?;
    if let Ok(mut off) = s.tail_offset.lock() {
        let end = s.t0.elapsed().as_secs_f64();
        let rest = read_new_lines(&s.audit_path, &mut off, true);
        if let Ok(mut v) = s.tail.lock() {
            v.extend(rest.into_iter().map(|(text, terminated)| AuditLine {
                t: end,
                text,
                terminated,
            }));
        }
    }
    let lines = s.tail.lock().map(|t| t.clone()).unwrap_or_default();
    let samples = s.samples.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(judge(
        cfg,
        pending,
        &lines,
        &samples,
        &s.marks,
        report.context("no load report")?,
    ))
}

async fn campaign(s: &mut Session<'_>) -> Result<Vec<Pending>> {
    s.start_weir()?;
    s.wait_ready().await?;
    eprintln!(
        "campaign: weir run is deciding; settling {:.0} s",
        s.cfg.settle_s
    );
    s.settle().await;
    let mut pending = Vec::new();
    for (i, fault) in s.cfg.faults.clone().into_iter().enumerate() {
        let window = 1 + 2 * i;
        eprintln!("campaign: {fault:?} ...");
        // The HAProxy, disk-full, clock and cut scripts open their window themselves, after
        // their preparation (and set `window_s`); the others' window is the whole script.
        if !matches!(
            fault,
            FaultKind::Haproxy | FaultKind::DiskFull | FaultKind::ClockStep | FaultKind::ReplicaCut
        ) {
            s.set_phase(window);
        }
        let start = s.now();
        let mut result = match fault {
            FaultKind::Prometheus => s.prometheus().await?,
            FaultKind::Haproxy => s.haproxy().await?,
            FaultKind::WeirKill => s.weir_kills().await?,
            FaultKind::DiskFull => s.disk_full().await?,
            FaultKind::ClockStep => s.clock_steps().await?,
            FaultKind::ReplicaCut => s.replica_cut().await?,
        };
        let ran = result.not_exercised.is_none();
        if result.window_s == (0.0, 0.0) {
            result.window_s = (start, s.now());
        }
        s.set_phase(window + 1);
        eprintln!(
            "campaign: {fault:?}: {} (time to safe {:?})",
            result.what_weir_did, result.time_to_safe_s
        );
        pending.push(Pending {
            result,
            phase: ran.then_some(window),
        });
        s.settle().await;
    }
    Ok(pending)
}

/// Judges every window over the whole audit log and weight history.
fn judge(
    cfg: &CampaignConfig,
    pending: Vec<Pending>,
    lines: &[AuditLine],
    samples: &[(f64, Option<Triple>)],
    marks: &[f64],
    load: LoadReport,
) -> CampaignReport {
    let whole = audit::parse(lines);
    let mut changes: Vec<(f64, Triple)> = Vec::new();
    for (t, w) in samples {
        if let Some(w) = w
            && changes.last().is_none_or(|(_, p)| p != w)
        {
            changes.push((*t, *w));
        }
    }
    let causes = audit::attribute(&changes, &whole, marks);
    let mut faults = Vec::new();
    for p in pending {
        let mut r = p.result;
        let Some(phase) = p.phase else {
            faults.push(r);
            continue;
        };
        let (a, b) = r.window_s;
        let inside = |t: f64| t >= a && t <= b;
        if let Some(st) = load.phases.get(phase) {
            r.reads = st.reads;
            r.reads_failed = st.errors;
            r.stale_reads = st.stale;
        }
        r.weights_written = changes
            .iter()
            .zip(&causes)
            .filter(|((t, _), c)| inside(*t) && **c == Cause::Weir)
            .count() as u64;
        let bad_samples: Vec<String> = samples
            .iter()
            .filter(|(t, w)| inside(*t) && w.is_some_and(|w| !audit::valid_haproxy(&w)))
            .map(|(t, w)| format!("HAProxy weights {w:?} at {t:.1} s"))
            .collect();
        let bad_decisions: Vec<String> = whole
            .invalid_weights
            .iter()
            .filter(|p| inside(p.t))
            .map(|p| p.what.clone())
            .collect();
        r.weights_valid = bad_samples.is_empty() && bad_decisions.is_empty();
        r.details.extend(bad_samples);
        r.details.extend(bad_decisions);
        let unexplained: Vec<String> = changes
            .iter()
            .zip(&causes)
            .filter(|((t, _), c)| inside(*t) && **c == Cause::Unexplained)
            .map(|((t, w), _)| {
                format!(
                    "HAProxy changed to {} at {t:.1} s: no applied decision in the audit log within {} s",
                    fmt_w(w),
                    audit::MATCH_WINDOW_S
                )
            })
            .collect();
        let problems: Vec<String> = whole
            .problems
            .iter()
            .filter(|p| inside(p.t))
            .map(|p| format!("audit log {}", p.what))
            .collect();
        r.audit_complete = unexplained.is_empty() && problems.is_empty();
        r.details.extend(unexplained);
        r.details.extend(problems);
        faults.push(r);
    }
    let audit_problems: Vec<String> = whole.problems.iter().map(|p| p.what.clone()).collect();
    let (verdict, passed) = verdict(&faults, &audit_problems, cfg.max_safe_s);
    CampaignReport {
        faults,
        max_safe_s: cfg.max_safe_s,
        audit_lines: lines.len(),
        audit_decisions: whole.decisions.len(),
        audit_problems,
        verdict,
        passed,
        settings: serde_json::json!({
            "policy": POLICY.as_str(),
            "faults": cfg.faults,
            "seed": cfg.seed,
            "kills": cfg.kills,
            "prometheus_down_s": cfg.prometheus_down_s,
            "settle_s": cfg.settle_s,
            "disk_full_s": cfg.disk_full_s,
            "replica_cut": CAMPAIGN_CUT,
            "replica_cut_s": CUT_S,
            "interval_s": cfg.base.interval_s,
            "read_rate": cfg.base.read_rate,
            "write_rate": cfg.base.write_rate,
            "max_staleness_s": cfg.base.max_staleness_s,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_to_epoch_seconds() {
        let t = log_time_s("2026-11-30T19:55:15.062235Z  INFO weir::decision: t=0s")
            .expect("a timestamp");
        // date -u -d 2026-11-30T19:55:15Z +%s
        assert!((t - 1_796_068_515.062_235).abs() < 1e-3, "{t}");
        assert_eq!(log_time_s("1970-01-01T00:00:01Z x"), Some(1.0));
        assert_eq!(log_time_s("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(log_time_s("not a time"), None);
    }
}
