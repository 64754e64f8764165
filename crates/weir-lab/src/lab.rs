//! Bring-up and teardown of the whole lab on 127.0.0.1: three `mariadbd`, one
//! `prometheus-mysqld-exporter` per server, `haproxy` with the read backend and an admin
//! socket, `prometheus` scraping all of it (and Weir) every second, the heartbeat writer and
//! the lab's own `/metrics`. Everything started is recorded in the run directory's state
//! file and stopped by [`Lab::down`] (or by the next `up` after a crash); a network cut this
//! lab left on `lo` is removed the same way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;
use weir_haproxy::{RuntimeAddress, RuntimeApi};

use crate::cluster::{self, CHECK_USER, EXPORTER_USER};
use crate::layout::{BACKEND, Layout, SERVERS};
use crate::metrics::{self, LabMetrics};
use crate::procs::{self, Registry, find_binary, write_atomic};

/// Knobs of the bring-up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Prometheus scrape (and rule evaluation) interval, seconds.
    pub scrape_interval_s: f64,
    /// Heartbeat writes on the primary, milliseconds apart.
    pub heartbeat_ms: u64,
    /// HAProxy's initial weights (primary, replica-1, replica-2).
    pub initial_weights: [u32; 3],
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            scrape_interval_s: 1.0,
            heartbeat_ms: 250,
            // Weir's baseline and the usual static setup: reads on the replicas only.
            initial_weights: [0, 50, 50],
        }
    }
}

/// A running lab.
pub struct Lab {
    /// Ports and paths.
    pub layout: Layout,
    /// The lab's own metrics (the load generator records into them).
    pub metrics: Arc<LabMetrics>,
    registry: Registry,
    mariadb: Vec<Option<Child>>,
    prometheus: Option<Child>,
    haproxy_proc: Option<Child>,
    others: Vec<Child>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    background: Vec<JoinHandle<()>>,
    haproxy: RuntimeApi,
}

impl Lab {
    /// Stops whatever an earlier lab in `layout.dir` left running, checks the ports, and
    /// starts everything. With `fresh`, data directories are recreated.
    pub async fn up(layout: Layout, opts: &LabOptions, fresh: bool) -> Result<Lab> {
        std::fs::create_dir_all(&layout.dir)
            .with_context(|| format!("creating {}", layout.dir.display()))?;
        let mut registry = Registry::open(&layout.state_file())?;
        let leftovers = registry.stop_all(Duration::from_secs(10))?;
        if !leftovers.is_empty() {
            eprintln!(
                "lab: stopped leftovers of an earlier run: {}",
                leftovers.join(", ")
            );
        }
        match crate::faults::clear_cut(&layout) {
            Ok(true) => eprintln!("lab: removed an earlier run's network cut from lo"),
            Ok(false) => {}
            Err(e) => eprintln!("lab: {e:#}"),
        }
        layout.check_ports_free()?;
        if fresh {
            for s in SERVERS {
                let d = layout.path(s);
                if d.exists() {
                    std::fs::remove_dir_all(&d)
                        .with_context(|| format!("removing {}", d.display()))?;
                }
            }
        }
        for s in SERVERS {
            std::fs::create_dir_all(layout.path(s))?;
        }
        let haproxy = RuntimeApi::new(
            RuntimeAddress::parse(&format!("tcp://127.0.0.1:{}", layout.haproxy_admin_port()))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            2.0,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut lab = Lab {
            metrics: LabMetrics::new(),
            registry,
            mariadb: (0..SERVERS.len()).map(|_| None).collect(),
            prometheus: None,
            haproxy_proc: None,
            others: Vec::new(),
            pids: Arc::new(Mutex::new(vec![None; SERVERS.len()])),
            background: Vec::new(),
            haproxy,
            layout,
        };
        // If anything below fails, `lab` is dropped and stops what was started.
        lab.start_mariadb(opts).await?;
        lab.start_exporters()?;
        lab.start_lab_metrics();
        lab.start_haproxy(opts)?;
        lab.start_prometheus(opts)?;
        lab.wait_healthy().await?;
        Ok(lab)
    }

    async fn start_mariadb(&mut self, opts: &LabOptions) -> Result<()> {
        for i in 0..SERVERS.len() {
            cluster::install(&self.layout, i)?;
        }
        for i in 0..SERVERS.len() {
            self.spawn_server(i)?;
        }
        let mut conns = Vec::new();
        for (i, server) in SERVERS.iter().enumerate() {
            let log = self.layout.path(format!("{server}/error.log"));
            let mut c =
                cluster::wait_ready(self.layout.mysql_port(i), Duration::from_secs(60), &log)
                    .await?;
            cluster::create_users(&mut c)
                .await
                .with_context(|| format!("users on {server}"))?;
            conns.push(c);
        }
        cluster::create_schema(&mut conns[0]).await?;
        for (i, c) in conns.iter_mut().enumerate().skip(1) {
            let host = self.layout.replication_host(i);
            cluster::start_replication(c, host, self.layout.mysql_port(0)).await?;
        }
        for c in conns {
            c.disconnect().await.ok();
        }
        let port = self.layout.mysql_port(0);
        let every = Duration::from_millis(opts.heartbeat_ms.max(50));
        self.background
            .push(tokio::spawn(cluster::heartbeat_loop(port, every)));
        cluster::wait_caught_up(&self.layout, 2.0, Duration::from_secs(60)).await?;
        Ok(())
    }

    fn spawn_server(&mut self, i: usize) -> Result<()> {
        let mut cmd = cluster::mariadbd(&self.layout, i)?;
        let log = self.layout.path(format!("{}/mariadbd.out", SERVERS[i]));
        let child = self
            .registry
            .spawn(&format!("mariadb {}", SERVERS[i]), &mut cmd, &log)?;
        if let Ok(mut p) = self.pids.lock() {
            p[i] = Some(child.id());
        }
        self.mariadb[i] = Some(child);
        Ok(())
    }

    fn start_exporters(&mut self) -> Result<()> {
        let bin = find_binary("prometheus-mysqld-exporter", "prometheus-mysqld-exporter")?;
        let (user, pw) = EXPORTER_USER;
        for (i, server) in SERVERS.iter().enumerate() {
            let cnf = self.layout.path(format!("{server}/exporter.cnf"));
            let text = format!(
                "[client]\nuser={user}\npassword={pw}\nhost=127.0.0.1\nport={}\n",
                self.layout.mysql_port(i)
            );
            write_atomic(&cnf, text.as_bytes())?;
            set_private(&cnf)?;
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.my-cnf={}", cnf.display()))
                .arg("--collect.heartbeat")
                .arg("--collect.heartbeat.utc")
                .arg(format!(
                    "--web.listen-address=127.0.0.1:{}",
                    self.layout.exporter_port(i)
                ));
            let log = self.layout.path(format!("{server}/exporter.log"));
            let child =
                self.registry
                    .spawn(&format!("mysqld_exporter {server}"), &mut cmd, &log)?;
            self.others.push(child);
        }
        Ok(())
    }

    fn start_lab_metrics(&mut self) {
        let pids = self.pids.clone();
        let f: Arc<dyn Fn() -> Vec<(String, Option<u32>)> + Send + Sync> = Arc::new(move || {
            let p = pids.lock().map(|p| p.clone()).unwrap_or_default();
            SERVERS
                .iter()
                .zip(p)
                .map(|(s, pid)| (s.to_string(), pid))
                .collect()
        });
        let (m, port) = (self.metrics.clone(), self.layout.lab_metrics_port());
        self.background.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(m, port, f, Duration::from_millis(500)).await {
                eprintln!("lab: {e:#}");
            }
        }));
    }

    fn start_haproxy(&mut self, opts: &LabOptions) -> Result<()> {
        let cfg = haproxy_config(&self.layout, opts.initial_weights);
        write_atomic(&self.layout.path("haproxy.cfg"), cfg.as_bytes())?;
        self.spawn_haproxy(false)
    }

    /// Starts HAProxy from the config file `start_haproxy` wrote (its weights are the file's).
    /// A restart (`append`) keeps the log of the run before it.
    fn spawn_haproxy(&mut self, append: bool) -> Result<()> {
        let mut cmd = haproxy_command(&self.layout)?;
        let log = self.layout.path("haproxy.log");
        let child = if append {
            self.registry.spawn_appending("haproxy", &mut cmd, &log)?
        } else {
            self.registry.spawn("haproxy", &mut cmd, &log)?
        };
        self.haproxy_proc = Some(child);
        Ok(())
    }

    fn start_prometheus(&mut self, opts: &LabOptions) -> Result<()> {
        let cfg = prometheus_config(&self.layout, opts.scrape_interval_s);
        write_atomic(&self.layout.path("prometheus.yml"), cfg.as_bytes())?;
        let data = self.layout.path("prometheus-data");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        self.spawn_prometheus(false)
    }

    /// Starts Prometheus with the config file and data directory `start_prometheus` prepared
    /// (a restart keeps the data: Prometheus replays its write-ahead log). A restart
    /// (`append`) keeps the log of the run before it.
    fn spawn_prometheus(&mut self, append: bool) -> Result<()> {
        let mut cmd = prometheus_command(&self.layout)?;
        let log = self.layout.path("prometheus.log");
        let child = if append {
            self.registry
                .spawn_appending("prometheus", &mut cmd, &log)?
        } else {
            self.registry.spawn("prometheus", &mut cmd, &log)?
        };
        self.prometheus = Some(child);
        Ok(())
    }

    /// Waits until HAProxy answers and Prometheus has heartbeat lag for both replicas and
    /// `up` for every exporter.
    async fn wait_healthy(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let lag_q = "count(mysql_heartbeat_now_timestamp_seconds{role=\"replica\"} - mysql_heartbeat_stored_timestamp_seconds < 5)";
        let up_q = "count(mysql_up == 1)";
        loop {
            let ha = self.weights().await.is_ok();
            let lag = self.prom_scalar(lag_q).await.unwrap_or(0.0);
            let up = self.prom_scalar(up_q).await.unwrap_or(0.0);
            if ha && lag >= 2.0 && up >= 3.0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "lab not healthy after 60 s: haproxy answering = {ha}, replicas with \
                     heartbeat lag in Prometheus = {lag}, exporters up = {up}; logs in {}",
                    self.layout.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Prometheus' base URL.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.prometheus_port())
    }

    /// Runs an instant query whose result is one number (a scalar or a one-series vector).
    pub async fn prom_scalar(&self, query: &str) -> Result<f64> {
        prom_scalar(&self.prometheus_url(), query).await
    }

    /// The current HAProxy weights (primary, replica-1, replica-2).
    pub async fn weights(&self) -> Result<[u32; 3]> {
        let mut w = [0; 3];
        for (i, s) in SERVERS.iter().enumerate() {
            w[i] = self
                .haproxy
                .get_weight(BACKEND, s)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .current;
        }
        Ok(w)
    }

    /// Sets the HAProxy weights directly (the static setup; resets between runs).
    pub async fn set_weights(&self, w: [u32; 3]) -> Result<()> {
        for (i, s) in SERVERS.iter().enumerate() {
            self.haproxy
                .set_weight(BACKEND, s, w[i])
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    /// The runtime API client.
    pub fn haproxy(&self) -> &RuntimeApi {
        &self.haproxy
    }

    /// Pid of server `i`'s `mariadbd`, if running.
    pub fn server_pid(&self, i: usize) -> Option<u32> {
        self.pids.lock().ok().and_then(|p| p[i])
    }

    /// Kills server `i` with SIGKILL (a crash).
    pub fn kill_server(&mut self, i: usize) -> Result<()> {
        let Some(mut child) = self.mariadb[i].take() else {
            bail!("{} is not running", SERVERS[i]);
        };
        procs::crash(child.id())?;
        child.wait()?;
        self.registry.forget(child.id())?;
        if let Ok(mut p) = self.pids.lock() {
            p[i] = None;
        }
        Ok(())
    }

    /// Starts server `i` again after a kill and waits until it accepts logins (replication
    /// resumes by itself from the GTID position it had).
    pub async fn restart_server(&mut self, i: usize) -> Result<()> {
        if self.mariadb[i].is_some() {
            return Ok(());
        }
        self.spawn_server(i)?;
        let log = self.layout.path(format!("{}/error.log", SERVERS[i]));
        let c =
            cluster::wait_ready(self.layout.mysql_port(i), Duration::from_secs(60), &log).await?;
        c.disconnect().await.ok();
        Ok(())
    }

    /// Kills Prometheus with SIGKILL (a crash: no clean shutdown of its storage).
    pub fn kill_prometheus(&mut self) -> Result<()> {
        let child = self.prometheus.take();
        self.crash_child(child, "prometheus")
    }

    /// Starts Prometheus again after a kill, with the same config and data directory, and
    /// waits until it reports ready (`/-/ready`).
    pub async fn restart_prometheus(&mut self) -> Result<()> {
        if self.prometheus.is_some() {
            bail!("prometheus is already running");
        }
        self.spawn_prometheus(true)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let url = format!("{}/-/ready", self.prometheus_url());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "prometheus not ready 60 s after its restart; see {}",
                    self.layout.path("prometheus.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills HAProxy with SIGKILL (a crash: connections through it break).
    pub fn kill_haproxy(&mut self) -> Result<()> {
        let child = self.haproxy_proc.take();
        self.crash_child(child, "haproxy")
    }

    /// Starts HAProxy again from its config file — so with the file's weights, not the ones
    /// set at run time — and waits until its runtime API answers.
    pub async fn restart_haproxy(&mut self) -> Result<()> {
        if self.haproxy_proc.is_some() {
            bail!("haproxy is already running");
        }
        self.spawn_haproxy(true)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.weights().await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "haproxy's runtime API not answering 30 s after its restart; see {}",
                    self.layout.path("haproxy.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn crash_child(&mut self, child: Option<Child>, name: &str) -> Result<()> {
        let Some(mut child) = child else {
            bail!("{name} is not running");
        };
        procs::crash(child.id())?;
        child.wait()?;
        self.registry.forget(child.id())
    }

    /// Reaps a `weir run` child that was sent SIGKILL (a crash) and forgets it.
    pub fn reap_weir(&mut self, mut child: Child) -> Result<()> {
        child.wait()?;
        self.registry.forget(child.id())
    }

    /// Starts `weir run -c <config>` as a recorded child, logging to `log`.
    pub fn start_weir(&mut self, weir: &Path, config: &Path, log: &Path) -> Result<Child> {
        let mut cmd = weir_command(weir, config);
        self.registry.spawn("weir", &mut cmd, log)
    }

    /// [`Lab::start_weir`], appending to `log` (for restarts), with `env` added to its
    /// environment.
    pub fn restart_weir(
        &mut self,
        weir: &Path,
        config: &Path,
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Child> {
        let mut cmd = weir_command(weir, config);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        self.registry.spawn_appending("weir", &mut cmd, log)
    }

    /// Stops a `weir run` child gracefully (SIGTERM, as an orchestrator would).
    pub fn stop_weir(&mut self, mut child: Child) -> Result<()> {
        procs::terminate(&child)?;
        let r = procs::wait_or_kill(&mut child, Duration::from_secs(10));
        self.registry.forget(child.id())?;
        r
    }

    /// Stops everything this lab started.
    pub fn down(mut self) -> Result<Vec<String>> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<Vec<String>> {
        for b in self.background.drain(..) {
            b.abort();
        }
        // A `fault cut` killed before it could remove its qdisc from lo.
        match crate::faults::clear_cut(&self.layout) {
            Ok(true) => eprintln!("lab: removed a network cut left on lo"),
            Ok(false) => {}
            Err(e) => eprintln!("lab: {e:#}"),
        }
        let stopped = self.registry.stop_all(Duration::from_secs(10))?;
        for c in self
            .mariadb
            .iter_mut()
            .flatten()
            .chain(self.prometheus.iter_mut())
            .chain(self.haproxy_proc.iter_mut())
            .chain(self.others.iter_mut())
        {
            let _ = c.try_wait();
        }
        Ok(stopped)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("lab: teardown: {e:#}");
        }
    }
}

fn weir_command(weir: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(weir);
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info");
    cmd
}

fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

/// HAProxy's configuration: a TCP read frontend balancing over the primary and both replicas
/// by weight, MySQL health checks (a real login as the privilege-less check user), and the
/// runtime API at admin level.
pub fn haproxy_config(layout: &Layout, weights: [u32; 3]) -> String {
    let mut cfg = format!(
        "global\n\
         \x20   stats socket ipv4@127.0.0.1:{admin} level admin\n\
         \x20   maxconn 2000\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   retries 2\n\
         \x20   option redispatch\n\
         listen {BACKEND}\n\
         \x20   bind 127.0.0.1:{read}\n\
         \x20   balance roundrobin\n\
         \x20   option mysql-check user {CHECK_USER} post-41\n\
         \x20   default-server inter 500ms fall 2 rise 2\n",
        admin = layout.haproxy_admin_port(),
        read = layout.haproxy_read_port(),
    );
    for (i, s) in SERVERS.iter().enumerate() {
        cfg.push_str(&format!(
            "    server {s} 127.0.0.1:{} weight {} check\n",
            layout.mysql_port(i),
            weights[i]
        ));
    }
    cfg
}

/// The command that runs HAProxy in the foreground on the lab's config file.
pub fn haproxy_command(layout: &Layout) -> Result<Command> {
    let mut cmd = Command::new(find_binary("haproxy", "haproxy")?);
    cmd.arg("-f").arg(layout.path("haproxy.cfg")).arg("-db");
    Ok(cmd)
}

/// The command that runs Prometheus on the lab's config file and data directory, on
/// 127.0.0.1 only.
pub fn prometheus_command(layout: &Layout) -> Result<Command> {
    let mut cmd = Command::new(find_binary("prometheus", "prometheus")?);
    cmd.arg(format!(
        "--config.file={}",
        layout.path("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        layout.path("prometheus-data").display()
    ))
    .arg("--storage.tsdb.retention.time=1d")
    .arg(format!(
        "--web.listen-address=127.0.0.1:{}",
        layout.prometheus_port()
    ));
    Ok(cmd)
}

/// Prometheus' configuration: the three exporters (labelled `server` and `role`), the lab's
/// own metrics and Weir, every `interval_s`.
pub fn prometheus_config(layout: &Layout, interval_s: f64) -> String {
    let ms = (interval_s * 1000.0).round().max(200.0) as u64;
    let mut cfg = format!(
        "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\nscrape_configs:\n  - job_name: mysql\n    static_configs:\n"
    );
    for (i, s) in SERVERS.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "replica" };
        cfg.push_str(&format!(
            "      - targets: ['127.0.0.1:{}']\n        labels: {{server: '{s}', role: '{role}'}}\n",
            layout.exporter_port(i)
        ));
    }
    cfg.push_str(&format!(
        "  - job_name: weir-lab\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n  - job_name: weir\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        layout.lab_metrics_port(),
        layout.weir_port()
    ));
    cfg
}

/// Runs an instant query whose result is one number.
pub async fn prom_scalar(base: &str, query: &str) -> Result<f64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let v: serde_json::Value = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await?
        .json()
        .await?;
    let result = &v["data"]["result"];
    let value = match v["data"]["resultType"].as_str() {
        Some("scalar") => &result[1],
        Some("vector") if result.as_array().is_some_and(|a| a.len() == 1) => &result[0]["value"][1],
        _ => bail!("`{query}`: not one number: {v}"),
    };
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("`{query}`: bad value {value}"))
}

/// The default run directory: `target/weir-lab` under the workspace (or the current dir).
pub fn default_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("weir-lab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_config_has_every_server_with_checks_and_the_admin_socket() {
        let l = Layout::new("/tmp/lab", 23300).expect("layout");
        let c = haproxy_config(&l, [0, 50, 50]);
        assert!(
            c.contains("stats socket ipv4@127.0.0.1:23321 level admin"),
            "{c}"
        );
        assert!(c.contains("bind 127.0.0.1:23320"), "{c}");
        assert!(
            c.contains("server primary 127.0.0.1:23300 weight 0 check"),
            "{c}"
        );
        assert!(
            c.contains("server replica-2 127.0.0.1:23302 weight 50 check"),
            "{c}"
        );
        assert!(
            c.contains("balance roundrobin"),
            "weights need a dynamic algorithm"
        );
    }

    #[test]
    fn prometheus_config_labels_servers_and_scrapes_weir() {
        let l = Layout::new("/tmp/lab", 23300).expect("layout");
        let c = prometheus_config(&l, 1.0);
        assert!(c.contains("scrape_interval: 1000ms"), "{c}");
        assert!(
            c.contains("targets: ['127.0.0.1:23311']\n        labels: {server: 'replica-1', role: 'replica'}"),
            "{c}"
        );
        assert!(c.contains("127.0.0.1:23332"), "weir target: {c}");
    }
}
