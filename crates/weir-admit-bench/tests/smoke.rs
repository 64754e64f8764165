//! CI smoke subset of the benchmark: the real server (a child process) and the real
//! open-loop generator, short runs. Asserts behaviour, never timings: overload → the Weir
//! arm rejects, keeps the server's queue bounded and has fewer client timeouts, while no
//! limiter lets the queue grow; no overload → the Weir arm rejects (almost) nothing. Comparisons are
//! relative (arm against arm on the same machine), margins generous, so a loaded 2-core
//! machine passes too; no process is pinned. The learned controller (`weir-qlearn`) is
//! checked at 3× too: it is given no limit.

use std::path::PathBuf;
use std::time::Duration;

use weir_admit_bench::arms::ArmParams;
use weir_admit_bench::load::{self, LoadRun, LoadSpec, Phase, Probe};
use weir_admit_bench::runner::{BenchConfig, start_server};

const SLOTS: u32 = 8;
const SERVICE_MS: f64 = 20.0;
/// Generous: 4W, so a descheduled server (loaded CI machine) does not reject at 0.5×.
const LIMIT: u32 = 32;
const SECS: f64 = 3.0;

fn config() -> BenchConfig {
    let mut c = BenchConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_weir-admit-bench")));
    c.slots = SLOTS;
    c.service_ms = SERVICE_MS;
    c.cpu_us = 100;
    c.pin = false;
    c
}

/// W / mean service time.
fn capacity() -> f64 {
    f64::from(SLOTS) / (SERVICE_MS / 1000.0)
}

fn drive(arm: &str, mult: f64) -> LoadRun {
    let cfg = config();
    let p = ArmParams {
        limit: LIMIT,
        slots: SLOTS,
        latency_bound: Duration::from_millis(200),
    };
    let server = start_server(&cfg, false, arm, &p, 1).unwrap_or_else(|e| panic!("{arm}: {e}"));
    let spec = LoadSpec {
        addr: server.addr,
        phases: vec![Phase {
            secs: SECS,
            rate: mult * capacity(),
        }],
        seed: 1,
        expensive_frac: None,
        critical_frac: None,
        slo: Duration::from_millis(200),
        timeout: cfg.timeout,
        probes: vec![
            (1.5, Probe::Stats),
            (2.0, Probe::Stats),
            (2.5, Probe::Stats),
        ],
    };
    load::run_blocking(&spec).unwrap_or_else(|e| panic!("{arm} at {mult}×: {e}"))
}

/// Largest waiting + in-service the server reported during the run.
fn max_held(run: &LoadRun) -> u64 {
    let stats: Vec<_> = run.probes.iter().filter_map(|p| p.stats).collect();
    assert!(!stats.is_empty(), "no /stats answer: {:?}", run.probes);
    stats
        .iter()
        .map(|s| s.waiting + s.in_service)
        .max()
        .unwrap_or(0)
}

#[test]
fn overload_is_rejected_and_the_queue_stays_bounded_no_overload_is_admitted() {
    let none3 = drive("none", 3.0);
    let weir3 = drive("weir-static", 3.0);
    let weir05 = drive("weir-static", 0.5);

    let n = none3.window(0.0, SECS, |_| true);
    let w = weir3.window(0.0, SECS, |_| true);
    let low = weir05.window(0.0, SECS, |_| true);
    eprintln!("none 3×: {n:?}\nweir 3×: {w:?}\nweir 0.5×: {low:?}");

    // No limiter: nothing rejected, the server's queue grows past what Weir would allow.
    assert_eq!(n.rejected, 0, "none rejected: {n:?}");
    assert!(
        max_held(&none3) > u64::from(LIMIT),
        "no queue without a limiter: {:?}",
        none3.probes
    );

    // Weir at 3×: a large share rejected, never more than LIMIT held by the server, and
    // fewer client timeouts than without a limiter (whose queue grows by 2× capacity per
    // second until the 1 s client timeout). Latencies are the benchmark's to report
    // (docs/admit-bench.md), not a pass/fail here.
    assert!(w.offered > 0 && w.ok_in_slo + w.ok_late > 0, "{w:?}");
    assert!(w.reject_pct() > 20.0, "too few rejections at 3×: {w:?}");
    assert!(
        max_held(&weir3) <= u64::from(LIMIT),
        "the limit was not enforced: {:?}",
        weir3.probes
    );
    assert!(
        n.timed_out > 0,
        "no limiter, 3×, yet nothing timed out: {n:?}"
    );
    assert!(
        w.timed_out < n.timed_out,
        "weir timed out as much as none: {w:?} vs {n:?}"
    );

    // Weir at 0.5×: (almost) nothing rejected.
    assert!(low.offered > 0);
    assert!(
        low.reject_pct() < 0.5,
        "rejections without overload: {low:?}"
    );

    // The learned controller, untuned for this server, at 3×: it finds a limit that refuses
    // the overload and keeps the server's queue and the timeouts below the unlimited run's.
    let q3 = drive("weir-qlearn", 3.0);
    let q = q3.window(0.0, SECS, |_| true);
    eprintln!("qlearn 3×: {q:?}");
    assert!(
        q.reject_pct() > 20.0,
        "qlearn refused too little at 3×: {q:?}"
    );
    assert!(
        max_held(&q3) < max_held(&none3),
        "qlearn let the server's queue grow as far as no limiter: {:?} vs {:?}",
        q3.probes,
        none3.probes
    );
    assert!(q.timed_out < n.timed_out, "{q:?} vs {n:?}");
}
