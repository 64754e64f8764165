//! Rate limits: what Envoy is told to send is exactly what the service counts, and every
//! wrong limit is refused with its field.

use regex::Regex;
use serde_json::Value;

use crate::tests::{BASE, compile_text, problems, shipped_compiled};

fn with_limits(rate_limit: &str) -> String {
    format!("{BASE}  port: 8080\n  selector: {{ app: checkout }}\n  rate_limit:\n{rate_limit}")
}

const GLOBAL: &str = "    global:
      domain: shop
      service: ratelimit.ratelimit.svc.cluster.local:8081
      limits:
        - { key: header, name: x-user-id, requests: 10, per: minute }
        - { key: remote_address, requests: 100, per: second }
        - { key: path, value: /api/check.out, requests: 50, per: second }
";

/// The descriptor each `rate_limits` entry sends: `(key, value)`, value `None` when it is the
/// request's (a header's value, the address).
fn sent(action: &Value) -> (String, Option<String>) {
    let a = &action["actions"][0];
    if let Some(h) = a.get("request_headers") {
        (h["descriptor_key"].as_str().unwrap().to_string(), None)
    } else if a.get("remote_address").is_some() {
        ("remote_address".to_string(), None)
    } else {
        let m = &a["header_value_match"];
        (
            m["descriptor_key"].as_str().unwrap().to_string(),
            Some(m["descriptor_value"].as_str().unwrap().to_string()),
        )
    }
}

#[test]
fn every_global_limit_is_sent_and_counted_under_the_same_descriptor() {
    let (_, out) = shipped_compiled("ratelimit.yaml");
    let config = out.ratelimit.clone().expect("rate-limit service config");
    assert!(config.check().is_empty());
    let filter = out
        .envoy_filters
        .iter()
        .find(|f| f.metadata.name == "model-service-global-ratelimit")
        .expect("the global filter");
    // The filter before the router, and the actions on the inbound virtual host of the
    // target port.
    let patches = &filter.spec.config_patches;
    assert_eq!(patches[0].apply_to, "HTTP_FILTER");
    assert_eq!(patches[0].patch.operation, "INSERT_BEFORE");
    let sub = patches[0].match_.listener.as_ref().unwrap();
    assert_eq!(
        sub.filter_chain.filter.sub_filter.as_ref().unwrap().name,
        "envoy.filters.http.router"
    );
    let cfg = &patches[0].patch.value["typed_config"];
    assert_eq!(cfg["domain"], "model-service");
    assert_eq!(cfg["failure_mode_deny"], true);
    let grpc = &cfg["rate_limit_service"]["grpc_service"]["envoy_grpc"];
    assert_eq!(
        grpc["cluster_name"],
        "outbound|8081||ratelimit.ratelimit.svc.cluster.local"
    );
    // The cluster name is not a valid HTTP/2 authority: the host is sent instead.
    assert_eq!(grpc["authority"], "ratelimit.ratelimit.svc.cluster.local");
    assert_eq!(patches[1].apply_to, "VIRTUAL_HOST");
    let vhost = patches[1].match_.route_configuration.as_ref().unwrap();
    assert_eq!(vhost.vhost.as_ref().unwrap().name, "inbound|http|8080");
    let actions = patches[1].patch.value["rate_limits"].as_array().unwrap();
    let sent: Vec<_> = actions.iter().map(sent).collect();
    let counted: Vec<_> = config
        .descriptors
        .iter()
        .map(|d| (d.key.clone(), d.value.clone()))
        .collect();
    assert_eq!(sent, counted);
    assert_eq!(sent.len(), 3);
    // No proxy version pinned unless asked for.
    let yaml = crate::to_yaml(&[out]).unwrap();
    assert!(!yaml.contains("proxyVersion"), "{yaml}");
}

#[test]
fn a_path_limit_matches_the_path_exactly_with_any_query_string() {
    let yaml = compile_text(&with_limits(GLOBAL)).unwrap();
    let re = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("regex: "))
        .filter(|r| r.contains("check"))
        .expect("the path regex");
    // Envoy's safe_regex is a full match.
    let full = Regex::new(&format!("^(?:{re})$")).unwrap();
    for yes in ["/api/check.out", "/api/check.out?x=1", "/api/check.out?"] {
        assert!(full.is_match(yes), "{re} should match {yes}");
    }
    for no in [
        "/api/checkXout",
        "/api/check.out/1",
        "/api/check.outx",
        "/api/check",
    ] {
        assert!(!full.is_match(no), "{re} should not match {no}");
    }
}

#[test]
fn the_local_limit_is_a_token_bucket_per_proxy() {
    let yaml = compile_text(&with_limits(
        "    local: { requests: 100, per: minute, burst: 150 }\n",
    ))
    .unwrap();
    for want in [
        "name: envoy.filters.http.local_ratelimit",
        "fill_interval: 60s",
        "max_tokens: 150",
        "tokens_per_fill: 100",
        "name: checkout-local-ratelimit",
        "app: checkout",
    ] {
        assert!(yaml.contains(want), "missing {want}:\n{yaml}");
    }
    assert!(
        !yaml.contains("kind: ConfigMap"),
        "no global limit, no config"
    );
}

#[test]
fn a_proxy_version_is_used_only_when_asked_for_and_must_be_re2() {
    let text = with_limits(GLOBAL).replace(
        "  port: 8080\n",
        "  port: 8080\n  proxy_version: '^1\\.2[4-9].*'\n",
    );
    let yaml = compile_text(&text).unwrap();
    assert_eq!(
        yaml.matches("proxyVersion: ^1\\.2[4-9].*").count(),
        2,
        "{yaml}"
    );
    let p = problems(&text.replace("^1\\.2[4-9].*", "^(?=1)"));
    assert!(p.contains("spec.proxy_version = \"^(?=1)\""), "{p}");
}

#[test]
fn a_missing_selector_defaults_to_the_app_label_and_says_so() {
    let text = with_limits(GLOBAL).replace("  selector: { app: checkout }\n", "");
    let policy = crate::parse(&text, "p.yaml").unwrap().remove(0);
    let out = crate::compile(&policy, "p.yaml").unwrap();
    assert_eq!(
        out.envoy_filters[0].spec.workload_selector.labels["app"],
        "checkout"
    );
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("spec.selector is not set")),
        "{:?}",
        out.notes
    );
}

#[test]
fn wrong_limits_are_refused_with_their_field() {
    let cases = [
        (
            "    local: { requests: 100, per: second, burst: 50 }\n".to_string(),
            "spec.rate_limit.local.burst = 50: smaller than requests (100)",
        ),
        (
            "    local: { requests: 0, per: second }\n".to_string(),
            "spec.rate_limit.local.requests = 0: must be positive",
        ),
        (
            GLOBAL.replace(
                "ratelimit.ratelimit.svc.cluster.local:8081",
                "ratelimit:8081",
            ),
            "spec.rate_limit.global.service = \"ratelimit:8081\": write the service's full host name",
        ),
        (
            GLOBAL.replace(
                "ratelimit.ratelimit.svc.cluster.local:8081",
                "10.0.0.7:8081",
            ),
            "spec.rate_limit.global.service = \"10.0.0.7:8081\": name the service by its host",
        ),
        (
            GLOBAL.replace(":8081", ""),
            "spec.rate_limit.global.service = \"ratelimit.ratelimit.svc.cluster.local\": write HOST:PORT",
        ),
        (
            GLOBAL.replace("domain: shop", "domain: ''"),
            "spec.rate_limit.global.domain = \"\": the domain must not be empty",
        ),
        (
            GLOBAL.replace(
                "remote_address, requests",
                "header, name: x-user-id, requests",
            ),
            "spec.rate_limit.global.limits[1]: duplicate composite key \"x-user-id\"",
        ),
        (
            GLOBAL.replace("name: x-user-id", "name: X-User-Id"),
            "spec.rate_limit.global.limits[0].name = \"X-User-Id\": name the header, in lower case",
        ),
        (
            GLOBAL.replace("value: /api/check.out", "value: api?x=1"),
            "spec.rate_limit.global.limits[2].value = \"api?x=1\": give the path",
        ),
        (
            GLOBAL.replace("key: remote_address,", "key: remote_address, name: x,"),
            "spec.rate_limit.global.limits[1].name = \"x\": `key: remote_address` takes no `name`",
        ),
        (
            GLOBAL.replace("requests: 50", "requests: 0"),
            "spec.rate_limit.global.limits[2].requests = 0: must be positive",
        ),
        (
            GLOBAL.replace("per: minute", "per: fortnight"),
            "unknown variant `fortnight`",
        ),
        (
            "    {}\n".to_string(),
            "spec.rate_limit: give `local`, `global` or both",
        ),
    ];
    for (limits, want) in cases {
        let p = problems(&with_limits(&limits));
        assert!(p.contains(want), "want `{want}`, got:\n{p}");
    }
    // Without a port, the inbound route cannot be named.
    let p = problems(&with_limits(GLOBAL).replace("  port: 8080\n", ""));
    assert!(
        p.contains("spec.port: global rate limits are attached"),
        "{p}"
    );
}

#[test]
fn a_timeout_is_set_only_when_asked_for_and_bounded() {
    let yaml = compile_text(&with_limits(GLOBAL)).unwrap();
    assert!(
        !yaml.contains("timeout:"),
        "Envoy's default unless asked: {yaml}"
    );
    let asked = GLOBAL.replace("      limits:", "      timeout_ms: 250\n      limits:");
    let yaml = compile_text(&with_limits(&asked)).unwrap();
    assert!(yaml.contains("timeout: 0.250s"), "{yaml}");
    let p = problems(&with_limits(&asked.replace("250", "0")));
    assert!(
        p.contains("spec.rate_limit.global.timeout_ms = 0: between 1 and 60000"),
        "{p}"
    );
}
