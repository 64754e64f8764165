//! Real components for end-to-end tests: a Prometheus, an HAProxy and a Redis from Debian,
//! started on free 127.0.0.1 ports, and a tiny `/metrics` endpoint whose text the test
//! controls. Every child is killed on drop. Blocking std code only, so any test (or benchmark)
//! can use it.
//!
//! A missing binary is a failure with the command that installs it, never a skipped test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a child may take to come up (Prometheus, HAProxy, Redis start in about a
/// second), and the longest a reply that is on its way may take: deadlines that only a hang
/// reaches, so that a loaded, shared machine never fails a test by being slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// `name` on the PATH or in the sbin directories, if installed.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds `name` on the PATH or in the sbin directories; panics with how to install it.
pub fn find_binary(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed and this test needs a real one: run `cargo xtask test` \
             (it installs the Debian package `{package}`) or `apt-get install -y {package}`"
        )
    })
}

/// A finished command's stdout and stderr as one text, for assertions on what a user sees.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A minimal HTTP GET on 127.0.0.1; returns (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls `f` every 100 ms until it returns `Some`, at most `wait`.
pub fn wait_for<T>(wait: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `/metrics` endpoint serving whatever text the test sets.
pub struct Exposition {
    /// Its port on 127.0.0.1.
    pub port: u16,
    text: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl Exposition {
    /// Starts serving `text`.
    pub fn start(text: &str) -> Exposition {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        listener.set_nonblocking(true).ok();
        let text = Arc::new(Mutex::new(text.to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (text.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).ok();
                        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let body = t.lock().map(|b| b.clone()).unwrap_or_default();
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Exposition { port, text, stop }
    }

    /// Replaces the served text.
    pub fn set(&self, text: &str) {
        if let Ok(mut t) = self.text.lock() {
            *t = text.to_string();
        }
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_logged(bin: &Path, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()))
}

/// A Debian `prometheus` scraping given ports every second.
pub struct Prometheus {
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (ports on 127.0.0.1) and waits until it is ready.
    pub fn start(targets: &[u16]) -> Prometheus {
        let bin = find_binary("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mysql\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let args = vec![
            format!("--config.file={}", cfg_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let child = spawn_logged(&bin, &args, &dir.path().join("prometheus.log"));
        let p = Prometheus {
            port,
            child: Some(child),
            dir,
        };
        let ready = wait_for(PATIENCE, || {
            http_get(port, "/-/ready").filter(|(s, _)| *s == 200)
        });
        assert!(ready.is_some(), "prometheus not ready:\n{}", p.log());
        p
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Stops it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Debian `haproxy` in TCP mode with one read backend and a runtime API socket.
pub struct Haproxy {
    /// Port of the admin runtime API on 127.0.0.1.
    pub admin_port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with backend `backend` holding `servers` at `weight` each (pointing at
    /// ports nobody listens on: only the weights matter here), and waits for the socket.
    pub fn start(backend: &str, servers: &[&str], weight: u32) -> Haproxy {
        let bin = find_binary("haproxy", "haproxy");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let admin_port = free_port();
        let mut cfg = format!(
            "global\n    stats socket ipv4@127.0.0.1:{admin_port} level admin\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\nlisten {backend}\n    bind 127.0.0.1:{}\n    balance roundrobin\n",
            free_port()
        );
        for s in servers {
            cfg.push_str(&format!(
                "    server {s} 127.0.0.1:{} weight {weight}\n",
                free_port()
            ));
        }
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap_or_else(|e| panic!("{e}"));
        let args = vec![
            "-f".to_string(),
            cfg_path.display().to_string(),
            "-db".to_string(),
        ];
        let child = spawn_logged(&bin, &args, &dir.path().join("haproxy.log"));
        let h = Haproxy {
            admin_port,
            child: Some(child),
            dir,
        };
        let up = wait_for(PATIENCE, || {
            h.command("show info").filter(|r| !r.is_empty())
        });
        assert!(up.is_some(), "haproxy not answering:\n{}", h.log());
        h
    }

    /// Sends one runtime API command and returns the reply.
    pub fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).ok()?;
        s.set_read_timeout(Some(PATIENCE)).ok()?;
        writeln!(s, "{cmd}").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// The current weight of `backend/server`.
    pub fn weight(&self, backend: &str, server: &str) -> Option<u32> {
        self.command(&format!("get weight {backend}/{server}"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Debian `redis-server` of our own on a free 127.0.0.1 port, without persistence
/// (`--save '' --appendonly no`), killed on drop. It inherits the caller's CPU affinity.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts one and waits until it answers `PING`.
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            child: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it (again, on the same port) and waits for `PONG`.
    pub fn restart(&mut self) {
        let bin = find_binary("redis-server", "redis-server");
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ]
        .map(str::to_string);
        self.child = Some(spawn_logged(
            &bin,
            &args,
            &self.dir.path().join("redis.log"),
        ));
        let port = self.port;
        let up = wait_for(PATIENCE, || {
            (redis_command(port, "PING").as_deref() == Some("+PONG")).then_some(())
        });
        assert!(up.is_some(), "redis-server did not answer:\n{}", self.log());
    }

    /// Stops it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// One inline command; the first line of the reply.
    pub fn command(&self, cmd: &str) -> Option<String> {
        redis_command(self.port, cmd)
    }
}

fn redis_command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    write!(s, "{cmd}\r\n").ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().map(str::to_string)
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
