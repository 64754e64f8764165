//! Shared by the operator's tests and its scale benchmark: the fake API server (from
//! `weir-test-support`), realistic VirtualService and ReadSplit objects, and a canned metrics
//! source.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use weir_core::Observation;
use weir_edge::{Source, SourceError};
use weir_operator::reconcile::SourceFactory;
use weir_prom::PromConfig;
use weir_test_support::ObsBuilder;
pub use weir_test_support::kube_api::{
    FakeApiServer, Permission, Rbac, Seen, cm_path, lease_path, object_path, vs_path,
};

/// The operator's ServiceAccount in the committed manifests.
pub const SERVICE_ACCOUNT: (&str, &str) = ("weir-system", "weir-operator");

/// What the committed plain manifests (the file users apply) grant the operator's
/// ServiceAccount.
pub fn deployed_rbac() -> Rbac {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(weir_operator::deploy::MANIFESTS_PATH);
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Rbac::from_manifests(&yaml, SERVICE_ACCOUNT.0, SERVICE_ACCOUNT.1)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An empty fake cluster that answers the operator as the deployed RBAC allows: 403 for
/// anything it does not grant.
pub fn cluster_api() -> FakeApiServer {
    let api = FakeApiServer::new();
    api.enforce_rbac(deployed_rbac());
    api
}

/// Path of TrafficPolicy `ns/name`.
pub fn tp_path(ns: &str, name: &str) -> String {
    object_path("weir.dev/v1alpha1", ns, "trafficpolicies", name)
}

/// An example policy from `deploy/policies/`, as a TrafficPolicy resource.
pub fn example_policy(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/policies")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// `policy` with a local token bucket and a global limit (EnvoyFilters and the rate-limit
/// ConfigMap among its objects).
pub fn with_rate_limits(mut policy: Value) -> Value {
    policy["spec"]["rate_limit"] = json!({
        "local": { "requests": 100, "per": "second" },
        "global": {
            "domain": "checkout", "service": "ratelimit.infra.svc.cluster.local:8081",
            "limits": [{ "key": "remote_address", "requests": 10, "per": "minute" }]
        }
    });
    policy
}

/// Another writer removes the rate limit and the monitoring of the TrafficPolicy at `path`
/// (a new generation).
pub fn drop_rate_limit_and_monitoring(api: &FakeApiServer, path: &str) {
    let mut changed = api.get(path).unwrap();
    let spec = changed["spec"].as_object_mut().unwrap();
    spec.remove("rate_limit");
    spec.remove("monitoring");
    api.put(path, changed);
}

/// `(status, reason, message)` of condition `type_` in `object`'s status.
pub fn condition_of(object: &Value, type_: &str) -> (String, String, String) {
    let c = object["status"]["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions in {object}"))
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {object}"))
        .clone();
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
    )
}

pub fn rs_path(ns: &str, name: &str) -> String {
    object_path("weir.dev/v1alpha1", ns, "readsplits", name)
}

/// A per-replica VirtualService: one host, a subset per server, a TCP route on 3306, and
/// an unrelated HTTP route that must never change.
pub fn virtual_service(ns: &str, name: &str) -> Value {
    let dest = |subset: &str, weight: u32| json!({ "destination": { "host": "mysql", "subset": subset, "port": { "number": 3306 } }, "weight": weight });
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": name, "namespace": ns, "resourceVersion": "1" },
        "spec": {
            "hosts": ["mysql"],
            "http": [{ "name": "admin", "route": [{ "destination": { "host": "adminer" } }] }],
            "tcp": [{ "match": [{ "port": 3306 }], "route": [dest("primary", 0), dest("replica-1", 50), dest("replica-2", 50)] }]
        }
    })
}

pub fn readsplit_json(ns: &str, name: &str, vs: &str, mode: &str) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "ReadSplit",
        "metadata": { "name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "resourceVersion": "1" },
        "spec": {
            "virtualService": { "name": vs },
            "route": { "tcpPort": 3306 },
            "primary": { "host": "mysql", "subset": "primary" },
            "replicas": [
                { "name": "replica-1", "labelValue": "r1:9104", "destination": { "host": "mysql", "subset": "replica-1" } },
                { "name": "replica-2", "labelValue": "r2:9104", "destination": { "host": "mysql", "subset": "replica-2" } }
            ],
            "prometheus": { "url": "http://prometheus.monitoring:9090" },
            "mode": mode,
            "intervalSeconds": 15
        }
    })
}

/// `state.json` of ReadSplit `ns/name`'s state ConfigMap, if there is one.
pub fn saved_state(api: &FakeApiServer, ns: &str, name: &str) -> Option<Value> {
    let cm = api.get(&cm_path(ns, &format!("weir-state-{name}")))?;
    serde_json::from_str(cm["data"]["state.json"].as_str()?).ok()
}

/// Lags per ReadSplit key (`ns/name`); `None` (or no entry) makes the source fail. Keeps the
/// Prometheus config each source was built with.
#[derive(Clone, Default)]
pub struct Canned {
    lags: Arc<Mutex<HashMap<String, Option<Vec<f64>>>>>,
    configs: Arc<Mutex<HashMap<String, PromConfig>>>,
}

impl Canned {
    pub fn set(&self, key: &str, lags: Option<&[f64]>) {
        self.lags
            .lock()
            .unwrap()
            .insert(key.to_string(), lags.map(<[f64]>::to_vec));
    }

    /// The config the latest source for `key` was built with.
    pub fn config(&self, key: &str) -> Option<PromConfig> {
        self.configs.lock().unwrap().get(key).cloned()
    }

    /// The replica-lag query the latest source for `key` was built with.
    pub fn lag_query(&self, key: &str) -> String {
        self.config(key).unwrap().queries.replica_lag_s.query
    }
}

pub struct CannedSource {
    key: String,
    table: Canned,
}

impl Source for CannedSource {
    async fn observe(&mut self, now_s: f64) -> Result<Observation, SourceError> {
        let lags = self
            .table
            .lags
            .lock()
            .unwrap()
            .get(&self.key)
            .cloned()
            .flatten();
        match lags {
            Some(lags) => {
                let mut b = ObsBuilder::new(lags.len()).at(now_s);
                for (i, l) in lags.iter().enumerate() {
                    b = b.lag(i, *l);
                }
                Ok(b.build())
            }
            None => Err(SourceError::Unreachable("connection refused".into())),
        }
    }
}

impl SourceFactory for Canned {
    type Source = CannedSource;
    type Error = std::convert::Infallible;
    fn build(&self, key: &str, config: &PromConfig) -> Result<CannedSource, Self::Error> {
        self.configs
            .lock()
            .unwrap()
            .insert(key.to_string(), config.clone());
        Ok(CannedSource {
            key: key.to_string(),
            table: self.clone(),
        })
    }
}
