//! The global rate-limit service's configuration, in the format of Envoy's reference service
//! (envoyproxy/ratelimit): a `domain` and a tree of `descriptors`, each a `key`, an optional
//! `value` (a trailing `*` matches by prefix), an optional `rate_limit { unit,
//! requests_per_unit }` (or `{ unlimited: true }`, with an optional `name` and `replaces`),
//! `shadow_mode` and `detailed_metric`. Files written for that service load unchanged.
//!
//! [`RateLimitConfig::check`] applies that service's loader rules, so a configuration Weir
//! writes is one the service accepts: a non-empty domain, a non-empty key on every
//! descriptor, no two descriptors with the same composite key at one level, a unit on every
//! limit that is not `unlimited` and none on one that is. One rule is stricter than the
//! reference: `requests_per_unit` must be written (the reference reads a missing one as 0,
//! which refuses every request); `requests_per_unit: 0` written out is the reference's
//! block-list and is accepted.

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
/// given (no value: each distinct value is counted on its own; a value ending in `*`: values
/// starting with the rest).
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
    /// Count and report, but always answer OK (soft launch of a limit).
    #[serde(default, skip_serializing_if = "is_false")]
    pub shadow_mode: bool,
    /// The reference service's per-value statistics. Weir's metrics are per domain and
    /// outcome only (bounded cardinality), so this has no effect; the service says so when it
    /// loads a file that sets it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub detailed_metric: bool,
    /// Nested entries (composite descriptors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<Descriptor>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitValue {
    /// The period (absent only when `unlimited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// Requests allowed per period; 0 refuses every request (a block-list entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_unit: Option<u32>,
    /// Never limited and never counted: answered OK at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlimited: bool,
    /// A name that another limit's `replaces` can refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Limits this one replaces: when a request matches both, only this one is applied and
    /// the replaced one is neither counted nor enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<Replaces>,
}

impl RateLimitValue {
    /// `requests` per `unit`.
    pub fn per(unit: Unit, requests: u32) -> Self {
        RateLimitValue {
            unit: Some(unit),
            requests_per_unit: Some(requests),
            unlimited: false,
            name: None,
            replaces: Vec::new(),
        }
    }
}

/// One entry of `replaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replaces {
    /// The `name` of the replaced limit.
    pub name: String,
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
        if let Some(r) = &d.rate_limit {
            check_limit(r, &format!("{here}.rate_limit"), out);
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

fn check_limit(r: &RateLimitValue, here: &str, out: &mut Vec<(String, String)>) {
    if r.unlimited {
        if r.unit.is_some() || r.requests_per_unit.is_some() {
            out.push((
                here.to_string(),
                "unlimited: true takes no unit and no requests_per_unit".to_string(),
            ));
        }
    } else {
        if r.unit.is_none() {
            out.push((
                format!("{here}.unit"),
                "missing: second, minute, hour or day (or unlimited: true)".to_string(),
            ));
        }
        if r.requests_per_unit.is_none() {
            out.push((
                format!("{here}.requests_per_unit"),
                "missing (write 0 to refuse every request)".to_string(),
            ));
        }
    }
    if r.name.as_deref() == Some("") {
        out.push((format!("{here}.name"), "must not be empty".to_string()));
    }
    for (i, x) in r.replaces.iter().enumerate() {
        if x.name.is_empty() {
            out.push((
                format!("{here}.replaces[{i}].name"),
                "must not be empty".to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, value: Option<&str>, n: u32) -> Descriptor {
        Descriptor {
            key: key.to_string(),
            value: value.map(str::to_string),
            rate_limit: Some(RateLimitValue::per(Unit::Second, n)),
            shadow_mode: false,
            detailed_metric: false,
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
                Descriptor {
                    rate_limit: Some(RateLimitValue {
                        unit: None,
                        ..RateLimitValue::per(Unit::Day, 1)
                    }),
                    ..leaf("user", None, 1)
                },
                Descriptor {
                    rate_limit: Some(RateLimitValue {
                        unlimited: true,
                        ..RateLimitValue::per(Unit::Day, 1)
                    }),
                    ..leaf("ldap", None, 1)
                },
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
                "descriptors[3].rate_limit.unit",
                "descriptors[4].rate_limit",
            ]
        );
        assert!(problems[1].1.contains("\"path_/a\""), "{problems:?}");
    }

    #[test]
    fn the_written_format_is_the_reference_services() {
        let text = "domain: shop\ndescriptors:\n  - key: remote_address\n    rate_limit:\n      unit: second\n      requests_per_unit: 100\n";
        let c: RateLimitConfig = serde_norway::from_str(text).unwrap();
        assert_eq!(
            c.descriptors[0].rate_limit.as_ref().unwrap().unit,
            Some(Unit::Second)
        );
        let written = serde_norway::to_string(&c).unwrap();
        assert!(written.contains("unit: second"), "{written}");
        assert_eq!(
            serde_norway::from_str::<RateLimitConfig>(&written).unwrap(),
            c
        );
    }

    /// The reference service's README examples 3 (a block-list entry of 0), 5 (unlimited),
    /// 6 (shadow mode), 7 (name / replaces), 8 (detailed_metric) and 9 (a wildcard value).
    #[test]
    fn the_reference_services_examples_load() {
        let text = "\
domain: all
descriptors:
  - key: remote_address
    value: 50.0.0.5
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: ldap
    rate_limit: { unlimited: true }
  - key: service
    descriptors:
      - key: user
        value: user-a
        rate_limit: { requests_per_unit: 10, unit: second }
        shadow_mode: true
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit: { name: specific_limit, requests_per_unit: 5, unit: second }
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit: { replaces: [ { name: specific_limit } ], requests_per_unit: 10, unit: second }
  - key: key1
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: key1
    value: value*
    rate_limit: { unit: minute, requests_per_unit: 20 }
";
        let c: RateLimitConfig = serde_norway::from_str(text).unwrap();
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert!(c.descriptors[1].rate_limit.as_ref().unwrap().unlimited);
        assert!(c.descriptors[2].descriptors[0].shadow_mode);
        let written = serde_norway::to_string(&c).unwrap();
        assert_eq!(
            serde_norway::from_str::<RateLimitConfig>(&written).unwrap(),
            c
        );
        // Without requests_per_unit the reference would refuse every request: said, not read.
        let c: RateLimitConfig = serde_norway::from_str(
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second }\n",
        )
        .unwrap();
        assert_eq!(
            c.check(),
            [(
                "descriptors[0].rate_limit.requests_per_unit".to_string(),
                "missing (write 0 to refuse every request)".to_string()
            )]
        );
    }
}
