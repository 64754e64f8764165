//! One condition of a route → one Istio match field, exactly, or a refusal.
//!
//! Istio's `HTTPMatchRequest` compares strings (`exact`, `prefix`, RE2 `regex`, presence) in a
//! few places (`headers`, `queryParams`, `uri`, `method`, `sourceLabels`) and can exclude only
//! by header (`withoutHeaders`). Every operator is compiled into those, never into a wider
//! match: `in` is an escaped RE2 alternation, numeric operators a regex over the canonical
//! decimal text ([`crate::range`]), a cookie a regex on the `cookie` header; what the target
//! cannot express (excluding by query parameter, path or method; a non-RE2 regex) is an error.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::policy::{Condition, Op, Scalar, Source};
use crate::problem::Report;
use crate::range::{IntRange, int_regex};

/// An Istio `StringMatch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StringMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex` (RE2, full match).
    Regex(String),
    /// An empty matcher `{}`: the field is present, with any value.
    Present,
}

impl StringMatch {
    /// The same match as a regex (for combining several).
    pub fn as_regex(&self) -> String {
        match self {
            StringMatch::Exact(v) => escape(v),
            StringMatch::Prefix(v) => format!("{}.*", escape(v)),
            StringMatch::Regex(r) => r.clone(),
            StringMatch::Present => ".*".to_string(),
        }
    }
}

/// Where an Istio match reads the request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `headers` / `withoutHeaders` (lower-case name).
    Header(String),
    /// `queryParams`.
    Query(String),
    /// `sourceLabels` (exact values only).
    SourceLabel(String),
    /// `uri`.
    Uri,
    /// `method`.
    Method,
}

/// A condition as Istio expresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Where it reads.
    pub target: Target,
    /// `true`: the request matches when this does *not* (`withoutHeaders`).
    pub negated: bool,
    /// How it compares.
    pub matcher: StringMatch,
}

/// Escapes RE2's metacharacters so that `text` matches literally.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The alternation of `values`, each literal.
pub fn any_of(values: &[String]) -> String {
    values
        .iter()
        .map(|v| escape(v))
        .collect::<Vec<_>>()
        .join("|")
}

/// Parses `re` as a regex Envoy's RE2 engine accepts; the error says why not.
pub fn check_re2(re: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(re)
        .map_err(|e| {
            let text = e.to_string();
            let why = text.lines().last().unwrap_or("invalid").trim().to_string();
            format!(
                "not an RE2 regex ({why}); Envoy evaluates RE2 only — no look-around, no back-references"
            )
        })
}

/// Whether a parsed regex can match text containing `c`.
fn can_match_char(hir: &Hir, c: char) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => String::from_utf8_lossy(&lit.0).contains(c),
        HirKind::Class(Class::Unicode(cls)) => cls.iter().any(|r| r.start() <= c && c <= r.end()),
        HirKind::Class(Class::Bytes(cls)) => {
            let b = u32::from(c);
            b < 256
                && cls
                    .iter()
                    .any(|r| u32::from(r.start()) <= b && b <= u32::from(r.end()))
        }
        HirKind::Repetition(rep) => rep.max != Some(0) && can_match_char(&rep.sub, c),
        HirKind::Capture(cap) => can_match_char(&cap.sub, c),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().any(|s| can_match_char(s, c))
        }
    }
}

/// A condition's operand, checked for its operator; problems go to `report`.
enum Operand {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// An integer range.
    Ints(IntRange),
    /// Nothing.
    Nothing,
}

fn operand(c: &Condition, path: &str, report: &mut Report) -> Option<Operand> {
    let unexpected = |field: &str, report: &mut Report, shown: String| {
        report.add(
            &format!("{path}.{field}"),
            Some(shown),
            format!("`{}` does not take `{field}`", c.op),
        );
    };
    let wants_value = matches!(
        c.op,
        Op::Equals | Op::NotEquals | Op::Prefix | Op::Regex | Op::LessThan | Op::GreaterThan
    );
    let wants_values = matches!(c.op, Op::In | Op::NotIn);
    let wants_bounds = c.op == Op::Range;
    let before = report.count();
    if !wants_value && let Some(v) = &c.value {
        unexpected("value", report, v.to_string());
    }
    if !wants_values && let Some(v) = &c.values {
        unexpected("values", report, format!("{} values", v.len()));
    }
    if !wants_bounds {
        if let Some(v) = c.min {
            unexpected("min", report, v.to_string());
        }
        if let Some(v) = c.max {
            unexpected("max", report, v.to_string());
        }
    }
    let op = c.op;
    let result = match op {
        Op::Equals | Op::NotEquals | Op::Prefix | Op::Regex => match &c.value {
            Some(v) => Some(Operand::Text(v.text())),
            None => {
                report.add(
                    &format!("{path}.value"),
                    None,
                    format!("`{op}` needs a `value`"),
                );
                None
            }
        },
        Op::LessThan | Op::GreaterThan => match &c.value {
            Some(Scalar::Int(v)) => {
                let range = if op == Op::LessThan {
                    v.checked_sub(1).map(|m| IntRange {
                        min: None,
                        max: Some(m),
                    })
                } else {
                    v.checked_add(1).map(|m| IntRange {
                        min: Some(m),
                        max: None,
                    })
                };
                match range {
                    Some(r) => Some(Operand::Ints(r)),
                    None => {
                        report.add(
                            &format!("{path}.value"),
                            Some(v.to_string()),
                            format!("no integer is {}", op.as_str().replace('_', " ")),
                        );
                        None
                    }
                }
            }
            Some(other) => {
                report.add(
                    &format!("{path}.value"),
                    Some(other.to_string()),
                    format!("`{op}` compares numbers: give an integer"),
                );
                None
            }
            None => {
                report.add(
                    &format!("{path}.value"),
                    None,
                    format!("`{op}` needs an integer `value`"),
                );
                None
            }
        },
        Op::In | Op::NotIn => match &c.values {
            Some(vs) if !vs.is_empty() => {
                let mut texts: Vec<String> = vs.iter().map(Scalar::text).collect();
                texts.sort();
                texts.dedup();
                Some(Operand::Texts(texts))
            }
            _ => {
                report.add(
                    &format!("{path}.values"),
                    None,
                    format!("`{op}` needs a non-empty list of `values`"),
                );
                None
            }
        },
        Op::Range => match (c.min, c.max) {
            (Some(min), Some(max)) if min <= max => Some(Operand::Ints(IntRange {
                min: Some(min),
                max: Some(max),
            })),
            (Some(min), Some(max)) => {
                report.add(
                    &format!("{path}.min"),
                    Some(min.to_string()),
                    format!("the range is empty: min {min} is above max {max}"),
                );
                None
            }
            _ => {
                report.add(
                    path,
                    None,
                    "`range` needs integer `min` and `max` (both inclusive)",
                );
                None
            }
        },
        Op::Exists | Op::Absent => Some(Operand::Nothing),
    };
    if report.count() > before {
        None
    } else {
        result
    }
}

/// The positive form of `op` on an operand, as a `StringMatch` (before negation).
fn positive(op: Op, operand: Operand, path: &str, report: &mut Report) -> Option<StringMatch> {
    Some(match (op, operand) {
        (Op::Equals | Op::NotEquals, Operand::Text(v)) => StringMatch::Exact(v),
        (Op::Prefix, Operand::Text(v)) => StringMatch::Prefix(v),
        (Op::Regex, Operand::Text(r)) => {
            if let Err(why) = check_re2(&r) {
                report.add(&format!("{path}.value"), Some(format!("{r:?}")), why);
                return None;
            }
            StringMatch::Regex(r)
        }
        (Op::In | Op::NotIn, Operand::Texts(vs)) => match vs.as_slice() {
            [one] => StringMatch::Exact(one.clone()),
            _ => StringMatch::Regex(any_of(&vs)),
        },
        (Op::Range | Op::LessThan | Op::GreaterThan, Operand::Ints(r)) => {
            StringMatch::Regex(int_regex(r)?)
        }
        (Op::Exists | Op::Absent, Operand::Nothing) => StringMatch::Present,
        _ => return None,
    })
}

/// Compiles one condition at `path` (`spec.routes[0].match[1]`); `None` when it cannot be
/// expressed exactly (the reason is in `report`).
pub(crate) fn compile(c: &Condition, path: &str, report: &mut Report) -> Option<Compiled> {
    let key = match (c.source.takes_key(), &c.key) {
        (true, Some(k)) if !k.is_empty() => Some(k.clone()),
        (true, _) => {
            report.add(
                &format!("{path}.key"),
                None,
                format!("source `{}` needs a `key` (which one)", c.source),
            );
            None
        }
        (false, Some(k)) => {
            report.add(
                &format!("{path}.key"),
                Some(format!("{k:?}")),
                format!("source `{}` takes no `key`", c.source),
            );
            return None;
        }
        (false, None) => None,
    };
    let operand = operand(c, path, report)?;
    let op = c.op;
    let negated = op.is_negative();
    let cannot_exclude = |what: &str, report: &mut Report| {
        report.add(
            &format!("{path}.op"),
            Some(op.to_string()),
            format!(
                "Istio cannot exclude by {what}: it has no negated match there, and a regex cannot \
                 express \"not\" (RE2 has no look-around). Route the excluded values first instead."
            ),
        );
    };
    match c.source {
        Source::Header => {
            let name = key?;
            if name != name.to_ascii_lowercase() {
                report.add(
                    &format!("{path}.key"),
                    Some(format!("{name:?}")),
                    format!(
                        "header names are matched in lower case by Istio: write {:?}",
                        name.to_ascii_lowercase()
                    ),
                );
                return None;
            }
            let matcher = positive(op, operand, path, report)?;
            Some(Compiled {
                target: Target::Header(name),
                negated,
                matcher,
            })
        }
        Source::Query => {
            let name = key?;
            if negated {
                cannot_exclude("query parameter", report);
                return None;
            }
            // Istio matches query parameters by `exact` or `regex` only.
            let matcher = match positive(op, operand, path, report)? {
                StringMatch::Prefix(p) => StringMatch::Regex(format!("{}.*", escape(&p))),
                StringMatch::Present => StringMatch::Regex(".*".to_string()),
                m => m,
            };
            Some(Compiled {
                target: Target::Query(name),
                negated: false,
                matcher,
            })
        }
        Source::Cookie => {
            let name = key?;
            let value_regex = cookie_value(op, operand, path, report)?;
            Some(Compiled {
                target: Target::Header("cookie".to_string()),
                negated,
                matcher: StringMatch::Regex(format!(
                    "(?:.*;[ \\t]*)?{}=(?:{value_regex})(?:[ \\t]*;.*)?",
                    escape(&name)
                )),
            })
        }
        Source::SourceLabel => {
            let name = key?;
            match (op, operand) {
                (Op::Equals, Operand::Text(v)) => Some(Compiled {
                    target: Target::SourceLabel(name),
                    negated: false,
                    matcher: StringMatch::Exact(v),
                }),
                _ => {
                    report.add(
                        &format!("{path}.op"),
                        Some(op.to_string()),
                        "Istio's sourceLabels match exact values only: use `equals` (one route per value)",
                    );
                    None
                }
            }
        }
        Source::Path | Source::Method => {
            let (what, target) = if c.source == Source::Path {
                ("path", Target::Uri)
            } else {
                ("method", Target::Method)
            };
            if negated {
                cannot_exclude(what, report);
                return None;
            }
            let matcher = positive(op, operand, path, report)?;
            if matcher == StringMatch::Present {
                report.add(
                    &format!("{path}.op"),
                    Some(op.to_string()),
                    format!("every request has a {what}: `exists` matches everything; drop the condition"),
                );
                return None;
            }
            Some(Compiled {
                target,
                negated: false,
                matcher,
            })
        }
    }
}

/// The regex a cookie's value must full-match for `op` — it can never match `;`, which ends
/// a cookie value, so that it cannot run into the next cookie.
fn cookie_value(op: Op, operand: Operand, path: &str, report: &mut Report) -> Option<String> {
    let literal = |v: &str, report: &mut Report| {
        if v.contains(';') {
            report.add(
                &format!("{path}.value"),
                Some(format!("{v:?}")),
                "a cookie value cannot contain `;`",
            );
            None
        } else {
            Some(escape(v))
        }
    };
    match (op, operand) {
        (Op::Equals | Op::NotEquals, Operand::Text(v)) => literal(&v, report),
        (Op::Prefix, Operand::Text(v)) => Some(format!("{}[^;]*", literal(&v, report)?)),
        (Op::Regex, Operand::Text(r)) => {
            let hir = match check_re2(&r) {
                Ok(h) => h,
                Err(why) => {
                    report.add(&format!("{path}.value"), Some(format!("{r:?}")), why);
                    return None;
                }
            };
            if can_match_char(&hir, ';') {
                report.add(
                    &format!("{path}.value"),
                    Some(format!("{r:?}")),
                    "this regex can match `;`, so on the `cookie` header it would run into the next \
                     cookie and match more than this cookie's value: use `[^;]` instead of `.`",
                );
                return None;
            }
            Some(r)
        }
        (Op::In | Op::NotIn, Operand::Texts(vs)) => {
            let mut parts = Vec::with_capacity(vs.len());
            for v in &vs {
                parts.push(literal(v, report)?);
            }
            Some(parts.join("|"))
        }
        (Op::Range | Op::LessThan | Op::GreaterThan, Operand::Ints(r)) => int_regex(r),
        (Op::Exists | Op::Absent, Operand::Nothing) => Some("[^;]*".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
