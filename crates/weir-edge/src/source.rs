//! Where observations come from.

use std::future::Future;

use weir_core::{Observation, Outcome};

use crate::SourceError;

/// Where observations come from (Prometheus, the simulator).
pub trait Source: Send + 'static {
    /// Observes the cluster at controller time `now_s`. The returned observation's `at_s`
    /// should be `now_s` (the shield compares override expiry and staleness against it).
    fn observe(
        &mut self,
        now_s: f64,
    ) -> impl Future<Output = Result<Observation, SourceError>> + Send;

    /// What really happened since the previous observation, when the source knows (the
    /// simulator does; Prometheus does not, and the outcome is then estimated from the
    /// observation). Called right after a successful [`Source::observe`].
    fn take_outcome(&mut self) -> Option<Outcome> {
        None
    }
}
