//! The `weir` command as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run weir")
}

fn text(o: &Output) -> String {
    weir_test_support::procs::output_text(o)
}

#[test]
fn help_explains_every_command() {
    let o = weir(&["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for cmd in ["demo", "train", "bench", "scenarios"] {
        assert!(t.contains(cmd), "{t}");
    }
    let o = weir(&["bench", "--help"]);
    assert!(text(&o).contains("--seeds"));
}

#[test]
fn demo_explain_ends_each_decision_line_with_the_policy_reason() {
    let o = weir(&["demo", "--speed", "0", "--no-serve", "--explain"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("t=")).collect();
    assert_eq!(lines.len(), 100, "{t}");
    // Every decision has a reason; the network's own ones name its choice.
    assert!(lines.iter().all(|l| l.contains(" \u{ab} ")), "{t}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\u{ab} greedy: p=") || l.contains("\u{ab} hold: p=")),
        "{t}"
    );
    // Without the flag, no reason is printed.
    let plain = text(&weir(&["demo", "--speed", "0", "--no-serve"]));
    assert!(!plain.contains(" \u{ab} "), "{plain}");
}

#[test]
fn demo_runs_the_embedded_scenario_through_the_controller() {
    let o = weir(&["demo", "--speed", "0", "--no-serve"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // One line per decision: 25 minutes at 15 s.
    assert_eq!(
        t.lines().filter(|l| l.starts_with("t=")).count(),
        100,
        "{t}"
    );
    // During the stall replica-1 gets no reads.
    assert!(
        t.lines()
            .any(|l| l.starts_with("t=  405s") && l.contains("/0/")),
        "{t}"
    );
    assert!(t.contains("hard-limit violations 0"), "{t}");
    // Once replica-1 is seen fresh again (observed lag under 1 s after the stall), it carries
    // at least a quarter of the reads within four decisions (one minute).
    let decisions: Vec<(u32, f64, u32)> = t
        .lines()
        .filter_map(|l| {
            let at = l.strip_prefix("t=")?.trim_start().split('s').next()?;
            let lag = l.split("r1=").nth(1)?.split('s').next()?;
            let r1 = l.split("w=P").nth(1)?.split('/').nth(1)?;
            Some((at.parse().ok()?, lag.parse().ok()?, r1.parse().ok()?))
        })
        .collect();
    // (Every line parses but the first ones, before any scrape: `r1=?`.)
    assert!(decisions.len() > 90, "{t}");
    let fresh = decisions
        .iter()
        .position(|&(at, lag, _)| at > 600 && lag < 1.0)
        .expect("replica-1 recovers in the demo");
    assert!(
        decisions
            .iter()
            .skip(fresh)
            .take(5)
            .any(|&(_, _, r1)| r1 >= 25),
        "replica-1 fresh at t={}s but still under 25% of the reads a minute later: {t}",
        decisions[fresh].0
    );
}

#[test]
fn train_writes_a_model_that_bench_uses_and_bench_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let model = model.to_str().unwrap();
    let o = weir(&[
        "train",
        "--policy",
        "qlearn",
        "--episodes",
        "6",
        "--members",
        "2",
        "--progress-every",
        "6",
        "--out",
        model,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("episodes     12/12  (2 members)"),
        "{}",
        text(&o)
    );
    let run = |json: &str| {
        let o = weir(&[
            "bench",
            "--scenarios",
            "scenarios/demo.toml",
            "--policies",
            "static,shun,qlearn",
            "--seeds",
            "1",
            "--model",
            model,
            "--json",
            json,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read(json).unwrap()
    };
    let a = run(dir.path().join("a.json").to_str().unwrap());
    let b = run(dir.path().join("b.json").to_str().unwrap());
    assert_eq!(a, b);
}

#[test]
fn bad_inputs_fail_with_messages_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nduration_s = 60.0\n[primary]\ncapacity = 100.0\nwrite_cost = 1.0\nbase_latency_ms = 1.0\n[[replicas]]\nname = \"r\"\ncapacity = 10.0\napply_capacity = 10.0\nread_apply_interference = 1.5\nbase_latency_ms = 1.0\n[workload]\nread_qps = 1.0\nwrite_qps = 1.0\n",
    )
    .unwrap();
    let o = weir(&["scenarios", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.toml") && t.contains("read_apply_interference"),
        "{t}"
    );

    let corrupt = dir.path().join("model.json");
    std::fs::write(&corrupt, "{\"format\":\"weir-qlearn\",\"version\":99}").unwrap();
    let o = weir(&[
        "bench",
        "--scenarios",
        "scenarios/demo.toml",
        "--policies",
        "qlearn",
        "--model",
        corrupt.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("version 99"), "{}", text(&o));

    let o = weir(&["bench", "--policies", "magic"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown policy"));

    let o = weir(&[
        "bench",
        "--scenarios",
        "scenarios/demo.toml",
        "--policies",
        "static,horizon",
        "--oracle-switch-cost=-1",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--oracle-switch-cost must be a non-negative number, got -1"),
        "{}",
        text(&o)
    );

    // A training-only switch cost: a number of at least 0, and only for the network.
    let out = dir.path().join("never.safetensors");
    let out = out.to_str().unwrap();
    let o = weir(&["train", "--switch-cost=-1", "--episodes", "1", "--out", out]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--switch-cost must be a non-negative number, got -1"),
        "{}",
        text(&o)
    );
    let o = weir(&[
        "train",
        "--policy",
        "qlearn",
        "--switch-cost",
        "2",
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--switch-cost is for dqn"),
        "{}",
        text(&o)
    );
    let o = weir(&[
        "train",
        "--policy",
        "qlearn",
        "--teacher-without-foresight",
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--teacher-without-foresight is for dqn"),
        "{}",
        text(&o)
    );
    assert!(!std::path::Path::new(out).exists());
}

#[test]
fn bench_can_run_the_oracles_without_foresight() {
    let args = [
        "bench",
        "--scenarios",
        "scenarios/demo.toml",
        "--policies",
        "static,horizon",
        "--seeds",
        "1",
    ];
    let exact = weir(&args);
    let blind = weir(&[&args[..], &["--oracle-without-foresight"]].concat());
    assert!(
        exact.status.success() && blind.status.success(),
        "{}",
        text(&blind)
    );
    let (exact, blind) = (text(&exact), text(&blind));
    assert!(
        blind.contains("the oracles planned without foresight"),
        "{blind}"
    );
    assert!(!exact.contains("without foresight"), "{exact}");
    // The static row is the same; the oracle's differs (it no longer sees the stall's end).
    let row = |t: &str, p: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("| {p} |")))
            .map(str::to_string)
    };
    assert_eq!(row(&exact, "static"), row(&blind, "static"));
    assert_ne!(row(&exact, "horizon"), row(&blind, "horizon"));
}

#[test]
fn an_error_chain_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let o = weir(&[
        "demo",
        "--scenario",
        missing.to_str().unwrap(),
        "--no-serve",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {t}"));
    assert!(line.contains("missing.toml"), "{t}");
    assert_eq!(line.matches("No such file or directory").count(), 1, "{t}");
}

#[test]
fn check_reports_an_unreachable_prometheus_once_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    // A port that was free a moment ago: nothing listens there, the connection is refused.
    let port = weir_test_support::procs::free_port();
    std::fs::write(
        &config,
        format!(
            r#"mode = "shadow"
[prometheus]
url = "http://127.0.0.1:{port}"
replicas = [
  {{ name = "replica-1", label_value = "replica-1:9104" }},
  {{ name = "replica-2", label_value = "replica-2:9104" }},
]
[policy]
kind = "shun"
[actuator]
kind = "dry-run"
"#
        ),
    )
    .unwrap();
    let o = weir(&["check", "--config", config.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    // One problem, naming the address and the cause, and listing what it hit.
    assert!(t.contains("check: 1 problem(s):"), "{t}");
    assert_eq!(t.matches("Connection refused").count(), 1, "{t}");
    let problem = t
        .lines()
        .find(|l| l.contains("Connection refused"))
        .unwrap();
    assert!(
        problem.contains(&format!("prometheus http://127.0.0.1:{port}: unreachable")),
        "{t}"
    );
    assert!(
        problem.contains("every query failed (replica_lag_s, replica_up,"),
        "{t}"
    );
    assert!(
        problem.contains("no data for replica-1, replica-2 and the primary"),
        "{t}"
    );
    // Each query still has its line, pointing at the problem instead of repeating it.
    assert_eq!(t.matches("error: see problem 1 below").count(), 8, "{t}");
}

#[test]
fn shipped_scenarios_validate() {
    let o = weir(&[
        "scenarios",
        "scenarios/train",
        "scenarios/eval",
        "scenarios/demo.toml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).lines().filter(|l| l.starts_with("ok")).count() >= 13);
}

#[test]
fn demo_runs_from_any_directory_on_the_shipped_model() {
    // Outside the repository: no scenarios/ and no models/ to find.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["demo", "--speed", "0", "--no-serve"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run weir");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("model shipped"), "{t}");
    assert!(t.contains("hard-limit violations 0"), "{t}");
    // A model file that is not there is an error naming it, not a silent fallback.
    let missing = dir.path().join("nope.json");
    let o = weir(&[
        "demo",
        "--speed",
        "0",
        "--no-serve",
        "--model",
        missing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nope.json"), "{}", text(&o));
}

#[test]
fn govern_checks_and_compiles_the_shipped_policies() {
    let o = weir(&["govern", "check", "deploy/policies/canary.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok: deploy/policies/canary.yaml (checkout: 3 routes)"));

    let o = weir(&[
        "govern",
        "compile",
        "deploy/policies/canary.yaml",
        "deploy/policies/affinity.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let yaml = String::from_utf8_lossy(&o.stdout);
    // One stream, every DestinationRule before any VirtualService.
    let last_dr = yaml.rfind("kind: DestinationRule").unwrap();
    let first_vs = yaml.find("kind: VirtualService").unwrap();
    assert!(last_dr < first_vs, "{yaml}");
    // DestinationRule and VirtualService of each, and the canary's PrometheusRule.
    assert_eq!(
        yaml.matches("app.kubernetes.io/managed-by: weir").count(),
        5
    );
    assert!(
        yaml.rfind("kind: VirtualService").unwrap() < yaml.find("kind: PrometheusRule").unwrap()
    );
    // The caveat is said, on stderr.
    assert!(String::from_utf8_lossy(&o.stderr).contains("locality load balancing is turned off"));

    let dir = tempfile::tempdir().unwrap();
    let o = weir(&[
        "govern",
        "compile",
        "deploy/policies/nearby.yaml",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let written = std::fs::read_to_string(dir.path().join("users.profile.yaml")).unwrap();
    assert!(written.contains("failoverPriority"), "{written}");

    let o = weir(&["govern", "explain", "deploy/policies/canary.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("  3. default: otherwise → v1 90% / v2 10%"),
        "{}",
        text(&o)
    );
}

#[test]
fn govern_refuses_a_bad_policy_with_file_field_and_value_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text_in = std::fs::read_to_string(root().join("deploy/policies/canary.yaml"))
        .unwrap()
        .replace("weight: 90 }", "weight: 80 }")
        .replace(
            "op: in, values: [beta, staff]",
            "op: regex, value: \"(?<=a)b\"",
        );
    std::fs::write(&bad, text_in).unwrap();
    let out = dir.path().join("out");
    let o = weir(&[
        "govern",
        "compile",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.yaml: spec.routes[2].destinations = 80 + 10: weights must sum to 100"),
        "{t}"
    );
    assert!(
        t.contains("bad.yaml: spec.routes[0].match[0].value = \"(?<=a)b\": not an RE2 regex"),
        "{t}"
    );
    assert!(t.contains("2 problem(s)"), "{t}");
    assert!(!out.exists(), "nothing written");
    let o = weir(&["govern", "check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
}

#[test]
fn govern_lint_flags_the_seeds_hand_written_objects_and_passes_compiled_ones() {
    let seed = "crates/weir-govern/tests/fixtures/seed-001-hand-written.yaml";
    let o = weir(&["govern", "lint", seed]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(
            "EnvoyFilter ratelimit-filter: spec.configPatches[0].patch.value: error[WEIR-EF06]"
        ),
        "{t}"
    );
    assert!(t.contains("7 error(s), 6 warning(s)"), "{t}");

    // What the compiler writes, rate limits and environments included, lints clean; the
    // rate-limit service's own file is written beside the objects.
    let dir = tempfile::tempdir().unwrap();
    let o = weir(&[
        "govern",
        "compile",
        "deploy/policies/ratelimit.yaml",
        "deploy/policies/environments.yaml",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(
        dir.path()
            .join("models.model-service.ratelimit-model-service.yaml"),
    )
    .unwrap();
    assert!(config.starts_with("domain: model-service\n"), "{config}");
    // Monitoring: a rules file for Prometheus and a dashboard for Grafana, beside the objects.
    let rules =
        std::fs::read_to_string(dir.path().join("models.model-service.rules.yaml")).unwrap();
    assert!(rules.contains("alert: WeirGovernRateLimited"), "{rules}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models.model-service.dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 4);
    let compiled = [
        dir.path().join("models.model-service.yaml"),
        dir.path().join("shop.payments.yaml"),
    ];
    let mut args = vec!["govern", "lint"];
    args.extend(compiled.iter().map(|p| p.to_str().unwrap()));
    let o = weir(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("lint: 0 errors, 0 warning(s)"),
        "{}",
        text(&o)
    );
}

#[test]
fn govern_compiles_a_standalone_envoy_bootstrap_from_an_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    let text_in = "listen: 127.0.0.1:18000
caller: { region: east, zone: east-1 }
ratelimit_service: 127.0.0.1:8081
endpoints:
  - { subset: v1, address: 127.0.0.1:18081, locality: { region: east, zone: east-1 } }
  - { subset: v2, address: 127.0.0.1:18083 }
";
    std::fs::write(&inv, text_in).unwrap();
    let out = dir.path().join("out");
    let o = weir(&[
        "govern",
        "compile",
        "--target",
        "envoy",
        "--inventory",
        inv.to_str().unwrap(),
        "deploy/policies/ratelimit.yaml",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let envoy = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    assert!(envoy.contains("envoy.filters.http.ratelimit"), "{envoy}");
    assert!(out.join("ratelimit-model-service.yaml").is_file());

    // An inventory naming a subset the policy does not have: nothing written.
    std::fs::write(&inv, text_in.replace("subset: v2", "subset: v3")).unwrap();
    let again = dir.path().join("again");
    let o = weir(&[
        "govern",
        "compile",
        "--target",
        "envoy",
        "--inventory",
        inv.to_str().unwrap(),
        "deploy/policies/ratelimit.yaml",
        "-o",
        again.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("inventory.yaml: endpoints[1].subset = \"v3\": the policy has no such subset"),
        "{t}"
    );
    assert!(
        t.contains("endpoints = \"v2\": no endpoint for this subset"),
        "{t}"
    );
    assert!(!again.exists());
}

#[test]
fn ratelimit_serves_the_compiled_config_and_stops_on_sigterm() {
    use weir_test_support::procs::{PATIENCE, free_port, http_get, wait_for};

    // The configuration exactly as `weir govern compile -o` writes it.
    let dir = tempfile::tempdir().unwrap();
    let o = weir(&[
        "govern",
        "compile",
        "deploy/policies/ratelimit.yaml",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = dir
        .path()
        .join("models.model-service.ratelimit-model-service.yaml");
    let (grpc, http, redis) = (free_port(), free_port(), free_port());
    // Nothing listens on the Redis port: not fatal, said in /status.
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "ratelimit",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{grpc}"),
            "--metrics",
            &format!("127.0.0.1:{http}"),
            "--redis",
            &format!("redis://127.0.0.1:{redis}"),
            "--failure-mode",
            "deny",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(PATIENCE, || {
        http_get(http, "/status").filter(|(code, _)| *code == 200)
    });
    let stop = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let (_, body) = status.unwrap_or_else(|| panic!("no /status; log:\n{log}"));
    assert!(body.contains("model-service"), "{body}");
    assert!(out.status.success(), "exit {:?}; log:\n{log}", out.status);
}

#[test]
fn admit_train_is_deterministic_and_the_proxy_serves_its_table_or_names_the_bad_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    for out in [&a, &b] {
        let o = weir(&[
            "admit",
            "train",
            "--episodes",
            "30",
            "--seed",
            "7",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("30 episodes"), "{}", text(&o));
    }
    let (ta, tb) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert!(!ta.is_empty());
    assert_eq!(ta, tb, "same seed, same table, byte for byte");

    // A proxy configuration naming a table that is not one: refused before listening.
    std::fs::write(
        dir.path().join("bad-table.json"),
        "{\"format\": \"something else\"}",
    )
    .expect("write");
    let conf = dir.path().join("admit.toml");
    std::fs::write(
        &conf,
        format!(
            "upstream = \"http://127.0.0.1:1\"\n[controller]\nkind = \"qlearn\"\ntable = \"{}\"\n",
            dir.path().join("bad-table.json").display()
        ),
    )
    .expect("write");
    let o = weir(&["admit", "proxy", "--config", conf.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("admit.toml") && t.contains("bad-table.json"),
        "{t}"
    );
    std::fs::write(&conf, "upstream = \"http://127.0.0.1:1\"\n[controller]\nkind = \"bbr\"\nmin_limit = 9\nmax_limit = 3\n").expect("write");
    let o = weir(&["admit", "proxy", "--config", conf.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("min_limit") && t.contains("max_limit"), "{t}");
}

#[test]
fn scenarios_generate_writes_the_committed_heldout_set_and_loadable_train_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("heldout");
    let o = weir(&[
        "scenarios",
        "generate",
        "--split",
        "heldout",
        "--seed",
        "2026",
        "--count",
        "12",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let committed = root().join("scenarios/heldout");
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 12);
    for name in names {
        let ours = std::fs::read_to_string(out.join(&name)).unwrap();
        let theirs = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert_eq!(ours, theirs, "{name:?}");
    }

    let train = dir.path().join("train");
    let o = weir(&[
        "scenarios",
        "generate",
        "--split",
        "train",
        "--seed",
        "7",
        "--count",
        "3",
        "--out",
        train.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let first = std::fs::read_to_string(train.join("gen-train-0000.toml")).unwrap();
    assert!(
        first.starts_with(
            "# Generated by `weir scenarios generate --split train --seed 7 --count 3`"
        ),
        "{first}"
    );
    let o = weir(&["scenarios", train.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).lines().filter(|l| l.starts_with("ok")).count(),
        3,
        "{}",
        text(&o)
    );
    let o = weir(&["scenarios", "generate", "--split", "test", "--out", "x"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("heldout"), "{}", text(&o));
}

/// The variable in `pid`'s environment, read from `/proc` (None while it is not there).
fn environ_var(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// Starts a long `weir demo` with `RAYON_NUM_THREADS` as given, and returns the value the
/// same process (the pid does not change across `exec`) ends up with.
fn matmul_threads_seen(given: Option<&str>) -> Option<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["demo", "--speed", "1", "--no-serve"])
        .current_dir(root())
        .env_remove("RAYON_NUM_THREADS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(v) = given {
        cmd.env("RAYON_NUM_THREADS", v);
    }
    let mut child = cmd.spawn().expect("run weir demo");
    let seen = weir_test_support::procs::wait_for(std::time::Duration::from_secs(5), || {
        environ_var(child.id(), "RAYON_NUM_THREADS")
    });
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[cfg(target_os = "linux")]
#[test]
fn weir_pins_candle_to_one_thread_unless_told_otherwise() {
    // Unset: the process re-executes itself with the variable (same pid).
    assert_eq!(matmul_threads_seen(None).as_deref(), Some("1"));
    // Set by the user: kept.
    assert_eq!(matmul_threads_seen(Some("2")).as_deref(), Some("2"));
    // Arguments and the exit status survive the re-execution.
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "--scenarios", "no/such/dir"])
        .current_dir(root())
        .env_remove("RAYON_NUM_THREADS")
        .output()
        .expect("run weir");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no/such/dir"), "{}", text(&o));
}
