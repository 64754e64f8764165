//! `spec.monitoring` → Prometheus rules (a plain rules file and the Prometheus Operator's
//! `PrometheusRule`) and a Grafana dashboard for the governed service, over Istio's standard
//! metrics: the 5xx share per subset (canary against stable), the share of requests a rate
//! limit refused, and outlier ejections.
//!
//! Istio labels its metrics with the destination's `version` (from the pods' `version` or
//! `app.kubernetes.io/version` label): a subset told apart by that label gets its own error
//! ratio; when some subset is not, the service as a whole is watched instead, and a note says
//! why.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::istio::ObjectMeta;
use crate::policy::{Monitoring, TrafficPolicy as Policy};
use crate::problem::Report;

/// The pod labels Istio reads a workload's version from, in its order.
const VERSION_LABELS: [&str; 2] = ["version", "app.kubernetes.io/version"];
/// The recording rule of a subset's (or the service's) 5xx share.
pub const ERROR_RATIO: &str = "weir_govern:error_ratio";
/// The recording rule of the share of requests refused by a rate limit.
pub const RATE_LIMITED_RATIO: &str = "weir_govern:rate_limited_ratio";

/// What monitoring compiles into.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringOutput {
    /// A Prometheus rules file (`groups:`), for Prometheus without the operator.
    pub rules: Value,
    /// The same groups as a `PrometheusRule` (monitoring.coreos.com/v1).
    pub prometheus_rule: Value,
    /// A Grafana dashboard (JSON model, datasource chosen on import).
    pub dashboard: Value,
}

impl MonitoringOutput {
    /// The rules file Prometheus reads (`rule_files:`).
    pub fn rules_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(&self.rules)
    }

    /// The dashboard, as Grafana imports it.
    pub fn dashboard_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.dashboard).map(|s| s + "\n")
    }
}

/// A Prometheus duration (`30s`, `5m`, `1h30m`).
fn is_duration(d: &str) -> bool {
    let mut rest = d;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

/// A PromQL string literal.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The label matchers that select the governed service in Istio's metrics.
fn service_selector(policy: &Policy) -> String {
    let host = &policy.spec.host;
    match (host.contains('.'), &policy.metadata.namespace) {
        (false, Some(ns)) => format!(
            "destination_service_name={},destination_service_namespace={}",
            quote(host),
            quote(ns)
        ),
        (false, None) => format!("destination_service_name={}", quote(host)),
        (true, _) => format!("destination_service={}", quote(host)),
    }
}

fn percent(v: Option<f64>, default: f64, path: &str, report: &mut Report) -> f64 {
    let v = v.unwrap_or(default);
    if !(v > 0.0 && v <= 100.0) {
        report.add(path, Some(v.to_string()), "a percentage in (0, 100]");
    }
    v
}

/// The rules and dashboard, or `None` when the policy asks for no monitoring.
pub(crate) fn compile(
    policy: &Policy,
    meta: &ObjectMeta,
    report: &mut Report,
    notes: &mut Vec<String>,
) -> Option<MonitoringOutput> {
    let m: &Monitoring = policy.spec.monitoring.as_ref()?;
    let before = report.count();
    let path = "spec.monitoring";
    let error_pct = percent(
        m.error_rate_percent,
        5.0,
        &format!("{path}.error_rate_percent"),
        report,
    );
    let limited_pct = percent(
        m.rate_limited_percent,
        10.0,
        &format!("{path}.rate_limited_percent"),
        report,
    );
    if m.rate_limited_percent.is_some() && policy.spec.rate_limit.is_none() {
        report.add(
            &format!("{path}.rate_limited_percent"),
            Some(limited_pct.to_string()),
            "the policy has no rate_limit to watch",
        );
    }
    let for_ = m.for_.clone().unwrap_or_else(|| "5m".to_string());
    let window = m.window.clone().unwrap_or_else(|| "5m".to_string());
    for (field, d) in [("for", &for_), ("window", &window)] {
        if !is_duration(d) {
            report.add(
                &format!("{path}.{field}"),
                Some(format!("{d:?}")),
                "a Prometheus duration (30s, 5m, 1h)",
            );
        }
    }
    let severity = m.severity.clone().unwrap_or_else(|| "warning".to_string());
    for k in m.labels.keys() {
        let ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with("__");
        if !ok || ["policy", "namespace", "subset", "severity"].contains(&k.as_str()) {
            report.add(
                &format!("{path}.labels"),
                Some(format!("{k:?}")),
                "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*), not one Weir sets itself \
                 (policy, namespace, subset, severity)",
            );
        }
    }
    if report.count() > before {
        return None;
    }

    let svc = service_selector(policy);
    let ns = policy.metadata.namespace.clone().unwrap_or_default();
    let own = BTreeMap::from([
        ("policy".to_string(), policy.metadata.name.clone()),
        ("namespace".to_string(), ns.clone()),
    ]);
    let window_name = window.replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let error_record = format!("{ERROR_RATIO}:rate{window_name}");
    let limited_record = format!("{RATE_LIMITED_RATIO}:rate{window_name}");
    let requests = |extra: &str, reporter: &str| {
        format!(
            "sum(rate(istio_requests_total{{reporter={},{svc}{extra}}}[{window}]))",
            quote(reporter)
        )
    };

    // The error ratio per subset when Istio can tell the subsets apart, else the service's.
    let versions: Vec<(String, Option<String>)> = policy
        .spec
        .subsets
        .iter()
        .map(|s| {
            let v = VERSION_LABELS
                .iter()
                .find_map(|l| s.labels.get(*l))
                .cloned();
            (s.name.clone(), v)
        })
        .collect();
    let per_subset = !versions.is_empty() && versions.iter().all(|(_, v)| v.is_some());
    if !per_subset && !versions.is_empty() {
        let blind: Vec<&str> = versions
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        notes.push(format!(
            "monitoring: Istio's metrics tell subsets apart only by the pods' `version` label, \
             which subset(s) {} are not selected by: the error-rate alert watches the service \
             as a whole",
            blind.join(", ")
        ));
    }
    let mut recording = Vec::new();
    let bad = ",response_code=~\"5..\"";
    if per_subset {
        for (name, v) in &versions {
            let v = v.as_deref().unwrap_or_default();
            let sel = format!(",destination_version={}", quote(v));
            let mut labels = own.clone();
            labels.insert("subset".to_string(), name.clone());
            recording.push(json!({
                "record": error_record,
                "expr": format!(
                    "{} / {}",
                    requests(&format!("{sel}{bad}"), "source"),
                    requests(&sel, "source")
                ),
                "labels": labels,
            }));
        }
    } else {
        recording.push(json!({
            "record": error_record,
            "expr": format!("{} / {}", requests(bad, "source"), requests("", "source")),
            "labels": own,
        }));
    }
    let own_sel = format!(
        "policy={},namespace={}",
        quote(&policy.metadata.name),
        quote(&ns)
    );
    let mut alert_labels = m.labels.clone();
    alert_labels.insert("severity".to_string(), severity);
    let subject = if per_subset {
        "subset {{ $labels.subset }} of "
    } else {
        ""
    };
    let mut alerts = vec![json!({
        "alert": "WeirGovernErrorRate",
        "expr": format!("{error_record}{{{own_sel}}} > {}", error_pct / 100.0),
        "for": for_,
        "labels": alert_labels,
        "annotations": {
            "summary": format!(
                "{subject}{} answers {{{{ $value | humanizePercentage }}}} of requests with 5xx \
                 (threshold {error_pct}%)",
                policy.spec.host
            ),
            "description": "The share of 5xx responses callers saw (Istio's istio_requests_total, \
                reporter=source, so circuit-breaker and no-healthy-upstream 503s count). A canary \
                subset above the stable one: stop its rollout (set its weight to 0).",
        },
    })];

    if policy.spec.rate_limit.is_some() {
        recording.push(json!({
            "record": limited_record,
            "expr": format!(
                "{} / {}",
                requests(",response_code=\"429\"", "destination"),
                requests("", "destination")
            ),
            "labels": own,
        }));
        alerts.push(json!({
            "alert": "WeirGovernRateLimited",
            "expr": format!("{limited_record}{{{own_sel}}} > {}", limited_pct / 100.0),
            "for": for_,
            "labels": alert_labels,
            "annotations": {
                "summary": format!(
                    "{{{{ $value | humanizePercentage }}}} of requests to {} are refused by a \
                     rate limit (threshold {limited_pct}%)",
                    policy.spec.host
                ),
                "description": "Requests answered 429 by the service's proxies (local and global \
                    limits). Either demand grew past the limit or the limit is too low.",
            },
        }));
    }

    let ejecting = policy
        .spec
        .circuit_breaker
        .as_ref()
        .is_some_and(|cb| cb.consecutive_5xx.is_some())
        || policy.spec.locality.is_some();
    let cluster_re = ejections_cluster_regex(policy);
    if ejecting {
        alerts.push(json!({
            "alert": "WeirGovernOutlierEjections",
            "expr": format!(
                "sum(envoy_cluster_outlier_detection_ejections_active{{cluster_name=~{}}}) > 0",
                quote(&cluster_re)
            ),
            "for": for_,
            "labels": alert_labels,
            "annotations": {
                "summary": format!(
                    "callers of {} are ejecting {{{{ $value }}}} instance(s) for consecutive 5xx",
                    policy.spec.host
                ),
                "description": "Outlier detection took instances out of rotation. Needs the \
                    proxies to export outlier stats (meshConfig.defaultConfig.proxyStatsMatcher \
                    inclusionRegexps: \".*outlier_detection.*\").",
            },
        }));
        notes.push(
            "monitoring: the outlier-ejection alert reads Envoy's outlier-detection stats, which \
             Istio exports only with meshConfig.defaultConfig.proxyStatsMatcher.inclusionRegexps \
             \".*outlier_detection.*\""
                .to_string(),
        );
    }

    let group = format!("weir-govern.{}.{}", ns, policy.metadata.name);
    let groups = json!([
        { "name": format!("{group}.records"), "rules": recording },
        { "name": format!("{group}.alerts"), "rules": alerts },
    ]);
    let rules = json!({ "groups": groups });
    let mut metadata = json!({ "name": meta.name, "labels": meta.labels });
    if let Some(ns) = &meta.namespace {
        metadata["namespace"] = Value::String(ns.clone());
    }
    let prometheus_rule = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": { "groups": groups },
    });
    let dashboard = dashboard(
        policy,
        &svc,
        &window,
        &versions,
        per_subset,
        &cluster_re,
        ejecting,
    );
    Some(MonitoringOutput {
        rules,
        prometheus_rule,
        dashboard,
    })
}

/// The Envoy clusters callers use for the service (`outbound|PORT|SUBSET|HOST`), as a regex.
fn ejections_cluster_regex(policy: &Policy) -> String {
    let host = crate::matcher::escape(&policy.spec.host);
    let port = policy
        .spec
        .port
        .map(|p| p.to_string())
        .unwrap_or_else(|| "[0-9]+".to_string());
    format!("outbound\\|{port}\\|[^|]*\\|{host}")
}

fn target(expr: String, legend: &str, ref_id: &str) -> Value {
    json!({
        "datasource": { "type": "prometheus", "uid": "${DS_PROMETHEUS}" },
        "expr": expr,
        "legendFormat": legend,
        "refId": ref_id,
    })
}

fn panel(id: u32, title: &str, unit: &str, x: u32, y: u32, targets: Vec<Value>) -> Value {
    json!({
        "id": id,
        "type": "timeseries",
        "title": title,
        "datasource": { "type": "prometheus", "uid": "${DS_PROMETHEUS}" },
        "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
        "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
        "options": { "legend": { "displayMode": "list", "placement": "bottom" } },
        "targets": targets,
    })
}

fn dashboard(
    policy: &Policy,
    svc: &str,
    window: &str,
    versions: &[(String, Option<String>)],
    per_subset: bool,
    cluster_re: &str,
    ejecting: bool,
) -> Value {
    let by = if per_subset {
        "destination_version"
    } else {
        "destination_service"
    };
    let legend = if per_subset {
        "{{destination_version}}"
    } else {
        "{{destination_service}}"
    };
    let rate = |extra: &str, reporter: &str| {
        format!(
            "sum by ({by}) (rate(istio_requests_total{{reporter=\"{reporter}\",{svc}{extra}}}[{window}]))"
        )
    };
    let mut panels = vec![
        panel(
            1,
            "Requests per second by subset",
            "reqps",
            0,
            0,
            vec![target(rate("", "source"), legend, "A")],
        ),
        panel(
            2,
            "5xx share by subset (callers' view)",
            "percentunit",
            12,
            0,
            vec![target(
                format!(
                    "{} / {}",
                    rate(",response_code=~\"5..\"", "source"),
                    rate("", "source")
                ),
                legend,
                "A",
            )],
        ),
        panel(
            3,
            "p99 latency by subset",
            "ms",
            0,
            8,
            vec![target(
                format!(
                    "histogram_quantile(0.99, sum by (le, {by}) (rate(istio_request_duration_milliseconds_bucket{{reporter=\"source\",{svc}}}[{window}])))"
                ),
                legend,
                "A",
            )],
        ),
    ];
    if policy.spec.rate_limit.is_some() {
        panels.push(panel(
            4,
            "Share refused by rate limits (429)",
            "percentunit",
            12,
            8,
            vec![target(
                format!(
                    "sum(rate(istio_requests_total{{reporter=\"destination\",{svc},response_code=\"429\"}}[{window}])) / sum(rate(istio_requests_total{{reporter=\"destination\",{svc}}}[{window}]))"
                ),
                "refused",
                "A",
            )],
        ));
    }
    if ejecting {
        panels.push(panel(
            5,
            "Instances ejected by outlier detection",
            "short",
            0,
            16,
            vec![target(
                format!(
                    "sum by (cluster_name) (envoy_cluster_outlier_detection_ejections_active{{cluster_name=~{}}})",
                    quote(cluster_re)
                ),
                "{{cluster_name}}",
                "A",
            )],
        ));
    }
    let subsets: Vec<String> = versions
        .iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n} (version {v})"),
            None => n.clone(),
        })
        .collect();
    json!({
        "title": format!("Weir governance: {}", policy.spec.host),
        "uid": format!(
            "weir-govern-{}",
            format!(
                "{}-{}",
                policy.metadata.namespace.as_deref().unwrap_or("default"),
                policy.metadata.name
            )
            .chars()
            .take(28)
            .collect::<String>()
        ),
        "description": format!(
            "Traffic governed by TrafficPolicy {} (subsets: {}), from Istio's standard metrics.",
            policy.metadata.name,
            subsets.join(", ")
        ),
        "tags": ["weir", "istio"],
        "schemaVersion": 39,
        "time": { "from": "now-6h", "to": "now" },
        "templating": { "list": [{
            "name": "DS_PROMETHEUS",
            "type": "datasource",
            "query": "prometheus",
            "label": "Prometheus",
        }]},
        "panels": panels,
    })
}

#[cfg(test)]
mod tests;
