//! Weir's HAProxy edge: a small client for HAProxy's runtime API and the
//! [`HaproxyActuator`] that applies Weir's decisions as server weights.
//!
//! Outside Kubernetes, reads usually reach MySQL/MariaDB through an HAProxy backend with one
//! server per database: the primary and each replica. Weir moves reads between them by
//! changing server weights at runtime, over the `stats socket` (`level admin`):
//!
//! ```text
//! global
//!     stats socket ipv4@127.0.0.1:9999 level admin   # → address = "tcp://127.0.0.1:9999"
//! listen mysql_reads                                 # → backend = "mysql_reads"
//!     mode tcp
//!     balance leastconn                              # or roundrobin: a dynamic algorithm
//!     bind 127.0.0.1:3307
//!     server primary   10.0.0.1:3306 weight 0 check  # → primary_server = "primary"
//!     server replica-1 10.0.0.2:3306 weight 50 check # → replica_servers = ["replica-1",
//!     server replica-2 10.0.0.3:3306 weight 50 check #                     "replica-2"]
//! ```
//!
//! - [`RuntimeApi`] speaks the runtime API in non-interactive mode — one connection per
//!   command, read to EOF, bounded by a timeout — and wraps `set weight`, `get weight` and
//!   `show servers state`. HAProxy answers nothing when `set weight` succeeds and a
//!   sentence when it fails, so any text is an error that carries the sentence.
//! - [`HaproxyActuator`] implements [`weir_edge::Actuator`]: it sets each server's
//!   weight (Weir's 0..=100 percent points unchanged, see [`haproxy_weight`]) and reads
//!   every one back with `get weight`. [`HaproxyActuator::plan`] lists the commands for a
//!   dry run; [`HaproxyActuator::read_current`] turns HAProxy's weights back into Weir's.
//!
//! # A weight change moves new connections only
//!
//! In TCP mode HAProxy balances *connections*, not queries. A new weight decides where the
//! next connections go; connections already open — and an application's connection pool
//! keeps them open for a long time — stay on the server they were opened to, even at weight
//! 0. See [`connection_lifetime_note`], which `weir` prints, for what to do about it.
//!
//! Runtime weights do not survive an HAProxy reload or restart; Weir re-applies its weights
//! every control interval, which repairs that and any other drift.

mod actuator;
mod address;
mod client;
mod reply;

pub use actuator::{HaproxyActuator, HaproxyConfig, haproxy_weight};
pub use address::{AddressError, RuntimeAddress};
pub use client::{
    DEFAULT_TIMEOUT_S, HaproxyError, MAX_REPLY_BYTES, MAX_WEIGHT, RuntimeApi, get_weight_command,
    set_weight_command,
};
pub use reply::{
    AdminState, InvalidName, OpState, ReplyError, ServerState, ServerWeight, check_name,
    expect_empty, parse_get_weight, parse_servers_state,
};

/// What a user must know about weights and pooled connections, for `weir` to print.
pub fn connection_lifetime_note() -> &'static str {
    "HAProxy in TCP mode applies a weight change to NEW connections only: connections already \
     open (for example in an application's connection pool) stay on the server they were \
     opened to, even when its weight drops to 0. For a weight change to take effect within \
     a few control intervals, cap connection lifetime on the client side (pool max-lifetime, \
     e.g. HikariCP maxLifetime, Go sql.DB SetConnMaxLifetime) or in HAProxy (`timeout \
     client` / `timeout server` for idle connections); to move existing connections at once \
     an operator can run `shutdown sessions server <backend>/<server>` on the runtime API."
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_note_says_new_connections_only() {
        let note = super::connection_lifetime_note();
        assert!(note.contains("NEW connections only"));
        assert!(note.contains("max-lifetime"));
    }
}
