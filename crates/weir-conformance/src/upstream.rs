//! The upstreams: small HTTP/1 servers on 127.0.0.1 that answer every request with their
//! identity, subset, locality and the request's headers (JSON, plus an `x-upstream` header),
//! with switches to answer 503 (outlier detection), to wait before answering (circuit
//! breaking) and to stop (failover: the listener and every open connection are closed, as
//! when a process dies). An upstream can also keep a bounded per-key cache ([`Lru`], keyed by
//! a request header), the way a service keeps a user's data warm: each request with the key
//! is a hit or a miss, said in the answer and counted (affinity's payoff).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;

/// Where an upstream runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locality {
    /// Region.
    pub region: Option<String>,
    /// Zone.
    pub zone: Option<String>,
    /// Subzone.
    pub subzone: Option<String>,
}

impl Locality {
    /// A locality in `region`/`zone`.
    pub fn zone(region: &str, zone: &str) -> Locality {
        Locality {
            region: Some(region.into()),
            zone: Some(zone.into()),
            subzone: None,
        }
    }

    /// `east/east-1`, or `-` when unknown.
    pub fn label(&self) -> String {
        let parts: Vec<&str> = [&self.region, &self.zone, &self.subzone]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join("/")
        }
    }
}

/// What an upstream answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The upstream's identity (`v1-a`).
    pub id: String,
    /// Its subset.
    pub subset: String,
    /// Its locality (`east/east-1`).
    pub locality: String,
    /// The request's path and query.
    pub path: String,
    /// The request's headers as the upstream got them (names lower case).
    pub headers: BTreeMap<String, String>,
    /// With a cache and the key header: whether the key was cached (absent otherwise, so the
    /// answers of upstreams without a cache are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheResult>,
}

/// What the cache said about a request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheResult {
    /// The key was cached.
    Hit,
    /// It was not; it is now.
    Miss,
}

/// A per-key cache on an upstream: the key is the value of request header `header`, at most
/// `capacity` keys are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// The header whose value is the key (lower case).
    pub header: String,
    /// The most keys kept.
    pub capacity: usize,
}

/// A bounded set of keys that forgets the least recently used first. Ordered maps only, so
/// nothing depends on hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lru {
    capacity: usize,
    clock: u64,
    last_used: BTreeMap<String, u64>,
    by_age: BTreeMap<u64, String>,
}

impl Lru {
    /// An empty cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            ..Lru::default()
        }
    }

    /// Uses `key`: a hit (`true`) when it is cached, else a miss, and `key` is cached, the
    /// least recently used key evicted when the cache is full.
    pub fn touch(&mut self, key: &str) -> bool {
        self.clock += 1;
        let now = self.clock;
        if let Some(t) = self.last_used.get_mut(key) {
            self.by_age.remove(t);
            *t = now;
            self.by_age.insert(now, key.to_string());
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        if self.last_used.len() >= self.capacity
            && let Some((_, oldest)) = self.by_age.pop_first()
        {
            self.last_used.remove(&oldest);
        }
        self.last_used.insert(key.to_string(), now);
        self.by_age.insert(now, key.to_string());
        false
    }

    /// Whether `key` is cached (without using it).
    pub fn contains(&self, key: &str) -> bool {
        self.last_used.contains_key(key)
    }

    /// Keys cached.
    pub fn len(&self) -> usize {
        self.last_used.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.last_used.is_empty()
    }
}

/// One upstream to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Identity.
    pub id: String,
    /// Subset of the policy it belongs to.
    pub subset: String,
    /// Where it runs.
    pub locality: Option<Locality>,
    /// Its per-key cache, if any.
    pub cache: Option<CacheSpec>,
}

impl UpstreamSpec {
    /// An upstream `id` of `subset` with no locality.
    pub fn new(id: &str, subset: &str) -> UpstreamSpec {
        UpstreamSpec {
            id: id.into(),
            subset: subset.into(),
            locality: None,
            cache: None,
        }
    }

    /// The same, placed in `locality`.
    pub fn at(mut self, locality: Locality) -> UpstreamSpec {
        self.locality = Some(locality);
        self
    }

    /// The same, with a cache of `capacity` keys taken from request header `header`.
    pub fn cached(mut self, header: &str, capacity: usize) -> UpstreamSpec {
        self.cache = Some(CacheSpec {
            header: header.to_ascii_lowercase(),
            capacity,
        });
        self
    }
}

struct Switches {
    spec: UpstreamSpec,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    received: AtomicU64,
    cache: Option<Mutex<Lru>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Switches {
    /// Looks the request's key up in the cache, if there are both.
    fn cache_lookup(&self, headers: &axum::http::HeaderMap) -> Option<CacheResult> {
        let spec = self.spec.cache.as_ref()?;
        let key = headers.get(spec.header.as_str())?;
        let key = String::from_utf8_lossy(key.as_bytes());
        let hit = self.cache.as_ref()?.lock().ok()?.touch(&key);
        if hit {
            self.hits.fetch_add(1, Ordering::SeqCst);
            Some(CacheResult::Hit)
        } else {
            self.misses.fetch_add(1, Ordering::SeqCst);
            Some(CacheResult::Miss)
        }
    }
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Switches);

impl<'a> InFlight<'a> {
    fn new(s: &'a Switches) -> InFlight<'a> {
        s.received.fetch_add(1, Ordering::SeqCst);
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running upstream.
pub struct Upstream {
    /// What it is.
    pub spec: UpstreamSpec,
    /// Where it listens.
    pub addr: SocketAddr,
    switches: Arc<Switches>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Upstream {
    /// Starts `spec` on a free port of 127.0.0.1.
    pub async fn start(spec: UpstreamSpec) -> Result<Upstream, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding an upstream on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("an upstream's address", e))?;
        let switches = Arc::new(Switches {
            spec: spec.clone(),
            failing: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            received: AtomicU64::new(0),
            cache: spec
                .cache
                .as_ref()
                .map(|c| Mutex::new(Lru::new(c.capacity))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let router = Router::new().fallback(answer).with_state(switches.clone());
        let task = tokio::spawn(serve(listener, router));
        Ok(Upstream {
            spec,
            addr,
            switches,
            task: Mutex::new(Some(task)),
        })
    }

    /// Answer 503 (`true`) or normally (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.switches.failing.store(failing, Ordering::SeqCst);
    }

    /// Wait this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.switches.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The most requests it has had in flight at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.switches.peak.load(Ordering::SeqCst)
    }

    /// Requests it has received so far (whatever it answered): what Envoy sent it, retries
    /// included, whether or not the client saw the answer.
    pub fn received(&self) -> u64 {
        self.switches.received.load(Ordering::SeqCst)
    }

    /// Cache (hits, misses) so far (both 0 without a cache).
    pub fn cache_counts(&self) -> (u64, u64) {
        (
            self.switches.hits.load(Ordering::SeqCst),
            self.switches.misses.load(Ordering::SeqCst),
        )
    }

    /// Stops listening and closes every open connection.
    pub fn stop(&self) {
        if let Ok(mut t) = self.task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Header names (lower case) and values (lossy UTF-8), in order.
pub fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Accepts connections until aborted; aborting drops the set, which closes every connection.
async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(State(s): State<Arc<Switches>>, req: Request) -> Response {
    let _counted = InFlight::new(&s);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let cache = s.cache_lookup(req.headers());
    let headers = header_pairs(req.headers()).into_iter().collect();
    let body = Answer {
        id: s.spec.id.clone(),
        subset: s.spec.subset.clone(),
        locality: s.spec.locality.clone().unwrap_or_default().label(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        headers,
        cache,
    };
    let status = if s.failing.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&s.spec.id) {
        resp.headers_mut().insert("x-upstream", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_labels() {
        assert_eq!(Locality::zone("east", "east-1").label(), "east/east-1");
        assert_eq!(Locality::default().label(), "-");
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut c = Lru::new(3);
        assert!(c.is_empty());
        for k in ["a", "b", "c"] {
            assert!(!c.touch(k), "{k} is a first use: a miss");
        }
        assert_eq!(c.len(), 3);
        assert!(c.touch("a"), "a is cached; now the most recent");
        assert!(
            !c.touch("d"),
            "a miss that evicts b, the least recently used"
        );
        assert_eq!(c.len(), 3);
        assert!(!c.contains("b"));
        assert!(c.contains("a") && c.contains("c") && c.contains("d"));
        assert!(!c.touch("e"), "evicts c");
        assert!(!c.contains("c"));
        assert!(c.touch("a") && c.touch("d") && c.touch("e"));
        assert!(!c.touch("b"), "b came back as a miss and evicts a");
        assert!(!c.contains("a"));
        let mut none = Lru::new(0);
        assert!(!none.touch("a") && !none.touch("a"));
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_cache_answers_hit_or_miss_per_key() {
        let u = Upstream::start(UpstreamSpec::new("c-a", "c").cached("X-User-Id", 2))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{}/", u.addr);
        let mut seen = Vec::new();
        for user in ["u1", "u1", "u2", "u3", "u1", "u3"] {
            let r = client.get(&url).header("x-user-id", user).send().await;
            let a: Answer = r.unwrap().json().await.unwrap();
            seen.push(a.cache);
        }
        let (hit, miss) = (Some(CacheResult::Hit), Some(CacheResult::Miss));
        assert_eq!(seen, [miss, hit, miss, miss, miss, hit]);
        assert_eq!(u.cache_counts(), (2, 4));
        let a: Answer = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(a.cache, None, "no key, no lookup");
        assert_eq!(u.cache_counts(), (2, 4));
    }

    #[tokio::test]
    async fn answers_with_identity_fails_and_stops() {
        let u = Upstream::start(UpstreamSpec::new("v1-a", "v1").at(Locality::zone("e", "e-1")))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{}/x?q=1", u.addr);
        let r = client.get(&url).header("x-h", "v").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-upstream"], "v1-a");
        let a: Answer = r.json().await.unwrap();
        assert_eq!((a.id.as_str(), a.subset.as_str()), ("v1-a", "v1"));
        assert_eq!(a.locality, "e/e-1");
        assert_eq!(a.path, "/x?q=1");
        assert_eq!(a.headers["x-h"], "v");
        assert_eq!(a.cache, None);
        assert_eq!(u.cache_counts(), (0, 0));
        assert_eq!(u.peak_in_flight(), 1);
        assert!(u.received() >= 1);
        u.set_failing(true);
        assert_eq!(client.get(&url).send().await.unwrap().status(), 503);
        u.stop();
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        assert!(fresh.get(&url).send().await.is_err());
    }
}
