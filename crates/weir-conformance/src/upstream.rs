//! The upstreams: small HTTP/1 servers on 127.0.0.1 that answer every request with their
//! identity, subset, locality and the request's headers (JSON, plus an `x-upstream` header),
//! with switches to answer 503 (outlier detection), to wait before answering (circuit
//! breaking) and to stop (failover: the listener and every open connection are closed, as
//! when a process dies).

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
}

impl UpstreamSpec {
    /// An upstream `id` of `subset` with no locality.
    pub fn new(id: &str, subset: &str) -> UpstreamSpec {
        UpstreamSpec {
            id: id.into(),
            subset: subset.into(),
            locality: None,
        }
    }

    /// The same, placed in `locality`.
    pub fn at(mut self, locality: Locality) -> UpstreamSpec {
        self.locality = Some(locality);
        self
    }
}

struct Switches {
    spec: UpstreamSpec,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Switches);

impl<'a> InFlight<'a> {
    fn new(s: &'a Switches) -> InFlight<'a> {
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
        assert_eq!(u.peak_in_flight(), 1);
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
