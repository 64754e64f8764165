//! The load generator: writes to the primary at a set rate, each row carrying a monotonic
//! sequence number, and reads through HAProxy at a set rate over connections whose lifetime
//! is bounded (so weight changes take effect). Every read measures its latency and its
//! staleness: how long the newest row it did *not* see had already been committed on the
//! primary when the read started (0 when it saw the newest committed row).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mysql_async::Conn;
use mysql_async::prelude::*;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::cluster::{self, APP_USER};
use crate::layout::SERVERS;
use crate::metrics::{LabMetrics, ReadLabel, ServerLabel};

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// HAProxy's read frontend.
    pub read_port: u16,
    /// The primary, for writes.
    pub primary_port: u16,
    /// Reads per second (all readers together).
    pub read_rate: f64,
    /// Writes per second.
    pub write_rate: f64,
    /// Concurrent reader connections.
    pub readers: usize,
    /// A reader reconnects (through HAProxy, so by the current weights) after this long.
    pub conn_lifetime: Duration,
    /// Rows each read aggregates (the read's cost).
    pub read_rows: u32,
    /// A read older than this is stale, seconds.
    pub slo_staleness_s: f64,
    /// A read that takes longer fails as `timeout`.
    pub read_timeout: Duration,
}

/// Reads answered by one server.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServerReads {
    /// Answered reads.
    pub reads: u64,
    /// Of which stale.
    pub stale: u64,
}

/// What happened during one phase of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseStats {
    /// Reads attempted.
    pub reads: u64,
    /// Reads that failed (any error).
    pub errors: u64,
    /// Answered reads whose staleness exceeded the SLO.
    pub stale: u64,
    /// Largest staleness seen, seconds.
    pub max_staleness_s: f64,
    /// Latency of every answered read, milliseconds (summarised, not serialised).
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
    /// Answered reads per server.
    pub by_server: BTreeMap<String, ServerReads>,
    /// Failed reads per kind (`connect`, `query`, `timeout`).
    pub error_kinds: BTreeMap<String, u64>,
    /// Committed writes.
    pub writes: u64,
    /// Failed writes.
    pub write_errors: u64,
}

impl PhaseStats {
    /// Stale reads as a percentage of attempted reads.
    pub fn stale_pct(&self) -> f64 {
        pct(self.stale, self.reads)
    }

    /// The `q` quantile (0..1) of read latency, milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.latencies_ms, q)
    }

    /// Adds another phase's counts into this one.
    pub fn merge(&mut self, o: &PhaseStats) {
        self.reads += o.reads;
        self.errors += o.errors;
        self.stale += o.stale;
        self.max_staleness_s = self.max_staleness_s.max(o.max_staleness_s);
        self.latencies_ms.extend_from_slice(&o.latencies_ms);
        for (k, v) in &o.by_server {
            let e = self.by_server.entry(k.clone()).or_default();
            e.reads += v.reads;
            e.stale += v.stale;
        }
        for (k, v) in &o.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
        self.writes += o.writes;
        self.write_errors += o.write_errors;
    }
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

/// The `q` quantile of `v` (nearest rank), `None` when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

/// Commit times of the rows written so far.
#[derive(Debug)]
pub struct CommitLog {
    /// Sequence number of `times[0]`.
    base: u64,
    times: VecDeque<Instant>,
    /// Instant the log started (the commit time assumed for rows written before it).
    start: Instant,
}

impl CommitLog {
    /// A log whose next row is `next_seq`.
    pub fn new(next_seq: u64, start: Instant) -> CommitLog {
        CommitLog {
            base: next_seq,
            times: VecDeque::new(),
            start,
        }
    }

    /// Records that `seq` committed at `at` (rows must be recorded in order).
    pub fn record(&mut self, seq: u64, at: Instant) {
        let expected = self.base + self.times.len() as u64;
        if seq == expected {
            self.times.push_back(at);
        }
    }

    /// When `seq` committed (the log's start for rows before it; `None` if not yet).
    pub fn committed_at(&self, seq: u64) -> Option<Instant> {
        if seq < self.base {
            return Some(self.start);
        }
        self.times.get((seq - self.base) as usize).copied()
    }

    /// Staleness of a read that started at `started` when the newest committed row was
    /// `latest_at_start`, and that saw rows up to `seen`: how long the first row it missed
    /// had been committed. 0 when it saw everything committed before it started.
    pub fn staleness(&self, seen: u64, latest_at_start: u64, started: Instant) -> Duration {
        if seen >= latest_at_start {
            return Duration::ZERO;
        }
        self.committed_at(seen + 1)
            .map(|t| started.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO)
    }
}

struct Shared {
    cfg: LoadConfig,
    log: Mutex<CommitLog>,
    latest: AtomicU64,
    phase: AtomicUsize,
    stats: Mutex<Vec<PhaseStats>>,
    /// Per second since start: reads per server (SERVERS order), stale, errors.
    timeline: Mutex<Vec<[u32; 5]>>,
    start: Instant,
    metrics: Arc<LabMetrics>,
}

impl Shared {
    fn with_phase(&self, f: impl FnOnce(&mut PhaseStats)) {
        let i = self.phase.load(Ordering::Relaxed);
        if let Ok(mut s) = self.stats.lock()
            && let Some(p) = s.get_mut(i)
        {
            f(p);
        }
    }

    fn second(&self, f: impl FnOnce(&mut [u32; 5])) {
        let sec = self.start.elapsed().as_secs() as usize;
        if let Ok(mut t) = self.timeline.lock() {
            if t.len() <= sec {
                t.resize(sec + 1, [0; 5]);
            }
            f(&mut t[sec]);
        }
    }
}

/// A running load; [`Load::stop`] returns what it measured per phase.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a finished load measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// One entry per phase, in order.
    pub phases: Vec<PhaseStats>,
    /// Per second: reads per server (primary, replica-1, replica-2), stale, errors.
    pub timeline: Vec<[u32; 5]>,
}

impl Load {
    /// Starts writing and reading; statistics go to phase 0 until [`Load::set_phase`].
    pub async fn start(cfg: LoadConfig, phases: usize, metrics: Arc<LabMetrics>) -> Result<Load> {
        let (user, pw) = APP_USER;
        let mut primary = Conn::new(cluster::opts(cfg.primary_port, user, Some(pw)))
            .await
            .context("load generator: connecting to the primary")?;
        let max: Option<u64> = primary
            .query_first("SELECT MAX(seq) FROM lab.ticks")
            .await
            .context("reading lab.ticks")?
            .flatten();
        let latest = max.unwrap_or(0);
        let start = Instant::now();
        let shared = Arc::new(Shared {
            log: Mutex::new(CommitLog::new(latest + 1, start)),
            latest: AtomicU64::new(latest),
            phase: AtomicUsize::new(0),
            stats: Mutex::new(vec![PhaseStats::default(); phases.max(1)]),
            timeline: Mutex::new(Vec::new()),
            start,
            metrics,
            cfg,
        });
        let mut tasks = vec![tokio::spawn(writer(shared.clone(), primary))];
        for i in 0..shared.cfg.readers.max(1) {
            tasks.push(tokio::spawn(reader(shared.clone(), i)));
        }
        Ok(Load { shared, tasks })
    }

    /// Sends statistics to phase `i` from now on.
    pub fn set_phase(&self, i: usize) {
        self.shared.phase.store(i, Ordering::Relaxed);
    }

    /// Stops and returns the statistics.
    pub async fn stop(self) -> LoadReport {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        LoadReport {
            phases: self
                .shared
                .stats
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            timeline: self
                .shared
                .timeline
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default(),
        }
    }
}

async fn writer(shared: Arc<Shared>, mut conn: Conn) {
    let period = Duration::from_secs_f64(1.0 / shared.cfg.write_rate.max(0.1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (user, pw) = APP_USER;
    let mut broken = false;
    loop {
        tick.tick().await;
        if broken {
            match Conn::new(cluster::opts(shared.cfg.primary_port, user, Some(pw))).await {
                Ok(c) => {
                    conn = c;
                    broken = false;
                }
                Err(_) => {
                    shared.with_phase(|p| p.write_errors += 1);
                    continue;
                }
            }
        }
        let seq = shared.latest.load(Ordering::Relaxed) + 1;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let r = conn
            .exec_drop(
                "INSERT INTO lab.ticks (seq, committed_us, payload) VALUES (?, ?, ?)",
                (seq, now_us, format!("row {seq:020}")),
            )
            .await;
        match r {
            Ok(()) => {
                let at = Instant::now();
                if let Ok(mut log) = shared.log.lock() {
                    log.record(seq, at);
                }
                shared.latest.store(seq, Ordering::Relaxed);
                shared.with_phase(|p| p.writes += 1);
            }
            Err(e) => {
                tracing::warn!("write {seq}: {e}");
                shared.with_phase(|p| p.write_errors += 1);
                broken = true;
            }
        }
    }
}

enum ReadError {
    Connect,
    Query,
    Timeout,
}

impl ReadError {
    fn kind(&self) -> &'static str {
        match self {
            ReadError::Connect => "connect",
            ReadError::Query => "query",
            ReadError::Timeout => "timeout",
        }
    }
}

async fn reader(shared: Arc<Shared>, index: usize) {
    let cfg = shared.cfg.clone();
    let period = Duration::from_secs_f64(cfg.readers.max(1) as f64 / cfg.read_rate.max(0.1));
    // Spread the readers over one period so their reads interleave.
    tokio::time::sleep(period.mul_f64(index as f64 / cfg.readers.max(1) as f64)).await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let query = format!(
        "SELECT @@server_id, MAX(seq), COUNT(*), SUM(LENGTH(payload)) \
         FROM (SELECT seq, payload FROM lab.ticks ORDER BY seq DESC LIMIT {}) t",
        cfg.read_rows.max(1)
    );
    let mut conn: Option<(Conn, Instant)> = None;
    loop {
        tick.tick().await;
        if conn
            .as_ref()
            .is_some_and(|(_, born)| born.elapsed() >= cfg.conn_lifetime)
            && let Some((c, _)) = conn.take()
        {
            // Close politely so the server does not count an aborted connection.
            tokio::spawn(async move {
                let _ = c.disconnect().await;
            });
        }
        let started = Instant::now();
        let latest = shared.latest.load(Ordering::Relaxed);
        let result = tokio::time::timeout(cfg.read_timeout, async {
            if conn.is_none() {
                let (user, pw) = APP_USER;
                let c = Conn::new(cluster::opts(cfg.read_port, user, Some(pw)))
                    .await
                    .map_err(|_| ReadError::Connect)?;
                conn = Some((c, Instant::now()));
            }
            let Some((c, _)) = conn.as_mut() else {
                return Err(ReadError::Connect);
            };
            let q_start = Instant::now();
            let row: Option<(u32, Option<u64>, u64, Option<f64>)> =
                c.query_first(&query).await.map_err(|_| ReadError::Query)?;
            let row = row.ok_or(ReadError::Query)?;
            Ok((row.0, row.1.unwrap_or(0), q_start.elapsed()))
        })
        .await
        .unwrap_or(Err(ReadError::Timeout));
        match result {
            Ok((server_id, seen, latency)) => {
                let server = SERVERS
                    .get((server_id as usize).wrapping_sub(1))
                    .copied()
                    .unwrap_or("unknown");
                let staleness = shared
                    .log
                    .lock()
                    .map(|l| l.staleness(seen, latest, started))
                    .unwrap_or_default()
                    .as_secs_f64();
                let stale = staleness > cfg.slo_staleness_s;
                let ms = latency.as_secs_f64() * 1000.0;
                shared.with_phase(|p| {
                    p.reads += 1;
                    p.stale += u64::from(stale);
                    p.max_staleness_s = p.max_staleness_s.max(staleness);
                    p.latencies_ms.push(ms);
                    let e = p.by_server.entry(server.to_string()).or_default();
                    e.reads += 1;
                    e.stale += u64::from(stale);
                });
                let idx = SERVERS.iter().position(|s| *s == server);
                shared.second(|s| {
                    if let Some(i) = idx {
                        s[i] += 1;
                    }
                    s[3] += u32::from(stale);
                });
                let label = ServerLabel {
                    server: server.to_string(),
                };
                shared
                    .metrics
                    .read_duration
                    .get_or_create(&label)
                    .observe(latency.as_secs_f64());
                shared
                    .metrics
                    .reads
                    .get_or_create(&ReadLabel {
                        server: server.to_string(),
                        outcome: if stale { "stale" } else { "ok" }.to_string(),
                    })
                    .inc();
            }
            Err(e) => {
                // A broken or timed-out connection is dropped; the next read reconnects.
                conn = None;
                shared.with_phase(|p| {
                    p.reads += 1;
                    p.errors += 1;
                    *p.error_kinds.entry(e.kind().to_string()).or_default() += 1;
                });
                shared.second(|s| s[4] += 1);
                shared
                    .metrics
                    .reads
                    .get_or_create(&ReadLabel {
                        server: "unknown".into(),
                        outcome: "error".into(),
                    })
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_the_age_of_the_first_missed_row() {
        let t0 = Instant::now();
        let mut log = CommitLog::new(11, t0);
        for (k, seq) in (11..=15).enumerate() {
            log.record(seq, t0 + Duration::from_millis(100 * k as u64));
        }
        assert_eq!(log.committed_at(15), Some(t0 + Duration::from_millis(400)));
        let read_at = t0 + Duration::from_millis(1_000);
        // Saw everything committed before the read started: fresh.
        assert_eq!(log.staleness(15, 15, read_at), Duration::ZERO);
        // Missed 13.. (committed at +200 ms): 800 ms stale.
        assert_eq!(log.staleness(12, 15, read_at), Duration::from_millis(800));
        // Rows committed after the read started do not count against it.
        assert_eq!(log.staleness(12, 12, read_at), Duration::ZERO);
        // Rows from before the log are dated at its start (a lower bound).
        assert_eq!(log.staleness(5, 15, read_at), Duration::from_millis(1_000));
    }

    #[test]
    fn out_of_order_records_are_ignored() {
        let t0 = Instant::now();
        let mut log = CommitLog::new(1, t0);
        log.record(2, t0);
        assert_eq!(log.committed_at(2), None);
        log.record(1, t0);
        assert_eq!(log.committed_at(1), Some(t0));
        assert_eq!(log.committed_at(2), None);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn phases_merge() {
        let mut a = PhaseStats {
            reads: 10,
            stale: 1,
            ..Default::default()
        };
        a.by_server.insert(
            "replica-1".into(),
            ServerReads {
                reads: 10,
                stale: 1,
            },
        );
        let mut b = PhaseStats {
            reads: 30,
            errors: 2,
            ..Default::default()
        };
        b.by_server.insert(
            "replica-1".into(),
            ServerReads {
                reads: 28,
                stale: 0,
            },
        );
        a.merge(&b);
        assert_eq!((a.reads, a.errors, a.stale), (40, 2, 1));
        assert_eq!(a.by_server["replica-1"].reads, 38);
        assert!((a.stale_pct() - 2.5).abs() < 1e-9);
    }
}
