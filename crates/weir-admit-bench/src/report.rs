//! The report: medians and ranges over seeds per arm, the goals of issue 15 stated as met or
//! missed, as `report.md` (markdown tables; machine, versions and command at the top) and
//! `report.json` (every measured number plus the summary).
//!
//! **Never:** drop a discarded run silently (it is counted and named), or state a goal as met
//! without the numbers beside it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::arms;
use crate::load::Window;
use crate::runner::Results;

/// Median and range over the seeds that were used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agg {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Runs it is over.
    pub n: usize,
}

/// Median and range of `v`; `None` when empty.
pub fn agg(mut v: Vec<f64>) -> Option<Agg> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Agg {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn show(a: Option<Agg>, prec: usize) -> String {
    match a {
        None => "—".into(),
        Some(a) if a.n == 1 || (a.max - a.min).abs() < 1e-12 => format!("{:.*}", prec, a.median),
        Some(a) => format!(
            "{:.*} [{:.*}–{:.*}]",
            prec, a.median, prec, a.min, prec, a.max
        ),
    }
}

/// One arm at one load point, over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointSummary {
    /// Arm.
    pub arm: String,
    /// × capacity.
    pub mult: f64,
    /// Goodput, % of capacity.
    pub goodput_pct: Option<Agg>,
    /// p99 of admitted (200) requests, ms.
    pub p99_ms: Option<Agg>,
    /// Rejected, % of offered.
    pub reject_pct: Option<Agg>,
    /// Timed out, % of offered.
    pub timeout_pct: Option<Agg>,
    /// Runs discarded (generator fell behind).
    pub discarded: usize,
    /// Every run was discarded: the numbers are of those runs, indicative only.
    pub indicative: bool,
}

/// A goal of the issue, met or missed, with the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    /// Arm.
    pub arm: String,
    /// The goal.
    pub goal: String,
    /// Met?
    pub met: bool,
    /// The numbers.
    pub detail: String,
}

/// Summaries of the load points.
pub fn points(res: &Results) -> Vec<PointSummary> {
    let cap = res.calibration.capacity_rps;
    let mut out = Vec::new();
    for m in res.config.points() {
        for arm in &res.config.arms {
            let all: Vec<_> = res
                .points
                .iter()
                .filter(|p| &p.arm == arm && p.mult == m)
                .collect();
            let (v, indicative) = used(&all, arm);
            let a = |f: &dyn Fn(&crate::runner::PointResult) -> f64| {
                agg(v.iter().map(|p| f(p)).collect())
            };
            out.push(PointSummary {
                arm: arm.clone(),
                mult: m,
                goodput_pct: a(&|p| p.w.goodput() / cap * 100.0),
                p99_ms: a(&|p| p.w.p99_ms),
                reject_pct: a(&|p| p.w.reject_pct()),
                timeout_pct: a(&|p| p.w.timeout_pct()),
                discarded: all.iter().filter(|p| p.discarded.is_some()).count(),
                indicative,
            });
        }
    }
    out
}

/// The note on numbers of discarded runs only.
fn tag(indicative: bool) -> &'static str {
    if indicative {
        " † discarded runs only: indicative"
    } else {
        ""
    }
}

fn good_pct(w: &Window) -> f64 {
    if w.offered == 0 {
        0.0
    } else {
        100.0 * w.ok_in_slo as f64 / w.offered as f64
    }
}

fn is_weir(arm: &str) -> bool {
    arms::WEIR_ARMS.iter().any(|(n, _)| *n == arm)
}

/// The goals of issue 15, per arm, met or missed.
pub fn goals(res: &Results) -> Vec<Goal> {
    let bound = res.calibration.bound_ms;
    let pts = points(res);
    let mut g = Vec::new();
    let at = |arm: &str, m: f64| pts.iter().find(|p| p.arm == arm && p.mult == m);
    for arm in &res.config.arms {
        for m in [3.0, 5.0] {
            let Some(p) = at(arm, m) else { continue };
            let (Some(gp), Some(p99)) = (p.goodput_pct, p.p99_ms) else {
                continue;
            };
            g.push(Goal {
                arm: arm.clone(),
                goal: format!(
                    "at {m}×: goodput ≥ 90% of capacity with p99 ≤ {bound:.1} ms (2× unloaded)"
                ),
                met: gp.median >= 90.0 && p99.median <= bound,
                detail: format!(
                    "goodput {:.1}%, p99 {:.1} ms (medians)",
                    gp.median, p99.median
                ),
            });
        }
        let (steps, ind) = used(&res.steps, arm);
        if !steps.is_empty() {
            let never = steps.iter().filter(|s| s.converge_s.is_none()).count();
            let c = agg(steps.iter().filter_map(|s| s.converge_s).collect());
            let met = never == 0 && c.is_some_and(|c| c.median <= 1.0);
            g.push(Goal {
                arm: arm.clone(),
                goal: "convergence after the step 1× → 3× within 1 s".into(),
                met,
                detail: format!(
                    "converged after {} s (median [range]); never in {never} of {} runs{}",
                    show(c, 2),
                    steps.len(),
                    tag(ind)
                ),
            });
        }
        let (cls, ind) = used(&res.classes, arm);
        if !cls.is_empty() {
            let crit = agg(cls.iter().map(|c| good_pct(&c.critical)).collect());
            let shed = agg(cls.iter().map(|c| good_pct(&c.sheddable)).collect());
            g.push(Goal {
                arm: arm.clone(),
                goal: "two classes at 3×: critical goodput ≥ 99% of critical offered".into(),
                met: crit.is_some_and(|c| c.median >= 99.0),
                detail: format!(
                    "critical {}%, sheddable {}% of their offered load served within the bound{}",
                    show(crit, 1),
                    show(shed, 1),
                    tag(ind)
                ),
            });
        }
    }
    // Weir against the best baseline at 3×: a win needs the median above the baseline's
    // whole range over seeds (a difference inside it is a tie).
    let best = pts
        .iter()
        .filter(|p| p.mult == 3.0 && !is_weir(&p.arm))
        .filter_map(|p| Some((p.arm.clone(), p.goodput_pct?, p.p99_ms?.median)))
        .max_by(|a, b| a.1.median.total_cmp(&b.1.median));
    if let Some((barm, bg, bp)) = best {
        for p in pts.iter().filter(|p| p.mult == 3.0 && is_weir(&p.arm)) {
            let (Some(gp), Some(p99)) = (p.goodput_pct, p.p99_ms) else {
                continue;
            };
            let met = gp.median > bg.max && p99.median <= bp;
            let verdict = if !met && (bg.min..=bg.max).contains(&gp.median) {
                " — a tie: within the baseline's range over seeds"
            } else {
                ""
            };
            g.push(Goal {
                arm: p.arm.clone(),
                goal: format!(
                    "at 3×: better goodput than the best baseline ({barm}) at equal or lower p99"
                ),
                met,
                detail: format!(
                    "{}: {} % at p99 {:.1} ms; {barm}: {} % at p99 {bp:.1} ms{verdict}",
                    p.arm,
                    show(Some(gp), 1),
                    p99.median,
                    show(Some(bg), 1)
                ),
            });
        }
    }
    g
}

/// Now, UTC, ISO 8601 (from `date`; "unknown" without it).
pub fn now_utc() -> String {
    sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The machine's cores (not this process's affinity: the runner pins itself to one).
fn cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The JSON report: everything measured, the summaries and the goals.
pub fn json(res: &Results) -> serde_json::Value {
    serde_json::json!({
        "machine": {
            "cpu": cpu_model(),
            "cores": cores(),
            "kernel": sh("uname", &["-sr"]),
            "rustc": sh("rustc", &["--version"]),
        },
        "versions": {
            "weir-admit-bench": env!("CARGO_PKG_VERSION"),
            "tower-resilience-adaptive": "=0.9.3",
        },
        "results": res,
        "points": points(res),
        "goals": goals(res),
    })
}

/// A result of one arm and seed.
trait Run {
    fn arm(&self) -> &str;
    fn discarded(&self) -> bool;
}

macro_rules! run_impl {
    ($($t:ty),*) => {$(
        impl Run for $t {
            fn arm(&self) -> &str { &self.arm }
            fn discarded(&self) -> bool { self.discarded.is_some() }
        }
    )*};
}
run_impl!(
    crate::runner::PointResult,
    crate::runner::StepResult,
    crate::runner::DoublingResult,
    crate::runner::MixResult,
    crate::runner::ClassResult
);

impl<T: Run> Run for &T {
    fn arm(&self) -> &str {
        (*self).arm()
    }
    fn discarded(&self) -> bool {
        (*self).discarded()
    }
}

/// The runs of `arm` that were not discarded; when every one was, the discarded ones and
/// `true` (indicative only: the report marks them †).
fn used<'a, T: Run>(v: &'a [T], arm: &str) -> (Vec<&'a T>, bool) {
    let kept: Vec<_> = v
        .iter()
        .filter(|x| x.arm() == arm && !x.discarded())
        .collect();
    if kept.is_empty() {
        let all: Vec<_> = v.iter().filter(|x| x.arm() == arm).collect();
        let indicative = !all.is_empty();
        (all, indicative)
    } else {
        (kept, false)
    }
}

/// A markdown table: an `arm` column, then `cols`, one row per arm.
/// A row marked `true` is of discarded runs only (†).
fn table(
    s: &mut String,
    cols: &[&str],
    arms: &[String],
    rows: impl Iterator<Item = (Vec<String>, bool)>,
) {
    let _ = writeln!(s, "| arm | {} |", cols.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(cols.len()));
    for (arm, (r, indicative)) in arms.iter().zip(rows) {
        let mark = if indicative { " †" } else { "" };
        let _ = writeln!(s, "| {arm}{mark} | {} |", r.join(" | "));
    }
}

/// The markdown report.
pub fn markdown(res: &Results) -> String {
    let c = &res.calibration;
    let cap = c.capacity_rps;
    let mut s = String::new();
    let _ = writeln!(s, "# weir-admit-bench report\n");
    let _ = writeln!(s, "- command: `{}`", res.config.command);
    let _ = writeln!(s, "- date: {}", res.date);
    let _ = writeln!(
        s,
        "- machine: {} ({} cores), {}; {}",
        cpu_model(),
        cores(),
        sh("uname", &["-sr"]),
        sh("rustc", &["--version"])
    );
    let _ = writeln!(
        s,
        "- versions: weir-admit-bench {}, tower-resilience-adaptive =0.9.3 (AIMD and Vegas, wrapped in LoadShed to reject)",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "- pinning: {}",
        if res.pinned {
            "server on core 0, generator on core 1 (taskset)"
        } else {
            "none (taskset missing, fewer than 2 cores, or not asked)"
        }
    );
    let _ = writeln!(
        s,
        "- server: W = {} slots, {} ms mean service (lognormal), {} µs CPU per request, variant {:?}; client timeout {} ms; seeds {:?}; wall clock {:.0} s\n",
        res.config.slots,
        res.config.service_ms,
        res.config.cpu_us,
        res.config.variant,
        res.config.timeout.as_millis(),
        res.config.seeds,
        res.wall_s
    );
    let _ = writeln!(s, "## Calibration\n");
    let _ = writeln!(
        s,
        "| theory (W/mean) | measured (1.5×, tower at 4W) | capacity used | unloaded p99 (0.3×) | bound = SLO (2×) | static limit |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {:.0} req/s | {:.0} req/s | {:.0} req/s | {:.2} ms | {:.2} ms | {} |\n",
        c.theory_rps, c.measured_rps, cap, c.unloaded_p99_ms, c.bound_ms, c.limit
    );
    let _ = writeln!(s, "Static limit: {}.", c.limit_how);
    if !c.limit_trials.is_empty() {
        let t: Vec<_> = c
            .limit_trials
            .iter()
            .map(|(l, g)| format!("{l} → {g:.1}%"))
            .collect();
        let _ = writeln!(s, " Goodput at 1× by limit: {}.", t.join(", "));
    }
    let _ = writeln!(
        s,
        "\nGoodput = 200s within the bound per second, as % of capacity. p99 is of admitted (200) requests, from the intended send time. Median [min–max] over seeds; discarded runs (generator p99 send lag > 5 ms) are left out and counted; where every run of a cell was discarded, the row shows those runs marked † — indicative only, not evidence.\n"
    );
    let _ = writeln!(s, "## Load points\n");
    let _ = writeln!(
        s,
        "| load | arm | goodput % cap | p99 ms | reject % | timeout % | discarded |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for p in points(res) {
        let _ = writeln!(
            s,
            "| {}× | {} | {} | {} | {} | {} | {} |",
            p.mult,
            if p.indicative {
                format!("{} †", p.arm)
            } else {
                p.arm.clone()
            },
            show(p.goodput_pct, 1),
            show(p.p99_ms, 1),
            show(p.reject_pct, 1),
            show(p.timeout_pct, 1),
            p.discarded
        );
    }
    let arms_ = &res.config.arms;
    if !res.steps.is_empty() {
        let _ = writeln!(s, "\n## Step 1× → 3× → 1×\n");
        let _ = writeln!(
            s,
            "Convergence: seconds from the step up to the start of the first 1-s window (sliding by 0.25 s) with p99 ≤ bound and goodput ≥ 90% of capacity. Recovery: the same after the step down, against 90% of the arm's own goodput before the step.\n"
        );
        let rows = arms_.iter().map(|arm| {
            let (v, ind) = used(&res.steps, arm);
            (
                vec![
                    show(agg(v.iter().filter_map(|x| x.converge_s).collect()), 2),
                    v.iter()
                        .filter(|x| x.converge_s.is_none())
                        .count()
                        .to_string(),
                    show(agg(v.iter().filter_map(|x| x.recover_s).collect()), 2),
                    v.iter()
                        .filter(|x| x.recover_s.is_none())
                        .count()
                        .to_string(),
                    res.steps
                        .iter()
                        .filter(|x| &x.arm == arm && x.discarded.is_some())
                        .count()
                        .to_string(),
                ],
                ind,
            )
        });
        table(
            &mut s,
            &[
                "convergence s",
                "never converged",
                "recovery s",
                "never recovered",
                "discarded",
            ],
            arms_,
            rows,
        );
    }
    if !res.doublings.is_empty() {
        let _ = writeln!(
            s,
            "\n## Service time doubles mid-run (offered stays at 1× = 2× the new capacity)\n"
        );
        let _ = writeln!(
            s,
            "After: from 1 s after the doubling. Goodput as % of the halved capacity ({:.0} req/s), against the same bound.\n",
            cap / 2.0
        );
        let rows = arms_.iter().map(|arm| {
            let (v, ind) = used(&res.doublings, arm);
            let m = |f: &dyn Fn(&crate::runner::DoublingResult) -> f64| {
                show(agg(v.iter().map(|x| f(x)).collect()), 1)
            };
            (
                vec![
                    m(&|x| x.before.goodput() / cap * 100.0),
                    m(&|x| x.after.goodput() / (cap / 2.0) * 100.0),
                    m(&|x| x.after.p99_ms),
                    m(&|x| x.after.reject_pct()),
                    m(&|x| x.after.timeout_pct()),
                ],
                ind,
            )
        });
        table(
            &mut s,
            &[
                "goodput % before",
                "goodput % of cap/2 after",
                "p99 ms after",
                "reject % after",
                "timeout % after",
            ],
            arms_,
            rows,
        );
    }
    if !res.mixes.is_empty() {
        let _ = writeln!(s, "\n## 80/20 cheap (½ mean) / expensive (3× mean) at 3×\n");
        let rows = arms_.iter().map(|arm| {
            let (v, ind) = used(&res.mixes, arm);
            let m = |f: &dyn Fn(&crate::runner::MixResult) -> f64| {
                show(agg(v.iter().map(|x| f(x)).collect()), 1)
            };
            (
                vec![
                    m(&|x| x.all.goodput() / cap * 100.0),
                    m(&|x| x.cheap.p99_ms),
                    m(&|x| x.expensive.p99_ms),
                    m(&|x| x.cheap.reject_pct()),
                    m(&|x| x.expensive.reject_pct()),
                ],
                ind,
            )
        });
        table(
            &mut s,
            &[
                "goodput % cap",
                "p99 ms cheap",
                "p99 ms expensive",
                "reject % cheap",
                "reject % expensive",
            ],
            arms_,
            rows,
        );
    }
    if !res.classes.is_empty() {
        let _ = writeln!(
            s,
            "\n## Two classes at 3× (critical 30% = 0.9× capacity, sheddable 70%)\n"
        );
        let _ = writeln!(
            s,
            "Requests carry `x-weir-criticality`; an arm that ignores it treats both alike.\n"
        );
        let rows = arms_.iter().map(|arm| {
            let (v, ind) = used(&res.classes, arm);
            let m = |f: &dyn Fn(&crate::runner::ClassResult) -> f64| {
                show(agg(v.iter().map(|x| f(x)).collect()), 1)
            };
            (
                vec![
                    m(&|x| good_pct(&x.critical)),
                    m(&|x| good_pct(&x.sheddable)),
                    m(&|x| x.critical.reject_pct()),
                    m(&|x| (x.critical.goodput() + x.sheddable.goodput()) / cap * 100.0),
                ],
                ind,
            )
        });
        table(
            &mut s,
            &[
                "critical served in bound %",
                "sheddable served in bound %",
                "critical reject %",
                "total goodput % cap",
            ],
            arms_,
            rows,
        );
    }
    let lag = agg(res.points.iter().map(|p| p.lag_p99_ms).collect());
    let discarded: Vec<String> = res
        .points
        .iter()
        .filter_map(|p| {
            p.discarded
                .as_ref()
                .map(|d| format!("{} {}× seed {}: {d}", p.arm, p.mult, p.seed))
        })
        .collect();
    let _ = writeln!(s, "\n## Generator\n");
    let _ = writeln!(
        s,
        "p99 send lag over load-point runs: {} ms. Discarded runs: {}.",
        show(lag, 2),
        if discarded.is_empty() {
            "none".to_string()
        } else {
            discarded.join("; ")
        }
    );
    let _ = writeln!(s, "\n## Goals\n");
    for g in goals(res) {
        let _ = writeln!(
            s,
            "- **{}** — {}: {} ({})",
            g.arm,
            g.goal,
            if g.met { "MET" } else { "MISSED" },
            g.detail
        );
    }
    s
}
