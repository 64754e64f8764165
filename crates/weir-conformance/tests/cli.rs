//! The `weir-conformance` binary as CI and users run it: a clear error and exit 2 when it
//! cannot run, the table, Markdown and JSON when it can (one quick suite on the real Envoy
//! `cargo xtask prerequisites` installs; a missing Envoy fails this test, never skips it).

use std::process::{Command, Output};

fn conformance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-conformance"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running weir-conformance: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn a_missing_envoy_is_exit_2_naming_the_path_and_the_install_command() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("no-envoy-here");
    let out = conformance(&[
        "run",
        "--envoy",
        &missing.to_string_lossy(),
        "--dir",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
    assert!(err.contains("cargo xtask prerequisites"), "{err}");
    assert!(text(&out.stdout).is_empty(), "nothing ran, nothing printed");
}

#[test]
fn an_unknown_suite_is_refused_with_the_known_ones() {
    let out = conformance(&["run", "--only", "nearbyy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("nearbyy"), "{err}");
    assert!(
        err.contains("nearby") && err.contains("global-rate-limit"),
        "{err}"
    );
}

#[test]
fn one_suite_on_a_real_envoy_writes_the_table_markdown_and_json() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let md = dir.path().join("table.md");
    let json = dir.path().join("checks.json");
    let out = conformance(&[
        "run",
        "--short",
        "--check",
        "--only",
        "matches",
        "--dir",
        &dir.path().join("work").to_string_lossy(),
        "--markdown",
        &md.to_string_lossy(),
        "--json",
        &json.to_string_lossy(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("PASS match header × regex"), "{stdout}");
    let md = std::fs::read_to_string(&md).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        md.starts_with("<!-- `weir-conformance run --short`: "),
        "{md}"
    );
    assert!(md.contains("| match query × range |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    let checks = json["checks"].as_array().cloned().unwrap_or_default();
    assert!(checks.len() > 20, "{json}");
    assert!(checks.iter().all(|c| c["pass"] == true), "{json}");
    // What the suite kept: the policy, the inventory, the bootstrap Envoy ran.
    assert!(dir.path().join("work/matches/envoy.yaml").is_file());
}
