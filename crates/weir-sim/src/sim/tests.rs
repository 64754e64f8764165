use super::*;
use weir_core::Weights;

/// A two-replica cluster with room to spare, plus `extra` TOML (events, overrides).
fn scenario(extra: &str) -> Scenario {
    scenario_with("", extra)
}

fn scenario_with(timing: &str, events: &str) -> Scenario {
    // Exact observations unless the test asks for noise.
    let timing = if timing.contains("metric_noise") {
        timing.to_string()
    } else {
        format!("metric_noise = 0.0\n{timing}")
    };
    let text = format!(
        r#"
name = "test"
duration_s = 3600
[timing]
{timing}
[primary]
capacity = 4000
write_cost = 3
base_latency_ms = 2
[[replicas]]
name = "replica-1"
capacity = 3000
apply_capacity = 1000
read_apply_interference = 0.6
base_latency_ms = 2
[[replicas]]
name = "replica-2"
capacity = 3000
apply_capacity = 1000
read_apply_interference = 0.6
base_latency_ms = 2
[workload]
read_qps = 2000
write_qps = 300
{events}
"#
    );
    match Scenario::from_toml_str(&text, "test.toml") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn run_until(sim: &mut Simulator, t: f64) -> IntervalStats {
    let now = sim.now_s();
    sim.run_for(t - now)
}

#[test]
fn lag_grows_during_a_stall_and_drains_after() {
    let s = scenario(
        r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 100
duration_s = 300"#,
    );
    let mut sim = Simulator::new(&s, 1);
    run_until(&mut sim, 100.0);
    assert_eq!(sim.true_lag_s(0), Some(0.0));
    run_until(&mut sim, 250.0);
    let mid = sim.truth().replicas[0].lag_s;
    assert!(
        (mid - 150.0).abs() <= 2.0,
        "lag after 150 s of stall: {mid}"
    );
    run_until(&mut sim, 400.0);
    let peak = sim.truth().replicas[0].lag_s;
    assert!(
        (peak - 300.0).abs() <= 2.0,
        "lag after 300 s of stall: {peak}"
    );
    assert_eq!(
        sim.true_lag_s(1),
        Some(0.0),
        "the other replica is unaffected"
    );
    // Apply (1000 · (1 − 0.6 · 1/3) = 800/s) beats writes (300/s): it drains.
    run_until(&mut sim, 450.0);
    let draining = sim.truth().replicas[0].lag_s;
    assert!(draining < peak - 50.0, "{draining} vs {peak}");
    run_until(&mut sim, 800.0);
    assert_eq!(sim.true_lag_s(0), Some(0.0), "caught up");
}

#[test]
fn stalled_replica_reads_are_stale() {
    let s = scenario(
        r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 0
duration_s = 600"#,
    );
    let mut sim = Simulator::new(&s, 1);
    run_until(&mut sim, 10.0);
    let stats = sim.run_for(60.0);
    assert!(
        (stats.stale_fraction() - 0.5).abs() < 1e-9,
        "{}",
        stats.stale_fraction()
    );
    assert!(stats.mean_staleness_s() > 10.0);
    // Shunning the replica removes the stale reads.
    sim.set_weights(&Weights::from_parts(0.0, &[0.0, 1.0]));
    let stats = sim.run_for(60.0);
    assert_eq!(stats.stale_reads, 0.0);
}

#[test]
fn reads_to_a_down_replica_fail() {
    let s = scenario(
        r#"[[events]]
kind = "replica_down"
target = "replica-2"
at_s = 30
duration_s = 120"#,
    );
    let mut sim = Simulator::new(&s, 1);
    let before = run_until(&mut sim, 30.0);
    assert_eq!(before.failed_reads, 0.0);
    let during = sim.run_for(60.0);
    assert!(
        (during.failed_fraction() - 0.5).abs() < 1e-9,
        "{}",
        during.failed_fraction()
    );
    let truth = sim.truth();
    assert!(!truth.replicas[1].up);
    assert_eq!(truth.replicas[1].apply_qps, 0.0);
    let obs = sim.observe();
    assert_eq!(obs.replicas[1].up, Some(false));
    assert_eq!(obs.replicas[1].lag_s.unknown, Some(Unknown::TargetDown));
    assert_eq!(obs.replicas[0].up, Some(true));
    sim.set_weights(&Weights::from_parts(0.2, &[1.0, 0.0]));
    let shunned = sim.run_for(30.0);
    assert_eq!(shunned.failed_reads, 0.0);
    // After it comes back it catches up.
    run_until(&mut sim, 600.0);
    assert!(sim.truth().replicas[1].up);
    assert_eq!(sim.true_lag_s(1), Some(0.0));
}

#[test]
fn reads_above_capacity_fail() {
    let s = scenario("");
    let mut sim = Simulator::new(&s, 1);
    // 2000 reads/s to one replica of capacity 3000: fine.
    sim.set_weights(&Weights::from_parts(0.0, &[1.0, 0.0]));
    assert_eq!(sim.run_for(10.0).failed_reads, 0.0);
    // With a 2x surge, 4000 reads/s: 1000/s fail.
    let s = scenario(
        r#"[[events]]
kind = "read_surge"
at_s = 0
duration_s = 100
factor = 2.0"#,
    );
    let mut sim = Simulator::new(&s, 1);
    sim.set_weights(&Weights::from_parts(0.0, &[1.0, 0.0]));
    let stats = sim.run_for(10.0);
    assert!(
        (stats.failed_reads - 10_000.0).abs() < 1e-6,
        "{}",
        stats.failed_reads
    );
    assert!(sim.truth().replicas[0].utilisation > 1.3);
    // The primary: writes 900 units, all 4000 reads → demand 1.225; 900 reads/s fail.
    sim.set_weights(&Weights::all_primary(2));
    let stats = sim.run_for(10.0);
    assert!(
        (stats.failed_reads - 9_000.0).abs() < 1e-6,
        "{}",
        stats.failed_reads
    );
    assert_eq!(stats.primary_cpu_max, 1.0);
    assert!(sim.truth().primary_demand > 1.2);
}

#[test]
fn primary_cpu_rises_when_weight_moves_to_the_primary() {
    let s = scenario("");
    let mut sim = Simulator::new(&s, 1);
    let replicas_only = sim.run_for(30.0).mean_primary_cpu();
    assert!(
        (replicas_only - 900.0 / 4000.0).abs() < 1e-9,
        "{replicas_only}"
    );
    sim.set_weights(&Weights::from_parts(0.5, &[1.0, 1.0]));
    let half = sim.run_for(30.0);
    assert!((half.mean_primary_cpu() - 1900.0 / 4000.0).abs() < 1e-9);
    assert!(half.mean_read_p99_ms() > 2.0);
    let p99_low = sim.truth().primary_read_p99_ms;
    sim.set_weights(&Weights::from_parts(0.7, &[1.0, 1.0]));
    sim.run_for(30.0);
    assert!(sim.truth().primary_cpu > 0.55);
    assert!(
        sim.truth().primary_read_p99_ms > p99_low,
        "latency rises with load"
    );
}

#[test]
fn heavy_read_load_slows_apply() {
    // Writes 600/s. Light load: apply 1000·(1 − 0.6·1/3) = 800 > 600, caught up.
    let s = scenario(
        r#"[[events]]
kind = "write_burst"
at_s = 0
duration_s = 3600
factor = 2.0"#,
    );
    let mut sim = Simulator::new(&s, 1);
    sim.run_for(300.0);
    assert_eq!(sim.true_lag_s(0), Some(0.0));
    // All reads on replica-1: util 2/3 → apply 1000·(1 − 0.4) = 600, no margin left.
    sim.set_weights(&Weights::from_parts(0.0, &[1.0, 0.0]));
    sim.run_for(1.0);
    let apply = sim.truth().replicas[0].apply_qps;
    assert!((apply - 600.0).abs() < 1e-6, "{apply}");
    // Heavier: a 1.5x read surge puts the replica at full utilisation.
    let s = scenario(
        r#"[[events]]
kind = "write_burst"
at_s = 0
duration_s = 3600
factor = 2.0
[[events]]
kind = "read_surge"
at_s = 300
duration_s = 3000
factor = 1.5"#,
    );
    let mut sim = Simulator::new(&s, 1);
    sim.run_for(300.0);
    assert_eq!(sim.true_lag_s(0), Some(0.0));
    sim.set_weights(&Weights::from_parts(0.0, &[1.0, 0.0]));
    sim.run_for(120.0);
    // util = 1 → apply 400 < 600 writes: lag grows at ~(1 − 400/600) s/s.
    let t = sim.truth();
    assert!((t.replicas[0].apply_qps - 400.0).abs() < 1e-6);
    assert!(t.replicas[0].lag_s > 30.0, "{}", t.replicas[0].lag_s);
    assert_eq!(t.replicas[1].lag_s, 0.0, "the idle replica keeps up");
}

#[test]
fn slow_and_degraded_events_apply_their_factors() {
    let s = scenario(
        r#"[[events]]
kind = "replica_slow"
target = "replica-2"
at_s = 0
duration_s = 100
factor = 0.25
[[events]]
kind = "primary_degraded"
at_s = 0
duration_s = 100
factor = 0.5"#,
    );
    let mut sim = Simulator::new(&s, 1);
    sim.run_for(60.0);
    let t = sim.truth();
    assert!((t.replicas[1].apply_qps - 800.0 * 0.25).abs() < 1e-9);
    assert!((t.replicas[0].apply_qps - 800.0).abs() < 1e-9);
    assert!((t.primary_cpu - 900.0 / 2000.0).abs() < 1e-9);
    // Apply 200/s against 300 writes/s: lag grows at about 1/3 s/s.
    assert!(
        (t.replicas[1].lag_s - 20.0).abs() < 2.0,
        "{}",
        t.replicas[1].lag_s
    );
    assert_eq!(t.replicas[0].lag_s, 0.0);
}

#[test]
fn same_seed_is_identical_and_another_seed_differs() {
    let mut s = scenario_with("metric_noise = 0.05", "");
    s.workload.noise = 0.1;
    s.workload.diurnal_amplitude = 0.3;
    s.workload.diurnal_period_s = 600.0;
    let trace = |seed: u64| {
        let mut sim = Simulator::new(&s, seed);
        let mut ticks = Vec::new();
        let mut obs = Vec::new();
        while !sim.done() && sim.now_s() < 600.0 {
            ticks.push(sim.step());
            if sim.ticks().is_multiple_of(15) {
                obs.push(sim.observe());
            }
        }
        (ticks, obs)
    };
    let a = trace(7);
    let b = trace(7);
    let c = trace(8);
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
    assert_ne!(a.1, c.1);
    // Noise never makes load negative.
    assert!(a.0.iter().all(|t| t.reads > 0.0));
}

#[test]
fn nothing_is_known_before_the_first_scrape() {
    let s = scenario("");
    let sim = Simulator::new(&s, 1);
    let obs = sim.observe();
    assert_eq!(obs.at_s, 0.0);
    assert_eq!(obs.primary.cpu.unknown, Some(Unknown::NeverSeen));
    assert_eq!(obs.replicas.len(), 2);
    assert_eq!(obs.replicas[0].name, "replica-1");
    assert_eq!(obs.replicas[0].up, None);
    assert_eq!(obs.replicas[1].lag_s.unknown, Some(Unknown::NeverSeen));
    assert_eq!(obs.freshest_age_s(), None);
}

#[test]
fn observation_is_complete_and_ages_are_bounded() {
    let s = scenario_with("scrape_interval_s = 10\nscrape_delay_s = 3", "");
    let mut sim = Simulator::new(&s, 4);
    sim.run_for(15.0);
    for _ in 0..100 {
        sim.run_for(5.0);
        let obs = sim.observe();
        let age = obs.primary.cpu.age_s.expect("known after the first 15 s");
        assert!((3.0..=14.0).contains(&age), "age {age} at {}", obs.at_s);
        for sig in [
            obs.primary.cpu,
            obs.primary.read_qps,
            obs.primary.write_qps,
            obs.primary.read_p99_ms,
        ] {
            assert!(sig.value.is_some());
        }
        for r in &obs.replicas {
            assert_eq!(r.up, Some(true));
            assert!(r.lag_s.value.is_some_and(|v| (0.0..=0.5).contains(&v)));
            assert!(r.read_qps.value.is_some_and(|v| (v - 1000.0).abs() < 1.0));
            assert!(r.read_p99_ms.value.is_some());
        }
        assert!(
            obs.primary
                .write_qps
                .value
                .is_some_and(|v| (v - 300.0).abs() < 1.0)
        );
    }
}

#[test]
fn metrics_gap_makes_observations_age() {
    let s = scenario(
        r#"[[events]]
kind = "metrics_gap"
at_s = 120
duration_s = 180"#,
    );
    let mut sim = Simulator::new(&s, 1);
    run_until(&mut sim, 120.0);
    let before = sim.observe().primary.cpu.age_s.expect("known");
    assert!(before <= 17.0);
    run_until(&mut sim, 290.0);
    let during = sim.observe();
    let age = during
        .primary
        .cpu
        .age_s
        .expect("old value is kept, with its age");
    assert!(age >= 170.0 - 17.0, "{age}");
    assert!(during.freshest_age_s().is_some_and(|a| a > 150.0));
    run_until(&mut sim, 330.0);
    let after = sim.observe().primary.cpu.age_s.expect("known");
    assert!(after <= 17.0, "{after}");
}

#[test]
fn scrape_delay_means_the_observation_lags_the_truth() {
    let s = scenario_with(
        "scrape_interval_s = 15\nscrape_delay_s = 5",
        r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 60
duration_s = 600"#,
    );
    let mut sim = Simulator::new(&s, 3);
    sim.run_for(21.0);
    for _ in 0..40 {
        sim.run_for(7.0);
        let obs = sim.observe();
        let seen = obs.replicas[0].lag_s.value.expect("known");
        let age = obs.replicas[0].lag_s.age_s.expect("known");
        let truth = sim.truth().replicas[0].lag_s;
        assert!(age >= 5.0, "{age}");
        if sim.now_s() > 100.0 && sim.now_s() < 600.0 {
            // Lag grows 1 s/s, so what is seen is about `age` seconds behind the truth.
            assert!(seen < truth - 4.0, "seen {seen}, true {truth}");
            assert!(
                (truth - seen - age).abs() <= 1.5,
                "seen {seen}, true {truth}, age {age}"
            );
        }
    }
}

#[test]
fn lag_saturates_at_the_window() {
    let s = scenario_with(
        "tick_s = 60\ncontrol_interval_s = 60\nscrape_interval_s = 60",
        r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 0
duration_s = 100000"#,
    );
    let mut s = s;
    s.duration_s = 20_000.0;
    let mut sim = Simulator::new(&s, 1);
    sim.run_for(20_000.0);
    assert!(sim.done());
    let lag = sim.truth().replicas[0].lag_s;
    assert!(
        (LAG_WINDOW_S - 60.0..=LAG_WINDOW_S + 2.0 * 60.0).contains(&lag),
        "{lag}"
    );
}

#[test]
fn run_for_steps_whole_ticks_and_stops_at_the_end() {
    let mut s = scenario_with("tick_s = 2", "");
    s.duration_s = 100.0;
    let mut sim = Simulator::new(&s, 1);
    assert_eq!(sim.run_for(15.0).ticks, 8);
    assert_eq!(sim.now_s(), 16.0);
    assert_eq!(sim.run_for(1000.0).ticks, 42);
    assert!(sim.done());
    assert_eq!(sim.run_for(10.0).ticks, 0);
}

#[test]
fn odd_weights_are_tolerated() {
    let s = scenario("");
    let mut sim = Simulator::new(&s, 1);
    sim.set_weights(&Weights {
        primary: 0,
        replicas: vec![],
    });
    let st = sim.run_for(5.0);
    assert_eq!(st.failed_reads, 0.0);
    assert!((st.mean_primary_cpu() - 2900.0 / 4000.0).abs() < 1e-9);
    sim.set_weights(&Weights {
        primary: 1,
        replicas: vec![3, 0, 7],
    });
    let t = sim.step();
    assert!(t.reads > 0.0);
}

#[test]
fn mixture_p99_picks_the_tail_destination() {
    let mut d = [(2.0, 990.0), (100.0, 5.0), (50.0, 10.0)];
    assert_eq!(mixture_p99(&mut d), 50.0);
    let mut d = [(2.0, 980.0), (100.0, 20.0)];
    assert_eq!(mixture_p99(&mut d), 100.0);
    let mut d = [(2.0, 999.0), (100.0, 1.0)];
    assert_eq!(mixture_p99(&mut d), 2.0);
    assert_eq!(mixture_p99(&mut []), 0.0);
}

#[test]
fn clones_continue_identically() {
    let s = scenario_with("metric_noise = 0.05", "");
    let mut a = Simulator::new(&s, 9);
    a.run_for(100.0);
    let mut b = a.clone();
    let x = a.run_for(200.0);
    let y = b.run_for(200.0);
    assert_eq!(x, y);
    assert_eq!(a.observe(), b.observe());
}

#[test]
fn instant_routing_follows_the_weights_on_the_next_tick() {
    let s = scenario("");
    assert_eq!(s.routing.connection_lifetime_s, 0.0);
    let mut sim = Simulator::new(&s, 1);
    sim.set_weights(&Weights::from_parts(0.25, &[1.0, 0.0]));
    assert_eq!(sim.primary_share(), 0.25);
    assert_eq!(sim.replica_share(0), Some(0.75));
    assert_eq!(sim.replica_share(1), Some(0.0));
    sim.step();
    assert_eq!(sim.truth().replicas[1].read_qps, 0.0);
}

#[test]
fn weights_take_effect_as_connections_turn_over() {
    let s = scenario(
        r#"[routing]
connection_lifetime_s = 30"#,
    );
    let mut sim = Simulator::new(&s, 1);
    // Steady state at the start: even weights, already in effect.
    assert_eq!(sim.replica_share(0), Some(0.5));
    run_until(&mut sim, 60.0);
    assert_eq!(sim.truth().replicas[0].read_qps, 1000.0);
    // Shun replica-1: its share decays as 0.5 · exp(−t/30), replica-2 takes it over.
    sim.set_weights(&Weights::from_parts(0.0, &[0.0, 1.0]));
    assert_eq!(
        sim.replica_share(0),
        Some(0.5),
        "nothing moves before a tick"
    );
    sim.run_for(30.0);
    let expected = 0.5 * (-1.0f64).exp();
    let share = sim.replica_share(0).unwrap_or(f64::NAN);
    assert!((share - expected).abs() < 1e-9, "{share} vs {expected}");
    let t = sim.truth();
    assert!((t.replicas[0].read_qps - 2000.0 * expected).abs() < 1e-6);
    assert!((t.replicas[0].read_qps + t.replicas[1].read_qps - 2000.0).abs() < 1e-6);
    let total = sim.primary_share() + share + sim.replica_share(1).unwrap_or(f64::NAN);
    assert!((total - 1.0).abs() < 1e-12, "{total}");
    // The observation shows the effective split too (metric noise is off in these tests).
    run_until(&mut sim, 120.0);
    let obs = sim.observe();
    let seen = obs.replicas[0].read_qps.value.unwrap_or(f64::NAN);
    assert!(
        seen > 2000.0 * 0.5 * (-2.0f64).exp() && seen < 2000.0 * expected,
        "{seen}"
    );
    // After enough turnover the last connection closes: exactly nothing.
    run_until(&mut sim, 400.0);
    assert_eq!(sim.replica_share(0), Some(0.0));
    assert_eq!(sim.truth().replicas[0].read_qps, 0.0);
    assert_eq!(sim.replica_share(1), Some(1.0));
}

#[test]
fn a_stalled_replica_keeps_serving_stale_reads_while_it_drains() {
    let events = r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 0
duration_s = 3600"#;
    let slow = scenario(&format!("[routing]\nconnection_lifetime_s = 20\n{events}"));
    let instant = scenario(events);
    let stale_after_shun = |s: &Scenario| {
        let mut sim = Simulator::new(s, 1);
        run_until(&mut sim, 60.0);
        sim.set_weights(&Weights::from_parts(0.0, &[0.0, 1.0]));
        sim.run_for(60.0).stale_reads
    };
    assert_eq!(stale_after_shun(&instant), 0.0);
    // Σ 1000·exp(−k/20) over the 60 ticks after the change ≈ 18 500 stale reads.
    let drained = stale_after_shun(&slow);
    assert!(drained > 15_000.0 && drained < 20_000.0, "{drained}");
}

#[test]
fn turnover_clones_and_replays_identically() {
    let mut s = scenario_with("metric_noise = 0.05", "");
    s.routing.connection_lifetime_s = 12.5;
    s.workload.noise = 0.1;
    let run = |s: &Scenario| {
        let mut sim = Simulator::new(s, 3);
        let mut out = Vec::new();
        for k in 0..40u32 {
            let p = f64::from(k % 5) / 5.0;
            sim.set_weights(&Weights::from_parts(p, &[f64::from(k % 3), 1.0]));
            out.push(sim.run_for(15.0));
        }
        (out, sim)
    };
    let (a, mut sa) = run(&s);
    let (b, _) = run(&s);
    assert_eq!(a, b);
    let mut sb = sa.clone();
    assert_eq!(sa.run_for(100.0), sb.run_for(100.0));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the weights and jitter: counts stay consistent, lag is never negative.
        #[test]
        fn stats_stay_consistent(
            seed in 0u64..1000,
            p in 0u32..=100,
            split in 0.0f64..1.0,
            jitter in 0.0f64..0.5,
        ) {
            let base = scenario(
                r#"[[events]]
kind = "replica_slow"
target = "replica-1"
at_s = 50
duration_s = 200
factor = 0.3
[[events]]
kind = "read_surge"
at_s = 100
duration_s = 100
factor = 1.8"#,
            );
            let s = base.jittered(&mut weir_core::rng::Rng::new(seed), jitter);
            let mut sim = Simulator::new(&s, seed);
            let f = [split, 1.0 - split];
            sim.set_weights(&Weights::from_parts(f64::from(p) / 100.0, &f));
            for _ in 0..300 {
                let t = sim.step();
                prop_assert!(t.reads >= 0.0);
                prop_assert!(t.failed_reads >= -1e-9 && t.failed_reads <= t.reads + 1e-6);
                prop_assert!(t.stale_reads >= 0.0 && t.stale_reads <= t.reads + 1e-6);
                prop_assert!((0.0..=1.0).contains(&t.primary_cpu));
                prop_assert!(t.max_lag_s >= 0.0 && t.max_lag_s <= sim.now_s());
                prop_assert!(t.read_p99_ms >= 0.0 && t.read_p99_ms.is_finite());
            }
        }
    }
}

#[test]
fn a_copy_without_foresight_knows_the_present_but_not_the_future() {
    // A stall under way at t = 150 (100..200) and a write burst still to come (300..400).
    let s = scenario(
        r#"[[events]]
kind = "replica_stall"
target = "replica-1"
at_s = 100
duration_s = 100
[[events]]
kind = "write_burst"
at_s = 300
duration_s = 100
factor = 3.0"#,
    );
    let mut sim = Simulator::new(&s, 1);
    run_until(&mut sim, 150.0);
    let lag_now = sim.truth().replicas[0].lag_s;
    assert!(lag_now > 40.0, "stalled for 50 s: {lag_now}");

    let mut exact = sim.clone();
    let mut blind = sim.without_foresight();
    // The present is the same state.
    assert_eq!(blind.truth().replicas[0].lag_s, lag_now);
    assert_eq!(blind.now_s(), sim.now_s());

    // The exact copy sees the stall end at 200 s and the replica catch up; the blind copy
    // assumes the stall it sees goes on.
    run_until(&mut exact, 290.0);
    run_until(&mut blind, 290.0);
    assert_eq!(
        exact.true_lag_s(0),
        Some(0.0),
        "the exact copy knows the stall ends"
    );
    let blind_lag = blind.truth().replicas[0].lag_s;
    assert!(
        blind_lag > 180.0,
        "the stall goes on in the blind copy: {blind_lag}"
    );

    // The write burst has not started at 150 s: only the exact copy runs into it.
    let e = run_until(&mut exact, 400.0);
    let b = run_until(&mut blind, 400.0);
    let (e_cpu, b_cpu) = (
        e.primary_cpu_sum / e.ticks as f64,
        b.primary_cpu_sum / b.ticks as f64,
    );
    assert!(
        e_cpu > b_cpu * 1.5,
        "burst: exact CPU {e_cpu}, blind {b_cpu}"
    );

    // The workload's noise is at its mean: the blind copy's reads are exactly the mean rate
    // (no diurnal wave in this scenario), whatever seed the original ran with.
    let mut base = s.clone();
    base.workload.noise = 0.3;
    for seed in [1, 2] {
        let mut n = Simulator::new(&base, seed);
        run_until(&mut n, 50.0);
        let mut f = n.without_foresight();
        let st = f.run_for(40.0);
        assert!(
            (st.reads - 2000.0 * st.seconds).abs() < 1e-6 * st.reads,
            "seed {seed}: {} reads in {} s",
            st.reads,
            st.seconds
        );
        let st = n.run_for(40.0);
        assert!(
            (st.reads - 2000.0 * st.seconds).abs() > 1.0,
            "the original stays noisy"
        );
    }
}
