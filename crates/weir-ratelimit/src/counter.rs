//! The counters, in Redis: one key per descriptor and window, raised with `INCRBY` and given
//! the window's length as its TTL in one `MULTI`/`EXEC` transaction, so every instance sharing
//! the Redis sees one count and no key outlives its window. Nothing is counted in process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// Why counting failed: Redis unreachable, too slow, or an unexpected reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis at {addr}: {message}")]
pub struct CounterError {
    /// Redis's address (never its password).
    pub addr: String,
    /// What went wrong.
    pub message: String,
}

/// One counter to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The full key, window start included.
    pub key: String,
    /// How much to add.
    pub hits: u64,
    /// The key's time to live in seconds: the window's length.
    pub ttl: u64,
}

/// A lazily (re)connected Redis: a lost connection is dropped and made again on the next call,
/// at most once per back-off period, so a Redis that is down costs each request at most one
/// quick failure and never a pile of connection attempts.
pub struct Counter {
    client: redis::Client,
    addr: String,
    timeout: Duration,
    backoff: Duration,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    last_failure: Mutex<Option<(Instant, CounterError)>>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").field("addr", &self.addr).finish()
    }
}

impl Counter {
    /// A counter on the Redis at `url` (`redis://host:port[/db]`). Connects on first use.
    pub fn new(url: &str, timeout: Duration, backoff: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(Counter {
            client,
            addr,
            timeout,
            backoff,
            conn: tokio::sync::Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }

    /// Redis's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn error(&self, message: impl std::fmt::Display) -> CounterError {
        CounterError {
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, CounterError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        if let Ok(last) = self.last_failure.lock()
            && let Some((at, err)) = last.as_ref()
            && at.elapsed() < self.backoff
        {
            return Err(err.clone());
        }
        let attempt =
            tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
                .await;
        let result = match attempt {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.error(format!("cannot connect: {e}"))),
            Err(_) => Err(self.error(format!(
                "cannot connect: no answer within {:?}",
                self.timeout
            ))),
        };
        match &result {
            Ok(c) => *slot = Some(c.clone()),
            Err(e) => {
                if let Ok(mut last) = self.last_failure.lock() {
                    *last = Some((Instant::now(), e.clone()));
                }
            }
        }
        result
    }

    async fn forget(&self, err: &CounterError) {
        *self.conn.lock().await = None;
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some((Instant::now(), err.clone()));
        }
    }

    /// Connects (unless connected) and asks Redis for a `PONG`.
    pub async fn ping(&self) -> Result<(), CounterError> {
        let mut conn = self.connection().await?;
        let reply = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        let err = match reply {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => self.error(e),
            Err(_) => self.error(format!("no answer within {:?}", self.timeout)),
        };
        self.forget(&err).await;
        Err(err)
    }

    /// Raises every counter in one transaction; returns each counter's value after it.
    pub async fn raise(&self, hits: &[Hit]) -> Result<Vec<u64>, CounterError> {
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for h in hits {
            // Redis counts in i64; hits are bounded well below that by the caller.
            let by = i64::try_from(h.hits).unwrap_or(i64::MAX);
            let ttl = i64::try_from(h.ttl).unwrap_or(i64::MAX);
            pipe.cmd("INCRBY").arg(&h.key).arg(by);
            pipe.cmd("EXPIRE").arg(&h.key).arg(ttl).ignore();
        }
        let reply =
            tokio::time::timeout(self.timeout, pipe.query_async::<Vec<i64>>(&mut conn)).await;
        // A reply Redis gave (a wrong type, say) leaves the connection usable; a lost or
        // silent connection is dropped and made again.
        let (err, lost) = match reply {
            Ok(Ok(values)) if values.len() == hits.len() => {
                return Ok(values
                    .into_iter()
                    .map(|v| u64::try_from(v).unwrap_or(0))
                    .collect());
            }
            Ok(Ok(values)) => (
                self.error(format!(
                    "{} counters in the reply to {} increments",
                    values.len(),
                    hits.len()
                )),
                false,
            ),
            Ok(Err(e)) => {
                let lost = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error();
                (self.error(e), lost)
            }
            Err(_) => (
                self.error(format!("no answer within {:?}", self.timeout)),
                true,
            ),
        };
        if lost {
            self.forget(&err).await;
        }
        Err(err)
    }
}
