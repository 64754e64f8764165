//! The admission-control sidecar (`weir admit proxy`): a reverse proxy that puts the
//! `weir-admit` layer, with the same configuration, in front of a service written in any
//! language.
//!
//! - [`ProxyConfig`] is the file (TOML): listen and upstream addresses, the controller
//!   (`[controller] kind = …`), and the layer's settings (`[admit]`: rejection status,
//!   exempt paths, class shares, partitions). Errors name the file and the field.
//! - [`serve_until`] forwards every admitted request to the upstream over pooled HTTP/1.1
//!   connections (hop-by-hop headers removed, `x-forwarded-for` added), answers 502 when the
//!   upstream cannot be reached and 504 after `upstream_timeout_ms`, and serves `/metrics`,
//!   `/explain` and `/healthz` on a separate admin address (loopback by default).
//!
//! Hand-written: forwarding is a few dozen lines over hyper-util's pooled client; no kept
//! crate is a reverse proxy that takes a tower layer.
//!
//! **Never:** queue a request the gate refused, or listen on a non-loopback address unless
//! the configuration says so.

mod config;
mod forward;

pub use config::{ConfigFileError, ProxyConfig};
pub use forward::{Proxy, serve_until};
