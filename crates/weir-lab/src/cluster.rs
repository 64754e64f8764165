//! MariaDB: a primary and two replicas as separate `mariadbd` processes with their own data
//! directories, GTID replication, and a heartbeat table in pt-heartbeat's format written on
//! the primary several times a second.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::layout::{Layout, SERVERS};
use crate::procs::find_binary;

/// The application user reads and writes go through (also what HAProxy's clients use).
pub const APP_USER: (&str, &str) = ("lab", "lab");
/// The user mysqld_exporter logs in as.
pub const EXPORTER_USER: (&str, &str) = ("exporter", "exporter");
/// The replication user.
const REPL_USER: (&str, &str) = ("repl", "repl");
/// The password-less, privilege-less user HAProxy's `option mysql-check` logs in as.
pub const CHECK_USER: &str = "haproxy_check";

/// The heartbeat table, exactly pt-heartbeat's layout (mysqld_exporter's
/// `--collect.heartbeat` reads `ts` and `server_id` from it).
const HEARTBEAT_TABLE: &str = "CREATE TABLE IF NOT EXISTS heartbeat.heartbeat (
    ts varchar(26) NOT NULL,
    server_id int unsigned NOT NULL PRIMARY KEY,
    file varchar(255) DEFAULT NULL,
    position bigint unsigned DEFAULT NULL,
    relay_master_log_file varchar(255) DEFAULT NULL,
    exec_master_log_pos bigint unsigned DEFAULT NULL
) ENGINE=InnoDB";

/// The table the load generator writes (one row per write, carrying its sequence number and
/// the client's commit time) and reads.
const TICKS_TABLE: &str = "CREATE TABLE IF NOT EXISTS lab.ticks (
    seq bigint unsigned NOT NULL PRIMARY KEY,
    committed_us bigint NOT NULL,
    payload varchar(64) NOT NULL
) ENGINE=InnoDB";

/// Connection options for `user` on 127.0.0.1:`port`, always over TCP (mysql_async would
/// otherwise switch to the server's Unix socket and bypass HAProxy).
pub fn opts(port: u16, user: &str, pass: Option<&str>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(pass)
        .prefer_socket(false)
        .into()
}

/// Root (password-less, loopback only) on server port `port`.
pub fn root(port: u16) -> Opts {
    opts(port, "root", None)
}

/// Whether we run as root (mariadbd then needs `--user=root`).
fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Creates server `i`'s data directory with `mariadb-install-db` (skipped if it exists).
pub fn install(layout: &Layout, i: usize) -> Result<()> {
    let datadir = layout.datadir(i);
    if datadir.join("mysql").is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&datadir).with_context(|| format!("creating {}", datadir.display()))?;
    let bin = find_binary("mariadb-install-db", "mariadb-server")?;
    let mut cmd = Command::new(bin);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db");
    if running_as_root() {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .context("running mariadb-install-db (Debian package mariadb-server)")?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db for {} failed: {}{}",
            SERVERS[i],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The `mariadbd` command line of server `i` (server id `i + 1`).
pub fn mariadbd(layout: &Layout, i: usize) -> Result<Command> {
    let bin = find_binary("mariadbd", "mariadb-server")?;
    let dir = layout.path(SERVERS[i]);
    let mut cmd = Command::new(bin);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", layout.datadir(i).display()))
        .arg(format!("--socket={}", layout.socket(i).display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!(
            "--bind-address={}",
            if i == 0 {
                // Each replica replicates from its own address (the network cut).
                layout.primary_bind_addresses()
            } else {
                "127.0.0.1".to_string()
            }
        ))
        .arg(format!("--port={}", layout.mysql_port(i)))
        .arg(format!("--server-id={}", i + 1))
        .arg("--skip-name-resolve")
        .arg("--log-bin=mysql-bin")
        .arg("--binlog-format=ROW")
        .arg("--gtid-strict-mode=ON")
        .arg("--innodb-buffer-pool-size=64M")
        .arg("--innodb-log-file-size=32M")
        // The lab measures routing, not fsync latency of whatever disk the machine has.
        .arg("--innodb-flush-log-at-trx-commit=2")
        .arg("--sync-binlog=0")
        .arg("--max-connections=300")
        // HAProxy's health checks are full logins; never block the loopback host.
        .arg("--max-connect-errors=1000000")
        .arg("--performance-schema=OFF");
    if i > 0 {
        cmd.arg("--read-only=ON")
            .arg("--relay-log=relay-bin")
            .arg("--relay-log-recovery=ON");
    }
    if running_as_root() {
        cmd.arg("--user=root");
    }
    Ok(cmd)
}

/// Waits until server `port` accepts root logins, at most `wait`.
pub async fn wait_ready(port: u16, wait: Duration, log: &Path) -> Result<Conn> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match Conn::new(root(port)).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "MariaDB on 127.0.0.1:{port} not ready after {wait:?}: {e}\n--- {} (last lines, newest first) ---\n{}",
                    log.display(),
                    tail.join("\n")
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Users on every server (not replicated: `sql_log_bin = 0`).
pub async fn create_users(conn: &mut Conn) -> Result<()> {
    let (app, app_pw) = APP_USER;
    let (exp, exp_pw) = EXPORTER_USER;
    let (repl, repl_pw) = REPL_USER;
    let stmts = [
        "SET sql_log_bin = 0".to_string(),
        format!("CREATE USER IF NOT EXISTS '{app}'@'127.0.0.1' IDENTIFIED BY '{app_pw}'"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON lab.* TO '{app}'@'127.0.0.1'"),
        format!(
            "CREATE USER IF NOT EXISTS '{exp}'@'127.0.0.1' IDENTIFIED BY '{exp_pw}' WITH MAX_USER_CONNECTIONS 5"
        ),
        format!(
            "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO '{exp}'@'127.0.0.1'"
        ),
        format!("CREATE USER IF NOT EXISTS '{repl}'@'127.0.0.1' IDENTIFIED BY '{repl_pw}'"),
        format!("GRANT REPLICATION SLAVE ON *.* TO '{repl}'@'127.0.0.1'"),
        format!("CREATE USER IF NOT EXISTS '{CHECK_USER}'@'127.0.0.1'"),
        "SET sql_log_bin = 1".to_string(),
    ];
    for s in stmts {
        conn.query_drop(&s).await.with_context(|| s.clone())?;
    }
    Ok(())
}

/// The lab's schema, created on the primary (replicated).
pub async fn create_schema(primary: &mut Conn) -> Result<()> {
    for s in [
        "CREATE DATABASE IF NOT EXISTS heartbeat",
        HEARTBEAT_TABLE,
        "CREATE DATABASE IF NOT EXISTS lab",
        TICKS_TABLE,
    ] {
        primary.query_drop(s).await.with_context(|| s.to_string())?;
    }
    Ok(())
}

/// Points a replica at the primary on `primary_host` (the replica's own loopback address,
/// [`Layout::replication_host`]) with GTID (`slave_pos`) and starts replicating.
pub async fn start_replication(
    replica: &mut Conn,
    primary_host: std::net::Ipv4Addr,
    primary_port: u16,
) -> Result<()> {
    let (user, pw) = REPL_USER;
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST = '{primary_host}', MASTER_PORT = {primary_port}, \
         MASTER_USER = '{user}', MASTER_PASSWORD = '{pw}', MASTER_USE_GTID = slave_pos, \
         MASTER_CONNECT_RETRY = 1"
    );
    replica.query_drop("STOP SLAVE").await.ok();
    replica
        .query_drop(&change)
        .await
        .context("CHANGE MASTER TO")?;
    replica
        .query_drop("START SLAVE")
        .await
        .context("START SLAVE")?;
    Ok(())
}

/// One heartbeat row, pt-heartbeat style (`ts` as an ISO timestamp in UTC; mysqld_exporter
/// runs with `--collect.heartbeat.utc`).
pub async fn beat(primary: &mut Conn) -> Result<()> {
    primary
        .query_drop(
            "REPLACE INTO heartbeat.heartbeat (ts, server_id) \
             VALUES (DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%f'), @@server_id)",
        )
        .await
        .context("heartbeat write")
}

/// Writes heartbeats on the primary every `every` until the task is dropped. A failed write
/// reconnects and goes on (the primary may be restarting).
pub async fn heartbeat_loop(primary_port: u16, every: Duration) {
    let mut conn: Option<Conn> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn = Conn::new(root(primary_port)).await.ok();
        }
        if let Some(c) = conn.as_mut()
            && let Err(e) = beat(c).await
        {
            tracing::warn!("{e:#}");
            conn = None;
        }
    }
}

/// A replica's heartbeat lag in seconds, read directly from the server (what the exporter
/// computes), `None` if it cannot be read.
pub async fn heartbeat_lag(conn: &mut Conn) -> Option<f64> {
    conn.query_first::<Option<f64>, _>(
        "SELECT CAST(UNIX_TIMESTAMP(UTC_TIMESTAMP(6)) - MAX(UNIX_TIMESTAMP(ts)) AS DOUBLE) FROM heartbeat.heartbeat",
    )
    .await
    .ok()
    .flatten()
    .flatten()
}

/// Waits until every replica's heartbeat lag is under `max_lag_s`, at most `wait`.
pub async fn wait_caught_up(layout: &Layout, max_lag_s: f64, wait: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    for (i, server) in SERVERS.iter().enumerate().skip(1) {
        loop {
            let lag = match Conn::new(root(layout.mysql_port(i))).await {
                Ok(mut c) => {
                    let l = heartbeat_lag(&mut c).await;
                    c.disconnect().await.ok();
                    l
                }
                Err(_) => None,
            };
            if lag.is_some_and(|l| l < max_lag_s) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{server} has not caught up within {wait:?} (heartbeat lag {lag:?} s)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
