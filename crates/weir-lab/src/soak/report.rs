//! The soak's pure parts: what one sample holds, parsing what is sampled (`/proc/<pid>/status`,
//! weir's `/metrics`, the live event stream), and the summary, verdict and Markdown table
//! computed from the list of samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The RSS slope bound over the second half of the run, MB per hour. At one decision per
/// second, 1 MB/h is ~290 bytes per decision: less than one decision record (a few KB as
/// JSON), so anything kept per decision — a record, a string, a per-replica vector — shows
/// above it. Once every bounded buffer is full (see [`warmup_s`]) weir has nothing left that
/// may grow with time, and allocator noise (glibc arenas, two runtime workers) moves RSS by a
/// few hundred KB, which over the ≥ [`MIN_SLOPE_SPAN_S`] the slope is fitted on stays well
/// below the bound.
pub const RSS_SLOPE_MAX_MB_PER_H: f64 = 1.0;
/// End RSS may be at most warm-up RSS × this + [`RSS_SLACK_MB`].
pub const RSS_GROWTH_FACTOR: f64 = 1.25;
/// See [`RSS_GROWTH_FACTOR`], MB.
pub const RSS_SLACK_MB: f64 = 4.0;
/// Open file descriptors at the end may exceed those at warm-up by this many (an HTTP
/// connection being accepted or closed while the sample is taken).
pub const FD_SLACK: u64 = 2;
/// Share of the expected control intervals weir must have decided.
pub const MIN_DECIDED_SHARE: f64 = 0.9;
/// The RSS slope is judged only when the second half of the run is at least this long,
/// seconds (shorter, allocator noise dominates: 200 KB in 2 minutes is 6 MB/h).
pub const MIN_SLOPE_SPAN_S: f64 = 1800.0;
/// With `save_every = 1` the learned state is written after every decision; a state file
/// older than this many intervals (and at least [`STATE_AGE_MIN_S`]) at a sample means saves
/// stopped.
pub const STATE_AGE_INTERVALS: f64 = 10.0;
/// See [`STATE_AGE_INTERVALS`], seconds.
pub const STATE_AGE_MIN_S: f64 = 10.0;

/// Metric families whose series count legitimately varies while weir runs: each exports a
/// sample only while its value is known (`weir-recorder`'s metrics: "absent while
/// unknown", never exported as 0), so a replica whose lag is momentarily unknown, or a
/// primary CPU Prometheus did not answer for, removes one series until it is known again.
/// Each is bounded by design (one series per configured replica, or one). For these the
/// check is that no sample after the warm-up shows more series than the most seen up to
/// the warm-up; every other family must have exactly its warm-up count at the end.
pub const VARYING_FAMILIES: [&str; 3] = [
    "weir_replica_lag_seconds",
    "weir_primary_cpu_ratio",
    "weir_reward",
];

/// One sample, taken from outside the `weir run` process; written as one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since `weir run` was started.
    pub t_s: f64,
    /// Wall clock, seconds since the epoch (to line samples up with weir's log).
    pub unix_s: f64,
    /// Weir's pid.
    pub pid: u32,
    /// Whether the process was still running.
    pub alive: bool,
    /// `VmRSS` of `/proc/<pid>/status`, KB.
    pub rss_kb: Option<u64>,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: Option<u64>,
    /// `Threads` of `/proc/<pid>/status`.
    pub threads: Option<u64>,
    /// CPU time used so far (user + system), seconds.
    pub cpu_s: Option<f64>,
    /// Sample lines of weir's `/metrics` per metric family.
    pub series: Option<BTreeMap<String, usize>>,
    /// Their total.
    pub series_total: Option<usize>,
    /// Decisions made so far (`/api/state`'s `decisions`, else `weir_decisions_total`).
    pub decisions: Option<u64>,
    /// `/api/state`'s `last_error`, as JSON, when there is one.
    pub last_error: Option<String>,
    /// Lines in the audit log so far.
    pub audit_lines: u64,
    /// Size of the audit log, bytes.
    pub audit_log_bytes: u64,
    /// Size of weir's log (its stdout and stderr), bytes.
    pub weir_log_bytes: u64,
    /// Bytes in the state directory (all files, recursively).
    pub state_dir_bytes: u64,
    /// Files in the state directory.
    pub state_dir_files: u64,
    /// Seconds since the learned-state file was last written (`None`: no file).
    pub state_age_s: Option<f64>,
    /// HAProxy's weights (primary, replica-1, replica-2) at the sample.
    pub weights: Option<[u32; 3]>,
    /// Changes of HAProxy's weights seen so far (polled every 250 ms).
    pub weight_changes: u64,
    /// `decision` events received so far on one `/api/events` stream held open all along.
    pub events: u64,
    /// Stalls of replica-1 started so far.
    pub stalls: usize,
    /// Whether replica-1 was stalled at the sample.
    pub stalled: bool,
    /// What could not be read at this sample.
    pub errors: Vec<String>,
}

/// `VmRSS` (KB) and `Threads` of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmRSS:"), field("Threads:"))
}

/// Sample lines per metric family of an OpenMetrics (or Prometheus text) exposition: a
/// sample belongs to the family of the `# TYPE` line before it when its name is the
/// family's or the family's plus a suffix (`_total`, `_bucket`, `_sum`, `_count`,
/// `_created`), else to a family of its own name. Families declared without a sample are
/// listed with 0.
pub fn series_by_family(text: &str) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE")
                && let Some(name) = words.next()
            {
                current = Some(name);
                out.entry(name.to_string()).or_insert(0);
            }
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        let family = match current {
            Some(f) if name == f || name.strip_prefix(f).is_some_and(|s| s.starts_with('_')) => f,
            _ => name,
        };
        *out.entry(family.to_string()).or_insert(0) += 1;
    }
    out
}

/// The value of the label-less sample `name` in an exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Counts `decision` events in a server-sent event stream fed in arbitrary chunks.
#[derive(Debug, Default)]
pub struct SseCounter {
    pending: String,
    /// `decision` events seen.
    pub decisions: u64,
    /// `lagged` events seen (the server dropped events for a slow reader).
    pub lagged: u64,
}

impl SseCounter {
    /// Feeds bytes of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.pending
            .push_str(&String::from_utf8_lossy(chunk).replace("\r\n", "\n"));
        while let Some(end) = self.pending.find("\n\n") {
            let event: String = self.pending.drain(..end + 2).collect();
            match event
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim)
            {
                Some("decision") => self.decisions += 1,
                Some("lagged") => self.lagged += 1,
                _ => {}
            }
        }
    }
}

/// Least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// When the warm-up ends, seconds into a run of `planned_s` with control interval
/// `interval_s`: 5 minutes or 10% of the run, whichever is first — but not before weir's
/// recorder has filled its history ring (`history` decisions; until then RSS grows by one
/// record per interval by design, which a leak check must not count) — and at most half the
/// run, so the second half is left to judge.
pub fn warmup_s(planned_s: f64, interval_s: f64, history: usize) -> f64 {
    let base = (planned_s * 0.1).min(300.0);
    let ring_full = history as f64 * interval_s;
    base.max(ring_full).min(planned_s / 2.0)
}

/// What the run itself knew, beside the samples.
#[derive(Debug, Clone, Serialize)]
pub struct RunFacts {
    /// Planned length of the run, seconds.
    pub planned_s: f64,
    /// Weir's control interval, seconds.
    pub interval_s: f64,
    /// End of the warm-up, seconds (see [`warmup_s`]).
    pub warmup_s: f64,
    /// Stalls planned to fit in the run.
    pub stalls_planned: usize,
    /// Weir exited on its own: when (seconds), how, and its log's tail.
    pub died: Option<String>,
    /// The soak was stopped early (a signal): why.
    pub interrupted: Option<String>,
    /// Reads the load generator attempted over the run.
    pub reads: u64,
    /// Of which failed.
    pub reads_failed: u64,
    /// Of which answered with data older than the staleness SLO.
    pub stale_reads: u64,
}

/// Warm-up, end and max of one quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Span {
    /// At the warm-up sample.
    pub warmup: Option<f64>,
    /// At the last sample.
    pub end: Option<f64>,
    /// Largest over the run.
    pub max: Option<f64>,
}

/// A metric family whose series count differed after the warm-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyChange {
    /// The family.
    pub family: String,
    /// Series at the warm-up.
    pub warmup: usize,
    /// At the end.
    pub end: usize,
    /// Fewest and most after the warm-up.
    pub min_after: usize,
    /// See `min_after`.
    pub max_after: usize,
    /// Whether the family is one of [`VARYING_FAMILIES`].
    pub may_vary: bool,
}

/// Disk use of one thing weir writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskUse {
    /// What.
    pub what: String,
    /// Bytes at the warm-up sample.
    pub warmup_bytes: u64,
    /// Bytes at the end.
    pub end_bytes: u64,
    /// Growth from the warm-up to the end, bytes per hour.
    pub per_hour: f64,
}

/// The soak, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What the run knew.
    pub facts: RunFacts,
    /// Seconds covered by samples (weir start to the last sample).
    pub ran_s: f64,
    /// Samples taken.
    pub samples: usize,
    /// Time of the warm-up sample, seconds (`None`: the run ended before it).
    pub warmup_sample_s: Option<f64>,
    /// Decisions at the last sample.
    pub decisions: Option<u64>,
    /// Control intervals from weir's start to the last sample.
    pub expected_decisions: u64,
    /// `decisions / expected_decisions`.
    pub decided_share: Option<f64>,
    /// Fewest decisions per expected interval between two consecutive samples.
    pub worst_period_share: Option<f64>,
    /// Stalls started.
    pub stalls: usize,
    /// HAProxy weight changes seen.
    pub weight_changes: u64,
    /// Live `decision` events received.
    pub events: u64,
    /// RSS, MB.
    pub rss_mb: Span,
    /// Least-squares RSS slope over the second half, MB per hour (`None`: fewer than two
    /// samples there).
    pub rss_slope_mb_per_h: Option<f64>,
    /// The window the slope was fitted on, seconds.
    pub slope_window_s: (f64, f64),
    /// Open file descriptors.
    pub fds: Span,
    /// Threads.
    pub threads: Span,
    /// Series on `/metrics`, all families.
    pub series_total: Span,
    /// Families whose count differed after the warm-up.
    pub families_changed: Vec<FamilyChange>,
    /// Files in the state directory.
    pub state_dir_files: Span,
    /// Oldest the state file was at a sample after the warm-up, seconds.
    pub max_state_age_s: Option<f64>,
    /// The state directory, the audit log and weir's log.
    pub disk: Vec<DiskUse>,
    /// CPU seconds weir used per decision over the run.
    pub cpu_ms_per_decision: Option<f64>,
    /// Samples at which `/api/state` reported a last error.
    pub samples_with_error: usize,
    /// Pass/fail lines.
    pub verdict: Vec<String>,
    /// Whether every judged check passed.
    pub passed: bool,
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn span(samples: &[Sample], warm: Option<&Sample>, f: impl Fn(&Sample) -> Option<f64>) -> Span {
    Span {
        warmup: warm.and_then(&f),
        end: samples.iter().rev().find_map(&f),
        max: samples.iter().filter_map(&f).reduce(f64::max),
    }
}

fn per_hour(a: u64, b: u64, dt_s: f64) -> f64 {
    if dt_s <= 0.0 {
        0.0
    } else {
        (b as f64 - a as f64) / dt_s * 3600.0
    }
}

/// Summarises the samples of a run and judges it. Only samples of a live weir count for
/// the process measures.
pub fn summarise(facts: RunFacts, samples: &[Sample]) -> Summary {
    let live: Vec<&Sample> = samples.iter().filter(|s| s.alive).collect();
    let live_owned: Vec<Sample> = live.iter().map(|s| (*s).clone()).collect();
    let warm = live.iter().copied().find(|s| s.t_s >= facts.warmup_s);
    let last = samples.last();
    let ran_s = last.map_or(0.0, |s| s.t_s);
    let decisions = samples.iter().rev().find_map(|s| s.decisions);
    let expected = (ran_s / facts.interval_s).floor().max(0.0) as u64;
    let decided_share = decisions.map(|d| {
        if expected == 0 {
            1.0
        } else {
            d as f64 / expected as f64
        }
    });
    let with_decisions: Vec<(f64, u64)> = samples
        .iter()
        .filter_map(|s| s.decisions.map(|d| (s.t_s, d)))
        .collect();
    let worst_period_share = with_decisions
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 >= facts.interval_s)
        .map(|w| (w[1].1.saturating_sub(w[0].1)) as f64 / ((w[1].0 - w[0].0) / facts.interval_s))
        .reduce(f64::min);

    let rss_mb = span(&live_owned, warm, |s| s.rss_kb.map(mb));
    let half = ran_s / 2.0;
    let points: Vec<(f64, f64)> = live
        .iter()
        .filter(|s| s.t_s >= half)
        .filter_map(|s| s.rss_kb.map(|kb| (s.t_s / 3600.0, mb(kb))))
        .collect();
    let rss_slope = slope(&points);
    let slope_window_s = (
        points.first().map_or(half, |p| p.0 * 3600.0),
        points.last().map_or(ran_s, |p| p.0 * 3600.0),
    );
    let fds = span(&live_owned, warm, |s| s.fds.map(|v| v as f64));
    let threads = span(&live_owned, warm, |s| s.threads.map(|v| v as f64));
    let series_total = span(&live_owned, warm, |s| s.series_total.map(|v| v as f64));
    let state_dir_files = span(samples, warm, |s| Some(s.state_dir_files as f64));

    // Families whose count moved after the warm-up, and the cardinality check.
    let mut families_changed = Vec::new();
    let mut series_ok = None;
    let mut series_detail = String::new();
    if let (Some(w), Some(ws)) = (warm, warm.and_then(|w| w.series.as_ref())) {
        let after: Vec<&BTreeMap<String, usize>> = live
            .iter()
            .filter(|s| s.t_s > w.t_s)
            .filter_map(|s| s.series.as_ref())
            .collect();
        let end = after.last().copied().unwrap_or(ws);
        let before_max = |f: &str| {
            live.iter()
                .filter(|s| s.t_s <= w.t_s)
                .filter_map(|s| s.series.as_ref().and_then(|m| m.get(f).copied()))
                .max()
                .unwrap_or(0)
        };
        let mut names: Vec<&String> = ws
            .keys()
            .chain(after.iter().flat_map(|m| m.keys()))
            .collect();
        names.sort();
        names.dedup();
        let (mut fixed_warm, mut fixed_end) = (0usize, 0usize);
        let mut problems = Vec::new();
        for name in names {
            let may_vary = VARYING_FAMILIES.contains(&name.as_str());
            let at_warm = ws.get(name).copied().unwrap_or(0);
            let at_end = end.get(name).copied().unwrap_or(0);
            let counts: Vec<usize> = after
                .iter()
                .map(|m| m.get(name).copied().unwrap_or(0))
                .collect();
            let min_after = counts.iter().copied().min().unwrap_or(at_warm);
            let max_after = counts.iter().copied().max().unwrap_or(at_warm);
            if may_vary {
                let bound = before_max(name);
                if max_after > bound {
                    problems.push(format!(
                        "{name} reached {max_after} series (at most {bound} up to the warm-up)"
                    ));
                }
            } else {
                fixed_warm += at_warm;
                fixed_end += at_end;
                if at_end != at_warm {
                    problems.push(format!("{name} {at_warm} → {at_end}"));
                }
            }
            if min_after != at_warm || max_after != at_warm {
                families_changed.push(FamilyChange {
                    family: name.clone(),
                    warmup: at_warm,
                    end: at_end,
                    min_after,
                    max_after,
                    may_vary,
                });
            }
        }
        series_ok = Some(problems.is_empty() && fixed_warm == fixed_end);
        series_detail = if problems.is_empty() {
            format!("{fixed_warm} → {fixed_end} series in fixed families")
        } else {
            problems.join("; ")
        };
    }

    let max_state_age_s = samples
        .iter()
        .filter(|s| s.t_s >= facts.warmup_s && s.alive)
        .filter_map(|s| s.state_age_s)
        .reduce(f64::max);
    let disk = match (warm, last) {
        (Some(w), Some(e)) => {
            let dt = e.t_s - w.t_s;
            vec![
                DiskUse {
                    what: "state dir".into(),
                    warmup_bytes: w.state_dir_bytes,
                    end_bytes: e.state_dir_bytes,
                    per_hour: per_hour(w.state_dir_bytes, e.state_dir_bytes, dt),
                },
                DiskUse {
                    what: "audit log".into(),
                    warmup_bytes: w.audit_log_bytes,
                    end_bytes: e.audit_log_bytes,
                    per_hour: per_hour(w.audit_log_bytes, e.audit_log_bytes, dt),
                },
                DiskUse {
                    what: "weir log".into(),
                    warmup_bytes: w.weir_log_bytes,
                    end_bytes: e.weir_log_bytes,
                    per_hour: per_hour(w.weir_log_bytes, e.weir_log_bytes, dt),
                },
            ]
        }
        _ => Vec::new(),
    };
    let cpu_ms_per_decision = match (live.iter().rev().find_map(|s| s.cpu_s), decisions) {
        (Some(c), Some(d)) if d > 0 => Some(c * 1000.0 / d as f64),
        _ => None,
    };
    let stalls = samples.iter().map(|s| s.stalls).max().unwrap_or(0);
    let weight_changes = samples.iter().map(|s| s.weight_changes).max().unwrap_or(0);
    let events = samples.iter().map(|s| s.events).max().unwrap_or(0);
    let samples_with_error = samples.iter().filter(|s| s.last_error.is_some()).count();

    // The verdict.
    let mut verdict = Vec::new();
    let mut passed = true;
    let mut judge = |ok: bool, text: String| {
        passed &= ok;
        verdict.push(format!("{} {text}", if ok { "PASS" } else { "FAIL" }));
    };
    match &facts.died {
        None => judge(
            true,
            format!("weir run stayed up for {:.1} min", ran_s / 60.0),
        ),
        Some(how) => judge(false, format!("weir run died: {how}")),
    }
    if let Some(why) = &facts.interrupted {
        judge(
            false,
            format!(
                "the soak ran its full length: stopped at {:.1} of {:.1} min ({why})",
                ran_s / 60.0,
                facts.planned_s / 60.0
            ),
        );
    }
    judge(
        decided_share.is_some_and(|s| s >= MIN_DECIDED_SHARE),
        format!(
            "decided {} of {expected} expected intervals ({}; at least {:.0}%)",
            decisions.map_or("?".into(), |d| d.to_string()),
            decided_share.map_or("?".into(), |s| format!("{:.1}%", s * 100.0)),
            MIN_DECIDED_SHARE * 100.0
        ),
    );
    judge(
        stalls >= 1 && weight_changes >= stalls as u64,
        format!(
            "not a constant steady state: {stalls} of {} planned stalls, {weight_changes} HAProxy weight changes (at least one per stall), {events} live events",
            facts.stalls_planned
        ),
    );
    if warm.is_none() {
        judge(
            false,
            format!(
                "a sample after the warm-up ({:.1} min) to compare with",
                facts.warmup_s / 60.0
            ),
        );
    }
    let f = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}"));
    if warm.is_some() {
        judge(
            matches!((fds.warmup, fds.end), (Some(w), Some(e)) if e <= w + FD_SLACK as f64),
            format!(
                "open fds {} at warm-up → {} at end (max {}; at most +{FD_SLACK})",
                f(fds.warmup),
                f(fds.end),
                f(fds.max)
            ),
        );
        judge(
            series_ok == Some(true),
            format!(
                "/metrics cardinality: {} series at warm-up → {} at end ({})",
                f(series_total.warmup),
                f(series_total.end),
                if series_detail.is_empty() {
                    "no /metrics at the warm-up sample".to_string()
                } else {
                    series_detail
                }
            ),
        );
        let span_s = slope_window_s.1 - slope_window_s.0;
        match rss_slope {
            Some(s) if span_s >= MIN_SLOPE_SPAN_S => judge(
                s < RSS_SLOPE_MAX_MB_PER_H,
                format!(
                    "RSS slope over the second half ({:.0}–{:.0} min): {s:+.3} MB/h (below {RSS_SLOPE_MAX_MB_PER_H} MB/h)",
                    slope_window_s.0 / 60.0,
                    slope_window_s.1 / 60.0
                ),
            ),
            s => verdict.push(format!(
                "SKIP RSS slope over the second half: {} over {:.1} min, not judged under {:.0} min",
                s.map_or("?".into(), |s| format!("{s:+.3} MB/h")),
                span_s / 60.0,
                MIN_SLOPE_SPAN_S / 60.0
            )),
        }
        let mut judge = |ok: bool, text: String| {
            passed &= ok;
            verdict.push(format!("{} {text}", if ok { "PASS" } else { "FAIL" }));
        };
        let bound = rss_mb.warmup.map(|w| w * RSS_GROWTH_FACTOR + RSS_SLACK_MB);
        judge(
            matches!((rss_mb.end, bound), (Some(e), Some(b)) if e <= b),
            format!(
                "RSS growth: {} MB at warm-up → {} MB at end (max {}; at most {} MB = ×{RSS_GROWTH_FACTOR} + {RSS_SLACK_MB} MB)",
                fmt1(rss_mb.warmup),
                fmt1(rss_mb.end),
                fmt1(rss_mb.max),
                fmt1(bound)
            ),
        );
        judge(
            matches!((state_dir_files.warmup, state_dir_files.end), (Some(w), Some(e)) if e <= w),
            format!(
                "state dir files {} at warm-up → {} at end (no temporary files left behind)",
                f(state_dir_files.warmup),
                f(state_dir_files.end)
            ),
        );
        let age_bound = (facts.interval_s * STATE_AGE_INTERVALS).max(STATE_AGE_MIN_S);
        judge(
            max_state_age_s.is_some_and(|a| a <= age_bound),
            format!(
                "learned state saved throughout: oldest state file at a sample {} s (at most {age_bound:.0} s)",
                fmt1(max_state_age_s)
            ),
        );
    }

    Summary {
        ran_s,
        samples: samples.len(),
        warmup_sample_s: warm.map(|w| w.t_s),
        decisions,
        expected_decisions: expected,
        decided_share,
        worst_period_share,
        stalls,
        weight_changes,
        events,
        rss_mb,
        rss_slope_mb_per_h: rss_slope,
        slope_window_s,
        fds,
        threads,
        series_total,
        families_changed,
        state_dir_files,
        max_state_age_s,
        disk,
        cpu_ms_per_decision,
        samples_with_error,
        verdict,
        passed,
        facts,
    }
}

fn fmt1(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1}"))
}

fn fmt0(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.0}"))
}

/// Bytes for people: B, KB, MB or GB.
pub fn bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn status(summary: &Summary, prefix: &str) -> &'static str {
    match summary.verdict.iter().find(|l| {
        l.split_once(' ')
            .is_some_and(|(_, t)| t.starts_with(prefix))
    }) {
        Some(l) if l.starts_with("PASS") => "pass",
        Some(l) if l.starts_with("FAIL") => "**FAIL**",
        Some(_) => "not judged",
        None => "reported",
    }
}

/// The Markdown table: one row per measure, its value at the warm-up and at the end, the
/// largest value or rate, and whether the check passed.
pub fn table(s: &Summary) -> String {
    let warm = s
        .warmup_sample_s
        .map_or("—".to_string(), |t| format!("{:.1} min", t / 60.0));
    let mut t = format!(
        "| measure | at warm-up ({warm}) | at end ({:.1} min) | max / rate | check |\n|---|---:|---:|---|---|\n",
        s.ran_s / 60.0
    );
    let mut row = |m: &str, w: String, e: String, r: String, c: &str| {
        t.push_str(&format!("| {m} | {w} | {e} | {r} | {c} |\n"));
    };
    row(
        "duration",
        "—".into(),
        format!("{:.1} min", s.ran_s / 60.0),
        format!(
            "planned {:.1} min, {} samples",
            s.facts.planned_s / 60.0,
            s.samples
        ),
        if s.facts.died.is_some() {
            "**FAIL** (weir died)"
        } else if s.facts.interrupted.is_some() {
            "**FAIL** (interrupted)"
        } else {
            "pass"
        },
    );
    row(
        "decisions",
        "—".into(),
        s.decisions.map_or("?".into(), |d| d.to_string()),
        format!(
            "{} of {} expected; worst period {}",
            s.decided_share
                .map_or("?".into(), |v| format!("{:.1}%", v * 100.0)),
            s.expected_decisions,
            s.worst_period_share
                .map_or("?".into(), |v| format!("{:.0}%", v * 100.0))
        ),
        status(s, "decided"),
    );
    row(
        "stalls / weight changes / live events",
        "—".into(),
        format!("{} / {} / {}", s.stalls, s.weight_changes, s.events),
        format!("{} stalls planned", s.facts.stalls_planned),
        status(s, "not a constant"),
    );
    row(
        "RSS (MB)",
        fmt1(s.rss_mb.warmup),
        fmt1(s.rss_mb.end),
        format!(
            "max {}; slope {} over {:.0}–{:.0} min",
            fmt1(s.rss_mb.max),
            s.rss_slope_mb_per_h
                .map_or("?".into(), |v| format!("{v:+.3} MB/h")),
            s.slope_window_s.0 / 60.0,
            s.slope_window_s.1 / 60.0
        ),
        match (status(s, "RSS slope"), status(s, "RSS growth")) {
            ("pass", "pass") => "pass",
            ("not judged", "pass") => "pass (slope not judged)",
            _ => "**FAIL**",
        },
    );
    row(
        "open fds",
        fmt0(s.fds.warmup),
        fmt0(s.fds.end),
        format!("max {}", fmt0(s.fds.max)),
        status(s, "open fds"),
    );
    row(
        "threads",
        fmt0(s.threads.warmup),
        fmt0(s.threads.end),
        format!("max {}", fmt0(s.threads.max)),
        "reported",
    );
    let changed = if s.families_changed.is_empty() {
        "no family changed count".to_string()
    } else {
        s.families_changed
            .iter()
            .map(|c| {
                format!(
                    "{} {}→{} (range {}–{}{})",
                    c.family,
                    c.warmup,
                    c.end,
                    c.min_after,
                    c.max_after,
                    if c.may_vary {
                        ", absent while unknown"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    row(
        "/metrics series",
        fmt0(s.series_total.warmup),
        fmt0(s.series_total.end),
        changed,
        status(s, "/metrics"),
    );
    row(
        "state dir files",
        fmt0(s.state_dir_files.warmup),
        fmt0(s.state_dir_files.end),
        format!(
            "oldest state file at a sample {} s",
            fmt1(s.max_state_age_s)
        ),
        match (status(s, "state dir"), status(s, "learned state")) {
            ("pass", "pass") => "pass",
            ("reported", "reported") => "reported",
            _ => "**FAIL**",
        },
    );
    for d in &s.disk {
        row(
            &d.what,
            bytes(d.warmup_bytes as f64),
            bytes(d.end_bytes as f64),
            format!("{}/h ({}/day)", bytes(d.per_hour), bytes(d.per_hour * 24.0)),
            "reported",
        );
    }
    row(
        "weir CPU",
        "—".into(),
        "—".into(),
        s.cpu_ms_per_decision
            .map_or("?".into(), |v| format!("{v:.2} ms per decision")),
        "reported",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP weir_decisions Decisions made.\n\
# TYPE weir_decisions counter\n\
weir_decisions_total 42\n\
weir_decisions_created 1.7e9\n\
# TYPE weir_weight gauge\n\
weir_weight{destination=\"primary\"} 0\n\
weir_weight{destination=\"replica-1\"} 50\n\
weir_weight{destination=\"replica-2\"} 50\n\
# TYPE weir_reward gauge\n\
# TYPE weir_loop_duration_seconds histogram\n\
weir_loop_duration_seconds_sum 0.5\n\
weir_loop_duration_seconds_count 42\n\
weir_loop_duration_seconds_bucket{le=\"0.001\"} 1\n\
weir_loop_duration_seconds_bucket{le=\"+Inf\"} 42\n\
untyped_thing 3\n\
# EOF\n";

    #[test]
    fn metrics_are_counted_per_family() {
        let m = series_by_family(METRICS);
        assert_eq!(m["weir_decisions"], 2);
        assert_eq!(m["weir_weight"], 3);
        assert_eq!(m["weir_reward"], 0, "declared without a sample");
        assert_eq!(m["weir_loop_duration_seconds"], 4);
        assert_eq!(m["untyped_thing"], 1);
        assert_eq!(m.values().sum::<usize>(), 10);
        assert!(!m.contains_key("weir_weightx"));
        assert_eq!(metric_value(METRICS, "weir_decisions_total"), Some(42.0));
        assert_eq!(metric_value(METRICS, "weir_decisions"), None);
    }

    #[test]
    fn a_sample_name_only_sharing_a_prefix_is_its_own_family() {
        let m = series_by_family("# TYPE weir_paused gauge\nweir_pausedness 1\nweir_paused 0\n");
        assert_eq!(m["weir_paused"], 1);
        assert_eq!(m["weir_pausedness"], 1);
    }

    #[test]
    fn proc_status_gives_rss_and_threads() {
        let text = "Name:\tweir\nVmPeak:\t  200000 kB\nVmRSS:\t   31234 kB\nThreads:\t7\n";
        assert_eq!(parse_status(text), (Some(31234), Some(7)));
        assert_eq!(parse_status("Name:\tx\n"), (None, None));
    }

    #[test]
    fn sse_events_are_counted_across_chunk_boundaries() {
        let mut c = SseCounter::default();
        c.feed(b"event: decision\ndata: {\"a\":1}\n\nevent: deci");
        assert_eq!(c.decisions, 1);
        c.feed(b"sion\r\ndata: {}\r\n\r\n: keep-alive\n\nevent: lagged\ndata: 3\n\n");
        assert_eq!((c.decisions, c.lagged), (2, 1));
    }

    #[test]
    fn slope_is_least_squares() {
        let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((s - 2.0).abs() < 1e-12);
        let s = slope(&[(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (3.0, 1.0)]).unwrap();
        assert!((s - 0.2).abs() < 1e-12, "{s}");
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn warmup_waits_for_the_history_ring_but_leaves_half_the_run() {
        // Two hours at 1 s: the 2000-record ring is full at 33.3 min.
        assert_eq!(warmup_s(7200.0, 1.0, 2000), 2000.0);
        // A long interval: 5 minutes.
        assert_eq!(warmup_s(7200.0, 0.1, 2000), 300.0);
        // Short runs: 10%, then at most half the run.
        assert_eq!(warmup_s(1200.0, 0.1, 100), 120.0);
        assert_eq!(warmup_s(240.0, 1.0, 2000), 120.0);
    }

    fn facts(planned_s: f64) -> RunFacts {
        RunFacts {
            planned_s,
            interval_s: 1.0,
            warmup_s: planned_s / 4.0,
            stalls_planned: 3,
            died: None,
            interrupted: None,
            reads: 0,
            reads_failed: 0,
            stale_reads: 0,
        }
    }

    fn families(extra: usize, lag: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        m.insert("weir_weight".to_string(), 3 + extra);
        m.insert("weir_replica_lag_seconds".to_string(), lag);
        m
    }

    /// A healthy run of `n` samples over `planned_s`, RSS from `rss` plus `growth(i)` KB.
    fn run(n: usize, planned_s: f64, rss: u64, growth: impl Fn(usize) -> u64) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let t = planned_s * i as f64 / (n - 1) as f64;
                Sample {
                    t_s: t,
                    alive: true,
                    rss_kb: Some(rss + growth(i)),
                    fds: Some(20),
                    threads: Some(6),
                    cpu_s: Some(t * 0.01),
                    series: Some(families(0, 2)),
                    series_total: Some(5),
                    decisions: Some((t * 0.98) as u64),
                    state_dir_bytes: 1000,
                    state_dir_files: 1,
                    state_age_s: Some(0.5),
                    audit_log_bytes: (t * 2000.0) as u64,
                    weir_log_bytes: (t * 300.0) as u64,
                    stalls: i / 10,
                    weight_changes: (i / 10) as u64 * 2,
                    events: t as u64,
                    ..Sample::default()
                }
            })
            .collect()
    }

    fn fails(s: &Summary, prefix: &str) -> bool {
        s.verdict
            .iter()
            .any(|l| l.starts_with(&format!("FAIL {prefix}")))
    }

    #[test]
    fn a_flat_two_hour_run_passes_and_reports_disk_growth() {
        let samples = run(121, 7200.0, 30_000, |i| (i % 3) as u64 * 50);
        let s = summarise(facts(7200.0), &samples);
        assert!(s.passed, "{:#?}", s.verdict);
        assert_eq!(s.expected_decisions, 7200);
        assert!(s.rss_slope_mb_per_h.unwrap().abs() < 0.1);
        assert!(
            s.verdict.iter().any(|l| l.starts_with("PASS RSS slope")),
            "{:?}",
            s.verdict
        );
        let audit = s.disk.iter().find(|d| d.what == "audit log").unwrap();
        assert!((audit.per_hour - 2000.0 * 3600.0).abs() < 1.0);
        let t = table(&s);
        assert!(t.contains("| open fds | 20 | 20 | max 20 | pass |"), "{t}");
        assert!(t.contains("| audit log |"), "{t}");
        assert!(t.contains("no family changed count"), "{t}");
    }

    #[test]
    fn a_leak_fails_on_the_slope_even_within_the_growth_bound() {
        // 2 MB/h over two hours: 4 MB, inside ×1.25 + 4 MB of 30 MB, but a leak.
        let samples = run(121, 7200.0, 30_000, |i| (i as u64) * 2048 / 60);
        let s = summarise(facts(7200.0), &samples);
        assert!(!s.passed);
        assert!(fails(&s, "RSS slope"), "{:?}", s.verdict);
        assert!(
            !fails(&s, "RSS growth"),
            "growth bound holds: {:?}",
            s.verdict
        );
    }

    #[test]
    fn growth_beyond_the_bound_fails_and_a_short_run_skips_the_slope() {
        let samples = run(13, 240.0, 30_000, |i| if i > 6 { 20_000 } else { 0 });
        let s = summarise(facts(240.0), &samples);
        assert!(fails(&s, "RSS growth"), "{:?}", s.verdict);
        assert!(
            s.verdict.iter().any(|l| l.starts_with("SKIP RSS slope")),
            "{:?}",
            s.verdict
        );
    }

    #[test]
    fn fd_and_series_growth_fail_but_a_varying_family_may_dip() {
        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples.last_mut().unwrap().fds = Some(23);
        let s = summarise(facts(7200.0), &samples);
        assert!(fails(&s, "open fds"), "{:?}", s.verdict);

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples[100].series = Some(families(0, 1));
        let s = summarise(facts(7200.0), &samples);
        assert!(s.passed, "a lag series absent once: {:?}", s.verdict);
        assert_eq!(s.families_changed.len(), 1);
        assert!(s.families_changed[0].may_vary);

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples[100].series = Some(families(0, 3));
        let s = summarise(facts(7200.0), &samples);
        assert!(fails(&s, "/metrics"), "{:?}", s.verdict);

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples.last_mut().unwrap().series = Some(families(1, 2));
        let s = summarise(facts(7200.0), &samples);
        assert!(fails(&s, "/metrics"), "{:?}", s.verdict);
        assert!(table(&s).contains("weir_weight 3→4"), "{}", table(&s));
    }

    #[test]
    fn death_few_decisions_no_stalls_and_stale_state_fail() {
        let samples = run(121, 7200.0, 30_000, |_| 0);
        let mut f = facts(7200.0);
        f.died = Some("at 61.0 min, exit status 101; log tail: panicked".into());
        let s = summarise(f, &samples);
        assert!(fails(&s, "weir run died"), "{:?}", s.verdict);
        assert!(table(&s).contains("weir died"));

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples.last_mut().unwrap().decisions = Some(6000);
        assert!(fails(&summarise(facts(7200.0), &samples), "decided"));

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        for s in &mut samples {
            s.stalls = 0;
            s.weight_changes = 0;
        }
        assert!(fails(&summarise(facts(7200.0), &samples), "not a constant"));

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples[90].state_age_s = Some(45.0);
        assert!(fails(&summarise(facts(7200.0), &samples), "learned state"));

        let mut samples = run(121, 7200.0, 30_000, |_| 0);
        samples.last_mut().unwrap().state_dir_files = 2;
        assert!(fails(&summarise(facts(7200.0), &samples), "state dir"));
    }

    #[test]
    fn samples_round_trip_as_json_lines() {
        let s = run(3, 10.0, 1, |_| 0).remove(1);
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains('\n'));
        let back: Sample = serde_json::from_str(&line).unwrap();
        assert_eq!(back, s);
    }
}
