//! Compares controllers in the simulator: `qlearn` (the shipped table, or `--table FILE`),
//! `static` at the calibrated limit (the worker count) and no limiter, at 0.5/1/2/3/5× of
//! capacity, a step 1× → 3× → 1× and a service-time doubling at 2×.
//!
//! `cargo run --release -p weir-admit --example admit_sim -- [--table FILE] [--workers W]
//! [--service-ms MS] [--seeds N]`

use std::path::PathBuf;
use std::sync::Arc;

use weir_admit::qlearn::table::QTable;
use weir_admit::sim::{LoadStep, ServiceChange, Shape, Sim, SimConfig, SimResult};
use weir_admit::{Controller, CpuGauge, QLearn, QLearnConfig, Static};

fn run(c: &SimConfig, which: &str, table: &QTable) -> SimResult {
    let sim = Sim::new(c.clone()).unwrap_or_else(|e| panic!("{e}"));
    let ctl: Arc<dyn Controller> = match which {
        "qlearn" => Arc::new(
            QLearn::new(
                QLearnConfig::default(),
                table.clone(),
                Some(sim.cpu_gauge() as Arc<dyn CpuGauge>),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        ),
        "static" => Arc::new(Static::new(c.workers).unwrap_or_else(|e| panic!("{e}"))),
        _ => Arc::new(Static::new(u32::MAX).unwrap_or_else(|e| panic!("{e}"))),
    };
    sim.run(ctl)
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Seconds after `at_s` until 5 intervals (0.1 s) in a row have p99 ≤ `bound_ms` and good
/// answers ≥ 80% of min(load after the step, 1) × capacity.
fn settle(r: &SimResult, c: &SimConfig, at_s: f64, bound_ms: f64) -> f64 {
    let want = c.capacity_rps() * c.series_interval_s * c.load_at(at_s).min(1.0) * 0.8;
    let ok: Vec<bool> = r
        .series
        .iter()
        .map(|s| s.p99_ms <= bound_ms && s.good as f64 >= want)
        .collect();
    let first = r.series.iter().position(|s| s.start_s >= at_s - 1e-9);
    let Some(first) = first else { return f64::NAN };
    (first..ok.len().saturating_sub(5))
        .find(|&i| ok[i..i + 5].iter().all(|&b| b))
        .map_or(f64::INFINITY, |i| r.series[i].start_s - at_s)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut table = QTable::embedded().unwrap_or_default();
    let (mut workers, mut service_ms, mut seeds) = (32u32, 5.0f64, 3u64);
    while let Some(a) = args.next() {
        let v = args.next().ok_or("missing value")?;
        match a.as_str() {
            "--table" => table = QTable::load(&PathBuf::from(v))?,
            "--workers" => workers = v.parse()?,
            "--service-ms" => service_ms = v.parse()?,
            "--seeds" => seeds = v.parse()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let base = SimConfig {
        workers,
        service_mean_ms: service_ms,
        shape: Shape::LogNormal { sigma: 0.5 },
        timeout_ms: Some(1000.0),
        slo_ms: 2.0 * service_ms,
        duration_s: 20.0,
        warmup_s: 5.0,
        ..SimConfig::default()
    };
    let unloaded = run(
        &SimConfig {
            load: vec![LoadStep {
                at_s: 0.0,
                load: 0.1,
            }],
            ..base.clone()
        },
        "none",
        &table,
    );
    println!(
        "server: {workers} workers, lognormal(sigma 0.5) service mean {service_ms} ms, capacity {:.0}/s, SLO {} ms, timeout 1 s; unloaded p99 {:.2} ms; {seeds} seeds, median [min..max]",
        base.capacity_rps(),
        base.slo_ms,
        unloaded.p99_ms
    );
    println!(
        "| run | controller | goodput / capacity | p99 ms | p99 / unloaded p99 | rejected % | settle s (after each step) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut runs: Vec<(String, SimConfig, Vec<f64>)> = [0.5, 1.0, 2.0, 3.0, 5.0]
        .iter()
        .map(|&l| {
            (
                format!("{l}x"),
                SimConfig {
                    load: vec![LoadStep { at_s: 0.0, load: l }],
                    ..base.clone()
                },
                Vec::new(),
            )
        })
        .collect();
    runs.push((
        "step 1x>3x>1x".into(),
        SimConfig {
            load: vec![
                LoadStep {
                    at_s: 0.0,
                    load: 1.0,
                },
                LoadStep {
                    at_s: 10.0,
                    load: 3.0,
                },
                LoadStep {
                    at_s: 20.0,
                    load: 1.0,
                },
            ],
            duration_s: 30.0,
            ..base.clone()
        },
        vec![10.0, 20.0],
    ));
    runs.push((
        "2x, service x2 at 15s".into(),
        SimConfig {
            load: vec![LoadStep {
                at_s: 0.0,
                load: 2.0,
            }],
            service_changes: vec![ServiceChange {
                at_s: 15.0,
                factor: 2.0,
            }],
            duration_s: 30.0,
            ..base.clone()
        },
        Vec::new(),
    ));
    for (name, c, step) in &runs {
        for which in ["qlearn", "static", "none"] {
            let rs: Vec<(SimResult, SimConfig)> = (0..seeds)
                .map(|s| {
                    let c = SimConfig {
                        seed: 1000 + s,
                        ..c.clone()
                    };
                    (run(&c, which, &table), c)
                })
                .collect();
            let g = median(rs.iter().map(|(r, _)| r.goodput_share()).collect());
            let p = median(rs.iter().map(|(r, _)| r.p99_ms).collect());
            let rej = median(
                rs.iter()
                    .map(|(r, _)| 100.0 * r.rejected as f64 / r.offered.max(1) as f64)
                    .collect(),
            );
            let settle_s: Vec<String> = step
                .iter()
                .map(|&at| {
                    let s = median(
                        rs.iter()
                            .map(|(r, c)| settle(r, c, at, 2.0 * unloaded.p99_ms))
                            .collect(),
                    );
                    format!("{:.1} [{:.1}..{:.1}]", s.0, s.1, s.2)
                })
                .collect();
            println!(
                "| {name} | {which} | {:.3} [{:.3}..{:.3}] | {:.1} [{:.1}..{:.1}] | {:.2} | {:.1} | {} |",
                g.0,
                g.1,
                g.2,
                p.0,
                p.1,
                p.2,
                p.0 / unloaded.p99_ms,
                rej.0,
                if settle_s.is_empty() {
                    "-".to_string()
                } else {
                    settle_s.join(" / ")
                },
            );
        }
    }
    Ok(())
}
