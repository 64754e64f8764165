//! A fake Kubernetes API server behind `tower_test::mock` (the kube-rs testing pattern), shared
//! by every crate that talks to Kubernetes. It keeps objects by API path and answers the way
//! the real server does for what Weir and its libraries send:
//!
//! - `GET` of an object (404 `NotFound` when missing) or of a collection (a `List` with the
//!   store's `resourceVersion`, namespaced or across namespaces, filtered by an equality-based
//!   `labelSelector`);
//! - `GET ...?watch=true`: a streaming watch that sends `ADDED` / `MODIFIED` / `DELETED` lines
//!   for every later change in that collection until the client goes away;
//! - `POST` to a collection (201, or 409 `AlreadyExists`);
//! - `PATCH` with JSON Patch (422 `Invalid` when a `test` op fails), merge patch, strategic
//!   merge patch (treated as a merge patch: enough for objects without merge-keyed lists,
//!   such as Leases), on the object or on its `/status` subresource (which only changes
//!   `status`);
//! - server-side apply with per-field ownership kept in `metadata.managedFields` (`FieldsV1`,
//!   one entry per manager, operation and subresource): an apply replaces the set of fields
//!   its manager owns, so a field it applied before and omits now is removed unless another
//!   manager owns it too; a non-forced apply that would change a field another manager owns is
//!   refused with 409 `Conflict` naming the manager and the fields (this is what makes
//!   Lease-based leader election exclusive); `force=true` takes the fields over. Other writes
//!   with a `fieldManager` record `Update` ownership of the fields they change. Lists are
//!   atomic (one field each), as in a CRD without list-type markers;
//! - `metadata.generation`: 1 on creation, one more whenever `spec` changes (for objects
//!   without a `spec`, anything but `metadata` and `status`), never for status or metadata;
//!   a write that changes nothing is no write (same `resourceVersion`, no watch event);
//! - `events.k8s.io` event creation;
//! - with [`FakeApiServer::enforce_rbac`], every request is authorised against RBAC rules
//!   ([`Rbac::from_manifests`] reads them from the manifests users apply) and refused with 403
//!   `Forbidden`, in the real server's words, when no rule grants its verb on its resource
//!   (subresources as `resource/subresource`; an apply that creates needs `create` too).
//!
//! Every write gets a new `resourceVersion`; creations get a `uid` and a `creationTimestamp`.
//! Tests can force status codes, let another writer change an object just before a PATCH,
//! and look at every request afterwards.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

/// The fields one manager owns through one operation on one subresource (one
/// `managedFields` entry), as JSON pointers.
#[derive(Debug, Clone)]
struct Managed {
    manager: String,
    operation: Operation,
    subresource: Option<String>,
    fields: BTreeSet<String>,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    /// Per object path: who owns which fields (rendered into `metadata.managedFields`).
    managed: BTreeMap<String, Vec<Managed>>,
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
    rbac: Option<Rbac>,
    /// Permissions that authorised a request (with RBAC on).
    used: BTreeSet<Permission>,
    /// Messages of the requests refused with 403 (with RBAC on).
    forbidden: Vec<String>,
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

    /// Stores `object` at `path` as if another client wrote it without a field manager: as-is
    /// but for what the server sets (a new `resourceVersion` even when nothing changed,
    /// `generation`, and on creation `uid` — unless the object has one — and
    /// `creationTimestamp`); watchers see it.
    pub fn put(&self, path: &str, object: Value) {
        store(&mut self.lock(), path, object, true);
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
        let before = s.objects.get(path).cloned().unwrap_or_else(|| json!({}));
        let mut object = before.clone();
        merge(&mut object, patch);
        record_update(&mut s, path, manager, None, &before, &object);
        write(&mut s, path, object);
    }

    /// Authorises every later request against `rbac`, refusing what it does not grant with
    /// 403 `Forbidden`.
    pub fn enforce_rbac(&self, rbac: Rbac) {
        self.lock().rbac = Some(rbac);
    }

    /// The permissions that authorised a request so far (with RBAC on).
    pub fn used_permissions(&self) -> BTreeSet<Permission> {
        self.lock().used.clone()
    }

    /// The messages of the requests refused with 403 so far (with RBAC on).
    pub fn forbidden(&self) -> Vec<String> {
        self.lock().forbidden.clone()
    }

    /// The `metadata.managedFields` entry of `manager` on the object at `path` (the first, if
    /// it has several), as the server renders it.
    pub fn managed_fields(&self, path: &str, manager: &str) -> Option<Value> {
        let object = self.get(path)?;
        object["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|m| m["manager"] == manager)
            .cloned()
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

/// Stores `object` at `path` as the API server would: `metadata.generation` (1 on creation,
/// one more when the spec changed), a `uid` and `creationTimestamp` on creation, the
/// `managedFields` the store keeps, a new `resourceVersion`; tells the watchers (`ADDED` or
/// `MODIFIED`). A write that changes nothing keeps the stored object and tells no one.
/// Returns what is stored.
fn write(s: &mut Store, path: &str, object: Value) -> Value {
    store(s, path, object, false)
}

/// [`write`], with `always`: even when nothing changed (a test's own write: a new
/// `resourceVersion` and a watch event whatever it holds).
fn store(s: &mut Store, path: &str, mut object: Value, always: bool) -> Value {
    let previous = s.objects.get(path).cloned();
    let generation = match &previous {
        None => 1,
        Some(p) => {
            let before = p["metadata"]["generation"].as_i64().unwrap_or(1);
            if desired_state(p) == desired_state(&object) {
                before
            } else {
                before + 1
            }
        }
    };
    let meta = &mut object["metadata"];
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["generation"] = json!(generation);
    match &previous {
        Some(p) => {
            for key in ["uid", "creationTimestamp"] {
                if !p["metadata"][key].is_null() {
                    meta[key] = p["metadata"][key].clone();
                }
            }
        }
        None => {
            if meta["uid"].is_null() {
                s.uids += 1;
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", s.uids));
            }
            if meta["creationTimestamp"].is_null() {
                meta["creationTimestamp"] = json!("2026-11-22T00:00:00Z");
            }
        }
    }
    let managed = render_managed_fields(s.managed.get(path), &object["apiVersion"]);
    match (managed, object["metadata"].as_object_mut()) {
        (Some(m), Some(meta)) => {
            meta.insert("managedFields".into(), m);
        }
        (None, Some(meta)) => {
            meta.remove("managedFields");
        }
        _ => {}
    }
    if let Some(p) = &previous {
        object["metadata"]["resourceVersion"] = p["metadata"]["resourceVersion"].clone();
        if *p == object && !always {
            return object;
        }
    }
    bump(s, &mut object);
    s.objects.insert(path.to_string(), object.clone());
    let kind = if previous.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    notify(s, path, kind, &object);
    object
}

/// What `metadata.generation` counts changes of: `spec`, or for objects without one (a
/// ConfigMap) everything but `metadata` and `status`.
fn desired_state(object: &Value) -> Value {
    match object.get("spec") {
        Some(spec) => spec.clone(),
        None => {
            let mut rest = object.clone();
            if let Some(map) = rest.as_object_mut() {
                map.remove("metadata");
                map.remove("status");
            }
            rest
        }
    }
}

/// Removes the object at `path` and tells the watchers; returns it.
fn delete(s: &mut Store, path: &str) -> Option<Value> {
    let mut object = s.objects.remove(path)?;
    s.managed.remove(path);
    bump(s, &mut object);
    notify(s, path, "DELETED", &object);
    Some(object)
}

fn bump(s: &mut Store, object: &mut Value) {
    s.version += 1;
    object["metadata"]["resourceVersion"] = Value::String(s.version.to_string());
}

/// RFC 7386 merge: `null` removes; a map merged onto anything else starts from `{}`.
fn merge(target: &mut Value, patch: &Value) {
    if patch.is_object() && !target.is_object() {
        *target = json!({});
    }
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

/// Fields that identify an object or that the server sets, rather than belong to a manager.
fn identity_field(pointer: &str) -> bool {
    matches!(
        pointer,
        "/apiVersion" | "/kind" | "/metadata/name" | "/metadata/namespace"
    ) || [
        "/metadata/resourceVersion",
        "/metadata/generation",
        "/metadata/uid",
        "/metadata/creationTimestamp",
        "/metadata/managedFields",
    ]
    .iter()
    .any(|f| pointer == *f || pointer.starts_with(&format!("{f}/")))
}

/// Whether `pointer` belongs to `subresource` (`status` only through `/status`; everything
/// else only through the object itself).
fn in_subresource(pointer: &str, subresource: Option<&str>) -> bool {
    let status = pointer == "/status" || pointer.starts_with("/status/");
    match subresource {
        Some("status") => status,
        _ => !status,
    }
}

/// The fields of `value` a manager owns by writing them through `subresource`.
fn owned_leaves(value: &Value, subresource: Option<&str>) -> Vec<(String, Value)> {
    let mut set = Vec::new();
    leaves(value, "", &mut set);
    set.retain(|(p, _)| !p.is_empty() && !identity_field(p) && in_subresource(p, subresource));
    set
}

/// Whether one field contains the other (or they are the same).
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// `value` at `pointer`, removed, with the maps left empty above it (up to the root's
/// children, `metadata` kept) removed too unless a manager still owns them.
fn remove_field(value: &mut Value, pointer: &str, still_owned: &dyn Fn(&str) -> bool) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    let Some(map) = value.pointer_mut(parent).and_then(Value::as_object_mut) else {
        return;
    };
    map.remove(&key);
    if map.is_empty() && !parent.is_empty() && parent != "/metadata" && !still_owned(parent) {
        remove_field(value, parent, still_owned);
    }
}

/// Records an `Update` by `manager` through `subresource`: it owns the fields it changed
/// (taken from every other manager); fields that are gone are owned by no one.
fn record_update(
    s: &mut Store,
    path: &str,
    manager: &str,
    subresource: Option<&str>,
    before: &Value,
    after: &Value,
) {
    let old: BTreeMap<String, Value> = owned_leaves(before, subresource).into_iter().collect();
    let new: BTreeMap<String, Value> = owned_leaves(after, subresource).into_iter().collect();
    let changed: Vec<&String> = new
        .iter()
        .filter(|(p, v)| old.get(*p) != Some(*v))
        .map(|(p, _)| p)
        .collect();
    let gone: Vec<&String> = old.keys().filter(|p| !new.contains_key(*p)).collect();
    let entries = s.managed.entry(path.to_string()).or_default();
    for entry in entries.iter_mut() {
        entry.fields.retain(|f| {
            !gone.iter().any(|g| overlaps(f, g))
                && (entry.manager == manager || !changed.iter().any(|c| overlaps(f, c)))
        });
    }
    if !changed.is_empty() {
        let index = entry_index(entries, manager, Operation::Update, subresource);
        entries[index].fields.extend(changed.into_iter().cloned());
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// The index of `manager`'s entry for `operation` on `subresource`, added when missing.
fn entry_index(
    entries: &mut Vec<Managed>,
    manager: &str,
    operation: Operation,
    subresource: Option<&str>,
) -> usize {
    if let Some(i) = entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.subresource.as_deref() == subresource
    }) {
        return i;
    }
    entries.push(Managed {
        manager: manager.to_string(),
        operation,
        subresource: subresource.map(str::to_owned),
        fields: BTreeSet::new(),
    });
    entries.len() - 1
}

/// Server-side apply of `body` by `manager` through `subresource` on `current` (`{}` when
/// the object does not exist yet): the object to store, or the fields another manager owns
/// that a non-forced apply would change (manager, dotted fields).
fn apply(
    s: &mut Store,
    path: &str,
    current: &Value,
    body: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
) -> Result<Value, (String, Vec<String>)> {
    let applied = owned_leaves(body, subresource);
    let entries = s.managed.entry(path.to_string()).or_default();
    // Fields another manager owns whose value this apply changes.
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (pointer, value) in &applied {
        if current.pointer(pointer) == Some(value) {
            continue;
        }
        for e in entries.iter().filter(|e| e.manager != manager) {
            if e.fields.iter().any(|f| overlaps(f, pointer))
                && !conflicts
                    .iter()
                    .any(|(m, p)| *m == e.manager && p == pointer)
            {
                conflicts.push((e.manager.clone(), pointer.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let owner = conflicts[0].0.clone();
        let fields = conflicts
            .into_iter()
            .filter(|(m, _)| *m == owner)
            .map(|(_, p)| dotted(&p))
            .collect();
        return Err((owner, fields));
    }
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        e.fields
            .retain(|f| !conflicts.iter().any(|(_, p)| overlaps(f, p)));
    }
    let mine = entry_index(entries, manager, Operation::Apply, subresource);
    let before = std::mem::take(&mut entries[mine].fields);
    entries[mine].fields = applied.iter().map(|(p, _)| p.clone()).collect();
    let mut object = current.clone();
    // Fields this manager applied before and omits now go, unless someone else owns them.
    let owned_by_others = |f: &str| {
        entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != mine && e.fields.iter().any(|o| overlaps(o, f)))
    };
    for dropped in before
        .iter()
        .filter(|f| !applied.iter().any(|(p, _)| overlaps(p, f)))
    {
        if !owned_by_others(dropped) {
            let still_owned = |f: &str| {
                entries.iter().any(|e| {
                    e.fields
                        .iter()
                        .any(|o| o == f || o.starts_with(&format!("{f}/")))
                })
            };
            remove_field(&mut object, dropped, &still_owned);
        }
    }
    let mut part = body.clone();
    if let Some(map) = part.as_object_mut() {
        match subresource {
            Some("status") => map.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind"),
            _ => {
                map.remove("status");
            }
        }
    }
    merge(&mut object, &part);
    entries.retain(|e| !e.fields.is_empty());
    Ok(object)
}

/// A JSON pointer as the API server names a field: `/spec/http` → `.spec.http`.
fn dotted(pointer: &str) -> String {
    pointer
        .replace("~1", "\u{0}")
        .replace('/', ".")
        .replace('\u{0}', "/")
        .replace("~0", "~")
}

/// `metadata.managedFields` for these entries (`None` when nobody owns anything).
fn render_managed_fields(entries: Option<&Vec<Managed>>, api_version: &Value) -> Option<Value> {
    let entries = entries.filter(|e| !e.is_empty())?;
    let mut sorted: Vec<&Managed> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (a.operation, &a.manager, &a.subresource).cmp(&(b.operation, &b.manager, &b.subresource))
    });
    let rendered = sorted
        .into_iter()
        .map(|e| {
            let mut fields = json!({});
            for pointer in &e.fields {
                let mut node = &mut fields;
                for segment in pointer.trim_start_matches('/').split('/') {
                    let key = format!("f:{}", segment.replace("~1", "/").replace("~0", "~"));
                    let Value::Object(map) = node else { break };
                    node = map.entry(key).or_insert_with(|| json!({}));
                }
            }
            let mut entry = json!({
                "manager": e.manager,
                "operation": match e.operation {
                    Operation::Apply => "Apply",
                    Operation::Update => "Update",
                },
                "apiVersion": api_version,
                "time": "2026-11-22T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            });
            if let Some(sub) = &e.subresource {
                entry["subresource"] = json!(sub);
            }
            entry
        })
        .collect();
    Some(Value::Array(rendered))
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
    if let Some(refused) = authorize(s, seen) {
        return refused;
    }
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
        (Some(Target::Collection(c)), &Method::GET) => list(s, &c, seen.param("labelSelector")),
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

/// `%XX` escapes decoded (kube encodes a label selector's `=`, `,` and `/`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `object`'s labels satisfy an equality-based selector (`a=b,c!=d,e,!f`).
fn selects(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k.trim()).is_none()
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

fn list(s: &Store, c: &Collection, selector: Option<&str>) -> Response<FakeBody> {
    let selector = selector.map(percent_decode).unwrap_or_default();
    let items: Vec<&Value> = s
        .objects
        .iter()
        .filter(|(p, o)| c.holds(p) && selects(&selector, o))
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
    if let Some(meta) = object["metadata"].as_object_mut() {
        // The server sets these.
        for key in ["uid", "creationTimestamp", "generation", "managedFields"] {
            meta.remove(key);
        }
    }
    if let Some(ns) = &c.namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    if let Some(manager) = seen.param("fieldManager") {
        record_update(s, &path, manager, None, &json!({}), &object);
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
        store(s, path, object, true);
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
        if seen.param("fieldManager").is_none() {
            return status(422, path);
        }
        let force = matches!(seen.param("force"), Some("true"));
        let current = s.objects.get(path).cloned().unwrap_or_else(|| json!({}));
        return match apply(s, path, &current, &body, &manager, subresource, force) {
            Ok(object) => reply(200, &write(s, path, object)),
            Err((owner, fields)) => apply_conflict(path, &owner, &fields),
        };
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
            object = before.clone();
            object["status"] = status_part;
        }
    } else if ct == "application/merge-patch+json" || ct == "application/strategic-merge-patch+json"
    {
        if subresource == Some("status") {
            merge(&mut object["status"], &body["status"]);
        } else {
            merge(&mut object, &body);
        }
    } else {
        return status(415, path);
    }
    if let Some(manager) = seen.param("fieldManager") {
        record_update(s, path, manager, subresource, &before, &object);
    }
    reply(200, &write(s, path, object))
}

/// One permission: a verb on a resource (`resource/subresource`) of an API group (`""` for
/// the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// API group.
    pub group: String,
    /// Resource, or `resource/subresource`.
    pub resource: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {} ({group})", self.verb, self.resource)
    }
}

/// One RBAC rule where it applies: in one namespace (a Role, or a ClusterRole bound by a
/// RoleBinding) or everywhere (a ClusterRole bound by a ClusterRoleBinding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacRule {
    /// The namespace it applies in; `None`: every namespace and the cluster scope.
    pub namespace: Option<String>,
    /// `apiGroups`.
    pub api_groups: Vec<String>,
    /// `resources`.
    pub resources: Vec<String>,
    /// `resourceNames` (empty: any).
    pub resource_names: Vec<String>,
    /// `verbs`.
    pub verbs: Vec<String>,
}

/// What one user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rbac {
    /// The user, as the API server names it
    /// (`system:serviceaccount:<namespace>:<name>`).
    pub user: String,
    /// Every rule bound to it.
    pub rules: Vec<RbacRule>,
}

/// Why RBAC could not be read from manifests.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// A document is not YAML.
    #[error("document {index}: {message}")]
    Yaml {
        /// 1-based document number.
        index: usize,
        /// The parser's message.
        message: String,
    },
    /// A binding names a role the manifests do not define.
    #[error("{binding} refers to {kind} {name}, which the manifests do not define")]
    MissingRole {
        /// The binding, `Kind namespace/name`.
        binding: String,
        /// `Role` or `ClusterRole`.
        kind: String,
        /// Its name.
        name: String,
    },
}

impl Rbac {
    /// The rules bound to ServiceAccount `namespace/name` in a multi-document YAML stream
    /// of manifests (Roles, ClusterRoles and their bindings; other kinds are ignored).
    pub fn from_manifests(yaml: &str, namespace: &str, name: &str) -> Result<Rbac, RbacError> {
        let mut docs = Vec::new();
        for (i, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
            let value =
                <Value as serde::Deserialize>::deserialize(doc).map_err(|e| RbacError::Yaml {
                    index: i + 1,
                    message: e.to_string(),
                })?;
            if value.is_object() {
                docs.push(value);
            }
        }
        let find = |kind: &str, ns: Option<&str>, role: &str| {
            docs.iter().find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == role
                    && (ns.is_none() || d["metadata"]["namespace"].as_str() == ns)
            })
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut rules = Vec::new();
        for binding in &docs {
            let kind = binding["kind"].as_str().unwrap_or_default();
            if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
                continue;
            }
            let binds = binding["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == name
                        && s["namespace"] == namespace
                })
            });
            if !binds {
                continue;
            }
            let binding_ns = binding["metadata"]["namespace"].as_str();
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let role = match role_kind {
                "Role" => find("Role", binding_ns, role_name),
                _ => find("ClusterRole", None, role_name),
            }
            .ok_or_else(|| RbacError::MissingRole {
                binding: format!(
                    "{kind} {}/{}",
                    binding_ns.unwrap_or_default(),
                    binding["metadata"]["name"].as_str().unwrap_or_default()
                ),
                kind: role_kind.to_string(),
                name: role_name.to_string(),
            })?;
            let scope = if kind == "ClusterRoleBinding" {
                None
            } else {
                binding_ns.map(str::to_owned)
            };
            for rule in role["rules"].as_array().into_iter().flatten() {
                rules.push(RbacRule {
                    namespace: scope.clone(),
                    api_groups: strings(&rule["apiGroups"]),
                    resources: strings(&rule["resources"]),
                    resource_names: strings(&rule["resourceNames"]),
                    verbs: strings(&rule["verbs"]),
                });
            }
        }
        Ok(Rbac {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            rules,
        })
    }

    fn allows(&self, p: &Permission, namespace: Option<&str>, name: &str) -> bool {
        let has = |list: &[String], item: &str| list.iter().any(|x| x == item || x == "*");
        self.rules.iter().any(|r| {
            (r.namespace.is_none() || r.namespace.as_deref() == namespace)
                && has(&r.api_groups, &p.group)
                && has(&r.resources, &p.resource)
                && has(&r.verbs, &p.verb)
                && (r.resource_names.is_empty()
                    || (!name.is_empty() && has(&r.resource_names, name)))
        })
    }
}

/// What a request asks for: the permission, its namespace and the object's name (empty for a
/// collection).
fn attributes(seen: &Seen) -> Option<(Permission, Option<String>, String)> {
    let (collection, name, subresource) = match parse(&seen.path)? {
        Target::Collection(c) => (c, String::new(), None),
        Target::Object { path, subresource } => {
            let (collection, name) = path.rsplit_once('/')?;
            let Some(Target::Collection(c)) = parse(collection) else {
                return None;
            };
            (c, name.to_string(), subresource)
        }
    };
    let object = !name.is_empty();
    let verb = match (&seen.method, object) {
        (&Method::GET, false) if seen.is_watch() => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => return None,
    };
    let resource = match subresource {
        Some(sub) => format!("{}/{sub}", collection.resource),
        None => collection.resource.clone(),
    };
    Some((
        Permission {
            group: group_of(&collection.prefix),
            resource,
            verb: verb.to_string(),
        },
        collection.namespace,
        name,
    ))
}

/// With RBAC on: `None` when the request is allowed (its permissions recorded), else the
/// 403 to answer. Server-side apply of an object that does not exist yet creates it, so it
/// needs `create` as well as `patch`.
fn authorize(s: &mut Store, seen: &Seen) -> Option<Response<FakeBody>> {
    let rbac = s.rbac.as_ref()?;
    let (permission, namespace, name) = attributes(seen)?;
    let mut needed = vec![permission.clone()];
    let applies = seen
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    if permission.verb == "patch" && applies && !s.objects.contains_key(&seen.path) {
        needed.push(Permission {
            verb: "create".into(),
            ..permission.clone()
        });
    }
    for p in &needed {
        if !rbac.allows(p, namespace.as_deref(), &name) {
            let message = forbidden_message(&rbac.user, p, namespace.as_deref(), &name);
            s.forbidden.push(message.clone());
            let details = json!({
                "name": name,
                "group": p.group,
                "kind": p.resource.split('/').next().unwrap_or_default(),
            });
            return Some(failure(403, "Forbidden", &message, details));
        }
    }
    s.used.extend(needed);
    None
}

/// The API server's words for a refused request.
fn forbidden_message(user: &str, p: &Permission, namespace: Option<&str>, name: &str) -> String {
    let base = p.resource.split('/').next().unwrap_or_default();
    let qualified = if p.group.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{}", p.group)
    };
    let what = if name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{name}\"")
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "{what} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        p.verb, p.resource, p.group
    )
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
        "Forbidden" => forbidden_message(
            "system:serviceaccount:weir:weir",
            &Permission {
                group: group.clone(),
                resource: resource.clone(),
                verb: "patch".into(),
            },
            Some(namespace.as_str()),
            &name,
        ),
        "Invalid" => "the server rejected our request due to an error in our request".to_string(),
        _ => "an error on the server has prevented the request from succeeding".to_string(),
    };
    let details = json!({ "name": name, "group": group, "kind": resource });
    failure(code, reason, &message, details)
}

/// A `Status` failure reply.
fn failure(code: u16, reason: &str, message: &str, details: Value) -> Response<FakeBody> {
    reply(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
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
    let message = format!(
        "Apply failed with {} conflict{}: conflict with \"{manager}\": {}",
        fields.len(),
        if fields.len() == 1 { "" } else { "s" },
        fields.join(", ")
    );
    let causes: Vec<Value> = fields
        .iter()
        .map(|f| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\""),
                "field": f,
            })
        })
        .collect();
    failure(
        409,
        "Conflict",
        &message,
        json!({ "name": name, "causes": causes }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one request straight to the store: the status code.
    fn send(s: &mut Store, method: Method, uri: &str, content_type: &str, body: Value) -> u16 {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let seen = Seen {
            method,
            path: path.to_string(),
            query: query.to_string(),
            content_type: Some(content_type.to_string()),
            body: Some(body),
        };
        answer(s, &seen).status().as_u16()
    }

    const APPLY: &str = "application/apply-patch+yaml";

    fn apply_as(s: &mut Store, path: &str, manager: &str, force: bool, body: Value) -> u16 {
        let force = if force { "&force=true" } else { "" };
        send(
            s,
            Method::PATCH,
            &format!("{path}?fieldManager={manager}{force}"),
            APPLY,
            body,
        )
    }

    fn config_map(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "state", "namespace": "db"}, "data": data})
    }

    #[test]
    fn an_apply_removes_the_fields_its_manager_stops_applying_unless_another_owns_them() {
        let mut s = Store::default();
        let path = cm_path("db", "state");
        let first = config_map(json!({"state.json": "{}", "policy.json": "old", "shared": "x"}));
        assert_eq!(apply_as(&mut s, &path, "weir-operator", false, first), 200);
        // Another manager applies the same value of `shared`: both own it.
        let other = config_map(json!({"shared": "x"}));
        assert_eq!(apply_as(&mut s, &path, "someone", false, other), 200);
        let second = config_map(json!({"state.json": "{\"n\":1}"}));
        assert_eq!(apply_as(&mut s, &path, "weir-operator", false, second), 200);
        let stored = &s.objects[&path];
        assert_eq!(
            stored["data"],
            json!({"state.json": "{\"n\":1}", "shared": "x"}),
            "policy.json went with the apply that left it out; shared stays, someone owns it"
        );
        // The ownership is in managedFields, one entry per manager.
        let managed = stored["metadata"]["managedFields"].as_array().unwrap();
        let fields_of =
            |m: &str| managed.iter().find(|e| e["manager"] == m).unwrap()["fieldsV1"].clone();
        assert_eq!(
            fields_of("weir-operator"),
            json!({"f:data": {"f:state.json": {}}})
        );
        assert_eq!(fields_of("someone"), json!({"f:data": {"f:shared": {}}}));
        assert!(
            managed
                .iter()
                .all(|e| e["operation"] == "Apply" && e["fieldsType"] == "FieldsV1")
        );
        // A map left empty goes with its last field.
        let third = config_map(json!({}));
        let mut third = third;
        third.as_object_mut().unwrap().remove("data");
        assert_eq!(apply_as(&mut s, &path, "someone", false, third), 200);
        assert_eq!(s.objects[&path]["data"], json!({"state.json": "{\"n\":1}"}));
    }

    #[test]
    fn a_conflicting_apply_is_refused_unless_forced_and_forcing_takes_the_field() {
        let mut s = Store::default();
        let path = vs_path("shop", "checkout");
        let vs = |w: u32| {
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "checkout", "namespace": "shop"},
                   "spec": {"hosts": ["checkout"], "http": [{"route": [{"weight": w}]}]}})
        };
        assert_eq!(apply_as(&mut s, &path, "weir-govern", false, vs(100)), 200);
        // Another client edits the routes with a merge patch: it owns them now (Update).
        let edit = json!({"spec": {"http": [{"route": [{"weight": 90}]}]}});
        let code = send(
            &mut s,
            Method::PATCH,
            &format!("{path}?fieldManager=kubectl-edit"),
            "application/merge-patch+json",
            edit,
        );
        assert_eq!(code, 200);
        let managed = s.objects[&path]["metadata"]["managedFields"].clone();
        assert!(
            managed
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["manager"] == "kubectl-edit"
                    && e["operation"] == "Update"
                    && e["fieldsV1"] == json!({"f:spec": {"f:http": {}}})),
            "{managed}"
        );
        // The same value is no conflict; a different one is.
        assert_eq!(
            apply_as(&mut s, &path, "weir-govern", false, {
                let mut v = vs(90);
                v["spec"]["hosts"] = json!(["checkout", "checkout.shop"]);
                v
            }),
            200
        );
        assert_eq!(apply_as(&mut s, &path, "weir-govern", false, vs(100)), 409);
        assert_eq!(
            s.objects[&path]["spec"]["http"][0]["route"][0]["weight"],
            90
        );
        assert_eq!(apply_as(&mut s, &path, "weir-govern", true, vs(100)), 200);
        assert_eq!(
            s.objects[&path]["spec"]["http"][0]["route"][0]["weight"],
            100
        );
        let managed = s.objects[&path]["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            managed.iter().all(|e| e["manager"] == "weir-govern"),
            "{managed:?}"
        );
    }

    #[test]
    fn generation_counts_spec_changes_only() {
        let mut s = Store::default();
        let path = object_path("weir.dev/v1alpha1", "shop", "trafficpolicies", "checkout");
        let tp = json!({"apiVersion": "weir.dev/v1alpha1", "kind": "TrafficPolicy",
                        "metadata": {"name": "checkout", "namespace": "shop", "generation": 7},
                        "spec": {"host": "a"}});
        let created = send(
            &mut s,
            Method::POST,
            "/apis/weir.dev/v1alpha1/namespaces/shop/trafficpolicies",
            "application/json",
            tp,
        );
        assert_eq!(created, 201);
        let generation = |s: &Store| s.objects[&path]["metadata"]["generation"].clone();
        assert_eq!(
            generation(&s),
            1,
            "the server sets it, whatever the client sent"
        );
        let merge = "application/merge-patch+json";
        send(
            &mut s,
            Method::PATCH,
            &format!("{path}/status"),
            merge,
            json!({"status": {"ok": true}}),
        );
        send(
            &mut s,
            Method::PATCH,
            &path,
            merge,
            json!({"metadata": {"labels": {"a": "b"}}}),
        );
        assert_eq!(generation(&s), 1);
        send(
            &mut s,
            Method::PATCH,
            &path,
            merge,
            json!({"spec": {"host": "b"}}),
        );
        assert_eq!(generation(&s), 2);
        // Without a spec, everything but metadata and status counts.
        let cm = cm_path("db", "state");
        apply_as(&mut s, &cm, "m", false, config_map(json!({"a": "1"})));
        apply_as(&mut s, &cm, "m", false, config_map(json!({"a": "2"})));
        assert_eq!(s.objects[&cm]["metadata"]["generation"], 2);
        // A write that changes nothing is no write.
        let version = s.objects[&cm]["metadata"]["resourceVersion"].clone();
        apply_as(&mut s, &cm, "m", false, config_map(json!({"a": "2"})));
        assert_eq!(s.objects[&cm]["metadata"]["resourceVersion"], version);
    }

    #[test]
    fn rbac_from_manifests_refuses_what_the_rules_do_not_grant_in_the_servers_words() {
        let manifests = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: shop}
rules:
- {apiGroups: [networking.istio.io], resources: [virtualservices], verbs: [get, patch]}
- {apiGroups: [weir.dev], resources: [trafficpolicies/status], verbs: [patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: r, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: op, namespace: weir}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: other, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: missing}
subjects: [{kind: ServiceAccount, name: someone-else, namespace: weir}]
"#;
        let rbac = Rbac::from_manifests(manifests, "weir", "op").unwrap();
        assert_eq!(rbac.rules.len(), 2);
        assert!(
            Rbac::from_manifests(manifests, "weir", "someone-else")
                .unwrap_err()
                .to_string()
                .contains("Role missing")
        );
        let mut s = Store {
            rbac: Some(rbac),
            ..Store::default()
        };
        let vs = vs_path("shop", "checkout");
        s.objects
            .insert(vs.clone(), json!({"metadata": {"name": "checkout"}}));
        let merge = "application/merge-patch+json";
        assert_eq!(
            send(&mut s, Method::PATCH, &vs, merge, json!({"spec": {}})),
            200
        );
        assert_eq!(send(&mut s, Method::DELETE, &vs, merge, json!({})), 403);
        // Another namespace, a list, a subresource the rules do not name.
        assert_eq!(
            send(&mut s, Method::GET, &vs_path("web", "x"), merge, json!({})),
            403
        );
        assert_eq!(
            send(
                &mut s,
                Method::GET,
                "/apis/networking.istio.io/v1/namespaces/shop/virtualservices",
                merge,
                json!({})
            ),
            403
        );
        let tp = object_path("weir.dev/v1alpha1", "shop", "trafficpolicies", "checkout");
        assert_eq!(send(&mut s, Method::PATCH, &tp, merge, json!({})), 403);
        // Applying a new object needs create as well as patch.
        assert_eq!(
            apply_as(
                &mut s,
                &vs_path("shop", "new"),
                "m",
                false,
                json!({"spec": {}})
            ),
            403
        );
        assert_eq!(
            s.forbidden,
            [
                "virtualservices.networking.istio.io \"checkout\" is forbidden: User \"system:serviceaccount:weir:op\" cannot delete resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"shop\"",
                "virtualservices.networking.istio.io \"x\" is forbidden: User \"system:serviceaccount:weir:op\" cannot get resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"web\"",
                "virtualservices.networking.istio.io is forbidden: User \"system:serviceaccount:weir:op\" cannot list resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"shop\"",
                "trafficpolicies.weir.dev \"checkout\" is forbidden: User \"system:serviceaccount:weir:op\" cannot patch resource \"trafficpolicies\" in API group \"weir.dev\" in the namespace \"shop\"",
                "virtualservices.networking.istio.io \"new\" is forbidden: User \"system:serviceaccount:weir:op\" cannot create resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"shop\"",
            ]
        );
        let used: Vec<String> = s.used.iter().map(ToString::to_string).collect();
        assert_eq!(used, ["patch virtualservices (networking.istio.io)"]);
    }

    #[test]
    fn a_label_selector_filters_a_list() {
        let labels = json!({"metadata": {"labels": {"weir.dev/traffic-policy": "a", "app": "x"}}});
        assert!(selects(
            &percent_decode("weir.dev%2Ftraffic-policy%3Da%2Capp%3Dx"),
            &labels
        ));
        assert!(!selects("weir.dev/traffic-policy=b", &labels));
        assert!(selects("app!=y,app,!gone", &labels));
        assert!(!selects("gone", &labels));
    }

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
