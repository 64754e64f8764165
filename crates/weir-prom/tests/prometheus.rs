//! `PromSource` against a real Prometheus (the Debian `prometheus` package), scraping a tiny
//! metrics endpoint this test serves and controls.
//!
//! One Prometheus for the whole binary: a single test walks through the scenarios in order.
//! Everything listens on 127.0.0.1 only, every wait is bounded, and the child is killed on
//! drop. Nothing asserts how long anything took: each step waits for its outcome, with a
//! deadline ([`WAIT`]) a loaded machine meets many times over; how fast a query fails is the
//! timeout's business (`a_silent_prometheus_times_out` in `src/source.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_core::{Observation, Unknown};
use weir_edge::Source;
use weir_prom::{ProbeValues, PromConfig, PromSource, ReplicaTarget, SignalId};

/// The longest any outcome here may take: Prometheus starts in about a second and scrapes
/// every second, so this only ever matters on a machine stalled far beyond that.
const WAIT: Duration = Duration::from_secs(90);

/// The exposition the fake exporter serves, one series per key, so a test can drop some.
type Exposition = Arc<Mutex<BTreeMap<String, f64>>>;

/// Serves `GET /metrics` (any path, really) in the text format from `exposition`.
async fn serve_metrics(listener: TcpListener, exposition: Exposition) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let exposition = exposition.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body: String = exposition
                .lock()
                .unwrap()
                .iter()
                .map(|(series, value)| format!("{series} {}\n", fmt_value(*value)))
                .collect();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

/// A Prometheus child process, killed on drop.
struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

fn prometheus_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("prometheus"))
        .chain([PathBuf::from("/usr/bin/prometheus")]);
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "`prometheus` is not installed, and this test needs a real one. \
         Run `cargo xtask test` (it installs the Debian package `prometheus`), \
         or `apt-get install -y prometheus`."
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_prometheus(binary: &Path, metrics_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: mysql\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
    let mut prom = Prometheus {
        child: Some(child),
        port,
        dir,
    };
    let client = reqwest::Client::new();
    let ready = format!("{}/-/ready", prom.url());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(&ready).send().await
            && r.status().is_success()
        {
            return prom;
        }
        if let Some(status) = prom
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("prometheus exited with {status}:\n{}", prom.log());
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready after {WAIT:?}:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Observes until `done` holds (checking `invariant` on every observation), at most [`WAIT`].
async fn observe_until<F, Fut>(
    src: &mut PromSource,
    what: &str,
    mut invariant: impl FnMut(&Observation),
    mut done: F,
) -> Observation
where
    F: FnMut(&Observation) -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(obs) = src.observe(1.0).await {
            invariant(&obs);
            if done(&obs).await {
                return obs;
            }
            last = Some(obs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached within {WAIT:?}; last observation: {last:#?}");
}

fn set_replica(exp: &Exposition, instance: &str, lag_s: f64) {
    let mut e = exp.lock().unwrap();
    let l = format!("instance=\"{instance}\",server_id=\"1\"");
    e.insert(
        format!("mysql_heartbeat_now_timestamp_seconds{{{l}}}"),
        1_700_000_100.0,
    );
    e.insert(
        format!("mysql_heartbeat_stored_timestamp_seconds{{{l}}}"),
        1_700_000_100.0 - lag_s,
    );
    e.insert(format!("mysql_up{{instance=\"{instance}\"}}"), 1.0);
    e.insert(
        format!("mysql_global_status_commands_total{{command=\"select\",instance=\"{instance}\"}}"),
        1000.0,
    );
    for le in ["5", "50", "+Inf"] {
        e.insert(
            format!(
                "istio_request_duration_milliseconds_bucket{{destination_workload=\"mysql-{instance}\",le=\"{le}\"}}"
            ),
            10.0,
        );
    }
}

fn remove_replica(exp: &Exposition, instance: &str) {
    let needle = format!("\"{instance}\"");
    let workload = format!("\"mysql-{instance}\"");
    exp.lock()
        .unwrap()
        .retain(|k, _| !k.contains(&needle) && !k.contains(&workload));
}

fn exposition() -> Exposition {
    let exp: Exposition = Arc::default();
    {
        let mut e = exp.lock().unwrap();
        // The primary: its own heartbeat row (matches no replica), statements, host CPU.
        let p = r#"instance="primary",role="primary""#;
        e.insert(
            format!("mysql_heartbeat_now_timestamp_seconds{{{p},server_id=\"1\"}}"),
            1_700_000_100.0,
        );
        e.insert(
            format!("mysql_heartbeat_stored_timestamp_seconds{{{p},server_id=\"1\"}}"),
            1_700_000_099.8,
        );
        e.insert(format!("mysql_up{{{p}}}"), 1.0);
        for cmd in ["select", "insert", "update", "delete"] {
            e.insert(
                format!("mysql_global_status_commands_total{{{p},command=\"{cmd}\"}}"),
                500.0,
            );
        }
        for cpu in ["0", "1"] {
            e.insert(
                format!("node_cpu_seconds_total{{{p},cpu=\"{cpu}\",mode=\"idle\"}}"),
                10_000.0,
            );
        }
    }
    set_replica(&exp, "replica-1", 1.5);
    set_replica(&exp, "replica-2", 7.0);
    exp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prom_source_against_real_prometheus() {
    let binary = prometheus_binary();
    let exp = exposition();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_metrics(listener, exp.clone()));
    let mut prom = start_prometheus(&binary, metrics_port).await;

    let mut replicas = vec![
        ReplicaTarget::new("r1", "replica-1"),
        ReplicaTarget::new("r2", "replica-2"),
    ];
    for r in &mut replicas {
        let workload = format!("mysql-{}", r.label_value);
        r.labels.insert("destination_workload".into(), workload);
    }
    let mut config = PromConfig::new(prom.url(), replicas);
    // Fractional seconds on purpose: Prometheus must accept how they are sent.
    config.timeout_s = 1.5;
    config.max_sample_age_s = 30.5;
    let mut src = PromSource::new(config).unwrap();

    // 1. Both replicas' heartbeat lag, through the default queries. Rates need two scrapes.
    let never_zero_lag = |obs: &Observation| {
        for r in &obs.replicas {
            assert_ne!(
                r.lag_s.value,
                Some(0.0),
                "{} read as 0 lag: {obs:#?}",
                r.name
            );
        }
    };
    let obs = observe_until(&mut src, "both lags and rates known", never_zero_lag, |o| {
        let ok = o.replicas.iter().all(|r| r.lag_s.value.is_some())
            && o.primary.write_qps.value.is_some()
            && o.primary.cpu.value.is_some();
        async move { ok }
    })
    .await;
    let lag = |o: &Observation, i: usize| o.replicas[i].lag_s.value;
    assert!((lag(&obs, 0).unwrap() - 1.5).abs() < 1e-6, "{obs:#?}");
    assert!((lag(&obs, 1).unwrap() - 7.0).abs() < 1e-6, "{obs:#?}");
    assert_eq!(obs.replicas[0].up, Some(true));
    assert_eq!(obs.replicas[1].read_qps.value, Some(0.0));
    assert_eq!(obs.primary.write_qps.value, Some(0.0));
    // Idle counters frozen: rate 0, so CPU "1 - idle" reads 1.
    assert_eq!(obs.primary.cpu.value, Some(1.0));
    // Flat histograms: Prometheus answers NaN, which must be unknown, not 0.
    assert_eq!(
        obs.replicas[0].read_p99_ms.unknown,
        Some(Unknown::NotANumber)
    );
    // No primary Istio histogram at all: an empty vector.
    assert_eq!(obs.primary.read_p99_ms.unknown, Some(Unknown::NoSeries));

    // `probe` shows per-replica values and the series that matched no replica.
    let reports = src.probe().await;
    assert_eq!(reports.len(), 8);
    let lag_report = reports
        .iter()
        .find(|r| r.signal == SignalId::ReplicaLagS)
        .unwrap();
    assert!(lag_report.eval_ts.is_some_and(|t| t > 1.0e9));
    let Ok(ProbeValues::Replicas {
        per_replica,
        unmatched,
    }) = &lag_report.result
    else {
        panic!("{lag_report:#?}");
    };
    assert_eq!(per_replica[1].0, "r2");
    assert_eq!(unmatched, &vec!["primary".to_owned()]);

    // 2. replica-2's exporter stops exposing its series: unknown (NoSeries), never 0.
    remove_replica(&exp, "replica-2");
    let obs = observe_until(&mut src, "replica-2 NoSeries", never_zero_lag, |o| {
        let gone = o.replicas[1].lag_s.unknown == Some(Unknown::NoSeries);
        async move { gone }
    })
    .await;
    assert_eq!(obs.replicas[1].lag_s.value, None);
    assert_eq!(obs.replicas[1].up, None);
    assert!((lag(&obs, 0).unwrap() - 1.5).abs() < 1e-6, "{obs:#?}");

    // 3. mysqld on replica-2 down: the exporter says mysql_up 0 and nothing else.
    exp.lock()
        .unwrap()
        .insert(r#"mysql_up{instance="replica-2"}"#.into(), 0.0);
    let obs = observe_until(&mut src, "replica-2 down", never_zero_lag, |o| {
        let down = o.replicas[1].up == Some(false);
        async move { down }
    })
    .await;
    assert_eq!(obs.replicas[1].lag_s.unknown, Some(Unknown::TargetDown));

    // 4. Prometheus gone: the observation is an `unreachable` error (not a blank
    // observation, not a hang), so the controller holds. A refused connection fails at once;
    // the deadline only turns a hang into a failure. Which error depends on timing: a new
    // connection is refused, while a request that went out on the pooled keep-alive connection
    // as the process died finds it closed. Both are Prometheus gone, and both say so.
    prom.kill();
    let err = tokio::time::timeout(WAIT, src.observe(2.0))
        .await
        .unwrap_or_else(|_| panic!("observe did not return within {WAIT:?} of Prometheus dying"))
        .unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Connection refused")
            || text.contains("connection closed before message completed"),
        "{err}"
    );
}
