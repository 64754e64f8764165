//! Faults, each the way it happens in production, and how each shows up in the metrics:
//!
//! - [`StallKind::Ftwrl`] — a session on the replica holds `FLUSH TABLES WITH READ LOCK`
//!   (what a backup tool takes). The SQL thread keeps running but blocks on the lock, so
//!   `Seconds_Behind_Master` grows with the heartbeat lag (`mysql_slave_status_seconds_behind_master`
//!   and `mysql_heartbeat_*` both move); reads still succeed, with old data.
//! - [`StallKind::SqlThread`] — `STOP SLAVE SQL_THREAD` (an operator, or an apply error).
//!   `Slave_SQL_Running` goes to `No` and `Seconds_Behind_Master` to NULL, which
//!   mysqld_exporter does not export at all — a lag query on it sees the series vanish
//!   (Weir: `NoSeries`, never 0). The heartbeat lag keeps growing, which is why the lab and
//!   Weir's defaults use the heartbeat.
//! - [`kill`](crate::lab::Lab::kill_server) — SIGKILL of a `mariadbd`: `mysql_up` drops to 0
//!   at the next scrape, HAProxy's check marks the server DOWN after two failed checks (~1 s),
//!   and reads on connections it held fail once.
//! - [`cpu_burn`] — sessions running `BENCHMARK()` on the primary: its process CPU rises
//!   (`weir_lab_process_cpu_seconds_total{server="primary"}`), nothing else changes.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use mysql_async::Conn;
use mysql_async::prelude::*;

use crate::cluster;

/// How to stall a replica's apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StallKind {
    /// A session holding `FLUSH TABLES WITH READ LOCK` (a backup).
    Ftwrl,
    /// `STOP SLAVE SQL_THREAD`.
    SqlThread,
}

/// A stall in progress; [`Stall::end`] releases it.
pub struct Stall {
    kind: StallKind,
    conn: Conn,
}

impl Stall {
    /// Stalls the replica on `port`.
    pub async fn start(port: u16, kind: StallKind) -> Result<Stall> {
        let mut conn = Conn::new(cluster::root(port))
            .await
            .with_context(|| format!("connecting to the replica on {port}"))?;
        let sql = match kind {
            StallKind::Ftwrl => "FLUSH TABLES WITH READ LOCK",
            StallKind::SqlThread => "STOP SLAVE SQL_THREAD",
        };
        conn.query_drop(sql).await.context(sql)?;
        Ok(Stall { kind, conn })
    }

    /// Releases the stall (replication catches up by itself).
    pub async fn end(mut self) -> Result<()> {
        let sql = match self.kind {
            StallKind::Ftwrl => "UNLOCK TABLES",
            StallKind::SqlThread => "START SLAVE SQL_THREAD",
        };
        self.conn.query_drop(sql).await.context(sql)?;
        self.conn.disconnect().await.ok();
        Ok(())
    }
}

/// Loads the server on `port` with `sessions` sessions of `BENCHMARK()` for `duration`.
pub async fn cpu_burn(port: u16, sessions: usize, duration: Duration) -> Result<()> {
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..sessions.max(1) {
        let mut c = Conn::new(cluster::root(port))
            .await
            .context("cpu burn: connect")?;
        ids.push(c.id());
        tasks.push(tokio::spawn(async move {
            // Each call runs ~seconds; loop until killed.
            while c
                .query_drop("SELECT BENCHMARK(200000000, MD5('weir-lab'))")
                .await
                .is_ok()
            {}
        }));
    }
    tokio::time::sleep(duration).await;
    let mut admin = Conn::new(cluster::root(port))
        .await
        .context("cpu burn: connect")?;
    for id in ids {
        admin.query_drop(format!("KILL {id}")).await.ok();
    }
    for t in tasks {
        let _ = t.await;
    }
    admin.disconnect().await.ok();
    Ok(())
}
