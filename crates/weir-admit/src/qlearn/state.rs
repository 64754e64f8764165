//! The discretised state and the actions: what the Q-table's rows and columns mean.
//! Changing anything here changes the table's encoding: the file records it, and a table
//! with another encoding is refused on load.

use serde::{Deserialize, Serialize};

/// Latency above no-load as a share of the SLO headroom: `(lat/no_load - 1) / (slo - 1)`
/// (0: no queueing, 1: at the SLO).
pub const LATENCY_EDGES: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0];
/// This interval's mean latency / the previous interval's.
pub const GRADIENT_EDGES: [f64; 2] = [0.85, 1.15];
/// Mean in-flight at admission / limit.
pub const IN_FLIGHT_EDGES: [f64; 2] = [0.5, 0.85];
/// Completion rate × no-load latency / limit: the share of the limit doing work at
/// no-load speed (Little's law).
pub const RATE_EDGES: [f64; 2] = [0.5, 0.85];
/// Rejected / (rejected + completed); an extra first bin for "none".
pub const REJECT_EDGES: [f64; 2] = [0.05, 0.3];
/// CPU utilisation; an extra first bin for "no gauge / unknown".
pub const CPU_EDGES: [f64; 2] = [0.75, 0.95];

/// The actions: multipliers of the limit. Raises add at least 1.
pub const ACTIONS: [f64; 5] = [0.75, 0.9, 1.0, 1.05, 1.25];
/// Number of actions.
pub const N_ACTIONS: usize = ACTIONS.len();
/// The index of "hold".
pub const HOLD: usize = 2;

const SIZES: [usize; 6] = [
    LATENCY_EDGES.len() + 1,
    GRADIENT_EDGES.len() + 1,
    IN_FLIGHT_EDGES.len() + 1,
    RATE_EDGES.len() + 1,
    REJECT_EDGES.len() + 2,
    CPU_EDGES.len() + 2,
];

/// Number of states.
pub const N_STATES: usize = SIZES[0] * SIZES[1] * SIZES[2] * SIZES[3] * SIZES[4] * SIZES[5];

/// What one control interval measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Mean latency / no-load latency.
    pub latency_ratio: f64,
    /// The SLO as a multiple of no-load latency.
    pub slo_ratio: f64,
    /// Mean latency / previous interval's.
    pub gradient: f64,
    /// Mean in-flight at admission / limit.
    pub in_flight_use: f64,
    /// Completion rate × no-load latency / limit.
    pub rate_use: f64,
    /// Rejected / (rejected + completed).
    pub reject_share: f64,
    /// CPU utilisation, when a gauge reads one.
    pub cpu: Option<f64>,
}

fn bin(x: f64, edges: &[f64]) -> usize {
    edges.iter().take_while(|&&e| x >= e).count()
}

impl Features {
    /// Latency above no-load as a share of the SLO headroom.
    pub fn slo_use(&self) -> f64 {
        (self.latency_ratio - 1.0) / (self.slo_ratio - 1.0)
    }

    /// The state index (row-major, latency slowest).
    pub fn state(&self) -> usize {
        let reject = if self.reject_share > 0.0 {
            1 + bin(self.reject_share, &REJECT_EDGES)
        } else {
            0
        };
        let cpu = self.cpu.map_or(0, |c| 1 + bin(c, &CPU_EDGES));
        let idx = [
            bin(self.slo_use(), &LATENCY_EDGES),
            bin(self.gradient, &GRADIENT_EDGES),
            bin(self.in_flight_use, &IN_FLIGHT_EDGES),
            bin(self.rate_use, &RATE_EDGES),
            reject,
            cpu,
        ];
        idx.iter().zip(SIZES).fold(0, |acc, (&i, n)| acc * n + i)
    }
}

/// One feature of the encoding, as the table file describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Name and meaning.
    pub name: String,
    /// Bin edges (a value `x` falls in the bin after every edge `<= x`).
    pub edges: Vec<f64>,
    /// An extra first bin, if any (e.g. "none").
    pub extra_first_bin: Option<String>,
}

/// The state/action encoding, recorded in every table file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encoding {
    /// Features, slowest-varying first (row-major state index).
    pub features: Vec<FeatureSpec>,
    /// Action multipliers of the limit (raises add at least 1).
    pub actions: Vec<f64>,
}

/// This build's encoding.
pub fn encoding() -> Encoding {
    let f = |name: &str, edges: &[f64], extra: Option<&str>| FeatureSpec {
        name: name.to_string(),
        edges: edges.to_vec(),
        extra_first_bin: extra.map(str::to_string),
    };
    Encoding {
        features: vec![
            f(
                "slo_use = (latency/no_load - 1)/(slo_ratio - 1)",
                &LATENCY_EDGES,
                None,
            ),
            f("gradient = latency/previous latency", &GRADIENT_EDGES, None),
            f("in_flight_use = in-flight/limit", &IN_FLIGHT_EDGES, None),
            f(
                "rate_use = completions/s x no_load/limit",
                &RATE_EDGES,
                None,
            ),
            f(
                "reject_share = rejected/(rejected+completed)",
                &REJECT_EDGES,
                Some("none rejected"),
            ),
            f("cpu", &CPU_EDGES, Some("no gauge")),
        ],
        actions: ACTIONS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_distinct_and_in_range() {
        let base = Features {
            latency_ratio: 1.0,
            slo_ratio: 2.0,
            gradient: 1.0,
            in_flight_use: 0.9,
            rate_use: 0.9,
            reject_share: 0.0,
            cpu: None,
        };
        let hot = Features {
            latency_ratio: 5.0,
            reject_share: 0.5,
            cpu: Some(1.0),
            ..base
        };
        assert_ne!(base.state(), hot.state());
        assert!(hot.state() < N_STATES);
        let max = Features {
            latency_ratio: 1e9,
            gradient: 9.0,
            in_flight_use: 9.0,
            rate_use: 9.0,
            reject_share: 1.0,
            cpu: Some(2.0),
            ..base
        };
        assert_eq!(max.state(), N_STATES - 1);
    }
}
