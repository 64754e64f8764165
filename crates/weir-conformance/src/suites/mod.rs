//! The checks, one module per feature. Each function starts what it needs, sends requests,
//! and returns its checks; a setup that fails becomes a failed check with the reason.

pub mod environments;
pub mod global;
pub mod limits;
pub mod matches;
pub mod nearby;
pub mod payoff;
pub mod traffic;

use crate::check::Check;

/// `result`'s checks, or one failed check saying why they could not run.
pub(crate) fn or_failed(
    feature: &str,
    policy_line: &str,
    result: Result<Vec<Check>, crate::Error>,
) -> Vec<Check> {
    result.unwrap_or_else(|e| vec![Check::failed_to_run(feature, policy_line, &e.to_string())])
}
