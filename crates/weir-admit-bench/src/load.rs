//! The open-loop load generator: Poisson arrivals from a seeded RNG, sent on schedule
//! whatever the server does (open loop), each request's latency measured from its
//! *intended* send time (no coordinated omission), a client timeout, HDR histograms, and
//! the generator's own send lag (intended vs actual send). A run whose generator fell behind
//! (p99 send lag above [`MAX_P99_LAG`]) is marked discarded, never silently used.
//!
//! Transport: hyper-util's pooled HTTP/1.1 client, pool unbounded (one keep-alive
//! connection per request in flight, opened on demand: open loop at 5× needs thousands),
//! `TCP_NODELAY`. Timers are tokio's (1 ms resolution): sends that fall due within the same
//! millisecond go out together, and that lag is counted in latency and reported.
//!
//! **Never:** wait for a response before sending the next request (closed loop), or measure
//! latency from the actual send time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::server::Stats;

/// A run is discarded when the generator's p99 send lag exceeds this.
pub const MAX_P99_LAG: Duration = Duration::from_millis(5);

/// A stretch of constant offered load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Length, seconds.
    pub secs: f64,
    /// Offered rate, requests per second.
    pub rate: f64,
}

/// Something the generator does to the server at a point in the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Probe {
    /// Read `/stats`.
    Stats,
    /// Set the service-time factor (`POST /control`).
    ServiceFactor(f64),
}

/// Which route a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// `/work`.
    Work,
    /// `/cheap`.
    Cheap,
    /// `/expensive`.
    Expensive,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Work => "/work",
            Route::Cheap => "/cheap",
            Route::Expensive => "/expensive",
        }
    }
}

/// The criticality a request carries (`x-weir-criticality`), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Class {
    /// No header.
    Unmarked,
    /// `critical`.
    Critical,
    /// `sheddable`.
    Sheddable,
}

/// One load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// Offered load, phase after phase.
    pub phases: Vec<Phase>,
    /// Seed of arrivals, routes and classes.
    pub seed: u64,
    /// `Some(f)`: a fraction `f` of requests go to `/expensive`, the rest to `/cheap`.
    pub expensive_frac: Option<f64>,
    /// `Some(f)`: a fraction `f` is critical, the rest sheddable.
    pub critical_frac: Option<f64>,
    /// An answer within this is good (counts toward goodput).
    pub slo: Duration,
    /// Client timeout, from the intended send time.
    pub timeout: Duration,
    /// Probes at offsets (seconds from the start).
    pub probes: Vec<(f64, Probe)>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// 200.
    Ok,
    /// 429 or 503.
    Rejected,
    /// No answer within the client timeout.
    TimedOut,
    /// Anything else (other status, connection error).
    Error,
}

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Intended send time, seconds from the start.
    pub at: f64,
    /// Route.
    pub route: Route,
    /// Class.
    pub class: Class,
    /// Outcome.
    pub outcome: Outcome,
    /// From the intended send time to the end of the response (or the timeout), µs.
    pub latency_us: u64,
    /// Actual minus intended send time, µs.
    pub lag_us: u64,
}

/// A probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Offset, seconds.
    pub at: f64,
    /// What.
    pub probe: Probe,
    /// `/stats` answer (for [`Probe::Stats`]).
    pub stats: Option<Stats>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// The generator's own timeliness.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    /// p50 send lag, ms.
    pub p50_ms: f64,
    /// p99 send lag, ms.
    pub p99_ms: f64,
    /// Largest send lag, ms.
    pub max_ms: f64,
}

/// What a load run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRun {
    /// Every request, in intended order.
    pub records: Vec<Record>,
    /// Probe results.
    pub probes: Vec<ProbeResult>,
    /// Send lag.
    pub lag: Lag,
    /// `Some(why)` when the generator fell behind: do not use.
    pub discarded: Option<String>,
    /// Length of the offered load, seconds.
    pub secs: f64,
    /// The SLO the run was measured against.
    pub slo_ms: f64,
}

/// Totals over a window of intended send times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Window {
    /// Window length, seconds.
    pub secs: f64,
    /// Requests offered.
    pub offered: u64,
    /// 200 within the SLO.
    pub ok_in_slo: u64,
    /// 200 later than the SLO.
    pub ok_late: u64,
    /// 429/503.
    pub rejected: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Other errors.
    pub errors: u64,
    /// Latency of 200s: p50, p99, max (ms); 0 when there were none.
    pub p50_ms: f64,
    /// p99 of 200s, ms.
    pub p99_ms: f64,
    /// Largest latency of a 200, ms.
    pub max_ms: f64,
}

impl Window {
    /// Good answers per second.
    pub fn goodput(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok_in_slo as f64 / self.secs
        } else {
            0.0
        }
    }

    fn pct(&self, n: u64) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            100.0 * n as f64 / self.offered as f64
        }
    }

    /// Rejected, % of offered.
    pub fn reject_pct(&self) -> f64 {
        self.pct(self.rejected)
    }

    /// Timed out, % of offered.
    pub fn timeout_pct(&self) -> f64 {
        self.pct(self.timed_out)
    }

    /// Errors, % of offered.
    pub fn error_pct(&self) -> f64 {
        self.pct(self.errors)
    }
}

/// One per-second row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Second since the start.
    pub second: u32,
    /// Totals of that second.
    pub w: Window,
}

/// An empty latency histogram in µs, as every measurement here records them.
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits: a constant, valid configuration.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds: {e}"))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LoadRun {
    /// Totals of the requests intended in `[from, to)` seconds that `keep` keeps.
    pub fn window(&self, from: f64, to: f64, keep: impl Fn(&Record) -> bool) -> Window {
        let slo_us = (self.slo_ms * 1000.0) as u64;
        let mut w = Window {
            secs: (to - from).max(0.0),
            ..Window::default()
        };
        let mut h = histogram();
        for r in self
            .records
            .iter()
            .filter(|r| r.at >= from && r.at < to && keep(r))
        {
            w.offered += 1;
            match r.outcome {
                Outcome::Ok => {
                    if r.latency_us <= slo_us {
                        w.ok_in_slo += 1;
                    } else {
                        w.ok_late += 1;
                    }
                    h.saturating_record(r.latency_us.max(1));
                }
                Outcome::Rejected => w.rejected += 1,
                Outcome::TimedOut => w.timed_out += 1,
                Outcome::Error => w.errors += 1,
            }
        }
        if !h.is_empty() {
            w.p50_ms = ms(h.value_at_quantile(0.5));
            w.p99_ms = ms(h.value_at_quantile(0.99));
            w.max_ms = ms(h.max());
        }
        w
    }

    /// Per-second rows over the whole run.
    pub fn rows(&self) -> Vec<SecondRow> {
        (0..self.secs.ceil() as u32)
            .map(|s| SecondRow {
                second: s,
                w: self.window(f64::from(s), f64::from(s + 1), |_| true),
            })
            .collect()
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(c)
}

async fn send(
    client: &HttpClient,
    method: hyper::Method,
    url: hyper::Uri,
    class: Class,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    match class {
        Class::Unmarked => {}
        Class::Critical => b = b.header("x-weir-criticality", "critical"),
        Class::Sheddable => b = b.header("x-weir-criticality", "sheddable"),
    }
    let resp = client.request(b.body(Empty::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `POST url` (control), with a fresh client; errors on a non-2xx answer.
pub async fn post(url: &str) -> anyhow::Result<()> {
    let (status, body) = send(
        &client(),
        hyper::Method::POST,
        url.parse()?,
        Class::Unmarked,
    )
    .await?;
    anyhow::ensure!(status.is_success(), "POST {url}: {status} {body:?}");
    Ok(())
}

/// `GET url`, with a fresh client: status and body.
pub async fn get(url: &str) -> anyhow::Result<(u16, Bytes)> {
    let (status, body) = send(&client(), hyper::Method::GET, url.parse()?, Class::Unmarked).await?;
    Ok((status.as_u16(), body))
}

async fn probe(addr: SocketAddr, p: Probe) -> anyhow::Result<Option<Stats>> {
    match p {
        Probe::Stats => {
            let (status, body) = get(&format!("http://{addr}/stats")).await?;
            anyhow::ensure!(status == 200, "/stats: {status}");
            Ok(Some(serde_json::from_slice(&body)?))
        }
        Probe::ServiceFactor(f) => {
            post(&format!("http://{addr}/control?service_factor={f}")).await?;
            Ok(None)
        }
    }
}

fn quantile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    ms(sorted_us[i.min(sorted_us.len() - 1)])
}

/// Runs `spec` on the current runtime (a current-thread one: see [`run_blocking`]).
pub async fn run(spec: &LoadSpec) -> anyhow::Result<LoadRun> {
    anyhow::ensure!(!spec.phases.is_empty(), "phases: at least one");
    for p in &spec.phases {
        anyhow::ensure!(
            p.secs > 0.0 && p.rate > 0.0 && p.rate.is_finite(),
            "phase {p:?}: length and rate must be > 0"
        );
    }
    let client = client();
    let records = Arc::new(Mutex::new(Vec::new()));
    let probes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let start = Instant::now() + Duration::from_millis(20);
    let total: f64 = spec.phases.iter().map(|p| p.secs).sum();
    let uri = |r: Route| -> anyhow::Result<hyper::Uri> {
        Ok(format!("http://{}{}", spec.addr, r.path()).parse()?)
    };
    let uris = [
        uri(Route::Work)?,
        uri(Route::Cheap)?,
        uri(Route::Expensive)?,
    ];

    for &(at, p) in &spec.probes {
        let (addr, probes) = (spec.addr, probes.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until((start + Duration::from_secs_f64(at)).into()).await;
            let r = probe(addr, p).await;
            let result = match r {
                Ok(stats) => ProbeResult {
                    at,
                    probe: p,
                    stats,
                    error: None,
                },
                Err(e) => ProbeResult {
                    at,
                    probe: p,
                    stats: None,
                    error: Some(e.to_string()),
                },
            };
            if let Ok(mut v) = probes.lock() {
                v.push(result);
            }
        });
    }

    let mut t = 0.0_f64;
    let mut phase_start = 0.0_f64;
    for phase in &spec.phases {
        let end = phase_start + phase.secs;
        t = t.max(phase_start);
        loop {
            // Exponential inter-arrival time: Poisson arrivals.
            let u: f64 = rng.random::<f64>();
            t += -(1.0 - u).ln() / phase.rate;
            if t >= end {
                break;
            }
            let route = match spec.expensive_frac {
                None => Route::Work,
                Some(f) if rng.random::<f64>() < f => Route::Expensive,
                Some(_) => Route::Cheap,
            };
            let class = match spec.critical_frac {
                None => Class::Unmarked,
                Some(f) if rng.random::<f64>() < f => Class::Critical,
                Some(_) => Class::Sheddable,
            };
            let intended = start + Duration::from_secs_f64(t);
            if intended > Instant::now() {
                tokio::time::sleep_until(intended.into()).await;
            }
            let sent = Instant::now();
            let lag_us = sent.saturating_duration_since(intended).as_micros() as u64;
            let (client, records) = (client.clone(), records.clone());
            let url = uris[route as usize].clone();
            let deadline = intended + spec.timeout;
            let at = t;
            tasks.spawn(async move {
                let r = tokio::time::timeout_at(
                    deadline.into(),
                    send(&client, hyper::Method::GET, url, class),
                )
                .await;
                let outcome = match r {
                    Err(_) => Outcome::TimedOut,
                    Ok(Ok((s, _))) if s == hyper::StatusCode::OK => Outcome::Ok,
                    Ok(Ok((s, _)))
                        if s == hyper::StatusCode::TOO_MANY_REQUESTS
                            || s == hyper::StatusCode::SERVICE_UNAVAILABLE =>
                    {
                        Outcome::Rejected
                    }
                    Ok(_) => Outcome::Error,
                };
                let latency_us = Instant::now()
                    .saturating_duration_since(intended)
                    .as_micros() as u64;
                if let Ok(mut v) = records.lock() {
                    v.push(Record {
                        at,
                        route,
                        class,
                        outcome,
                        latency_us,
                        lag_us,
                    });
                }
            });
            // Reap finished tasks as we go, so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
        phase_start = end;
    }
    while tasks.join_next().await.is_some() {}

    let mut records = std::mem::take(&mut *records.lock().map_err(|e| anyhow::anyhow!("{e}"))?);
    records.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut probes = std::mem::take(&mut *probes.lock().map_err(|e| anyhow::anyhow!("{e}"))?);
    probes.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut lags: Vec<u64> = records.iter().map(|r| r.lag_us).collect();
    lags.sort_unstable();
    let lag = Lag {
        p50_ms: quantile_ms(&lags, 0.5),
        p99_ms: quantile_ms(&lags, 0.99),
        max_ms: quantile_ms(&lags, 1.0),
    };
    let discarded = (lag.p99_ms > MAX_P99_LAG.as_secs_f64() * 1000.0).then(|| {
        format!(
            "the generator fell behind: p99 send lag {:.1} ms > {} ms (max {:.1} ms)",
            lag.p99_ms,
            MAX_P99_LAG.as_millis(),
            lag.max_ms
        )
    });
    Ok(LoadRun {
        records,
        probes,
        lag,
        discarded,
        secs: total,
        slo_ms: spec.slo.as_secs_f64() * 1000.0,
    })
}

/// Runs `spec` on a new current-thread runtime (one core: the generator's).
pub fn run_blocking(spec: &LoadSpec) -> anyhow::Result<LoadRun> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(spec))
}
