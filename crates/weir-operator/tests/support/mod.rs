//! A fake Kubernetes API server for the operator's tests, behind `tower_test::mock`, that
//! behaves like the real one for what the operator does: GET (404 when missing), JSON Patch
//! (422 when a `test` fails, 409 when forced), merge patch of `/status`, server-side apply of
//! ConfigMaps (create or update), event creation; a new `resourceVersion` on every write.
//! Tests share its store to set up objects and look at them afterwards.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

/// Objects by API path, the requests seen, and answers to force.
#[derive(Default)]
pub struct Store {
    pub objects: BTreeMap<String, Value>,
    pub requests: Vec<Seen>,
    /// Status codes to answer, in order, to the next PATCHes of a path.
    pub forced: BTreeMap<String, VecDeque<u16>>,
    pub events: Vec<Value>,
    /// Requests (and events) are kept for the tests to look at; the scale bench turns this
    /// off and only counts.
    pub forget_requests: bool,
    pub request_count: usize,
    version: u64,
}

impl Store {
    pub fn requests_to(&self, method: &Method, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.method == *method && r.path == path)
            .count()
    }
}

#[derive(Clone, Default)]
pub struct FakeApiServer {
    pub store: Arc<Mutex<Store>>,
}

pub fn vs_path(ns: &str, name: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}")
}

pub fn cm_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps/{name}")
}

pub fn rs_path(ns: &str, name: &str) -> String {
    format!("/apis/weir.dev/v1alpha1/namespaces/{ns}/readsplits/{name}")
}

impl FakeApiServer {
    pub fn new() -> Self {
        FakeApiServer::default()
    }

    pub fn put(&self, path: &str, mut object: Value) {
        let mut s = self.store.lock().unwrap();
        s.version += 1;
        object["metadata"]["resourceVersion"] = Value::String(s.version.to_string());
        s.objects.insert(path.to_string(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.store.lock().unwrap().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.store.lock().unwrap().objects.remove(path);
    }

    pub fn force(&self, path: &str, codes: &[u16]) {
        self.store
            .lock()
            .unwrap()
            .forced
            .entry(path.to_string())
            .or_default()
            .extend(codes);
    }

    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.store.lock().unwrap().requests_to(method, path)
    }

    pub fn events(&self) -> Vec<Value> {
        self.store.lock().unwrap().events.clone()
    }

    pub fn clear_requests(&self) {
        self.store.lock().unwrap().requests.clear();
    }

    /// A client whose requests this server answers (until the client is dropped).
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let store = self.store.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let seen = Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .map(|v| v.to_str().unwrap().to_owned()),
                    body: if bytes.is_empty() {
                        None
                    } else {
                        // Server-side apply bodies are YAML; JSON is YAML.
                        Some(serde_json::from_slice(&bytes).unwrap())
                    },
                };
                let reply = answer(&mut store.lock().unwrap(), &seen);
                let mut s = store.lock().unwrap();
                s.request_count += 1;
                if !s.forget_requests {
                    s.requests.push(seen);
                }
                drop(s);
                respond.send_response(reply);
            }
        });
        Client::new(service, "default")
    }
}

fn bump(s: &mut Store, object: &mut Value) {
    s.version += 1;
    object["metadata"]["resourceVersion"] = Value::String(s.version.to_string());
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn answer(s: &mut Store, seen: &Seen) -> Response<Body> {
    let path = seen.path.as_str();
    if seen.method == Method::POST && path.starts_with("/apis/events.k8s.io/v1/") {
        let body = seen.body.clone().unwrap();
        if !s.forget_requests {
            s.events.push(body.clone());
        }
        return reply(201, &body);
    }
    if seen.method == Method::PATCH && path.starts_with("/apis/events.k8s.io/v1/") {
        return reply(200, seen.body.as_ref().unwrap());
    }
    let (object_path, status_sub) = match path.strip_suffix("/status") {
        Some(p) => (p, true),
        None => (path, false),
    };
    match seen.method {
        Method::GET => match s.objects.get(object_path) {
            Some(o) => reply(200, o),
            None => status(404, object_path),
        },
        Method::PATCH => {
            if let Some(code) = s.forced.get_mut(object_path).and_then(VecDeque::pop_front) {
                return status(code, object_path);
            }
            let ct = seen.content_type.as_deref().unwrap_or_default();
            let body = seen.body.clone().unwrap();
            if ct.starts_with("application/apply-patch") {
                // Server-side apply: create, or take the applied fields.
                let mut object = s
                    .objects
                    .get(object_path)
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                merge(&mut object, &body);
                bump(s, &mut object);
                s.objects.insert(object_path.to_string(), object.clone());
                return reply(200, &object);
            }
            let Some(mut object) = s.objects.get(object_path).cloned() else {
                return status(404, object_path);
            };
            if ct == "application/json-patch+json" {
                let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
                if json_patch::patch(&mut object, &patch).is_err() {
                    return status(422, object_path);
                }
            } else if ct == "application/merge-patch+json" {
                if status_sub {
                    // Only the status subresource changes through /status.
                    merge(&mut object["status"], &body["status"]);
                } else {
                    merge(&mut object, &body);
                }
            } else {
                panic!("unexpected content type {ct} for {path}");
            }
            bump(s, &mut object);
            s.objects.insert(object_path.to_string(), object.clone());
            reply(200, &object)
        }
        ref other => panic!("unexpected {other} {path}"),
    }
}

fn reply(code: u16, object: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(object).unwrap()))
        .unwrap()
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

/// A `Status` body as the API server writes it.
pub fn status(code: u16, path: &str) -> Response<Body> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        403 => "Forbidden",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{reason}: {name}"),
        "reason": reason,
        "details": { "name": name },
        "code": code,
    });
    reply(code, &body)
}
