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
//! Each component owns its settings: the `[prometheus]` section is `weir-prom`'s
//! [`PromConfig`](weir_prom::PromConfig) (its replica list orders the weights everywhere), the
//! policy is named from the registry (`weir_policy::PolicyKind`), and the `[actuator]` section
//! is kept as an [`ActuatorSection`] — a `kind` and its raw settings — for the actuator
//! registry (`weir-actuators`) to read with [`deserialize`], so this crate depends on no
//! actuator.
//!
//! This crate only reads and checks settings; it builds nothing and opens no connection.

mod layered;
mod weir;

pub use layered::{ConfigError, ENV_PREFIX, deserialize, from_toml_str, load};
pub use weir::{ActuatorSection, EXAMPLE, PolicyConfig, WeirConfig};
