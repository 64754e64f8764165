//! Where the runtime API listens: a TCP `stats socket` or a unix one.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The address of HAProxy's runtime API, written `tcp://host:port` or `unix:///path/to/sock`.
///
/// These are the two forms a `stats socket` line can take (`stats socket ipv4@127.0.0.1:9999`
/// and `stats socket /run/haproxy/admin.sock`). The URL-like spelling is Weir's, so that the
/// kind of socket is always explicit in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RuntimeAddress {
    /// A TCP socket. `host` is a name, an IPv4 address or a bare IPv6 address (no brackets).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A unix stream socket.
    Unix(PathBuf),
}

/// Why an address string was not understood. The message quotes the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid HAProxy runtime API address `{address}`: {reason} (expected `tcp://127.0.0.1:9999` or `unix:///run/haproxy/admin.sock`)"
)]
pub struct AddressError {
    /// The address as given.
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RuntimeAddress {
    /// Parses `tcp://host:port` (IPv6 as `tcp://[::1]:9999`) or `unix:///absolute/path`.
    pub fn parse(address: &str) -> Result<RuntimeAddress, AddressError> {
        let err = |reason: &str| AddressError {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = address.trim();
        if let Some(rest) = trimmed.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| err("a tcp address needs a port, as in tcp://127.0.0.1:9999"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| err(&format!("`{port}` is not a TCP port (1-65535)")))?;
            if port == 0 {
                return Err(err("port 0 is not a port HAProxy can listen on"));
            }
            let host = match host.strip_prefix('[') {
                Some(inner) => inner
                    .strip_suffix(']')
                    .ok_or_else(|| err("unbalanced `[` in an IPv6 address"))?,
                None if host.contains(':') => {
                    return Err(err(
                        "write an IPv6 address in brackets, as in tcp://[::1]:9999",
                    ));
                }
                None => host,
            };
            if host.is_empty() {
                return Err(err("the host is empty"));
            }
            if host.contains('/') || host.chars().any(char::is_whitespace) {
                return Err(err("the host contains `/` or whitespace"));
            }
            Ok(RuntimeAddress::Tcp {
                host: host.to_owned(),
                port,
            })
        } else if let Some(path) = trimmed.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err("the socket path is empty"));
            }
            if !path.starts_with('/') {
                return Err(err(
                    "the socket path must be absolute, as in unix:///run/haproxy/admin.sock",
                ));
            }
            Ok(RuntimeAddress::Unix(PathBuf::from(path)))
        } else if let Some(rest) = trimmed
            .strip_prefix("ipv4@")
            .or_else(|| trimmed.strip_prefix("ipv6@"))
        {
            Err(err(&format!(
                "that is HAProxy's `stats socket` spelling; write it as tcp://{rest}"
            )))
        } else if trimmed.starts_with('/') {
            Err(err(&format!(
                "a bare path is ambiguous; write it as unix://{trimmed}"
            )))
        } else {
            Err(err("unknown scheme"))
        }
    }
}

impl fmt::Display for RuntimeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            RuntimeAddress::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            RuntimeAddress::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl FromStr for RuntimeAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuntimeAddress::parse(s)
    }
}

impl TryFrom<String> for RuntimeAddress {
    type Error = AddressError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        RuntimeAddress::parse(&value)
    }
}

impl From<RuntimeAddress> for String {
    fn from(value: RuntimeAddress) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(
            RuntimeAddress::parse("tcp://127.0.0.1:9999").unwrap(),
            RuntimeAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 9999
            }
        );
        assert_eq!(
            RuntimeAddress::parse("tcp://haproxy.internal:9999").unwrap(),
            RuntimeAddress::Tcp {
                host: "haproxy.internal".into(),
                port: 9999
            }
        );
        assert_eq!(
            RuntimeAddress::parse("tcp://[::1]:9999").unwrap(),
            RuntimeAddress::Tcp {
                host: "::1".into(),
                port: 9999
            }
        );
        assert_eq!(
            RuntimeAddress::parse("unix:///run/haproxy/admin.sock").unwrap(),
            RuntimeAddress::Unix(PathBuf::from("/run/haproxy/admin.sock"))
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp://127.0.0.1:9999",
            "tcp://[::1]:9999",
            "unix:///run/haproxy/admin.sock",
        ] {
            assert_eq!(RuntimeAddress::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_addresses_are_named_in_the_error() {
        for (bad, hint) in [
            ("127.0.0.1:9999", "unknown scheme"),
            ("tcp://127.0.0.1", "needs a port"),
            ("tcp://127.0.0.1:http", "not a TCP port"),
            ("tcp://127.0.0.1:70000", "not a TCP port"),
            ("tcp://127.0.0.1:0", "port 0"),
            ("tcp://:9999", "host is empty"),
            ("tcp://::1:9999", "brackets"),
            ("unix://", "path is empty"),
            ("unix://run/haproxy.sock", "absolute"),
            ("ipv4@127.0.0.1:9999", "tcp://127.0.0.1:9999"),
            ("/run/haproxy/admin.sock", "unix:///run/haproxy/admin.sock"),
        ] {
            let e = RuntimeAddress::parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
            assert!(msg.contains(hint), "{bad}: {msg}");
        }
    }

    #[test]
    fn deserializes_from_a_string() {
        #[derive(Deserialize)]
        struct Wrap {
            a: RuntimeAddress,
        }
        let w: Wrap = toml::from_str("a = \"unix:///tmp/h.sock\"").unwrap();
        assert_eq!(w.a, RuntimeAddress::Unix("/tmp/h.sock".into()));
        let e = toml::from_str::<Wrap>("a = \"udp://x:1\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("udp://x:1"), "{e}");
    }
}
