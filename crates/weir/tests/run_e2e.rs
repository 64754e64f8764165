//! `weir check` and `weir run` end to end against a real Prometheus and a real HAProxy.
//!
//! One test, so the components start once: a `/metrics` endpoint the test controls (two
//! replicas, one 40 s behind), Prometheus scraping it every second, HAProxy with a read backend
//! at even weights. `weir run` in enforce mode must take the lagging replica out of HAProxy,
//! hold when Prometheus dies, count actuation errors and keep running when HAProxy's socket
//! goes away, say so on its API, and stop cleanly on SIGTERM. Every step waits for its outcome
//! (at most [`PATIENCE`], which only a hang reaches); nothing asserts how long a step took.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use weir_test_support::procs::{
    Exposition, Haproxy, PATIENCE, Prometheus, free_port, http_get, wait_for,
};

const BACKEND: &str = "mysql_reads";

fn metrics(lag_1: f64, lag_2: f64) -> String {
    let mut m = String::new();
    for (name, lag) in [("replica-1", lag_1), ("replica-2", lag_2)] {
        m.push_str(&format!(
            "mysql_heartbeat_now_timestamp_seconds{{instance=\"{name}:9104\"}} 1000\n\
             mysql_heartbeat_stored_timestamp_seconds{{instance=\"{name}:9104\"}} {}\n\
             mysql_up{{instance=\"{name}:9104\"}} 1\n",
            1000.0 - lag
        ));
    }
    m
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn weir_run_takes_a_lagging_replica_out_of_haproxy_and_holds_when_prometheus_dies() {
    let exposition = Exposition::start(&metrics(40.0, 0.5));
    let mut prometheus = Prometheus::start(&[exposition.port]);
    let haproxy = Haproxy::start(BACKEND, &["primary", "replica-1", "replica-2"], 0);
    // Even replica weights to start with.
    for s in ["replica-1", "replica-2"] {
        haproxy
            .command(&format!("set weight {BACKEND}/{s} 50"))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"mode = "enforce"
interval_s = 1
listen = "127.0.0.1:{listen}"
audit_log = "{audit}"
state_dir = "{state}"
[prometheus]
url = "{url}"
timeout_s = 2
replicas = [
  {{ name = "replica-1", label_value = "replica-1:9104" }},
  {{ name = "replica-2", label_value = "replica-2:9104" }},
]
[shield]
stale_after_s = 3
fail_safe_after = 1000
[policy]
kind = "qlearn"
model = "{model}"
online_learning = true
[actuator]
kind = "haproxy"
address = "tcp://127.0.0.1:{admin}"
backend = "{BACKEND}"
primary_server = "primary"
replica_servers = ["replica-1", "replica-2"]
"#,
            audit = dir.path().join("audit.jsonl").display(),
            state = dir.path().join("state").display(),
            url = prometheus.url(),
            model = root().join("models/qlearn.json").display(),
            admin = haproxy.admin_port,
        ),
    )
    .unwrap();

    // Wait until Prometheus has the series, then `weir check` sees them and plans the change.
    let seen = wait_for(PATIENCE, || {
        http_get(prometheus.port, "/api/v1/query?query=mysql_up")
            .filter(|(_, body)| body.contains("replica-2:9104"))
    });
    assert!(
        seen.is_some(),
        "prometheus never scraped the test endpoint:\n{}",
        prometheus.log()
    );
    let check = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(out.contains("replica-1: 40.000"), "{out}");
    assert!(out.contains("current weights P0/50/50"), "{out}");
    assert!(
        out.contains(&format!("set weight {BACKEND}/replica-1 0")),
        "{out}"
    );
    assert!(out.contains("NEW connections only"), "{out}");
    assert_eq!(
        haproxy.weight(BACKEND, "replica-1"),
        Some(50),
        "check must not send anything"
    );

    let mut weir = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("weir.log")).unwrap())
        .spawn()
        .unwrap();
    let weir_log = || std::fs::read_to_string(dir.path().join("weir.log")).unwrap_or_default();

    // 40 s of lag is past the hard limit: replica-1 must get no new connections.
    let out_of_rotation = wait_for(PATIENCE, || {
        (haproxy.weight(BACKEND, "replica-1") == Some(0)).then_some(())
    });
    assert!(
        out_of_rotation.is_some(),
        "replica-1 still has weight:\n{}",
        weir_log()
    );
    let replica_2 = haproxy.weight(BACKEND, "replica-2").unwrap();
    assert!(replica_2 > 0);

    // A hand edit behind Weir's back (as a reload from the config file would do): Weir
    // notices the drift before its next decision, counts it and puts its own weights back.
    // The edit is repeated until counted, since one landing between a decision's read-back
    // and its write is overwritten unseen.
    let drift_counted = wait_for(PATIENCE, || {
        let counted = http_get(listen, "/metrics").filter(|(_, body)| {
            body.lines()
                .any(|l| l.starts_with("weir_weights_drift_total ") && !l.ends_with(" 0"))
        });
        if counted.is_none() {
            let _ = haproxy.command(&format!("set weight {BACKEND}/replica-1 50"));
        }
        counted
    });
    assert!(
        drift_counted.is_some(),
        "drift not counted:\n{}",
        weir_log()
    );
    let restored = wait_for(PATIENCE, || {
        (haproxy.weight(BACKEND, "replica-1") == Some(0)).then_some(())
    });
    assert!(restored.is_some(), "drift not repaired:\n{}", weir_log());
    assert!(
        weir_log().contains("not the ones Weir applied"),
        "{}",
        weir_log()
    );

    // Prometheus dies: the loop holds the weights and reports the source error.
    prometheus.kill();
    let holding = wait_for(PATIENCE, || {
        http_get(listen, "/api/state")
            .filter(|(_, body)| body.contains("stale_observation") && body.contains("unreachable"))
    });
    assert!(holding.is_some(), "no hold reported:\n{}", weir_log());
    assert_eq!(haproxy.weight(BACKEND, "replica-1"), Some(0));
    assert_eq!(haproxy.weight(BACKEND, "replica-2"), Some(replica_2));
    let (status, metrics_text) = http_get(listen, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics_text.contains("weir_source_errors_total"),
        "{metrics_text}"
    );

    // HAProxy's socket goes away: every re-apply fails, is counted by kind, and Weir keeps
    // running (and keeps the weights it knows are in force).
    let admin = haproxy.admin_port;
    drop(haproxy);
    let counted = wait_for(PATIENCE, || {
        http_get(listen, "/metrics").filter(|(_, body)| {
            body.lines().any(|l| {
                l.starts_with("weir_actuation_errors_total{kind=\"unreachable\"}")
                    && !l.ends_with(" 0")
            })
        })
    });
    assert!(
        counted.is_some(),
        "no actuation error counted:\n{}",
        weir_log()
    );
    let (_, state) = http_get(listen, "/api/state").unwrap();
    assert!(state.contains(&format!("127.0.0.1:{admin}")), "{state}");
    assert!(weir.try_wait().unwrap().is_none(), "weir must keep running");

    // SIGTERM: it finishes the decision in flight and exits cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &weir.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exited = wait_for(PATIENCE, || weir.try_wait().ok().flatten());
    let status = exited.unwrap_or_else(|| {
        let _ = weir.kill();
        panic!("weir did not stop on SIGTERM:\n{}", weir_log())
    });
    assert!(status.success(), "exit {status}:\n{}", weir_log());

    // The learned state was saved atomically at shutdown and is a loadable model.
    let saved = dir.path().join("state/policy.json");
    let q = weir_policy::QLearn::load(&saved).unwrap();
    assert!(q.visited_states() > 0);

    // One JSON line per decision in the audit log.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    assert!(lines.len() >= 2, "{audit}");
    assert!(
        lines.iter().any(|l| l.contains("\"drift\":{\"expected\"")),
        "no drift in the audit log"
    );
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v.get("decision").is_some());
    }
}
