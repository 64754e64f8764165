//! RE2 regexes that full-match exactly the decimal integers in a range.
//!
//! Istio and Envoy compare headers and query parameters as strings; PolarisMesh's `range`,
//! `less_than` and `greater_than` compare numbers. Weir compiles a numeric condition into a
//! regex over the canonical decimal text of the numbers it accepts:
//!
//! - digits only, with a leading `-` for negative numbers;
//! - no leading zeros (`0` itself is written `0`), no `+`, no `-0`, no spaces.
//!
//! A value written otherwise (`007`, `+5`, ` 5`) matches no numeric condition — it is not the
//! number the application reads it as, and a wider match would route requests the user did
//! not mean to. `weir govern explain` says so.
//!
//! Written by hand: no kept crate turns an integer range into a regex.

/// Bounds of a numeric condition, both inclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    /// Lower bound, inclusive.
    pub min: Option<i64>,
    /// Upper bound, inclusive.
    pub max: Option<i64>,
}

/// The regex (for full matching, without anchors) of the canonical integers in `range`, or
/// `None` when the range is empty.
pub fn int_regex(range: IntRange) -> Option<String> {
    let lo = range.min.map_or(i128::MIN, i128::from);
    let hi = range.max.map_or(i128::MAX, i128::from);
    if lo > hi {
        return None;
    }
    let mut alternatives = Vec::new();
    // Negative part: -n for n in [max(1, -hi), -lo].
    if lo < 0 {
        let neg_lo = (-hi).max(1);
        let neg_hi = if range.min.is_none() { None } else { Some(-lo) };
        for a in natural(neg_lo as u128, neg_hi.map(|h| h as u128)) {
            alternatives.push(format!("-{a}"));
        }
    }
    // Non-negative part: [max(0, lo), hi].
    if hi >= 0 {
        let from = lo.max(0) as u128;
        let to = if range.max.is_none() {
            None
        } else {
            Some(hi as u128)
        };
        alternatives.extend(natural(from, to));
    }
    Some(alternatives.join("|"))
}

/// Alternatives for the naturals in `[lo, hi]` (`hi = None`: unbounded), canonical form.
fn natural(lo: u128, hi: Option<u128>) -> Vec<String> {
    let mut out = Vec::new();
    let lo_len = digits(lo);
    let hi_len = hi.map_or(lo_len, digits);
    for len in lo_len..=hi_len {
        let first = if len == 1 { 0 } else { pow10(len - 1) };
        let last = pow10(len) - 1;
        let a = lo.max(first);
        let b = hi.map_or(last, |h| h.min(last));
        if a <= b {
            out.extend(same_length(&a.to_string(), &b.to_string()));
        }
    }
    if hi.is_none() {
        // Every number longer than the longest bounded length.
        let n = hi_len; // at least n + 1 digits
        out.push(format!("[1-9][0-9]{{{n},}}"));
    }
    out
}

fn digits(n: u128) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

/// Alternatives matching exactly the numbers from `lo` to `hi`, two digit strings of the same
/// length with `lo <= hi`.
fn same_length(lo: &str, hi: &str) -> Vec<String> {
    let (lb, hb) = (lo.as_bytes(), hi.as_bytes());
    if lb.is_empty() {
        return vec![String::new()];
    }
    let (l0, h0) = (lb[0], hb[0]);
    let (lr, hr) = (&lo[1..], &hi[1..]);
    if l0 == h0 {
        return same_length(lr, hr)
            .into_iter()
            .map(|rest| format!("{}{rest}", l0 as char))
            .collect();
    }
    let rest = lr.len();
    let all_zero = lr.bytes().all(|b| b == b'0');
    let all_nine = hr.bytes().all(|b| b == b'9');
    let mut out = Vec::new();
    let mid_from = if all_zero {
        l0
    } else {
        let nines = "9".repeat(rest);
        out.extend(
            same_length(lr, &nines)
                .into_iter()
                .map(|r| format!("{}{r}", l0 as char)),
        );
        l0 + 1
    };
    let mid_to = if all_nine { h0 } else { h0 - 1 };
    if mid_from <= mid_to {
        out.push(if (mid_from, mid_to) == (b'0', b'9') {
            any_digits(rest + 1)
        } else {
            format!("{}{}", class(mid_from, mid_to), any_digits(rest))
        });
    }
    if !all_nine {
        let zeros = "0".repeat(rest);
        out.extend(
            same_length(&zeros, hr)
                .into_iter()
                .map(|r| format!("{}{r}", h0 as char)),
        );
    }
    out
}

fn class(from: u8, to: u8) -> String {
    if from == to {
        (from as char).to_string()
    } else {
        format!("[{}-{}]", from as char, to as char)
    }
}

fn any_digits(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "[0-9]".to_string(),
        n => format!("[0-9]{{{n}}}"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn full(re: &str) -> Regex {
        Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    fn check(range: IntRange, samples: impl IntoIterator<Item = i64>) {
        let re = int_regex(range).unwrap();
        let r = full(&re);
        for n in samples {
            let inside = range.min.is_none_or(|m| n >= m) && range.max.is_none_or(|m| n <= m);
            assert_eq!(
                r.is_match(&n.to_string()),
                inside,
                "{n} against {range:?}: {re}"
            );
        }
    }

    #[test]
    fn small_ranges_are_exact() {
        check(
            IntRange {
                min: Some(1000),
                max: Some(1999),
            },
            900..2100,
        );
        check(
            IntRange {
                min: Some(0),
                max: Some(0),
            },
            -20..20,
        );
        check(
            IntRange {
                min: Some(-15),
                max: Some(7),
            },
            -200..200,
        );
        check(
            IntRange {
                min: Some(-120),
                max: Some(-45),
            },
            -200..200,
        );
        check(
            IntRange {
                min: None,
                max: Some(42),
            },
            -150..150,
        );
        check(
            IntRange {
                min: Some(-3),
                max: None,
            },
            -150..150,
        );
        check(
            IntRange {
                min: Some(99),
                max: None,
            },
            -20..1200,
        );
        check(
            IntRange {
                min: None,
                max: None,
            },
            -50..50,
        );
        assert_eq!(
            int_regex(IntRange {
                min: Some(1000),
                max: Some(1999)
            })
            .as_deref(),
            Some("1[0-9]{3}")
        );
        assert_eq!(
            int_regex(IntRange {
                min: Some(5),
                max: Some(4)
            }),
            None
        );
    }

    #[test]
    fn non_canonical_text_never_matches() {
        let r = full(
            &int_regex(IntRange {
                min: None,
                max: None,
            })
            .unwrap(),
        );
        for s in [
            "007", "+5", "-0", " 5", "5 ", "", "-", "1e3", "0x10", "--1", "1.0",
        ] {
            assert!(!r.is_match(s), "{s:?}");
        }
        for s in [
            "0",
            "7",
            "-7",
            "10",
            "9223372036854775807",
            "123456789012345678901234",
        ] {
            assert!(r.is_match(s), "{s:?}");
        }
    }

    #[test]
    fn the_extremes_of_i64_are_handled() {
        let max = IntRange {
            min: Some(i64::MAX - 2),
            max: Some(i64::MAX),
        };
        check(max, (i64::MAX - 10)..=i64::MAX);
        let min = IntRange {
            min: Some(i64::MIN),
            max: Some(i64::MIN + 3),
        };
        check(min, i64::MIN..=(i64::MIN + 10));
        let below = IntRange {
            min: None,
            max: Some(i64::MIN),
        };
        check(below, i64::MIN..=(i64::MIN + 3));
    }

    proptest! {
        #[test]
        fn a_range_matches_exactly_its_integers(
            a in -100_000i64..100_000,
            len in 0i64..5_000,
            probes in prop::collection::vec(-200_000i64..200_000, 200),
        ) {
            let range = IntRange { min: Some(a), max: Some(a + len) };
            let re = int_regex(range).unwrap();
            let r = full(&re);
            for n in probes.into_iter().chain([a - 1, a, a + len, a + len + 1]) {
                let inside = n >= a && n <= a + len;
                prop_assert_eq!(r.is_match(&n.to_string()), inside, "{} vs [{}, {}]: {}", n, a, a + len, re);
            }
        }

        #[test]
        fn below_and_above_match_exactly_beyond_the_bound(
            bound in -1_000_000i64..1_000_000,
            probes in prop::collection::vec(any::<i64>(), 100),
            near in prop::collection::vec(-3_000_000i64..3_000_000, 100),
        ) {
            let below = full(&int_regex(IntRange { min: None, max: Some(bound - 1) }).unwrap());
            let above = full(&int_regex(IntRange { min: Some(bound + 1), max: None }).unwrap());
            for n in probes.into_iter().chain(near).chain([bound - 1, bound, bound + 1]) {
                let text = n.to_string();
                prop_assert_eq!(below.is_match(&text), n < bound, "{} < {}", n, bound);
                prop_assert_eq!(above.is_match(&text), n > bound, "{} > {}", n, bound);
            }
        }
    }
}
