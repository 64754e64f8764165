//! Where everything lives: one run directory and a block of 127.0.0.1 ports from a base.
//! The primary also listens on one more loopback address per replica (127.0.0.2, 127.0.0.3),
//! which only that replica's replication connects to, so that its stream can be told apart on
//! `lo` (the network cut, [`crate::faults::Cut`]).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The database servers, in HAProxy/Weir order: the primary, then the replicas.
pub const SERVERS: [&str; 3] = ["primary", "replica-1", "replica-2"];

/// The HAProxy backend that carries reads.
pub const BACKEND: &str = "mysql_reads";

/// Ports and paths of one lab, all derived from a directory and a base port.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Run directory: data dirs, configs, logs, the state file.
    pub dir: PathBuf,
    /// First port of the block (the primary's MariaDB port).
    pub base_port: u16,
}

impl Layout {
    /// A layout rooted at `dir` with ports from `base_port` to `base_port + 32`.
    pub fn new(dir: impl Into<PathBuf>, base_port: u16) -> Result<Layout> {
        if !(1024..=65535 - 40).contains(&base_port) {
            bail!(
                "--base-port {base_port}: must be between 1024 and {}",
                65535 - 40
            );
        }
        // Absolute: mariadb-install-db resolves relative paths against its basedir.
        let dir = std::path::absolute(dir.into())?;
        Ok(Layout { dir, base_port })
    }

    /// MariaDB port of server `i` (0 = primary).
    pub fn mysql_port(&self, i: usize) -> u16 {
        self.base_port + i as u16
    }

    /// mysqld_exporter port of server `i`.
    pub fn exporter_port(&self, i: usize) -> u16 {
        self.base_port + 10 + i as u16
    }

    /// HAProxy's read frontend.
    pub fn haproxy_read_port(&self) -> u16 {
        self.base_port + 20
    }

    /// HAProxy's runtime API (admin level).
    pub fn haproxy_admin_port(&self) -> u16 {
        self.base_port + 21
    }

    /// Prometheus.
    pub fn prometheus_port(&self) -> u16 {
        self.base_port + 30
    }

    /// The lab's own /metrics (process CPU, client-side read latency).
    pub fn lab_metrics_port(&self) -> u16 {
        self.base_port + 31
    }

    /// `weir run`'s HTTP API and /metrics.
    pub fn weir_port(&self) -> u16 {
        self.base_port + 32
    }

    /// The address replica `i` (1, 2, …) reaches the primary at: 127.0.0.`i + 1`, its own, so
    /// that its replication stream alone can be matched on `lo` (the source address of that
    /// connection is still 127.0.0.1, which the replication user's grant names).
    pub fn replication_host(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 1 + i as u8)
    }

    /// The primary's `bind-address`: 127.0.0.1 for everyone, plus each replica's own
    /// [`Layout::replication_host`] (MariaDB ≥ 10.11 takes a comma-separated list).
    pub fn primary_bind_addresses(&self) -> String {
        (0..SERVERS.len())
            .map(|i| self.replication_host(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every port the lab binds, with what binds it.
    pub fn ports(&self) -> Vec<(String, u16)> {
        let mut v = Vec::new();
        for (i, s) in SERVERS.iter().enumerate() {
            v.push((format!("mariadb {s}"), self.mysql_port(i)));
            v.push((format!("mysqld_exporter {s}"), self.exporter_port(i)));
        }
        v.push(("haproxy reads".into(), self.haproxy_read_port()));
        v.push(("haproxy runtime API".into(), self.haproxy_admin_port()));
        v.push(("prometheus".into(), self.prometheus_port()));
        v.push(("lab /metrics".into(), self.lab_metrics_port()));
        v.push(("weir".into(), self.weir_port()));
        v
    }

    /// Fails naming every port of the block that something else already holds.
    pub fn check_ports_free(&self) -> Result<()> {
        let mut wanted: Vec<(String, Ipv4Addr, u16)> = self
            .ports()
            .into_iter()
            .map(|(what, p)| (what, Ipv4Addr::LOCALHOST, p))
            .collect();
        for (i, server) in SERVERS.iter().enumerate().skip(1) {
            wanted.push((
                format!("mariadb primary, for {server}'s replication"),
                self.replication_host(i),
                self.mysql_port(0),
            ));
        }
        let busy: Vec<String> = wanted
            .into_iter()
            .filter(|(_, a, p)| TcpListener::bind((*a, *p)).is_err())
            .map(|(what, a, p)| format!("{a}:{p} ({what})"))
            .collect();
        if !busy.is_empty() {
            bail!(
                "ports in use: {}; stop what holds them (`weir-lab down` if it is an old lab) \
                 or choose another block with --base-port",
                busy.join(", ")
            );
        }
        Ok(())
    }

    /// A path inside the run directory.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    /// Data directory of server `i`.
    pub fn datadir(&self, i: usize) -> PathBuf {
        self.path(format!("{}/data", SERVERS[i]))
    }

    /// Unix socket of server `i` (short name: socket paths are limited to ~100 bytes).
    pub fn socket(&self, i: usize) -> PathBuf {
        self.path(format!("{}/s.sock", SERVERS[i]))
    }

    /// The state file listing every process the lab started.
    pub fn state_file(&self) -> PathBuf {
        self.path("lab-state.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_inside_the_block() {
        let l = Layout::new("/tmp/x", 23300).expect("layout");
        let ports: Vec<u16> = l.ports().into_iter().map(|(_, p)| p).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "duplicate port in {ports:?}");
        assert!(ports.iter().all(|p| (23300..23340).contains(p)));
    }

    #[test]
    fn each_replica_reaches_the_primary_at_its_own_loopback_address() {
        let l = Layout::new("/tmp/x", 23300).expect("layout");
        assert_eq!(l.replication_host(1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(l.replication_host(2), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(l.primary_bind_addresses(), "127.0.0.1,127.0.0.2,127.0.0.3");
        assert!((1..SERVERS.len()).all(|i| l.replication_host(i).is_loopback()));
    }

    #[test]
    fn base_port_out_of_range_is_named() {
        let e = Layout::new("/tmp/x", 80).expect_err("port 80");
        assert!(e.to_string().contains("--base-port 80"), "{e}");
        assert!(Layout::new("/tmp/x", 65530).is_err());
    }
}
