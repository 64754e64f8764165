//! The sidecar's configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_admit::{Config as AdmitConfig, ControllerSpec};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not chained: it would print twice).
        error: std::io::Error,
    },
    /// Not valid TOML for this format (the message names the field and line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that cannot work.
    #[error("{path}: {error}")]
    Invalid {
        /// The file (or `<command line>`).
        path: PathBuf,
        /// The field and why.
        error: weir_admit::BuildError,
    },
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9466))
}

fn default_timeout() -> u64 {
    30_000
}

fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_max_connections() -> usize {
    1024
}

fn default_header_timeout() -> u64 {
    10_000
}

fn default_controller() -> ControllerSpec {
    ControllerSpec::Static { limit: 100 }
}

/// The sidecar's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where clients connect.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The service behind the proxy: `http://HOST:PORT` (no path).
    #[serde(default)]
    pub upstream: String,
    /// `/metrics`, `/explain` and `/healthz`.
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// How long the upstream may take to answer (the response head), in milliseconds.
    #[serde(default = "default_timeout")]
    pub upstream_timeout_ms: u64,
    /// The largest request body forwarded, in bytes: 413 above it (at once when the declared
    /// length is over it; when a streamed body passes it on the way up).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Client connections open at once on `listen`; one more is closed as soon as it is
    /// accepted (the admin port has its own 256).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A client connection that has not sent its whole request header within this many
    /// milliseconds is closed.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// The controller.
    #[serde(default = "default_controller")]
    pub controller: ControllerSpec,
    /// The layer's settings.
    #[serde(default)]
    pub admit: AdmitConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: default_listen(),
            upstream: String::new(),
            admin: default_admin(),
            upstream_timeout_ms: default_timeout(),
            max_body_bytes: default_max_body_bytes(),
            max_connections: default_max_connections(),
            header_timeout_ms: default_header_timeout(),
            controller: default_controller(),
            admit: AdmitConfig::default(),
        }
    }
}

impl ProxyConfig {
    /// Reads and parses `path` (values are checked by [`ProxyConfig::upstream_uri`] and when
    /// the proxy is built).
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        ProxyConfig::parse(path, &text)
    }

    /// Parses `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ProxyConfig, ConfigFileError> {
        toml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The upstream as `scheme://authority`, refused unless it is an `http://` URL with a
    /// host and no path, query or credentials.
    pub fn upstream_uri(&self) -> Result<String, weir_admit::ConfigError> {
        let bad = |why| weir_admit::ConfigError::Invalid {
            field: "upstream",
            value: format!("{:?}", self.upstream),
            why,
        };
        let uri: http::Uri = self
            .upstream
            .parse()
            .map_err(|_| bad("not a URL: expected http://HOST:PORT"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "must start with http:// (the proxy speaks HTTP/1.1 to it)",
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not forwarded; remove them"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad(
                "must not have a path or query: requests keep their own",
            ));
        }
        if self.upstream_timeout_ms == 0 {
            return Err(weir_admit::ConfigError::Invalid {
                field: "upstream_timeout_ms",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        Ok(format!("http://{authority}"))
    }

    /// The client listener's limits, refused when one is 0 (a body limit of 0 would refuse
    /// every body: this is not nginx's "0 = unlimited").
    pub fn listener_limits(&self) -> Result<weir_http::Limits, weir_admit::ConfigError> {
        for (field, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_connections", self.max_connections as u64),
            ("header_timeout_ms", self.header_timeout_ms),
        ] {
            if value == 0 {
                return Err(weir_admit::ConfigError::Invalid {
                    field,
                    value: "0".into(),
                    why: "must be at least 1 (there is no \"unlimited\")",
                });
            }
        }
        Ok(weir_http::Limits {
            header_read_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            max_connections: self.max_connections,
            ..weir_http::Limits::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::parse(Path::new("admit.toml"), s).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_parses_and_defaults_are_loopback() {
        let c = parse(
            r#"
upstream = "http://127.0.0.1:9000"
[controller]
kind = "static"
limit = 32
[admit]
reject_status = 503
[admit.class_shares]
sheddable = 0.5
[admit.reserve]
target_refused = 0.01
[[admit.partitions]]
name = "api"
path_prefix = "/api"
share = 0.5
"#,
        )
        .expect("valid");
        assert_eq!(c.controller, ControllerSpec::Static { limit: 32 });
        assert_eq!(c.admit.reject_status, 503);
        assert_eq!(c.admit.class_shares.sheddable, 0.5);
        assert_eq!(
            c.admit.class_shares.critical, 1.1,
            "unset fields keep defaults"
        );
        assert_eq!(c.admit.reserve.target_refused, 0.01);
        assert!(c.admit.reserve.enabled, "unset fields keep defaults");
        assert_eq!(c.admit.partitions.len(), 1);
        assert!(c.listen.ip().is_loopback() && c.admin.ip().is_loopback());
        assert_eq!(
            c.upstream_uri().ok().as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn mistakes_name_the_file_and_the_field() {
        let e = parse("upstream = \"http://a:1\"\n[controller]\nkind = \"magic\"\n").unwrap_err();
        assert!(
            e.starts_with("admit.toml:") && e.contains("unknown variant `magic`"),
            "{e}"
        );
        let e = parse("[admit]\nretry_after = 2\n").unwrap_err();
        assert!(e.contains("unknown field `retry_after`"), "{e}");
        for (upstream, why) in [
            ("https://a:1", "http://"),
            ("http://a:1/base", "path"),
            ("http://u:p@a:1", "credentials"),
            ("a b", "not a URL"),
        ] {
            let c = ProxyConfig {
                upstream: upstream.into(),
                ..ProxyConfig::default()
            };
            let e = c.upstream_uri().unwrap_err().to_string();
            assert!(
                e.starts_with("upstream = ") && e.contains(why),
                "{upstream}: {e}"
            );
        }
    }
}
