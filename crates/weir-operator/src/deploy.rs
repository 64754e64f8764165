//! How the operator is deployed: the plain manifests under `deploy/manifests/` and the Helm
//! chart under `deploy/helm/weir/`, both rendered from this one module.
//!
//! # One source, two renderings
//!
//! Every Kubernetes object is built once, by a function of [`Values`], as a typed `k8s-openapi`
//! value (the ServiceMonitor, which `k8s-openapi` does not know, as a `serde_json::Value`).
//! Every field of [`Values`] that varies between installations is a string, so the same
//! builders serve both renderings:
//!
//! - **Plain manifests** ([`plain_manifests`]): [`Values::defaults`] holds concrete values
//!   (`weir-system`, `weir-operator`, `weir:0.1.0`, `2`, …). Choices are made in Rust: the
//!   ClusterRole or the Role by whether `watch_namespace` is empty.
//! - **Helm templates** ([`helm_chart`]): the values hold Helm expressions instead
//!   (`{{ .Release.Namespace }}`, `{{ include "weir.fullname" . }}`,
//!   `{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}`, …),
//!   which the YAML emitter writes as single-quoted strings; Helm substitutes inside the quotes,
//!   so a rendered name stays a YAML string. Then three explicit post-processing steps:
//!   1. *numbers*: a number field (`replicas`, the ports) is set from its string with
//!      `number`, which gives a JSON number for a literal and the expression as a string
//!      otherwise; `unquote_numbers` then strips the quotes around exactly those expressions,
//!      so Helm renders `replicas: 2`, not `replicas: '2'`;
//!   2. *optional list items*: the `--namespace` argument pair is wrapped in
//!      `{{- if .Values.watchNamespace }}` … `{{- end }}` (`wrap_lines`);
//!   3. *optional objects*: the ServiceMonitor and the NetworkPolicy are wrapped in
//!      `{{- if .Values.serviceMonitor.enabled }}` / `{{- if .Values.networkPolicy.enabled }}`
//!      … `{{- end }}`, and the RBAC for the
//!      watched resources renders both scopes (a Role in `{{ .Values.watchNamespace }}`, and a
//!      ClusterRole) inside `{{- if .Values.watchNamespace }}` … `{{- else }}` … `{{- end }}`.
//!
//! `values.yaml` is written from [`Values::defaults`], so the chart's defaults are the plain
//! manifests' values. Every document starts with `---` and keys are sorted, so the output does
//! not depend on a serde feature and both branches of a template stay separate documents.
//!
//! [`write_all`] writes `deploy/manifests/weir-operator.yaml` and every chart file
//! (`weir manifests --write`); the `deploy` test of this crate fails when the committed files
//! and the code disagree. The CRDs are not part of the plain manifests (they are committed on
//! their own as `deploy/crd/readsplits.weir.dev.yaml` and `deploy/crd/trafficpolicies.weir.dev.yaml`)
//! but are the chart's `crds/` files, byte for byte.
//!
//! # Image
//!
//! The project publishes no image yet: the default image is `weir:0.1.0` (repository `weir`,
//! tag = the crate version), built from the repository's `Dockerfile`. Push it to your registry
//! and change `image:` in the manifests, or set `image.repository` / `image.tag` in the chart.
//!
//! # Permissions
//!
//! Exactly what the operator uses, nothing cluster-wide beyond it: ReadSplits
//! `list/watch`, their status `patch`, VirtualServices `get/patch` (the weights of one
//! route, through JSON Patch), ConfigMaps `get/create/patch` (its state ConfigMaps; model and
//! query ConfigMaps are only read), `events.k8s.io` events `create/patch` (kube-runtime's event
//! recorder); TrafficPolicies `list/watch` and their status `patch`, and on every kind a policy
//! compiles into ([`GENERATED_KINDS`]: DestinationRules, VirtualServices, EnvoyFilters,
//! ConfigMaps, PrometheusRules) `create/patch` (server-side apply; creating needs `create`),
//! plus `list` and `delete` on the kinds a policy may stop generating (EnvoyFilters, the
//! rate-limit ConfigMap, PrometheusRules). The operator's tests run against a fake API server that enforces these rules
//! (a request they do not grant fails there), and one runs the whole operator and checks that
//! it uses every permission they grant. With `watchNamespace` empty these are a ClusterRole; with it set, a Role in that
//! namespace. Leader election (`kube-lease-manager`: `get`, `create`, `patch` — strategic and
//! server-side-apply patches; never `update`, `list`, `watch` or `delete`) is always a Role in
//! the operator's own namespace, with `get`/`patch` limited to its own Lease by name (`create`
//! cannot be limited by name in RBAC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    Namespace, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::{Value, json};

use crate::traffic::GENERATED_KINDS;

/// The ReadSplit CustomResourceDefinition, relative to the repository root.
pub const CRD_PATH: &str = "deploy/crd/readsplits.weir.dev.yaml";
/// The TrafficPolicy CustomResourceDefinition, relative to the repository root.
pub const TRAFFIC_POLICY_CRD_PATH: &str = "deploy/crd/trafficpolicies.weir.dev.yaml";
/// Where the plain manifests are committed, relative to the repository root.
pub const MANIFESTS_PATH: &str = "deploy/manifests/weir-operator.yaml";
/// The Helm chart's directory, relative to the repository root.
pub const CHART_DIR: &str = "deploy/helm/weir";
/// The user and group the container runs as (distroless's `nonroot`).
pub const RUN_AS: i64 = 65532;
/// The name of the container in the operator's pod.
pub const CONTAINER: &str = "operator";
/// The name of the HTTP port (`/metrics`, `/healthz`, `/readyz`), used by the probes, the
/// Service and the ServiceMonitor.
pub const PORT_NAME: &str = "metrics";

/// Every setting that differs between installations. Literal values render the plain
/// manifests; Helm expressions render the chart's templates (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// The operator's namespace (ServiceAccount, Deployment, Service, its Lease).
    pub namespace: String,
    /// Name of the Deployment, ServiceAccount, Service, RBAC objects and the Lease.
    pub name: String,
    /// Labels that select the operator's pods (Deployment selector, Service, ServiceMonitor,
    /// anti-affinity). Immutable on a Deployment once created.
    pub selector_labels: BTreeMap<String, String>,
    /// Labels added to the selector labels on every object.
    pub labels: BTreeMap<String, String>,
    /// Image repository (`weir`; the project has no registry yet).
    pub image_repository: String,
    /// Image tag.
    pub image_tag: String,
    /// `imagePullPolicy`.
    pub image_pull_policy: String,
    /// Pod replicas (a number): one leads, the others stand by.
    pub replicas: String,
    /// The HTTP port (a number) for `/metrics`, `/healthz` and `/readyz`.
    pub port: String,
    /// Empty: watch ReadSplits in every namespace (ClusterRole). Otherwise only in this
    /// namespace (`--namespace`, and a Role there).
    pub watch_namespace: String,
    /// CPU request.
    pub cpu_request: String,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit (no CPU limit: throttling would only delay decisions).
    pub memory_limit: String,
    /// The ServiceMonitor's scrape interval.
    pub service_monitor_interval: String,
    /// The ServiceMonitor's `release` label (kube-prometheus-stack selects ServiceMonitors by
    /// the Prometheus release name).
    pub service_monitor_release: String,
    /// The port (a number) the operator's pods may open connections to for the Prometheus
    /// servers the ReadSplits name (the NetworkPolicy's egress rule).
    pub prometheus_port: String,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Values {
    /// The plain manifests' values, and the chart's defaults: namespace `weir-system`, name
    /// `weir-operator`, image `weir:<crate version>`, 2 replicas, port 9464, all namespaces.
    pub fn defaults() -> Values {
        Values {
            namespace: "weir-system".into(),
            name: "weir-operator".into(),
            selector_labels: labels(&[
                ("app.kubernetes.io/name", "weir"),
                ("app.kubernetes.io/instance", "weir"),
                ("app.kubernetes.io/component", "operator"),
            ]),
            labels: labels(&[
                ("app.kubernetes.io/part-of", "weir"),
                ("app.kubernetes.io/version", env!("CARGO_PKG_VERSION")),
            ]),
            image_repository: "weir".into(),
            image_tag: env!("CARGO_PKG_VERSION").into(),
            image_pull_policy: "IfNotPresent".into(),
            replicas: "2".into(),
            port: "9464".into(),
            watch_namespace: String::new(),
            cpu_request: "50m".into(),
            memory_request: "64Mi".into(),
            memory_limit: "256Mi".into(),
            service_monitor_interval: "30s".into(),
            service_monitor_release: "prometheus".into(),
            prometheus_port: "9090".into(),
        }
    }

    /// The same settings as Helm expressions, for the chart's templates. The selector labels
    /// render to the same values as [`Values::defaults`] for a release named `weir`.
    fn helm() -> Values {
        Values {
            namespace: "{{ .Release.Namespace }}".into(),
            name: r#"{{ include "weir.fullname" . }}"#.into(),
            selector_labels: labels(&[
                ("app.kubernetes.io/name", "weir"),
                ("app.kubernetes.io/instance", "{{ .Release.Name }}"),
                ("app.kubernetes.io/component", "operator"),
            ]),
            labels: labels(&[
                ("app.kubernetes.io/part-of", "weir"),
                ("app.kubernetes.io/version", "{{ .Chart.AppVersion }}"),
                ("app.kubernetes.io/managed-by", "{{ .Release.Service }}"),
                ("helm.sh/chart", r#"{{ include "weir.chart" . }}"#),
            ]),
            image_repository: "{{ .Values.image.repository }}".into(),
            image_tag: "{{ .Values.image.tag | default .Chart.AppVersion }}".into(),
            image_pull_policy: "{{ .Values.image.pullPolicy }}".into(),
            replicas: "{{ .Values.replicaCount }}".into(),
            port: "{{ .Values.port }}".into(),
            watch_namespace: "{{ .Values.watchNamespace }}".into(),
            cpu_request: "{{ .Values.resources.requests.cpu }}".into(),
            memory_request: "{{ .Values.resources.requests.memory }}".into(),
            memory_limit: "{{ .Values.resources.limits.memory }}".into(),
            service_monitor_interval: "{{ .Values.serviceMonitor.interval }}".into(),
            service_monitor_release: "{{ .Values.serviceMonitor.release }}".into(),
            prometheus_port: "{{ .Values.networkPolicy.prometheusPort }}".into(),
        }
    }

    /// The fields that are numbers in the objects (see `number`).
    fn numbers(&self) -> [&str; 3] {
        [&self.replicas, &self.port, &self.prometheus_port]
    }

    fn all_labels(&self) -> BTreeMap<String, String> {
        let mut all = self.selector_labels.clone();
        all.extend(self.labels.clone());
        all
    }

    fn metadata(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.all_labels()),
            ..ObjectMeta::default()
        }
    }

    fn leader_election_name(&self) -> String {
        format!("{}-leader-election", self.name)
    }
}

/// One YAML document: a comment for people, then the object.
struct Doc {
    comment: &'static str,
    object: Value,
}

fn doc<T: Serialize>(comment: &'static str, object: &T) -> Doc {
    Doc {
        comment,
        object: to_json(object),
    }
}

fn to_json<T: Serialize>(object: &T) -> Value {
    // k8s-openapi objects and `json!` values have string keys and finite numbers only.
    serde_json::to_value(object).expect("a Kubernetes object always converts to JSON")
}

/// A number field's value: a JSON number for a literal (`"2"`), else the Helm expression as
/// a string, whose quotes `unquote_numbers` removes after rendering.
fn number(value: &str) -> Value {
    value
        .parse::<i64>()
        .map_or_else(|_| Value::String(value.to_owned()), Value::from)
}

/// Sets the number at a JSON pointer (see `number`). The typed builders put a 0 there first.
fn set_number(object: &mut Value, pointer: &str, value: &str) {
    let slot = object
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no field at {pointer} in the built object"));
    *slot = number(value);
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// What the operator does with the resources of the namespaces it watches: the ReadSplit
/// reconciler's needs, the TrafficPolicy reconciler's, and on every kind a policy compiles
/// into ([`GENERATED_KINDS`]) the verbs applying and pruning it take.
pub fn watch_rules() -> Vec<PolicyRule> {
    let mut needs: Vec<(&str, &str, Vec<&str>)> = vec![
        ("weir.dev", "readsplits", vec!["list", "watch"]),
        ("weir.dev", "readsplits/status", vec!["patch"]),
        ("weir.dev", "trafficpolicies", vec!["list", "watch"]),
        ("weir.dev", "trafficpolicies/status", vec!["patch"]),
        (
            "networking.istio.io",
            "virtualservices",
            vec!["get", "patch"],
        ),
        ("", "configmaps", vec!["get", "create", "patch"]),
        ("events.k8s.io", "events", vec!["create", "patch"]),
    ];
    for generated in GENERATED_KINDS {
        let (group, plural) = (generated.group(), generated.plural);
        let index = match needs
            .iter()
            .position(|(g, r, _)| *g == group && *r == plural)
        {
            Some(i) => i,
            None => {
                needs.push((group, plural, Vec::new()));
                needs.len() - 1
            }
        };
        for verb in generated.verbs() {
            if !needs[index].2.contains(verb) {
                needs[index].2.push(verb);
            }
        }
    }
    needs
        .into_iter()
        .map(|(group, resource, verbs)| rule(group, resource, &verbs))
        .collect()
}

/// Leader election on its own Lease, as `kube-lease-manager` does it.
pub fn lease_rules(lease_name: &str) -> Vec<PolicyRule> {
    vec![
        rule("coordination.k8s.io", "leases", &["create"]),
        PolicyRule {
            resource_names: Some(vec![lease_name.to_owned()]),
            ..rule("coordination.k8s.io", "leases", &["get", "patch"])
        },
    ]
}

fn service_account_subject(v: &Values) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: v.name.clone(),
        namespace: Some(v.namespace.clone()),
        ..Subject::default()
    }]
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

fn namespace(v: &Values) -> Doc {
    let mut meta = v.metadata(&v.namespace, None);
    meta.labels.get_or_insert_default().insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    doc(
        "The operator's namespace. Its pod meets the `restricted` Pod Security Standard.",
        &Namespace {
            metadata: meta,
            ..Namespace::default()
        },
    )
}

fn service_account(v: &Values) -> Doc {
    doc(
        "The operator's identity towards the API server.",
        &ServiceAccount {
            metadata: v.metadata(&v.name, Some(&v.namespace)),
            ..ServiceAccount::default()
        },
    )
}

/// ReadSplits, VirtualServices, ConfigMaps and Events in every namespace.
fn cluster_rbac(v: &Values) -> [Doc; 2] {
    [
        doc(
            "What the operator does in every namespace (`watchNamespace` empty).",
            &ClusterRole {
                metadata: v.metadata(&v.name, None),
                rules: Some(watch_rules()),
                ..ClusterRole::default()
            },
        ),
        doc(
            "Grants it to the operator's ServiceAccount.",
            &ClusterRoleBinding {
                metadata: v.metadata(&v.name, None),
                role_ref: role_ref("ClusterRole", &v.name),
                subjects: Some(service_account_subject(v)),
            },
        ),
    ]
}

/// The same, in the one watched namespace only.
fn namespaced_rbac(v: &Values) -> [Doc; 2] {
    [
        doc(
            "What the operator does in the one namespace it watches (`watchNamespace`).",
            &Role {
                metadata: v.metadata(&v.name, Some(&v.watch_namespace)),
                rules: Some(watch_rules()),
            },
        ),
        doc(
            "Grants it to the operator's ServiceAccount.",
            &RoleBinding {
                metadata: v.metadata(&v.name, Some(&v.watch_namespace)),
                role_ref: role_ref("Role", &v.name),
                subjects: Some(service_account_subject(v)),
            },
        ),
    ]
}

fn lease_rbac(v: &Values) -> [Doc; 2] {
    let name = v.leader_election_name();
    [
        doc(
            "Leader election: one Lease in the operator's own namespace.",
            &Role {
                metadata: v.metadata(&name, Some(&v.namespace)),
                rules: Some(lease_rules(&v.name)),
            },
        ),
        doc(
            "Grants it to the operator's ServiceAccount.",
            &RoleBinding {
                metadata: v.metadata(&name, Some(&v.namespace)),
                role_ref: role_ref("Role", &name),
                subjects: Some(service_account_subject(v)),
            },
        ),
    ]
}

/// The operator's arguments. `--lease-name` is the Lease the leader-election Role names.
fn args(v: &Values) -> Vec<String> {
    let mut args = strings(&["operator", "--listen"]);
    args.push(format!("0.0.0.0:{}", v.port));
    args.extend(strings(&["--log-format", "json", "--lease-name"]));
    args.push(v.name.clone());
    if !v.watch_namespace.is_empty() {
        args.push("--namespace".into());
        args.push(v.watch_namespace.clone());
    }
    args
}

fn field_env(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn deployment(v: &Values) -> Doc {
    let container = Container {
        name: CONTAINER.into(),
        image: Some(format!("{}:{}", v.image_repository, v.image_tag)),
        image_pull_policy: Some(v.image_pull_policy.clone()),
        args: Some(args(v)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: 0, // set_number below
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[
                ("cpu", &v.cpu_request),
                ("memory", &v.memory_request),
            ])),
            limits: Some(quantities(&[("memory", &v.memory_limit)])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let mut template_labels = v.all_labels();
    // The label is how current Istio versions read it; the annotation, how older ones do.
    template_labels.insert("sidecar.istio.io/inject".into(), "false".into());
    let pod = PodSpec {
        service_account_name: Some(v.name.clone()),
        automount_service_account_token: Some(true),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(v.selector_labels.clone()),
                                ..LabelSelector::default()
                            }),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        containers: vec![container],
        ..PodSpec::default()
    };
    let deployment = Deployment {
        metadata: v.metadata(&v.name, Some(&v.namespace)),
        // `Option<DeploymentSpec>` before Kubernetes 1.37, `DeploymentSpec` since: the binary
        // picks the version, so this builds with either.
        #[allow(clippy::useless_conversion)]
        spec: DeploymentSpec {
            replicas: Some(0), // set_number below
            selector: LabelSelector {
                match_labels: Some(v.selector_labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(labels(&[("sidecar.istio.io/inject", "false")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }
        .into(),
        ..Deployment::default()
    };
    let mut d = doc(
        "The operator. Replicas elect a leader through a Lease; only the leader reconciles, the\n\
         others stand by (and report ready, so rolling updates proceed). No Istio sidecar: the\n\
         operator talks to the API server and Prometheus, serves no mesh traffic, and must keep\n\
         working while it edits the mesh's routes (a sidecar would add start-up and shutdown\n\
         ordering to every API call).",
        &deployment,
    );
    set_number(&mut d.object, "/spec/replicas", &v.replicas);
    set_number(
        &mut d.object,
        "/spec/template/spec/containers/0/ports/0/containerPort",
        &v.port,
    );
    d
}

fn service(v: &Values) -> Doc {
    let mut d = doc(
        "The operator's HTTP port (`/metrics`, `/healthz`, `/readyz`) for Prometheus.",
        &Service {
            metadata: v.metadata(&v.name, Some(&v.namespace)),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(v.selector_labels.clone()),
                ports: Some(vec![ServicePort {
                    name: Some(PORT_NAME.into()),
                    port: 0, // set_number below
                    target_port: Some(IntOrString::String(PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    );
    set_number(&mut d.object, "/spec/ports/0/port", &v.port);
    d
}

/// The ports the operator's pods may reach: DNS, the API server (443 through the
/// `kubernetes` Service; 6443 where the network plugin judges egress after the Service's
/// address translation to the API server's own port) and Prometheus.
pub const API_SERVER_PORTS: [i32; 2] = [443, 6443];

fn tcp(port: IntOrString) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(port),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn network_policy(v: &Values) -> Doc {
    let dns = ["UDP", "TCP"].map(|protocol| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.into()),
        ..NetworkPolicyPort::default()
    });
    let mut egress_ports: Vec<NetworkPolicyPort> = dns.into();
    egress_ports.extend(API_SERVER_PORTS.map(|p| tcp(IntOrString::Int(p))));
    egress_ports.push(tcp(IntOrString::Int(0))); // Prometheus: set_number below
    let prometheus_index = egress_ports.len() - 1;
    let mut d = doc(
        "Only what the operator needs: its metrics port in (for the scrape; the kubelet's\n\
         probes are not subject to NetworkPolicies), and out DNS, the API server and\n\
         Prometheus (`networkPolicy.prometheusPort` in the chart: a ReadSplit whose\n\
         Prometheus listens elsewhere needs that port here).",
        &NetworkPolicy {
            metadata: v.metadata(&v.name, Some(&v.namespace)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(v.selector_labels.clone()),
                    ..LabelSelector::default()
                }),
                policy_types: Some(strings(&["Ingress", "Egress"])),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(IntOrString::String(PORT_NAME.into()))]),
                    ..NetworkPolicyIngressRule::default()
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    ports: Some(egress_ports),
                    ..NetworkPolicyEgressRule::default()
                }]),
            }),
        },
    );
    set_number(
        &mut d.object,
        &format!("/spec/egress/0/ports/{prometheus_index}/port"),
        &v.prometheus_port,
    );
    d
}

fn service_monitor(v: &Values) -> Doc {
    let mut meta = to_json(&v.metadata(&v.name, Some(&v.namespace)));
    meta["labels"]["release"] = Value::String(v.service_monitor_release.clone());
    Doc {
        comment: "Prometheus Operator: scrape the operator's /metrics (needs the\n\
                  monitoring.coreos.com CRDs).",
        object: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": v.selector_labels},
                "endpoints": [{
                    "port": PORT_NAME,
                    "path": "/metrics",
                    "interval": v.service_monitor_interval,
                }],
            },
        }),
    }
}

/// Object keys in sorted order, whatever `serde_json`'s `preserve_order` feature says.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn render(docs: impl IntoIterator<Item = Doc>) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        for line in d.comment.lines() {
            out.push_str("# ");
            out.push_str(line.trim_start());
            out.push('\n');
        }
        // A `serde_json::Value` with string keys always serialises.
        let yaml = serde_norway::to_string(&sorted(d.object))
            .expect("a JSON value always serialises to YAML");
        out.push_str(&yaml);
    }
    out
}

const GENERATED: &str = "Generated from crates/weir-operator/src/deploy.rs by `weir manifests --write`; \
                         do not edit by hand (a test fails on drift).";

/// The plain manifests for these values: Namespace, ServiceAccount, RBAC, Deployment,
/// Service, NetworkPolicy and ServiceMonitor (the CRDs are under `deploy/crd/`).
pub fn plain_manifests(values: &Values) -> String {
    let v = values;
    let watched = if v.watch_namespace.is_empty() {
        cluster_rbac(v)
    } else {
        namespaced_rbac(v)
    };
    let mut docs = vec![namespace(v), service_account(v)];
    docs.extend(watched);
    docs.extend(lease_rbac(v));
    docs.push(deployment(v));
    docs.push(service(v));
    docs.push(network_policy(v));
    docs.push(service_monitor(v));
    format!(
        "# The Weir operator, plain manifests. {GENERATED}\n\
         # Install the CRDs first: kubectl apply -f deploy/crd/\n\
         # The last document, the ServiceMonitor, needs the Prometheus Operator's CRDs.\n{}",
        render(docs)
    )
}

/// Removes the quotes the YAML emitter put around the number fields' Helm expressions.
fn unquote_numbers(yaml: &str, h: &Values) -> String {
    h.numbers().iter().fold(yaml.to_owned(), |y, expr| {
        y.replace(&format!("'{expr}'"), expr)
    })
}

/// Wraps the consecutive lines whose trimmed text is `lines` in `{{- if condition }}` …
/// `{{- end }}`. Panics when they are not there: the builders and this call disagree.
fn wrap_lines(yaml: &str, lines: &[&str], condition: &str) -> String {
    let all: Vec<&str> = yaml.lines().collect();
    let start = all
        .windows(lines.len())
        .position(|w| w.iter().map(|l| l.trim()).eq(lines.iter().copied()))
        .unwrap_or_else(|| panic!("lines {lines:?} not found in the rendered template"));
    let indent = &all[start][..all[start].len() - all[start].trim_start().len()];
    let mut out: Vec<String> = all[..start].iter().map(|l| (*l).to_owned()).collect();
    out.push(format!("{indent}{{{{- if {condition} }}}}"));
    out.extend(
        all[start..start + lines.len()]
            .iter()
            .map(|l| (*l).to_owned()),
    );
    out.push(format!("{indent}{{{{- end }}}}"));
    out.extend(all[start + lines.len()..].iter().map(|l| (*l).to_owned()));
    out.join("\n") + "\n"
}

fn template(body: &str) -> String {
    format!("{{{{/* {GENERATED} */}}}}\n{body}")
}

/// The chart's `values.yaml`, from [`Values::defaults`].
fn values_yaml(d: &Values) -> String {
    format!(
        r#"# Values of the Weir operator chart. {GENERATED}

image:
  # The project publishes no image yet: build the repository's Dockerfile, push it to your
  # registry and set repository (and tag).
  repository: {repository}
  # Empty: the chart's appVersion.
  tag: ""
  pullPolicy: {pull}

# One replica leads (a coordination.k8s.io Lease), the others stand by.
replicaCount: {replicas}

# The HTTP port of /metrics, /healthz and /readyz.
port: {port}

# Empty: watch ReadSplits in every namespace (a ClusterRole). A namespace: only there (a Role
# in it); the VirtualServices and ConfigMaps the ReadSplits name must then be there too.
watchNamespace: "{watch}"

# Object names: the release name followed by "-operator" unless set.
fullnameOverride: ""

resources:
  requests:
    cpu: {cpu}
    memory: {memory}
  limits:
    memory: {memory_limit}

# A NetworkPolicy for the operator's pods: the metrics port in; DNS, the API server (443,
# 6443) and Prometheus out. A ReadSplit whose Prometheus listens on another port needs it here.
networkPolicy:
  enabled: true
  prometheusPort: {prometheus_port}

# A Prometheus Operator ServiceMonitor for the operator's /metrics.
serviceMonitor:
  enabled: false
  interval: {interval}
  # kube-prometheus-stack selects ServiceMonitors by the label release=<its release name>.
  release: {release}
"#,
        repository = d.image_repository,
        pull = d.image_pull_policy,
        replicas = d.replicas,
        port = d.port,
        watch = d.watch_namespace,
        cpu = d.cpu_request,
        memory = d.memory_request,
        memory_limit = d.memory_limit,
        interval = d.service_monitor_interval,
        release = d.service_monitor_release,
        prometheus_port = d.prometheus_port,
    )
}

fn chart_yaml(d: &Values) -> String {
    format!(
        "# {GENERATED}\n\
         apiVersion: v2\n\
         name: weir\n\
         description: Weir's Kubernetes operator, which keeps database reads off lagging replicas by editing Istio VirtualService weights.\n\
         type: application\n\
         version: {version}\n\
         appVersion: \"{tag}\"\n",
        version = env!("CARGO_PKG_VERSION"),
        tag = d.image_tag,
    )
}

const HELPERS: &str = r#"{{/* Generated from crates/weir-operator/src/deploy.rs; do not edit by hand. */}}

{{/* Object names: <release>-operator, or fullnameOverride. */}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The helm.sh/chart label. */}}
{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
"#;

const NOTES: &str = r#"{{/* Generated from crates/weir-operator/src/deploy.rs; do not edit by hand. */}}
The Weir operator is installed in namespace {{ .Release.Namespace }} as {{ include "weir.fullname" . }}.
{{- if .Values.watchNamespace }}
It watches ReadSplits in namespace {{ .Values.watchNamespace }} only.
{{- else }}
It watches ReadSplits in every namespace.
{{- end }}

Its pods (one leader, the others standing by):
  kubectl -n {{ .Release.Namespace }} get pods -l app.kubernetes.io/instance={{ .Release.Name }}

Describe a database cluster with a ReadSplit (examples under deploy/examples/), then:
  kubectl get readsplits -A

A ReadSplit starts in mode Shadow: it decides and records, and changes nothing until you set
spec.mode to Enforce. See docs/operator.md.
"#;

/// The Helm chart: every file under `deploy/helm/weir/`, by relative path.
pub fn helm_chart() -> Vec<(String, String)> {
    let h = Values::helm();
    let d = Values::defaults();
    let deployment = wrap_lines(
        &render([deployment(&h)]),
        &["- --namespace", &format!("- '{}'", h.watch_namespace)],
        ".Values.watchNamespace",
    );
    let [role, role_binding] = namespaced_rbac(&h);
    let [cluster_role, cluster_role_binding] = cluster_rbac(&h);
    let rbac = format!(
        "{{{{- if .Values.watchNamespace }}}}\n{}{{{{- else }}}}\n{}{{{{- end }}}}\n{}",
        render([role, role_binding]),
        render([cluster_role, cluster_role_binding]),
        render(lease_rbac(&h)),
    );
    let monitor = format!(
        "{{{{- if .Values.serviceMonitor.enabled }}}}\n{}{{{{- end }}}}\n",
        render([service_monitor(&h)])
    );
    let network_policy = format!(
        "{{{{- if .Values.networkPolicy.enabled }}}}\n{}{{{{- end }}}}\n",
        render([network_policy(&h)])
    );
    let crd = crate::crd_yaml().expect("the CRD always serialises to YAML");
    let traffic_crd = crate::traffic_policy_crd_yaml().expect("the CRD always serialises to YAML");
    let files = [
        ("Chart.yaml", chart_yaml(&d)),
        ("values.yaml", values_yaml(&d)),
        ("crds/readsplits.weir.dev.yaml", crd),
        ("crds/trafficpolicies.weir.dev.yaml", traffic_crd),
        ("templates/_helpers.tpl", HELPERS.to_owned()),
        ("templates/NOTES.txt", NOTES.to_owned()),
        (
            "templates/serviceaccount.yaml",
            template(&render([service_account(&h)])),
        ),
        ("templates/rbac.yaml", template(&rbac)),
        ("templates/deployment.yaml", template(&deployment)),
        ("templates/service.yaml", template(&render([service(&h)]))),
        ("templates/servicemonitor.yaml", template(&monitor)),
        ("templates/networkpolicy.yaml", template(&network_policy)),
    ];
    files
        .into_iter()
        .map(|(path, text)| {
            let text = if path.starts_with("templates/") && path.ends_with(".yaml") {
                unquote_numbers(&text, &h)
            } else {
                text
            };
            (path.to_owned(), text)
        })
        .collect()
}

/// Writes the CRDs ([`CRD_PATH`], [`TRAFFIC_POLICY_CRD_PATH`]), [`MANIFESTS_PATH`] (from [`Values::defaults`]) and every [`helm_chart`] file
/// under [`CHART_DIR`], below `repo_root`, creating directories; returns the paths written.
/// Files of the chart directory that the code no longer renders are left alone (the drift
/// test names them).
pub fn write_all(repo_root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let crd = crate::crd_yaml().map_err(std::io::Error::other)?;
    let traffic_crd = crate::traffic_policy_crd_yaml().map_err(std::io::Error::other)?;
    let mut files = vec![
        (repo_root.join(CRD_PATH), crd),
        (repo_root.join(TRAFFIC_POLICY_CRD_PATH), traffic_crd),
        (
            repo_root.join(MANIFESTS_PATH),
            plain_manifests(&Values::defaults()),
        ),
    ];
    let chart = repo_root.join(CHART_DIR);
    files.extend(
        helm_chart()
            .into_iter()
            .map(|(path, text)| (chart.join(path), text)),
    );
    let mut written = Vec::with_capacity(files.len());
    for (path, text) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
