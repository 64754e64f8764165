//! The decision loop's own cost: observe → decide → shield, without any network.
//!
//! `cargo bench -p weir-controller --bench step`. The observation is built in memory (what a
//! source returns after parsing); the policy is the shipped Q-learning model.

use criterion::{Criterion, criterion_group, criterion_main};
use weir_controller::ControlStep;
use weir_core::{RewardConfig, Slo, Weights};
use weir_policy::{Model, PolicyKind};
use weir_shield::{Shield, ShieldConfig};
use weir_test_support::ObsBuilder;

fn shield() -> Shield {
    let cfg = ShieldConfig {
        primary_read_capacity_qps: Some(4000.0),
        ..ShieldConfig::default()
    };
    Shield::new(cfg, Slo::default(), 2)
}

fn bench_step(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/qlearn.json");
    let model = match Model::load(PolicyKind::Qlearn, std::path::Path::new(path)) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    // Alternate a healthy and a lagging observation so both paths are measured.
    let healthy = ObsBuilder::new(2).build();
    let lagging = ObsBuilder::new(2).lag(0, 12.0).primary(0.5, 800.0).build();
    let mut g = c.benchmark_group("control step (observe → decide → shield)");
    for kind in [PolicyKind::Qlearn, PolicyKind::Shun] {
        g.bench_function(kind.as_str(), |b| {
            let policy = match kind.build(Some(&model), false) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            };
            let mut step: ControlStep = ControlStep::new(
                policy,
                shield(),
                Slo::default(),
                RewardConfig::default(),
                Weights::even(2),
                64,
            );
            let mut t = 0.0;
            b.iter(|| {
                t += 15.0;
                let mut obs = if (t as u64 / 15).is_multiple_of(2) {
                    healthy.clone()
                } else {
                    lagging.clone()
                };
                obs.at_s = t;
                std::hint::black_box(step.step(obs, None));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
