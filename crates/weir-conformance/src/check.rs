//! Check bookkeeping: one row per check (feature, the policy line it proves, requests sent,
//! expected, observed, pass), counts of who answered, and the table as Markdown or text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One check: what was sent, what the policy says should happen, what did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The feature (`match header × in`, `weights`, `local rate limit`, …).
    pub feature: String,
    /// The policy line it proves, as written in the policy (or as `explain` says it).
    pub policy_line: String,
    /// Requests sent for this check.
    pub requests: u64,
    /// What the policy says should happen.
    pub expected: String,
    /// What happened.
    pub observed: String,
    /// Whether observed is what was expected (within the tolerances).
    pub pass: bool,
}

impl Check {
    /// A check that could not run: `why` is the observed outcome.
    pub fn failed_to_run(feature: &str, policy_line: &str, why: &str) -> Check {
        Check {
            feature: feature.to_string(),
            policy_line: policy_line.to_string(),
            requests: 0,
            expected: "the check runs".to_string(),
            observed: format!("could not run: {why}"),
            pass: false,
        }
    }
}

/// How many answers each key (upstream, subset, status) got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<String, u64>);

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Counts one answer for `key`.
    pub fn add(&mut self, key: &str) {
        *self.0.entry(key.to_string()).or_default() += 1;
    }

    /// Answers counted for `key`.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Answers counted in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The keys that got at least one answer.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `key`'s share of all answers, in percent (0 when nothing was counted).
    pub fn percent(&self, key: &str) -> f64 {
        match self.total() {
            0 => 0.0,
            t => 100.0 * self.get(key) as f64 / t as f64,
        }
    }

    /// `v1 6012 (60.1%), v2 …`, in key order.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "nothing".to_string();
        }
        self.0
            .keys()
            .map(|k| format!("{k} {} ({:.1}%)", self.get(k), self.percent(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How many passed and how many failed.
pub fn summary(checks: &[Check]) -> (usize, usize) {
    let passed = checks.iter().filter(|c| c.pass).count();
    (passed, checks.len() - passed)
}

/// A table cell: pipes escaped, line breaks flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The checks as a Markdown table.
pub fn markdown(checks: &[Check]) -> String {
    let mut out = String::from(
        "| feature | policy line | requests | expected | observed | pass |\n\
         |---|---|---:|---|---|---|\n",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            cell(&c.feature),
            cell(&c.policy_line).replace('`', "'"),
            c.requests,
            cell(&c.expected),
            cell(&c.observed),
            if c.pass { "yes" } else { "**NO**" }
        );
    }
    out
}

/// The checks as plain text, one block per check, for a terminal.
pub fn text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = writeln!(
            out,
            "{} {} — {}\n    requests: {}\n    expected: {}\n    observed: {}",
            if c.pass { "PASS" } else { "FAIL" },
            c.feature,
            c.policy_line,
            c.requests,
            c.expected,
            c.observed
        );
    }
    let (passed, failed) = summary(checks);
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(feature: &str, pass: bool) -> Check {
        Check {
            feature: feature.into(),
            policy_line: "{ source: header, op: in, values: [a|b] }".into(),
            requests: 3,
            expected: "hit".into(),
            observed: "hit\nhit".into(),
            pass,
        }
    }

    #[test]
    fn tally_counts_and_shares() {
        let mut t = Tally::new();
        for k in ["v1", "v1", "v1", "v2"] {
            t.add(k);
        }
        assert_eq!(t.total(), 4);
        assert_eq!(t.get("v1"), 3);
        assert_eq!(t.get("v3"), 0);
        assert!((t.percent("v1") - 75.0).abs() < 1e-9);
        assert_eq!(t.describe(), "v1 3 (75.0%), v2 1 (25.0%)");
        assert_eq!(t.keys().collect::<Vec<_>>(), ["v1", "v2"]);
        assert_eq!(Tally::new().percent("x"), 0.0);
        assert_eq!(Tally::new().describe(), "nothing");
    }

    #[test]
    fn summary_counts_failures() {
        assert_eq!(
            summary(&[check("a", true), check("b", false), check("c", true)]),
            (2, 1)
        );
        assert_eq!(summary(&[]), (0, 0));
    }

    #[test]
    fn markdown_escapes_cells_and_marks_failures() {
        let md = markdown(&[check("a", true), check("b", false)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            "| a | `{ source: header, op: in, values: [a\\|b] }` | 3 | hit | hit hit | yes |"
        );
        assert!(lines[3].ends_with("| **NO** |"));
        // Every row has the header's number of columns (escaped pipes do not count).
        for l in &lines {
            assert_eq!(l.replace("\\|", "").matches('|').count(), 7, "{l}");
        }
    }

    #[test]
    fn text_says_pass_fail_and_totals() {
        let t = text(&[check("a", true), check("b", false)]);
        assert!(t.starts_with("PASS a — "));
        assert!(t.contains("FAIL b — "));
        assert!(t.ends_with("1 passed, 1 failed\n"));
    }

    #[test]
    fn failed_to_run_is_a_failure_with_the_reason() {
        let c = Check::failed_to_run("weights", "default", "Envoy did not start");
        assert!(!c.pass);
        assert_eq!(c.observed, "could not run: Envoy did not start");
    }

    #[test]
    fn checks_round_trip_through_json() {
        let c = vec![check("a", true)];
        let json = serde_json::to_string(&c).unwrap();
        let back: Vec<Check> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
