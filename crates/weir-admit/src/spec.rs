//! Choosing a controller from configuration: [`ControllerSpec`] is what a file says
//! (`kind = "static" | …` plus that controller's fields), and [`ControllerSpec::build`] makes
//! the controller or refuses with the field that is wrong. Each controller owns its config
//! type; this module only dispatches.
//!
//! **Never:** fall back to another controller when the one asked for cannot be built.

use std::sync::Arc;

use serde::Deserialize;

use crate::ConfigError;
use crate::bbr::{Bbr, BbrConfig};
use crate::controller::{Controller, CpuGauge, Static};
use crate::qlearn::table::{QTable, TableError};
use crate::qlearn::{QLearn, QLearnConfig};

/// Why a controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A field is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `qlearn` table file could not be used.
    #[error(transparent)]
    Table(#[from] TableError),
}

/// A controller and its settings, as written in a configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ControllerSpec {
    /// A fixed limit.
    Static {
        /// Requests in flight (at least 1).
        limit: u32,
    },
    /// The BBR-style rule (Sentinel/Kratos): in-flight against max-pass × min-RT.
    Bbr(BbrConfig),
    /// The learned controller: a Q-table trained in the queueing simulator, served greedily.
    Qlearn(QLearnConfig),
}

impl ControllerSpec {
    /// The controller's name.
    pub fn kind(&self) -> &'static str {
        match self {
            ControllerSpec::Static { .. } => "static",
            ControllerSpec::Bbr(_) => "bbr",
            ControllerSpec::Qlearn(_) => "qlearn",
        }
    }

    /// Builds the controller; `cpu` is given to controllers that read CPU (the BBR rule's
    /// CPU gate is on only with a gauge). `qlearn` reads its `table` file here, if one is
    /// named, or serves the embedded table.
    pub fn build(&self, cpu: Option<Arc<dyn CpuGauge>>) -> Result<Arc<dyn Controller>, BuildError> {
        Ok(match self {
            ControllerSpec::Static { limit } => Arc::new(Static::new(*limit)?),
            ControllerSpec::Bbr(cfg) => Arc::new(Bbr::new(cfg.clone(), cpu)?),
            ControllerSpec::Qlearn(cfg) => {
                let table = match &cfg.table {
                    Some(path) => QTable::load(path)?,
                    None => QTable::embedded()?,
                };
                Arc::new(QLearn::new(cfg.clone(), table, cpu)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ControllerSpec, String> {
        toml::from_str::<ControllerSpec>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn the_kind_selects_the_controller_and_unknown_ones_are_named() {
        let spec = parse("kind = \"static\"\nlimit = 8").expect("valid");
        assert_eq!(spec.build(None).map(|c| c.limit()).ok(), Some(8));
        let e = parse("kind = \"gradient\"").unwrap_err();
        assert!(e.contains("unknown variant `gradient`"), "{e}");
        let e = parse("kind = \"static\"\nlimit = 8\nlimt = 9").unwrap_err();
        assert!(e.contains("unknown field `limt`"), "{e}");
        let spec = parse("kind = \"bbr\"\ninitial_limit = 20").expect("valid");
        assert_eq!(spec.kind(), "bbr");
        assert_eq!(
            spec.build(None).map(|c| c.limit()).ok(),
            Some(20),
            "warm-up"
        );
        let e = parse("kind = \"bbr\"\ngain = 1.5\nwindow = 3").unwrap_err();
        assert!(e.contains("unknown field `window`"), "{e}");
        let e = parse("kind = \"bbr\"\nmin_limit = 50\nmax_limit = 10")
            .expect("parses")
            .build(None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_limit") && e.contains("max_limit"), "{e}");
        let spec = parse("kind = \"qlearn\"\ninitial_limit = 24").expect("valid");
        assert_eq!(
            spec.build(None).map(|c| (c.name(), c.limit())).ok(),
            Some(("qlearn", 24))
        );
        let e = parse("kind = \"qlearn\"\ntable = \"/nonexistent/q.json\"")
            .expect("parses")
            .build(None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/q.json"), "{e}");
        let e = ControllerSpec::Static { limit: 0 }
            .build(None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit = 0"), "{e}");
    }
}
