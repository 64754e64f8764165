//! [`RuntimeApi`]: one command per connection to HAProxy's runtime API.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::address::RuntimeAddress;
use crate::reply::{self, ReplyError, ServerState, ServerWeight};

/// Largest weight HAProxy accepts in `set weight`.
pub const MAX_WEIGHT: u32 = 256;

/// Replies longer than this are refused rather than buffered (a `show servers state` of a
/// few thousand servers is well under it).
pub const MAX_REPLY_BYTES: u64 = 8 * 1024 * 1024;

/// Default time allowed for one command (connect, write, read to the end), seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 2.0;

/// Why a runtime API call failed. Every variant names the address or the command, and
/// carries its cause in its message, so none has a `source`: `{:#}` prints the cause once.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// Nothing accepted the connection (refused, no such socket file, DNS failure).
    #[error("HAProxy runtime API at {address} is unreachable: {error}")]
    Unreachable {
        /// The address tried.
        address: RuntimeAddress,
        /// The connect error.
        error: io::Error,
    },
    /// The connection broke after it was made.
    #[error("connection to HAProxy runtime API at {address} failed during `{command}`: {error}")]
    Io {
        /// The address.
        address: RuntimeAddress,
        /// The command being sent.
        command: String,
        /// The IO error.
        error: io::Error,
    },
    /// The whole exchange took longer than the timeout.
    #[error("HAProxy runtime API at {address} did not answer `{command}` within {after_s:.1}s")]
    Timeout {
        /// The address.
        address: RuntimeAddress,
        /// The command being sent.
        command: String,
        /// The timeout, seconds.
        after_s: f64,
    },
    /// HAProxy answered with an error message (for example `No such server.`).
    #[error("HAProxy refused `{command}`: {reply}")]
    Rejected {
        /// The command sent.
        command: String,
        /// HAProxy's reply, trimmed.
        reply: String,
    },
    /// HAProxy answered something this client cannot parse.
    #[error("unexpected reply from HAProxy to `{command}`: {detail}")]
    BadReply {
        /// The command sent.
        command: String,
        /// What is wrong with the reply.
        detail: String,
    },
    /// A weight read back after `set weight` is not the one just set (someone else changed
    /// it in between, or the algorithm ignored it).
    #[error("HAProxy {backend}/{server} has weight {got} after Weir set {expected}")]
    ReadBack {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// The weight Weir set.
        expected: u32,
        /// The weight `get weight` reported.
        got: u32,
    },
    /// Every configured server of the backend has weight 0: there is no split to report.
    #[error("every configured server of HAProxy backend `{backend}` has weight 0")]
    AllZero {
        /// The backend.
        backend: String,
    },
    /// A command was refused before sending: bad name, weight out of range, newline.
    #[error("{0}")]
    InvalidInput(String),
}

impl HaproxyError {
    fn from_reply(command: &str, e: ReplyError) -> HaproxyError {
        match e {
            ReplyError::Refused(reply) => HaproxyError::Rejected {
                command: command.to_owned(),
                reply,
            },
            ReplyError::Malformed(detail) => HaproxyError::BadReply {
                command: command.to_owned(),
                detail,
            },
        }
    }
}

/// A client for HAProxy's runtime API (the `stats socket`), in non-interactive mode: each
/// command opens a connection, writes one line, reads the reply until HAProxy closes the
/// connection. That is slower than keeping a prompt open, but there is no session state to
/// lose and every call is independent — a handful of commands per control interval.
///
/// Changing weights needs a socket at `level admin`.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    address: RuntimeAddress,
    timeout: Duration,
}

impl RuntimeApi {
    /// A client for `address` with a per-command timeout ([`DEFAULT_TIMEOUT_S`] if in
    /// doubt). A timeout that is not a positive, finite number of seconds is refused.
    pub fn new(address: RuntimeAddress, timeout_s: f64) -> Result<RuntimeApi, HaproxyError> {
        let timeout = Duration::try_from_secs_f64(timeout_s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                HaproxyError::InvalidInput(format!(
                    "the HAProxy timeout must be a positive number of seconds, got {timeout_s}"
                ))
            })?;
        Ok(RuntimeApi { address, timeout })
    }

    /// The address this client talks to.
    pub fn address(&self) -> &RuntimeAddress {
        &self.address
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one command and returns HAProxy's raw reply (possibly empty). The command must
    /// be a single line; HAProxy's own `;` separator is passed through untouched.
    pub async fn command(&self, command: &str) -> Result<String, HaproxyError> {
        if command.contains(['\n', '\r']) {
            return Err(HaproxyError::InvalidInput(format!(
                "a runtime API command is one line, got `{}`",
                command.escape_debug()
            )));
        }
        let exchange = self.exchange(command);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HaproxyError::Timeout {
                address: self.address.clone(),
                command: command.to_owned(),
                after_s: self.timeout.as_secs_f64(),
            }),
        }
    }

    /// `set weight <backend>/<server> <weight>`: sets an absolute weight, `0..=256`.
    /// HAProxy answers nothing on success; any reply is its error message.
    pub async fn set_weight(
        &self,
        backend: &str,
        server: &str,
        weight: u32,
    ) -> Result<(), HaproxyError> {
        let command = set_weight_command(backend, server, weight)?;
        let reply = self.command(&command).await?;
        reply::expect_empty(&reply).map_err(|e| HaproxyError::from_reply(&command, e))
    }

    /// `get weight <backend>/<server>`: the current and the initial weight.
    pub async fn get_weight(
        &self,
        backend: &str,
        server: &str,
    ) -> Result<ServerWeight, HaproxyError> {
        let command = get_weight_command(backend, server)?;
        let reply = self.command(&command).await?;
        reply::parse_get_weight(&reply).map_err(|e| HaproxyError::from_reply(&command, e))
    }

    /// `show servers state <backend>`: one row per server of the backend.
    pub async fn show_servers_state(
        &self,
        backend: &str,
    ) -> Result<Vec<ServerState>, HaproxyError> {
        reply::check_name("backend", backend)
            .map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
        let command = format!("show servers state {backend}");
        let reply = self.command(&command).await?;
        reply::parse_servers_state(&reply).map_err(|e| HaproxyError::from_reply(&command, e))
    }

    async fn exchange(&self, command: &str) -> Result<String, HaproxyError> {
        match &self.address {
            RuntimeAddress::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|source| self.unreachable(source))?;
                self.talk(stream, command).await
            }
            #[cfg(unix)]
            RuntimeAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|source| self.unreachable(source))?;
                self.talk(stream, command).await
            }
            #[cfg(not(unix))]
            RuntimeAddress::Unix(_) => Err(self.unreachable(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            ))),
        }
    }

    async fn talk<S>(&self, mut stream: S, command: &str) -> Result<String, HaproxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let io_err = |error| HaproxyError::Io {
            address: self.address.clone(),
            command: command.to_owned(),
            error,
        };
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\n');
        stream.write_all(&line).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(MAX_REPLY_BYTES + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(io_err)?;
        if buf.len() as u64 > MAX_REPLY_BYTES {
            return Err(HaproxyError::BadReply {
                command: command.to_owned(),
                detail: format!("reply longer than {MAX_REPLY_BYTES} bytes"),
            });
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn unreachable(&self, error: io::Error) -> HaproxyError {
        HaproxyError::Unreachable {
            address: self.address.clone(),
            error,
        }
    }
}

/// The `set weight` command line, after checking names and range.
pub fn set_weight_command(
    backend: &str,
    server: &str,
    weight: u32,
) -> Result<String, HaproxyError> {
    reply::check_name("backend", backend).map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
    reply::check_name("server", server).map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
    if weight > MAX_WEIGHT {
        return Err(HaproxyError::InvalidInput(format!(
            "HAProxy weights are 0..={MAX_WEIGHT}, got {weight} for {backend}/{server}"
        )));
    }
    Ok(format!("set weight {backend}/{server} {weight}"))
}

/// The `get weight` command line, after checking names.
pub fn get_weight_command(backend: &str, server: &str) -> Result<String, HaproxyError> {
    reply::check_name("backend", backend).map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
    reply::check_name("server", server).map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
    Ok(format!("get weight {backend}/{server}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_before_sending() {
        assert_eq!(
            set_weight_command("reads", "replica-1", 20).unwrap(),
            "set weight reads/replica-1 20"
        );
        assert_eq!(
            set_weight_command("reads", "primary", 256).unwrap(),
            "set weight reads/primary 256"
        );
        let e = set_weight_command("reads", "primary", 257).unwrap_err();
        assert!(e.to_string().contains("0..=256"), "{e}");
        assert!(set_weight_command("reads;x", "primary", 1).is_err());
        assert_eq!(
            get_weight_command("reads", "#2").unwrap(),
            "get weight reads/#2"
        );
    }

    #[test]
    fn timeout_must_be_positive() {
        let a = RuntimeAddress::parse("tcp://127.0.0.1:9999").unwrap();
        assert!(RuntimeApi::new(a.clone(), 0.0).is_err());
        assert!(RuntimeApi::new(a.clone(), -1.0).is_err());
        assert!(RuntimeApi::new(a.clone(), f64::NAN).is_err());
        assert_eq!(
            RuntimeApi::new(a, 0.5).unwrap().timeout(),
            Duration::from_millis(500)
        );
    }

    #[tokio::test]
    async fn multi_line_commands_are_refused() {
        let a = RuntimeAddress::parse("tcp://127.0.0.1:9").unwrap();
        let api = RuntimeApi::new(a, 1.0).unwrap();
        let e = api
            .command("show info\nshutdown frontend x")
            .await
            .unwrap_err();
        assert!(matches!(e, HaproxyError::InvalidInput(_)), "{e}");
    }

    /// A fake runtime API on a local listener: reads one line, answers `reply`, closes.
    async fn fake(reply: &'static str) -> (RuntimeApi, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while s.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
                got.push(byte[0]);
            }
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        let address = RuntimeAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        (RuntimeApi::new(address, 2.0).unwrap(), task)
    }

    #[tokio::test]
    async fn set_weight_error_reply_is_rejected_with_text() {
        let (api, task) = fake("No such server.\n\n").await;
        let e = api.set_weight("reads", "nope", 10).await.unwrap_err();
        assert_eq!(task.await.unwrap(), "set weight reads/nope 10");
        match &e {
            HaproxyError::Rejected { command, reply } => {
                assert_eq!(command, "set weight reads/nope 10");
                assert_eq!(reply, "No such server.");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert!(e.to_string().contains("No such server."));
    }

    #[tokio::test]
    async fn get_weight_over_the_wire() {
        let (api, task) = fake("20 (initial 1)\n\n").await;
        let w = api.get_weight("reads", "primary").await.unwrap();
        assert_eq!(task.await.unwrap(), "get weight reads/primary");
        assert_eq!(
            w,
            ServerWeight {
                current: 20,
                initial: 1
            }
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            // Accept and never answer, however long the client takes to give up.
            let (_s, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let address = RuntimeAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let api = RuntimeApi::new(address, 0.2).unwrap();
        let e = api.command("show info").await.unwrap_err();
        assert!(matches!(e, HaproxyError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("within 0.2s"), "{e}");
        hold.abort();
    }
}
