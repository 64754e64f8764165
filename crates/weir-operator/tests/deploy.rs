//! The operator's deployment: the plain manifests and the Helm chart rendered by
//! `weir_operator::deploy`, the files committed under `deploy/`, and the example ReadSplits.
//!
//! The chart is checked without Helm (not installable here): a small renderer for the few
//! template constructs the chart uses (`if`/`else`/`end` on a value, `.Values`, `.Release`,
//! `.Chart`, the two `include`s, `| default`) renders it with its own `values.yaml`, and the
//! result must be the plain manifests' objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weir_operator::ReadSplit;
use weir_operator::crd::PolicyKind;
use weir_operator::deploy::{CHART_DIR, MANIFESTS_PATH, Values, helm_chart, plain_manifests};

const REGENERATE: &str = "regenerate with `cargo run -- manifests --write`";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The non-empty documents of a multi-document YAML text.
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// Parses a document into its `k8s-openapi` type and checks that nothing was dropped on the
/// way (the types ignore unknown fields, so a misspelt field would otherwise pass).
fn typed<T: DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", kind(v), name(v)));
    assert_eq!(
        &serde_json::to_value(&t).unwrap(),
        v,
        "{} {} has fields its type does not know",
        kind(v),
        name(v)
    );
    t
}

/// The plain manifests for these values, one typed object per kind.
struct Plain {
    kinds: Vec<String>,
    namespace: Namespace,
    service_account: ServiceAccount,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployment: Deployment,
    service: Service,
    network_policy: NetworkPolicy,
    service_monitor: Value,
}

fn plain(values: &Values) -> Plain {
    let docs = documents(&plain_manifests(values));
    let one = |k: &str| {
        let all: Vec<&Value> = docs.iter().filter(|d| kind(d) == k).collect();
        assert_eq!(all.len(), 1, "one {k} expected");
        all[0].clone()
    };
    let all = |k: &str| -> Vec<Value> { docs.iter().filter(|d| kind(d) == k).cloned().collect() };
    let service_monitor = one("ServiceMonitor");
    assert_eq!(service_monitor["apiVersion"], "monitoring.coreos.com/v1");
    Plain {
        kinds: docs.iter().map(|d| kind(d).to_owned()).collect(),
        namespace: typed(&one("Namespace")),
        service_account: typed(&one("ServiceAccount")),
        cluster_roles: all("ClusterRole").iter().map(typed).collect(),
        cluster_role_bindings: all("ClusterRoleBinding").iter().map(typed).collect(),
        roles: all("Role").iter().map(typed).collect(),
        role_bindings: all("RoleBinding").iter().map(typed).collect(),
        deployment: typed(&one("Deployment")),
        service: typed(&one("Service")),
        network_policy: typed(&one("NetworkPolicy")),
        service_monitor,
    }
}

fn args(d: &Deployment) -> Vec<String> {
    container(d).args.clone().unwrap()
}

fn container(d: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    let pod = d.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    &pod.containers[0]
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

#[test]
fn plain_manifests_are_the_expected_objects_and_parse_into_their_types() {
    let p = plain(&Values::defaults());
    assert_eq!(
        p.kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "ServiceMonitor",
        ]
    );
    assert_eq!(p.namespace.metadata.name.as_deref(), Some("weir-system"));
    assert_eq!(
        p.namespace.metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for ns in [
        &p.service_account.metadata.namespace,
        &p.deployment.metadata.namespace,
        &p.service.metadata.namespace,
        &p.roles[0].metadata.namespace,
        &p.role_bindings[0].metadata.namespace,
    ] {
        assert_eq!(ns.as_deref(), Some("weir-system"));
    }
    assert_eq!(p.service_monitor["metadata"]["namespace"], "weir-system");
}

#[test]
fn the_pod_runs_locked_down_as_non_root() {
    let d = plain(&Values::defaults()).deployment;
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2), "a leader and a standby");
    let pod = spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(pod.service_account_name.as_deref(), Some("weir-operator"));

    let c = container(&d);
    assert_eq!(c.image.as_deref(), Some("weir:0.1.0"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert!(sc.privileged.is_none() && sc.capabilities.as_ref().unwrap().add.is_none());

    let template = spec.template.metadata.as_ref().unwrap();
    assert_eq!(
        template.annotations.as_ref().unwrap()["sidecar.istio.io/inject"],
        "false"
    );
    assert_eq!(
        template.labels.as_ref().unwrap()["sidecar.istio.io/inject"],
        "false"
    );

    let anti = pod
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none()
    );
    let preferred = &anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        preferred.pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        preferred
            .pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels,
        spec.selector.match_labels,
        "the anti-affinity spreads the operator's own pods"
    );

    let r = c.resources.as_ref().unwrap();
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "50m");
    assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "64Mi");
    assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "256Mi");
    assert!(
        !r.limits.as_ref().unwrap().contains_key("cpu"),
        "no CPU limit"
    );
}

#[test]
fn the_container_runs_the_operator_with_probes_on_its_metrics_port() {
    let d = plain(&Values::defaults()).deployment;
    assert_eq!(
        args(&d),
        [
            "operator",
            "--listen",
            "0.0.0.0:9464",
            "--log-format",
            "json",
            "--lease-name",
            "weir-operator"
        ]
    );
    let c = container(&d);
    let env: BTreeMap<&str, &str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| {
            let field = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            (e.name.as_str(), field.field_path.as_str())
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace")
        ])
    );
    let ports = c.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));
    assert_eq!(ports[0].container_port, 9464);
    for (probe, path) in [
        (c.liveness_probe.as_ref(), "/healthz"),
        (c.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe.unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("metrics".into()));
    }
}

#[test]
fn the_service_and_the_service_monitor_reach_the_pods_metrics_port() {
    let p = plain(&Values::defaults());
    let spec = &p.deployment.spec;
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Deployment selects its own pods"
    );
    let svc = p.service.spec.as_ref().unwrap();
    assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(svc.selector.as_ref(), Some(&selector));
    let port = &svc.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 9464));
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("metrics".into()))
    );

    let sm = &p.service_monitor;
    let service_labels = p.service.metadata.labels.clone().unwrap();
    let matches: BTreeMap<String, String> =
        serde_json::from_value(sm["spec"]["selector"]["matchLabels"].clone()).unwrap();
    assert!(
        matches
            .iter()
            .all(|(k, v)| service_labels.get(k) == Some(v)),
        "the ServiceMonitor selects the Service"
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
}

/// `(protocol, port)` of NetworkPolicy ports, sorted.
fn np_ports(
    ports: &[k8s_openapi::api::networking::v1::NetworkPolicyPort],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ports
        .iter()
        .map(|p| {
            assert!(p.end_port.is_none(), "no port ranges");
            let port = match p.port.as_ref().expect("every rule names its port") {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            (p.protocol.clone().unwrap(), port)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_network_policy_admits_only_the_scrape_and_lets_out_only_dns_the_api_server_and_prometheus() {
    for (prometheus_port, expected) in [("9090", "9090"), ("19090", "19090")] {
        let values = Values {
            prometheus_port: prometheus_port.into(),
            ..Values::defaults()
        };
        let p = plain(&values);
        let np = p.network_policy.spec.as_ref().unwrap();
        assert_eq!(
            p.network_policy.metadata.namespace.as_deref(),
            Some("weir-system")
        );
        // It selects exactly the Deployment's pods.
        assert_eq!(
            np.pod_selector.as_ref().unwrap().match_labels.as_ref(),
            p.deployment.spec.selector.match_labels.as_ref()
        );
        assert_eq!(
            np.policy_types.as_deref(),
            Some(&["Ingress".to_owned(), "Egress".to_owned()][..]),
            "both directions are denied unless allowed"
        );
        // In: the container's named metrics port, from anywhere (Prometheus's namespace is
        // the cluster's choice), nothing else.
        let ingress = np.ingress.as_ref().unwrap();
        assert_eq!(ingress.len(), 1);
        assert!(ingress[0].from.is_none());
        let container_ports = container(&p.deployment).ports.clone().unwrap();
        assert_eq!(container_ports.len(), 1);
        assert_eq!(
            np_ports(ingress[0].ports.as_ref().unwrap()),
            [("TCP".into(), container_ports[0].name.clone().unwrap())]
        );
        // Out: DNS, the API server, Prometheus; nothing else.
        let egress = np.egress.as_ref().unwrap();
        assert_eq!(egress.len(), 1);
        let mut want: Vec<(String, String)> = [
            ("TCP", "443"),
            ("TCP", "53"),
            ("TCP", "6443"),
            ("TCP", expected),
            ("UDP", "53"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        want.sort();
        assert_eq!(np_ports(egress[0].ports.as_ref().unwrap()), want);
    }
}

/// A rule as `(group, resource, resource names, verbs)`, all sorted.
type Rule = (String, String, Vec<String>, Vec<String>);

fn rules(rules: &[PolicyRule]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(r.non_resource_urls.is_none(), "no non-resource URLs: {r:?}");
        let mut verbs = r.verbs.clone();
        verbs.sort();
        let mut names = r.resource_names.clone().unwrap_or_default();
        names.sort();
        for g in r.api_groups.as_ref().unwrap() {
            for res in r.resources.as_ref().unwrap() {
                for s in [g, res].into_iter().chain(&verbs).chain(&names) {
                    assert!(!s.contains('*'), "wildcard in {r:?}");
                }
                out.insert((g.clone(), res.clone(), names.clone(), verbs.clone()));
            }
        }
    }
    out
}

fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&str]) -> Rule {
    let mut verbs: Vec<String> = verbs.iter().map(|s| (*s).to_owned()).collect();
    verbs.sort();
    (
        group.into(),
        resource.into(),
        names.iter().map(|s| (*s).to_owned()).collect(),
        verbs,
    )
}

/// What the operator needs in the namespaces it watches. Whether that is exactly what it
/// uses is proven elsewhere: every operator test runs against a fake API server that enforces
/// the committed manifests' RBAC (403 for anything they do not grant), and
/// `tests/operator.rs` checks that the whole operator uses every permission they grant.
fn watched_rules() -> BTreeSet<Rule> {
    rules(&weir_operator::deploy::watch_rules())
}

fn lease_rules() -> BTreeSet<Rule> {
    // kube-lease-manager 0.13: get, create (AutoCreate), and strategic + apply patches.
    BTreeSet::from([
        rule("coordination.k8s.io", "leases", &[], &["create"]),
        rule(
            "coordination.k8s.io",
            "leases",
            &["weir-operator"],
            &["get", "patch"],
        ),
    ])
}

fn assert_binds_the_service_account(
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
    subjects: Option<&Vec<k8s_openapi::api::rbac::v1::Subject>>,
    kind: &str,
    name: &str,
) {
    assert_eq!(
        (role_ref.kind.as_str(), role_ref.name.as_str()),
        (kind, name)
    );
    assert_eq!(
        role_ref.api_group.as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    let s = subjects.unwrap();
    assert_eq!(s.len(), 1, "only the operator's ServiceAccount");
    assert_eq!(
        (
            s[0].kind.as_str(),
            s[0].name.as_str(),
            s[0].namespace.as_deref()
        ),
        ("ServiceAccount", "weir-operator", Some("weir-system"))
    );
}

#[test]
fn cluster_wide_rbac_is_exactly_what_the_operator_uses() {
    let p = plain(&Values::defaults());
    let cluster_scoped: Vec<&str> = p
        .kinds
        .iter()
        .map(String::as_str)
        .filter(|k| matches!(*k, "Namespace" | "ClusterRole" | "ClusterRoleBinding"))
        .collect();
    assert_eq!(
        cluster_scoped,
        ["Namespace", "ClusterRole", "ClusterRoleBinding"],
        "nothing else cluster-wide"
    );
    let cr = &p.cluster_roles[0];
    assert!(cr.aggregation_rule.is_none());
    assert_eq!(rules(cr.rules.as_ref().unwrap()), watched_rules());
    let crb = &p.cluster_role_bindings[0];
    assert_binds_the_service_account(
        &crb.role_ref,
        crb.subjects.as_ref(),
        "ClusterRole",
        "weir-operator",
    );

    // Leader election: a Role in the operator's namespace, on its own Lease.
    assert_eq!(p.roles.len(), 1);
    let lease = &p.roles[0];
    assert_eq!(rules(lease.rules.as_ref().unwrap()), lease_rules());
    assert_eq!(
        arg_after(&args(&p.deployment), "--lease-name"),
        Some("weir-operator"),
        "the Lease the Role names is the one the operator uses"
    );
    let rb = &p.role_bindings[0];
    assert_binds_the_service_account(
        &rb.role_ref,
        rb.subjects.as_ref(),
        "Role",
        lease.metadata.name.as_deref().unwrap(),
    );
}

#[test]
fn a_watched_namespace_gets_a_role_there_and_nothing_cluster_wide() {
    let values = Values {
        watch_namespace: "shop".into(),
        ..Values::defaults()
    };
    let p = plain(&values);
    assert!(p.cluster_roles.is_empty() && p.cluster_role_bindings.is_empty());
    assert_eq!(arg_after(&args(&p.deployment), "--namespace"), Some("shop"));
    let by_ns = |ns: &str| {
        let roles: Vec<&Role> = p
            .roles
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let bindings: Vec<&RoleBinding> = p
            .role_bindings
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .collect();
        assert_eq!((roles.len(), bindings.len()), (1, 1), "one Role in {ns}");
        (roles[0], bindings[0])
    };
    let (role, binding) = by_ns("shop");
    assert_eq!(rules(role.rules.as_ref().unwrap()), watched_rules());
    assert_binds_the_service_account(
        &binding.role_ref,
        binding.subjects.as_ref(),
        "Role",
        "weir-operator",
    );
    let (lease, _) = by_ns("weir-system");
    assert_eq!(rules(lease.rules.as_ref().unwrap()), lease_rules());

    // Without a watched namespace there is no `--namespace` at all.
    assert_eq!(
        arg_after(&args(&plain(&Values::defaults()).deployment), "--namespace"),
        None
    );
}

fn committed(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()))
}

#[test]
fn committed_manifests_match_the_code() {
    assert!(
        committed(MANIFESTS_PATH) == plain_manifests(&Values::defaults()),
        "{MANIFESTS_PATH} is out of date: {REGENERATE}"
    );
}

fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            files_under(&entry.path(), &format!("{name}/"), out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn committed_chart_matches_the_code() {
    let chart = helm_chart();
    for (path, text) in &chart {
        let relative = format!("{CHART_DIR}/{path}");
        assert!(
            committed(&relative) == *text,
            "{relative} is out of date: {REGENERATE}"
        );
    }
    let mut on_disk = BTreeSet::new();
    files_under(&root().join(CHART_DIR), "", &mut on_disk);
    let rendered: BTreeSet<String> = chart.into_iter().map(|(p, _)| p).collect();
    let stale: Vec<&String> = on_disk.difference(&rendered).collect();
    assert!(
        stale.is_empty(),
        "{CHART_DIR} holds files the code does not render, remove them: {stale:?}"
    );
}

#[test]
fn the_charts_crd_is_the_committed_crd() {
    let chart: BTreeMap<String, String> = helm_chart().into_iter().collect();
    assert_eq!(
        chart["crds/readsplits.weir.dev.yaml"],
        committed("deploy/crd/readsplits.weir.dev.yaml")
    );
}

fn chart_file(name: &str) -> String {
    helm_chart()
        .into_iter()
        .find(|(p, _)| p == name)
        .unwrap_or_else(|| panic!("the chart has no {name}"))
        .1
}

#[test]
fn chart_yaml_describes_the_chart_and_its_app_version() {
    let chart: Value = serde_norway::from_str(&chart_file("Chart.yaml")).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "weir");
    assert_eq!(chart["type"], "application");
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        chart["appVersion"],
        Values::defaults().image_tag.as_str(),
        "an empty image.tag means the plain manifests' tag"
    );
}

/// The paths (`a.b.c`) of every `.Values.a.b.c` in a text.
fn values_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(".Values.") {
        rest = &rest[i + ".Values.".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        out.insert(rest[..end].trim_end_matches('.').to_owned());
    }
    out
}

/// The dotted paths of every leaf of a mapping.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(map) => {
            for (k, v) in map {
                leaves(v, &format!("{prefix}{k}."), out);
            }
        }
        None => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}

#[test]
fn every_value_the_templates_use_is_in_values_yaml_and_every_value_is_used() {
    let values: Value = serde_norway::from_str(&chart_file("values.yaml")).unwrap();
    let mut defined = BTreeSet::new();
    leaves(&values, "", &mut defined);
    let mut used = BTreeSet::new();
    for (path, text) in helm_chart() {
        if path.starts_with("templates/") {
            used.extend(values_references(&text));
        }
    }
    assert!(used.len() >= 10, "references found: {used:?}");
    let missing: Vec<&String> = used.difference(&defined).collect();
    assert!(
        missing.is_empty(),
        "templates use values not in values.yaml: {missing:?}"
    );
    let unused: Vec<&String> = defined.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "values.yaml has values no template uses: {unused:?}"
    );
}

#[test]
fn chart_templates_put_numbers_unquoted() {
    let deployment = chart_file("templates/deployment.yaml");
    assert!(deployment.contains("replicas: {{ .Values.replicaCount }}\n"));
    assert!(deployment.contains("containerPort: {{ .Values.port }}\n"));
    assert!(chart_file("templates/service.yaml").contains("port: {{ .Values.port }}\n"));
    for (path, text) in helm_chart() {
        assert!(
            !text.contains("'{{ .Values.replicaCount }}'")
                && !text.contains("'{{ .Values.port }}'"),
            "{path}: a number is quoted"
        );
    }
}

/// Just enough of Helm's template language to render this chart.
struct MiniHelm {
    values: Value,
    release: &'static str,
    namespace: &'static str,
    chart: Value,
}

struct Frame {
    parent: bool,
    cond: bool,
    in_else: bool,
}

impl MiniHelm {
    fn new(overrides: &[(&str, Value)]) -> MiniHelm {
        let mut values: Value = serde_norway::from_str(&chart_file("values.yaml")).unwrap();
        for (path, v) in overrides {
            let pointer = format!("/{}", path.replace('.', "/"));
            *values
                .pointer_mut(&pointer)
                .unwrap_or_else(|| panic!("no value {path}")) = v.clone();
        }
        // `eval` knows the helpers by what they do; check that they still do it.
        let helpers = chart_file("templates/_helpers.tpl");
        for line in [
            "{{- .Values.fullnameOverride | trunc 63 | trimSuffix \"-\" -}}",
            "{{- printf \"%s-operator\" .Release.Name | trunc 63 | trimSuffix \"-\" -}}",
            "{{- printf \"%s-%s\" .Chart.Name .Chart.Version | replace \"+\" \"_\" | trunc 63 | trimSuffix \"-\" -}}",
        ] {
            assert!(
                helpers.lines().any(|l| l == line),
                "_helpers.tpl lost {line}"
            );
        }
        MiniHelm {
            values,
            release: "weir",
            namespace: "weir-system",
            chart: serde_norway::from_str(&chart_file("Chart.yaml")).unwrap(),
        }
    }

    fn value(&self, path: &str) -> &Value {
        self.values
            .pointer(&format!("/{}", path.replace('.', "/")))
            .unwrap_or_else(|| panic!("values.yaml has no {path}"))
    }

    fn eval(&self, expr: &str) -> String {
        if let Some((left, right)) = expr.split_once(" | default ") {
            let v = self.eval(left);
            return if v.is_empty() { self.eval(right) } else { v };
        }
        match expr {
            ".Release.Namespace" => self.namespace.into(),
            ".Release.Name" => self.release.into(),
            ".Release.Service" => "Helm".into(),
            ".Chart.AppVersion" => self.chart["appVersion"].as_str().unwrap().into(),
            r#"include "weir.fullname" ."# => match self.value("fullnameOverride").as_str() {
                Some(o) if !o.is_empty() => o.into(),
                _ => format!("{}-operator", self.release),
            },
            r#"include "weir.chart" ."# => {
                format!("weir-{}", self.chart["version"].as_str().unwrap())
            }
            _ => match expr.strip_prefix(".Values.").map(|p| self.value(p)) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => panic!("the test's renderer cannot evaluate {{{{ {expr} }}}}"),
            },
        }
    }

    fn truthy(&self, expr: &str) -> bool {
        let path = expr
            .strip_prefix(".Values.")
            .unwrap_or_else(|| panic!("the test's renderer cannot evaluate {{{{ if {expr} }}}}"));
        match self.value(path) {
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Null => false,
            v => panic!("condition {expr} = {v}"),
        }
    }

    fn render(&self, template: &str) -> String {
        let emitting = |stack: &[Frame]| {
            stack
                .last()
                .is_none_or(|f| f.parent && (f.cond != f.in_else))
        };
        let mut out = String::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut rest = template;
        let mut trim_start = false;
        loop {
            let (mut text, action) = match rest.find("{{") {
                None => (rest, None),
                Some(open) => {
                    let close = open + rest[open..].find("}}").expect("an unclosed {{");
                    let parts = (&rest[..open], Some(&rest[open + 2..close]));
                    rest = &rest[close + 2..];
                    parts
                }
            };
            if trim_start {
                text = text.trim_start();
            }
            let trim_end = action.is_some_and(|a| a.starts_with("- "));
            if trim_end {
                text = text.trim_end();
            }
            if emitting(&stack) {
                out.push_str(text);
            }
            let Some(action) = action else { break };
            trim_start = action.ends_with(" -");
            let a = action
                .trim_start_matches("- ")
                .trim_end_matches(" -")
                .trim();
            if a.starts_with("/*") {
                continue;
            }
            if let Some(cond) = a.strip_prefix("if ") {
                let parent = emitting(&stack);
                stack.push(Frame {
                    parent,
                    cond: self.truthy(cond),
                    in_else: false,
                });
            } else if a == "else" {
                stack.last_mut().expect("else without if").in_else = true;
            } else if a == "end" {
                stack.pop().expect("end without if");
            } else if emitting(&stack) {
                out.push_str(&self.eval(a));
            }
        }
        assert!(stack.is_empty(), "unclosed if");
        out
    }

    /// Every object the chart's templates render, by `(kind, namespace, name)`.
    fn objects(&self) -> BTreeMap<(String, String, String), Value> {
        let mut out = BTreeMap::new();
        for (path, text) in helm_chart() {
            if !(path.starts_with("templates/") && path.ends_with(".yaml")) {
                continue;
            }
            for mut doc in documents(&self.render(&text)) {
                assert_eq!(
                    doc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                    "Helm",
                    "{path}: {} without Helm's labels",
                    kind(&doc)
                );
                strip_helm_labels(&mut doc);
                out.insert(key(&doc), doc);
            }
        }
        out
    }
}

fn key(doc: &Value) -> (String, String, String) {
    (
        kind(doc).to_owned(),
        doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        name(doc).to_owned(),
    )
}

/// Removes the labels only Helm sets, wherever labels are.
fn strip_helm_labels(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(labels)) = map.get_mut("labels") {
                labels.remove("app.kubernetes.io/managed-by");
                labels.remove("helm.sh/chart");
            }
            map.values_mut().for_each(strip_helm_labels);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_helm_labels),
        _ => {}
    }
}

fn plain_objects(
    values: &Values,
    with_service_monitor: bool,
) -> BTreeMap<(String, String, String), Value> {
    documents(&plain_manifests(values))
        .into_iter()
        .filter(|d| kind(d) != "Namespace" && (with_service_monitor || kind(d) != "ServiceMonitor"))
        .map(|d| (key(&d), d))
        .collect()
}

fn assert_same_objects(
    helm: &BTreeMap<(String, String, String), Value>,
    plain: &BTreeMap<(String, String, String), Value>,
) {
    assert_eq!(
        helm.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>(),
        "the chart and the plain manifests render different objects"
    );
    for (k, h) in helm {
        assert_eq!(
            h, &plain[k],
            "{k:?} differs between the chart and the plain manifests"
        );
    }
}

#[test]
fn the_chart_with_its_defaults_renders_the_plain_manifests() {
    let helm = MiniHelm::new(&[]);
    assert_same_objects(&helm.objects(), &plain_objects(&Values::defaults(), false));
    let notes = helm.render(&chart_file("templates/NOTES.txt"));
    assert!(notes.contains("in namespace weir-system as weir-operator"));
    assert!(notes.contains("in every namespace"));
}

#[test]
fn the_chart_with_values_set_renders_the_plain_manifests_for_those_values() {
    let helm = MiniHelm::new(&[
        ("watchNamespace", Value::from("shop")),
        ("serviceMonitor.enabled", Value::from(true)),
        ("replicaCount", Value::from(3)),
        ("port", Value::from(9000)),
        ("image.tag", Value::from("1.2.3")),
        ("resources.limits.memory", Value::from("1Gi")),
        ("networkPolicy.prometheusPort", Value::from(19090)),
    ]);
    let values = Values {
        watch_namespace: "shop".into(),
        replicas: "3".into(),
        port: "9000".into(),
        image_tag: "1.2.3".into(),
        memory_limit: "1Gi".into(),
        prometheus_port: "19090".into(),
        ..Values::defaults()
    };
    assert_same_objects(&helm.objects(), &plain_objects(&values, true));
    assert!(
        helm.render(&chart_file("templates/NOTES.txt"))
            .contains("in namespace shop only")
    );
}

fn examples() -> Vec<(String, Vec<Value>)> {
    let dir = root().join("deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, documents(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect()
}

/// Every field written in `written` is in `parsed` with the same value: nothing misspelt was
/// silently dropped (the CRD types ignore unknown fields, like the API server would not).
fn assert_kept(written: &Value, parsed: &Value, path: &str) {
    match (written, parsed) {
        (Value::Object(w), Value::Object(p)) => {
            for (k, v) in w {
                let field = format!("{path}.{k}");
                let kept = p
                    .get(k)
                    .unwrap_or_else(|| panic!("{field} is not a ReadSplit field"));
                assert_kept(v, kept, &field);
            }
        }
        (Value::Array(w), Value::Array(p)) => {
            assert_eq!(w.len(), p.len(), "{path}");
            for (i, (w, p)) in w.iter().zip(p).enumerate() {
                assert_kept(w, p, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(w), Value::Number(p)) => assert_eq!(w.as_f64(), p.as_f64(), "{path}"),
        _ => assert_eq!(written, parsed, "{path}"),
    }
}

fn readsplits() -> BTreeMap<String, ReadSplit> {
    let mut out = BTreeMap::new();
    for (file, docs) in examples() {
        for doc in docs.iter().filter(|d| kind(d) == "ReadSplit") {
            assert_eq!(doc["apiVersion"], "weir.dev/v1alpha1", "{file}");
            let rs: ReadSplit =
                serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_kept(doc, &serde_json::to_value(&rs).unwrap(), &file);
            out.insert(file.clone(), rs);
        }
    }
    out
}

#[test]
fn example_readsplits_parse_and_say_what_the_docs_say() {
    let all = readsplits();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["readsplit-per-replica.yaml", "readsplit-two-services.yaml"]
    );
    for (file, docs) in examples() {
        for d in &docs {
            assert!(
                matches!(kind(d), "ReadSplit" | "VirtualService" | "DestinationRule"),
                "{file}: unexpected {}",
                kind(d)
            );
        }
    }

    // Each example passes the operator's own checks (the ones that make a ReadSplit
    // Degraded/InvalidSpec).
    for (file, rs) in &all {
        if let Err(e) = rs.spec.plan("shop", &std::collections::BTreeMap::new()) {
            panic!("{file}: the operator would refuse it: {e}");
        }
    }

    let two = &all["readsplit-two-services.yaml"].spec;
    assert_eq!(two.virtual_service.name, "db-reader-proxy");
    assert_eq!(two.route.tcp_port, Some(3306));
    assert_eq!(two.primary.host, "db-writer-proxy");
    assert_eq!(two.reader.as_ref().unwrap().host, "db-reader-proxy");
    let names: Vec<&str> = two.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["replica-1", "replica-2"]);
    assert!(two.replicas.iter().all(|r| r.destination.is_none()));
    assert_eq!(
        two.prometheus.url,
        "http://prometheus-operated.monitoring:9090"
    );
    assert_eq!(two.mode, weir_operator::crd::ModeSpec::Shadow);
    assert_eq!(two.policy.kind, PolicyKind::Shun);

    let per = &all["readsplit-per-replica.yaml"].spec;
    assert!(per.reader.is_none());
    assert_eq!(per.policy.kind, PolicyKind::Qlearn);
    assert_eq!(per.policy.model_config_map.as_deref(), Some("weir-model"));
}

#[test]
fn the_per_replica_example_names_what_its_istio_objects_define() {
    let per = readsplits().remove("readsplit-per-replica.yaml").unwrap();
    let docs = examples()
        .into_iter()
        .find(|(f, _)| f == "istio-per-replica.yaml")
        .expect("deploy/examples/istio-per-replica.yaml")
        .1;
    let find = |k: &str| docs.iter().find(|d| kind(d) == k).unwrap();
    let (vs, dr) = (find("VirtualService"), find("DestinationRule"));
    for d in [vs, dr] {
        assert_eq!(d["apiVersion"], "networking.istio.io/v1");
    }
    assert_eq!(name(vs), per.spec.virtual_service.name);
    assert_eq!(
        vs["metadata"]["namespace"].as_str(),
        per.metadata.namespace.as_deref()
    );
    let port = per.spec.route.tcp_port.expect("a TCP route") as u64;
    let route = vs["spec"]["tcp"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["match"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["port"] == port))
        })
        .expect("the VirtualService has the ReadSplit's TCP route");
    let in_route: BTreeSet<(String, String)> = route["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let dst = &d["destination"];
            (
                dst["host"].as_str().unwrap().to_owned(),
                dst["subset"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let named: BTreeSet<(String, String)> = std::iter::once(&per.spec.primary)
        .chain(
            per.spec
                .replicas
                .iter()
                .map(|r| r.destination.as_ref().unwrap()),
        )
        .map(|d| (d.host.clone(), d.subset.clone().unwrap()))
        .collect();
    assert_eq!(
        in_route, named,
        "the route's destinations are the ReadSplit's"
    );
    let subsets: BTreeSet<String> = dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dr["spec"]["host"], per.spec.primary.host.as_str());
    assert_eq!(
        subsets,
        named.into_iter().map(|(_, s)| s).collect(),
        "every subset the route uses is defined"
    );
}

#[test]
fn the_charts_network_policy_can_be_turned_off() {
    let off = MiniHelm::new(&[("networkPolicy.enabled", Value::from(false))]).objects();
    let mut plain = plain_objects(&Values::defaults(), false);
    plain.retain(|(kind, _, _), _| kind != "NetworkPolicy");
    assert_same_objects(&off, &plain);
}
