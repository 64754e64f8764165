//! Parsing `/api/v1/query` answers and matching their series to signals.
//!
//! The envelope is `{"status":"success","data":{"resultType":…,"result":…}}` or
//! `{"status":"error","errorType":…,"error":…}` (with HTTP 400, 422 or 503). An instant
//! vector's samples are `[<evaluation time>, "<value>"]`: the value is a string because it
//! may be `NaN`, `+Inf` or `-Inf`, all of which become [`Unknown::NotANumber`] here.

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_core::{Signal, Unknown};

use crate::config::ReplicaTarget;

/// Why one query gave no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached (connection refused, DNS, TLS).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer within the timeout.
    #[error("timed out after {after_s:.1}s")]
    Timeout {
        /// The timeout, seconds.
        after_s: f64,
    },
    /// A non-2xx answer that is not a Prometheus API error (a proxy, an auth layer…).
    #[error("HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus refused the query (`"status":"error"`), e.g. a PromQL syntax error.
    #[error("prometheus error ({error_type}): {error}")]
    Api {
        /// `errorType`, e.g. `bad_data`, `execution`, `timeout`.
        error_type: String,
        /// `error`, Prometheus's message.
        error: String,
    },
    /// The body is not a query answer (bad JSON, missing fields, a non-numeric value).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer is a matrix or a string where an instant vector (or scalar) was needed.
    #[error(
        "result type `{0}` is not usable here (want an instant vector, or a scalar for a primary query)"
    )]
    ResultType(String),
    /// A series of a per-replica query lacks the replica label.
    #[error(
        "a series has no `{label}` label ({series}); keep the label through aggregations, e.g. `max by ({label}) (…)`"
    )]
    MissingLabel {
        /// The configured replica label.
        label: String,
        /// The series' labels, for the message.
        series: String,
    },
    /// Two series of a per-replica query carry the same replica label value.
    #[error("several series have {label}=\"{value}\"; aggregate them, e.g. `max by ({label}) (…)`")]
    DuplicateLabel {
        /// The configured replica label.
        label: String,
        /// The repeated value.
        value: String,
    },
    /// A primary query returned more than one series.
    #[error("{count} series returned where the primary needs one; aggregate them, e.g. `sum(…)`")]
    MultipleSeries {
        /// How many series came back.
        count: usize,
    },
}

impl QueryError {
    /// Whether Prometheus itself was not there (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, QueryError::Unreachable(_))
    }
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value, possibly NaN or infinite.
    pub value: f64,
}

/// The `data` of a successful instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryData {
    /// An instant vector.
    Vector {
        /// The evaluation time (Unix seconds), which is also every sample's timestamp.
        eval_ts: f64,
        /// The series, possibly none.
        series: Vec<Series>,
    },
    /// A scalar.
    Scalar {
        /// The evaluation time (Unix seconds).
        eval_ts: f64,
        /// The value, possibly NaN or infinite.
        value: f64,
    },
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

const BODY_SNIPPET: usize = 200;

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(BODY_SNIPPET).collect();
    if text.chars().nth(BODY_SNIPPET).is_some() {
        out.push('…');
    }
    out
}

/// Parses a sample value as Prometheus writes it (`"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`).
pub fn parse_value(s: &str) -> Result<f64, QueryError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|_| QueryError::Malformed(format!("sample value {s:?} is not a number"))),
    }
}

/// Parses the body of an `/api/v1/query` answer received with HTTP `status`.
pub fn parse_response(status: u16, body: &[u8]) -> Result<QueryData, QueryError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) if (200..300).contains(&status) => {
            return Err(QueryError::Malformed(format!(
                "{e}; body: {}",
                snippet(body)
            )));
        }
        Err(_) => {
            return Err(QueryError::Http {
                status,
                body: snippet(body),
            });
        }
    };
    match envelope.status.as_str() {
        "success" if (200..300).contains(&status) => {}
        "error" => {
            return Err(QueryError::Api {
                error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
                error: envelope.error.unwrap_or_default(),
            });
        }
        _ if !(200..300).contains(&status) => {
            return Err(QueryError::Http {
                status,
                body: snippet(body),
            });
        }
        other => return Err(QueryError::Malformed(format!("status {other:?}"))),
    }
    let data = envelope
        .data
        .ok_or_else(|| QueryError::Malformed("no `data` in a successful answer".into()))?;
    let data: RawData =
        serde_json::from_value(data).map_err(|e| QueryError::Malformed(format!("data: {e}")))?;
    match data.result_type.as_str() {
        "vector" => {
            let raw: Vec<RawSample> = serde_json::from_value(data.result)
                .map_err(|e| QueryError::Malformed(format!("vector: {e}")))?;
            // An empty vector carries no timestamp; 0 marks "not known".
            let eval_ts = raw.first().map_or(0.0, |s| s.value.0);
            let series = raw
                .into_iter()
                .map(|s| {
                    Ok(Series {
                        value: parse_value(&s.value.1)?,
                        labels: s.metric,
                    })
                })
                .collect::<Result<_, QueryError>>()?;
            Ok(QueryData::Vector { eval_ts, series })
        }
        "scalar" => {
            let (eval_ts, value): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| QueryError::Malformed(format!("scalar: {e}")))?;
            Ok(QueryData::Scalar {
                eval_ts,
                value: parse_value(&value)?,
            })
        }
        other => Err(QueryError::ResultType(other.to_owned())),
    }
}

/// A value read at evaluation time. Non-finite values become [`Unknown::NotANumber`].
///
/// The age is 0: an instant query's timestamp is the evaluation time, not the scrape time.
/// How old the underlying samples may be is bounded by Prometheus (staleness markers, and
/// the `lookback_delta` this crate sends), see the crate documentation.
fn signal_of(value: f64) -> Signal {
    Signal::aged(value, 0.0)
}

/// The primary's signal from a query that must return a scalar or at most one series.
pub fn primary_signal(data: &QueryData) -> Result<Signal, QueryError> {
    match data {
        QueryData::Scalar { value, .. } => Ok(signal_of(*value)),
        QueryData::Vector { series, .. } => match series.as_slice() {
            [] => Ok(Signal::unknown(Unknown::NoSeries)),
            [one] => Ok(signal_of(one.value)),
            more => Err(QueryError::MultipleSeries { count: more.len() }),
        },
    }
}

/// Per-replica signals matched by `label`, in the order of `replicas`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaMatch {
    /// One signal per configured replica; a replica with no series is
    /// [`Unknown::NoSeries`], never 0.
    pub signals: Vec<Signal>,
    /// Label values of series that matched no configured replica (the primary's own
    /// series, or a misconfigured `label_value`), sorted.
    pub unmatched: Vec<String>,
}

/// Splits a per-replica query's answer by `label`.
pub fn replica_signals(
    data: &QueryData,
    label: &str,
    replicas: &[ReplicaTarget],
) -> Result<ReplicaMatch, QueryError> {
    let series = match data {
        QueryData::Vector { series, .. } => series,
        QueryData::Scalar { .. } => return Err(QueryError::ResultType("scalar".into())),
    };
    let mut by_value: BTreeMap<&str, f64> = BTreeMap::new();
    for s in series {
        let Some(value) = s.labels.get(label) else {
            return Err(QueryError::MissingLabel {
                label: label.to_owned(),
                series: format_labels(&s.labels),
            });
        };
        if by_value.insert(value, s.value).is_some() {
            return Err(QueryError::DuplicateLabel {
                label: label.to_owned(),
                value: value.clone(),
            });
        }
    }
    let signals = replicas
        .iter()
        .map(|r| match by_value.remove(r.value_for(label)) {
            Some(v) => signal_of(v),
            None => Signal::unknown(Unknown::NoSeries),
        })
        .collect();
    Ok(ReplicaMatch {
        signals,
        unmatched: by_value.into_keys().map(str::to_owned).collect(),
    })
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas() -> Vec<ReplicaTarget> {
        vec![
            ReplicaTarget::new("r1", "replica-1"),
            ReplicaTarget::new("r2", "replica-2"),
            ReplicaTarget::new("r3", "replica-3"),
        ]
    }

    fn ok(body: &str) -> QueryData {
        parse_response(200, body.as_bytes()).unwrap()
    }

    /// As Prometheus 2.x prints `mysql_heartbeat_now… - mysql_heartbeat_stored…`.
    const THREE_REPLICAS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"instance":"replica-2","job":"mysql","server_id":"1"},"value":[1717171717.123,"4.25"]},
        {"metric":{"instance":"replica-1","job":"mysql","server_id":"1"},"value":[1717171717.123,"0.5"]},
        {"metric":{"instance":"primary","job":"mysql","server_id":"1"},"value":[1717171717.123,"0.9"]},
        {"metric":{"instance":"replica-3","job":"mysql","server_id":"1"},"value":[1717171717.123,"NaN"]}
    ]}}"#;

    #[test]
    fn vector_with_several_replicas() {
        let data = ok(THREE_REPLICAS);
        let QueryData::Vector { eval_ts, series } = &data else {
            panic!("not a vector");
        };
        assert_eq!(*eval_ts, 1717171717.123);
        assert_eq!(series.len(), 4);
        let m = replica_signals(&data, "instance", &replicas()).unwrap();
        assert_eq!(m.signals[0], Signal::fresh(0.5));
        assert_eq!(m.signals[1], Signal::fresh(4.25));
        assert_eq!(m.signals[2], Signal::unknown(Unknown::NotANumber));
        assert_eq!(m.unmatched, vec!["primary".to_owned()]);
    }

    #[test]
    fn missing_replica_is_no_series_not_zero() {
        let data = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"replica-1"},"value":[1.0,"2"]}]}}"#,
        );
        let m = replica_signals(&data, "instance", &replicas()).unwrap();
        assert_eq!(m.signals[0].value, Some(2.0));
        for s in &m.signals[1..] {
            assert_eq!(*s, Signal::unknown(Unknown::NoSeries));
            assert_eq!(s.value, None);
        }
    }

    #[test]
    fn per_label_override_picks_another_value() {
        let mut rs = replicas();
        rs[0]
            .labels
            .insert("destination_workload".into(), "mysql-replica-1".into());
        let data = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"destination_workload":"mysql-replica-1"},"value":[1.0,"12.5"]}]}}"#,
        );
        let m = replica_signals(&data, "destination_workload", &rs).unwrap();
        assert_eq!(m.signals[0].value, Some(12.5));
        assert_eq!(m.signals[1].unknown, Some(Unknown::NoSeries));
    }

    #[test]
    fn non_finite_values_are_unknown() {
        for v in ["NaN", "+Inf", "-Inf"] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1.0,"{v}"]}}]}}}}"#
            );
            let s = primary_signal(&ok(&body)).unwrap();
            assert_eq!(s, Signal::unknown(Unknown::NotANumber), "{v}");
        }
    }

    #[test]
    fn empty_vector_is_no_series() {
        let data = ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert_eq!(
            primary_signal(&data).unwrap(),
            Signal::unknown(Unknown::NoSeries)
        );
        let m = replica_signals(&data, "instance", &replicas()).unwrap();
        assert!(
            m.signals
                .iter()
                .all(|s| s.unknown == Some(Unknown::NoSeries))
        );
    }

    #[test]
    fn duplicates_name_the_label_and_value() {
        let data = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"replica-1","server_id":"1"},"value":[1.0,"2"]},
            {"metric":{"instance":"replica-1","server_id":"7"},"value":[1.0,"900"]}]}}"#,
        );
        let err = replica_signals(&data, "instance", &replicas()).unwrap_err();
        assert_eq!(
            err,
            QueryError::DuplicateLabel {
                label: "instance".into(),
                value: "replica-1".into()
            }
        );
        assert!(err.to_string().contains("instance=\"replica-1\""));
    }

    #[test]
    fn a_series_without_the_label_is_an_error() {
        let data = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1.0,"2"]}]}}"#,
        );
        let err = replica_signals(&data, "instance", &replicas()).unwrap_err();
        assert!(matches!(err, QueryError::MissingLabel { .. }), "{err}");
    }

    #[test]
    fn primary_with_several_series_is_an_error() {
        let err = primary_signal(&ok(THREE_REPLICAS)).unwrap_err();
        assert_eq!(err, QueryError::MultipleSeries { count: 4 });
    }

    #[test]
    fn scalar() {
        let data = ok(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1717171717.5,"0.42"]}}"#,
        );
        assert_eq!(
            data,
            QueryData::Scalar {
                eval_ts: 1717171717.5,
                value: 0.42
            }
        );
        assert_eq!(primary_signal(&data).unwrap(), Signal::fresh(0.42));
        assert!(matches!(
            replica_signals(&data, "instance", &replicas()),
            Err(QueryError::ResultType(_))
        ));
    }

    #[test]
    fn matrix_and_string_are_rejected() {
        let err = parse_response(
            200,
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .unwrap_err();
        assert_eq!(err, QueryError::ResultType("matrix".into()));
        let err = parse_response(
            200,
            br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
        )
        .unwrap_err();
        assert_eq!(err, QueryError::ResultType("string".into()));
    }

    #[test]
    fn error_status() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input"}"#;
        let err = parse_response(400, body).unwrap_err();
        let QueryError::Api { error_type, error } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(error_type, "bad_data");
        assert!(error.contains("parse error"));
        // A 503 query timeout from Prometheus is still an API error, not an HTTP one.
        let err = parse_response(
            503,
            br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, QueryError::Api { ref error_type, .. } if error_type == "timeout"));
    }

    #[test]
    fn garbage() {
        for body in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"{",
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":{}}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"abc"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0]}]}}"#,
            br#"{"status":"maybe","data":null}"#,
            b"[1,2,3]",
        ] {
            let err = parse_response(200, body).unwrap_err();
            assert!(
                matches!(err, QueryError::Malformed(_)),
                "{:?} → {err:?}",
                String::from_utf8_lossy(body)
            );
        }
        let err = parse_response(502, b"<html>502 Bad Gateway</html>").unwrap_err();
        assert_eq!(
            err,
            QueryError::Http {
                status: 502,
                body: "<html>502 Bad Gateway</html>".into()
            }
        );
        let long = "x".repeat(1000);
        let QueryError::Http { body, .. } = parse_response(500, long.as_bytes()).unwrap_err()
        else {
            panic!()
        };
        assert!(body.chars().count() <= BODY_SNIPPET + 1);
    }

    #[test]
    fn values_as_prometheus_prints_them() {
        assert_eq!(parse_value("1e+06").unwrap(), 1e6);
        assert_eq!(parse_value("-0.5").unwrap(), -0.5);
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_value("-Inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_value("").is_err());
    }
}
