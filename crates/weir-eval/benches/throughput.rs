//! Throughput of the simulator and of Q-learning training.
//!
//! `cargo bench -p weir-eval --bench throughput`. Reported numbers go in docs/benchmark.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir_eval::{TrainOptions, train};
use weir_sim::{Scenario, Simulator};

fn scenario() -> Scenario {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/train/01-replica-backup.toml"
    );
    match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn sim_ticks(c: &mut Criterion) {
    let scn = scenario();
    let mut g = c.benchmark_group("simulator");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 ticks", |b| {
        let mut sim = Simulator::new(&scn, 1);
        b.iter(|| {
            for _ in 0..1000 {
                std::hint::black_box(sim.step());
            }
        })
    });
    g.finish();
}

fn training(c: &mut Criterion) {
    let scn = scenario();
    let ticks = (scn.duration_s / scn.timing.tick_s) as u64;
    let mut g = c.benchmark_group("training");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ticks));
    g.bench_function("one episode (ticks)", |b| {
        let opts = TrainOptions {
            scenarios: vec![scn.clone()],
            episodes: 1,
            members: 1,
            ..TrainOptions::default()
        };
        b.iter(|| train(&opts, None, |_| {}))
    });
    g.finish();
}

criterion_group!(benches, sim_ticks, training);
criterion_main!(benches);
