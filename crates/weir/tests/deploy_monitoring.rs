//! The monitoring shipped in `deploy/`: the Prometheus alert rules (the plain rules file and
//! the Prometheus Operator's `PrometheusRule`), their `promtool` unit tests, and the Grafana
//! dashboard. They are checked with the real `promtool` (Debian's `prometheus` package) and
//! against the metrics that a running `weir demo` actually exposes, so a renamed metric breaks
//! this test rather than a dashboard nobody looks at until the night it matters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weir_test_support::procs::{find_binary, free_port, http_get, output_text, wait_for};

const RULES: &str = "deploy/prometheus/weir-rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/weir-rules.test.yml";
const PROMETHEUS_RULE: &str = "deploy/prometheus/weir-prometheusrule.yaml";
const DASHBOARD: &str = "deploy/grafana/weir.json";
const RUNBOOK: &str = "https://example.invalid/weir/blob/main/docs/running.md#alerts";
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";

/// The alerts operators are promised (deploy/README.md); more may exist.
const REQUIRED_ALERTS: [&str; 7] = [
    "WeirReplicaLagOverSlo",
    "WeirNotDeciding",
    "WeirAbsent",
    "WeirActuationErrors",
    "WeirFailSafeEngaged",
    "WeirHardLimitViolation",
    "WeirSourceErrors",
];

/// prometheus-mysqld-exporter metrics the dashboard may use (Weir cannot expose these).
const MYSQLD_EXPORTER_METRICS: [&str; 4] = [
    "mysql_heartbeat_now_timestamp_seconds",
    "mysql_heartbeat_stored_timestamp_seconds",
    "mysql_slave_status_seconds_behind_master",
    "mysql_up",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

fn promtool(args: &[&str]) -> Output {
    Command::new(find_binary("promtool", "prometheus"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run promtool")
}

/// `promtool check rules` on a file; panics with promtool's output unless it succeeds.
fn check_rules(path: &Path, what: &str) -> String {
    let o = promtool(&["check", "rules", path.to_str().expect("utf-8 path")]);
    let text = output_text(&o);
    assert!(
        o.status.success(),
        "`promtool check rules` rejects {what} ({}):\n{text}",
        path.display()
    );
    text
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Every rule of every group of a rules file's `groups`.
fn rules(groups: &Value) -> Vec<&Value> {
    groups
        .as_array()
        .expect("`groups` is a list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("a group has `rules`"))
        .collect()
}

fn alert_names(groups: &Value) -> BTreeSet<String> {
    rules(groups)
        .into_iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_every_alert_is_complete() {
    let doc = yaml(RULES);
    let groups = &doc["groups"];
    let names: Vec<&str> = groups
        .as_array()
        .expect("`groups` is a list")
        .iter()
        .map(|g| str_at(g, "/name"))
        .collect();
    assert_eq!(names, ["weir"], "{RULES}: one group named `weir`");

    let out = check_rules(&root().join(RULES), RULES);
    let n = rules(groups).len();
    assert!(
        out.contains(&format!("SUCCESS: {n} rules found")),
        "promtool should find the file's {n} rules:\n{out}"
    );

    let alerts = alert_names(groups);
    for want in REQUIRED_ALERTS {
        assert!(
            alerts.contains(want),
            "{RULES}: no alert {want}: {alerts:?}"
        );
    }
    for r in rules(groups) {
        let name = str_at(r, "/alert");
        assert!(!name.is_empty(), "{RULES}: a rule is not an alert: {r}");
        assert!(
            r.get("for").and_then(Value::as_str).is_some(),
            "{RULES}: {name} has no `for:`"
        );
        let severity = str_at(r, "/labels/severity");
        assert!(
            ["warning", "critical"].contains(&severity),
            "{RULES}: {name} has severity {severity:?}, want warning or critical"
        );
        for key in ["summary", "description"] {
            assert!(
                !str_at(r, &format!("/annotations/{key}")).trim().is_empty(),
                "{RULES}: {name} has no {key}"
            );
        }
        assert_eq!(
            str_at(r, "/annotations/runbook_url"),
            RUNBOOK,
            "{RULES}: {name}'s runbook_url"
        );
    }
}

#[test]
fn promtool_unit_tests_pass_and_cover_every_alert_both_ways() {
    let tests = yaml(RULE_TESTS);
    assert_eq!(
        tests["rule_files"],
        json!(["weir-rules.yml"]),
        "{RULE_TESTS} must test the plain rules file, the source of truth"
    );
    // For each alert: is there a case where it fires, and one where it must stay quiet?
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in tests["tests"].as_array().expect("`tests` is a list") {
        for c in t["alert_rule_test"].as_array().into_iter().flatten() {
            let fires = c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            let entry = cases
                .entry(str_at(c, "/alertname").to_string())
                .or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    for alert in alert_names(&yaml(RULES)["groups"]) {
        let (fires, quiet) = cases.get(&alert).copied().unwrap_or_default();
        assert!(fires, "{RULE_TESTS}: no case where {alert} fires");
        assert!(quiet, "{RULE_TESTS}: no case where {alert} must not fire");
    }

    let o = promtool(&["test", "rules", RULE_TESTS]);
    let text = output_text(&o);
    println!("{text}");
    assert!(
        o.status.success(),
        "`promtool test rules {RULE_TESTS}` failed:\n{text}"
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_prometheus_rule_carries_the_same_groups_and_promtool_accepts_them() {
    let pr = yaml(PROMETHEUS_RULE);
    assert_eq!(
        str_at(&pr, "/apiVersion"),
        "monitoring.coreos.com/v1",
        "{PROMETHEUS_RULE}"
    );
    assert_eq!(str_at(&pr, "/kind"), "PrometheusRule", "{PROMETHEUS_RULE}");
    assert_eq!(str_at(&pr, "/metadata/name"), "weir", "{PROMETHEUS_RULE}");
    assert_eq!(
        pr["metadata"]["labels"],
        json!({"app.kubernetes.io/name": "weir", "release": "prometheus"}),
        "{PROMETHEUS_RULE}: metadata.labels"
    );
    let plain = yaml(RULES);
    assert!(plain["groups"].is_array(), "{RULES} has no groups");
    if pr["spec"]["groups"] != plain["groups"] {
        // Name the first rule that differs, to keep the message readable.
        let (ours, theirs) = (rules(&pr["spec"]["groups"]), rules(&plain["groups"]));
        let first = ours.iter().zip(&theirs).find(|(a, b)| a != b);
        let detail = match first {
            Some((a, b)) => format!(
                "first difference, rule {:?}:\nPrometheusRule: {a}\nplain file:     {b}",
                str_at(b, "/alert")
            ),
            None => format!(
                "group names or rule counts differ ({} rules vs {})",
                ours.len(),
                theirs.len()
            ),
        };
        panic!(
            "{PROMETHEUS_RULE}: spec.groups differ from the groups of {RULES}, the source of \
             truth; copy them over. {detail}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("prometheusrule-spec.yml");
    let text = serde_norway::to_string(&json!({ "groups": pr["spec"]["groups"] })).unwrap();
    std::fs::write(&spec, text).unwrap();
    check_rules(&spec, &format!("the spec of {PROMETHEUS_RULE}"));
}

/// Every non-row panel of the dashboard (rows only group them).
fn panels(d: &Value) -> Vec<&Value> {
    d["panels"]
        .as_array()
        .expect("the dashboard has `panels`")
        .iter()
        .flat_map(|p| {
            // A collapsed row keeps its panels inside it.
            std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten())
        })
        .collect()
}

fn is_row(p: &Value) -> bool {
    p["type"] == "row"
}

#[test]
fn the_dashboard_is_importable_and_laid_out() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39, "{DASHBOARD}: schemaVersion");
    let inputs = d["__inputs"].as_array().expect("`__inputs` for import");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{DASHBOARD}: no DS_PROMETHEUS datasource input: {inputs:?}"
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| str_at(v, "/name"))
        .collect();
    for want in ["job", "instance", "db_job"] {
        assert!(vars.contains(&want), "{DASHBOARD}: no `{want}` variable");
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = str_at(p, "/title");
        assert!(
            !title.trim().is_empty(),
            "{DASHBOARD}: a panel has no title: {p}"
        );
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(
            ids.insert(id),
            "{DASHBOARD}: panel id {id} ({title}) is used twice"
        );
        if is_row(p) {
            continue;
        }
        assert!(
            !str_at(p, "/description").trim().is_empty(),
            "{DASHBOARD}: panel {title:?} has no description"
        );
        assert_eq!(
            str_at(p, "/datasource/uid"),
            DATASOURCE_UID,
            "{DASHBOARD}: panel {title:?}'s datasource"
        );
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            !targets.is_empty(),
            "{DASHBOARD}: panel {title:?} has no query"
        );
        for t in targets {
            assert_eq!(
                str_at(t, "/datasource/uid"),
                DATASOURCE_UID,
                "{DASHBOARD}: a query of {title:?}"
            );
            assert!(!str_at(t, "/expr").is_empty(), "{title:?}: empty query {t}");
        }
    }

    // gridPos: inside the 24 columns and no two panels on the same cell.
    let rect = |p: &Value| {
        let g = |k: &str| p["gridPos"][k].as_u64().unwrap_or(0);
        (g("x"), g("y"), g("w"), g("h"))
    };
    for (i, a) in all.iter().enumerate() {
        let (x, y, w, h) = rect(a);
        let title = str_at(a, "/title");
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "{title:?}: gridPos {:?}",
            a["gridPos"]
        );
        for b in &all[i + 1..] {
            let (bx, by, bw, bh) = rect(b);
            let overlap = x < bx + bw && bx < x + w && y < by + bh && by < y + h;
            assert!(
                !overlap,
                "{DASHBOARD}: panels {title:?} {:?} and {:?} {:?} overlap",
                a["gridPos"],
                str_at(b, "/title"),
                b["gridPos"]
            );
        }
    }

    // The staleness SLO is drawn dashed on the lag panel.
    let lag = all
        .iter()
        .find(|p| {
            let exprs: Vec<&str> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| str_at(t, "/expr"))
                .collect();
            exprs.iter().any(|e| e.contains("weir_replica_lag_seconds"))
                && exprs
                    .iter()
                    .any(|e| e.contains("weir_slo_max_staleness_seconds"))
        })
        .expect("a panel shows weir_replica_lag_seconds with weir_slo_max_staleness_seconds");
    let slo_ref = lag["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| str_at(t, "/expr").contains("weir_slo_max_staleness_seconds"))
        .map(|t| str_at(t, "/refId"))
        .unwrap();
    let dashed = lag["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["matcher"]["id"] == "byFrameRefID" && o["matcher"]["options"] == slo_ref)
        .flat_map(|o| o["properties"].as_array().into_iter().flatten())
        .any(|p| p["id"] == "custom.lineStyle" && p["value"]["fill"] == "dash");
    assert!(
        dashed,
        "{:?}: the SLO query {slo_ref} is not drawn dashed",
        str_at(lag, "/title")
    );

    // Hard-limit violations must stay 0: a stat that turns red at 1.
    let hard = all
        .iter()
        .find(|p| p.to_string().contains("weir_hard_limit_violations_total"))
        .expect("a panel shows weir_hard_limit_violations_total");
    assert_eq!(hard["type"], "stat", "hard-limit violations panel type");
    let steps = hard["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        steps.iter().any(|s| s["color"] == "red" && s["value"] == 1),
        "hard-limit violations: no red threshold at 1: {steps:?}"
    );
}

/// Every PromQL query of the dashboard, as (where, query): panel targets and variables.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!(
                    "panel {} {:?} query {}",
                    p["id"],
                    str_at(p, "/title"),
                    t["refId"]
                ),
                str_at(t, "/expr").to_string(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or("");
        out.push((format!("variable {}", v["name"]), q.to_string()));
        out.push((
            format!("variable {} definition", v["name"]),
            str_at(v, "/definition").to_string(),
        ));
    }
    out
}

/// Panel and dashboard descriptions, which name metrics for the reader.
fn dashboard_prose(d: &Value) -> Vec<(String, String)> {
    let mut out = vec![(
        "dashboard description".to_string(),
        str_at(d, "/description").to_string(),
    )];
    for p in panels(d) {
        out.push((
            format!("description of panel {:?}", str_at(p, "/title")),
            str_at(p, "/description").to_string(),
        ));
    }
    out
}

#[test]
fn promtool_parses_every_dashboard_query() {
    let d = dashboard();
    // Each panel query as a recording rule, with Grafana's variables filled in.
    let mut recs = Vec::new();
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = str_at(t, "/expr")
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", "weir:9464")
                .replace("$db_job", "mysqld")
                .replace("$job", "weir");
            assert!(
                !expr.contains('$'),
                "panel {:?}: a variable this test does not know: {expr}",
                str_at(p, "/title")
            );
            recs.push(json!({
                "record": format!("weir_dashboard:panel_{}_{}", p["id"], str_at(t, "/refId")),
                "expr": expr,
            }));
        }
    }
    let n = recs.len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    let doc = json!({ "groups": [{ "name": "dashboard", "rules": recs }] });
    std::fs::write(&file, serde_norway::to_string(&doc).unwrap()).unwrap();
    let out = check_rules(&file, &format!("a query of {DASHBOARD}"));
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

/// Metric names in a PromQL expression: identifiers outside quoted strings.
fn promql_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut ident = String::new();
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            if !(ident.is_empty() && c.is_ascii_digit()) {
                ident.push(c);
            }
            continue;
        }
        if !ident.is_empty() {
            names.push(std::mem::take(&mut ident));
        }
        if matches!(c, '"' | '\'' | '`') {
            // Skip the string (label values, regexes).
            let mut escaped = false;
            for s in chars.by_ref() {
                match s {
                    '\\' if !escaped => escaped = true,
                    s if s == c && !escaped => break,
                    _ => escaped = false,
                }
            }
        }
    }
    if !ident.is_empty() {
        names.push(ident);
    }
    names
}

/// Metric-like words in prose (annotations, descriptions), strings included.
fn prose_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

const SUFFIXES: [&str; 5] = ["_bucket", "_sum", "_count", "_created", "_total"];

fn family(name: &str) -> &str {
    SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// A `weir demo` serving /metrics, killed on drop.
struct Demo {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start(port: u16) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("demo.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["demo", "--speed", "0", "--linger", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(root())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start weir demo");
        Demo {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decisions(exposition: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with("weir_decisions_total ") || l.starts_with("weir_decisions_total{"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// (sample names, family names from `# TYPE` lines) of an exposition.
fn exposed(exposition: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut samples = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                families.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| *c != '{' && !c.is_whitespace())
                .collect();
            samples.insert(name);
        }
    }
    (samples, families)
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_exposed_by_weir() {
    // What the rules and the dashboard reference, and where.
    let mut queried: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rules_doc = yaml(RULES);
    for r in rules(&rules_doc["groups"]) {
        let alert = str_at(r, "/alert");
        for name in promql_names(str_at(r, "/expr")) {
            queried
                .entry(name)
                .or_default()
                .insert(format!("{RULES}: {alert} expr"));
        }
        for (key, text) in r["annotations"].as_object().into_iter().flatten() {
            for name in prose_names(text.as_str().unwrap_or("")) {
                named
                    .entry(name)
                    .or_default()
                    .insert(format!("{RULES}: {alert} {key}"));
            }
        }
    }
    let d = dashboard();
    for (at, q) in dashboard_queries(&d) {
        for name in promql_names(&q) {
            queried
                .entry(name)
                .or_default()
                .insert(format!("{DASHBOARD}: {at}"));
        }
    }
    for (at, text) in dashboard_prose(&d) {
        for name in prose_names(&text) {
            named
                .entry(name)
                .or_default()
                .insert(format!("{DASHBOARD}: {at}"));
        }
    }
    queried.retain(|n, _| n.starts_with("weir_") || n.starts_with("mysql_"));
    named.retain(|n, _| n.starts_with("weir_") || n.starts_with("mysql_"));
    assert!(
        queried.len() >= 10 && queried.contains_key("weir_decisions_total"),
        "the metric-name scan found too little: {:?}",
        queried.keys().collect::<Vec<_>>()
    );

    // What a running Weir exposes once the demo's 100 decisions are made.
    let port = free_port();
    let demo = Demo::start(port);
    let metrics = wait_for(Duration::from_secs(180), || {
        let (status, body) = http_get(port, "/metrics")?;
        (status == 200 && decisions(&body)? >= 100.0).then_some(body)
    });
    let log = demo.log();
    drop(demo);
    let metrics = metrics.unwrap_or_else(|| {
        panic!("weir demo did not expose 100 decisions on /metrics within 180 s; its log:\n{log}")
    });
    let (samples, families) = exposed(&metrics);

    // A query needs a series by that exact name; prose may name a family (a histogram).
    let mut missing = Vec::new();
    for (name, at) in &queried {
        let ok = if name.starts_with("mysql_") {
            MYSQLD_EXPORTER_METRICS.contains(&name.as_str())
        } else {
            samples.contains(name)
        };
        if !ok {
            missing.push(format!("  {name} (queried in {at:?})"));
        }
    }
    for (name, at) in &named {
        let ok = if name.starts_with("mysql_") {
            MYSQLD_EXPORTER_METRICS.contains(&name.as_str())
        } else {
            samples.contains(name) || families.contains(name)
        };
        if !ok {
            missing.push(format!("  {name} (named in {at:?})"));
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the monitoring uses that `weir demo` does not expose (mysql_ ones: not \
         mysqld_exporter metrics this test knows):\n{}\nexposed series: {samples:?}",
        missing.join("\n")
    );

    // And the other way round: every metric Weir exposes is on the dashboard.
    let shown: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|(_, q)| promql_names(q))
        .map(|n| family(&n).to_string())
        .collect();
    let unshown: Vec<&String> = families
        .iter()
        .filter(|f| f.starts_with("weir_") && !shown.contains(family(f)))
        .collect();
    assert!(
        unshown.is_empty(),
        "{DASHBOARD} has no panel for these metrics of Weir's: {unshown:?}"
    );
}
