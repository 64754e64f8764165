//! Every operator on every source: the Istio match it becomes, checked by running the
//! generated regexes (Rust's `regex` crate, whose syntax these regexes share with RE2).

use proptest::prelude::*;
use regex::Regex;

use super::*;
use crate::policy::{Condition, Op, Scalar, Source};
use crate::problem::Report;

fn cond(source: Source, key: Option<&str>, op: Op) -> Condition {
    Condition {
        source,
        key: key.map(str::to_string),
        op,
        value: None,
        values: None,
        min: None,
        max: None,
    }
}

fn header(op: Op) -> Condition {
    cond(Source::Header, Some("x-user-group"), op)
}

fn run(c: &Condition) -> Result<Compiled, Vec<String>> {
    let mut report = Report::new("p.yaml");
    match compile(c, "spec.routes[0].match[0]", &mut report) {
        Some(m) if report.count() == 0 => Ok(m),
        _ => Err(report
            .finish(())
            .err()
            .map(|p| p.0.into_iter().map(|p| p.to_string()).collect())
            .unwrap_or_default()),
    }
}

fn full(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).unwrap()
}

fn regex_of(m: &Compiled) -> Regex {
    match &m.matcher {
        StringMatch::Regex(r) => full(r),
        other => panic!("not a regex: {other:?}"),
    }
}

#[test]
fn equality_and_presence_on_headers() {
    let mut c = header(Op::Equals);
    c.value = Some(Scalar::Str("beta".into()));
    let m = run(&c).unwrap();
    assert_eq!(m.target, Target::Header("x-user-group".into()));
    assert_eq!(m.matcher, StringMatch::Exact("beta".into()));
    assert!(!m.negated);

    c.op = Op::NotEquals;
    let m = run(&c).unwrap();
    assert!(
        m.negated,
        "not_equals is a withoutHeaders entry, never a wider match"
    );
    assert_eq!(m.matcher, StringMatch::Exact("beta".into()));

    let m = run(&header(Op::Exists)).unwrap();
    assert_eq!((m.matcher, m.negated), (StringMatch::Present, false));
    let m = run(&header(Op::Absent)).unwrap();
    assert_eq!((m.matcher, m.negated), (StringMatch::Present, true));
}

#[test]
fn in_is_an_escaped_alternation_and_not_in_excludes_it() {
    let mut c = header(Op::In);
    c.values = Some(vec![
        Scalar::Str("a.b".into()),
        Scalar::Str("c|d".into()),
        Scalar::Str("(e)".into()),
        Scalar::Int(7),
    ]);
    let m = run(&c).unwrap();
    let r = regex_of(&m);
    for yes in ["a.b", "c|d", "(e)", "7"] {
        assert!(r.is_match(yes), "{yes}");
    }
    for no in ["axb", "c", "d", "e", "(e", "a.bc", "77", ""] {
        assert!(!r.is_match(no), "{no}");
    }
    c.op = Op::NotIn;
    let n = run(&c).unwrap();
    assert!(n.negated);
    assert_eq!(n.matcher, m.matcher);
    // One value is an exact match.
    c.values = Some(vec![Scalar::Str("only".into())]);
    assert_eq!(run(&c).unwrap().matcher, StringMatch::Exact("only".into()));
}

#[test]
fn numeric_operators_are_exact_regexes() {
    let mut c = cond(Source::Query, Some("uid"), Op::Range);
    c.min = Some(1000);
    c.max = Some(1999);
    let m = run(&c).unwrap();
    assert_eq!(m.target, Target::Query("uid".into()));
    let r = regex_of(&m);
    assert!(r.is_match("1000") && r.is_match("1999"));
    assert!(!r.is_match("999") && !r.is_match("2000") && !r.is_match("01000"));

    let mut c = header(Op::LessThan);
    c.value = Some(Scalar::Int(10));
    let r = regex_of(&run(&c).unwrap());
    assert!(r.is_match("9") && r.is_match("-4") && !r.is_match("10"));
    c.op = Op::GreaterThan;
    let r = regex_of(&run(&c).unwrap());
    assert!(r.is_match("11") && r.is_match("123456") && !r.is_match("10") && !r.is_match("-11"));

    // A number given as text is refused for a numeric operator.
    c.value = Some(Scalar::Str("10".into()));
    let e = run(&c).unwrap_err().join("\n");
    assert!(
        e.contains("spec.routes[0].match[0].value") && e.contains("integer"),
        "{e}"
    );
    // i64::MIN has nothing below it.
    c.op = Op::LessThan;
    c.value = Some(Scalar::Int(i64::MIN));
    assert!(run(&c).unwrap_err().join("\n").contains("no integer"));
    // An empty range.
    let mut c = header(Op::Range);
    c.min = Some(5);
    c.max = Some(4);
    assert!(run(&c).unwrap_err().join("\n").contains("empty"));
}

#[test]
fn regexes_must_be_re2() {
    let mut c = header(Op::Regex);
    for bad in ["(?=a)b", "(a)\\1", "a(?!b)", "(?<=x)y", "[a-"] {
        c.value = Some(Scalar::Str(bad.into()));
        let e = run(&c).unwrap_err().join("\n");
        assert!(e.contains("RE2"), "{bad}: {e}");
        assert!(e.contains("spec.routes[0].match[0].value"), "{e}");
    }
    c.value = Some(Scalar::Str("v[0-9]+\\.beta".into()));
    assert_eq!(
        run(&c).unwrap().matcher,
        StringMatch::Regex("v[0-9]+\\.beta".into())
    );
}

#[test]
fn what_istio_cannot_exclude_is_refused() {
    for (source, key) in [
        (Source::Query, Some("uid")),
        (Source::Path, None),
        (Source::Method, None),
    ] {
        for op in [Op::NotEquals, Op::NotIn, Op::Absent] {
            let mut c = cond(source, key, op);
            match op {
                Op::NotEquals => c.value = Some(Scalar::Str("x".into())),
                Op::NotIn => c.values = Some(vec![Scalar::Str("x".into())]),
                _ => {}
            }
            let e = run(&c).unwrap_err().join("\n");
            assert!(e.contains("cannot exclude"), "{source} {op}: {e}");
        }
    }
    let mut c = cond(Source::SourceLabel, Some("app"), Op::In);
    c.values = Some(vec![Scalar::Str("a".into()), Scalar::Str("b".into())]);
    assert!(run(&c).unwrap_err().join("\n").contains("sourceLabels"));
    c.op = Op::Equals;
    c.values = None;
    c.value = Some(Scalar::Str("web".into()));
    let m = run(&c).unwrap();
    assert_eq!(m.target, Target::SourceLabel("app".into()));
}

#[test]
fn query_prefix_and_presence_become_regexes() {
    let mut c = cond(Source::Query, Some("q"), Op::Prefix);
    c.value = Some(Scalar::Str("a.b".into()));
    let r = regex_of(&run(&c).unwrap());
    assert!(r.is_match("a.bc") && r.is_match("a.b") && !r.is_match("axbc"));
    let r = regex_of(&run(&cond(Source::Query, Some("q"), Op::Exists)).unwrap());
    assert!(r.is_match("") && r.is_match("anything"));
}

#[test]
fn operands_are_checked_against_the_operator() {
    let mut c = header(Op::Equals);
    c.values = Some(vec![Scalar::Str("a".into())]);
    let e = run(&c).unwrap_err().join("\n");
    assert!(e.contains(".value") && e.contains("needs a `value`"), "{e}");
    assert!(e.contains(".values") && e.contains("does not take"), "{e}");
    let mut c = header(Op::Exists);
    c.value = Some(Scalar::Str("x".into()));
    assert!(
        run(&c)
            .unwrap_err()
            .join("\n")
            .contains("does not take `value`")
    );
    let mut c = header(Op::In);
    c.values = Some(Vec::new());
    assert!(run(&c).unwrap_err().join("\n").contains("non-empty"));
    let c = cond(Source::Header, None, Op::Exists);
    assert!(run(&c).unwrap_err().join("\n").contains("needs a `key`"));
    let c = cond(Source::Path, Some("x"), Op::Exists);
    assert!(run(&c).unwrap_err().join("\n").contains("takes no `key`"));
    let mut c = cond(Source::Header, Some("X-User"), Op::Exists);
    c.key = Some("X-User".into());
    assert!(run(&c).unwrap_err().join("\n").contains("\"x-user\""));
}

#[test]
fn cookies_match_within_their_own_value() {
    let mut c = cond(Source::Cookie, Some("env"), Op::Equals);
    c.value = Some(Scalar::Str("beta".into()));
    let m = run(&c).unwrap();
    assert_eq!(m.target, Target::Header("cookie".into()));
    let r = regex_of(&m);
    for yes in [
        "env=beta",
        "a=1; env=beta",
        "env=beta; b=2",
        "a=1;env=beta;b=2",
    ] {
        assert!(r.is_match(yes), "{yes}");
    }
    for no in [
        "env=betax",
        "xenv=beta",
        "a=env=beta",
        "env=bet",
        "a=1; env=alpha; b=beta",
        "",
    ] {
        assert!(!r.is_match(no), "{no}");
    }
    // A regex that could run past `;` into the next cookie is refused.
    let mut c = cond(Source::Cookie, Some("env"), Op::Regex);
    c.value = Some(Scalar::Str("b.*".into()));
    assert!(run(&c).unwrap_err().join("\n").contains("can match `;`"));
    c.value = Some(Scalar::Str("b[^;]*".into()));
    let r = regex_of(&run(&c).unwrap());
    assert!(r.is_match("x=1; env=beta; y=2"));
    assert!(!r.is_match("env=alpha; y=beta"));
    // Values with `;` cannot be cookie values.
    let mut c = cond(Source::Cookie, Some("env"), Op::In);
    c.values = Some(vec![Scalar::Str("a;b".into())]);
    assert!(
        run(&c)
            .unwrap_err()
            .join("\n")
            .contains("cannot contain `;`")
    );
    // Absent cookie: an exclusion on the cookie header.
    let m = run(&cond(Source::Cookie, Some("env"), Op::Absent)).unwrap();
    assert!(m.negated);
    let r = regex_of(&m);
    assert!(r.is_match("a=1; env=") && !r.is_match("a=1; environment=x"));
}

#[test]
fn path_and_method() {
    let mut c = cond(Source::Path, None, Op::Prefix);
    c.value = Some(Scalar::Str("/api/".into()));
    let m = run(&c).unwrap();
    assert_eq!(m.target, Target::Uri);
    assert_eq!(m.matcher, StringMatch::Prefix("/api/".into()));
    let mut c = cond(Source::Method, None, Op::In);
    c.values = Some(vec![Scalar::Str("GET".into()), Scalar::Str("HEAD".into())]);
    let r = regex_of(&run(&c).unwrap());
    assert!(r.is_match("GET") && r.is_match("HEAD") && !r.is_match("POST"));
    assert!(
        run(&cond(Source::Path, None, Op::Exists))
            .unwrap_err()
            .join("\n")
            .contains("every request has a path")
    );
}

/// Strings over an alphabet rich in RE2 metacharacters.
fn meta_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'b', '.', '|', '(', ')', '[', ']', '{', '}', '*', '+', '?', '^', '$', '\\', '-',
            ',', ' ', 'é',
        ]),
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #[test]
    fn an_in_regex_matches_exactly_the_listed_strings(
        values in prop::collection::vec(meta_string(), 2..6),
        probes in prop::collection::vec(meta_string(), 30),
    ) {
        let mut c = header(Op::In);
        c.values = Some(values.iter().cloned().map(Scalar::Str).collect());
        let m = run(&c).unwrap();
        let listed: std::collections::BTreeSet<&String> = values.iter().collect();
        let r = match &m.matcher {
            StringMatch::Regex(re) => full(re),
            StringMatch::Exact(v) => full(&escape(v)),
            other => panic!("{other:?}"),
        };
        for p in probes.iter().chain(values.iter()) {
            prop_assert_eq!(r.is_match(p), listed.contains(p), "{:?} vs {:?}", p, values);
        }
    }

    #[test]
    fn an_escaped_string_matches_only_itself(s in meta_string(), other in meta_string()) {
        let r = full(&escape(&s));
        prop_assert!(r.is_match(&s));
        prop_assert_eq!(r.is_match(&other), other == s);
    }
}
