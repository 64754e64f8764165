//! Monitoring settings are checked, and subsets Istio cannot tell apart fall back to the
//! service as a whole, said in a note.

use crate::tests::{BASE, assert_refused};

fn with(monitoring: &str) -> String {
    format!("{BASE}  monitoring: {monitoring}\n")
}

#[test]
fn wrong_monitoring_settings_are_refused() {
    let base = with("{ error_rate_percent: 5, for: 5m, window: 1m, labels: { team: a } }");
    assert_refused(
        &base,
        &[
            (
                "error_rate_percent: 5",
                "error_rate_percent: 0",
                "p.yaml: spec.monitoring.error_rate_percent = 0: a percentage in (0, 100]",
            ),
            (
                "for: 5m",
                "for: 5 minutes",
                "spec.monitoring.for = \"5 minutes\": a Prometheus duration",
            ),
            (
                "window: 1m",
                "window: 1m30",
                "spec.monitoring.window = \"1m30\": a Prometheus duration",
            ),
            (
                "team: a",
                "subset: a",
                "spec.monitoring.labels = \"subset\": a Prometheus label name",
            ),
            (
                "team: a",
                "team-x: a",
                "spec.monitoring.labels = \"team-x\": a Prometheus label name",
            ),
            (
                "error_rate_percent: 5,",
                "rate_limited_percent: 5,",
                "spec.monitoring.rate_limited_percent = 5: the policy has no rate_limit to watch",
            ),
        ],
    );
}

#[test]
fn subsets_without_a_version_label_are_watched_as_one_service() {
    let text = with("{}").replace("{ version: v2 }", "{ track: canary }");
    let p = crate::parse(&text, "p.yaml").unwrap().remove(0);
    let out = crate::compile(&p, "p.yaml").unwrap();
    let m = out.monitoring.as_ref().unwrap();
    let records = m.rules["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0]["labels"].get("subset").is_none());
    let expr = records[0]["expr"].as_str().unwrap();
    // A short host is read in the policy's namespace (none here: by name).
    assert!(
        expr.contains("destination_service_name=\"checkout\""),
        "{expr}"
    );
    assert!(!expr.contains("destination_version"), "{expr}");
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("subset(s) v2 are not selected by")),
        "{:?}",
        out.notes
    );
    // Per subset when every subset has a version.
    let p = crate::parse(&with("{}"), "p.yaml").unwrap().remove(0);
    let out = crate::compile(&p, "p.yaml").unwrap();
    let records = out.monitoring.unwrap().rules["groups"][0]["rules"].clone();
    assert_eq!(records.as_array().unwrap().len(), 2);
    assert_eq!(records[1]["labels"]["subset"], "v2");
}
