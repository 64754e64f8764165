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
//! - [`Cut`] — one replica's replication stream slowed on the network (`tc` on `lo`): the
//!   replica is healthy, answers reads and applies what reaches it at once, but the binlog
//!   reaches it late. The heartbeat lag grows; `Seconds_Behind_Master` stays 0 whenever the
//!   SQL thread has applied everything the IO thread *received*, so it shows the lag only in
//!   the instants a late batch is being applied, which a scrape every second mostly misses
//!   (one more reason the lab and Weir use the heartbeat).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use mysql_async::Conn;
use mysql_async::prelude::*;
use serde::Serialize;

use crate::cluster;
use crate::layout::{Layout, SERVERS};
use crate::procs::find_binary;

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

// ---- the network cut ----
//
// Every lab process is on loopback, so the cut is made on `lo`. The primary listens on
// 127.0.0.1 and on one more loopback address per replica, and replica N replicates from
// 127.0.0.(N+1) (`Layout::replication_host`); everyone else (HAProxy, the exporters, the load,
// the other replica) talks to 127.0.0.1. A u32 filter on the primary's port and that address,
// in both directions, sends the one replication stream into an HTB class (unlimited: it only
// classifies); nothing else is classified, and HTB sends unclassified packets straight on (its
// direct queue, unshaped). Under the class: a TBF for the rate limit, and `netem` for a delay
// or a loss (netem above the TBF when both). The root's handle is the lab's base port, so each
// lab removes only its own cut.
//
// Why TBF for the rate and not the HTB class itself: a cut has to end without dropping what
// it queued (see `Cut::end`), so the limit is lifted first and the queue drained. Changing a
// TBF refills its bucket, so it drains at once; HTB keeps a class's token debt across a
// change, up to one packet's time at the old rate, and on lo a packet can be 64 KiB (6.7 s of
// waiting at 48 kbit/s, measured). The price: a TBF's bucket must hold the largest packet, so
// it starts full and lets the first ~64 KiB of the stream through at once.

/// How one replica's replication stream is impaired.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CutSpec {
    /// The replica (1, 2).
    pub replica: usize,
    /// Delay added to every packet of the stream, each direction, ms (`netem`; 0: none).
    pub delay_ms: u32,
    /// Share of the stream's packets dropped, each direction, percent (`netem`; 0: none).
    pub loss_pct: f64,
    /// The stream's bandwidth, both directions together, kbit/s (TBF; 0: not limited).
    pub rate_kbit: u32,
}

/// The cut the campaign makes, and `fault cut`'s defaults: replica-1's stream limited to
/// 48 kbit/s, no delay, no loss. Why, measured with `weir-lab fault cut` under the campaign's
/// load (300 reads/s, 50 writes/s) on the 2-core development machine:
/// - Unlimited, the stream is ~150 kbit/s on the wire (18.6 KB/s, ~100 packets/s: one small
///   packet per event, plus ACKs). Limited to 96 kbit/s it batches events into fewer, larger
///   packets and fits: the lag stayed at ~0.8 s, under the 2-s SLO. So the binlog itself needs
///   ~90 kbit/s.
/// - At 48 kbit/s, about half of that, the lag grows by ~0.6 s every second once the TBF's
///   bucket (one 64-KiB packet of `lo`) is spent, for as long as the cut lasts (a saturated
///   link): past the 2-s SLO ~9 s into the cut, 15 s after 30 s ([`crate::campaign::CUT_S`]).
///   That is far past the SLO, yet under the shield's hard limit (10× the SLO in the lab's
///   config), so what takes the replica out is Weir's policy, not the hard rule. Nothing is
///   dropped; lifting the limit drained the queue in 0.04 s and the replica was back under the
///   SLO 0.1 s later.
/// - No delay or loss: they need the kernel's `netem`, which this machine's kernel lacks. A
///   delay alone would give a constant lag of about the delay; the rate gives a growing one.
pub const CAMPAIGN_CUT: CutSpec = CutSpec {
    replica: 1,
    delay_ms: 0,
    loss_pct: 0.0,
    rate_kbit: 48,
};

/// Packets `netem` holds before it drops (when it is used): enough that a delay shows up as
/// delay, not drops.
const NETEM_LIMIT_PACKETS: u32 = 10_000;

/// Bytes the TBF's queue holds: far more than TCP keeps in flight here, so that a rate limit
/// shows up as queueing (lag), never as drops.
const TBF_LIMIT_BYTES: u32 = 16 << 20;

/// What the rate becomes when the limit is lifted, and the classifying HTB class's rate (HTB
/// needs one): far above anything on the machine's loopback.
const UNLIMITED_KBIT: u64 = 100_000_000;

/// The MTU of `lo` when `/sys` cannot tell.
const LO_MTU_DEFAULT: u32 = 65_536;

impl CutSpec {
    /// Refuses a spec that names no replica or impairs nothing.
    pub fn validate(&self) -> Result<()> {
        if !(1..SERVERS.len()).contains(&self.replica) {
            bail!(
                "replica {}: must be 1 to {}",
                self.replica,
                SERVERS.len() - 1
            );
        }
        if !(0.0..100.0).contains(&self.loss_pct) {
            bail!(
                "--loss-pct {}: must be at least 0 and below 100",
                self.loss_pct
            );
        }
        if self.delay_ms == 0 && self.loss_pct == 0.0 && self.rate_kbit == 0 {
            bail!("a cut needs at least one of --delay-ms, --loss-pct, --rate-kbit");
        }
        Ok(())
    }

    /// Whether the kernel's `netem` qdisc is needed (delay or loss).
    pub fn needs_netem(&self) -> bool {
        self.delay_ms > 0 || self.loss_pct > 0.0
    }

    /// For people: `rate 48 kbit/s, delay 200 ms, loss 1%`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if self.rate_kbit > 0 {
            v.push(format!("rate {} kbit/s", self.rate_kbit));
        }
        if self.delay_ms > 0 {
            v.push(format!("delay {} ms", self.delay_ms));
        }
        if self.loss_pct > 0.0 {
            v.push(format!("loss {}%", self.loss_pct));
        }
        v.join(", ")
    }
}

/// A lab's qdisc handles on `lo`: the root's major number is the lab's base port (two labs
/// running at once never share one), the leaf's the next number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutHandles {
    major: u16,
}

impl CutHandles {
    /// The handles of the lab in `layout`.
    pub fn of(layout: &Layout) -> CutHandles {
        CutHandles {
            major: layout.base_port,
        }
    }

    fn root(&self) -> String {
        format!("{:x}:", self.major)
    }

    fn class(&self) -> String {
        format!("{:x}:1", self.major)
    }

    fn leaf(&self) -> String {
        format!("{:x}:", self.major.wrapping_add(1))
    }

    /// The TBF under `netem` when a cut has both.
    fn inner(&self) -> String {
        format!("{:x}:", self.major.wrapping_add(2))
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The TBF arguments for `rate_kbit`: its bucket holds one largest packet of `lo`
/// (`lo_mtu` plus headers; a TBF drops a packet bigger than its bucket).
fn tbf_args(rate_kbit: u64, lo_mtu: u32) -> Vec<String> {
    let burst = (u64::from(lo_mtu) + 1024).to_string();
    strings(&[
        "tbf",
        "rate",
        &format!("{rate_kbit}kbit"),
        "burst",
        &burst,
        "limit",
        &TBF_LIMIT_BYTES.to_string(),
    ])
}

/// The `netem` arguments for `spec`'s delay and loss (none: a `netem` that does nothing).
fn netem_args(delay_ms: u32, loss_pct: f64) -> Vec<String> {
    let mut v = strings(&["netem", "limit", &NETEM_LIMIT_PACKETS.to_string()]);
    if delay_ms > 0 {
        v.extend(strings(&["delay", &format!("{delay_ms}ms")]));
    }
    if loss_pct > 0.0 {
        v.extend(strings(&["loss", &format!("{loss_pct}%")]));
    }
    v
}

/// Where the TBF of a cut sits: (parent, handle). `None` without a rate limit.
fn tbf_place(h: CutHandles, spec: &CutSpec) -> Option<(String, String)> {
    match (spec.rate_kbit > 0, spec.needs_netem()) {
        (false, _) => None,
        (true, false) => Some((h.class(), h.leaf())),
        (true, true) => Some((format!("{}1", h.leaf()), h.inner())),
    }
}

/// The `tc` argument lists that install the cut of `spec`, in order: the HTB root, its
/// classifying class, the shaping qdiscs under it, and one filter per direction of the stream
/// between the replica and the primary's `port` on `host` (the replica's own address of the
/// primary). `lo_mtu` sizes the TBF's bucket.
pub fn cut_commands(
    h: CutHandles,
    host: Ipv4Addr,
    port: u16,
    spec: &CutSpec,
    lo_mtu: u32,
) -> Vec<Vec<String>> {
    let (root, class, leaf) = (h.root(), h.class(), h.leaf());
    let unlimited = format!("{UNLIMITED_KBIT}kbit");
    let mut out = vec![
        strings(&[
            "qdisc", "add", "dev", "lo", "root", "handle", &root, "htb", "default", "0",
        ]),
        // One class, so the quantum only has to be in HTB's range (silences its warning).
        strings(&[
            "class", "add", "dev", "lo", "parent", &root, "classid", &class, "htb", "rate",
            &unlimited, "ceil", &unlimited, "quantum", "65536",
        ]),
    ];
    if spec.needs_netem() {
        let mut l = strings(&[
            "qdisc", "add", "dev", "lo", "parent", &class, "handle", &leaf,
        ]);
        l.extend(netem_args(spec.delay_ms, spec.loss_pct));
        out.push(l);
    }
    if let Some((parent, handle)) = tbf_place(h, spec) {
        let mut t = strings(&[
            "qdisc", "add", "dev", "lo", "parent", &parent, "handle", &handle,
        ]);
        t.extend(tbf_args(u64::from(spec.rate_kbit), lo_mtu));
        out.push(t);
    }
    let (host, port) = (format!("{host}/32"), port.to_string());
    for (addr, p) in [("dst", "dport"), ("src", "sport")] {
        out.push(strings(&[
            "filter", "add", "dev", "lo", "parent", &root, "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "protocol", "6", "0xff", "match", "ip", addr, &host, "match", "ip", p,
            &port, "0xffff", "flowid", &class,
        ]));
    }
    out
}

/// The `tc` argument lists that lift the cut (the first step of ending it): `netem` without
/// delay or loss, the TBF at an unlimited rate (which refills its bucket). What is queued
/// then drains, and nothing new waits.
pub fn release_commands(h: CutHandles, spec: &CutSpec, lo_mtu: u32) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if spec.needs_netem() {
        let mut l = strings(&[
            "qdisc",
            "change",
            "dev",
            "lo",
            "parent",
            &h.class(),
            "handle",
            &h.leaf(),
        ]);
        l.extend(netem_args(0, 0.0));
        out.push(l);
    }
    if let Some((parent, handle)) = tbf_place(h, spec) {
        let mut t = strings(&[
            "qdisc", "change", "dev", "lo", "parent", &parent, "handle", &handle,
        ]);
        t.extend(tbf_args(UNLIMITED_KBIT, lo_mtu));
        out.push(t);
    }
    out
}

/// The MTU of `lo` (sizes the TBF's bucket).
fn lo_mtu() -> u32 {
    std::fs::read_to_string("/sys/class/net/lo/mtu")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(LO_MTU_DEFAULT)
}

/// The `tc` arguments that remove the cut (the root and everything under it; whatever is
/// still queued is dropped).
pub fn uncut_command(h: CutHandles) -> Vec<String> {
    strings(&["qdisc", "del", "dev", "lo", "root", "handle", &h.root()])
}

/// The root qdisc of `lo` from `tc -j qdisc show dev lo`: (kind, handle).
pub fn root_qdisc(json: &str) -> Result<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("`tc -j qdisc show`: {json}"))?;
    v.as_array()
        .into_iter()
        .flatten()
        .find(|q| q["root"].as_bool() == Some(true))
        .and_then(|q| {
            Some((
                q["kind"].as_str()?.to_string(),
                q["handle"].as_str()?.to_string(),
            ))
        })
        .with_context(|| format!("`tc -j qdisc show`: no root qdisc in {json}"))
}

/// What went through the cut's leaf queue, from `tc -s -j qdisc show dev lo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CutStats {
    /// Bytes sent on (both directions).
    pub bytes: u64,
    /// Packets sent on.
    pub packets: u64,
    /// Packets dropped (queue full, or `netem` loss).
    pub drops: u64,
    /// Bytes queued now.
    pub backlog_bytes: u64,
}

/// The leaf's counters in `tc -s -j qdisc show dev lo`, `None` if the cut is not there.
pub fn leaf_stats(json: &str, h: CutHandles) -> Option<CutStats> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let leaf = h.leaf();
    let q = v
        .as_array()?
        .iter()
        .find(|q| q["handle"].as_str() == Some(leaf.as_str()))?;
    let n = |k: &str| q[k].as_u64();
    Some(CutStats {
        bytes: n("bytes")?,
        packets: n("packets")?,
        drops: n("drops")?,
        backlog_bytes: n("backlog")?,
    })
}

fn tc(args: &[String]) -> Result<String> {
    let bin = find_binary("tc", "iproute2")?;
    let out = Command::new(bin)
        .args(args)
        .output()
        .context("running tc")?;
    if !out.status.success() {
        bail!(
            "`tc {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lo_root() -> Result<(String, String)> {
    root_qdisc(&tc(&strings(&["-j", "qdisc", "show", "dev", "lo"]))?)
}

/// Removes the cut of the lab in `layout` if one is on `lo` (a crash, a killed `fault cut`):
/// `Ok(true)` if it removed one. Without `tc` nothing can have been installed: `Ok(false)`.
pub fn clear_cut(layout: &Layout) -> Result<bool> {
    if find_binary("tc", "iproute2").is_err() {
        return Ok(false);
    }
    let h = CutHandles::of(layout);
    let (_, handle) = lo_root()?;
    if handle != h.root() {
        return Ok(false);
    }
    tc(&uncut_command(h)).context("removing this lab's cut from lo")?;
    Ok(true)
}

/// Why no cut can be made for the lab in `layout` here (not root, no `tc`, `lo` shaped by
/// someone else), `None` if it can. (Whether the kernel has `netem` shows only when it is
/// asked for.)
pub fn cut_unavailable(layout: &Layout) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "a network cut changes lo's qdisc with tc: run as root (CAP_NET_ADMIN)".into(),
        );
    }
    if let Err(e) = find_binary("tc", "iproute2") {
        return Some(format!("{e:#}"));
    }
    let ours = CutHandles::of(layout).root();
    match lo_root() {
        Err(e) => Some(format!("{e:#}")),
        Ok((kind, handle)) if kind != "noqueue" && handle != ours => Some(format!(
            "lo already has a root qdisc ({kind} {handle}) that is not this lab's ({ours}): \
             another lab's cut, or someone else's shaping; not touching it"
        )),
        Ok(_) => None,
    }
}

/// A cut in place. [`Cut::end`] removes it; so does dropping it, and so do `weir-lab down` and
/// the end of the lab (`clear_cut`) if this process was killed first.
pub struct Cut {
    handles: CutHandles,
    spec: CutSpec,
    lo_mtu: u32,
    active: bool,
}

/// How long [`Cut::end`] waits for the queue to drain (beyond the delay) before it removes
/// the qdisc anyway.
pub const CUT_DRAIN_MAX: Duration = Duration::from_secs(10);

/// How a cut ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CutEnd {
    /// What went through it, all told.
    pub stats: CutStats,
    /// Its queue was empty when the qdisc was removed (nothing dropped by the removal).
    pub drained: bool,
    /// Seconds from lifting the limit to the qdisc being gone.
    pub drain_s: f64,
}

impl Cut {
    /// Checks that it can (root, `tc`, `lo` free of anyone else's root qdisc) and installs
    /// the cut of `spec` for the lab in `layout`. On any failure nothing is left on `lo`.
    pub fn start(layout: &Layout, spec: &CutSpec) -> Result<Cut> {
        spec.validate()?;
        if let Some(why) = cut_unavailable(layout) {
            bail!("{why}");
        }
        let handles = CutHandles::of(layout);
        if lo_root()?.1 == handles.root() {
            // A cut of this lab that a killed process left.
            tc(&uncut_command(handles))?;
        }
        let mut cut = Cut {
            handles,
            spec: *spec,
            lo_mtu: lo_mtu(),
            active: true,
        };
        let cmds = cut_commands(
            handles,
            layout.replication_host(spec.replica),
            layout.mysql_port(0),
            spec,
            cut.lo_mtu,
        );
        for args in &cmds {
            if let Err(e) = tc(args) {
                let netem_missing = spec.needs_netem()
                    && args.iter().any(|a| a == "netem")
                    && e.to_string().contains("unknown");
                // Nothing half-installed stays on lo.
                if let Err(undo) = cut.end_now() {
                    eprintln!("lab: removing the half-installed cut: {undo:#}");
                }
                if netem_missing {
                    bail!(
                        "{e:#} — this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module \
                         sch_netem), which --delay-ms and --loss-pct need; --rate-kbit alone \
                         needs only HTB and TBF"
                    );
                }
                return Err(e);
            }
        }
        Ok(cut)
    }

    /// What has gone through the cut so far (`None` if it cannot be read).
    pub fn stats(&self) -> Option<CutStats> {
        let json = tc(&strings(&["-s", "-j", "qdisc", "show", "dev", "lo"])).ok()?;
        leaf_stats(&json, self.handles)
    }

    fn end_now(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let (_, handle) = lo_root()?;
        if handle == self.handles.root() {
            tc(&uncut_command(self.handles))?;
        }
        Ok(())
    }

    /// Ends the cut: lifts it ([`release_commands`]), waits (at most [`CUT_DRAIN_MAX`] plus
    /// the delay) until its queue has drained, then removes the qdisc. Removing it with
    /// packets queued would drop them, and TCP sends them again only after its retransmission
    /// timeout, which the queueing has inflated: in a first campaign run that held the
    /// replica's stream still for 33 s after the cut was gone.
    pub async fn end(mut self) -> Result<CutEnd> {
        let started = tokio::time::Instant::now();
        let before = self.stats();
        let bound = CUT_DRAIN_MAX + Duration::from_millis(u64::from(self.spec.delay_ms));
        let mut drained = false;
        let lifted = release_commands(self.handles, &self.spec, self.lo_mtu)
            .iter()
            .try_for_each(|args| tc(args).map(|_| ()));
        if lifted.is_ok() {
            while started.elapsed() < bound {
                match self.stats() {
                    Some(s) if s.backlog_bytes == 0 => {
                        drained = true;
                        break;
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    None => break,
                }
            }
        }
        let stats = self.stats().or(before).unwrap_or_default();
        self.end_now()?;
        Ok(CutEnd {
            stats,
            drained,
            drain_s: started.elapsed().as_secs_f64(),
        })
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(e) = self.end_now() {
            eprintln!("lab: removing the network cut from lo: {e:#}");
        }
    }
}

/// A replica's lag as seen three ways at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LagReading {
    /// Heartbeat lag read on the replica itself, seconds.
    pub heartbeat_s: Option<f64>,
    /// `Seconds_Behind_Master` (`SHOW SLAVE STATUS`; NULL: `None`).
    pub seconds_behind_master: Option<f64>,
    /// The heartbeat lag in Prometheus (what Weir reads), seconds.
    pub prometheus_s: Option<f64>,
    /// mysqld_exporter's `mysql_slave_status_seconds_behind_master` in Prometheus.
    pub prometheus_sbm: Option<f64>,
}

/// The Prometheus query of replica `server`'s heartbeat lag (Weir's default lag query, for
/// one server).
pub fn heartbeat_lag_query(server: &str) -> String {
    format!(
        "mysql_heartbeat_now_timestamp_seconds{{server=\"{server}\"}} - \
         mysql_heartbeat_stored_timestamp_seconds{{server=\"{server}\"}}"
    )
}

/// `Seconds_Behind_Master` of the replica `conn` is on.
pub async fn seconds_behind_master(conn: &mut Conn) -> Option<f64> {
    let row: mysql_async::Row = conn.query_first("SHOW SLAVE STATUS").await.ok()??;
    row.get_opt::<Option<u64>, _>("Seconds_Behind_Master")?
        .ok()?
        .map(|v| v as f64)
}

/// Reads replica `i`'s lag every way at once (`conn`: root on the replica, reconnected if
/// it broke).
pub async fn read_lag(layout: &Layout, i: usize, conn: &mut Option<Conn>) -> LagReading {
    if conn.is_none() {
        *conn = Conn::new(cluster::root(layout.mysql_port(i))).await.ok();
    }
    let mut r = LagReading::default();
    if let Some(c) = conn.as_mut() {
        r.heartbeat_s = cluster::heartbeat_lag(c).await;
        r.seconds_behind_master = seconds_behind_master(c).await;
        if r.heartbeat_s.is_none() {
            *conn = None;
        }
    }
    let prom = format!("http://127.0.0.1:{}", layout.prometheus_port());
    let server = SERVERS[i];
    r.prometheus_s = crate::lab::prom_scalar(&prom, &heartbeat_lag_query(server))
        .await
        .ok();
    r.prometheus_sbm = crate::lab::prom_scalar(
        &prom,
        &format!("mysql_slave_status_seconds_behind_master{{server=\"{server}\"}}"),
    )
    .await
    .ok();
    r
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |x| format!("{x:.1}"))
}

/// `weir-lab fault cut`: cuts replica `spec.replica` of the running lab in `layout` for
/// `duration` (or until `stop` completes), printing its lag every second, then removes the
/// cut and follows the lag until it is back under `slo_s` (at most 60 s).
pub async fn cut_cli(
    layout: &Layout,
    spec: &CutSpec,
    duration: Duration,
    slo_s: f64,
    stop: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let i = spec.replica;
    let cut = Cut::start(layout, spec)?;
    println!(
        "{}'s replication ({} → 127.0.0.1:{}) cut on lo: {}; for {:.0} s",
        SERVERS[i],
        layout.replication_host(i),
        layout.mysql_port(0),
        spec.describe(),
        duration.as_secs_f64()
    );
    println!(
        "  t(s)  heartbeat lag (s)  in Prometheus (s)  Seconds_Behind_Master  exporter's SBM  bytes through  queued  dropped"
    );
    let started = tokio::time::Instant::now();
    let mut conn = None;
    let mut worst = LagReading::default();
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stopped = loop {
        tokio::select! {
            r = &mut stop => { r?; break true; }
            _ = tick.tick() => {}
        }
        let t = started.elapsed();
        let lag = read_lag(layout, i, &mut conn).await;
        worst.heartbeat_s = max(worst.heartbeat_s, lag.heartbeat_s);
        worst.prometheus_s = max(worst.prometheus_s, lag.prometheus_s);
        worst.seconds_behind_master = max(worst.seconds_behind_master, lag.seconds_behind_master);
        worst.prometheus_sbm = max(worst.prometheus_sbm, lag.prometheus_sbm);
        let st = cut.stats().unwrap_or_default();
        println!(
            "  {:>4.0}  {:>17}  {:>17}  {:>21}  {:>14}  {:>13}  {:>6}  {:>7}",
            t.as_secs_f64(),
            opt_s(lag.heartbeat_s),
            opt_s(lag.prometheus_s),
            opt_s(lag.seconds_behind_master),
            opt_s(lag.prometheus_sbm),
            st.bytes,
            st.backlog_bytes,
            st.drops
        );
        if t >= duration {
            break false;
        }
    };
    let end = cut.end().await?;
    let ended = tokio::time::Instant::now();
    let st = end.stats;
    println!(
        "cut removed{} after {:.1} s ({}, {:.2} s): {} bytes in {} packets went through it, {} dropped",
        if stopped { " (signal)" } else { "" },
        started.elapsed().as_secs_f64(),
        if end.drained {
            "its queue drained first"
        } else {
            "its queue did NOT drain: what was queued was dropped"
        },
        end.drain_s,
        st.bytes,
        st.packets,
        st.drops
    );
    println!(
        "worst during the cut: heartbeat lag {} s (Prometheus {} s), Seconds_Behind_Master {} s (exporter {} s)",
        opt_s(worst.heartbeat_s),
        opt_s(worst.prometheus_s),
        opt_s(worst.seconds_behind_master),
        opt_s(worst.prometheus_sbm)
    );
    loop {
        let lag = read_lag(layout, i, &mut conn).await;
        if lag.heartbeat_s.is_some_and(|l| l < slo_s) {
            println!(
                "{} back under {slo_s} s of heartbeat lag {:.1} s after the cut was removed",
                SERVERS[i],
                ended.elapsed().as_secs_f64()
            );
            break;
        }
        if ended.elapsed() > Duration::from_secs(60) {
            println!(
                "{} still {} s behind 60 s after the cut was removed",
                SERVERS[i],
                opt_s(lag.heartbeat_s)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(c) = conn {
        c.disconnect().await.ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate_kbit: u32, delay_ms: u32, loss_pct: f64) -> CutSpec {
        CutSpec {
            replica: 1,
            delay_ms,
            loss_pct,
            rate_kbit,
        }
    }

    fn joined(cmds: &[Vec<String>]) -> Vec<String> {
        cmds.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn a_rate_only_cut_is_a_tbf_under_a_classifying_htb_with_a_filter_each_way() {
        let l = Layout::new("/tmp/lab", 23500).expect("layout");
        let h = CutHandles::of(&l);
        let s = spec(48, 0, 0.0);
        let c = joined(&cut_commands(
            h,
            l.replication_host(1),
            l.mysql_port(0),
            &s,
            65536,
        ));
        assert_eq!(
            c,
            [
                "qdisc add dev lo root handle 5bcc: htb default 0",
                "class add dev lo parent 5bcc: classid 5bcc:1 htb rate 100000000kbit ceil 100000000kbit quantum 65536",
                "qdisc add dev lo parent 5bcc:1 handle 5bcd: tbf rate 48kbit burst 66560 limit 16777216",
                "filter add dev lo parent 5bcc: protocol ip prio 1 u32 match ip protocol 6 0xff match ip dst 127.0.0.2/32 match ip dport 23500 0xffff flowid 5bcc:1",
                "filter add dev lo parent 5bcc: protocol ip prio 1 u32 match ip protocol 6 0xff match ip src 127.0.0.2/32 match ip sport 23500 0xffff flowid 5bcc:1",
            ]
        );
        assert_eq!(
            joined(&release_commands(h, &s, 65536)),
            [
                "qdisc change dev lo parent 5bcc:1 handle 5bcd: tbf rate 100000000kbit burst 66560 limit 16777216"
            ]
        );
        assert_eq!(
            uncut_command(h).join(" "),
            "qdisc del dev lo root handle 5bcc:"
        );
    }

    #[test]
    fn delay_and_loss_use_netem_with_the_tbf_under_it_when_there_is_a_rate() {
        let l = Layout::new("/tmp/lab", 25500).expect("layout");
        let h = CutHandles::of(&l);
        let netem_only = spec(0, 250, 1.5);
        let c = joined(&cut_commands(
            h,
            l.replication_host(2),
            l.mysql_port(0),
            &netem_only,
            65536,
        ));
        assert_eq!(c.len(), 5, "{c:?}");
        assert_eq!(
            c[2],
            "qdisc add dev lo parent 639c:1 handle 639d: netem limit 10000 delay 250ms loss 1.5%"
        );
        assert!(c[3].contains("match ip dst 127.0.0.3/32 match ip dport 25500 0xffff"));
        assert_eq!(
            joined(&release_commands(h, &netem_only, 65536)),
            ["qdisc change dev lo parent 639c:1 handle 639d: netem limit 10000"]
        );
        let both = spec(64, 100, 0.0);
        let c = joined(&cut_commands(
            h,
            l.replication_host(2),
            l.mysql_port(0),
            &both,
            16436,
        ));
        assert_eq!(
            c[2..4],
            [
                "qdisc add dev lo parent 639c:1 handle 639d: netem limit 10000 delay 100ms",
                "qdisc add dev lo parent 639d:1 handle 639e: tbf rate 64kbit burst 17460 limit 16777216"
            ]
        );
        assert_eq!(
            joined(&release_commands(h, &both, 16436)),
            [
                "qdisc change dev lo parent 639c:1 handle 639d: netem limit 10000",
                "qdisc change dev lo parent 639d:1 handle 639e: tbf rate 100000000kbit burst 17460 limit 16777216"
            ]
        );
    }

    #[test]
    fn specs_that_impair_nothing_or_name_no_replica_are_refused() {
        assert!(spec(48, 0, 0.0).validate().is_ok());
        assert!(spec(0, 100, 0.0).validate().is_ok());
        let e = spec(0, 0, 0.0).validate().expect_err("nothing to do");
        assert!(e.to_string().contains("at least one of"), "{e}");
        assert!(spec(0, 0, 100.0).validate().is_err());
        assert!(spec(0, 0, f64::NAN).validate().is_err());
        assert!(spec(0, 0, -1.0).validate().is_err());
        for replica in [0, SERVERS.len()] {
            let e = CutSpec {
                replica,
                ..spec(48, 0, 0.0)
            }
            .validate()
            .expect_err("no such replica");
            assert!(e.to_string().contains(&format!("replica {replica}")), "{e}");
        }
        assert!(!spec(48, 0, 0.0).needs_netem());
        assert!(spec(48, 0, 0.5).needs_netem());
        assert_eq!(
            spec(48, 200, 1.0).describe(),
            "rate 48 kbit/s, delay 200 ms, loss 1%"
        );
    }

    #[test]
    fn the_root_qdisc_and_the_leaf_counters_are_read_from_tc_json() {
        let free = r#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#;
        assert_eq!(
            root_qdisc(free).expect("root"),
            ("noqueue".to_string(), "0:".to_string())
        );
        let cut = r#"[{"kind":"htb","handle":"5bcc:","root":true,"refcnt":2,"options":{"r2q":10,"default":"0","direct_packets_stat":7,"direct_qlen":1000},"bytes":900,"packets":9,"drops":0,"overlimits":3,"requeues":0,"backlog":0,"qlen":0},{"kind":"pfifo","handle":"5bcd:","parent":"5bcc:1","options":{"limit":10000},"bytes":51234,"packets":180,"drops":2,"overlimits":0,"requeues":0,"backlog":4321,"qlen":12}]"#;
        assert_eq!(
            root_qdisc(cut).expect("root"),
            ("htb".to_string(), "5bcc:".to_string())
        );
        let l = Layout::new("/tmp/lab", 23500).expect("layout");
        assert_eq!(
            leaf_stats(cut, CutHandles::of(&l)),
            Some(CutStats {
                bytes: 51234,
                packets: 180,
                drops: 2,
                backlog_bytes: 4321
            })
        );
        let other = Layout::new("/tmp/lab", 24500).expect("layout");
        assert_eq!(leaf_stats(cut, CutHandles::of(&other)), None);
        assert!(root_qdisc("[]").is_err());
        assert!(root_qdisc("not json").is_err());
    }

    #[test]
    fn the_lag_query_is_one_servers_heartbeat_lag() {
        assert_eq!(
            heartbeat_lag_query("replica-1"),
            "mysql_heartbeat_now_timestamp_seconds{server=\"replica-1\"} - mysql_heartbeat_stored_timestamp_seconds{server=\"replica-1\"}"
        );
    }
}
