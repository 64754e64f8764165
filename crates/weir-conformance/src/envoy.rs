//! A real Envoy process: started on a bootstrap file with a dynamic shared-memory base id (so
//! several run side by side), ready when its admin `/ready` says so, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How long Envoy may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The Envoy binary: `explicit`, else `$WEIR_ENVOY_BIN`, else the one `cargo xtask
/// prerequisites` installs into `crates/weir-govern/validators/.venv/`.
pub fn binary(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WEIR_ENVOY_BIN").map(PathBuf::from))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../weir-govern/validators/.venv/bin/envoy")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::EnvoyMissing(path))
    }
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    /// Its admin address (`127.0.0.1:port`).
    pub admin: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Envoy {
    /// Starts `bin -c bootstrap` with `workers` worker threads, logging to `log`, and waits
    /// for `admin`'s `/ready`.
    pub async fn start(
        bin: &Path,
        bootstrap: &Path,
        workers: u32,
        admin: &str,
        log: &Path,
        client: &reqwest::Client,
    ) -> Result<Envoy, Error> {
        let log_file = std::fs::File::create(log)
            .map_err(|e| Error::io(&format!("creating {}", log.display()), e))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| Error::io(&format!("opening {}", log.display()), e))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(bootstrap)
            .args(["--use-dynamic-base-id", "--log-level", "warn"])
            .arg("--concurrency")
            .arg(workers.to_string())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| Error::io(&format!("starting {}", bin.display()), e))?;
        let mut envoy = Envoy {
            child,
            admin: admin.to_string(),
            log: log.to_path_buf(),
        };
        let started = Instant::now();
        let url = format!("http://{admin}/ready");
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(Error::EnvoyNotReady {
                    log: log.to_path_buf(),
                    why: format!("it exited ({status}): {}", tail(log)),
                });
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(envoy);
            }
            if started.elapsed() > READY_WITHIN {
                return Err(Error::EnvoyNotReady {
                    log: log.to_path_buf(),
                    why: format!("not ready within {} s", READY_WITHIN.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A counter or gauge from the admin `/stats` (`cluster.NAME.outlier_detection…`).
    pub async fn stat(&self, client: &reqwest::Client, name: &str) -> Option<u64> {
        let url = format!("http://{}/stats", self.admin);
        let filter = format!("^{}$", escape(name));
        let req = client.get(url).query(&[("filter", filter)]);
        let text = req.send().await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` as a literal in a regex.
fn escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The last lines of a log file, for errors.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_are_escaped() {
        assert_eq!(
            escape("cluster.outbound|80|s|h.x.ejections_active"),
            "cluster\\.outbound\\|80\\|s\\|h\\.x\\.ejections_active"
        );
    }

    #[test]
    fn a_missing_binary_says_how_to_install() {
        let e = binary(Some(Path::new("/nonexistent/envoy"))).unwrap_err();
        assert!(e.to_string().contains("cargo xtask prerequisites"), "{e}");
    }
}
