//! The `weir-lab` command as a user runs it, for what needs no database: argument errors,
//! status, and `down` stopping exactly the processes a lab recorded. (The lab itself runs once
//! per CI run, in `cargo xtask test`'s last step.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-lab"))
        .args(args)
        .output()
        .expect("run weir-lab")
}

fn text(o: &Output) -> String {
    weir_test_support::procs::output_text(o)
}

#[test]
fn unknown_arm_and_bad_port_are_named() {
    let o = lab(&["experiment", "--arms", "static,bogus"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown arm `bogus`"), "{}", text(&o));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = lab(&["status", "--dir", d, "--base-port", "80"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--base-port 80"), "{}", text(&o));
}

#[test]
fn status_of_an_empty_dir_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let o = lab(&["status", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no lab recorded"), "{}", text(&o));
}

#[test]
fn down_stops_recorded_processes_and_spares_a_reused_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut ours = Command::new("sleep").arg("60").spawn().unwrap();
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let start = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        rest.split_whitespace().nth(19).unwrap().parse().unwrap()
    };
    // `other` is recorded with a wrong start time: the pid now belongs to someone else.
    let state = serde_json::json!([
        { "name": "mariadb primary", "pid": ours.id(), "start_ticks": start(ours.id()) },
        { "name": "prometheus", "pid": other.id(), "start_ticks": start(other.id()) + 1 },
    ]);
    std::fs::write(dir.path().join("lab-state.json"), state.to_string()).unwrap();
    let o = lab(&["down", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("stopped 1 process(es): mariadb primary"),
        "{}",
        text(&o)
    );
    assert!(!ours.wait().unwrap().success(), "ours was stopped");
    assert!(
        other.try_wait().unwrap().is_none(),
        "the reused pid was left alone"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    assert!(!dir.path().join("lab-state.json").exists());
}
