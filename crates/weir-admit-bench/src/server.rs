//! The server under test: an axum service of known capacity on 127.0.0.1.
//!
//! W concurrent slots (a tokio `Semaphore`: the queue inside the server, which overload
//! fills), a lognormal service time around the mean from a seeded RNG, and real CPU work per
//! request (`io` variant: CPU work then a sleep; `cpu` variant: the whole service time is CPU
//! work, a fixed amount of it calibrated at start, on tokio's blocking pool as a CPU-bound
//! async service should run it — inline, it starves the runtime's workers, requests wait in
//! the runtime before any layer sees them, and no in-process limiter can refuse anything:
//! measured, 0 % refused and 15–73 % timed out at 2–5× for tower and Weir alike). Routes: `/work`, `/cheap` (½ the mean) and `/expensive` (3× the mean; an 80/20 mix
//! keeps the mean), `/healthz`, `/stats` (JSON: completed, waiting, in service) and
//! `POST /control?service_factor=F` (multiplies every service time by F from now on).
//! Only the work routes are behind the admission arm.
//!
//! **Never:** answer a work request before its service time has passed, or share state
//! between two servers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::arms::{self, ArmParams};

/// Where the service time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// CPU work (`cpu_us`) then a sleep for the rest: capacity = slots / mean.
    Io,
    /// The whole service time is CPU work (a fixed count of loop rounds, however the core is
    /// shared), on the blocking pool: capacity bounded by the core.
    Cpu,
}

/// The server's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Concurrent slots (W).
    pub slots: u32,
    /// Mean service time of `/work`.
    pub service: Duration,
    /// CPU work per request (`io` variant).
    pub cpu: Duration,
    /// Where the service time goes.
    pub variant: Variant,
    /// Seed of the service-time RNG.
    pub seed: u64,
    /// Lognormal sigma of the service time (0 = constant).
    pub sigma: f64,
    /// Rounds of CPU work per µs (`cpu` variant); measured at start when absent.
    pub rounds_per_us: Option<f64>,
}

/// Answer of `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Work requests completed so far.
    pub completed: u64,
    /// Waiting for a slot now.
    pub waiting: u64,
    /// Holding a slot now.
    pub in_service: u64,
}

struct Inner {
    cfg: ServerConfig,
    slots: Semaphore,
    rng: Mutex<StdRng>,
    /// Service-time factor, in thousandths.
    factor_milli: AtomicU32,
    completed: AtomicU64,
    waiting: AtomicU64,
    in_service: AtomicU64,
    /// Rounds of [`rounds`] per microsecond on this core, measured at start.
    rounds_per_us: f64,
}

/// A standard normal draw (Box–Muller): two uniforms, no extra crate for one formula.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Inner {
    fn service_time(&self, mean_mult: f64) -> Duration {
        let mean = self.cfg.service.as_secs_f64() * mean_mult;
        let s = self.cfg.sigma;
        let z = match self.rng.lock() {
            Ok(mut r) => normal(&mut r),
            Err(p) => normal(&mut p.into_inner()),
        };
        // Lognormal with the given mean: mu = ln(mean) - s²/2.
        let t = (mean.ln() - s * s / 2.0 + s * z).exp();
        let factor = f64::from(self.factor_milli.load(Ordering::Relaxed)) / 1000.0;
        Duration::from_secs_f64((t * factor).min(60.0))
    }
}

/// `n` rounds of busy CPU work.
fn rounds(n: u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..n {
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x);
}

/// Rounds of CPU work per microsecond on this core: the best of a few 5-ms samples (the least
/// disturbed). The runner measures it once, on an idle core, and gives it to every server.
pub fn calibrate_rounds() -> f64 {
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let mut n = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(5) {
            rounds(100);
            n += 100;
        }
        best = best.max(n as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    best.max(1e-3)
}

/// Busy CPU work for `d` of wall time (real instructions, not a sleep).
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        rounds(1);
    }
}

async fn serve_one(s: Arc<Inner>, mean_mult: f64) -> &'static str {
    s.waiting.fetch_add(1, Ordering::Relaxed);
    let permit = s.slots.acquire().await;
    s.waiting.fetch_sub(1, Ordering::Relaxed);
    s.in_service.fetch_add(1, Ordering::Relaxed);
    let t = s.service_time(mean_mult);
    match s.cfg.variant {
        Variant::Io => {
            let cpu = s.cfg.cpu.min(t);
            spin(cpu);
            tokio::time::sleep(t - cpu).await;
        }
        Variant::Cpu => {
            let n = (t.as_secs_f64() * 1e6 * s.rounds_per_us) as u64;
            // If the blocking pool is gone (runtime shutting down), there is nothing to serve.
            let _ = tokio::task::spawn_blocking(move || rounds(n)).await;
        }
    }
    s.in_service.fetch_sub(1, Ordering::Relaxed);
    s.completed.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    "done\n"
}

#[derive(Debug, Deserialize)]
struct Control {
    service_factor: f64,
}

/// The work routes and the admin routes, the work routes behind `arm`.
pub fn router(cfg: ServerConfig, arm: &str, p: &ArmParams) -> Result<Router, arms::ArmError> {
    let inner = Arc::new(Inner {
        slots: Semaphore::new(cfg.slots as usize),
        rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
        factor_milli: AtomicU32::new(1000),
        completed: AtomicU64::new(0),
        waiting: AtomicU64::new(0),
        in_service: AtomicU64::new(0),
        rounds_per_us: match cfg.variant {
            Variant::Cpu => cfg.rounds_per_us.unwrap_or_else(calibrate_rounds),
            Variant::Io => 0.0,
        },
        cfg,
    });
    let work = Router::new()
        .route(
            "/work",
            get(|State(s): State<Arc<Inner>>| serve_one(s, 1.0)),
        )
        .route(
            "/cheap",
            get(|State(s): State<Arc<Inner>>| serve_one(s, 0.5)),
        )
        .route(
            "/expensive",
            get(|State(s): State<Arc<Inner>>| serve_one(s, 3.0)),
        )
        .with_state(inner.clone());
    let admin = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/stats",
            get(|State(s): State<Arc<Inner>>| async move {
                Json(Stats {
                    completed: s.completed.load(Ordering::Relaxed),
                    waiting: s.waiting.load(Ordering::Relaxed),
                    in_service: s.in_service.load(Ordering::Relaxed),
                })
            }),
        )
        .route(
            "/control",
            post(
                |State(s): State<Arc<Inner>>, Query(c): Query<Control>| async move {
                    if !(c.service_factor.is_finite() && c.service_factor > 0.0) {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            "service_factor must be > 0\n",
                        );
                    }
                    let milli = (c.service_factor * 1000.0).round().clamp(1.0, 1e6) as u32;
                    s.factor_milli.store(milli, Ordering::Relaxed);
                    (axum::http::StatusCode::OK, "ok\n")
                },
            ),
        )
        .with_state(inner);
    Ok(admin.merge(arms::wrap(arm, p, work)?))
}

/// Serves until the process ends. `double_after` doubles the service time once, that long
/// after start.
pub async fn serve(
    addr: SocketAddr,
    cfg: ServerConfig,
    arm: &str,
    p: &ArmParams,
    double_after: Option<Duration>,
) -> anyhow::Result<()> {
    let app = router(cfg, arm, p)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if let Some(d) = double_after {
        let url = format!("http://{}/control?service_factor=2", listener.local_addr()?);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if let Err(e) = crate::load::post(&url).await {
                eprintln!("weir-admit-bench serve: doubling the service time failed: {e}");
            }
        });
    }
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
