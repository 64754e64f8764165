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
    FakeApiServer, Seen, cm_path, lease_path, object_path, vs_path,
};

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
        "metadata": { "name": name, "namespace": ns, "resourceVersion": "1", "generation": 1 },
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
        "metadata": { "name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "generation": 1, "resourceVersion": "1" },
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
