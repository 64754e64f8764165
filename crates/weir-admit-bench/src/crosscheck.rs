//! One load point measured twice: by our open-loop generator and by `oha` (crates.io; `-q`
//! fixed rate with `--latency-correction`, so its latencies also count from the intended send
//! time), each against a fresh server of the same arm. If the two agree on throughput, the
//! rejected share and the latency of answers, the generator's numbers are not an artefact of
//! the generator.
//!
//! What differs, by design: `oha` sends at a constant rate, ours with Poisson arrivals (more
//! bursty, so its tail can be longer); `oha` reports latency over every answer (429s included),
//! so the comparison below does the same for ours.

use std::path::Path;
use std::process::Command;

use crate::load::{LoadRun, Outcome};

/// What one tool measured at the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Answers per second over the run.
    pub answered_per_s: f64,
    /// 200s.
    pub ok: u64,
    /// 429s and 503s.
    pub rejected: u64,
    /// Anything else (other statuses, connection errors, timeouts, cut off at the end).
    pub other: u64,
    /// p50 of every answer, ms.
    pub p50_ms: f64,
    /// p99 of every answer, ms.
    pub p99_ms: f64,
}

impl Measured {
    /// Rejected, % of everything sent.
    pub fn rejected_pct(&self) -> f64 {
        let all = self.ok + self.rejected + self.other;
        if all == 0 {
            0.0
        } else {
            100.0 * self.rejected as f64 / all as f64
        }
    }
}

/// An `oha` answer that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OhaError {
    /// Not JSON.
    #[error("oha's output is not JSON: {0}")]
    Json(String),
    /// A field missing or of the wrong type.
    #[error("oha's JSON has no usable `{0}`")]
    Field(&'static str),
}

/// Reads `oha --output-format json` (or `-j` in older versions).
pub fn parse_oha(text: &str) -> Result<Measured, OhaError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| OhaError::Json(e.to_string()))?;
    let rps = v
        .pointer("/summary/requestsPerSec")
        .and_then(serde_json::Value::as_f64)
        .ok_or(OhaError::Field("summary.requestsPerSec"))?;
    let codes = v
        .get("statusCodeDistribution")
        .and_then(serde_json::Value::as_object)
        .ok_or(OhaError::Field("statusCodeDistribution"))?;
    let (mut ok, mut rejected, mut other) = (0u64, 0u64, 0u64);
    for (code, n) in codes {
        let n = n
            .as_u64()
            .ok_or(OhaError::Field("statusCodeDistribution"))?;
        match code.as_str() {
            "200" => ok += n,
            "429" | "503" => rejected += n,
            _ => other += n,
        }
    }
    if let Some(errors) = v
        .get("errorDistribution")
        .and_then(serde_json::Value::as_object)
    {
        other += errors
            .values()
            .filter_map(serde_json::Value::as_u64)
            .sum::<u64>();
    }
    let pct = |p: &'static str| {
        v.pointer(&format!("/latencyPercentiles/{p}"))
            .and_then(serde_json::Value::as_f64)
            .map(|s| s * 1000.0)
            .ok_or(OhaError::Field("latencyPercentiles"))
    };
    Ok(Measured {
        answered_per_s: rps,
        ok,
        rejected,
        other,
        p50_ms: pct("p50")?,
        p99_ms: pct("p99")?,
    })
}

/// The same figures from one of our runs.
pub fn ours(run: &LoadRun) -> Measured {
    let mut h = crate::load::histogram();
    let (mut ok, mut rejected, mut other) = (0u64, 0u64, 0u64);
    for r in &run.records {
        match r.outcome {
            Outcome::Ok => ok += 1,
            Outcome::Rejected => rejected += 1,
            Outcome::TimedOut | Outcome::Error => {
                other += 1;
                continue;
            }
        }
        h.saturating_record(r.latency_us.max(1));
    }
    let q = |p| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(p) as f64 / 1000.0
        }
    };
    Measured {
        answered_per_s: (ok + rejected) as f64 / run.secs.max(1e-9),
        ok,
        rejected,
        other,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
    }
}

/// Runs `oha` against `url` at `rate` req/s for `secs` (on core 1 when `pin`).
pub fn run_oha(
    oha: &Path,
    url: &str,
    rate: f64,
    secs: f64,
    connections: u32,
    pin: bool,
) -> anyhow::Result<Measured> {
    let mut last_err = String::new();
    // Newer oha: `--output-format json`; older: `-j`.
    for json_flag in [&["--output-format", "json"][..], &["-j"][..]] {
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "1"]).arg(oha);
            c
        } else {
            Command::new(oha)
        };
        cmd.arg("--no-tui")
            .args(json_flag)
            .args(["-q", &format!("{rate:.0}")])
            .args(["-z", &format!("{secs}s")])
            .args(["-c", &connections.to_string()])
            .arg("--latency-correction")
            .arg(url);
        let out = cmd
            .output()
            .map_err(|e| anyhow::anyhow!("running {}: {e}", oha.display()))?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return parse_oha(&text).map_err(|e| anyhow::anyhow!("{}: {e}", oha.display()));
        }
        last_err = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    anyhow::bail!("{} failed: {}", oha.display(), last_err.trim())
}

/// The comparison as a markdown table.
pub fn render(rate: f64, secs: f64, arm: &str, oha: &Measured, ours: &Measured) -> String {
    let mut s = format!(
        "One point, {rate:.0} req/s for {secs} s against `{arm}`, each tool on a fresh server:\n\n\
         | tool | answers/s | 200 | rejected | rejected % | other | p50 ms (all answers) | p99 ms (all answers) |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (name, m) in [
        ("weir-admit-bench (Poisson)", ours),
        ("oha -q --latency-correction (constant rate)", oha),
    ] {
        s.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {:.1} | {} | {:.2} | {:.2} |\n",
            m.answered_per_s,
            m.ok,
            m.rejected,
            m.rejected_pct(),
            m.other,
            m.p50_ms,
            m.p99_ms
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oha_report_is_read_and_a_broken_one_named() {
        let text = r#"{"summary":{"successRate":1.0,"total":10.0,"requestsPerSec":3890.5},
            "latencyPercentiles":{"p10":0.0002,"p50":0.0004,"p99":0.0291},
            "statusCodeDistribution":{"200":12990,"429":25800,"500":3},
            "errorDistribution":{"aborted due to deadline":7}}"#;
        let m = parse_oha(text).expect("a valid report");
        assert_eq!((m.ok, m.rejected, m.other), (12990, 25800, 10));
        assert!((m.p99_ms - 29.1).abs() < 1e-9 && (m.answered_per_s - 3890.5).abs() < 1e-9);
        assert!(
            (m.rejected_pct() - 66.5).abs() < 0.1,
            "{}",
            m.rejected_pct()
        );
        assert_eq!(
            parse_oha(r#"{"summary":{}}"#),
            Err(OhaError::Field("summary.requestsPerSec"))
        );
        assert!(matches!(parse_oha("Summary:\n"), Err(OhaError::Json(_))));
    }
}
