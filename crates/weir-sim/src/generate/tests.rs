use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::{IntervalStats, Simulator};
use weir_core::Weights;

const N: u32 = 1000;

fn set(split: Split, seed: u64, count: u32) -> Vec<Scenario> {
    generate_set(&GeneratorConfig::default(), split, seed, count).unwrap_or_else(|e| panic!("{e}"))
}

/// The cluster and script of a scenario without its name, description and origin.
fn body(s: &Scenario) -> Scenario {
    Scenario {
        name: String::new(),
        description: String::new(),
        origin: String::new(),
        ..s.clone()
    }
}

#[test]
fn a_thousand_per_split_validate_and_round_trip() {
    for split in [Split::Train, Split::Heldout] {
        for (i, s) in set(split, 1, N).iter().enumerate() {
            s.validate().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name, format!("gen-{}-{i:04}", split.as_str()));
            assert!(!s.description.is_empty() && !s.description.contains('\n'));
            // Plain `toml` serialisation, then the strict loader.
            let text = toml::to_string(s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            let back =
                Scenario::from_toml_str(&text, &s.origin).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(&back, s, "{text}");
            // The file format (header comments) loads to the same scenario.
            let file = render(s, "weir scenarios generate").unwrap_or_else(|e| panic!("{e}"));
            let back = Scenario::from_toml_str(&file, &s.origin).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&back, s);
        }
    }
}

#[test]
fn same_input_same_scenario() {
    let c = GeneratorConfig::default();
    for i in [0, 1, 7, 999] {
        let a = generate(&c, Split::Train, 42, i).unwrap_or_else(|e| panic!("{e}"));
        let b = generate(&c, Split::Train, 42, i).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert_eq!(a.to_toml_string().ok(), b.to_toml_string().ok());
    }
    // Generating a set is generating each index on its own.
    let all = set(Split::Heldout, 5, 20);
    let one = generate(&c, Split::Heldout, 5, 13).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all[13], one);
    // Another seed, another scenario.
    let other = generate(&c, Split::Heldout, 6, 13).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(body(&one), body(&other));
}

#[test]
fn the_splits_never_share_a_scenario() {
    // Across several seeds and a few hundred indices no training cluster equals a held-out
    // one, in particular not for the held-out seed itself.
    let mut train = BTreeSet::new();
    for seed in [1, 2, 3, HELDOUT_SEED] {
        for s in set(Split::Train, seed, 300) {
            train.insert(format!("{:?}", body(&s)));
        }
    }
    for seed in [1, 2, 3, HELDOUT_SEED] {
        for s in set(Split::Heldout, seed, 300) {
            assert!(
                !train.contains(&format!("{:?}", body(&s))),
                "{} equals a training scenario",
                s.name
            );
        }
    }
    let a = set(Split::Train, HELDOUT_SEED, 5);
    let b = set(Split::Heldout, HELDOUT_SEED, 5);
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x.primary, y.primary);
    }
}

#[test]
fn the_ranges_are_covered() {
    let all = set(Split::Train, 11, N);
    let mut replicas = BTreeSet::new();
    let mut counts = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut controls = BTreeSet::new();
    let (mut instant, mut turnover, mut default_slo, mut waves) = (0, 0, 0, 0);
    let (mut ample, mut little, mut slow_catchup, mut instant_catchup) = (0, 0, 0, 0);
    let (mut with_stress, mut overlapping) = (0, 0);
    for s in &all {
        replicas.insert(s.replicas.len());
        counts.insert(s.events.len());
        controls.insert(s.timing.control_interval_s as u64);
        for e in &s.events {
            kinds.insert(e.kind.as_str());
        }
        if s.routing.connection_lifetime_s == 0.0 {
            instant += 1;
        } else {
            assert!((1.0..=60.0).contains(&s.routing.connection_lifetime_s));
            turnover += 1;
        }
        default_slo += usize::from(s.slo == Slo::default());
        waves += usize::from(s.workload.diurnal_amplitude > 0.0);
        let w = s.workload.write_qps;
        let demand = (s.workload.read_qps + w * s.primary.write_cost) / s.primary.capacity;
        assert!((0.55..=2.1).contains(&demand), "{}: {demand}", s.name);
        ample += usize::from(demand < 0.8);
        little += usize::from(demand > 1.7);
        for r in &s.replicas {
            let ratio = r.apply_capacity / w;
            assert!((1.15..=50.5).contains(&ratio), "{}: {ratio}", s.name);
            slow_catchup += usize::from(ratio < 2.0);
            instant_catchup += usize::from(ratio > 30.0);
            // At full read load a replica still applies about the mean write rate.
            let loaded = r.apply_capacity * (1.0 - r.read_apply_interference);
            assert!(loaded >= 0.85 * w, "{}: {loaded} vs {w}", s.name);
        }
        // Writes alone leave the primary room.
        assert!(
            w * s.primary.write_cost <= 0.55 * s.primary.capacity,
            "{}",
            s.name
        );
        assert!((1200.0..=3600.0).contains(&s.duration_s));
        assert!((5.0..=30.0).contains(&s.timing.control_interval_s));
        let ticks = s.timing.control_interval_s / s.timing.tick_s;
        assert_eq!(ticks.fract(), 0.0, "{}", s.name);
        for e in &s.events {
            assert!(e.at_s >= 120.0 && e.end_s() <= s.duration_s, "{}", s.name);
        }
        with_stress += usize::from(s.events.iter().any(|e| e.kind != EventKind::MetricsGap));
        overlapping += usize::from(s.events.windows(2).any(|p| p[1].at_s < p[0].end_s()));
    }
    assert_eq!(replicas, (1..=5).collect(), "replica counts");
    assert_eq!(counts, (0..=4).collect(), "event counts");
    assert_eq!(kinds.len(), EVENT_KINDS.len(), "{kinds:?}");
    assert_eq!(controls, [5, 10, 15, 20, 30].into_iter().collect());
    let n = all.len();
    assert!(instant > n / 5 && turnover > n / 2, "{instant} {turnover}");
    assert!(
        default_slo > n * 7 / 10 && default_slo < n * 9 / 10,
        "{default_slo}"
    );
    assert!(waves > n / 2 && waves < n * 7 / 10, "{waves}");
    assert!(ample > n / 20 && little > n / 20, "{ample} {little}");
    assert!(slow_catchup > n / 20 && instant_catchup > n / 20);
    assert!(with_stress > n * 9 / 10, "{with_stress}");
    assert!(overlapping > n / 5, "{overlapping}");
}

/// Runs a scenario with one fixed split for the whole run.
fn run_fixed(s: &Scenario, weights: &Weights) -> IntervalStats {
    let mut sim = Simulator::new(s, s.seed);
    sim.set_weights(weights);
    let mut total = IntervalStats::default();
    while !sim.done() {
        total.merge(&sim.run_for(s.timing.control_interval_s));
    }
    total
}

#[test]
fn most_scenarios_have_tension() {
    // Neither trivial split gets through most scenarios unharmed: even weights serve stale or
    // failed reads, everything on the primary overloads it or breaks the latency objective.
    let all = set(Split::Train, 3, 200);
    let mut tense = 0;
    for s in &all {
        let n = s.replicas.len();
        let even = run_fixed(s, &Weights::even(n));
        let primary = run_fixed(s, &Weights::all_primary(n));
        let hurt = |st: &IntervalStats| {
            st.stale_fraction() > 0.001
                || st.failed_fraction() > 0.001
                || st.primary_cpu_max > s.slo.primary_cpu_max
        };
        tense += usize::from(hurt(&even) && hurt(&primary));
    }
    assert!(tense > all.len() * 8 / 10, "{tense} of {}", all.len());
}

#[test]
fn odd_configs_give_errors_not_panics() {
    let mut c = GeneratorConfig {
        min_replicas: 9,
        max_replicas: 2,
        min_events: 7,
        max_events: 1,
        control_intervals_s: vec![],
        ticks_s: vec![],
        scrape_intervals_s: vec![],
        ..GeneratorConfig::default()
    };
    c.duration_s = Span::new(f64::NAN, 600.0);
    c.events.iter_mut().for_each(|e| e.weight = 0.0);
    for i in 0..50 {
        let s = generate(&c, Split::Train, 1, i).unwrap_or_else(|e| panic!("{e}"));
        assert!((2..=9).contains(&s.replicas.len()));
        assert!((1..=7).contains(&s.events.len()));
    }
    c.read_qps = Span::new(-10.0, -5.0);
    c.primary_read_demand = Span::new(0.0, 0.0);
    let e = generate(&c, Split::Train, 1, 0).expect_err("invalid");
    let text = e.to_string();
    assert!(text.starts_with("gen-train-0000 (generated): "), "{text}");
}

#[test]
fn committed_heldout_set_is_exactly_what_the_generator_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/heldout");
    let expected = set(Split::Heldout, HELDOUT_SEED, HELDOUT_COUNT);
    let command = command_line(Split::Heldout, HELDOUT_SEED, HELDOUT_COUNT);
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let names: Vec<String> = expected.iter().map(file_name).collect();
    assert_eq!(
        on_disk, names,
        "scenarios/heldout must hold exactly the generated files; regenerate with `{command} --out scenarios/heldout`"
    );
    for s in &expected {
        let path = dir.join(file_name(s));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let want = render(s, &command).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text == want,
            "{} differs from what `{command}` writes (do not edit held-out files by hand)",
            path.display()
        );
    }
    // And the loader reads them back as the same scenarios.
    let loaded = crate::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    for (a, b) in loaded.iter().zip(&expected) {
        assert_eq!(body(a), body(b));
        assert_eq!(a.name, b.name);
    }
}
