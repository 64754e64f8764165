//! The policy benchmark: every policy on every scenario with the same seeds.
//!
//! Output is deterministic: the same options give byte-identical JSON, CSV and tables, with
//! any number of worker threads (jobs are independent and results are placed by index).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use weir_policy::{Model, PolicyError, PolicyKind};
use weir_sim::Scenario;

use crate::EvalError;
use crate::episode::{Agent, EpisodeMetrics, PolicySpec, RunOptions, run_episode};
use crate::horizon::HORIZON;
use crate::oracle::LOOKAHEAD;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Scenarios.
    pub scenarios: Vec<Scenario>,
    /// Policies.
    pub policies: Vec<PolicySpec>,
    /// Seeds; each scenario runs once per seed, every policy with the same seeds.
    pub seeds: Vec<u64>,
    /// The trained models, at most one per learned policy (each learned policy among the
    /// policies needs the model of its kind).
    pub models: Vec<Model>,
    /// Reward and shield settings.
    pub run: RunOptions,
    /// Worker threads.
    pub threads: usize,
}

impl BenchOptions {
    /// The model of a learned policy, if given.
    pub fn model_for(&self, kind: PolicyKind) -> Option<&Model> {
        self.models.iter().find(|m| m.kind() == kind)
    }
}

/// One episode's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Scenario name.
    pub scenario: String,
    /// Policy label.
    pub policy: String,
    /// Seed (as given; the simulator seed is derived from it and the scenario's seed).
    pub seed: u64,
    /// Metrics.
    #[serde(flatten)]
    pub metrics: EpisodeMetrics,
}

/// Means over seeds (per scenario) or over scenarios (`scenario = "ALL"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name or `ALL`.
    pub scenario: String,
    /// Policy label.
    pub policy: String,
    /// Episodes averaged.
    pub runs: usize,
    /// Mean metrics (counts are means too).
    #[serde(flatten)]
    pub metrics: MeanMetrics,
    /// `(R − R_static) / (R_reference − R_static)`, the reference being the run's
    /// [`BenchReport::reference`] oracle; `None` when static or an oracle is not in the run or
    /// they tie.
    pub score: Option<f64>,
}

/// Metrics averaged over runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MeanMetrics {
    /// Stale reads, percent.
    pub stale_read_pct: f64,
    /// Mean staleness of stale reads, seconds.
    pub mean_staleness_s: f64,
    /// Failed reads, percent.
    pub failed_read_pct: f64,
    /// Seconds with primary CPU above its cap.
    pub cpu_over_max_s: f64,
    /// Primary CPU p95, percent.
    pub primary_cpu_p95_pct: f64,
    /// Mean read p99, milliseconds.
    pub mean_read_p99_ms: f64,
    /// Weight changes.
    pub weight_changes: f64,
    /// Of those, where the shield altered the proposal ([`EpisodeMetrics::changes_by_shield`]).
    #[serde(default)]
    pub changes_by_shield: f64,
    /// Of those, made by a learned policy's fallback rule
    /// ([`EpisodeMetrics::changes_by_fallback`]).
    #[serde(default)]
    pub changes_by_fallback: f64,
    /// Mean reward per interval.
    pub mean_reward: f64,
    /// Shield interventions.
    pub shield_interventions: f64,
    /// Share of decisions where a learned policy fell back on a rule, percent.
    #[serde(default)]
    pub fallback_pct: f64,
    /// Hard-limit breaches after the shield (watch-only for bare baselines).
    pub hard_limit_violations: f64,
}

impl MeanMetrics {
    fn mean<'a>(ms: impl Iterator<Item = &'a EpisodeMetrics>) -> (MeanMetrics, usize) {
        let mut s = MeanMetrics::default();
        let mut n = 0usize;
        for m in ms {
            n += 1;
            s.stale_read_pct += m.stale_read_pct;
            s.mean_staleness_s += m.mean_staleness_s;
            s.failed_read_pct += m.failed_read_pct;
            s.cpu_over_max_s += m.cpu_over_max_s;
            s.primary_cpu_p95_pct += m.primary_cpu_p95_pct;
            s.mean_read_p99_ms += m.mean_read_p99_ms;
            s.weight_changes += m.weight_changes as f64;
            s.changes_by_shield += m.changes_by_shield as f64;
            s.changes_by_fallback += m.changes_by_fallback as f64;
            s.mean_reward += m.mean_reward;
            s.shield_interventions += m.shield_interventions as f64;
            s.fallback_pct += if m.decisions > 0 {
                100.0 * m.fallbacks as f64 / m.decisions as f64
            } else {
                0.0
            };
            s.hard_limit_violations += m.hard_limit_violations as f64;
        }
        if n > 0 {
            let k = n as f64;
            for v in [
                &mut s.stale_read_pct,
                &mut s.mean_staleness_s,
                &mut s.failed_read_pct,
                &mut s.cpu_over_max_s,
                &mut s.primary_cpu_p95_pct,
                &mut s.mean_read_p99_ms,
                &mut s.weight_changes,
                &mut s.changes_by_shield,
                &mut s.changes_by_fallback,
                &mut s.mean_reward,
                &mut s.shield_interventions,
                &mut s.fallback_pct,
                &mut s.hard_limit_violations,
            ] {
                *v /= k;
            }
        }
        (s, n)
    }
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Scenario names, in order.
    pub scenarios: Vec<String>,
    /// Policy labels, in order.
    pub policies: Vec<String>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// The oracle the scores are normalised against: `horizon` when it is in the run, else
    /// `lookahead`; `None` when neither is.
    #[serde(default)]
    pub reference: Option<String>,
    /// The switch cost the oracles planned with, when not the reward's own
    /// ([`RunOptions::oracle_switch_cost`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_switch_cost: Option<f64>,
    /// The oracles planned without foresight ([`RunOptions::oracle_without_foresight`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oracle_without_foresight: bool,
    /// Per-scenario means, then `ALL`.
    pub summary: Vec<Summary>,
    /// Every episode.
    pub runs: Vec<Run>,
}

/// The simulator seed for a scenario and a benchmark seed.
pub fn episode_seed(scn: &Scenario, seed: u64) -> u64 {
    scn.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed
}

/// Runs the benchmark.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, EvalError> {
    if opts.scenarios.is_empty() || opts.policies.is_empty() || opts.seeds.is_empty() {
        return Err(EvalError::Nothing(
            "the benchmark needs at least one scenario, one policy and one seed",
        ));
    }
    for p in &opts.policies {
        if let crate::Entrant::Policy(kind) = p.entrant
            && kind.needs_model()
            && opts.model_for(kind).is_none()
        {
            return Err(PolicyError::NeedsModel(kind).into());
        }
    }
    let jobs: Vec<(usize, usize, usize)> = (0..opts.scenarios.len())
        .flat_map(|s| {
            (0..opts.policies.len())
                .flat_map(move |p| (0..opts.seeds.len()).map(move |k| (s, p, k)))
        })
        .collect();
    let results: Mutex<Vec<Option<Result<Run, EvalError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let threads = opts.threads.clamp(1, 64);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(s, p, k)) = jobs.get(i) else { break };
                    let scn = &opts.scenarios[s];
                    let spec = &opts.policies[p];
                    let seed = opts.seeds[k];
                    let model = match spec.entrant {
                        crate::Entrant::Policy(kind) => opts.model_for(kind),
                        crate::Entrant::Lookahead | crate::Entrant::Horizon => None,
                    };
                    let r = Agent::build(spec, model, &opts.run).map(|agent| {
                        let (metrics, _) =
                            run_episode(scn, episode_seed(scn, seed), agent, &opts.run, None);
                        Run {
                            scenario: scn.name.clone(),
                            policy: spec.label(),
                            seed,
                            metrics,
                        }
                    });
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| EvalError::Worker("a benchmark worker panicked"))?;
    let mut runs = Vec::with_capacity(results.len());
    for r in results {
        runs.push(r.ok_or(EvalError::Worker("a benchmark job did not run"))??);
    }
    let policies: Vec<String> = opts.policies.iter().map(PolicySpec::label).collect();
    let scenarios: Vec<String> = opts.scenarios.iter().map(|s| s.name.clone()).collect();
    // The reference: the receding-horizon oracle when it ran, else the one-step lookahead.
    let reference = [HORIZON, LOOKAHEAD]
        .into_iter()
        .find(|o| policies.iter().any(|p| p == o))
        .map(str::to_string);
    let mut summary = Vec::new();
    for name in scenarios
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("ALL"))
    {
        let rows: Vec<Summary> = policies
            .iter()
            .map(|p| {
                let (metrics, n) = MeanMetrics::mean(
                    runs.iter()
                        .filter(|r| &r.policy == p && (name == "ALL" || r.scenario == name))
                        .map(|r| &r.metrics),
                );
                Summary {
                    scenario: name.to_string(),
                    policy: p.clone(),
                    runs: n,
                    metrics,
                    score: None,
                }
            })
            .collect();
        let reward_of = |label: &str| {
            rows.iter()
                .find(|r| r.policy == label)
                .map(|r| r.metrics.mean_reward)
        };
        let (r_static, r_oracle) = (
            reward_of(PolicyKind::Static.as_str()),
            reference.as_deref().and_then(reward_of),
        );
        for mut row in rows.clone() {
            if let (Some(s), Some(o)) = (r_static, r_oracle)
                && (o - s).abs() > 1e-9
            {
                row.score = Some((row.metrics.mean_reward - s) / (o - s));
            }
            summary.push(row);
        }
    }
    Ok(BenchReport {
        scenarios,
        policies,
        seeds: opts.seeds.clone(),
        reference,
        oracle_switch_cost: opts.run.oracle_switch_cost,
        oracle_without_foresight: opts.run.oracle_without_foresight,
        summary,
        runs,
    })
}

impl BenchReport {
    /// Pretty JSON (deterministic).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// One CSV line per episode, then the summaries (scenario `ALL` for the overall means).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "kind,scenario,policy,seed,runs,stale_read_pct,mean_staleness_s,failed_read_pct,cpu_over_max_s,primary_cpu_p95_pct,mean_read_p99_ms,weight_changes,mean_reward,shield_interventions,hard_limit_violations,fallback_pct,score,changes_by_shield,changes_by_fallback\n",
        );
        let mut row = |kind: &str,
                       scenario: &str,
                       policy: &str,
                       seed: String,
                       runs: usize,
                       m: &MeanMetrics,
                       score: Option<f64>| {
            let _ = writeln!(
                out,
                "{kind},{scenario},{policy},{seed},{runs},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{:.6},{},{},{:.6},{},{:.6},{:.6}",
                m.stale_read_pct,
                m.mean_staleness_s,
                m.failed_read_pct,
                m.cpu_over_max_s,
                m.primary_cpu_p95_pct,
                m.mean_read_p99_ms,
                m.weight_changes,
                m.mean_reward,
                m.shield_interventions,
                m.hard_limit_violations,
                m.fallback_pct,
                score.map_or(String::new(), |x| format!("{x:.6}")),
                m.changes_by_shield,
                m.changes_by_fallback
            );
        };
        for r in &self.runs {
            let (m, _) = MeanMetrics::mean(std::iter::once(&r.metrics));
            row(
                "run",
                &r.scenario,
                &r.policy,
                r.seed.to_string(),
                1,
                &m,
                None,
            );
        }
        for s in &self.summary {
            row(
                "summary",
                &s.scenario,
                &s.policy,
                String::new(),
                s.runs,
                &s.metrics,
                s.score,
            );
        }
        out
    }

    /// Markdown tables: one per scenario, then the overall means, after a line naming the
    /// score's reference.
    pub fn to_table(&self) -> String {
        let mut out = match &self.reference {
            Some(r) => format!("score = (R − R_static) / (R_{r} − R_static), reference: {r}\n"),
            None => "score: n/a (no oracle in the run)\n".to_string(),
        };
        if let Some(c) = self.oracle_switch_cost {
            let _ = writeln!(
                out,
                "the oracles planned with a switch cost of {c} (every run is scored with the reward's own)"
            );
        }
        if self.oracle_without_foresight {
            out.push_str(
                "the oracles planned without foresight (no future events, noise at its mean)\n",
            );
        }
        let mut current = "";
        for s in &self.summary {
            if s.scenario != current {
                current = &s.scenario;
                let title = if current == "ALL" {
                    format!(
                        "Overall (mean over {} scenarios × {} seeds)",
                        self.scenarios.len(),
                        self.seeds.len()
                    )
                } else {
                    format!("{current} ({} seeds)", self.seeds.len())
                };
                let _ = writeln!(out, "\n### {title}\n");
                out.push_str("| policy | stale % | staleness s | failed % | cpu>max s | cpu p95 % | p99 ms | changes | by shield | by fallback | reward | shield | breaches | fallback % | score |\n");
                out.push_str(
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                );
            }
            let m = &s.metrics;
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.1} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.1} | {} |",
                s.policy,
                m.stale_read_pct,
                m.mean_staleness_s,
                m.failed_read_pct,
                m.cpu_over_max_s,
                m.primary_cpu_p95_pct,
                m.mean_read_p99_ms,
                m.weight_changes,
                m.changes_by_shield,
                m.changes_by_fallback,
                m.mean_reward,
                m.shield_interventions,
                m.hard_limit_violations,
                m.fallback_pct,
                s.score.map_or("n/a".to_string(), |x| format!("{x:.2}"))
            );
        }
        out
    }
}
