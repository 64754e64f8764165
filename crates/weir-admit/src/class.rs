//! Who is shed first: a request's criticality ([`Class`]) and its route partition
//! ([`Partition`]).
//!
//! - A class is admitted only while in-flight requests stay under its share of the limit
//!   ([`ClassShares`]): `default` traffic uses the limit as configured, `sheddable` 70 % of
//!   it, and `critical` may go 10 % over it, so under overload sheddable requests are refused
//!   first and critical ones last, and a service with one class of traffic loses nothing. The class comes from a [`Class`] value in the request's extensions (put
//!   there by an earlier layer or an extractor) or else from a header (`x-weir-criticality`
//!   by default); anything else is `default`.
//! - Within those shares, a class that is being refused holds slots back from the classes
//!   below it ([`Reserve`]): every refusal of a `critical` request reserves one more slot that
//!   `default` and `sheddable` requests may not take, and the reservation shrinks by one every
//!   `1/target_refused` admissions of that class and halves for every `idle_ms` without a
//!   refusal. It settles where about `target_refused` of the higher class is refused (or where
//!   the lower classes get nothing), so lower classes absorb the overload without a share
//!   tuned to the traffic mix, and get their slots back when the higher class goes quiet.
//! - A partition (a path prefix with a share of the limit) is guaranteed its share: while it
//!   holds fewer requests than `share × class threshold`, it is admitted even when other
//!   partitions have filled the service, so one route cannot starve another. Partitions that
//!   borrow beyond their share are the ones refused when the service is full.
//!
//! **Never:** parse a request body, or widen a match: an unknown class value is `default`,
//! never `critical`.

use std::sync::atomic::AtomicU32;

use crate::ConfigError;

/// A request's criticality: lower classes are shed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Shed last: may use every slot.
    Critical,
    /// The default.
    Default,
    /// Shed first (batch, prefetch, retries of idempotent reads…).
    Sheddable,
}

impl Class {
    /// Every class, most critical first (the order of per-class arrays).
    pub const ALL: [Class; 3] = [Class::Critical, Class::Default, Class::Sheddable];

    /// The class's name in headers, metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::Default => "default",
            Class::Sheddable => "sheddable",
        }
    }

    /// The class a header value names (ASCII case-insensitive), if it names one.
    pub fn parse(value: &[u8]) -> Option<Class> {
        Class::ALL
            .into_iter()
            .find(|c| value.eq_ignore_ascii_case(c.as_str().as_bytes()))
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The share of the limit each class may fill, in (0, 2], non-increasing with the class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassShares {
    /// `critical` (default 1.1: critical requests may use a little headroom over the limit).
    pub critical: f64,
    /// `default` (default 1.0).
    pub default: f64,
    /// `sheddable` (default 0.7).
    pub sheddable: f64,
}

impl Default for ClassShares {
    fn default() -> Self {
        ClassShares {
            critical: 1.1,
            default: 1.0,
            sheddable: 0.7,
        }
    }
}

impl ClassShares {
    pub(crate) fn check(&self) -> Result<[f64; 3], ConfigError> {
        let shares = [self.critical, self.default, self.sheddable];
        let names = [
            "class_shares.critical",
            "class_shares.default",
            "class_shares.sheddable",
        ];
        for (share, field) in shares.iter().zip(names) {
            if !(*share > 0.0 && *share <= 2.0) {
                return Err(ConfigError::Invalid {
                    field,
                    value: share.to_string(),
                    why: "must be in (0, 2]: a share of the limit",
                });
            }
        }
        if self.default > self.critical || self.sheddable > self.default {
            return Err(ConfigError::Invalid {
                field: "class_shares",
                value: format!(
                    "critical {} / default {} / sheddable {}",
                    self.critical, self.default, self.sheddable
                ),
                why: "a lower class may not have a larger share than a higher one",
            });
        }
        Ok(shares)
    }

    /// The in-flight count at which `class` stops being admitted under `limit` (at least 1).
    pub fn threshold(shares: &[f64; 3], class: Class, limit: u32) -> u32 {
        ((f64::from(limit) * shares[class.index()]).floor() as u32).max(1)
    }
}

/// How a refused class holds slots back from the classes below it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reserve {
    /// Off: lower classes are limited by their shares alone.
    pub enabled: bool,
    /// The refusal rate of a higher class the reservation aims at, in (0, 0.5] (default 0.002:
    /// one refused critical request in 500 while lower classes still hold slots).
    pub target_refused: f64,
    /// A reservation halves for each `idle_ms` without a refusal of its class (default 1000).
    pub idle_ms: u64,
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve {
            enabled: true,
            target_refused: 0.002,
            idle_ms: 1000,
        }
    }
}

impl Reserve {
    /// The number of admissions of a reserving class that give one slot back.
    pub(crate) fn check(&self) -> Result<u32, ConfigError> {
        if !(self.target_refused > 0.0 && self.target_refused <= 0.5) {
            return Err(ConfigError::Invalid {
                field: "reserve.target_refused",
                value: self.target_refused.to_string(),
                why: "must be in (0, 0.5]: the share of a higher class that may be refused",
            });
        }
        if self.idle_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "reserve.idle_ms",
                value: "0".into(),
                why: "must be at least 1 ms",
            });
        }
        // Equilibrium: growth p per request = decay (1 − p) / k, so p = 1 / (k + 1).
        Ok(((1.0 / self.target_refused).round() as u32)
            .saturating_sub(1)
            .max(1))
    }
}

/// A route partition: requests whose path starts with `path_prefix` share its guarantee.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Its name, in metrics.
    pub name: String,
    /// Path prefix (starts with `/`); the longest matching prefix wins.
    pub path_prefix: String,
    /// The share of the limit it is guaranteed, in (0, 1]; shares sum to at most 1.
    pub share: f64,
}

/// A partition at run time: its configuration and in-flight count.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) share: f64,
    pub(crate) in_flight: AtomicU32,
}

pub(crate) fn check_partitions(parts: &[Partition]) -> Result<Vec<PartitionState>, ConfigError> {
    let mut total = 0.0;
    for (i, p) in parts.iter().enumerate() {
        if p.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "partitions.name",
                value: format!("partition #{} (\"\")", i + 1),
                why: "a partition needs a name (it labels metrics)",
            });
        }
        if !p.path_prefix.starts_with('/') {
            return Err(ConfigError::Invalid {
                field: "partitions.path_prefix",
                value: format!("{}: {:?}", p.name, p.path_prefix),
                why: "must start with '/'",
            });
        }
        if !(p.share > 0.0 && p.share <= 1.0) {
            return Err(ConfigError::Invalid {
                field: "partitions.share",
                value: format!("{}: {}", p.name, p.share),
                why: "must be in (0, 1]",
            });
        }
        if parts[..i]
            .iter()
            .any(|q| q.name == p.name || q.path_prefix == p.path_prefix)
        {
            return Err(ConfigError::Invalid {
                field: "partitions",
                value: format!("{} ({})", p.name, p.path_prefix),
                why: "names and path prefixes must be unique",
            });
        }
        total += p.share;
    }
    if total > 1.0 + 1e-9 {
        return Err(ConfigError::Invalid {
            field: "partitions.share",
            value: format!("sum {total}"),
            why: "the guaranteed shares cannot add up to more than the whole limit",
        });
    }
    Ok(parts
        .iter()
        .map(|p| PartitionState {
            name: p.name.clone(),
            prefix: p.path_prefix.clone(),
            share: p.share,
            in_flight: AtomicU32::new(0),
        })
        .collect())
}

/// The partition of `path`: the longest matching prefix.
pub(crate) fn partition_of(parts: &[PartitionState], path: &str) -> Option<usize> {
    parts
        .iter()
        .enumerate()
        .filter(|(_, p)| path.starts_with(&p.prefix))
        .max_by_key(|(_, p)| p.prefix.len())
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_name_classes_and_nothing_else_is_critical() {
        assert_eq!(Class::parse(b"critical"), Some(Class::Critical));
        assert_eq!(Class::parse(b"SHEDDABLE"), Some(Class::Sheddable));
        assert_eq!(Class::parse(b"critical "), None);
        assert_eq!(Class::parse(b"crit"), None);
    }

    #[test]
    fn thresholds_follow_the_shares_and_never_reach_zero() {
        let s = ClassShares::default().check().expect("defaults are valid");
        assert_eq!(ClassShares::threshold(&s, Class::Critical, 100), 110);
        assert_eq!(ClassShares::threshold(&s, Class::Default, 100), 100);
        assert_eq!(ClassShares::threshold(&s, Class::Sheddable, 100), 70);
        assert_eq!(ClassShares::threshold(&s, Class::Sheddable, 1), 1);
    }

    #[test]
    fn reserve_decay_follows_the_target_and_bad_values_are_refused() {
        assert_eq!(Reserve::default().check(), Ok(499));
        let r = |target_refused, idle_ms| Reserve {
            enabled: true,
            target_refused,
            idle_ms,
        };
        assert_eq!(r(0.5, 10).check(), Ok(1));
        let e = r(0.0, 10).check().unwrap_err().to_string();
        assert!(e.contains("reserve.target_refused = 0"), "{e}");
        let e = r(f64::NAN, 10).check().unwrap_err().to_string();
        assert!(e.contains("reserve.target_refused = NaN"), "{e}");
        let e = r(0.01, 0).check().unwrap_err().to_string();
        assert!(e.contains("reserve.idle_ms = 0"), "{e}");
    }

    #[test]
    fn bad_shares_and_partitions_are_refused_naming_the_field() {
        let e = ClassShares {
            sheddable: 0.0,
            ..ClassShares::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("class_shares.sheddable = 0"), "{e}");
        let e = ClassShares {
            critical: 0.8,
            ..ClassShares::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("larger share"), "{e}");
        let p = |name: &str, prefix: &str, share| Partition {
            name: name.into(),
            path_prefix: prefix.into(),
            share,
        };
        let e = check_partitions(&[p("a", "/a", 0.6), p("b", "/b", 0.6)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions.share = sum 1.2"), "{e}");
        let e = check_partitions(&[p("a", "a", 0.5)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions.path_prefix = a: \"a\""), "{e}");
        let e = check_partitions(&[p("a", "/a", 0.2), p("a", "/b", 0.2)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unique"), "{e}");
        let parts = check_partitions(&[p("api", "/api", 0.5), p("v2", "/api/v2", 0.3)])
            .expect("valid partitions");
        assert_eq!(partition_of(&parts, "/api/v2/x"), Some(1));
        assert_eq!(partition_of(&parts, "/api/v1"), Some(0));
        assert_eq!(partition_of(&parts, "/other"), None);
    }
}
