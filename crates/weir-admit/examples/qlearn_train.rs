//! Trains the `qlearn` table in the simulator and writes it atomically.
//!
//! `cargo run --release -p weir-admit --example qlearn_train -- [OUT] [EPISODES] [SEED]`
//! (default OUT: crates/weir-admit/models/qlearn-v1.json, the shipped table).

use std::path::PathBuf;
use std::time::Instant;

use weir_admit::qlearn::{TrainConfig, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qlearn-v1.json"),
        PathBuf::from,
    );
    let mut config = TrainConfig::default();
    if let Some(n) = args.next() {
        config.episodes = n.parse()?;
    }
    if let Some(s) = args.next() {
        config.seed = s.parse()?;
    }
    let started = Instant::now();
    let mut recent = Vec::new();
    let table = train(&config, &mut |p| {
        recent.push(p.goodput_share);
        if p.episode % 100 == 0 || p.episode == p.episodes {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            eprintln!(
                "episode {}/{}: {} updates, {} states, goodput share (last 100) {:.3}, {:.0} s",
                p.episode,
                p.episodes,
                p.decisions,
                p.visited_states,
                mean,
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    table.save(&out)?;
    eprintln!(
        "wrote {} ({} bytes, {} states visited)",
        out.display(),
        std::fs::metadata(&out)?.len(),
        table.visited_states()
    );
    Ok(())
}
