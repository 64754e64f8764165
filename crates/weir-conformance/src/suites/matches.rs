//! Every match `source` × `op` the compiler accepts: positive and negative requests,
//! metacharacters taken literally, absent headers/parameters/cookies. One policy holds one
//! route per case, each guarded by `x-case` so that a request can only meet its own case,
//! sending to subset `hit` and setting `x-route`; everything else falls back to `miss`.

use std::fmt::Write as _;

use serde_json::{Value, json};
use weir_govern::policy::Condition;

use crate::check::Check;
use crate::harness::{Caller, Ctx, Outcome, Probe, send_all};
use crate::upstream::UpstreamSpec;

/// How a probe carries the value under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// The value.
    Val(&'static str),
    /// No header, parameter or cookie of that name.
    Absent,
    /// This whole `cookie` header.
    RawCookie(&'static str),
}

use Carried::{Absent, RawCookie, Val};

/// One request of a case: what it is, what it carries, whether the route must take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCase {
    /// `positive`, `negative`, `metacharacter`, `absent`, …
    pub kind: &'static str,
    /// The value.
    pub value: Carried,
    /// Whether the route (subset `hit`) must take it.
    pub hit: bool,
}

fn p(kind: &'static str, value: Carried, hit: bool) -> ProbeCase {
    ProbeCase { kind, value, hit }
}

/// One source × op case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The route's name (also the `x-case` value).
    pub id: String,
    /// The condition under test (YAML flow, which JSON is).
    pub condition: Value,
    /// The requests.
    pub probes: Vec<ProbeCase>,
}

fn case(id: &str, condition: Value, probes: Vec<ProbeCase>) -> Case {
    Case {
        id: id.to_string(),
        condition,
        probes,
    }
}

const META_VALUES: [&str; 3] = ["a|b", "(c)", "v1.0"];
/// Metacharacters that need no URL encoding in a path or query.
const URL_META_VALUES: [&str; 2] = ["v1.0", "x*"];

/// Header-like cases (header `x-h`, cookie `c`): the same eleven operators.
fn keyed(source: &str, key: &str) -> Vec<Case> {
    let c = |op: &str, extra: Value| {
        let mut v = json!({ "source": source, "key": key, "op": op });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let id = |op: &str| format!("{source}-{}", op.replace('_', "-"));
    let mut cases = vec![
        case(
            &id("equals"),
            c("equals", json!({ "value": "v1.0" })),
            vec![
                p("positive", Val("v1.0"), true),
                p("negative", Val("v1.0x"), false),
                p("metacharacter", Val("v1x0"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("not_equals"),
            c("not_equals", json!({ "value": "v1.0" })),
            vec![
                p("positive", Val("v2"), true),
                p("metacharacter", Val("v1x0"), true),
                p("negative", Val("v1.0"), false),
                p("absent (not excluded)", Absent, true),
            ],
        ),
        case(
            &id("prefix"),
            c("prefix", json!({ "value": "v1." })),
            vec![
                p("positive", Val("v1.5"), true),
                p("negative", Val("xv1.5"), false),
                p("metacharacter", Val("v1x5"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("regex"),
            c("regex", json!({ "value": "v[0-9]+" })),
            vec![
                p("positive", Val("v12"), true),
                p("negative (whole value)", Val("v12x"), false),
                p("negative", Val("xv1"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("in"),
            c("in", json!({ "values": META_VALUES })),
            vec![
                p("positive", Val("a|b"), true),
                p("positive", Val("(c)"), true),
                p("positive", Val("v1.0"), true),
                p("metacharacter", Val("a"), false),
                p("metacharacter", Val("c"), false),
                p("metacharacter", Val("v1x0"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("not_in"),
            c("not_in", json!({ "values": META_VALUES })),
            vec![
                p("positive", Val("a"), true),
                p("metacharacter", Val("c"), true),
                p("negative", Val("a|b"), false),
                p("negative", Val("(c)"), false),
                p("absent (not excluded)", Absent, true),
            ],
        ),
        case(
            &id("range"),
            c("range", json!({ "min": 1000, "max": 1999 })),
            vec![
                p("positive (bound)", Val("1000"), true),
                p("positive", Val("1500"), true),
                p("positive (bound)", Val("1999"), true),
                p("negative", Val("999"), false),
                p("negative", Val("2000"), false),
                p("not canonical", Val("01500"), false),
                p("not canonical", Val("+1500"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("less_than"),
            c("less_than", json!({ "value": 10 })),
            vec![
                p("positive", Val("9"), true),
                p("positive", Val("-5"), true),
                p("negative (bound)", Val("10"), false),
                p("not canonical", Val("09"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("greater_than"),
            c("greater_than", json!({ "value": 10 })),
            vec![
                p("positive", Val("11"), true),
                p("positive", Val("12345678901"), true),
                p("negative (bound)", Val("10"), false),
                p("negative", Val("-11"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("exists"),
            c("exists", json!({})),
            vec![
                p("positive", Val("anything"), true),
                p("absent", Absent, false),
            ],
        ),
        case(
            &id("absent"),
            c("absent", json!({})),
            vec![
                p("positive (absent)", Absent, true),
                p("negative (present)", Val("x"), false),
            ],
        ),
    ];
    if source == "cookie" {
        // A cookie is matched within its own value, never in a neighbour's.
        cases[0]
            .probes
            .push(p("other cookie", RawCookie("xc=v1.0; a=1"), false));
        cases[0]
            .probes
            .push(p("other cookie after", RawCookie("c=x; d=v1.0"), false));
    }
    cases
}

/// Query parameter `q`: what Istio can say about one (no exclusions, no absence).
fn query() -> Vec<Case> {
    let c = |op: &str, extra: Value| {
        let mut v = json!({ "source": "query", "key": "q", "op": op });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    vec![
        case(
            "query-equals",
            c("equals", json!({ "value": "v1.0" })),
            vec![
                p("positive", Val("v1.0"), true),
                p("metacharacter", Val("v1x0"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-prefix",
            c("prefix", json!({ "value": "v1." })),
            vec![
                p("positive", Val("v1.5"), true),
                p("metacharacter", Val("v1x5"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-regex",
            c("regex", json!({ "value": "v[0-9]+" })),
            vec![
                p("positive", Val("v12"), true),
                p("negative (whole value)", Val("v12x"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-in",
            c("in", json!({ "values": URL_META_VALUES })),
            vec![
                p("positive", Val("v1.0"), true),
                p("positive", Val("x*"), true),
                p("metacharacter", Val("v1x0"), false),
                p("metacharacter", Val("xxx"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-range",
            c("range", json!({ "min": 1000, "max": 1999 })),
            vec![
                p("positive", Val("1500"), true),
                p("negative", Val("2000"), false),
                p("not canonical", Val("01500"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-less-than",
            c("less_than", json!({ "value": 10 })),
            vec![
                p("positive", Val("-5"), true),
                p("negative (bound)", Val("10"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-greater-than",
            c("greater_than", json!({ "value": 10 })),
            vec![
                p("positive", Val("11"), true),
                p("negative (bound)", Val("10"), false),
                p("absent", Absent, false),
            ],
        ),
        case(
            "query-exists",
            c("exists", json!({})),
            vec![p("positive", Val("x"), true), p("absent", Absent, false)],
        ),
    ]
}

/// The path and the method.
fn path_and_method() -> Vec<Case> {
    vec![
        case(
            "path-equals",
            json!({ "source": "path", "op": "equals", "value": "/p/v1.0" }),
            vec![
                p("positive", Val("/p/v1.0"), true),
                p("negative", Val("/p/v1.0/x"), false),
                p("metacharacter", Val("/p/v1x0"), false),
            ],
        ),
        case(
            "path-prefix",
            json!({ "source": "path", "op": "prefix", "value": "/p/v1." }),
            vec![
                p("positive", Val("/p/v1.5/x"), true),
                p("metacharacter", Val("/p/v1x5"), false),
            ],
        ),
        case(
            "path-regex",
            json!({ "source": "path", "op": "regex", "value": "/p/[0-9]+" }),
            vec![
                p("positive", Val("/p/12"), true),
                p("negative (whole path)", Val("/x/p/12"), false),
            ],
        ),
        case(
            "path-in",
            json!({ "source": "path", "op": "in", "values": ["/p/v1.0", "/p/x*"] }),
            vec![
                p("positive", Val("/p/v1.0"), true),
                p("positive", Val("/p/x*"), true),
                p("metacharacter", Val("/p/v1x0"), false),
                p("metacharacter", Val("/p/xxx"), false),
            ],
        ),
        case(
            "method-equals",
            json!({ "source": "method", "op": "equals", "value": "PUT" }),
            vec![
                p("positive", Val("PUT"), true),
                p("negative", Val("GET"), false),
            ],
        ),
        case(
            "method-prefix",
            json!({ "source": "method", "op": "prefix", "value": "PO" }),
            vec![
                p("positive", Val("POST"), true),
                p("negative", Val("PUT"), false),
            ],
        ),
        case(
            "method-regex",
            json!({ "source": "method", "op": "regex", "value": "P(UT|OST)" }),
            vec![
                p("positive", Val("PUT"), true),
                p("negative (whole method)", Val("PATCH"), false),
            ],
        ),
        case(
            "method-in",
            json!({ "source": "method", "op": "in", "values": ["PUT", "DELETE"] }),
            vec![
                p("positive", Val("DELETE"), true),
                p("negative", Val("GET"), false),
            ],
        ),
        // sourceLabels: this proxy is the caller (labels env=base).
        case(
            "source-label-equals-has",
            json!({ "source": "source_label", "key": "env", "op": "equals", "value": "base" }),
            vec![p("caller has the label", Absent, true)],
        ),
        case(
            "source-label-equals-lacks",
            json!({ "source": "source_label", "key": "env", "op": "equals", "value": "feature" }),
            vec![p("caller lacks the label", Absent, false)],
        ),
    ]
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let mut all = keyed("header", "x-h");
    all.extend(query());
    all.extend(keyed("cookie", "c"));
    all.extend(path_and_method());
    all
}

/// The policy: one route per case, then the fallback.
pub fn policy(cases: &[Case]) -> String {
    let mut spec = String::from(
        "  subsets:\n    - { name: hit, labels: { version: hit } }\n    \
         - { name: miss, labels: { version: miss } }\n  routes:\n",
    );
    for c in cases {
        let _ = write!(
            spec,
            "    - name: {id}\n      match:\n        \
             - {{ source: header, key: x-case, op: equals, value: {id} }}\n        - {}\n      \
             destinations: [ {{ subset: hit }} ]\n      set_headers: {{ x-route: {id} }}\n",
            c.condition,
            id = c.id
        );
    }
    spec.push_str("    - name: fallback\n      destinations: [ { subset: miss } ]\n");
    crate::policy("matches", &spec)
}

/// The request for one probe of a case.
pub fn probe(case: &Case, pc: &ProbeCase) -> Probe {
    let source = case.condition["source"].as_str().unwrap_or_default();
    let base = Probe::get().header("x-case", &case.id);
    match (source, &pc.value) {
        ("header", Val(v)) => base.header("x-h", v),
        ("query", Val(v)) => base.path(&format!("/?q={v}")),
        ("cookie", Val(v)) => base.header("cookie", &format!("a=1; c={v}")),
        ("cookie", Absent) => base.header("cookie", "a=1"),
        (_, RawCookie(raw)) => base.header("cookie", raw),
        ("path", Val(v)) => base.path(v),
        ("method", Val(v)) => base.method(v),
        _ => base,
    }
}

fn shown(v: &Carried) -> String {
    match v {
        Val(v) => format!("{v:?}"),
        Absent => "absent".into(),
        RawCookie(c) => format!("cookie {c:?}"),
    }
}

/// Whether `o` is what the case's route (hit) or the fallback (miss) answers.
pub fn landed(case: &Case, o: &Outcome) -> Option<bool> {
    let a = o.answer.as_ref()?;
    match a.subset.as_str() {
        "hit" => (a.headers.get("x-route") == Some(&case.id)).then_some(true),
        "miss" => (!a.headers.contains_key("x-route")).then_some(false),
        _ => None,
    }
}

/// The check for one case from its outcomes.
pub fn judge(case: &Case, outcomes: &[Outcome]) -> Check {
    let condition: Option<Condition> = serde_json::from_value(case.condition.clone()).ok();
    let explained = condition
        .as_ref()
        .map_or_else(String::new, weir_govern::explain::condition);
    let source = case.condition["source"].as_str().unwrap_or("?");
    let op = case.condition["op"].as_str().unwrap_or("?");
    let mut expected_hit = Vec::new();
    let mut expected_miss = Vec::new();
    let mut wrong = Vec::new();
    for (pc, o) in case.probes.iter().zip(outcomes) {
        let label = format!("{} ({})", shown(&pc.value), pc.kind);
        if pc.hit {
            expected_hit.push(label.clone());
        } else {
            expected_miss.push(label.clone());
        }
        let got = landed(case, o);
        if got != Some(pc.hit) {
            let what = match got {
                Some(true) => "route".to_string(),
                Some(false) => "fallback".to_string(),
                None => o.who(),
            };
            wrong.push(format!("{label} → {what}"));
        }
    }
    let n = outcomes.len().min(case.probes.len());
    let pass = wrong.is_empty() && n == case.probes.len();
    Check {
        feature: format!("match {source} × {op}"),
        policy_line: format!("{} — explain: {explained}", case.condition),
        requests: n as u64,
        expected: format!(
            "route: {}; fallback: {}",
            list(&expected_hit),
            list(&expected_miss)
        ),
        observed: if pass {
            format!("{n}/{n} as expected")
        } else {
            format!("wrong: {}", wrong.join("; "))
        },
        pass,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Starts the policy and sends every probe of every case.
pub async fn run(ctx: &Ctx) -> Vec<Check> {
    super::or_failed("matches", "every source × op", run_inner(ctx).await)
}

async fn run_inner(ctx: &Ctx) -> Result<Vec<Check>, crate::Error> {
    let cases = cases();
    let running = ctx
        .start(
            "matches",
            &policy(&cases),
            &Caller::labelled("env", "base"),
            &[
                UpstreamSpec::new("hit-a", "hit"),
                UpstreamSpec::new("miss-a", "miss"),
            ],
        )
        .await?;
    let mut checks = Vec::new();
    for c in &cases {
        let probes: Vec<Probe> = c.probes.iter().map(|pc| probe(c, pc)).collect();
        let outcomes = send_all(&ctx.client, running.base(), &probes, 8).await;
        checks.push(judge(c, &outcomes));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::Answer;

    #[test]
    fn the_policy_compiles_with_every_case() {
        let cases = cases();
        let ps = weir_govern::parse(&policy(&cases), "matches").unwrap();
        let out = weir_govern::compile(&ps[0], "matches").unwrap();
        assert_eq!(out.virtual_service.spec.http.len(), cases.len() + 1);
        // Every case is a distinct route name.
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cases.len());
    }

    #[test]
    fn probes_carry_the_value_where_the_source_says() {
        let cases = cases();
        let find = |id: &str| cases.iter().find(|c| c.id == id).unwrap();
        let q = probe(find("query-equals"), &p("x", Val("v1.0"), true));
        assert_eq!(q.path, "/?q=v1.0");
        let c = probe(find("cookie-equals"), &p("x", Absent, false));
        assert!(c.headers.contains(&("cookie".into(), "a=1".into())));
        let m = probe(find("method-equals"), &p("x", Val("PUT"), true));
        assert_eq!(m.method, "PUT");
        assert!(
            m.headers
                .contains(&("x-case".into(), "method-equals".into()))
        );
    }

    fn outcome(subset: &str, route: Option<&str>) -> Outcome {
        let mut headers = std::collections::BTreeMap::new();
        if let Some(r) = route {
            headers.insert("x-route".to_string(), r.to_string());
        }
        Outcome {
            status: 200,
            answer: Some(Answer {
                id: format!("{subset}-a"),
                subset: subset.into(),
                locality: "-".into(),
                path: "/".into(),
                headers,
                cache: None,
            }),
            headers: Vec::new(),
            elapsed: Duration::ZERO,
            error: None,
        }
    }

    #[test]
    fn judging_names_every_wrong_request() {
        let c = case(
            "header-equals",
            json!({ "source": "header", "key": "x-h", "op": "equals", "value": "v" }),
            vec![p("positive", Val("v"), true), p("absent", Absent, false)],
        );
        let ok = judge(
            &c,
            &[outcome("hit", Some("header-equals")), outcome("miss", None)],
        );
        assert!(ok.pass, "{ok:?}");
        assert_eq!(ok.observed, "2/2 as expected");
        assert!(
            ok.policy_line.contains("explain: header x-h"),
            "{}",
            ok.policy_line
        );
        let bad = judge(&c, &[outcome("miss", None), outcome("hit", Some("other"))]);
        assert!(!bad.pass);
        assert!(
            bad.observed.contains("\"v\" (positive) → fallback"),
            "{}",
            bad.observed
        );
        assert!(
            bad.observed.contains("absent (absent) → hit-a"),
            "{}",
            bad.observed
        );
        let short = judge(&c, &[outcome("hit", Some("header-equals"))]);
        assert!(!short.pass);
    }
}
