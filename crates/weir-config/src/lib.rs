//! Weir's configuration: a TOML file, overridden by environment variables, deserialised into
//! typed settings ([`WeirConfig`]) with errors that name the file, the field and the problem.
//!
//! Overrides follow one rule so that every setting can be overridden without a list to keep in
//! sync: `WEIR__SECTION__KEY=value` sets `section.key` (segments are lower-cased; arrays are
//! indexed by number, `WEIR__PROMETHEUS__REPLICAS__0__LABEL_VALUE`). A value is read as TOML
//! when it parses as a boolean or a number and as a string otherwise, so `WEIR__INTERVAL_S=10`
//! is a number and `WEIR__PROMETHEUS__URL=http://…` a string. Secrets (the Prometheus bearer
//! token, the API token) are best given this way rather than in the file.
//!
//! This crate only reads and checks settings; it builds nothing and opens no connection.

mod layered;
mod weir;

pub use layered::{ConfigError, ENV_PREFIX, from_toml_str, load};
pub use weir::{ActuatorConfig, EXAMPLE, PolicyConfig, WeirConfig};
