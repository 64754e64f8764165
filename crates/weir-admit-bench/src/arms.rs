//! The admission arms put in front of the server under test, and the registry of Weir
//! controllers ([`WEIR_ARMS`]): adding a Weir controller arm is one line there.
//!
//! Baselines: tower's `ConcurrencyLimit` + `LoadShed` (rejects at once when the limit is
//! reached, mapped to 429), and `tower-resilience-adaptive`'s AIMD and Vegas. That crate's
//! service *waits* at its limit (its `poll_ready` answers `Pending`), so it is wrapped in
//! `LoadShed` to reject at once, like every other arm. (The issue names Gradient2; the pinned
//! version 0.9.3 has AIMD and Vegas only.)
//!
//! **Never:** queue a request in an arm: every arm admits or rejects at once (the server's
//! own slots are the only queue).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_resilience_adaptive::{AdaptiveLimiterLayer, Aimd, Vegas};
use weir_admit::{
    AdmitLayer, Bbr, BbrConfig, BuildError, Config, Controller, QLearn, QLearnConfig, Static,
};

/// What an arm is tuned with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmParams {
    /// The concurrency limit tuned at 1× (static arms use it; adaptive ones start there).
    pub limit: u32,
    /// The server's slots (W).
    pub slots: u32,
    /// The latency bound (2× the unloaded p99), for controllers that take a target.
    pub latency_bound: Duration,
}

/// Builds a Weir controller for an arm.
pub type MakeController = fn(&ArmParams) -> Result<Arc<dyn Controller>, BuildError>;

/// The Weir controllers the benchmark knows, by arm name. **Adding a Weir controller arm is
/// one line here**, e.g. `("bbr", |p| Ok(Arc::new(Bbr::new(..)?)))`.
///
/// The adaptive controllers run with their defaults, untuned for this server: they are
/// judged on finding the limit themselves.
pub const WEIR_ARMS: &[(&str, MakeController)] = &[
    ("weir-static", |p| Ok(Arc::new(Static::new(p.limit)?))),
    ("weir-bbr", |_| {
        Ok(Arc::new(Bbr::new(BbrConfig::default(), None)?))
    }),
    ("weir-qlearn", |_| {
        Ok(Arc::new(QLearn::with_default_table(
            QLearnConfig::default(),
            None,
        )?))
    }),
];

/// The baseline arms (not Weir's).
pub const BASELINE_ARMS: &[&str] = &["none", "tower", "aimd", "vegas"];

/// Every arm name the server accepts: the baselines, then the Weir controllers.
pub fn all_arms() -> Vec<&'static str> {
    BASELINE_ARMS
        .iter()
        .copied()
        .chain(WEIR_ARMS.iter().map(|(n, _)| *n))
        .collect()
}

/// An arm that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// No such arm.
    #[error("arm = {0}: unknown arm (known: {known})", known = all_arms().join(", "))]
    Unknown(String),
    /// A Weir controller refused its configuration. (The message carries the cause, so it
    /// is no `source`: `{:#}` prints it once.)
    #[error("arm {arm}: {error}")]
    Config {
        /// The arm.
        arm: String,
        /// Why.
        error: BuildError,
    },
    /// A limit of 0.
    #[error("limit = 0: must be at least 1")]
    ZeroLimit,
}

/// Checks that `arm` exists (before starting anything).
pub fn check_arm(arm: &str) -> Result<(), ArmError> {
    if all_arms().contains(&arm) {
        Ok(())
    } else {
        Err(ArmError::Unknown(arm.to_string()))
    }
}

async fn overloaded(_: tower::BoxError) -> StatusCode {
    StatusCode::TOO_MANY_REQUESTS
}

/// `work` (the routes that admission governs) behind `arm`, as one service: the layer is
/// applied once, so every route shares one limit.
pub fn wrap(arm: &str, p: &ArmParams, work: Router) -> Result<Router, ArmError> {
    if p.limit == 0 {
        return Err(ArmError::ZeroLimit);
    }
    let limit = p.limit as usize;
    let max = (p.slots as usize * 8).max(limit * 2);
    let svc = match arm {
        "none" => return Ok(work),
        "tower" => Router::new().fallback_service(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(limit))
                .service(work),
        ),
        "aimd" => Router::new().fallback_service(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(AdaptiveLimiterLayer::new(
                    Aimd::builder()
                        .initial_limit(limit)
                        .min_limit(1)
                        .max_limit(max)
                        .latency_threshold(p.latency_bound)
                        .build(),
                ))
                .service(work),
        ),
        "vegas" => Router::new().fallback_service(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(AdaptiveLimiterLayer::new(
                    Vegas::builder()
                        .initial_limit(limit)
                        .min_limit(1)
                        .max_limit(max)
                        .build(),
                ))
                .service(work),
        ),
        other => {
            let (_, make) = WEIR_ARMS
                .iter()
                .find(|(n, _)| *n == other)
                .ok_or_else(|| ArmError::Unknown(other.to_string()))?;
            let controller = make(p).map_err(|error| ArmError::Config {
                arm: other.to_string(),
                error,
            })?;
            let config = Config {
                exempt_paths: Vec::new(),
                ..Config::default()
            };
            let layer =
                AdmitLayer::with(controller, &config).map_err(|error| ArmError::Config {
                    arm: other.to_string(),
                    error: error.into(),
                })?;
            Router::new().fallback_service(ServiceBuilder::new().layer(layer).service(work))
        }
    };
    Ok(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_arms_are_refused_naming_the_known_ones() {
        let e = check_arm("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("arm = nope") && e.contains("weir-static"), "{e}");
        assert!(check_arm("tower").is_ok());
        let p = ArmParams {
            limit: 0,
            slots: 4,
            latency_bound: Duration::from_millis(10),
        };
        assert!(matches!(
            wrap("tower", &p, Router::new()),
            Err(ArmError::ZeroLimit)
        ));
    }
}
