//! Replays the fuzz corpus and every crash found so far through the properties on stable
//! Rust: `fuzz/corpus/<target>/` (the seeds libFuzzer starts from) and
//! `fuzz/regressions/<target>/` (inputs that once failed, kept after the fix).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_a_cargo_fuzz_binary_and_seeds_that_reach_its_properties() {
    for (name, property) in weir_fuzz::TARGETS {
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let src =
            std::fs::read_to_string(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(
            src.contains(&format!("weir_fuzz::{name}(")),
            "{} does not call weir_fuzz::{name}",
            bin.display()
        );
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "target {name} has no seed corpus");
        // A seed the parser refuses tests nothing past the parser: at least one per target
        // must reach the properties.
        let reached = seeds
            .iter()
            .filter(|p| property(&std::fs::read(p).expect("readable seed")))
            .count();
        assert!(reached > 0, "no seed of {name} gets past its parser");
    }
}

#[test]
fn crashes_found_by_fuzzing_stay_fixed() {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join("regressions")) else {
        return; // none found yet
    };
    for entry in entries {
        let target = entry.expect("readable directory entry").path();
        assert!(
            target.is_dir(),
            "{}: one directory per target",
            target.display()
        );
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let property = weir_fuzz::target(name)
            .unwrap_or_else(|| panic!("{}: no fuzz target named {name}", target.display()));
        for input in files(&target) {
            property(&std::fs::read(&input).expect("readable regression input"));
        }
    }
}
