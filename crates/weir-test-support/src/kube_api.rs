//! A fake Kubernetes API server behind `tower_test::mock` (the kube-rs testing pattern), shared
//! by every crate that talks to Kubernetes. It keeps objects by API path and answers the way
//! the real server does for what Weir and its libraries send:
//!
//! - `GET` of an object (404 `NotFound` when missing) or of a collection (a `List` with the
//!   store's `resourceVersion`, namespaced or across namespaces);
//! - `GET ...?watch=true`: a streaming watch that sends `ADDED` / `MODIFIED` / `DELETED` lines
//!   for every later change in that collection until the client goes away;
//! - `POST` to a collection (201, or 409 `AlreadyExists`);
//! - `PATCH` with JSON Patch (422 `Invalid` when a `test` op fails), merge patch, strategic
//!   merge patch (treated as a merge patch: enough for objects without merge-keyed lists,
//!   such as Leases), on the object or on its `/status` subresource (which only changes
//!   `status`);
//! - server-side apply, with field ownership: a non-forced apply that would change a field
//!   another field manager set is refused with 409 `Conflict`, as the real server does (this is
//!   what makes Lease-based leader election exclusive);
//! - `events.k8s.io` event creation.
//!
//! Every write gets a new `resourceVersion`; creations get a `uid` and a `creationTimestamp`.
//! Tests can force status codes, let another writer change an object just before a PATCH,
//! and look at every request afterwards.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The response body type: whole for ordinary replies, streaming for watches.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// A change another writer makes to an object just before a PATCH is handled.
pub type Interference = Box<dyn FnOnce(&mut Value) + Send>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// URL path.
    pub path: String,
    /// URL query (without `?`; empty when none).
    pub query: String,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// JSON body (server-side apply bodies are JSON too; JSON is YAML).
    pub body: Option<Value>,
}

impl Seen {
    /// The value of query parameter `name`, percent-decoding not needed for Weir's values.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

struct Watch {
    collection: Collection,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    /// Per object path: which field manager set each leaf field (JSON pointer).
    owners: BTreeMap<String, BTreeMap<String, String>>,
    requests: Vec<Seen>,
    request_count: usize,
    forget_requests: bool,
    /// Codes to answer to the next PATCHes of a path, in order.
    forced: BTreeMap<String, VecDeque<u16>>,
    /// Codes to answer to the n-th (0-based) PATCH of a path.
    forced_nth: BTreeMap<(String, usize), u16>,
    interference: BTreeMap<(String, usize), Interference>,
    patches: BTreeMap<String, usize>,
    events: Vec<Value>,
    watches: Vec<Watch>,
    version: u64,
    uids: u64,
}

/// The fake API server. Clones share one store.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    store: Arc<Mutex<Store>>,
}

/// Path of a namespaced object of a custom or extension API group.
pub fn object_path(group_version: &str, ns: &str, resource: &str, name: &str) -> String {
    let prefix = if group_version.contains('/') {
        format!("/apis/{group_version}")
    } else {
        format!("/api/{group_version}")
    };
    format!("{prefix}/namespaces/{ns}/{resource}/{name}")
}

/// Path of Istio VirtualService `ns/name` (networking.istio.io/v1).
pub fn vs_path(ns: &str, name: &str) -> String {
    object_path("networking.istio.io/v1", ns, "virtualservices", name)
}

/// Path of ConfigMap `ns/name`.
pub fn cm_path(ns: &str, name: &str) -> String {
    object_path("v1", ns, "configmaps", name)
}

/// Path of Lease `ns/name`.
pub fn lease_path(ns: &str, name: &str) -> String {
    object_path("coordination.k8s.io/v1", ns, "leases", name)
}

impl FakeApiServer {
    /// An empty cluster.
    pub fn new() -> Self {
        FakeApiServer::default()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A test that panicked while holding the lock has already failed; keep its data.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `object` at `path` as-is (plus a new `resourceVersion`), as if another client
    /// wrote it without a field manager; watchers see it.
    pub fn put(&self, path: &str, object: Value) {
        write(&mut self.lock(), path, object);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Deletes the object at `path`; watchers see `DELETED`.
    pub fn remove(&self, path: &str) {
        delete(&mut self.lock(), path);
    }

    /// Merge-patches the object at `path` as field manager `manager` (another client's update:
    /// it takes ownership of the fields it sets). Watchers see it.
    pub fn patch_as(&self, path: &str, manager: &str, patch: &Value) {
        let mut s = self.lock();
        let mut object = s.objects.get(path).cloned().unwrap_or_else(|| json!({}));
        merge(&mut object, patch);
        own(&mut s, path, manager, patch);
        write(&mut s, path, object);
    }

    /// Answers the next PATCHes of `path` with these status codes, in order, instead of
    /// applying them.
    pub fn force(&self, path: &str, codes: &[u16]) {
        self.lock()
            .forced
            .entry(path.to_string())
            .or_default()
            .extend(codes);
    }

    /// Answers the `n`-th (0-based) PATCH of `path` with `code` instead of applying it.
    pub fn force_nth_patch(&self, path: &str, n: usize, code: u16) {
        self.lock().forced_nth.insert((path.to_string(), n), code);
    }

    /// Lets another writer change the object at `path` just before its `n`-th (0-based)
    /// PATCH is handled (a concurrent edit: new `resourceVersion`, watchers see it).
    pub fn interfere_before_patch(
        &self,
        path: &str,
        n: usize,
        write: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.lock()
            .interference
            .insert((path.to_string(), n), Box::new(write));
    }

    /// Every request seen so far (unless [`FakeApiServer::only_count`] is on).
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    /// How many `method` requests to `path` were seen.
    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == *method && r.path == path)
            .count()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Events created so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// Stop keeping requests and events, only count them (for benchmarks).
    pub fn only_count(&self) {
        self.lock().forget_requests = true;
    }

    /// Requests answered since the last call (or the start).
    pub fn take_request_count(&self) -> usize {
        std::mem::take(&mut self.lock().request_count)
    }

    /// Watches open on collection `path` (namespaced or across namespaces) whose client is
    /// still listening.
    pub fn open_watches(&self, path: &str) -> usize {
        let mut s = self.lock();
        s.watches.retain(|w| !w.tx.is_closed());
        s.watches
            .iter()
            .filter(|w| w.collection.path == path)
            .count()
    }

    /// A client whose requests this server answers (until the client is dropped).
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<FakeBody>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let seen = Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: serde_json::from_slice(&bytes).ok(),
                };
                let mut s = server.lock();
                let reply = answer(&mut s, &seen);
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

/// Stores `object` at `path` with a new `resourceVersion` and tells the watchers (`ADDED` or
/// `MODIFIED`); returns what was stored.
fn write(s: &mut Store, path: &str, mut object: Value) -> Value {
    let kind = if s.objects.contains_key(path) {
        "MODIFIED"
    } else {
        "ADDED"
    };
    bump(s, &mut object);
    s.objects.insert(path.to_string(), object.clone());
    notify(s, path, kind, &object);
    object
}

/// Removes the object at `path` and tells the watchers; returns it.
fn delete(s: &mut Store, path: &str) -> Option<Value> {
    let mut object = s.objects.remove(path)?;
    s.owners.remove(path);
    bump(s, &mut object);
    notify(s, path, "DELETED", &object);
    Some(object)
}

fn bump(s: &mut Store, object: &mut Value) {
    s.version += 1;
    object["metadata"]["resourceVersion"] = Value::String(s.version.to_string());
}

/// RFC 7386 merge: `null` removes.
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

/// The leaf fields a patch or applied object sets (lists are atomic), as JSON pointers, with
/// the value set (`null` for removal).
fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(
                    v,
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Fields that identify an object rather than belong to a manager.
fn identity_field(pointer: &str) -> bool {
    matches!(
        pointer,
        "/apiVersion" | "/kind" | "/metadata/name" | "/metadata/namespace"
    ) || pointer.starts_with("/metadata/resourceVersion")
}

/// Records `manager` as the owner of the fields `patch` sets (and drops ownership of fields
/// it removes).
fn own(s: &mut Store, path: &str, manager: &str, patch: &Value) {
    let mut set = Vec::new();
    leaves(patch, "", &mut set);
    let owners = s.owners.entry(path.to_string()).or_default();
    for (pointer, value) in set {
        if identity_field(&pointer) {
            continue;
        }
        if value.is_null() {
            owners.remove(&pointer);
        } else {
            owners.insert(pointer, manager.to_string());
        }
    }
}

/// Where a request path points.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A collection (list, watch, create).
    Collection(Collection),
    /// An object, maybe a subresource of it.
    Object {
        path: String,
        subresource: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Collection {
    /// The request path of the collection.
    path: String,
    /// `/apis/G/V` or `/api/v1`.
    prefix: String,
    namespace: Option<String>,
    resource: String,
}

impl Collection {
    /// Whether the object stored at `object_path` belongs to this collection.
    fn holds(&self, object_path: &str) -> bool {
        match parse(object_path) {
            Some(Target::Object {
                path,
                subresource: None,
            }) => {
                let Some(Target::Collection(c)) = parse(path.rsplit_once('/').map_or("", |p| p.0))
                else {
                    return false;
                };
                c.prefix == self.prefix
                    && c.resource == self.resource
                    && (self.namespace.is_none() || c.namespace == self.namespace)
            }
            _ => false,
        }
    }
}

fn parse(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let split = match segments.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return None,
    };
    if segments.len() < split {
        return None;
    }
    let prefix = format!("/{}", segments[..split].join("/"));
    let rest = &segments[split..];
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        _ => (None, rest),
    };
    let collection = |resource: &str| Collection {
        path: match &namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{resource}"),
            None => format!("{prefix}/{resource}"),
        },
        prefix: prefix.clone(),
        namespace: namespace.clone(),
        resource: resource.to_string(),
    };
    match rest {
        [resource] => Some(Target::Collection(collection(resource))),
        [resource, name] => Some(Target::Object {
            path: format!("{}/{name}", collection(resource).path),
            subresource: None,
        }),
        [resource, name, sub] => Some(Target::Object {
            path: format!("{}/{name}", collection(resource).path),
            subresource: Some((*sub).to_string()),
        }),
        _ => None,
    }
}

fn notify(s: &mut Store, path: &str, kind: &str, object: &Value) {
    let line = {
        let mut v =
            serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    };
    s.watches.retain(|w| {
        if !w.collection.holds(path) {
            return !w.tx.is_closed();
        }
        w.tx.send(line.clone()).is_ok()
    });
}

fn answer(s: &mut Store, seen: &Seen) -> Response<FakeBody> {
    let path = seen.path.as_str();
    if path.starts_with("/apis/events.k8s.io/v1/") {
        let body = seen.body.clone().unwrap_or(Value::Null);
        if seen.method == Method::POST && !s.forget_requests {
            s.events.push(body.clone());
        }
        let code = if seen.method == Method::POST {
            201
        } else {
            200
        };
        return reply(code, &body);
    }
    match (parse(path), &seen.method) {
        (Some(Target::Collection(c)), &Method::GET) if seen.is_watch() => watch(s, c),
        (Some(Target::Collection(c)), &Method::GET) => list(s, &c),
        (Some(Target::Collection(c)), &Method::POST) => create(s, &c, seen),
        (Some(Target::Object { path, .. }), &Method::GET) => match s.objects.get(&path) {
            Some(o) => reply(200, o),
            None => status(404, &path),
        },
        (Some(Target::Object { path, subresource }), &Method::PATCH) => {
            patch(s, &path, subresource.as_deref(), seen)
        }
        (Some(Target::Object { path, .. }), &Method::DELETE) => match delete(s, &path) {
            Some(object) => reply(200, &object),
            None => status(404, &path),
        },
        _ => status(405, path),
    }
}

fn list(s: &Store, c: &Collection) -> Response<FakeBody> {
    let items: Vec<&Value> = s
        .objects
        .iter()
        .filter(|(p, _)| c.holds(p))
        .map(|(_, o)| o)
        .collect();
    let kind = items
        .first()
        .and_then(|o| o["kind"].as_str())
        .map_or_else(|| "List".to_string(), |k| format!("{k}List"));
    let api_version = c
        .prefix
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/");
    reply(
        200,
        &json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": { "resourceVersion": s.version.to_string() },
            "items": items,
        }),
    )
}

fn watch(s: &mut Store, collection: Collection) -> Response<FakeBody> {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    s.watches.push(Watch { collection, tx });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn create(s: &mut Store, c: &Collection, seen: &Seen) -> Response<FakeBody> {
    let Some(mut object) = seen.body.clone() else {
        return status(400, &c.path);
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(422, &c.path);
    };
    let path = format!("{}/{name}", c.path);
    if s.objects.contains_key(&path) {
        return status_reason(409, "AlreadyExists", &path);
    }
    s.uids += 1;
    object["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", s.uids));
    object["metadata"]["creationTimestamp"] = json!("2026-11-22T00:00:00Z");
    if let Some(ns) = &c.namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    if let Some(manager) = seen.param("fieldManager") {
        own(s, &path, manager, &object);
    }
    reply(201, &write(s, &path, object))
}

fn patch(s: &mut Store, path: &str, subresource: Option<&str>, seen: &Seen) -> Response<FakeBody> {
    let n = {
        let count = s.patches.entry(path.to_string()).or_default();
        *count += 1;
        *count - 1
    };
    if let Some(write_by_other) = s.interference.remove(&(path.to_string(), n))
        && let Some(mut object) = s.objects.get(path).cloned()
    {
        write_by_other(&mut object);
        write(s, path, object);
    }
    if let Some(code) = s.forced.get_mut(path).and_then(VecDeque::pop_front) {
        return status(code, path);
    }
    if let Some(code) = s.forced_nth.remove(&(path.to_string(), n)) {
        return status(code, path);
    }
    let ct = seen.content_type.as_deref().unwrap_or_default();
    let Some(body) = seen.body.clone() else {
        return status(400, path);
    };
    let manager = seen.param("fieldManager").unwrap_or("unknown").to_string();
    if ct.starts_with("application/apply-patch") {
        let force = matches!(seen.param("force"), Some("true"));
        if !force && let Some(owners) = s.owners.get(path) {
            let current = s.objects.get(path).cloned().unwrap_or(Value::Null);
            let mut set = Vec::new();
            leaves(&body, "", &mut set);
            let mut conflicts: Vec<(String, String)> = set
                .iter()
                .filter(|(pointer, value)| {
                    !identity_field(pointer)
                        && owners.get(pointer).is_some_and(|m| *m != manager)
                        && current.pointer(pointer).is_some_and(|v| v != value)
                })
                .map(|(pointer, _)| (owners[pointer].clone(), pointer.clone()))
                .collect();
            if let Some((owner, _)) = conflicts.first().cloned() {
                conflicts.retain(|(m, _)| *m == owner);
                let fields: Vec<String> = conflicts.into_iter().map(|(_, f)| f).collect();
                return apply_conflict(path, &owner, &fields);
            }
        }
        let mut object = s.objects.get(path).cloned().unwrap_or_else(|| json!({}));
        merge(&mut object, &body);
        own(s, path, &manager, &body);
        return reply(200, &write(s, path, object));
    }
    let Some(mut object) = s.objects.get(path).cloned() else {
        return status(404, path);
    };
    let before = object.clone();
    if ct == "application/json-patch+json" {
        let Ok(p) = serde_json::from_value::<json_patch::Patch>(body) else {
            return status(400, path);
        };
        if json_patch::patch(&mut object, &p).is_err() {
            return status(422, path);
        }
        if subresource == Some("status") {
            // Only the status subresource changes through /status.
            let status_part = object["status"].clone();
            object = before;
            object["status"] = status_part;
        }
    } else if ct == "application/merge-patch+json" || ct == "application/strategic-merge-patch+json"
    {
        if subresource == Some("status") {
            merge(&mut object["status"], &body["status"]);
        } else {
            merge(&mut object, &body);
        }
        own(s, path, &manager, &body);
    } else {
        return status(415, path);
    }
    reply(200, &write(s, path, object))
}

fn empty() -> FakeBody {
    BodyExt::boxed_unsync(Full::new(Bytes::new()))
}

/// A JSON reply with status `code`.
pub fn reply(code: u16, object: &Value) -> Response<FakeBody> {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(bytes))))
        .unwrap_or_else(|_| Response::new(empty()))
}

/// A `Status` failure body as the API server writes it for `code` on the object at `path`
/// (message, reason and details in the real server's words).
pub fn status(code: u16, path: &str) -> Response<FakeBody> {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        _ => "InternalError",
    };
    status_reason(code, reason, path)
}

fn status_reason(code: u16, reason: &str, path: &str) -> Response<FakeBody> {
    let (group, resource, namespace, name) = match parse(path) {
        Some(Target::Object { path, .. }) => {
            let (collection, name) = path.rsplit_once('/').unwrap_or(("", ""));
            match parse(collection) {
                Some(Target::Collection(c)) => (
                    group_of(&c.prefix),
                    c.resource,
                    c.namespace.unwrap_or_default(),
                    name.to_string(),
                ),
                _ => Default::default(),
            }
        }
        Some(Target::Collection(c)) => (
            group_of(&c.prefix),
            c.resource,
            c.namespace.unwrap_or_default(),
            String::new(),
        ),
        None => Default::default(),
    };
    let qualified = if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    };
    let message = match reason {
        "NotFound" => format!("{qualified} \"{name}\" not found"),
        "AlreadyExists" => format!("{qualified} \"{name}\" already exists"),
        "Conflict" => format!(
            "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        "Forbidden" => format!(
            "{qualified} \"{name}\" is forbidden: User \"system:serviceaccount:weir:weir\" cannot patch resource \"{resource}\" in API group \"{group}\" in the namespace \"{namespace}\""
        ),
        "Invalid" => "the server rejected our request due to an error in our request".to_string(),
        _ => "an error on the server has prevented the request from succeeding".to_string(),
    };
    reply(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": { "name": name, "group": group, "kind": resource },
            "code": code,
        }),
    )
}

/// `/apis/G/V` → `G`; `/api/v1` → the core group, `""`.
fn group_of(prefix: &str) -> String {
    prefix
        .strip_prefix("/apis/")
        .and_then(|gv| gv.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// A reply refusing a non-forced server-side apply because `manager` owns `fields`.
fn apply_conflict(path: &str, manager: &str, fields: &[String]) -> Response<FakeBody> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let dotted: Vec<String> = fields.iter().map(|f| f.replace('/', ".")).collect();
    reply(
        409,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "Apply failed with {} conflict{}: conflict with \"{manager}\": {}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" },
                dotted.join(", ")
            ),
            "reason": "Conflict",
            "details": {
                "name": name,
                "causes": dotted.iter().map(|f| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\""),
                    "field": f,
                })).collect::<Vec<_>>(),
            },
            "code": 409,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_collections_and_objects() {
        let vs = vs_path("db", "mysql");
        assert_eq!(
            parse(&vs),
            Some(Target::Object {
                path: vs.clone(),
                subresource: None
            })
        );
        let Some(Target::Collection(all)) = parse("/apis/weir.dev/v1alpha1/readsplits") else {
            panic!("not a collection")
        };
        let Some(Target::Collection(ns)) =
            parse("/apis/weir.dev/v1alpha1/namespaces/db/readsplits")
        else {
            panic!("not a collection")
        };
        let rs = object_path("weir.dev/v1alpha1", "db", "readsplits", "a");
        let other_ns = object_path("weir.dev/v1alpha1", "web", "readsplits", "a");
        assert!(all.holds(&rs) && all.holds(&other_ns));
        assert!(ns.holds(&rs) && !ns.holds(&other_ns));
        assert!(!ns.holds(&cm_path("db", "a")));
        assert!(!ns.holds(&format!("{rs}/status")));
        let Some(Target::Collection(cms)) = parse("/api/v1/namespaces/db/configmaps") else {
            panic!("not a collection")
        };
        assert!(cms.holds(&cm_path("db", "x")));
    }

    #[test]
    fn leaves_are_json_pointers() {
        let mut out = Vec::new();
        leaves(
            &json!({"spec": {"a/b": 1, "list": [1, 2], "gone": null}}),
            "",
            &mut out,
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            out,
            vec![
                ("/spec/a~1b".to_string(), json!(1)),
                ("/spec/gone".to_string(), Value::Null),
                ("/spec/list".to_string(), json!([1, 2])),
            ]
        );
    }
}
