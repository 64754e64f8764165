//! The campaign's result: one row per fault, the Markdown table, and the verdict `--check`
//! exits on.

use serde::Serialize;

/// What one fault showed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultResult {
    /// The fault, for people.
    pub fault: String,
    /// Why it was not exercised (not root, mount refused, …); `None` when it ran.
    pub not_exercised: Option<String>,
    /// What Weir did, in a sentence or two.
    pub what_weir_did: String,
    /// Seconds from the neighbour being back (Prometheus ready, HAProxy answering, `weir run`
    /// restarted, space freed) until Weir was safe again; the worst one for repeated faults.
    /// `None`: never within the campaign's wait.
    pub time_to_safe_s: Option<f64>,
    /// Reads the load generator attempted in the fault's window.
    pub reads: u64,
    /// Of which failed.
    pub reads_failed: u64,
    /// Of which answered with data older than the staleness SLO.
    pub stale_reads: u64,
    /// Changes of HAProxy's weights Weir made in the window (each matched to an applied
    /// decision in the audit log).
    pub weights_written: u64,
    /// Every weight HAProxy showed and every weight Weir decided in the window was valid.
    pub weights_valid: bool,
    /// The audit log parsed line by line in the window, without sequence gaps, and accounts
    /// for every change of HAProxy's weights Weir made.
    pub audit_complete: bool,
    /// State files that did not load after a crash (must be 0).
    pub torn_state_files: u64,
    /// The window, campaign seconds.
    pub window_s: (f64, f64),
    /// The fault's own checks (what Weir had to do about it), judged with the rest.
    pub checks: Vec<FaultCheck>,
    /// Evidence: timings, counts, problems found.
    pub details: Vec<String>,
}

/// One fault-specific check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultCheck {
    /// What was checked, with the figures.
    pub what: String,
    /// Whether it held.
    pub pass: bool,
}

impl FaultResult {
    /// A fault that could not be exercised here, and why.
    pub fn not_exercised(fault: &str, why: String) -> FaultResult {
        FaultResult {
            fault: fault.to_string(),
            what_weir_did: format!("not exercised: {why}"),
            not_exercised: Some(why),
            weights_valid: true,
            audit_complete: true,
            ..FaultResult::default()
        }
    }
}

/// The whole campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    /// One per fault, in the order run.
    pub faults: Vec<FaultResult>,
    /// The bound on time to safe the check uses, seconds.
    pub max_safe_s: f64,
    /// Audit-log lines read, decisions among them, and problems anywhere in it.
    pub audit_lines: usize,
    /// See `audit_lines`.
    pub audit_decisions: usize,
    /// See `audit_lines`.
    pub audit_problems: Vec<String>,
    /// Pass/fail lines.
    pub verdict: Vec<String>,
    /// Whether every check passed.
    pub passed: bool,
    /// The inputs, for the record.
    pub settings: serde_json::Value,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}"))
        .unwrap_or_else(|| "never".into())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// The table (Markdown): fault | what Weir did | time to safe | reads failed | stale reads |
/// weights written | weights valid | audit complete.
pub fn table(faults: &[FaultResult]) -> String {
    let mut s = String::from(
        "| fault | what Weir did | time to safe (s) | reads failed | stale reads | weights written | weights valid | audit complete |\n\
         |---|---|---:|---:|---:|---:|---|---|\n",
    );
    for f in faults {
        let cell = f.what_weir_did.replace('|', "\\|").replace('\n', " ");
        if f.not_exercised.is_some() {
            s.push_str(&format!(
                "| {} | {cell} | — | — | — | — | — | — |\n",
                f.fault
            ));
            continue;
        }
        s.push_str(&format!(
            "| {} | {cell} | {} | {} of {} | {} | {} | {} | {} |\n",
            f.fault,
            opt(f.time_to_safe_s),
            f.reads_failed,
            f.reads,
            f.stale_reads,
            f.weights_written,
            yes(f.weights_valid),
            yes(f.audit_complete),
        ));
    }
    s
}

/// The check: every fault that ran left valid weights, a complete audit log and no torn state
/// file, got back to safe within `max_safe_s` and passed its own checks; the audit log as a
/// whole parses. A fault that could not be exercised is reported, not failed.
pub fn verdict(
    faults: &[FaultResult],
    audit_problems: &[String],
    max_safe_s: f64,
) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    let mut line = |lines: &mut Vec<String>, pass: bool, text: String| {
        ok &= pass;
        lines.push(format!("{} {text}", if pass { "PASS" } else { "FAIL" }));
    };
    for f in faults {
        if let Some(why) = &f.not_exercised {
            lines.push(format!("SKIP {}: not exercised: {why}", f.fault));
            continue;
        }
        line(
            &mut lines,
            f.weights_valid,
            format!("{}: weights valid", f.fault),
        );
        line(
            &mut lines,
            f.audit_complete,
            format!("{}: audit log complete", f.fault),
        );
        line(
            &mut lines,
            f.torn_state_files == 0,
            format!("{}: {} torn state file(s)", f.fault, f.torn_state_files),
        );
        line(
            &mut lines,
            f.time_to_safe_s.is_some_and(|t| t <= max_safe_s),
            format!(
                "{}: safe again after {} s (limit {max_safe_s:.0} s)",
                f.fault,
                opt(f.time_to_safe_s)
            ),
        );
        for c in &f.checks {
            line(&mut lines, c.pass, format!("{}: {}", f.fault, c.what));
        }
    }
    line(
        &mut lines,
        audit_problems.is_empty(),
        format!(
            "the audit log parses line by line ({} problem(s){})",
            audit_problems.len(),
            audit_problems
                .first()
                .map(|p| format!(", first: {p}"))
                .unwrap_or_default()
        ),
    );
    (lines, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(name: &str) -> FaultResult {
        FaultResult {
            fault: name.into(),
            what_weir_did: "held | then resumed".into(),
            time_to_safe_s: Some(2.0),
            reads: 1000,
            reads_failed: 3,
            weights_valid: true,
            audit_complete: true,
            ..FaultResult::default()
        }
    }

    #[test]
    fn every_failure_kind_fails_the_check_and_a_skip_does_not() {
        let skipped = FaultResult::not_exercised("disk full", "not root".into());
        let (lines, ok) = verdict(&[good("a"), skipped.clone()], &[], 10.0);
        assert!(ok, "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("SKIP disk full")),
            "{lines:?}"
        );
        let bad = [
            FaultResult {
                weights_valid: false,
                ..good("w")
            },
            FaultResult {
                audit_complete: false,
                ..good("a")
            },
            FaultResult {
                torn_state_files: 1,
                ..good("t")
            },
            FaultResult {
                time_to_safe_s: None,
                ..good("n")
            },
            FaultResult {
                time_to_safe_s: Some(10.5),
                ..good("s")
            },
        ];
        for b in bad {
            let (lines, ok) = verdict(&[good("x"), b.clone()], &[], 10.0);
            assert!(!ok, "{} should fail: {lines:?}", b.fault);
        }
        let (_, ok) = verdict(&[good("x")], &["line 3: not JSON".into()], 10.0);
        assert!(!ok, "an audit line that does not parse fails");
        let check = |pass| FaultCheck {
            what: "reads moved off the cut replica".into(),
            pass,
        };
        let own = FaultResult {
            checks: vec![check(true), check(false)],
            ..good("cut")
        };
        let (lines, ok) = verdict(&[own], &[], 10.0);
        assert!(!ok, "a fault's own failed check fails: {lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l == "FAIL cut: reads moved off the cut replica"),
            "{lines:?}"
        );
        let own = FaultResult {
            checks: vec![check(true)],
            ..good("cut")
        };
        assert!(verdict(&[own], &[], 10.0).1);
    }

    #[test]
    fn table_escapes_pipes_and_marks_skips() {
        let t = table(&[
            good("Prometheus killed"),
            FaultResult::not_exercised("disk full", "not root".into()),
        ]);
        assert!(t.contains("held \\| then resumed"), "{t}");
        assert!(t.contains("| Prometheus killed | held \\| then resumed | 2.0 | 3 of 1000 | 0 | 0 | yes | yes |"), "{t}");
        assert!(
            t.contains("| disk full | not exercised: not root | — |"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 4);
    }
}
