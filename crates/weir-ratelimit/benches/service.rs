//! The `weir ratelimit` benchmark (a benchmark, not a timed test): decisions per second and
//! latency per decision of the real service against a real Redis on one core, memory at a
//! million distinct keys, and Redis's own limit on the same work, side by side in one run.
//!
//! `cargo bench -p weir-ratelimit --bench service -- [--short] [--json FILE] [--markdown FILE]`
//!
//! - **Processes.** A real `redis-server` (`weir_test_support::procs::Redis`: 127.0.0.1, a free
//!   port, `--save '' --appendonly no`) and the service — this binary re-executed with
//!   `--serve-child`, which calls the crate's public [`weir_ratelimit::start`] (the real tonic
//!   gRPC server, the real Redis counter) on the runtime `weir ratelimit` uses — both pinned to
//!   CPU 0; the load generator (one tokio thread) pinned to CPU 1. Pinning is
//!   `sched_setaffinity` on the spawning thread, inherited by the children, and read back from
//!   `/proc/<pid>/status` into the report. With one CPU nothing is pinned, and the report says
//!   so.
//! - **Request.** What Envoy sends for `deploy/policies/ratelimit.yaml`, compiled here by
//!   `weir_govern`: its domain and one descriptor per `rate_limits` action — `path=/predict`,
//!   `x-api-key=<key>`, `remote_address=<ip>` — so one decision raises three counters in one
//!   `MULTI`/`EXEC`. Keys: one hot key, or 100,000 users cycled (each its own key and address).
//! - **Load.** Closed loop at 1, 8, 32 and 128 requests in flight over 4 HTTP/2 connections
//!   (like 4 Envoy workers), a warm-up, then a fixed window; latency per decision in an HDR
//!   histogram (p50, p99, p99.9), errors counted, CPU use of each process from `/proc`.
//! - **Redis's own limit**, Redis alone on CPU 0, the client on CPU 1: the same decisions
//!   without gRPC (the counters the service raises — its key format, its windows — raised by
//!   the crate's own `Counter::raise`: exactly the service's transaction), and
//!   `redis-benchmark` on `INCRBY` and on an `EVAL` doing the decision's three `INCRBY` +
//!   `EXPIRE` in one call (redis-benchmark sends one command at a time, so it cannot send a
//!   `MULTI` … `EXEC`).
//! - **Memory.** 1,000,000 distinct API keys (`--short`: 20,000) from one client address
//!   through the service, on a copy of the policy's limits counted per hour so no key expires
//!   during the run: Redis's `used_memory` and `DBSIZE`, and the service's `VmRSS` at start,
//!   before and at each quarter.
//!
//! `--short` does all of it in under 20 s (CI). It exits non-zero only when it cannot run (no
//! `redis-server`, the service did not start); it never judges a timing. Run without arguments
//! (as `cargo test --benches` does), it only says how to run it. `docs/ratelimit-bench.md` has
//! the results and what they mean.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::transport::Channel;
use weir_ratelimit::clock::window;
use weir_ratelimit::counter::{Counter, Hit};
use weir_ratelimit::limits::counter_key;
use weir_ratelimit::{FailureMode, Settings, SystemClock};
use weir_test_support::procs::{Redis, which};

type Result<T> = std::result::Result<T, String>;

/// One decision in flight: whether it was over the limit.
type Decision = std::pin::Pin<Box<dyn Future<Output = Result<bool>> + Send>>;

/// The argument that makes this binary the service (internal).
const CHILD: &str = "--serve-child";
/// The policy whose compiled rate-limit configuration and request shape are measured.
const POLICY: &str = "deploy/policies/ratelimit.yaml";
/// Distinct users in the "many keys" runs.
const MANY_USERS: u64 = 100_000;
/// HTTP/2 connections from the load generator, like as many Envoy worker threads.
const CONNECTIONS: usize = 4;
/// In flight while filling Redis with distinct keys.
const MEMORY_IN_FLIGHT: usize = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        return match serve_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench service child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.is_empty() {
        println!(
            "the weir ratelimit benchmark: run it with \
             `cargo bench -p weir-ratelimit --bench service -- [--short] [--json FILE] [--markdown FILE]`"
        );
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: cannot run: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options and the plan of a run.

struct Options {
    short: bool,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            short: false,
            json: None,
            markdown: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                // cargo bench passes --bench to a harness-less target.
                "--bench" => {}
                "--short" => o.short = true,
                "--json" => o.json = Some(it.next().ok_or("--json needs a FILE")?.into()),
                "--markdown" => {
                    o.markdown = Some(it.next().ok_or("--markdown needs a FILE")?.into())
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}: expected --short, --json FILE, --markdown FILE"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// How long and how much each part runs.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    short: bool,
    in_flight: Vec<usize>,
    warmup_s: f64,
    window_s: f64,
    many_users: u64,
    connections: usize,
    redis_benchmark_requests: u64,
    memory_keys: u64,
    memory_in_flight: usize,
}

impl Plan {
    fn new(short: bool) -> Plan {
        if short {
            Plan {
                short,
                in_flight: vec![1, 32],
                warmup_s: 0.2,
                window_s: 0.8,
                many_users: MANY_USERS,
                connections: CONNECTIONS,
                redis_benchmark_requests: 5_000,
                memory_keys: 20_000,
                memory_in_flight: MEMORY_IN_FLIGHT,
            }
        } else {
            Plan {
                short,
                in_flight: vec![1, 8, 32, 128],
                warmup_s: 1.0,
                window_s: 5.0,
                many_users: MANY_USERS,
                connections: CONNECTIONS,
                redis_benchmark_requests: 100_000,
                memory_keys: 1_000_000,
                memory_in_flight: MEMORY_IN_FLIGHT,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    commit: String,
    machine: Machine,
    plan: Plan,
    request: String,
    runs: Vec<RunResult>,
    redis_benchmark: Vec<BenchRow>,
    memory: Option<Memory>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    redis_version: String,
    /// What runs where: `(what, pid, Cpus_allowed_list)`.
    pinning: Vec<(String, u32, String)>,
    pinned: bool,
}

/// One closed-loop window.
#[derive(Debug, Serialize)]
struct RunResult {
    /// `service` (gRPC) or `no gRPC` (the same decisions straight to Redis).
    path: String,
    keys: String,
    in_flight: usize,
    seconds: f64,
    decisions: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    over_limit: u64,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
}

/// One redis-benchmark run.
#[derive(Debug, Serialize)]
struct BenchRow {
    what: String,
    command: String,
    clients: usize,
    requests: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu: CpuUse,
}

#[derive(Debug, Serialize)]
struct Memory {
    keys_driven: u64,
    in_flight: usize,
    seconds: f64,
    per_second: f64,
    errors: u64,
    dbsize_before: u64,
    dbsize_after: u64,
    used_memory_before: u64,
    used_memory_after: u64,
    redis_bytes_per_key: f64,
    service_rss_kib_at_start: Option<u64>,
    /// `(distinct keys driven so far, VmRSS KiB)`, the first before any.
    service_rss_kib: Vec<(u64, Option<u64>)>,
    service_hwm_kib: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The run.

fn run(options: &Options) -> Result<()> {
    let plan = Plan::new(options.short);
    let started = Instant::now();
    if which("redis-server").is_none() {
        return Err("`redis-server` is not installed: `apt-get install -y redis-server`".into());
    }
    let redis_benchmark = which("redis-benchmark");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2;
    let mut notes = Vec::new();
    if pinned {
        pin_this_thread(0)?;
    } else {
        notes.push(format!(
            "{cpus} CPU available: nothing pinned; the service, Redis and the load generator share it"
        ));
    }

    // CPU 0: Redis and the service inherit this thread's affinity.
    let redis = Redis::start();
    let redis_pid = redis.pid().unwrap_or(0);
    let (live, hourly) = compiled_domains()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    for d in [&live, &hourly] {
        let path = dir.path().join(format!("{}.yaml", d.name));
        std::fs::write(&path, &d.yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let service = ServiceChild::start(dir.path(), &redis.url())?;
    let rss_at_start = proc_status_kib(service.pid, "VmRSS");

    // CPU 1: this thread, the load generator's runtime, and redis-benchmark.
    if pinned {
        pin_this_thread(1)?;
    }
    let pinning = [
        ("redis-server".to_string(), redis_pid),
        ("service (weir_ratelimit::start)".to_string(), service.pid),
        (
            "load generator (this process)".to_string(),
            std::process::id(),
        ),
    ]
    .into_iter()
    .map(|(what, pid)| {
        let cpus = proc_status(pid, "Cpus_allowed_list").unwrap_or_else(|| "?".into());
        (what, pid, cpus)
    })
    .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("load generator runtime: {e}"))?;
    let pids = Pids {
        service: Some(service.pid),
        redis: redis_pid,
    };

    let (redis_version, mut runs) = runtime.block_on(async {
        let redis_version = redis_info(&redis.url(), "server", "redis_version")
            .await
            .unwrap_or_else(|_| "?".into());
        let mut runs = Vec::new();
        let clients = connect(service.grpc_addr.as_str(), plan.connections).await?;
        for keys in [Keys::Hot, Keys::Many(plan.many_users)] {
            for &n in &plan.in_flight {
                let shape = Shape::new(&live, keys);
                eprintln!("bench: service, {}, {n} in flight", keys.label());
                let op = grpc_op(clients.clone(), shape);
                runs.push(
                    drive(&plan, n, Stop::Window, pids, op)
                        .await?
                        .into_result("service", keys, n),
                );
            }
        }
        // Without gRPC: Redis alone on CPU 0 (the service idles), this process on CPU 1.
        let counter = Arc::new(
            Counter::new(
                &redis.url(),
                Duration::from_millis(500),
                Duration::from_secs(1),
            )
            .map_err(|e| format!("redis URL: {e}"))?,
        );
        for keys in [Keys::Hot, Keys::Many(plan.many_users)] {
            for &n in &plan.in_flight {
                eprintln!("bench: no gRPC, {}, {n} in flight", keys.label());
                let op = direct_op(counter.clone(), Shape::new(&live, keys));
                let idle_service = Pids {
                    service: None,
                    ..pids
                };
                runs.push(
                    drive(&plan, n, Stop::Window, idle_service, op)
                        .await?
                        .into_result("no gRPC", keys, n),
                );
            }
        }
        Ok::<_, String>((redis_version, runs))
    })?;

    let redis_benchmark = match redis_benchmark {
        Some(bin) => run_redis_benchmark(&bin, &plan, &redis, &live)?,
        None => {
            notes.push(
                "`redis-benchmark` is not installed (Debian package redis-tools): its rows are missing"
                    .into(),
            );
            Vec::new()
        }
    };

    let memory = runtime.block_on(async {
        let clients = connect(service.grpc_addr.as_str(), plan.connections).await?;
        eprintln!(
            "bench: memory, {} distinct keys through the service",
            plan.memory_keys
        );
        fill_memory(
            &plan,
            &clients,
            &redis.url(),
            &hourly,
            &service,
            rss_at_start,
        )
        .await
    })?;
    for r in &runs {
        if r.errors > 0 {
            notes.push(format!(
                "{} {} at {} in flight: {} errors, the first: {}",
                r.path,
                r.keys,
                r.in_flight,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    let busiest = runs
        .iter()
        .map(|r| r.cpu.others)
        .chain(redis_benchmark.iter().map(|b| b.cpu.others))
        .flatten()
        .fold(0.0, f64::max);
    if busiest > 10.0 {
        notes.push(format!(
            "other processes used up to {busiest:.0}% of a core during a measured window: \
             those rows are disturbed (see the `others` CPU column)"
        ));
    }
    runs.sort_by_key(|r| (r.keys.clone(), r.in_flight, r.path.clone()));
    drop(service);
    drop(redis);

    let report = Report {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: command_line("git", &["rev-parse", "--short", "HEAD"]),
        machine: Machine {
            cpus,
            cpu_model: cpu_model(),
            redis_version,
            pinning,
            pinned,
        },
        request: describe_request(&live),
        plan,
        runs,
        redis_benchmark,
        memory: Some(memory),
        notes,
    };
    let markdown = render(&report, started.elapsed());
    print!("{markdown}");
    if let Some(path) = &options.markdown {
        std::fs::write(path, &markdown).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &options.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// One configured domain as the benchmark uses it: the file the service reads, and each
/// top-level descriptor entry with its limit.
#[derive(Debug, Clone)]
struct Domain {
    name: String,
    yaml: String,
    limits: Vec<Limit>,
}

/// One descriptor entry: its key, its value if it names one, its window and its limit.
#[derive(Debug, Clone)]
struct Limit {
    key: String,
    value: Option<String>,
    period: u64,
    requests: u64,
}

/// The policy's rate-limit configuration as the compiler writes it, and a copy counted per
/// hour under its own domain (for the memory run, so that no key expires before the end).
/// Read back from the written YAML: the file format the service itself reads.
fn compiled_domains() -> Result<(Domain, Domain)> {
    use serde_norway::Value;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(POLICY);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let policies = weir_govern::parse(&text, POLICY).map_err(|e| e.to_string())?;
    let policy = policies.first().ok_or(format!("{POLICY}: no policy"))?;
    let out = weir_govern::compile(policy, POLICY).map_err(|e| e.to_string())?;
    let config = out
        .ratelimit
        .ok_or(format!("{POLICY}: no rate_limit.global section"))?;
    let yaml = config.to_yaml().map_err(|e| format!("rendering: {e}"))?;
    let live: Value = serde_norway::from_str(&yaml).map_err(|e| format!("reading back: {e}"))?;
    let mut hourly = live.clone();
    let name = live.get("domain").and_then(Value::as_str).unwrap_or("");
    if let Some(d) = hourly.get_mut("domain") {
        *d = Value::String(format!("{name}-hourly"));
    }
    let entries = hourly
        .get_mut("descriptors")
        .and_then(Value::as_sequence_mut);
    for d in entries.into_iter().flatten() {
        if let Some(unit) = d.get_mut("rate_limit").and_then(|l| l.get_mut("unit")) {
            *unit = Value::String("hour".into());
        }
    }
    Ok((domain_of(&live)?, domain_of(&hourly)?))
}

fn domain_of(v: &serde_norway::Value) -> Result<Domain> {
    let text = |v: &serde_norway::Value, k: &str| {
        v.get(k)
            .and_then(serde_norway::Value::as_str)
            .map(str::to_string)
    };
    let name = text(v, "domain").ok_or("the compiled configuration has no domain")?;
    let mut limits = Vec::new();
    let entries = v.get("descriptors").and_then(|d| d.as_sequence());
    for d in entries.into_iter().flatten() {
        let (Some(key), Some(limit)) = (text(d, "key"), d.get("rate_limit")) else {
            continue;
        };
        let period = match text(limit, "unit").as_deref() {
            Some("second") => 1,
            Some("minute") => 60,
            Some("hour") => 3600,
            Some("day") => 86_400,
            other => return Err(format!("{name}: descriptor {key}: unit {other:?}")),
        };
        let requests = limit.get("requests_per_unit").and_then(|r| r.as_u64());
        limits.push(Limit {
            value: text(d, "value"),
            key,
            period,
            requests: requests.unwrap_or(0),
        });
    }
    let yaml = serde_norway::to_string(v).map_err(|e| format!("{name}: {e}"))?;
    Ok(Domain { name, yaml, limits })
}

fn describe_request(d: &Domain) -> String {
    let parts: Vec<String> = d
        .limits
        .iter()
        .map(|l| match &l.value {
            Some(v) => format!("[{}={v}]", l.key),
            None => format!("[{}=<per user>]", l.key),
        })
        .collect();
    format!(
        "domain {}, {} descriptors {} (compiled from {POLICY})",
        d.name,
        parts.len(),
        parts.join(" ")
    )
}

// ---------------------------------------------------------------------------------------------
// The service in a child process.

/// This binary re-executed as the service; stops when its stdin closes.
struct ServiceChild {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    grpc_addr: String,
}

impl ServiceChild {
    fn start(config: &Path, redis_url: &str) -> Result<ServiceChild> {
        let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
        let mut child = Command::new(exe)
            .arg(CHILD)
            .arg(config)
            .arg(redis_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the service: {e}"))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("the service's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the service's address: {e}"))?;
        let grpc_addr = line
            .trim()
            .strip_prefix("grpc ")
            .map(|a| format!("http://{a}"))
            .ok_or("the service did not start (its error is above)")?;
        Ok(ServiceChild {
            child,
            stdin,
            pid,
            grpc_addr,
        })
    }
}

impl Drop for ServiceChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve-child CONFIG_DIR REDIS_URL`: the service as `weir ratelimit` runs it (the same
/// runtime: multi-thread, 2 workers; failure mode deny, as the policy says), printing
/// `grpc <addr>` once serving, until stdin closes.
fn serve_child(args: &[String]) -> Result<()> {
    let [config, redis_url] = args else {
        return Err(format!("expected {CHILD} CONFIG_DIR REDIS_URL"));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let any = "127.0.0.1:0".parse().map_err(|e| format!("address: {e}"))?;
        let mut settings = Settings::new(
            vec![PathBuf::from(config)],
            any,
            redis_url.clone(),
            FailureMode::Deny,
        );
        settings.metrics_listen = Some(any);
        let running = weir_ratelimit::start(settings, Arc::new(SystemClock))
            .await
            .map_err(|e| e.to_string())?;
        let mut out = std::io::stdout();
        writeln!(out, "grpc {}", running.grpc_addr)
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        running
            .run_until(stdin_closed)
            .await
            .map_err(|e| e.to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// Which values the per-user descriptors carry.
#[derive(Debug, Clone, Copy)]
enum Keys {
    /// Every request the same user and address.
    Hot,
    /// Users cycled; each its own API key and address.
    Many(u64),
    /// A new API key each request, all from one address (the memory run).
    Distinct,
}

impl Keys {
    fn label(self) -> String {
        match self {
            Keys::Hot => "1 hot key".into(),
            Keys::Many(n) => format!("{n} users"),
            Keys::Distinct => "distinct API keys".into(),
        }
    }
}

/// The request of the policy: one descriptor per configured entry, its value fixed when the
/// entry names one, else the user's (an address for `remote_address`, an API key otherwise).
#[derive(Debug, Clone)]
struct Shape {
    domain: Domain,
    keys: Keys,
}

impl Shape {
    fn new(domain: &Domain, keys: Keys) -> Shape {
        Shape {
            domain: domain.clone(),
            keys,
        }
    }

    /// Request `i`'s descriptors, one `(key, value)` per configured entry.
    fn descriptors(&self, i: u64) -> Vec<(String, String)> {
        self.domain
            .limits
            .iter()
            .map(|Limit { key, value, .. }| {
                let value = value.clone().unwrap_or_else(|| {
                    let address = key == "remote_address";
                    let user = match self.keys {
                        Keys::Hot => 0,
                        Keys::Many(n) => i % n.max(1),
                        Keys::Distinct if address => 0,
                        Keys::Distinct => i,
                    };
                    if address {
                        format!(
                            "10.{}.{}.{}",
                            (user >> 16) & 255,
                            (user >> 8) & 255,
                            user & 255
                        )
                    } else {
                        format!("key-{user:07}")
                    }
                });
                (key.clone(), value)
            })
            .collect()
    }

    fn request(&self, i: u64) -> RateLimitRequest {
        RateLimitRequest {
            domain: self.domain.name.clone(),
            descriptors: self
                .descriptors(i)
                .into_iter()
                .map(|(key, value)| RateLimitDescriptor {
                    entries: vec![Entry { key, value }],
                    ..Default::default()
                })
                .collect(),
            hits_addend: 0,
        }
    }
}

type Client = RateLimitServiceClient<Channel>;

/// `n` clients, each on its own HTTP/2 connection.
async fn connect(addr: &str, n: usize) -> Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = Channel::from_shared(addr.to_string())
            .map_err(|e| format!("{addr}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("connecting to the service at {addr}: {e}"))?;
        clients.push(RateLimitServiceClient::new(channel));
    }
    Ok(clients)
}

/// One decision over gRPC: whether it was over the limit.
fn grpc_op(
    clients: Vec<Client>,
    shape: Shape,
) -> impl Fn(usize, u64) -> Decision + Clone + Send + 'static {
    let clients = Arc::new(clients);
    let shape = Arc::new(shape);
    move |worker, i| {
        let mut client = clients[worker % clients.len()].clone();
        let request = shape.request(i);
        Box::pin(async move {
            client
                .should_rate_limit(request)
                .await
                .map(|r| r.into_inner().overall_code == Code::OverLimit as i32)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }
}

/// One decision without gRPC: the counters the service raises for the request (its key
/// format, its windows), raised by the service's own [`Counter`] — one `MULTI`, an `INCRBY`
/// and an `EXPIRE` per descriptor, `EXEC` — straight to Redis.
fn direct_op(
    counter: Arc<Counter>,
    shape: Shape,
) -> impl Fn(usize, u64) -> Decision + Clone + Send + 'static {
    let shape = Arc::new(shape);
    move |_, i| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut hits = Vec::new();
        let mut caps = Vec::new();
        let descriptors = shape.descriptors(i);
        for ((k, v), limit) in descriptors.iter().zip(&shape.domain.limits) {
            let (start, _) = window(now, limit.period);
            let key = counter_key(&shape.domain.name, &[(k.as_str(), v.as_str())]);
            hits.push(Hit {
                key: format!("{key}{start}"),
                hits: 1,
                ttl: limit.period,
            });
            caps.push(limit.requests);
        }
        let counter = counter.clone();
        Box::pin(async move {
            let counts = counter.raise(&hits).await.map_err(|e| e.to_string())?;
            Ok(counts.iter().zip(&caps).any(|(c, cap)| c > cap))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The closed loop.

#[derive(Debug, Clone, Copy)]
struct Pids {
    /// `None` while the service idles (its CPU is not reported).
    service: Option<u32>,
    redis: u32,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Warm up, then measure for the plan's window.
    Window,
    /// No warm-up; requests `from..to` (request index = distinct key in the memory run).
    Count { from: u64, to: u64 },
}

struct Outcome {
    seconds: f64,
    histogram: Histogram<u64>,
    decisions: u64,
    over_limit: u64,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
}

impl Outcome {
    fn into_result(self, path: &str, keys: Keys, in_flight: usize) -> RunResult {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1e6;
        RunResult {
            path: path.to_string(),
            keys: keys.label(),
            in_flight,
            seconds: self.seconds,
            decisions: self.decisions,
            per_second: self.decisions as f64 / self.seconds.max(1e-9),
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.histogram.max() as f64 / 1e6,
            over_limit: self.over_limit,
            errors: self.errors,
            first_error: self.first_error,
            cpu: self.cpu,
        }
    }
}

struct WorkerTally {
    histogram: Histogram<u64>,
    decisions: u64,
    over_limit: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_histogram() -> Result<Histogram<u64>> {
    // Nanoseconds, 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

/// Runs `in_flight` workers, each sending its next request as soon as the last is answered;
/// latency is recorded for requests started inside the measured window.
async fn drive<F>(plan: &Plan, in_flight: usize, stop: Stop, pids: Pids, op: F) -> Result<Outcome>
where
    F: Fn(usize, u64) -> Decision + Clone + Send + 'static,
{
    let start = Instant::now();
    let (measure_from, until, first) = match stop {
        Stop::Window => {
            let from = start + Duration::from_secs_f64(plan.warmup_s);
            (from, Some(from + Duration::from_secs_f64(plan.window_s)), 0)
        }
        Stop::Count { from, .. } => (start, None, from),
    };
    let last = match stop {
        Stop::Count { to, .. } => to,
        Stop::Window => u64::MAX,
    };
    let next = Arc::new(AtomicU64::new(first));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let op = op.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut t = WorkerTally {
                histogram: new_histogram()?,
                decisions: 0,
                over_limit: 0,
                errors: 0,
                first_error: None,
            };
            loop {
                let t0 = Instant::now();
                if until.is_some_and(|u| t0 >= u) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= last {
                    break;
                }
                let r = op(w, i).await;
                if t0 < measure_from {
                    continue;
                }
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                t.histogram.saturating_record(ns.max(1));
                t.decisions += 1;
                match r {
                    Ok(true) => t.over_limit += 1,
                    Ok(false) => {}
                    Err(e) => {
                        t.errors += 1;
                        t.first_error.get_or_insert(e);
                    }
                }
            }
            Ok::<_, String>(t)
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = CpuSample::take(pids);
    let measured_start = Instant::now();
    let mut histogram = new_histogram()?;
    let (mut decisions, mut over_limit, mut errors, mut first_error) = (0, 0, 0, None);
    while let Some(joined) = workers.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(t) => {
                let _ = histogram.add(&t.histogram);
                decisions += t.decisions;
                over_limit += t.over_limit;
                errors += t.errors;
                if first_error.is_none() {
                    first_error = t.first_error;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let seconds = match until {
        Some(_) => plan.window_s,
        None => measured_start.elapsed().as_secs_f64(),
    };
    let after = CpuSample::take(pids);
    Ok(Outcome {
        seconds,
        histogram,
        decisions,
        over_limit,
        errors,
        first_error,
        cpu: before.percent_until(&after),
    })
}

// ---------------------------------------------------------------------------------------------
// Memory at many distinct keys.

async fn fill_memory(
    plan: &Plan,
    clients: &[Client],
    redis_url: &str,
    hourly: &Domain,
    service: &ServiceChild,
    rss_at_start: Option<u64>,
) -> Result<Memory> {
    redis_query::<()>(redis_url, redis::cmd("FLUSHALL")).await?;
    let used_before = redis_info_number(redis_url, "memory", "used_memory").await?;
    let dbsize_before = redis_query::<u64>(redis_url, redis::cmd("DBSIZE")).await?;
    let mut rss = vec![(0, proc_status_kib(service.pid, "VmRSS"))];
    let shape = Shape::new(hourly, Keys::Distinct);
    let pids = Pids {
        service: Some(service.pid),
        redis: 0,
    };
    let quarter = plan.memory_keys.div_ceil(4);
    let (mut seconds, mut errors) = (0.0, 0);
    let mut from = 0;
    while from < plan.memory_keys {
        let to = (from + quarter).min(plan.memory_keys);
        let op = grpc_op(clients.to_vec(), shape.clone());
        let o = drive(
            plan,
            plan.memory_in_flight,
            Stop::Count { from, to },
            pids,
            op,
        )
        .await?;
        seconds += o.seconds;
        errors += o.errors;
        rss.push((to, proc_status_kib(service.pid, "VmRSS")));
        eprintln!(
            "bench: memory, {to} keys, service VmRSS {} KiB",
            rss.last()
                .and_then(|r| r.1)
                .map_or("?".into(), |k| k.to_string())
        );
        from = to;
    }
    let used_after = redis_info_number(redis_url, "memory", "used_memory").await?;
    let dbsize_after = redis_query::<u64>(redis_url, redis::cmd("DBSIZE")).await?;
    Ok(Memory {
        keys_driven: plan.memory_keys,
        in_flight: plan.memory_in_flight,
        seconds,
        per_second: plan.memory_keys as f64 / seconds.max(1e-9),
        errors,
        dbsize_before,
        dbsize_after,
        used_memory_before: used_before,
        used_memory_after: used_after,
        redis_bytes_per_key: used_after.saturating_sub(used_before) as f64
            / dbsize_after.saturating_sub(dbsize_before).max(1) as f64,
        service_rss_kib_at_start: rss_at_start,
        service_rss_kib: rss,
        service_hwm_kib: proc_status_kib(service.pid, "VmHWM"),
    })
}

async fn redis_query<T: redis::FromRedisValue>(url: &str, cmd: redis::Cmd) -> Result<T> {
    let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
    // FLUSHALL of the earlier runs' keys can take longer than the client's 500 ms default.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    cmd.query_async::<T>(&mut conn)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// One field of `INFO <section>`.
async fn redis_info(url: &str, section: &str, field: &str) -> Result<String> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg(section);
    let text = redis_query::<String>(url, cmd).await?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .ok_or(format!("INFO {section} has no {field}"))?
        .trim()
        .to_string();
    Ok(value)
}

/// A numeric field of `INFO <section>`.
async fn redis_info_number(url: &str, section: &str, field: &str) -> Result<u64> {
    let v = redis_info(url, section, field).await?;
    v.parse()
        .map_err(|e| format!("INFO {section} {field} {v:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark: Redis's own limit.

fn run_redis_benchmark(
    bin: &Path,
    plan: &Plan,
    redis: &Redis,
    domain: &Domain,
) -> Result<Vec<BenchRow>> {
    // The decision's counters, with redis-benchmark's random placeholder for the per-user
    // values (-r: that many distinct values, like the "many users" runs).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut keys = Vec::new();
    let mut ttl = 60;
    for l in &domain.limits {
        let value = l.value.clone().unwrap_or_else(|| "__rand_int__".into());
        ttl = l.period;
        let (start, _) = window(now, l.period);
        keys.push(format!(
            "{}{start}",
            counter_key(&domain.name, &[(l.key.as_str(), value.as_str())])
        ));
    }
    let per_user = keys
        .iter()
        .find(|k| k.contains("__rand_int__"))
        .cloned()
        .unwrap_or_else(|| "bench:__rand_int__".into());
    let script = "for _, k in ipairs(KEYS) do redis.call('INCRBY', k, ARGV[1]) \
                  redis.call('EXPIRE', k, ARGV[2]) end return 0";
    let mut eval = vec![
        "EVAL".to_string(),
        script.to_string(),
        keys.len().to_string(),
    ];
    eval.extend(keys.iter().cloned());
    eval.extend(["1".to_string(), ttl.to_string()]);
    let incrby = vec!["INCRBY".to_string(), per_user, "1".to_string()];
    let commands = [
        (
            format!(
                "EVAL: the decision's {} INCRBY + EXPIRE in one call",
                keys.len()
            ),
            eval,
        ),
        ("INCRBY: one counter, no EXPIRE".to_string(), incrby),
    ];
    let pids = Pids {
        service: None,
        redis: redis.pid().unwrap_or(0),
    };
    let mut rows = Vec::new();
    for (what, command) in &commands {
        for &clients in &plan.in_flight {
            eprintln!("bench: redis-benchmark {}, {clients} clients", command[0]);
            let before = CpuSample::take(pids);
            let out = Command::new(bin)
                .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
                .args(["-c", &clients.to_string()])
                .args(["-n", &plan.redis_benchmark_requests.to_string()])
                .args(["-r", &plan.many_users.to_string(), "--csv"])
                .args(command)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running redis-benchmark: {e}"))?;
            let after = CpuSample::take(pids);
            let text = String::from_utf8_lossy(&out.stdout);
            let row = parse_redis_benchmark_csv(&text).ok_or(format!(
                "redis-benchmark printed no result: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            ))?;
            rows.push(BenchRow {
                what: what.clone(),
                command: command.join(" "),
                clients,
                requests: plan.redis_benchmark_requests,
                per_second: row[0],
                p50_ms: row[1],
                p99_ms: row[2],
                max_ms: row[3],
                cpu: before.percent_until(&after),
            });
        }
    }
    Ok(rows)
}

/// `rps`, `p50`, `p99`, `max` from redis-benchmark's `--csv` output.
fn parse_redis_benchmark_csv(text: &str) -> Option<[f64; 4]> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = split_csv(lines.next()?);
    let values: Vec<String> = split_csv(lines.next()?);
    let get = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| h == name)?;
        values.get(i)?.parse().ok()
    };
    Some([
        get("rps")?,
        get("p50_latency_ms")?,
        get("p99_latency_ms")?,
        get("max_latency_ms")?,
    ])
}

/// Splits one CSV line of quoted fields (redis-benchmark quotes every field; a command may
/// contain commas, never quotes).
fn split_csv(line: &str) -> Vec<String> {
    line.split("\",\"")
        .map(|f| f.trim_matches('"').to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The machine: pinning, /proc.

fn pin_this_thread(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("pinning to CPU {cpu}: {e}"))
}

/// A field of `/proc/<pid>/status`.
fn proc_status(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM), in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_status(pid, field)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of a process and of the children it waited for, in clock ticks
/// (`/proc/<pid>/stat` fields 14 to 17).
fn cpu_ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let times = after_name.split_whitespace().skip(11).take(4);
    times.map(|t| t.parse::<u64>().ok()).sum()
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

/// CPU use over a window, in percent of one core: the service, Redis, the load generator
/// (this process and the children it waited for, i.e. redis-benchmark), and every other
/// process on the machine (all busy time in `/proc/stat` minus those), which shows when
/// something else disturbed a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct CpuUse {
    service: Option<f64>,
    redis: Option<f64>,
    load_generator: Option<f64>,
    others: Option<f64>,
}

/// CPU ticks of the service, Redis, this process and the machine at one instant.
struct CpuSample {
    at: Instant,
    service: Option<u64>,
    redis: Option<u64>,
    this: Option<u64>,
    busy: Option<u64>,
}

impl CpuSample {
    fn take(pids: Pids) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            service: pids.service.and_then(cpu_ticks_of),
            redis: cpu_ticks_of(pids.redis),
            this: cpu_ticks_of(std::process::id()),
            busy: machine_busy_ticks(),
        }
    }

    fn percent_until(&self, later: &CpuSample) -> CpuUse {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let hz = ticks_per_second();
        let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
        let pct = |t: Option<u64>| t.map(|t| t as f64 / hz / secs * 100.0);
        let service = delta(self.service, later.service);
        let redis = delta(self.redis, later.redis);
        let this = delta(self.this, later.this);
        let ours = service.unwrap_or(0) + redis.unwrap_or(0) + this.unwrap_or(0);
        CpuUse {
            service: pct(service),
            redis: pct(redis),
            load_generator: pct(this),
            others: pct(delta(self.busy, later.busy).map(|b| b.saturating_sub(ours))),
        }
    }
}

/// Busy ticks of all CPUs together (`/proc/stat`: user, nice, system, irq, softirq, steal).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The first line a command prints, or `?`.
fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Markdown.

fn ms(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

fn cpu(c: &CpuUse) -> String {
    format!(
        "{} / {} / {} / {}",
        pct(c.service),
        pct(c.redis),
        pct(c.load_generator),
        pct(c.others)
    )
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1_048_576.0)
}

/// A Markdown table: the first `left` columns left-aligned, the rest right-aligned.
fn table(s: &mut String, header: &[&str], left: usize, rows: &[Vec<String>]) {
    s.push_str(&format!("| {} |\n|", header.join(" | ")));
    for i in 0..header.len() {
        s.push_str(if i < left { "---|" } else { "---:|" });
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
}

fn render(r: &Report, took: Duration) -> String {
    let mut s = String::new();
    let kind = if r.plan.short { "short" } else { "full" };
    s.push_str(&format!(
        "## `weir ratelimit` benchmark ({kind} run, {:.0} s)\n\n",
        took.as_secs_f64()
    ));
    s.push_str(&format!(
        "{}, commit {}, {} CPUs ({}), Redis {}.\n\n",
        r.date, r.commit, r.machine.cpus, r.machine.cpu_model, r.machine.redis_version
    ));
    s.push_str("Pinning (`Cpus_allowed_list` read back from `/proc/<pid>/status`):\n\n");
    for (what, pid, cpus) in &r.machine.pinning {
        s.push_str(&format!("- {what}, pid {pid}: CPU {cpus}\n"));
    }
    s.push_str(&format!(
        "\nRequest: {}. Closed loop, {} HTTP/2 connections, {:.1} s warm-up then {:.1} s measured \
         per row.\n\n",
        r.request, r.plan.connections, r.plan.warmup_s, r.plan.window_s
    ));

    s.push_str("### Decisions\n\n");
    s.push_str(
        "`service`: over gRPC to the service (service + Redis on one core). `no gRPC`: the same \
         counters raised straight in Redis by the service's own `Counter` (Redis alone on its \
         core). CPU: percent of one core over the window, for the service, Redis, the load \
         generator and every other process on the machine.\n\n",
    );
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|x| {
            vec![
                x.path.clone(),
                x.keys.clone(),
                x.in_flight.to_string(),
                format!("{:.0}", x.per_second),
                ms(x.p50_ms),
                ms(x.p99_ms),
                ms(x.p999_ms),
                ms(x.max_ms),
                format!(
                    "{:.0}%",
                    x.over_limit as f64 * 100.0 / x.decisions.max(1) as f64
                ),
                x.errors.to_string(),
                cpu(&x.cpu),
            ]
        })
        .collect();
    table(
        &mut s,
        &[
            "path",
            "keys",
            "in flight",
            "decisions/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "over limit",
            "errors",
            "CPU % service / Redis / load gen / others",
        ],
        2,
        &rows,
    );

    if !r.redis_benchmark.is_empty() {
        s.push_str("\n### Redis's own limit: `redis-benchmark`, Redis alone on its core\n\n");
        s.push_str(&format!(
            "{} requests per row, `-r {}` random values. redis-benchmark reports no p99.9.\n\n",
            r.plan.redis_benchmark_requests, r.plan.many_users
        ));
        let rows: Vec<Vec<String>> = r
            .redis_benchmark
            .iter()
            .map(|b| {
                vec![
                    b.what.clone(),
                    b.clients.to_string(),
                    format!("{:.0}", b.per_second),
                    ms(b.p50_ms),
                    ms(b.p99_ms),
                    ms(b.max_ms),
                    format!(
                        "{} / {} / {}",
                        pct(b.cpu.redis),
                        pct(b.cpu.load_generator),
                        pct(b.cpu.others)
                    ),
                ]
            })
            .collect();
        let header = [
            "command",
            "clients",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU % Redis / redis-benchmark / others",
        ];
        table(&mut s, &header, 1, &rows);
    }

    s.push_str("\n### Side by side (many users)\n\n");
    let rate = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
    let lat = |v: Option<f64>| v.map_or("—".into(), ms);
    let rows: Vec<Vec<String>> = r
        .plan
        .in_flight
        .iter()
        .map(|&n| {
            let run = |path: &str| {
                r.runs
                    .iter()
                    .find(|x| x.path == path && x.in_flight == n && x.keys.ends_with("users"))
            };
            let bench = |cmd: &str| {
                r.redis_benchmark
                    .iter()
                    .find(|b| b.clients == n && b.command.starts_with(cmd))
            };
            vec![
                n.to_string(),
                rate(run("service").map(|x| x.per_second)),
                rate(run("no gRPC").map(|x| x.per_second)),
                rate(bench("EVAL").map(|b| b.per_second)),
                rate(bench("INCRBY").map(|b| b.per_second)),
                lat(run("service").map(|x| x.p99_ms)),
                lat(run("no gRPC").map(|x| x.p99_ms)),
                lat(bench("EVAL").map(|b| b.p99_ms)),
            ]
        })
        .collect();
    let header = [
        "in flight",
        "service decisions/s",
        "no gRPC decisions/s",
        "redis-benchmark EVAL/s",
        "redis-benchmark INCRBY/s",
        "service p99 ms",
        "no gRPC p99 ms",
        "EVAL p99 ms",
    ];
    table(&mut s, &header, 0, &rows);

    if let Some(m) = &r.memory {
        render_memory(&mut s, m);
    }
    if !r.notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in &r.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    s
}

fn render_memory(s: &mut String, m: &Memory) {
    s.push_str(&format!(
        "\n### Memory at {} distinct keys\n\n",
        m.keys_driven
    ));
    s.push_str(&format!(
        "{} requests through the service, {} in flight, each a new API key from one client \
         address, the policy's limits counted per hour: {:.0} s, {:.0} decisions/s, {} errors.\n\n",
        m.keys_driven, m.in_flight, m.seconds, m.per_second, m.errors
    ));
    let kib = |k: Option<u64>| k.map_or("?".into(), |k| mib(k as f64 * 1024.0));
    let first = m.service_rss_kib.first().and_then(|r| r.1);
    let last = m.service_rss_kib.last().and_then(|r| r.1);
    let rows = [
        vec![
            "Redis DBSIZE".to_string(),
            m.dbsize_before.to_string(),
            m.dbsize_after.to_string(),
        ],
        vec![
            "Redis used_memory".to_string(),
            mib(m.used_memory_before as f64),
            mib(m.used_memory_after as f64),
        ],
        vec!["service VmRSS".to_string(), kib(first), kib(last)],
    ];
    table(s, &["", "before", "after"], 1, &rows);
    s.push_str(&format!(
        "\nRedis: {:.0} bytes per key. Service VmRSS at start (before any request) {}; \
         after 0/25/50/75/100% of the keys: {}; VmHWM {}.\n",
        m.redis_bytes_per_key,
        kib(m.service_rss_kib_at_start),
        m.service_rss_kib
            .iter()
            .map(|(_, k)| kib(*k))
            .collect::<Vec<_>>()
            .join(" / "),
        kib(m.service_hwm_kib)
    ));
}
