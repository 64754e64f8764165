//! The TrafficPolicy reconciler against the fake API server, which applies server-side apply
//! with field ownership, counts generations and enforces the deployed RBAC: what it applies
//! (in which order, owned by whom), its status, conflicts with other field managers, pruning,
//! and a permission the deployed Role lacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::{
    FakeApiServer, Rbac, cluster_api, cm_path, deployed_rbac, drop_rate_limit_and_monitoring,
    example_policy, object_path, tp_path, vs_path, with_rate_limits,
};
use weir_operator::metrics::Metrics;
use weir_operator::traffic::{GOVERN_MANAGER, TrafficContext, TrafficPolicy, reconcile};

const ISTIO: &str = "networking.istio.io/v1";

fn dr_path(ns: &str, name: &str) -> String {
    object_path(ISTIO, ns, "destinationrules", name)
}

fn pr_path(ns: &str, name: &str) -> String {
    object_path("monitoring.coreos.com/v1", ns, "prometheusrules", name)
}

fn ef_path(ns: &str, name: &str) -> String {
    object_path("networking.istio.io/v1alpha3", ns, "envoyfilters", name)
}

/// Puts the TrafficPolicy in the fake server (which sets its uid and generation).
fn create(api: &FakeApiServer, object: &Value) -> (String, String) {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    api.put(&tp_path(&ns, &name), object.clone());
    (ns, name)
}

/// The TrafficPolicy as stored now, as the controller would see it.
fn current(api: &FakeApiServer, ns: &str, name: &str) -> Arc<TrafficPolicy> {
    Arc::new(serde_json::from_value(api.get(&tp_path(ns, name)).unwrap()).unwrap())
}

fn context(api: &FakeApiServer) -> Arc<TrafficContext> {
    let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> =
        Arc::new(|| Timestamp::from_second(1_800_000_000).unwrap());
    Arc::new(TrafficContext::new(
        api.client(),
        clock,
        Arc::new(Metrics::new()),
    ))
}

/// `(status, reason, message)` of condition `type_`.
fn condition(api: &FakeApiServer, ns: &str, name: &str, type_: &str) -> (String, String, String) {
    support::condition_of(&api.get(&tp_path(ns, name)).unwrap(), type_)
}

/// The paths of the server-side applies seen, in order.
fn applies(api: &FakeApiServer) -> Vec<String> {
    api.requests()
        .iter()
        .filter(|r| {
            r.method == Method::PATCH
                && r.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("application/apply-patch"))
        })
        .map(|r| r.path.clone())
        .collect()
}

async fn run(api: &FakeApiServer, ctx: &Arc<TrafficContext>, ns: &str, name: &str) -> Action {
    reconcile(current(api, ns, name), ctx.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_policy_is_applied_in_order_owned_by_it_as_weir_govern_and_reported_ready() {
    let api = cluster_api();
    let (ns, name) = create(&api, &example_policy("canary.yaml"));
    let ctx = context(&api);
    run(&api, &ctx, &ns, &name).await;

    // The DestinationRule that defines the subsets before the VirtualService that names them,
    // then the alerts.
    assert_eq!(
        applies(&api),
        [
            dr_path(&ns, &name),
            vs_path(&ns, &name),
            pr_path(&ns, &name)
        ],
        "{:?}",
        api.requests()
    );
    for r in api.requests().iter().filter(|r| r.method == Method::PATCH) {
        if r.path.ends_with("/status") {
            continue;
        }
        assert_eq!(r.param("fieldManager"), Some(GOVERN_MANAGER));
        assert_eq!(r.param("force"), None, "never forced");
    }
    let tp = api.get(&tp_path(&ns, &name)).unwrap();
    let uid = tp["metadata"]["uid"].as_str().unwrap();
    for path in [
        dr_path(&ns, &name),
        vs_path(&ns, &name),
        pr_path(&ns, &name),
    ] {
        let object = api.get(&path).unwrap();
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "weir.dev/v1alpha1", "kind": "TrafficPolicy", "name": name,
                "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }]),
            "{path}"
        );
        assert_eq!(
            object["metadata"]["labels"]["weir.dev/traffic-policy"],
            name
        );
        let managed = api.managed_fields(&path, GOVERN_MANAGER).unwrap();
        assert_eq!(managed["operation"], "Apply", "{managed}");
        assert!(
            managed["fieldsV1"]["f:spec"].is_object(),
            "weir-govern owns the spec: {managed}"
        );
    }
    let vs = api.get(&vs_path(&ns, &name)).unwrap();
    assert_eq!(
        vs["spec"]["hosts"],
        json!(["checkout.shop.svc.cluster.local"])
    );
    assert_eq!(vs["spec"]["http"][0]["name"], "beta");
    assert_eq!(
        api.get(&dr_path(&ns, &name)).unwrap()["spec"]["subsets"][1]["name"],
        "v2"
    );

    let status = &api.get(&tp_path(&ns, &name)).unwrap()["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["routes"], 3);
    assert_eq!(status["objects"], 3);
    assert_eq!(
        status["applied"],
        json!([
            format!("DestinationRule/{name}"),
            format!("VirtualService/{name}"),
            format!("PrometheusRule/{name}"),
        ])
    );
    assert_eq!(condition(&api, &ns, &name, "Ready").0, "True");
    assert_eq!(condition(&api, &ns, &name, "Ready").1, "Applied");
    assert_eq!(condition(&api, &ns, &name, "Conflict").0, "False");
}

#[tokio::test]
async fn affinity_and_nearby_examples_apply_with_their_notes_in_the_status() {
    for file in ["affinity.yaml", "nearby.yaml"] {
        let api = cluster_api();
        let policy = example_policy(file);
        let (ns, name) = create(&api, &policy);
        run(&api, &context(&api), &ns, &name).await;
        assert_eq!(
            condition(&api, &ns, &name, "Ready").1,
            "Applied",
            "{file}: {:?}",
            api.forbidden()
        );
        let governed = weir_govern::compile(
            &serde_json::from_value(policy).unwrap(),
            &format!("TrafficPolicy {ns}/{name}"),
        )
        .unwrap();
        let status = &api.get(&tp_path(&ns, &name)).unwrap()["status"];
        assert_eq!(status["notes"], json!(governed.notes), "{file}");
        assert!(api.get(&vs_path(&ns, &name)).is_some(), "{file}");
    }
}

#[tokio::test]
async fn an_invalid_policy_is_ready_false_invalid_naming_the_field_and_applies_nothing() {
    let api = cluster_api();
    let mut policy = example_policy("canary.yaml");
    // Weights that do not sum to 100.
    policy["spec"]["routes"][2]["destinations"][1]["weight"] = json!(20);
    let (ns, name) = create(&api, &policy);
    let action = run(&api, &context(&api), &ns, &name).await;
    assert_eq!(action, Action::await_change());
    assert!(applies(&api).is_empty(), "{:?}", api.requests());
    let (status, reason, message) = condition(&api, &ns, &name, "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.starts_with("TrafficPolicy shop/checkout: spec.routes[2]"),
        "{message}"
    );
    assert!(api.get(&vs_path(&ns, &name)).is_none());
}

#[tokio::test]
async fn a_field_another_manager_owns_is_a_conflict_and_is_never_forced() {
    let api = cluster_api();
    let (ns, name) = create(&api, &example_policy("canary.yaml"));
    let ctx = context(&api);
    run(&api, &ctx, &ns, &name).await;
    // Someone takes over the routes with their own apply.
    let mut theirs = api.get(&vs_path(&ns, &name)).unwrap();
    theirs["spec"]["http"][2]["route"][0]["weight"] = json!(50);
    theirs["spec"]["http"][2]["route"][1]["weight"] = json!(50);
    api.patch_as(
        &vs_path(&ns, &name),
        "kubectl-edit",
        &json!({"spec": {"http": theirs["spec"]["http"]}}),
    );
    let edited = api.get(&vs_path(&ns, &name)).unwrap();

    // The policy changes its split: applying it would change their field.
    let mut policy = api.get(&tp_path(&ns, &name)).unwrap();
    policy["spec"]["routes"][2]["destinations"][0]["weight"] = json!(80);
    policy["spec"]["routes"][2]["destinations"][1]["weight"] = json!(20);
    api.put(&tp_path(&ns, &name), policy);
    api.clear_requests();
    let action = run(&api, &ctx, &ns, &name).await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(60)));

    assert_eq!(
        api.get(&vs_path(&ns, &name)).unwrap()["spec"],
        edited["spec"],
        "unchanged"
    );
    assert!(
        api.requests().iter().all(|r| r.param("force").is_none()),
        "never forced"
    );
    let (status, reason, message) = condition(&api, &ns, &name, "Conflict");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "FieldManagerConflict")
    );
    assert!(
        message.contains("VirtualService/checkout")
            && message.contains("\"kubectl-edit\"")
            && message.contains(".spec.http"),
        "{message}"
    );
    let (ready, reason, _) = condition(&api, &ns, &name, "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Conflict"));
    assert_eq!(
        api.get(&tp_path(&ns, &name)).unwrap()["status"]["observedGeneration"],
        2
    );
}

#[tokio::test]
async fn removing_rate_limit_and_monitoring_deletes_their_filters_config_map_and_rule() {
    let api = cluster_api();
    let policy = with_rate_limits(example_policy("canary.yaml"));
    let (ns, name) = create(&api, &policy);
    let ctx = context(&api);
    run(&api, &ctx, &ns, &name).await;
    assert_eq!(
        condition(&api, &ns, &name, "Ready").1,
        "Applied",
        "{:?}",
        api.forbidden()
    );
    let filters: Vec<String> = applies(&api)
        .into_iter()
        .filter(|p| p.contains("/envoyfilters/"))
        .collect();
    assert!(!filters.is_empty(), "{:?}", applies(&api));
    let config_map = cm_path(&ns, &format!("{name}-ratelimit"));
    assert!(api.get(&config_map).is_some());
    assert!(api.get(&pr_path(&ns, &name)).is_some());
    // An object of the same labels that the policy does not own is left alone.
    let mut stranger = api.get(&filters[0]).unwrap();
    stranger["metadata"]["name"] = json!("someone-elses");
    stranger["metadata"]["ownerReferences"] = json!([]);
    api.put(&ef_path(&ns, "someone-elses"), stranger);

    drop_rate_limit_and_monitoring(&api, &tp_path(&ns, &name));
    run(&api, &ctx, &ns, &name).await;
    for f in &filters {
        assert!(api.get(f).is_none(), "{f} is still there");
    }
    assert!(api.get(&config_map).is_none());
    assert!(api.get(&pr_path(&ns, &name)).is_none());
    assert!(api.get(&ef_path(&ns, "someone-elses")).is_some());
    assert!(api.get(&vs_path(&ns, &name)).is_some());
    let status = &api.get(&tp_path(&ns, &name)).unwrap()["status"];
    assert_eq!(status["objects"], 2);
    assert_eq!(status["observedGeneration"], 2);
}

#[tokio::test]
async fn generation_moves_with_the_spec_and_the_status_follows_it() {
    let api = cluster_api();
    let (ns, name) = create(&api, &example_policy("canary.yaml"));
    let ctx = context(&api);
    run(&api, &ctx, &ns, &name).await;
    let tp = api.get(&tp_path(&ns, &name)).unwrap();
    assert_eq!(tp["metadata"]["generation"], 1);
    // Status and metadata writes are not spec changes.
    assert_eq!(tp["status"]["observedGeneration"], 1);
    api.patch_as(
        &tp_path(&ns, &name),
        "kubectl-label",
        &json!({"metadata": {"labels": {"team": "payments"}}}),
    );
    assert_eq!(
        api.get(&tp_path(&ns, &name)).unwrap()["metadata"]["generation"],
        1
    );
    let vs_version = api.get(&vs_path(&ns, &name)).unwrap()["metadata"]["resourceVersion"].clone();
    run(&api, &ctx, &ns, &name).await;
    let vs = api.get(&vs_path(&ns, &name)).unwrap();
    assert_eq!(
        vs["metadata"]["generation"], 1,
        "reapplying the same spec changes nothing"
    );
    assert_eq!(
        vs["metadata"]["labels"]["team"], "payments",
        "the policy's labels travel"
    );
    assert_ne!(vs["metadata"]["resourceVersion"], vs_version);

    // A spec change is a new generation, of the policy and of what changes.
    let mut changed = api.get(&tp_path(&ns, &name)).unwrap();
    changed["spec"]["routes"][1]["name"] = json!("public");
    api.put(&tp_path(&ns, &name), changed);
    assert_eq!(
        api.get(&tp_path(&ns, &name)).unwrap()["metadata"]["generation"],
        2
    );
    run(&api, &ctx, &ns, &name).await;
    let tp = api.get(&tp_path(&ns, &name)).unwrap();
    assert_eq!(tp["status"]["observedGeneration"], 2);
    assert_eq!(
        tp["metadata"]["generation"], 2,
        "the status patch is no spec change"
    );
    assert_eq!(
        api.get(&vs_path(&ns, &name)).unwrap()["metadata"]["generation"],
        2
    );
    assert_eq!(
        api.get(&dr_path(&ns, &name)).unwrap()["metadata"]["generation"],
        1
    );
}

#[tokio::test]
async fn a_permission_the_deployed_role_lacks_is_a_403_the_operator_reports() {
    // The deployed rules without `create` on DestinationRules.
    let mut rbac: Rbac = deployed_rbac();
    for rule in &mut rbac.rules {
        if rule.resources.iter().any(|r| r == "destinationrules") {
            rule.verbs.retain(|v| v != "create");
        }
    }
    let api = FakeApiServer::new();
    api.enforce_rbac(rbac);
    let (ns, name) = create(&api, &example_policy("canary.yaml"));
    let ctx = context(&api);
    let err = reconcile(current(&api, &ns, &name), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "forbidden");
    let expected = "destinationrules.networking.istio.io \"checkout\" is forbidden: User \"system:serviceaccount:weir-system:weir-operator\" cannot create resource \"destinationrules\" in API group \"networking.istio.io\" in the namespace \"shop\"";
    assert_eq!(api.forbidden(), [expected]);
    let (status, reason, message) = condition(&api, &ns, &name, "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ApplyFailed"));
    assert!(message.contains(expected), "{message}");
    assert!(
        api.get(&vs_path(&ns, &name)).is_none(),
        "nothing after the refusal"
    );
    weir_operator::traffic::error_policy(current(&api, &ns, &name), &err, ctx.clone());
    assert!(
        ctx.metrics
            .encode()
            .contains(r#"weir_operator_traffic_policy_errors_total{kind="forbidden"} 1"#),
        "{}",
        ctx.metrics.encode()
    );
}
