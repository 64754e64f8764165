use proptest::prelude::*;
use weir_core::{Mask, Observation, Proposal, Rule, Slo, Weights};
use weir_test_support::ObsBuilder;

use crate::{FailSafe, Shield, ShieldConfig};

fn w(primary: u32, replicas: &[u32]) -> Weights {
    Weights {
        primary,
        replicas: replicas.to_vec(),
    }
}

fn shield(replicas: usize) -> Shield {
    let cfg = ShieldConfig {
        primary_read_capacity_qps: Some(4000.0),
        ..ShieldConfig::default()
    };
    Shield::new(cfg, Slo::default(), replicas)
}

fn apply(
    s: &mut Shield,
    obs: &Observation,
    current: &Weights,
    target: Weights,
) -> weir_core::Decision {
    s.apply(obs, current, Proposal::new(target, "test"))
}

fn rules(d: &weir_core::Decision) -> Vec<Rule> {
    d.interventions.iter().map(|i| i.rule).collect()
}

#[test]
fn safe_proposal_passes_unchanged() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).build();
    let d = apply(&mut s, &obs, &Weights::even(2), w(10, &[45, 45]));
    assert_eq!(d.weights, w(10, &[45, 45]));
    assert!(d.interventions.is_empty());
    assert_eq!(s.status().hard_limit_violations, 0);
}

#[test]
fn replica_beyond_hard_staleness_gets_nothing_at_once() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).lag(0, 45.0).build();
    // The policy keeps both replicas; the shield moves replica-1's 50 points in one go
    // (an emergency lifts the step limit).
    assert_eq!(
        s.mask(&obs, &Weights::even(2)).max_step(),
        None,
        "no step limit in an emergency"
    );
    let d = apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    assert_eq!(d.weights, w(0, &[0, 100]));
    assert_eq!(rules(&d), vec![Rule::HardStaleness]);
    assert!(d.interventions[0].detail.contains("replica-1"));
}

#[test]
fn unknown_lag_is_unsafe_not_zero() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).lag_unknown(1).build();
    let d = apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    assert_eq!(d.weights, w(0, &[100, 0]));
    assert!(d.interventions[0].detail.contains("lag unknown"));
}

#[test]
fn down_replica_gets_nothing() {
    let mut s = shield(3);
    let obs = ObsBuilder::new(3).down(2).build();
    let d = apply(&mut s, &obs, &Weights::even(3), Weights::even(3));
    assert_eq!(d.weights.replicas[2], 0);
    assert_eq!(d.weights.total(), 100);
    assert_eq!(rules(&d), vec![Rule::ReplicaDown]);
}

#[test]
fn no_healthy_replica_fills_primary_to_its_cap_then_least_bad() {
    let mut s = shield(2);
    // cpu 0.3 with nothing on the primary, capacity 4000, 4000 reads/s:
    // headroom (0.85 - 0.3) * 4000 = 2200 reads/s = 55 points.
    let obs = ObsBuilder::new(2).lag(0, 60.0).lag(1, 40.0).build();
    let d = apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    assert_eq!(d.weights, w(55, &[0, 45]));
    assert!(rules(&d).contains(&Rule::NoHealthyDestination));
    assert_eq!(s.status().hard_limit_violations, 0);
}

#[test]
fn primary_share_is_capped_by_cpu_headroom() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).primary(0.7, 0.0).build();
    // headroom (0.85 - 0.7) * 4000 = 600 of 4000 reads/s = 15 points.
    let d = apply(&mut s, &obs, &w(10, &[45, 45]), w(30, &[35, 35]));
    assert_eq!(d.weights.primary, 15);
    assert_eq!(rules(&d), vec![Rule::PrimaryCpuCap]);
}

#[test]
fn primary_cap_without_capacity_is_stepwise() {
    let mut s = Shield::new(ShieldConfig::default(), Slo::default(), 2);
    let obs = ObsBuilder::new(2).primary(0.9, 500.0).build();
    let d = apply(&mut s, &obs, &w(40, &[30, 30]), w(60, &[20, 20]));
    assert_eq!(
        d.weights.primary, 15,
        "over the cap: must shrink by max_step"
    );
    let obs = ObsBuilder::new(2).primary(0.3, 500.0).build();
    let d = apply(&mut s, &obs, &w(40, &[30, 30]), w(100, &[0, 0]));
    assert!(d.weights.primary <= 65);
}

#[test]
fn step_is_limited_outside_an_emergency() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).lag(0, 3.0).build();
    let mask = s.mask(&obs, &Weights::even(2));
    assert_eq!(mask.max_step(), Some(25), "the mask tells the limit");
    // The target is refused, the step towards it is allowed and is what the shield applies.
    assert!(!mask.allows(&w(0, &[0, 100])));
    let step = Weights::even(2).step_toward(&w(0, &[0, 100]), 25);
    assert!(mask.allows(&step));
    let d = apply(&mut s, &obs, &Weights::even(2), w(0, &[0, 100]));
    assert_eq!(rules(&d), vec![Rule::StepLimit]);
    assert!(Weights::even(2).max_step(&d.weights) <= 25);
    assert_eq!(d.weights, w(0, &[25, 75]));
    assert_eq!(d.weights, step);
}

#[test]
fn slo_breach_lifts_the_step_limit_unless_disabled() {
    let obs = ObsBuilder::new(2).lag(0, 10.0).build();
    let mut s = shield(2);
    let d = apply(&mut s, &obs, &Weights::even(2), w(20, &[0, 80]));
    assert!(d.interventions.is_empty(), "{:?}", d.interventions);
    let mut strict = Shield::new(
        ShieldConfig {
            lift_step_limit_on_slo_breach: false,
            ..ShieldConfig::default()
        },
        Slo::default(),
        2,
    );
    let d = apply(&mut strict, &obs, &Weights::even(2), w(20, &[0, 80]));
    assert_eq!(rules(&d), vec![Rule::StepLimit]);
}

#[test]
fn watch_only_shield_passes_proposals_and_counts_breaches() {
    let mut s = Shield::new(
        ShieldConfig {
            enforce: false,
            ..ShieldConfig::default()
        },
        Slo::default(),
        2,
    );
    let obs = ObsBuilder::new(2).lag(0, 45.0).build();
    assert!(s.mask(&obs, &Weights::even(2)).allows(&Weights::even(2)));
    let d = apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    assert_eq!(d.weights, Weights::even(2));
    assert!(d.interventions.is_empty());
    assert_eq!(s.status().hard_limit_violations, 1);
    let stale = ObsBuilder::new(2).blank().build();
    let d = apply(&mut s, &stale, &Weights::even(2), w(100, &[0, 0]));
    assert_eq!(
        d.weights,
        w(100, &[0, 0]),
        "a bare baseline acts on its own logic"
    );
}

#[test]
fn stale_observation_holds_then_fails_safe() {
    let mut s = shield(2);
    let current = w(30, &[0, 70]);
    let stale = ObsBuilder::new(2).aged(120.0).build();
    for i in 1..=4 {
        let d = apply(&mut s, &stale, &current, w(0, &[50, 50]));
        assert_eq!(d.weights, current, "interval {i} holds");
        assert_eq!(rules(&d), vec![Rule::StaleObservation]);
    }
    let d = apply(&mut s, &stale, &current, w(0, &[50, 50]));
    assert_eq!(d.weights, Weights::even(2));
    assert_eq!(rules(&d), vec![Rule::FailSafe]);
    assert!(s.status().fail_safe_engaged);
    // A replica seen lagging before the blackout stays out of the fail-safe weights.
    let mut s2 = shield(2);
    apply(
        &mut s2,
        &ObsBuilder::new(2).lag(0, 45.0).build(),
        &Weights::even(2),
        Weights::even(2),
    );
    let held = w(0, &[0, 100]);
    for _ in 0..5 {
        apply(&mut s2, &stale, &held, Weights::even(2));
    }
    let d2 = apply(&mut s2, &stale, &held, Weights::even(2));
    // Baseline minus replica-1, whose half goes to the primary: it had the headroom.
    assert!(s2.status().last_primary_cap.unwrap() >= 50);
    assert_eq!(d2.weights, w(50, &[0, 50]), "baseline minus replica-1");
    assert_eq!(rules(&d2), vec![Rule::FailSafe]);
    // A hot primary takes only what its cap allowed at the last fresh observation; the
    // remaining replica gets the rest.
    let mut s3 = shield(2);
    apply(
        &mut s3,
        &ObsBuilder::new(2).lag(0, 45.0).primary(0.8, 1000.0).build(),
        &Weights::even(2),
        Weights::even(2),
    );
    let cap = s3.status().last_primary_cap.unwrap();
    assert!(
        (1..50).contains(&cap),
        "a primary at 80% CPU has some headroom, under half the reads (got {cap})"
    );
    for _ in 0..5 {
        apply(&mut s3, &stale, &held, Weights::even(2));
    }
    let d3 = apply(&mut s3, &stale, &held, Weights::even(2));
    assert_eq!(d3.weights, w(cap, &[0, 100 - cap]));
    // Nothing kept out: the baseline as configured, nothing on the primary.
    let mut s4 = shield(2);
    apply(
        &mut s4,
        &ObsBuilder::new(2).build(),
        &Weights::even(2),
        Weights::even(2),
    );
    for _ in 0..5 {
        apply(&mut s4, &stale, &held, Weights::even(2));
    }
    assert_eq!(
        apply(&mut s4, &stale, &held, Weights::even(2)).weights,
        Weights::even(2)
    );
    // Fresh data again: back to normal.
    let d = apply(
        &mut s,
        &ObsBuilder::new(2).build(),
        &d.weights.clone(),
        Weights::even(2),
    );
    assert!(d.interventions.is_empty());
    assert!(!s.status().fail_safe_engaged);

    let mut hold = Shield::new(
        ShieldConfig {
            fail_safe: FailSafe::Hold,
            fail_safe_after: 0,
            ..ShieldConfig::default()
        },
        Slo::default(),
        2,
    );
    let blank = ObsBuilder::new(2).blank().build();
    let d = apply(&mut hold, &blank, &current, Weights::even(2));
    assert_eq!(d.weights, current);
    assert_eq!(rules(&d), vec![Rule::FailSafe]);
}

#[test]
fn pause_holds_and_override_applies_until_it_expires() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).at(100.0).build();
    let current = Weights::even(2);
    s.pause();
    let d = apply(&mut s, &obs, &current, w(20, &[40, 40]));
    assert_eq!(d.weights, current);
    assert_eq!(rules(&d), vec![Rule::Paused]);
    s.resume();
    s.set_override(w(100, &[0, 0]), 130.0).unwrap();
    let d = apply(&mut s, &obs, &current, w(20, &[40, 40]));
    assert_eq!(d.weights, w(100, &[0, 0]));
    assert_eq!(rules(&d), vec![Rule::ManualOverride]);
    let later = ObsBuilder::new(2).at(130.0).build();
    let d = apply(&mut s, &later, &current, w(20, &[40, 40]));
    assert_eq!(d.weights, w(20, &[40, 40]));
    assert!(s.status().override_.is_none());
    assert!(
        s.set_override(w(10, &[10, 10]), 200.0).is_err(),
        "bad override rejected"
    );
}

#[test]
fn malformed_proposal_is_repaired_not_applied() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).build();
    let d = apply(&mut s, &obs, &Weights::even(2), w(90, &[90, 0]));
    assert_eq!(d.weights, Weights::even(2));
    assert_eq!(rules(&d), vec![Rule::InvalidProposal]);
    let d = apply(&mut s, &obs, &Weights::even(2), w(100, &[]));
    assert_eq!(d.weights, Weights::even(2));
}

#[test]
fn interventions_are_counted_by_rule() {
    let mut s = shield(2);
    let obs = ObsBuilder::new(2).lag(0, 45.0).build();
    apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    apply(&mut s, &obs, &Weights::even(2), Weights::even(2));
    assert_eq!(s.status().interventions.get(&Rule::HardStaleness), Some(&2));
    assert_eq!(s.status().decisions, 2);
}

fn arb_weights(n: usize) -> impl Strategy<Value = Weights> {
    (
        0.0f64..1.0,
        proptest::collection::vec(0.0f64..3.0, n),
        any::<bool>(),
    )
        .prop_map(move |(p, f, zero_p)| Weights::from_parts(if zero_p { 0.0 } else { p }, &f))
}

#[derive(Debug, Clone)]
enum Lag {
    Value(f64),
    Unknown,
    Down,
}

fn arb_case() -> impl Strategy<Value = (Observation, Weights, Weights, bool)> {
    (1usize..4)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(
                    prop_oneof![
                        6 => (0.0f64..80.0).prop_map(Lag::Value),
                        1 => Just(Lag::Unknown),
                        1 => Just(Lag::Down),
                    ],
                    n,
                ),
                0.0f64..1.0,
                0.0f64..3000.0,
                arb_weights(n),
                arb_weights(n),
                any::<bool>(),
            )
        })
        .prop_map(|(lags, cpu, pr, current, target, capacity)| {
            let mut b = ObsBuilder::new(lags.len()).primary(cpu, pr);
            for (i, l) in lags.iter().enumerate() {
                b = match l {
                    Lag::Value(v) => b.lag(i, *v),
                    Lag::Unknown => b.lag_unknown(i),
                    Lag::Down => b.down(i),
                };
            }
            (b.build(), current, target, capacity)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The mask and the post-check agree: an action is allowed exactly when the shield
    /// applies it unchanged; whatever the shield applies passes the hard-limit post-check,
    /// and is itself allowed (repair is idempotent).
    #[test]
    fn mask_and_apply_agree((obs, current, target, capacity) in arb_case()) {
        let n = obs.replicas.len();
        let cfg = ShieldConfig {
            primary_read_capacity_qps: capacity.then_some(4000.0),
            ..ShieldConfig::default()
        };
        let mut s = Shield::new(cfg, Slo::default(), n);
        let limit = s.mask(&obs, &current).max_step();
        let allowed = s.mask(&obs, &current).allows(&target);
        let d = s.apply(&obs, &current, Proposal::new(target.clone(), "prop"));
        prop_assert_eq!(allowed, d.weights == target && d.interventions.is_empty());
        prop_assert_eq!(d.weights.validate(n), Ok(()));
        prop_assert_eq!(s.status().hard_limit_violations, 0);
        let a = s.assess(&obs, &current);
        prop_assert!(a.hard_limits_hold(&d.weights), "{:?} -> {}", a, d.weights);
        prop_assert!(s.mask(&obs, &current).allows(&d.weights), "repair must be a fixed point: {}", d.weights);
        if !a.emergency {
            prop_assert!(current.max_step(&d.weights) <= s.config().max_step);
        }
        // The limit the mask reports is the one apply enforces: a target within it is never
        // refused for its size.
        if let Some(m) = limit {
            prop_assert_eq!(m, s.config().max_step);
            prop_assert!(!a.emergency);
            let mut fresh = Shield::new(s.config().clone(), Slo::default(), n);
            let step = current.step_toward(&target, m);
            let d = fresh.apply(&obs, &current, Proposal::new(step, "step"));
            prop_assert!(!d.interventions.iter().any(|i| i.rule == Rule::StepLimit), "{:?}", d.interventions);
        } else {
            prop_assert!(a.emergency || !s.config().enforce || !d.interventions.is_empty() || allowed);
        }
    }
}

#[test]
fn partial_headroom_use_fills_the_cap_gradually_but_sheds_in_full() {
    let cfg = ShieldConfig {
        primary_read_capacity_qps: Some(4000.0),
        headroom_use: 0.5,
        ..ShieldConfig::default()
    };
    let mut s = Shield::new(cfg, Slo::default(), 2);
    // headroom (0.85 - 0.7) * 4000 * 0.5 = 300 of 4000 reads/s = 7 points.
    let obs = ObsBuilder::new(2).primary(0.7, 0.0).build();
    let d = apply(&mut s, &obs, &w(0, &[50, 50]), w(30, &[35, 35]));
    assert_eq!(d.weights.primary, 7);
    // Over the cap the full excess is shed: (0.85 - 0.95) * 4000 = -400 reads/s from the
    // 1200 the primary serves, of 1200 + 2 * 2000 reads/s in all: 800 / 5200 = 15 points.
    let obs = ObsBuilder::new(2).primary(0.95, 1200.0).build();
    let d = apply(&mut s, &obs, &w(30, &[35, 35]), w(30, &[35, 35]));
    assert_eq!(d.weights.primary, 15);
    assert!(
        ShieldConfig {
            headroom_use: 0.0,
            ..ShieldConfig::default()
        }
        .validate(2)
        .unwrap_err()
        .to_string()
        .contains("headroom_use")
    );
}

#[test]
fn an_observation_that_does_not_match_the_weights_is_held_not_a_panic() {
    let mut s = shield(2);
    let current = Weights::even(2);
    for obs in [ObsBuilder::new(3).build(), ObsBuilder::new(1).build()] {
        assert!(!s.mask(&obs, &current).allows(&w(0, &[0, 100])));
        let d = apply(&mut s, &obs, &current, w(0, &[0, 100]));
        assert_eq!(d.weights, current);
        assert_eq!(rules(&d), vec![Rule::StaleObservation]);
    }
}

fn with_reserve(replicas: usize, reserve: f64) -> Shield {
    shield(replicas).with_priorities(&weir_core::Priorities {
        primary_reserve: reserve,
        ..weir_core::Priorities::default()
    })
}

#[test]
fn the_reserve_keeps_reads_on_fresh_replicas_and_yields_when_they_cannot_serve() {
    // Every replica fresh and fast: 30 points on the primary are brought down to the reserve.
    let mut s = with_reserve(2, 0.0);
    let fresh = ObsBuilder::new(2).build();
    let d = apply(&mut s, &fresh, &w(40, &[30, 30]), w(40, &[30, 30]));
    assert_eq!(d.weights.primary, 15, "reserve 0, then the step limit");
    assert_eq!(rules(&d), vec![Rule::PrimaryReserve, Rule::StepLimit]);
    let d = apply(&mut s, &fresh, &d.weights, d.weights.clone());
    assert_eq!(
        d.weights.primary, 0,
        "back on the replicas in two intervals"
    );
    // The mask says the same before the fact.
    let m = s.mask(&fresh, &w(0, &[50, 50]));
    assert!(!m.allows(&w(10, &[45, 45])));
    assert!(m.allows(&w(0, &[50, 50])));
    // A reserve of 20 points allows 20.
    let mut s = with_reserve(2, 0.2);
    let d = apply(&mut s, &fresh, &w(20, &[40, 40]), w(20, &[40, 40]));
    assert!(d.interventions.is_empty(), "{:?}", d.interventions);
    // A replica lagging past half the staleness SLO: the primary may carry reads.
    let mut s = with_reserve(2, 0.0);
    let lagging = ObsBuilder::new(2).lag(0, 3.0).build();
    let d = apply(&mut s, &lagging, &w(20, &[40, 40]), w(40, &[10, 50]));
    assert!(
        !rules(&d).contains(&Rule::PrimaryReserve),
        "{:?}",
        rules(&d)
    );
    // Replicas slow (p99 over half the SLO): so may it.
    let mut slow = ObsBuilder::new(2).build();
    for r in &mut slow.replicas {
        r.read_p99_ms = weir_core::Signal::aged(40.0, 5.0);
    }
    let d = apply(&mut s, &slow, &w(0, &[50, 50]), w(20, &[40, 40]));
    assert_eq!(d.weights, w(20, &[40, 40]));
    // Without priorities the shield has no reserve.
    let mut s = shield(2);
    let d = apply(&mut s, &fresh, &w(20, &[40, 40]), w(30, &[35, 35]));
    assert_eq!(d.weights, w(30, &[35, 35]));
}

#[test]
fn the_primary_s_excess_refills_the_replica_furthest_below_its_baseline_share() {
    // Replica-1 is back from a stall with no weight; the primary held its share. What the
    // primary gives up goes to replica-1, not to replica-2, which already carries half.
    let mut s = with_reserve(2, 0.0);
    let fresh = ObsBuilder::new(2).build();
    let d = apply(&mut s, &fresh, &w(50, &[0, 50]), w(50, &[0, 50]));
    assert_eq!(d.weights, w(25, &[25, 50]), "reserve, then the step limit");
    let d = apply(&mut s, &fresh, &d.weights, d.weights.clone());
    assert_eq!(d.weights, w(0, &[50, 50]));
    // Levelling stops at the baseline's proportions, and splits what is left by them.
    let mut s = with_reserve(3, 0.0);
    let fresh = ObsBuilder::new(3).build();
    let d = apply(&mut s, &fresh, &w(20, &[10, 40, 30]), w(20, &[10, 40, 30]));
    assert_eq!(d.weights, w(0, &[30, 40, 30]));
    // A configured baseline sets the proportions: 1:3 here.
    let mut s = Shield::new(
        ShieldConfig {
            baseline: Some(w(0, &[25, 75])),
            ..ShieldConfig::default()
        },
        Slo::default(),
        2,
    )
    .with_priorities(&weir_core::Priorities {
        primary_reserve: 0.0,
        ..weir_core::Priorities::default()
    });
    let fresh = ObsBuilder::new(2).build();
    let d = apply(&mut s, &fresh, &w(20, &[20, 60]), w(20, &[20, 60]));
    assert_eq!(d.weights, w(0, &[25, 75]));
}

#[test]
fn the_reserve_holds_through_a_slight_slowdown_and_damps_its_own_flapping() {
    let mut s = with_reserve(2, 0.0);
    let at = |p99_ms: f64| {
        let mut o = ObsBuilder::new(2).build();
        for r in &mut o.replicas {
            r.read_p99_ms = weir_core::Signal::aged(p99_ms, 5.0);
        }
        o
    };
    let (fast, slower, slow) = (at(10.0), at(40.0), at(80.0)); // SLO 50 ms
    let on_replicas = w(0, &[50, 50]);
    let wants_primary = w(20, &[40, 40]);
    let primary_after = |s: &mut Shield, obs: &Observation| {
        apply(s, obs, &on_replicas, wants_primary.clone())
            .weights
            .primary
    };
    assert_eq!(primary_after(&mut s, &fast), 0, "engaged at once");
    // Within the SLO but over half of it: a released reserve would not engage here, an
    // engaged one holds (hysteresis).
    assert_eq!(primary_after(&mut s, &slower), 0, "holds inside the band");
    // Over the SLO: released, and the next engagement waits two fast decisions.
    assert_eq!(primary_after(&mut s, &slow), 20);
    assert_eq!(s.status().reserve.wait, 2);
    assert_eq!(
        primary_after(&mut s, &fast),
        20,
        "first fast decision: waits"
    );
    assert_eq!(primary_after(&mut s, &fast), 0, "second: engaged");
    // Flapping again doubles the wait.
    assert_eq!(primary_after(&mut s, &slow), 20);
    assert_eq!(s.status().reserve.wait, 4);
    for i in 0..3 {
        assert_eq!(primary_after(&mut s, &fast), 20, "fast decision {i}: waits");
    }
    assert_eq!(primary_after(&mut s, &fast), 0);
    // Held for twice the wait, it halves.
    for _ in 0..8 {
        assert_eq!(primary_after(&mut s, &slower), 0);
    }
    assert_eq!(s.status().reserve.wait, 2);
    // The mask agrees with the state it would reach.
    let m = s.mask(&slower, &on_replicas);
    assert!(!m.allows(&wants_primary));
    assert!(m.allows(&on_replicas));
    // A new episode starts afresh.
    s.reset_episode();
    assert_eq!(s.status().reserve, crate::ReserveState::default());
}

/// An observation of a primary serving `reads` of 4000 reads/s at CPU `cpu`.
fn primary_at(reads: f64, cpu: f64) -> Observation {
    ObsBuilder::new(2)
        .primary(cpu, reads)
        .replica_reads(0, (4000.0 - reads) / 2.0)
        .replica_reads(1, (4000.0 - reads) / 2.0)
        .build()
}

#[test]
fn the_cap_follows_the_measured_cpu_when_the_configured_capacity_overstates_it() {
    // Configured 4000 reads/s at 100% CPU; the real primary does 2000 (0.05 CPU per 100
    // reads), with 0.2 CPU of writes.
    let real = |reads: f64| 0.2 + reads / 2000.0;
    let mut s = shield(2);
    let cap0 = s.assess(&primary_at(400.0, real(400.0)), &w(10, &[45, 45]));
    // Before any move of the primary's load: the configured capacity. 0.85 − 0.4 = 0.45 of
    // 4000 reads/s = 1800 more reads: 2200 of 4000 = 55 points.
    assert_eq!(cap0.primary_cap, 55);
    let _ = apply(
        &mut s,
        &primary_at(400.0, real(400.0)),
        &w(10, &[45, 45]),
        w(10, &[45, 45]),
    );
    let _ = apply(
        &mut s,
        &primary_at(800.0, real(800.0)),
        &w(20, &[40, 40]),
        w(20, &[40, 40]),
    );
    assert_eq!(s.status().capacity.samples, 1);
    let measured = s.status().capacity.qps.unwrap_or_default();
    assert!((measured - 2000.0).abs() < 1.0, "{measured}");
    // Now 0.85 − 0.6 = 0.25 of 2000 = 500 more reads: 1300 of 4000 = 32 points, where the
    // configured capacity would allow 0.25 × 4000 + 800 = 1800 = 45 points (and CPU 1.1).
    let a = s.assess(&primary_at(800.0, real(800.0)), &w(20, &[40, 40]));
    assert_eq!(a.primary_cap, 32);
    assert!(
        a.cap_basis.to_string().contains("configured 4000"),
        "{}",
        a.cap_basis
    );
    // A capacity measured above the configured one changes nothing.
    let mut s = shield(2);
    for (r, c) in [(400.0, 0.3), (1200.0, 0.4)] {
        let _ = apply(
            &mut s,
            &primary_at(r, c),
            &w(10, &[45, 45]),
            w(10, &[45, 45]),
        );
    }
    assert_eq!(
        s.assess(&primary_at(400.0, 0.3), &w(10, &[45, 45]))
            .primary_cap,
        65
    );
    // Small moves (noise) are not measured.
    let mut s = shield(2);
    for (r, c) in [(400.0, 0.3), (450.0, 0.4)] {
        let _ = apply(
            &mut s,
            &primary_at(r, c),
            &w(10, &[45, 45]),
            w(10, &[45, 45]),
        );
    }
    assert_eq!(s.status().capacity.samples, 0);
}
