//! `weir check`: validate the config, run every query once, read the target, and print the
//! exact change the current observation would produce — without sending it.

use anyhow::{Context, Result};
use weir_actuators::ActuatorConfig;
use weir_config::WeirConfig;
use weir_controller::ControlStep;
use weir_core::{Signal, Weights};
use weir_edge::Actuator;
use weir_policy::Loaded;
use weir_prom::{ProbeValues, QueryError, QueryReport, SignalId};
use weir_shield::Shield;

use crate::cli::CheckArgs;
use crate::run::build_policy;

fn show(s: &Signal) -> String {
    match (s.value, s.unknown) {
        (Some(v), _) => format!("{v:.3}"),
        (None, Some(why)) => format!("unknown ({why:?})"),
        (None, None) => "unknown".to_string(),
    }
}

/// One cause of failed queries and the queries it failed, in [`SignalId::ALL`] order.
struct Cause<'a> {
    error: &'a QueryError,
    signals: Vec<SignalId>,
}

/// The failed queries grouped by cause, in the order the causes first appear. Causes are the
/// same when their messages are: the same refused connection or timeout reads alike for
/// every query, while two different PromQL errors do not.
fn group_failures(reports: &[QueryReport]) -> Vec<Cause<'_>> {
    let mut causes: Vec<Cause<'_>> = Vec::new();
    for report in reports {
        let Err(error) = &report.result else {
            continue;
        };
        let text = error.to_string();
        match causes.iter_mut().find(|c| c.error.to_string() == text) {
            Some(cause) => cause.signals.push(report.signal),
            None => causes.push(Cause {
                error,
                signals: vec![report.signal],
            }),
        }
    }
    causes
}

/// Which of `causes` `error` belongs to.
fn cause_index(causes: &[Cause<'_>], error: &QueryError) -> usize {
    let text = error.to_string();
    causes
        .iter()
        .position(|c| c.error.to_string() == text)
        .unwrap_or(0)
}

/// One line for one cause: a query's own error names the query; a cause shared by several
/// queries names Prometheus, the cause once, the queries and what is left unknown.
fn describe_failure(address: &str, cause: &Cause<'_>, replicas: &[String]) -> String {
    let names: Vec<&str> = cause.signals.iter().map(|s| s.name()).collect();
    if let [one] = names.as_slice() {
        return format!("query {one}: {}", cause.error);
    }
    let mut unknown: Vec<String> = Vec::new();
    if cause.signals.iter().any(|s| s.is_replica()) {
        unknown.extend(replicas.iter().cloned());
    }
    if cause.signals.iter().any(|s| !s.is_replica()) {
        unknown.push("the primary".to_string());
    }
    let which = if cause.signals.len() == SignalId::ALL.len() {
        format!("every query failed ({})", names.join(", "))
    } else {
        format!(
            "{} of {} queries failed ({})",
            names.len(),
            SignalId::ALL.len(),
            names.join(", ")
        )
    };
    format!(
        "prometheus {address}: {} — {which}; no data for {}",
        cause.error,
        join_and(&unknown)
    )
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub fn run(args: CheckArgs) -> Result<()> {
    let cfg = WeirConfig::load(&args.config, std::env::vars())?;
    let actuator = ActuatorConfig::from_config(&cfg, &args.config.display().to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let problems = runtime.block_on(check(&args, &cfg, &actuator))?;
    if problems.is_empty() {
        println!("\ncheck: ok");
        Ok(())
    } else {
        println!("\ncheck: {} problem(s):", problems.len());
        for (i, p) in problems.iter().enumerate() {
            println!("  {}. {p}", i + 1);
        }
        anyhow::bail!("weir check found {} problem(s)", problems.len())
    }
}

async fn check(
    args: &CheckArgs,
    cfg: &WeirConfig,
    actuator: &ActuatorConfig,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let names = cfg.replica_names();
    let n = names.len();
    println!("config {}: ok", args.config.display());
    println!(
        "  mode {}, a decision every {}s, replicas: {}, policy {}, actuator {}",
        cfg.mode.as_str(),
        cfg.interval_s,
        names.join(", "),
        cfg.policy.kind,
        actuator.describe()
    );

    let address = cfg.prometheus.display_url();
    println!("\nprometheus {address}:");
    let source = cfg.prometheus.build().context("prometheus")?;
    // One round of queries gives both the per-query report and the observation decided on.
    let (reports, observed) = source.probe_and_observe(0.0).await;
    // The same cause (Prometheus down, a timeout, an auth error) is one problem, said once
    // with the queries it hit; the per-query lines point to it.
    let causes = group_failures(&reports);
    for report in &reports {
        println!("  {} = {}", report.signal.name(), report.query);
        match &report.result {
            Ok(ProbeValues::Primary(s)) => println!("      primary: {}", show(s)),
            Ok(ProbeValues::Replicas {
                per_replica,
                unmatched,
            }) => {
                for (name, s) in per_replica {
                    println!("      {name}: {}", show(s));
                }
                if !unmatched.is_empty() {
                    println!(
                        "      (series matching no configured replica: {})",
                        unmatched.join(", ")
                    );
                }
            }
            Err(e) => {
                let n = problems.len() + cause_index(&causes, e) + 1;
                println!("      error: see problem {n} below");
            }
        }
    }
    for cause in &causes {
        problems.push(describe_failure(&address, cause, &names));
    }
    let failed = |signal: SignalId| {
        reports
            .iter()
            .any(|r| r.signal == signal && r.result.is_err())
    };
    let observation = match observed {
        Ok(o) => {
            let lags_known = o
                .replicas
                .iter()
                .filter(|r| r.lag_s.value.is_some())
                .count();
            // A query that failed is already a problem; these hints are for queries that ran.
            if lags_known == 0 && !failed(SignalId::ReplicaLagS) {
                problems.push(
                    "no replica lag is known: check prometheus.queries.replica_lag_s and each replica's label_value"
                        .to_string(),
                );
            }
            if o.primary.cpu.value.is_none() && !failed(SignalId::PrimaryCpu) {
                problems.push(
                    "the primary's CPU is unknown: the shield will not let the primary take more reads (check prometheus.queries.primary_cpu)"
                        .to_string(),
                );
            }
            Some(o)
        }
        // Every query failed, each already reported above.
        Err(_) if reports.iter().all(|r| r.result.is_err()) => None,
        Err(e) => {
            problems.push(format!("prometheus {address}: {e}"));
            None
        }
    };

    let real = match actuator.build().await {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let current = match &real {
        Some(r) => match r.read_current(n).await {
            Ok(w) => {
                println!(
                    "\ntarget: current weights {w} (primary/{})",
                    names.join("/")
                );
                w
            }
            Err(e) => {
                problems.push(format!("actuator: {e}"));
                Weights::even(n)
            }
        },
        None => {
            println!("\ntarget: dry-run actuator (nothing to read); assuming even replica weights");
            Weights::even(n)
        }
    };

    if let Some(obs) = observation {
        let Loaded {
            policy,
            description: desc,
        } = build_policy(cfg)?;
        let shield =
            Shield::new(cfg.shield.clone(), cfg.slo.clone(), n).with_priorities(&cfg.priorities);
        let mut step: ControlStep = ControlStep::new(
            policy,
            shield,
            cfg.slo.clone(),
            cfg.priorities.clone(),
            current.clone(),
            8,
        );
        let out = step.step(obs, None);
        let d = &out.decision;
        println!("\ndecision now ({desc}):");
        println!(
            "  policy proposes {}: {}",
            d.proposal.weights, d.proposal.reason
        );
        for i in &d.interventions {
            println!("  shield {}: {}", i.rule, i.detail);
        }
        println!("  would apply {} (from {current})", d.weights);
        match &real {
            Some(r) if d.weights != current => match r.plan(d).await {
                Ok(lines) => {
                    println!("  exactly this would be sent (not sent):");
                    for l in lines {
                        for line in l.lines() {
                            println!("    {line}");
                        }
                    }
                }
                Err(e) => problems.push(format!("planning the change: {e}")),
            },
            Some(_) => println!("  nothing would be sent: the weights already match"),
            None => {}
        }
    }
    if let Some(note) = real.as_ref().and_then(Actuator::connection_note) {
        println!("\nnote: {note}");
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(signal: SignalId, result: Result<(), QueryError>) -> QueryReport {
        QueryReport {
            signal,
            query: "q".to_string(),
            eval_ts: None,
            result: result.map(|()| ProbeValues::Primary(Signal::fresh(1.0))),
        }
    }

    #[test]
    fn failures_are_grouped_by_cause_and_each_cause_is_one_line() {
        let refused = || QueryError::Unreachable("connection refused".to_string());
        let reports: Vec<QueryReport> = SignalId::ALL
            .into_iter()
            .map(|s| match s {
                SignalId::PrimaryCpu => report(s, Ok(())),
                SignalId::ReplicaUp => report(
                    s,
                    Err(QueryError::Api {
                        error_type: "bad_data".to_string(),
                        error: "parse error".to_string(),
                    }),
                ),
                _ => report(s, Err(refused())),
            })
            .collect();
        let causes = group_failures(&reports);
        assert_eq!(causes.len(), 2);
        assert_eq!(cause_index(&causes, &refused()), 0);
        let replicas = ["r1".to_string(), "r2".to_string()];
        let lines: Vec<String> = causes
            .iter()
            .map(|c| describe_failure("http://prom:9090", c, &replicas))
            .collect();
        assert_eq!(
            lines[0],
            "prometheus http://prom:9090: unreachable: connection refused — 6 of 8 queries \
             failed (replica_lag_s, replica_read_qps, replica_read_p99_ms, primary_read_qps, \
             primary_write_qps, primary_read_p99_ms); no data for r1, r2 and the primary"
        );
        // A query's own error names the query.
        assert_eq!(
            lines[1],
            "query replica_up: prometheus error (bad_data): parse error"
        );
    }
}
