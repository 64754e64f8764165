//! Processes the lab starts, and exactly those: each is recorded (pid + kernel start time)
//! in the run directory's state file the moment it is spawned, so `weir-lab down` — or the
//! next `up` after a crash — stops what this lab started and nothing else, even if a pid
//! has since been reused by another program.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// One started process as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// What it is (`mariadb primary`, `prometheus`, ...).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`), `None` if it is gone.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3; field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// CPU time (user + system) of `pid` in clock ticks, `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (indices 11 and 12 after field 3).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

/// Whether the recorded process is still the one we started.
pub fn is_alive(t: &Tracked) -> bool {
    start_ticks(t.pid) == Some(t.start_ticks)
}

/// The state file: the list of processes this lab started.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    tracked: Vec<Tracked>,
}

impl Registry {
    /// Opens (or starts) the registry at `path`.
    pub fn open(path: &Path) -> Result<Registry> {
        let tracked = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: not a lab state file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Registry {
            path: path.to_path_buf(),
            tracked,
        })
    }

    /// Everything recorded.
    pub fn tracked(&self) -> &[Tracked] {
        &self.tracked
    }

    /// Spawns `cmd` with stdout and stderr into `log`, records it, and returns the child.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) -> Result<Child> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log {}", log.display()))?;
        self.spawn_into(name, cmd, out)
    }

    /// [`Registry::spawn`], appending to `log` (a restarted process keeps the log of the run
    /// before it).
    pub fn spawn_appending(&mut self, name: &str, cmd: &mut Command, log: &Path) -> Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        self.spawn_into(name, cmd, out)
    }

    fn spawn_into(&mut self, name: &str, cmd: &mut Command, out: std::fs::File) -> Result<Child> {
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        let start = start_ticks(pid).unwrap_or(0);
        self.sync_from_disk();
        self.tracked.push(Tracked {
            name: name.to_string(),
            pid,
            start_ticks: start,
        });
        self.save()?;
        Ok(child)
    }

    /// Forgets a process that has been stopped.
    pub fn forget(&mut self, pid: u32) -> Result<()> {
        self.sync_from_disk();
        self.tracked.retain(|t| t.pid != pid);
        self.save()
    }

    /// Stops every recorded process that is still the one we started (SIGTERM, then SIGKILL
    /// after `grace`), newest first, and empties the file. Returns what was stopped.
    pub fn stop_all(&mut self, grace: Duration) -> Result<Vec<String>> {
        self.sync_from_disk();
        let mut stopped = Vec::new();
        for t in self.tracked.clone().iter().rev() {
            if stop(t, grace) {
                stopped.push(format!("{} (pid {})", t.name, t.pid));
            }
        }
        self.tracked.clear();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.path.display())),
        }
        Ok(stopped)
    }

    /// Adds what another `weir-lab` command (a fault that restarted a server) recorded
    /// since we read the file, so neither overwrites the other's processes.
    fn sync_from_disk(&mut self) {
        if let Ok(on_disk) = Registry::open(&self.path) {
            for t in on_disk.tracked {
                if !self.tracked.contains(&t) && is_alive(&t) {
                    self.tracked.push(t);
                }
            }
        }
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.tracked)?;
        write_atomic(&self.path, text.as_bytes())
    }
}

/// Stops one recorded process if it is still ours; true if it was running.
pub fn stop(t: &Tracked, grace: Duration) -> bool {
    // A zombie already exited: its parent only has to reap it.
    if !is_alive(t) || is_zombie(t.pid) {
        return false;
    }
    let pid = Pid::from_raw(t.pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(t) || is_zombie(t.pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
    true
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Sends SIGTERM to a child we hold (for a graceful stop; `Child::kill` is SIGKILL).
pub fn terminate(child: &Child) -> Result<()> {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)
        .with_context(|| format!("SIGTERM to pid {}", child.id()))
}

/// Sends SIGKILL to a pid we started (a crash, for fault injection).
pub fn crash(pid: u32) -> Result<()> {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).with_context(|| format!("SIGKILL to {pid}"))
}

/// Writes `bytes` to `path` atomically (Weir's own helper: temp file named per process,
/// fsync, rename, directory fsync — so `up` and a concurrent `fault restart` never clobber
/// each other's temp file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    weir_persist::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Finds `name` on the PATH or in the sbin directories, or fails with the package to install.
pub fn find_binary(name: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{name}` not found: install the Debian package `{package}` \
                 (`cargo xtask test` does, or `apt-get install -y {package}`)"
            )
        })
}

/// Waits for `child` to exit, at most `wait`; kills it after that.
pub fn wait_or_kill(child: &mut Child, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            bail!("pid {} did not exit within {wait:?}; killed", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_parses_names_with_spaces_and_parens() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).expect("own stat");
        let me = Tracked {
            name: "me".into(),
            pid,
            start_ticks: ticks,
        };
        assert!(is_alive(&me));
        assert!(!is_alive(&Tracked {
            start_ticks: ticks + 1,
            ..me
        }));
        assert!(cpu_ticks(pid).is_some());
    }

    #[test]
    fn registry_records_and_stops_exactly_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state.json");
        let mut reg = Registry::open(&state).expect("open");
        let mut child = reg
            .spawn(
                "sleeper",
                Command::new("sleep").arg("30"),
                &dir.path().join("s.log"),
            )
            .expect("spawn");
        let reopened = Registry::open(&state).expect("reopen");
        assert_eq!(reopened.tracked().len(), 1);
        assert_eq!(reopened.tracked()[0].pid, child.id());
        let stopped = reg.stop_all(Duration::from_secs(2)).expect("stop");
        assert_eq!(stopped.len(), 1, "{stopped:?}");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "sleep was stopped, not finished");
        assert!(!state.exists());
    }

    #[test]
    fn a_corrupt_state_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("lab-state.json");
        std::fs::write(&state, "{not json").expect("write");
        let e = Registry::open(&state).expect_err("corrupt");
        assert!(format!("{e:#}").contains("lab-state.json"), "{e:#}");
    }
}
