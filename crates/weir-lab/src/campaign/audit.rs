//! Reading what Weir left behind, with the types Weir itself uses: the audit log (one JSON
//! line per decision, a `weir_recorder::StepRecord`, or per API request, `"audit":
//! "control"`) and the state directory (the learned policy, read back with
//! `weir_policy::Model::load`, as `weir run` does at start). All of it is pure: the campaign
//! feeds in lines it tailed and weights it polled, with the campaign time it saw them.

use std::path::Path;

use serde::Serialize;
use weir_policy::{Model, PolicyKind};
use weir_recorder::{Actuation, StepRecord};

/// HAProxy weights in lab order (primary, replica-1, replica-2).
pub type Triple = [u32; 3];

/// One audit-log line and the campaign time (seconds) the tailer first saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    /// Campaign seconds when it was read.
    pub t: f64,
    /// The line, without its newline.
    pub text: String,
    /// Whether the line ended with a newline (a line cut by a crash does not).
    pub terminated: bool,
}

/// One decision from the audit log, reduced to what the campaign judges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditDecision {
    /// Campaign seconds when the line was read.
    pub t: f64,
    /// Which `weir run` process wrote it (0 for the first; a new one starts at `seq` 0).
    pub run: usize,
    /// The record's sequence number within its run.
    pub seq: u64,
    /// The decision's weights.
    pub weights: Triple,
    /// The weights in force after it, as Weir knew them.
    pub in_force: Triple,
    /// The actuator accepted the weights.
    pub applied: bool,
    /// The actuator failed.
    pub actuation_failed: bool,
    /// The observation was a blank stand-in for a source error.
    pub source_error: bool,
    /// The shield rules that fired (snake_case names).
    pub rules: Vec<String>,
    /// The fail-safe weights are in force.
    pub fail_safe: bool,
    /// Each replica's lag in the observation the decision was made from, seconds (`None`:
    /// unknown).
    pub lags: Vec<Option<f64>>,
    /// Weir found weights at HAProxy other than the ones it last applied: (found, Weir's).
    pub drift: Option<(Triple, Triple)>,
}

impl AuditDecision {
    /// Decided from a fresh observation, without holding or failing safe.
    pub fn deciding(&self) -> bool {
        !self.source_error
            && !self.fail_safe
            && !self
                .rules
                .iter()
                .any(|r| r == "stale_observation" || r == "fail_safe")
    }
}

/// A problem in the audit log, at the campaign time of the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditProblem {
    /// Campaign seconds of the line.
    pub t: f64,
    /// What is wrong.
    pub what: String,
}

/// The audit log, parsed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Every decision, in order.
    pub decisions: Vec<AuditDecision>,
    /// Lines recording API requests (`"audit": "control"`).
    pub controls: usize,
    /// Lines that do not parse, sequence gaps, lines a crash cut short.
    pub problems: Vec<AuditProblem>,
    /// Decisions whose weights are not valid (not three, or not summing to 100).
    pub invalid_weights: Vec<AuditProblem>,
}

fn triple(w: &weir_core::Weights) -> Option<Triple> {
    match w.replicas.as_slice() {
        [a, b] => Some([w.primary, *a, *b]),
        _ => None,
    }
}

/// Parses the audit log line by line: each line must be one JSON object, either an API
/// request entry or a `StepRecord`; sequence numbers run 0, 1, 2, … within each `weir run`
/// (a 0 starts the next run).
pub fn parse(lines: &[AuditLine]) -> Audit {
    let mut audit = Audit::default();
    let mut run: Option<usize> = None;
    let mut last_seq: Option<u64> = None;
    for (n, line) in lines.iter().enumerate() {
        let problem = |what: String| AuditProblem {
            t: line.t,
            what: format!("line {}: {what}", n + 1),
        };
        if line.text.trim().is_empty() {
            audit.problems.push(problem("empty line".into()));
            continue;
        }
        if !line.terminated {
            audit
                .problems
                .push(problem("not newline-terminated (cut short)".into()));
        }
        let value: serde_json::Value = match serde_json::from_str(&line.text) {
            Ok(v) => v,
            Err(e) => {
                audit.problems.push(problem(format!("not JSON: {e}")));
                continue;
            }
        };
        if value.get("audit").is_some() {
            audit.controls += 1;
            continue;
        }
        let rec: StepRecord = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                audit
                    .problems
                    .push(problem(format!("not a decision record: {e}")));
                continue;
            }
        };
        if rec.seq == 0 {
            run = Some(run.map_or(0, |r| r + 1));
        } else if last_seq.is_none_or(|s| rec.seq != s + 1) {
            audit.problems.push(problem(format!(
                "sequence gap: {} after {}",
                rec.seq,
                last_seq.map_or("nothing".to_string(), |s| s.to_string())
            )));
        }
        last_seq = Some(rec.seq);
        let (Some(weights), Some(in_force)) =
            (triple(&rec.decision.weights), triple(&rec.in_force))
        else {
            audit.invalid_weights.push(problem(
                "weights are not one primary and two replicas".into(),
            ));
            continue;
        };
        for (what, w) in [("decision", weights), ("in force", in_force)] {
            if w.iter().sum::<u32>() != weir_core::Weights::TOTAL {
                audit.invalid_weights.push(problem(format!(
                    "{what} weights {w:?} do not sum to {}",
                    weir_core::Weights::TOTAL
                )));
            }
        }
        audit.decisions.push(AuditDecision {
            t: line.t,
            run: run.unwrap_or(0),
            seq: rec.seq,
            weights,
            in_force,
            applied: rec.actuation.applied(),
            actuation_failed: matches!(rec.actuation, Actuation::Failed { .. }),
            source_error: rec.source_error.is_some(),
            rules: rec
                .decision
                .interventions
                .iter()
                .map(|i| i.rule.as_str().to_string())
                .collect(),
            fail_safe: rec.shield.fail_safe_engaged,
            lags: rec
                .observation
                .replicas
                .iter()
                .map(|r| r.lag_s.value)
                .collect(),
            drift: rec
                .drift
                .as_ref()
                .and_then(|d| Some((triple(&d.found)?, triple(&d.expected)?))),
        });
    }
    audit
}

/// Whether HAProxy weights are usable: each within HAProxy's 0..=256 and not all 0 (all 0
/// refuses every new connection).
pub fn valid_haproxy(w: &Triple) -> bool {
    w.iter().all(|x| *x <= 256) && w.iter().any(|x| *x > 0)
}

/// How an observed change of HAProxy's weights is accounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The lab did it (its initial weights, or HAProxy restarted from its config file).
    Lab,
    /// Weir applied exactly these weights, and the audit log has the decision.
    Weir,
    /// Half-way through one of Weir's applies (servers are set one at a time): each weight
    /// is the one before or the audited one.
    Transient,
    /// Nothing in the audit log accounts for it.
    Unexplained,
}

/// Seconds either side of an observed change in which the audited decision must have been
/// read (the actuator applies before the record is written, the tailer and the weight poller
/// each lag by up to a poll).
pub const MATCH_WINDOW_S: f64 = 3.0;

/// Attributes every observed change of HAProxy's weights (`changes`: campaign time and the
/// new weights, in order) to the lab (`lab_marks`: times the lab itself changed them; the
/// first change seen after a mark is the lab's), to an applied decision in the audit log
/// within [`MATCH_WINDOW_S`], or to nothing.
pub fn attribute(changes: &[(f64, Triple)], audit: &Audit, lab_marks: &[f64]) -> Vec<Cause> {
    let mut out = Vec::with_capacity(changes.len());
    let mut prev: Option<Triple> = None;
    for (k, (t, w)) in changes.iter().enumerate() {
        let after_mark = lab_marks
            .iter()
            .any(|m| *m <= *t && (k == 0 || changes[k - 1].0 < *m));
        let near: Vec<&AuditDecision> = audit
            .decisions
            .iter()
            .filter(|d| d.applied && (d.t - t).abs() <= MATCH_WINDOW_S)
            .collect();
        let cause = if after_mark {
            Cause::Lab
        } else if near.iter().any(|d| d.in_force == *w) {
            Cause::Weir
        } else if prev.is_some_and(|p| {
            near.iter()
                .any(|d| (0..3).all(|i| w[i] == p[i] || w[i] == d.in_force[i]))
        }) {
            Cause::Transient
        } else {
            Cause::Unexplained
        };
        out.push(cause);
        prev = Some(*w);
    }
    out
}

/// What the state directory held after a crash.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StateCheck {
    /// The policy's state file exists.
    pub present: bool,
    /// It exists and does not load (`weir run` would refuse to start): torn.
    pub torn: Option<String>,
    /// Temporary files a save in progress left behind (not read by `weir run`).
    pub temp_files: Vec<String>,
    /// Other files (not written by Weir as far as the campaign knows).
    pub other_files: Vec<String>,
}

/// Opens every file in `dir`: the policy's state file (`kind.snapshot_file()`) must load
/// with `Model::load`, as `weir run` loads it at start; `.<name>.tmp-<pid>` files are
/// `write_atomic`'s temporaries.
pub fn check_state_dir(dir: &Path, kind: PolicyKind) -> std::io::Result<StateCheck> {
    let mut check = StateCheck::default();
    let Some(state_name) = kind.snapshot_file() else {
        return Ok(check);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(check),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == state_name {
            check.present = true;
            if let Err(e) = Model::load(kind, &dir.join(&name)) {
                check.torn = Some(e.to_string());
            }
        } else if name.starts_with('.') && name.contains(".tmp-") {
            check.temp_files.push(name);
        } else {
            check.other_files.push(name);
        }
    }
    check.temp_files.sort();
    check.other_files.sort();
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, weights: Triple, applied: bool) -> String {
        let w = weir_core::Weights {
            primary: weights[0],
            replicas: vec![weights[1], weights[2]],
        };
        let obs = weir_test_support::ObsBuilder::new(2).at(seq as f64).build();
        let mut r = weir_recorder::fixtures::record(seq, obs, w.clone());
        r.in_force = w;
        if !applied {
            r.actuation = Actuation::Failed {
                error: weir_recorder::ErrorInfo::new("unreachable", "connection refused"),
            };
        }
        serde_json::to_string(&r).expect("json")
    }

    fn lines(texts: &[(f64, String)]) -> Vec<AuditLine> {
        texts
            .iter()
            .map(|(t, s)| AuditLine {
                t: *t,
                text: s.clone(),
                terminated: true,
            })
            .collect()
    }

    #[test]
    fn runs_gaps_torn_lines_and_invalid_weights_are_found() {
        let mut l = lines(&[
            (1.0, record(0, [0, 50, 50], true)),
            (2.0, record(1, [0, 25, 75], true)),
            (3.0, r#"{"audit":"control","action":"pause"}"#.to_string()),
            // A restart: a new run.
            (4.0, record(0, [0, 25, 75], true)),
            (5.0, record(2, [0, 25, 75], true)),
            (6.0, record(3, [10, 25, 70], true)),
        ]);
        // A line a crash cut short, with the next run's first line appended to it.
        let whole = record(0, [0, 50, 50], true);
        l.push(AuditLine {
            t: 7.0,
            text: format!("{}{}", &whole[..whole.len() / 2], whole),
            terminated: true,
        });
        let a = parse(&l);
        assert_eq!(a.controls, 1);
        assert_eq!(a.decisions.len(), 5);
        assert_eq!(
            a.decisions.iter().map(|d| d.run).collect::<Vec<_>>(),
            [0, 0, 1, 1, 1]
        );
        assert_eq!(a.problems.len(), 2, "{:?}", a.problems);
        assert!(a.problems[0].what.contains("sequence gap: 2 after 0"));
        assert!(a.problems[1].what.contains("line 7: not JSON"));
        assert_eq!(a.invalid_weights.len(), 2, "decision and in force");
        assert!(a.decisions[0].deciding());
    }

    #[test]
    fn weight_changes_are_attributed_to_the_lab_weir_a_half_apply_or_nothing() {
        let a = parse(&lines(&[
            (1.0, record(0, [0, 50, 50], true)),
            (10.0, record(1, [0, 0, 100], true)),
            (16.0, record(2, [0, 0, 100], true)),
            (20.0, record(3, [30, 0, 70], false)),
        ]));
        let changes = [
            (0.5, [0, 50, 50]),  // the lab's initial weights
            (10.0, [0, 0, 50]),  // half-way to 0/0/100
            (10.1, [0, 0, 100]), // Weir's
            (15.0, [0, 50, 50]), // HAProxy restarted at 14.9: its config file
            (15.9, [0, 0, 100]), // Weir restores
            (20.0, [30, 0, 70]), // a failed apply: not Weir's weights
        ];
        let causes = attribute(&changes, &a, &[0.0, 14.9]);
        assert_eq!(
            causes,
            [
                Cause::Lab,
                Cause::Transient,
                Cause::Weir,
                Cause::Lab,
                Cause::Weir,
                Cause::Unexplained
            ]
        );
        assert!(valid_haproxy(&[0, 0, 1]));
        assert!(!valid_haproxy(&[0, 0, 0]));
        assert!(!valid_haproxy(&[0, 300, 1]));
    }

    #[test]
    fn a_truncated_state_file_is_torn_and_temporaries_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kind = PolicyKind::Dqn;
        let name = kind.snapshot_file().expect("dqn saves state");
        assert!(!check_state_dir(dir.path(), kind).expect("empty").present);
        let bytes = Model::shipped(kind)
            .expect("a shipped model")
            .expect("loads")
            .to_bytes();
        std::fs::write(dir.path().join(name), &bytes).expect("write");
        std::fs::write(
            dir.path().join(format!(".{name}.tmp-42")),
            &bytes[..bytes.len() / 2],
        )
        .expect("write");
        let c = check_state_dir(dir.path(), kind).expect("check");
        assert!(c.present && c.torn.is_none(), "{c:?}");
        assert_eq!(c.temp_files, [format!(".{name}.tmp-42")]);
        std::fs::write(dir.path().join(name), &bytes[..bytes.len() / 2]).expect("write");
        let c = check_state_dir(dir.path(), kind).expect("check");
        assert!(c.torn.is_some(), "{c:?}");
    }
}
