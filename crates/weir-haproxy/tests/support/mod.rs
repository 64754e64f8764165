//! A real HAProxy for the integration tests: a temporary config, a child process in the
//! foreground, killed on drop. Only 127.0.0.1 and ports the kernel handed out.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_haproxy::{HaproxyConfig, RuntimeAddress};

/// The backend every fixture defines, with servers `primary`, `replica-1`, `replica-2`.
pub const BACKEND: &str = "reads";

/// A running HAProxy with a TCP and a unix runtime API socket, both `level admin`.
pub struct Haproxy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `tcp://127.0.0.1:<port>` of the runtime API.
    pub tcp: RuntimeAddress,
    /// `unix://<tempdir>/admin.sock` of the runtime API.
    pub unix: RuntimeAddress,
}

/// Where the haproxy binary is: `$WEIR_HAPROXY`, else `/usr/sbin/haproxy`, else `PATH`.
/// Panics (failing the test) when there is none: these tests must never pass silently.
fn haproxy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_HAPROXY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "WEIR_HAPROXY is set to {}, which is not a file. Unset it, or run `cargo xtask test`, \
             which installs the Debian package `haproxy`.",
            p.display()
        );
        return p;
    }
    let debian = Path::new("/usr/sbin/haproxy");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("haproxy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "HAProxy is not installed (no /usr/sbin/haproxy, none on PATH, WEIR_HAPROXY unset). \
         The weir-haproxy integration tests need a real haproxy: run `cargo xtask test`, which \
         installs the Debian package `haproxy`, or `apt-get install -y haproxy`."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

impl Haproxy {
    /// Starts HAProxy and waits until its runtime API answers (at most a few seconds).
    pub fn start() -> Haproxy {
        let binary = haproxy_binary();
        // A port picked by binding port 0 can be taken again before haproxy binds it:
        // retry with fresh ports a few times before giving up.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Haproxy::try_start(&binary) {
                Ok(h) => return h,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start {}: {last_error}", binary.display());
    }

    fn try_start(binary: &Path) -> Result<Haproxy, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sock = dir.path().join("admin.sock");
        let stats_port = free_port();
        let front_port = free_port();
        // Nobody listens on the server ports, and no health checks run: the servers stay
        // "up" as far as HAProxy knows, which is all weight changes need.
        let servers: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cfg = format!(
            "global
    maxconn 64
    stats socket ipv4@127.0.0.1:{stats_port} level admin
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s

listen {BACKEND}
    bind 127.0.0.1:{front_port}
    balance roundrobin
    server primary 127.0.0.1:{} weight 1
    server replica-1 127.0.0.1:{} weight 1
    server replica-2 127.0.0.1:{} weight 1
",
            servers[0],
            servers[1],
            servers[2],
            sock = sock.display(),
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("haproxy.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut h = Haproxy {
            child: Some(child),
            tcp: RuntimeAddress::Tcp {
                host: "127.0.0.1".into(),
                port: stats_port,
            },
            unix: RuntimeAddress::Unix(sock.clone()),
            dir,
        };
        // Generous: a loaded 2-core machine can take seconds to start a process.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = h.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                h.child = None;
                return Err(format!("haproxy exited ({status}):\n{log}"));
            }
            if TcpStream::connect(("127.0.0.1", stats_port)).is_ok() && sock.exists() {
                return Ok(h);
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("runtime API not up after 5 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An actuator config for this HAProxy's `reads` backend over TCP.
    pub fn actuator_config(&self, replicas: &[&str]) -> HaproxyConfig {
        HaproxyConfig {
            address: self.tcp.clone(),
            backend: BACKEND.into(),
            timeout_s: 2.0,
            primary_server: "primary".into(),
            replica_servers: replicas.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Kills HAProxy now and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The temporary directory holding the config, log and unix socket.
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
    }
}
