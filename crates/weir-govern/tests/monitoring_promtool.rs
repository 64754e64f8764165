//! `spec.monitoring` checked by the real `promtool` (Debian's `prometheus` package, installed by
//! `cargo xtask test`): the generated rules load, their unit tests fire the error-rate alert for
//! the subset that fails and not for the healthy one, the rate-limit and ejection alerts fire
//! on their metrics and only for this service, and every dashboard query parses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use weir_govern::{Output, compile, parse};

fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool not found: run `cargo xtask prerequisites` (Debian's prometheus package)")
}

fn compiled(name: &str) -> Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/policies")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    compile(&parse(&text, name).unwrap()[0], name).unwrap()
}

fn run(args: &[&Path]) -> String {
    let o = Command::new(promtool()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

/// A counter rising by `per_min` each minute for 30 minutes.
fn series(labels: &str, per_min: u32) -> Value {
    json!({ "series": format!("istio_requests_total{{{labels}}}"), "values": format!("0+{per_min}x30") })
}

#[test]
fn the_error_rate_alert_fires_for_the_failing_subset_only() {
    let out = compiled("canary.yaml");
    let m = out
        .monitoring
        .as_ref()
        .expect("canary.yaml asks for monitoring");
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules.json", &m.rules);
    let checked = run(&[Path::new("check"), Path::new("rules"), &rules]);
    assert!(checked.contains("SUCCESS"), "{checked}");

    let svc = "reporter=\"source\",destination_service=\"checkout.shop.svc.cluster.local\"";
    let other = "reporter=\"source\",destination_service=\"other.shop.svc.cluster.local\"";
    let tests = json!({
        "rule_files": [rules.file_name().unwrap().to_str().unwrap()],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                // v1: 1 % errors; v2 (the canary): 10 %; another service: all errors.
                series(&format!("{svc},destination_version=\"v1\",response_code=\"200\""), 990),
                series(&format!("{svc},destination_version=\"v1\",response_code=\"503\""), 10),
                series(&format!("{svc},destination_version=\"v2\",response_code=\"200\""), 90),
                series(&format!("{svc},destination_version=\"v2\",response_code=\"503\""), 10),
                series(&format!("{other},destination_version=\"v1\",response_code=\"500\""), 50),
                { "series": "envoy_cluster_outlier_detection_ejections_active{cluster_name=\"outbound|8080|v2|checkout.shop.svc.cluster.local\"}", "values": "0x5 1x25" },
                { "series": "envoy_cluster_outlier_detection_ejections_active{cluster_name=\"outbound|8080|v2|checkout.shop.svc.cluster.local.evil\"}", "values": "3x30" },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "WeirGovernErrorRate",
                    "exp_alerts": [{
                        "exp_labels": {
                            "severity": "warning", "team": "checkout", "policy": "checkout",
                            "namespace": "shop", "subset": "v2",
                        },
                        "exp_annotations": {
                            "summary": "subset v2 of checkout.shop.svc.cluster.local answers 10% of requests with 5xx (threshold 5%)",
                            "description": m.rules["groups"][1]["rules"][0]["annotations"]["description"],
                        },
                    }],
                },
                // `for: 5m`: not yet two minutes in.
                { "eval_time": "2m", "alertname": "WeirGovernErrorRate", "exp_alerts": [] },
                {
                    "eval_time": "20m",
                    "alertname": "WeirGovernOutlierEjections",
                    "exp_alerts": [{
                        "exp_labels": { "severity": "warning", "team": "checkout" },
                        "exp_annotations": {
                            "summary": "callers of checkout.shop.svc.cluster.local are ejecting 1 instance(s) for consecutive 5xx",
                            "description": m.rules["groups"][1]["rules"][1]["annotations"]["description"],
                        },
                    }],
                },
            ],
        }],
    });
    let t = write(dir.path(), "rules.test.json", &tests);
    let out = run(&[Path::new("test"), Path::new("rules"), &t]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_rate_limited_alert_fires_on_429s_of_this_service() {
    let out = compiled("ratelimit.yaml");
    let m = out.monitoring.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules.json", &m.rules);
    let svc =
        "reporter=\"destination\",destination_service=\"model-service.models.svc.cluster.local\"";
    let limited = |code: &str, n| series(&format!("{svc},response_code=\"{code}\""), n);
    let alert = m.rules["groups"][1]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "WeirGovernRateLimited")
        .unwrap()
        .clone();
    let tests = json!({
        "rule_files": [rules.file_name().unwrap().to_str().unwrap()],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [limited("200", 80), limited("429", 20)],
                "alert_rule_test": [{
                    "eval_time": "15m",
                    "alertname": "WeirGovernRateLimited",
                    "exp_alerts": [{
                        "exp_labels": { "severity": "warning", "policy": "model-service", "namespace": "models" },
                        "exp_annotations": {
                            "summary": "20% of requests to model-service.models.svc.cluster.local are refused by a rate limit (threshold 10%)",
                            "description": alert["annotations"]["description"],
                        },
                    }],
                }],
            },
            {
                "interval": "1m",
                "input_series": [limited("200", 95), limited("429", 5)],
                "alert_rule_test": [{ "eval_time": "15m", "alertname": "WeirGovernRateLimited", "exp_alerts": [] }],
            },
        ],
    });
    let t = write(dir.path(), "rules.test.json", &tests);
    let out = run(&[Path::new("test"), Path::new("rules"), &t]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_dashboard_query_parses() {
    for name in ["canary.yaml", "ratelimit.yaml"] {
        let out = compiled(name);
        let d = &out.monitoring.as_ref().unwrap().dashboard;
        let mut recs = Vec::new();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.contains('$'), "{expr}");
                recs.push(
                    json!({ "record": format!("dashboard:panel_{}", p["id"]), "expr": expr }),
                );
            }
        }
        let n = recs.len();
        assert!(n >= 3, "{name}: {n} queries");
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "queries.json",
            &json!({ "groups": [{ "name": "dashboard", "rules": recs }] }),
        );
        let checked = run(&[Path::new("check"), Path::new("rules"), &f]);
        assert!(
            checked.contains(&format!("SUCCESS: {n} rules found")),
            "{checked}"
        );
    }
}
