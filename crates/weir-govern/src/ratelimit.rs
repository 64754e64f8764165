//! The global rate-limit service's configuration, in the format of Envoy's reference service
//! (envoyproxy/ratelimit): a `domain` and a tree of `descriptors`, each a `key`, an optional
//! `value` and an optional `rate_limit { unit, requests_per_unit }`.
//!
//! [`RateLimitConfig::check`] applies that service's loader rules, so a configuration Weir
//! writes is one the service accepts: a non-empty domain, a non-empty key on every
//! descriptor, no two descriptors with the same composite key at one level, a positive
//! number of requests per unit.

use serde::{Deserialize, Serialize};

/// One domain's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The domain the proxies name in their requests.
    pub domain: String,
    /// The limits, by descriptor.
    #[serde(default)]
    pub descriptors: Vec<Descriptor>,
}

/// One descriptor entry: a request's descriptor matches it by key, and by value when one is
/// given (no value: each distinct value is counted on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// The descriptor key.
    pub key: String,
    /// The value it must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The limit for requests whose descriptor ends here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitValue>,
    /// Nested entries (composite descriptors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<Descriptor>,
}

/// A limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitValue {
    /// The period.
    pub unit: Unit,
    /// Requests allowed per period.
    pub requests_per_unit: u32,
}

/// A rate-limit period, as the service spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl Unit {
    /// The period in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }
}

impl RateLimitConfig {
    /// The file the rate-limit service reads.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }

    /// Every rule of the reference service's loader this configuration breaks, as
    /// `(field path, message)`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.domain.trim().is_empty() {
            out.push((
                "domain".to_string(),
                "the domain must not be empty".to_string(),
            ));
        }
        check_level(&self.descriptors, "descriptors", &mut out);
        out
    }
}

fn check_level(level: &[Descriptor], path: &str, out: &mut Vec<(String, String)>) {
    let mut seen = std::collections::BTreeMap::new();
    for (i, d) in level.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if d.key.is_empty() {
            out.push((
                format!("{here}.key"),
                "a descriptor needs a key".to_string(),
            ));
        }
        let composite = match &d.value {
            Some(v) => format!("{}_{v}", d.key),
            None => d.key.clone(),
        };
        if let Some(first) = seen.insert(composite.clone(), i) {
            out.push((
                here.clone(),
                format!(
                    "duplicate composite key {composite:?} (also {path}[{first}]): the \
                     rate-limit service refuses the whole file"
                ),
            ));
        }
        if d.rate_limit.is_some_and(|r| r.requests_per_unit == 0) {
            out.push((
                format!("{here}.rate_limit.requests_per_unit"),
                "must be positive (to refuse every request, use a limit of 1 per day and \
                 say so, or an authorization policy)"
                    .to_string(),
            ));
        }
        if d.rate_limit.is_none() && d.descriptors.is_empty() {
            out.push((
                here.clone(),
                "neither a rate_limit nor nested descriptors: the entry limits nothing".to_string(),
            ));
        }
        check_level(&d.descriptors, &format!("{here}.descriptors"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, value: Option<&str>, n: u32) -> Descriptor {
        Descriptor {
            key: key.to_string(),
            value: value.map(str::to_string),
            rate_limit: Some(RateLimitValue {
                unit: Unit::Second,
                requests_per_unit: n,
            }),
            descriptors: Vec::new(),
        }
    }

    #[test]
    fn the_loader_rules_are_applied() {
        let ok = RateLimitConfig {
            domain: "shop".into(),
            descriptors: vec![
                leaf("path", Some("/a"), 5),
                leaf("path", Some("/b"), 5),
                leaf("path", None, 5),
            ],
        };
        assert!(ok.check().is_empty(), "{:?}", ok.check());

        let bad = RateLimitConfig {
            domain: " ".into(),
            descriptors: vec![
                leaf("path", Some("/a"), 5),
                leaf("path", Some("/a"), 7),
                leaf("", None, 0),
            ],
        };
        let problems = bad.check();
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "domain",
                "descriptors[1]",
                "descriptors[2].key",
                "descriptors[2].rate_limit.requests_per_unit"
            ]
        );
        assert!(problems[1].1.contains("\"path_/a\""), "{problems:?}");
    }

    #[test]
    fn the_written_format_is_the_reference_services() {
        let text = "domain: shop\ndescriptors:\n  - key: remote_address\n    rate_limit:\n      unit: second\n      requests_per_unit: 100\n";
        let c: RateLimitConfig = serde_norway::from_str(text).unwrap();
        assert_eq!(c.descriptors[0].rate_limit.unwrap().unit, Unit::Second);
        let written = serde_norway::to_string(&c).unwrap();
        assert!(written.contains("unit: second"), "{written}");
        assert_eq!(
            serde_norway::from_str::<RateLimitConfig>(&written).unwrap(),
            c
        );
    }
}
