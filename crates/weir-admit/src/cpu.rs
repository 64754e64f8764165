//! [`CgroupCpu`]: the CPU utilisation of what this process may use — its cgroup's CPU quota
//! where it has one, the host's CPUs otherwise — as a [`CpuGauge`].
//!
//! **This is where weir-admit does IO**, and only off the request path: [`CgroupCpu::sample`]
//! reads the files and stores the utilisation since the previous reading; a sampler thread
//! ([`CgroupCpu::spawn_sampler`]) calls it periodically; [`CpuGauge::utilisation`] is one
//! atomic load. Sources, in order: cgroup v2 (`cpu.stat` `usage_usec` over the tightest
//! `cpu.max` of the cgroup and its ancestors, "max" meaning the host's CPUs), cgroup v1
//! (`cpuacct.usage` over `cpu.cfs_quota_us`/`cpu.cfs_period_us`), the host's `/proc/stat`.
//! The process's cgroup comes from `/proc/self/cgroup`; both roots are injectable so tests
//! read fixture files.
//!
//! Hand-written: the kept crates read host CPU (`sysinfo`) or parse cgroups for other ends
//! (CPU counts for thread pools), none turns a cgroup quota into a utilisation.
//! **Never:** read files on the request path, panic on a malformed or missing file (an error
//! or an unknown utilisation instead), or report host CPU when a cgroup quota is readable.
//! Not read: `cpuset` restrictions (a container pinned to fewer CPUs without a quota is
//! measured against the host's CPUs).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::controller::CpuGauge;

/// Reading the CPU failed.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A file could not be read. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("cannot read {path}: {error}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file does not say what it should.
    #[error("{path} is malformed: expected {expected}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
}

/// Where the utilisation is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// cgroup v2: `cpu.stat` and `cpu.max`.
    CgroupV2,
    /// cgroup v1: `cpuacct.usage` and `cpu.cfs_quota_us`/`cpu.cfs_period_us`.
    CgroupV1,
    /// The host's `/proc/stat`.
    Host,
}

/// A CPU quota.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Quota {
    /// No quota: the host's CPUs.
    Unlimited,
    /// This many CPUs' worth of time.
    Cpus(f64),
}

/// The cgroup paths of `/proc/self/cgroup`.
#[derive(Debug, Default, PartialEq, Eq)]
struct SelfCgroup {
    /// The unified (v2) hierarchy's path (the `0::` line).
    v2: Option<String>,
    /// The v1 `cpuacct` controller's path.
    cpuacct: Option<String>,
    /// The v1 `cpu` controller's path.
    cpu: Option<String>,
}

/// The aggregate line of `/proc/stat`, and the number of CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    /// Jiffies not idle (idle and iowait excluded).
    busy: u64,
    /// All jiffies (user to steal).
    total: u64,
    /// `cpuN` lines.
    cpus: u32,
}

fn parse_self_cgroup(text: &str) -> SelfCgroup {
    let mut out = SelfCgroup::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            out.v2 = Some(path.to_string());
            continue;
        }
        for c in controllers.split(',') {
            match c {
                "cpuacct" => out.cpuacct = Some(path.to_string()),
                "cpu" => out.cpu = Some(path.to_string()),
                _ => {}
            }
        }
    }
    out
}

/// `usage_usec` of a v2 `cpu.stat`.
fn parse_cpu_stat_usage_usec(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some("usage_usec"))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// A v2 `cpu.max`: `"max 100000"` or `"200000 100000"` (quota and period in µs).
fn parse_cpu_max(text: &str) -> Option<Quota> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period = it.next().map(str::parse::<u64>);
    if it.next().is_some() {
        return None;
    }
    if quota == "max" {
        return match period {
            None | Some(Ok(_)) => Some(Quota::Unlimited),
            Some(Err(_)) => None,
        };
    }
    let quota: u64 = quota.parse().ok()?;
    let period = period?.ok()?;
    (quota > 0 && period > 0).then(|| Quota::Cpus(quota as f64 / period as f64))
}

/// v1 `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`.
fn parse_cfs(quota: &str, period: &str) -> Option<Quota> {
    let quota: i64 = quota.trim().parse().ok()?;
    if quota == -1 {
        return Some(Quota::Unlimited);
    }
    let period: u64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| Quota::Cpus(quota as f64 / period as f64))
}

fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    if fields.next() != Some("cpu") {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let v: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if v.len() < 4 {
        return None;
    }
    let total = v.iter().try_fold(0u64, |a, &x| a.checked_add(x))?;
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let cpus = lines
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some(ProcStat {
        busy: total.checked_sub(idle)?,
        total,
        cpus: u32::try_from(cpus).ok()?,
    })
}

fn read(path: &Path) -> Result<String, CpuError> {
    std::fs::read_to_string(path).map_err(|error| CpuError::Unreadable {
        path: path.to_path_buf(),
        error,
    })
}

fn malformed(path: &Path, expected: &'static str) -> CpuError {
    CpuError::Malformed {
        path: path.to_path_buf(),
        expected,
    }
}

/// `base` joined with a cgroup path, or `base` itself when that directory is not there (a
/// container sees its own cgroup at the mount's root while `/proc/self/cgroup` names the
/// host's path).
fn cgroup_dir(base: &Path, path: &str) -> PathBuf {
    let dir = base.join(path.trim_start_matches('/'));
    if dir.is_dir() {
        dir
    } else {
        base.to_path_buf()
    }
}

enum Source {
    V2 {
        /// The process's cgroup.
        dir: PathBuf,
        /// The hierarchy's root: quotas are read from `dir` up to here.
        root: PathBuf,
    },
    V1 {
        /// The `cpuacct` cgroup directory.
        acct: PathBuf,
        /// The `cpu` cgroup directory and its mount root, if mounted.
        cpu: Option<(PathBuf, PathBuf)>,
    },
    Host,
}

enum Reading {
    Usage { at: Instant, usage_us: u64 },
    Host { busy: u64, total: u64 },
}

/// No utilisation known (a NaN pattern that computed values never have).
const UNKNOWN: u64 = u64::MAX;

/// The CPU utilisation of this process's cgroup (or the host). See the module doc.
pub struct CgroupCpu {
    proc_root: PathBuf,
    source: Source,
    host_cpus: u32,
    last: Mutex<Option<Reading>>,
    utilisation: AtomicU64,
}

impl CgroupCpu {
    /// Reads the real `/proc` and `/sys/fs/cgroup`.
    pub fn detect() -> Result<CgroupCpu, CpuError> {
        CgroupCpu::at("/proc", "/sys/fs/cgroup")
    }

    /// Reads `<proc_root>/stat`, `<proc_root>/self/cgroup` and the cgroup files under
    /// `cgroup_root`, and picks the source: cgroup v2, else v1, else the host. Fails only when
    /// `<proc_root>/stat` (the host's CPUs) cannot be read.
    pub fn at(
        proc_root: impl Into<PathBuf>,
        cgroup_root: impl Into<PathBuf>,
    ) -> Result<CgroupCpu, CpuError> {
        let proc_root = proc_root.into();
        let cgroup_root = cgroup_root.into();
        let stat_path = proc_root.join("stat");
        let stat = parse_proc_stat(&read(&stat_path)?)
            .ok_or_else(|| malformed(&stat_path, "an aggregate \"cpu\" line of numbers"))?;
        let cgroups = read(&proc_root.join("self/cgroup"))
            .map(|t| parse_self_cgroup(&t))
            .unwrap_or_default();
        let source = Self::pick(&cgroup_root, &cgroups);
        Ok(CgroupCpu {
            proc_root,
            source,
            host_cpus: stat.cpus.max(1),
            last: Mutex::new(None),
            utilisation: AtomicU64::new(UNKNOWN),
        })
    }

    fn pick(root: &Path, cgroups: &SelfCgroup) -> Source {
        if let Some(path) = &cgroups.v2 {
            let dir = cgroup_dir(root, path);
            let usable = read(&dir.join("cpu.stat"))
                .ok()
                .and_then(|t| parse_cpu_stat_usage_usec(&t))
                .is_some();
            if usable {
                return Source::V2 {
                    dir,
                    root: root.to_path_buf(),
                };
            }
        }
        let mount = |names: &[&str]| names.iter().map(|n| root.join(n)).find(|p| p.is_dir());
        if let Some(path) = &cgroups.cpuacct
            && let Some(base) = mount(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"])
        {
            let acct = cgroup_dir(&base, path);
            if acct.join("cpuacct.usage").is_file() {
                let cpu = cgroups.cpu.as_ref().and_then(|p| {
                    let base = mount(&["cpu", "cpu,cpuacct", "cpuacct,cpu"])?;
                    Some((cgroup_dir(&base, p), base))
                });
                return Source::V1 { acct, cpu };
            }
        }
        Source::Host
    }

    /// Where the utilisation is read from.
    pub fn source(&self) -> CpuSource {
        match self.source {
            Source::V2 { .. } => CpuSource::CgroupV2,
            Source::V1 { .. } => CpuSource::CgroupV1,
            Source::Host => CpuSource::Host,
        }
    }

    /// The host's CPUs (the `cpuN` lines of `/proc/stat`).
    pub fn host_cpus(&self) -> u32 {
        self.host_cpus
    }

    /// The CPUs' worth of time the process may use now: the tightest quota of its cgroup and
    /// the cgroup's ancestors, at most the host's CPUs.
    pub fn quota_cpus(&self) -> Result<f64, CpuError> {
        let host = f64::from(self.host_cpus);
        let quota = match &self.source {
            Source::V2 { dir, root } => tightest(dir, root, |d| {
                let p = d.join("cpu.max");
                match std::fs::read_to_string(&p) {
                    Err(_) => Ok(None), // the root cgroup has no cpu.max
                    Ok(t) => parse_cpu_max(&t)
                        .map(Some)
                        .ok_or_else(|| malformed(&p, "\"max PERIOD\" or \"QUOTA PERIOD\"")),
                }
            })?,
            Source::V1 {
                cpu: Some((dir, root)),
                ..
            } => tightest(dir, root, |d| {
                let (q, p) = (d.join("cpu.cfs_quota_us"), d.join("cpu.cfs_period_us"));
                match (std::fs::read_to_string(&q), std::fs::read_to_string(&p)) {
                    (Ok(qt), Ok(pt)) => parse_cfs(&qt, &pt).map(Some).ok_or_else(|| {
                        malformed(&q, "-1 or a positive quota over a positive period")
                    }),
                    _ => Ok(None),
                }
            })?,
            Source::V1 { cpu: None, .. } | Source::Host => Quota::Unlimited,
        };
        Ok(match quota {
            Quota::Unlimited => host,
            Quota::Cpus(c) => c.min(host),
        })
    }

    /// Reads the files and stores the utilisation since the previous call (`now` is when
    /// this reading is taken). The first call only records a reading: the utilisation stays
    /// unknown until the second. On an error the utilisation becomes unknown.
    pub fn sample(&self, now: Instant) -> Result<Option<f64>, CpuError> {
        let result = self.read_and_compare(now);
        let util = match &result {
            Ok(Some(u)) => u.to_bits(),
            Ok(None) | Err(_) => UNKNOWN,
        };
        self.utilisation.store(util, Ordering::Relaxed);
        result
    }

    fn read_and_compare(&self, now: Instant) -> Result<Option<f64>, CpuError> {
        let reading = match &self.source {
            Source::V2 { dir, .. } => {
                let p = dir.join("cpu.stat");
                let usage_us = parse_cpu_stat_usage_usec(&read(&p)?)
                    .ok_or_else(|| malformed(&p, "a \"usage_usec N\" line"))?;
                Reading::Usage { at: now, usage_us }
            }
            Source::V1 { acct, .. } => {
                let p = acct.join("cpuacct.usage");
                let ns: u64 = read(&p)?
                    .trim()
                    .parse()
                    .map_err(|_| malformed(&p, "nanoseconds as one integer"))?;
                Reading::Usage {
                    at: now,
                    usage_us: ns / 1000,
                }
            }
            Source::Host => {
                let p = self.proc_root.join("stat");
                let s = parse_proc_stat(&read(&p)?)
                    .ok_or_else(|| malformed(&p, "an aggregate \"cpu\" line of numbers"))?;
                Reading::Host {
                    busy: s.busy,
                    total: s.total,
                }
            }
        };
        let cpus = match reading {
            Reading::Usage { .. } => self.quota_cpus()?,
            Reading::Host { .. } => 1.0,
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let util = match (last.as_ref(), &reading) {
            (
                Some(Reading::Usage { at, usage_us }),
                Reading::Usage {
                    at: now,
                    usage_us: u,
                },
            ) => {
                let dt = now.saturating_duration_since(*at).as_secs_f64();
                let used = u.checked_sub(*usage_us).map(|d| d as f64 / 1e6);
                used.filter(|_| dt > 0.0).map(|used| used / (dt * cpus))
            }
            (Some(Reading::Host { busy, total }), Reading::Host { busy: b, total: t }) => {
                match (b.checked_sub(*busy), t.checked_sub(*total)) {
                    (Some(db), Some(dt)) if dt > 0 => Some(db as f64 / dt as f64),
                    _ => None,
                }
            }
            _ => None,
        };
        *last = Some(reading);
        Ok(util)
    }

    /// A thread that calls [`CgroupCpu::sample`] every `every` (at least 10 ms) with the real
    /// clock, and ends once every other handle to the gauge is dropped.
    pub fn spawn_sampler(self: Arc<Self>, every: Duration) -> std::io::Result<JoinHandle<()>> {
        let every = every.max(Duration::from_millis(10));
        let weak = Arc::downgrade(&self);
        drop(self);
        std::thread::Builder::new()
            .name("weir-admit-cpu".into())
            .spawn(move || {
                while let Some(gauge) = weak.upgrade() {
                    // An error leaves the utilisation unknown; the next tick tries again.
                    let _ = gauge.sample(Instant::now());
                    drop(gauge);
                    std::thread::sleep(every);
                }
            })
    }
}

/// The tightest quota read by `quota_of` from `dir` up to `root` (both included).
fn tightest(
    dir: &Path,
    root: &Path,
    quota_of: impl Fn(&Path) -> Result<Option<Quota>, CpuError>,
) -> Result<Quota, CpuError> {
    let mut best = Quota::Unlimited;
    for d in dir.ancestors() {
        if let Some(Quota::Cpus(c)) = quota_of(d)? {
            best = match best {
                Quota::Cpus(b) if b <= c => best,
                _ => Quota::Cpus(c),
            };
        }
        if d == root || !d.starts_with(root) {
            break;
        }
    }
    Ok(best)
}

impl CpuGauge for CgroupCpu {
    fn utilisation(&self) -> Option<f64> {
        let bits = self.utilisation.load(Ordering::Relaxed);
        (bits != UNKNOWN).then(|| f64::from_bits(bits))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAT_4_CPUS: &str = "cpu  100 0 100 800 0 0 0 0 0 0\n\
        cpu0 25 0 25 200 0 0 0 0 0 0\ncpu1 25 0 25 200 0 0 0 0 0 0\n\
        cpu2 25 0 25 200 0 0 0 0 0 0\ncpu3 25 0 25 200 0 0 0 0 0 0\n\
        intr 12345\nctxt 99\ncpufreq 1\n";

    /// A fake `/proc` and `/sys/fs/cgroup` in a temp dir.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(self_cgroup: Option<&str>) -> Fixture {
            let f = Fixture {
                dir: tempfile::tempdir().unwrap(),
            };
            f.write("proc/stat", STAT_4_CPUS);
            if let Some(c) = self_cgroup {
                f.write("proc/self/cgroup", c);
            }
            std::fs::create_dir_all(f.dir.path().join("cg")).unwrap();
            f
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn gauge(&self) -> CgroupCpu {
            CgroupCpu::at(self.dir.path().join("proc"), self.dir.path().join("cg")).unwrap()
        }
        /// Writes each `(text, at_s)` to `rel` and samples at `T0 + at_s`; the last result.
        fn readings(&self, g: &CgroupCpu, rel: &str, steps: &[(&str, f64)]) -> Option<f64> {
            let t0 = *T0.get_or_init(Instant::now);
            let mut last = None;
            for &(text, at_s) in steps {
                self.write(rel, text);
                last = g.sample(t0 + secs(at_s)).unwrap();
            }
            last
        }
    }

    /// One origin for every reading of a test's gauge.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn cpu_max_parses_quota_max_and_refuses_garbage() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(Quota::Cpus(2.0)));
        assert_eq!(parse_cpu_max("50000 100000"), Some(Quota::Cpus(0.5)));
        assert_eq!(parse_cpu_max("max 100000\n"), Some(Quota::Unlimited));
        assert_eq!(parse_cpu_max("max"), Some(Quota::Unlimited));
        for bad in [
            "",
            "abc 100000",
            "100000",
            "100000 0",
            "0 100000",
            "1 2 3",
            "max x",
        ] {
            assert_eq!(parse_cpu_max(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cfs_quota_parses_and_refuses_garbage() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), Some(Quota::Unlimited));
        assert_eq!(parse_cfs("150000\n", "100000\n"), Some(Quota::Cpus(1.5)));
        for (q, p) in [
            ("", "100000"),
            ("x", "100000"),
            ("100", "0"),
            ("0", "100"),
            ("-5", "1"),
        ] {
            assert_eq!(parse_cfs(q, p), None, "{q:?} {p:?}");
        }
    }

    #[test]
    fn self_cgroup_finds_the_v2_path_and_the_v1_controllers() {
        let hybrid = "9:name=systemd:/\n4:memory:/m\n3:cpu,cpuacct:/docker/abc\n0::/user.slice\n";
        assert_eq!(
            parse_self_cgroup(hybrid),
            SelfCgroup {
                v2: Some("/user.slice".into()),
                cpuacct: Some("/docker/abc".into()),
                cpu: Some("/docker/abc".into()),
            }
        );
        assert_eq!(parse_self_cgroup("garbage\n\n::\n"), SelfCgroup::default());
    }

    #[test]
    fn cpu_stat_and_proc_stat_parse_and_refuse_garbage() {
        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_cpu_stat_usage_usec(stat), Some(123_456));
        assert_eq!(parse_cpu_stat_usage_usec("usage_usec x\n"), None);
        assert_eq!(parse_cpu_stat_usage_usec("user_usec 5\n"), None);
        assert_eq!(
            parse_proc_stat(STAT_4_CPUS),
            Some(ProcStat {
                busy: 200,
                total: 1000,
                cpus: 4
            })
        );
        for bad in [
            "",
            "intr 1\n",
            "cpu a b c d\n",
            "cpu 1 2\n",
            "cpu0 1 2 3 4\n",
        ] {
            assert_eq!(parse_proc_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn v2_measures_against_the_tightest_quota_of_the_cgroup_and_its_parents() {
        let f = Fixture::new(Some("0::/kubepods/pod1/ctr\n"));
        f.write("cg/kubepods/pod1/cpu.max", "200000 100000\n");
        f.write("cg/kubepods/pod1/ctr/cpu.max", "max 100000\n");
        f.write("cg/kubepods/pod1/ctr/cpu.stat", "usage_usec 1000000\n");
        let g = f.gauge();
        assert_eq!(g.source(), CpuSource::CgroupV2);
        assert_eq!(g.quota_cpus().unwrap(), 2.0);
        let t0 = Instant::now();
        assert_eq!(g.sample(t0).unwrap(), None, "one reading is no rate");
        assert_eq!(g.utilisation(), None);
        // One CPU-second in one second, of a two-CPU quota.
        f.write("cg/kubepods/pod1/ctr/cpu.stat", "usage_usec 2000000\n");
        assert_eq!(g.sample(t0 + secs(1.0)).unwrap(), Some(0.5));
        assert_eq!(g.utilisation(), Some(0.5));
        // The quota shrinks at run time to one CPU: the same use is now all of it.
        f.write("cg/kubepods/pod1/ctr/cpu.max", "100000 100000\n");
        f.write("cg/kubepods/pod1/ctr/cpu.stat", "usage_usec 3000000\n");
        assert_eq!(g.sample(t0 + secs(2.0)).unwrap(), Some(1.0));
    }

    #[test]
    fn v2_without_a_quota_measures_against_the_hosts_cpus() {
        // A container's own namespace: /proc/self/cgroup says "/", the root holds the files.
        let f = Fixture::new(Some("0::/\n"));
        f.write("cg/cpu.max", "max 100000\n");
        f.write("cg/cpu.stat", "usage_usec 0\n");
        let g = f.gauge();
        assert_eq!((g.source(), g.host_cpus()), (CpuSource::CgroupV2, 4));
        let steps = [("usage_usec 0\n", 0.0), ("usage_usec 2000000\n", 2.0)];
        assert_eq!(f.readings(&g, "cg/cpu.stat", &steps), Some(0.25));
    }

    #[test]
    fn v1_reads_cpuacct_and_the_cfs_quota() {
        // The host's path is not mounted in the container: the mount root is the cgroup.
        let f = Fixture::new(Some("4:cpu,cpuacct:/docker/abc\n0::/\n"));
        f.write("cg/cpu,cpuacct/cpuacct.usage", "1000000000\n");
        f.write("cg/cpu,cpuacct/cpu.cfs_quota_us", "50000\n");
        f.write("cg/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        let g = f.gauge();
        assert_eq!(g.source(), CpuSource::CgroupV1);
        assert_eq!(g.quota_cpus().unwrap(), 0.5);
        let usage = "cg/cpu,cpuacct/cpuacct.usage";
        let steps = [("1000000000\n", 0.0), ("1250000000\n", 1.0)];
        assert_eq!(f.readings(&g, usage, &steps), Some(0.5));
        // No quota (-1): the host's four CPUs.
        f.write("cg/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        let steps = [("1000000000\n", 2.0), ("2000000000\n", 3.0)];
        assert_eq!(f.readings(&g, usage, &steps), Some(0.25));
    }

    #[test]
    fn without_cgroup_files_the_host_is_measured_from_proc_stat() {
        let f = Fixture::new(None);
        let g = f.gauge();
        assert_eq!(g.source(), CpuSource::Host);
        // 500 busy jiffies of 1000 more.
        let steps = [
            (STAT_4_CPUS, 0.0),
            ("cpu  300 0 400 1300 0 0 0 0 0 0\n", 1.0),
        ];
        assert_eq!(f.readings(&g, "proc/stat", &steps), Some(0.5));
    }

    #[test]
    fn malformed_or_missing_files_are_errors_naming_the_file_and_the_utilisation_unknown() {
        let f = Fixture::new(Some("0::/\n"));
        f.write("cg/cpu.stat", "usage_usec 0\n");
        f.write("cg/cpu.max", "max 100000\n");
        let g = f.gauge();
        let t0 = Instant::now();
        g.sample(t0).unwrap();
        f.write("cg/cpu.stat", "usage_usec 1000\n");
        assert!(g.sample(t0 + secs(1.0)).unwrap().is_some());
        f.write("cg/cpu.max", "lots 100000\n");
        let e = g.sample(t0 + secs(2.0)).unwrap_err().to_string();
        assert!(e.contains("cpu.max is malformed"), "{e}");
        assert_eq!(g.utilisation(), None);
        f.write("cg/cpu.max", "max 100000\n");
        f.write("cg/cpu.stat", "nothing here\n");
        let e = g.sample(t0 + secs(3.0)).unwrap_err().to_string();
        assert!(e.contains("cpu.stat is malformed"), "{e}");
        std::fs::remove_file(f.dir.path().join("cg/cpu.stat")).unwrap();
        let e = g.sample(t0 + secs(4.0)).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("cpu.stat"), "{e}");
        // Without /proc/stat there is nothing to measure against.
        let empty = tempfile::tempdir().unwrap();
        let e = CgroupCpu::at(empty.path(), empty.path())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("stat"), "{e}");
    }

    #[test]
    fn a_counter_going_backwards_gives_no_reading_rather_than_a_negative_one() {
        let f = Fixture::new(Some("0::/\n"));
        f.write("cg/cpu.stat", "usage_usec 5000000\n");
        let g = f.gauge();
        let back = [("usage_usec 5000000\n", 0.0), ("usage_usec 10\n", 1.0)];
        assert_eq!(f.readings(&g, "cg/cpu.stat", &back), None);
        let on = [("usage_usec 1000010\n", 2.0)];
        assert_eq!(f.readings(&g, "cg/cpu.stat", &on), Some(0.25));
    }

    #[test]
    fn the_sampler_thread_fills_the_gauge_and_ends_when_the_gauge_is_dropped() {
        let f = Fixture::new(Some("0::/\n"));
        f.write("cg/cpu.stat", "usage_usec 0\n");
        let g = Arc::new(f.gauge());
        let handle = g.clone().spawn_sampler(Duration::from_millis(10)).unwrap();
        // Bounded wait for two readings (not a timing assertion: 10 s is far beyond a tick).
        for _ in 0..1000 {
            if g.utilisation().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(g.utilisation(), Some(0.0));
        drop(g);
        handle.join().unwrap();
    }

    #[test]
    fn detect_reads_this_machine() {
        let g = CgroupCpu::detect().unwrap();
        let t0 = Instant::now();
        g.sample(t0).unwrap();
        let u = g.sample(t0 + secs(1.0)).unwrap().unwrap();
        assert!(u.is_finite() && u >= 0.0, "{u}");
        assert!(g.quota_cpus().unwrap() > 0.0);
    }
}
