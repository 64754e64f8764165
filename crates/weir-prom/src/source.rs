//! [`PromSource`]: the eight queries, run concurrently, folded into one observation.

use std::time::Duration;

use futures_util::future::join_all;
use weir_core::{Observation, PrimaryObs, ReplicaObs, Signal, Unknown};
use weir_edge::{Source, SourceError};

use crate::config::{ConfigError, PromConfig, SignalId};

use crate::response::{
    QueryData, QueryError, ReplicaMatch, parse_response, primary_signal, replica_signals,
};
/// The HTTP client a [`PromSource`] queries through (`reqwest`'s, re-exported so callers need
/// not depend on it).
pub use reqwest::Client as HttpClient;

/// Why a [`PromSource`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The configuration is invalid; every problem is listed.
    #[error("{}", join_errors(.0))]
    Config(Vec<ConfigError>),
    /// The HTTP client could not be set up (e.g. no TLS backend).
    #[error("prometheus HTTP client: {0}")]
    Client(String),
}

fn join_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One query that failed, and which signal it was for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("query `{signal}`: {error}")]
pub struct QueryFailure {
    /// The signal whose query failed.
    pub signal: SignalId,
    /// Why.
    pub error: QueryError,
}

impl From<QueryFailure> for SourceError {
    fn from(f: QueryFailure) -> Self {
        match f.error {
            QueryError::Timeout { after_s } => SourceError::Timeout { after_s },
            // `SourceError::Unreachable` says "unreachable" itself: the cause follows once.
            QueryError::Unreachable(cause) => {
                SourceError::Unreachable(format!("query `{}`: {cause}", f.signal))
            }
            _ => SourceError::BadResponse(f.to_string()),
        }
    }
}

/// What one query returned, as matched to the primary or the replicas.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeValues {
    /// A primary query's value.
    Primary(Signal),
    /// A per-replica query's values.
    Replicas {
        /// `(replica name, signal)` in configured order.
        per_replica: Vec<(String, Signal)>,
        /// Label values that matched no configured replica.
        unmatched: Vec<String>,
    },
}

/// One query's outcome, for `weir check`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryReport {
    /// Which signal.
    pub signal: SignalId,
    /// The PromQL that was run.
    pub query: String,
    /// Prometheus's evaluation time (Unix seconds), when it answered with a sample.
    pub eval_ts: Option<f64>,
    /// The values, or why there are none.
    pub result: Result<ProbeValues, QueryError>,
}

/// One query's outcome before it is folded into an observation.
type Extracted = Result<(Option<f64>, Matched), QueryError>;

enum Matched {
    Primary(Signal),
    Replicas(ReplicaMatch),
}

/// The Prometheus [`Source`]: every observation runs the eight configured queries
/// concurrently against `/api/v1/query`.
///
/// A query that fails leaves its signal unknown ([`Unknown::SourceError`]) and the rest of
/// the observation intact; only when every query fails is the observation an error, so that
/// the controller holds.
#[derive(Debug, Clone)]
pub struct PromSource {
    config: PromConfig,
    client: reqwest::Client,
    endpoint: reqwest::Url,
}

impl PromConfig {
    /// Builds the source this configuration describes (its own HTTP client). Connects to
    /// nothing yet.
    pub fn build(&self) -> Result<PromSource, PromError> {
        PromSource::new(self.clone())
    }
}

impl PromSource {
    /// Validates the configuration and builds its own HTTP client.
    pub fn new(config: PromConfig) -> Result<Self, PromError> {
        PromSource::with_client(config, PromSource::http_client()?)
    }

    /// An HTTP client for [`PromSource::with_client`]: many sources (one per governed
    /// database cluster, in the operator) share it and its connection pool.
    pub fn http_client() -> Result<HttpClient, PromError> {
        reqwest::Client::builder()
            .user_agent(concat!("weir-prom/", env!("CARGO_PKG_VERSION")))
            // Idle connections kept per Prometheus: enough for the queries in flight at once,
            // not one per query ever sent concurrently.
            .pool_max_idle_per_host(128)
            .build()
            .map_err(|e| PromError::Client(chain(&e.without_url())))
    }

    /// Validates the configuration; queries go through `client` (each request with this
    /// configuration's timeout).
    pub fn with_client(config: PromConfig, client: HttpClient) -> Result<Self, PromError> {
        config.validate().map_err(PromError::Config)?;
        let endpoint = endpoint(&config.url).map_err(|e| PromError::Config(vec![e]))?;
        Ok(PromSource {
            config,
            client,
            endpoint,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PromConfig {
        &self.config
    }

    /// Runs every query once and reports, per query, what each replica (or the primary)
    /// got, or the error. For `weir check`.
    pub async fn probe(&self) -> Vec<QueryReport> {
        self.probe_and_observe(0.0).await.0
    }

    /// Runs every query once and returns both the per-query reports of [`probe`] and the
    /// observation at controller time `now_s` that [`Source::observe`] builds from the same
    /// answers (an error when every query failed), without logging the failures: the
    /// reports carry them. For `weir check`, which shows both from one round of queries.
    ///
    /// [`probe`]: PromSource::probe
    pub async fn probe_and_observe(
        &self,
        now_s: f64,
    ) -> (Vec<QueryReport>, Result<Observation, SourceError>) {
        let extracted = self.run_all().await;
        let reports = SignalId::ALL
            .into_iter()
            .zip(&extracted)
            .map(|(signal, result)| self.report(signal, result))
            .collect();
        let observation = self.assemble(now_s, extracted).map(|(obs, _)| obs);
        (reports, observation)
    }

    fn report(&self, signal: SignalId, result: &Extracted) -> QueryReport {
        let query = self.config.queries.get(signal).query.clone();
        match result {
            Ok((eval_ts, matched)) => QueryReport {
                signal,
                query,
                eval_ts: *eval_ts,
                result: Ok(match matched {
                    Matched::Primary(s) => ProbeValues::Primary(*s),
                    Matched::Replicas(m) => ProbeValues::Replicas {
                        per_replica: self
                            .config
                            .replicas
                            .iter()
                            .map(|r| r.name.clone())
                            .zip(m.signals.iter().copied())
                            .collect(),
                        unmatched: m.unmatched.clone(),
                    },
                }),
            },
            Err(e) => QueryReport {
                signal,
                query,
                eval_ts: None,
                result: Err(e.clone()),
            },
        }
    }

    /// Every query, concurrently, in [`SignalId::ALL`] order.
    async fn run_all(&self) -> Vec<Extracted> {
        join_all(SignalId::ALL.map(|id| self.run(id))).await
    }

    async fn run(&self, id: SignalId) -> Extracted {
        let data = self.fetch(id).await?;
        let eval_ts = match &data {
            QueryData::Vector { series, eval_ts } if !series.is_empty() => Some(*eval_ts),
            QueryData::Scalar { eval_ts, .. } => Some(*eval_ts),
            QueryData::Vector { .. } => None,
        };
        let matched = match &self.config.queries.get(id).replica_label {
            Some(label) => Matched::Replicas(replica_signals(&data, label, &self.config.replicas)?),
            None => Matched::Primary(primary_signal(&data)?),
        };
        Ok((eval_ts, matched))
    }

    async fn fetch(&self, id: SignalId) -> Result<QueryData, QueryError> {
        let spec = self.config.queries.get(id);
        let form = [
            ("query", spec.query.clone()),
            ("timeout", prom_duration(self.config.timeout_s)),
            (
                "lookback_delta",
                prom_duration(self.config.max_sample_age_s),
            ),
        ];
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .timeout(Duration::from_secs_f64(self.config.timeout_s))
            .form(&form);
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.classify(e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.classify(e))?;
        parse_response(status, &body)
    }

    fn classify(&self, e: reqwest::Error) -> QueryError {
        // The URL may hold basic-auth credentials: never put it in a message.
        let e = e.without_url();
        if e.is_timeout() {
            QueryError::Timeout {
                after_s: self.config.timeout_s,
            }
        } else if e.is_body() || e.is_decode() {
            QueryError::Malformed(chain(&e))
        } else {
            // Connect, TLS, reset mid-request: Prometheus is not (properly) there.
            QueryError::Unreachable(chain(&e))
        }
    }

    /// Folds the query outcomes into an observation at controller time `now_s`, with the
    /// queries that failed (their signals unknown).
    fn assemble(
        &self,
        now_s: f64,
        extracted: Vec<Extracted>,
    ) -> Result<(Observation, Vec<QueryFailure>), SourceError> {
        let mut failures = Vec::new();
        let mut primary: [Signal; 4] = [Signal::unknown(Unknown::NeverSeen); 4];
        let n = self.config.replicas.len();
        let mut replica: [Vec<Signal>; 4] = std::array::from_fn(|_| Vec::new());
        for (id, result) in SignalId::ALL.into_iter().zip(extracted) {
            let slot = slot_of(id);
            match result {
                Ok((_, Matched::Primary(s))) => primary[slot] = s,
                Ok((_, Matched::Replicas(m))) => replica[slot] = m.signals,
                Err(error) => {
                    if id.is_replica() {
                        replica[slot] = vec![Signal::unknown(Unknown::SourceError); n];
                    } else {
                        primary[slot] = Signal::unknown(Unknown::SourceError);
                    }
                    failures.push(QueryFailure { signal: id, error });
                }
            }
        }
        if failures.len() == SignalId::ALL.len() {
            return Err(worst(failures));
        }
        let [lag, up, read_qps, read_p99] = replica;
        let replicas = self
            .config
            .replicas
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let up = up.get(i).and_then(|s| s.value).map(|v| v > 0.5);
                let pick = |signals: &[Signal]| {
                    let s = signals
                        .get(i)
                        .copied()
                        .unwrap_or(Signal::unknown(Unknown::NeverSeen));
                    // A vanished series of a replica known to be down says why.
                    if up == Some(false) && s.unknown == Some(Unknown::NoSeries) {
                        Signal::unknown(Unknown::TargetDown)
                    } else {
                        s
                    }
                };
                ReplicaObs {
                    name: target.name.clone(),
                    up,
                    lag_s: pick(&lag),
                    read_qps: pick(&read_qps),
                    read_p99_ms: pick(&read_p99),
                }
            })
            .collect();
        let [cpu, read_qps, write_qps, read_p99_ms] = primary;
        let observation = Observation {
            at_s: now_s,
            primary: PrimaryObs {
                cpu,
                read_qps,
                write_qps,
                read_p99_ms,
            },
            replicas,
        };
        Ok((observation, failures))
    }
}

impl Source for PromSource {
    async fn observe(&mut self, now_s: f64) -> Result<Observation, SourceError> {
        let extracted = self.run_all().await;
        let (observation, failures) = self.assemble(now_s, extracted)?;
        for failure in &failures {
            // Partial failures do not stop the loop; they show as unknown signals.
            tracing::warn!(query = %failure.signal, error = %failure.error, "prometheus query failed");
        }
        Ok(observation)
    }
}

/// Index of a signal among the four replica or the four primary signals.
fn slot_of(id: SignalId) -> usize {
    match id {
        SignalId::ReplicaLagS | SignalId::PrimaryCpu => 0,
        SignalId::ReplicaUp | SignalId::PrimaryReadQps => 1,
        SignalId::ReplicaReadQps | SignalId::PrimaryWriteQps => 2,
        SignalId::ReplicaReadP99Ms | SignalId::PrimaryReadP99Ms => 3,
    }
}

/// The error to report when every query failed: Prometheus being away explains the most.
fn worst(failures: Vec<QueryFailure>) -> SourceError {
    let rank = |f: &QueryFailure| match f.error {
        QueryError::Unreachable(_) => 0,
        QueryError::Timeout { .. } => 1,
        _ => 2,
    };
    failures
        .into_iter()
        .min_by_key(rank)
        .map_or_else(|| SourceError::Other("no query ran".into()), Into::into)
}

/// `<base>/api/v1/query`, keeping any path prefix of the base URL.
fn endpoint(base: &str) -> Result<reqwest::Url, ConfigError> {
    let joined = format!("{}/api/v1/query", base.trim_end_matches('/'));
    reqwest::Url::parse(&joined).map_err(|e| ConfigError {
        field: "url".into(),
        problem: format!("not a URL: {e}"),
    })
}

/// An error and its sources, `: `-separated (reqwest's top-level message alone is vague).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Seconds as a Prometheus duration parameter. Prometheus rejects fractional units
/// (`0.8s` → `bad_data`), so whole milliseconds are sent (`800ms`, at least `1ms`).
pub(crate) fn prom_duration(seconds: f64) -> String {
    format!("{}ms", (seconds * 1000.0).round().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaTarget;

    fn source() -> PromSource {
        PromSource::new(PromConfig::new(
            "http://127.0.0.1:1/prom/",
            vec![
                ReplicaTarget::new("r1", "replica-1"),
                ReplicaTarget::new("r2", "replica-2"),
            ],
        ))
        .unwrap()
    }

    #[test]
    fn durations_are_whole_milliseconds() {
        assert_eq!(prom_duration(0.8), "800ms");
        assert_eq!(prom_duration(60.0), "60000ms");
        assert_eq!(prom_duration(0.0001), "1ms");
    }

    fn vector(body: &str) -> QueryData {
        parse_response(200, body.as_bytes()).unwrap()
    }

    fn replicas(src: &PromSource, body: &str, label: &str) -> Extracted {
        Ok((
            Some(1.0),
            Matched::Replicas(replica_signals(&vector(body), label, &src.config.replicas)?),
        ))
    }

    fn primary(body: &str) -> Extracted {
        Ok((Some(1.0), Matched::Primary(primary_signal(&vector(body))?)))
    }

    const BOTH: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"instance":"replica-1"},"value":[1.0,"1.5"]},
        {"metric":{"instance":"replica-2"},"value":[1.0,"30"]}]}}"#;
    const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"instance":"replica-1"},"value":[1.0,"1"]}]}}"#;
    const DOWN_2: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"instance":"replica-1"},"value":[1.0,"1"]},
        {"metric":{"instance":"replica-2"},"value":[1.0,"0"]}]}}"#;
    const SCALAR: &str =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"0.7"]}}"#;

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        assert_eq!(
            source().endpoint.as_str(),
            "http://127.0.0.1:1/prom/api/v1/query"
        );
    }

    #[test]
    fn invalid_config_is_refused_with_fields() {
        let err = PromSource::new(PromConfig::new("nope", vec![])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`url`") && msg.contains("`replicas`"), "{msg}");
    }

    #[test]
    fn partial_failure_keeps_the_rest_and_the_reason() {
        let src = source();
        let extracted = vec![
            replicas(&src, BOTH, "instance"),
            replicas(&src, DOWN_2, "instance"),
            Err(QueryError::Api {
                error_type: "bad_data".into(),
                error: "parse error".into(),
            }),
            replicas(&src, ONE, "instance"),
            primary(SCALAR),
            Err(QueryError::Timeout { after_s: 5.0 }),
            primary(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            primary(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"NaN"]}]}}"#,
            ),
        ];
        let (obs, failed) = src.assemble(42.0, extracted).unwrap();
        let failed: Vec<SignalId> = failed.iter().map(|f| f.signal).collect();
        assert_eq!(
            failed,
            [SignalId::ReplicaReadQps, SignalId::PrimaryReadQps],
            "the failures are returned for the caller to report"
        );
        assert_eq!(obs.at_s, 42.0);
        assert_eq!(obs.replicas.len(), 2);
        let [r1, r2] = [&obs.replicas[0], &obs.replicas[1]];
        assert_eq!((r1.name.as_str(), r2.name.as_str()), ("r1", "r2"));
        assert_eq!(r1.lag_s, Signal::fresh(1.5));
        assert_eq!(r2.lag_s, Signal::fresh(30.0));
        assert_eq!((r1.up, r2.up), (Some(true), Some(false)));
        assert_eq!(r1.read_qps.unknown, Some(Unknown::SourceError));
        assert_eq!(r1.read_p99_ms.value, Some(1.0));
        // Down and without a series: the reason is the target being down.
        assert_eq!(r2.read_p99_ms.unknown, Some(Unknown::TargetDown));
        assert_eq!(obs.primary.cpu, Signal::fresh(0.7));
        assert_eq!(obs.primary.read_qps.unknown, Some(Unknown::SourceError));
        assert_eq!(obs.primary.write_qps.unknown, Some(Unknown::NoSeries));
        assert_eq!(obs.primary.read_p99_ms.unknown, Some(Unknown::NotANumber));
    }

    #[test]
    fn all_failing_is_an_error_preferring_unreachable() {
        let src = source();
        let mut extracted: Vec<Extracted> = (0..8)
            .map(|_| Err(QueryError::Malformed("x".into())))
            .collect();
        extracted[5] = Err(QueryError::Unreachable("connection refused".into()));
        extracted[6] = Err(QueryError::Timeout { after_s: 5.0 });
        let err = src.assemble(0.0, extracted).unwrap_err();
        assert_eq!(err.kind(), "unreachable");
        assert!(err.to_string().contains("primary_read_qps"), "{err}");

        let extracted: Vec<Extracted> = (0..8)
            .map(|_| Err(QueryError::Timeout { after_s: 2.0 }))
            .collect();
        assert_eq!(
            src.assemble(0.0, extracted).unwrap_err(),
            SourceError::Timeout { after_s: 2.0 }
        );

        // A replica query with duplicates fails that query only.
        let dup = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"replica-1"},"value":[1.0,"1"]},
            {"metric":{"instance":"replica-1"},"value":[1.0,"2"]}]}}"#;
        let mut extracted: Vec<Extracted> = (0..8)
            .map(|_| Err(QueryError::Malformed("x".into())))
            .collect();
        extracted[0] = replicas(&src, dup, "instance");
        let err = src.assemble(0.0, extracted).unwrap_err();
        assert_eq!(err.kind(), "bad_response");
        let f: SourceError = QueryFailure {
            signal: SignalId::ReplicaLagS,
            error: QueryError::DuplicateLabel {
                label: "instance".into(),
                value: "replica-1".into(),
            },
        }
        .into();
        assert!(f.to_string().contains("replica_lag_s"));
        assert!(f.to_string().contains("instance=\"replica-1\""));
    }

    /// A Prometheus that accepts connections and never answers: every query ends at the
    /// configured timeout, so the observation is a `timeout` error the controller holds on.
    /// Only the outcome is asserted: the generous outer deadline is there so that, were the
    /// per-query timeout lost, the test would fail instead of hanging; a stalled machine only
    /// makes the timeout fire late, which still passes.
    #[tokio::test]
    async fn a_silent_prometheus_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let mut config = PromConfig::new(
            format!("http://{addr}"),
            vec![ReplicaTarget::new("r1", "replica-1")],
        );
        config.timeout_s = 0.2;
        let mut src = PromSource::new(config).unwrap();
        let outer = std::time::Duration::from_secs(120);
        let err = tokio::time::timeout(outer, src.observe(1.0))
            .await
            .expect("the query never timed out")
            .unwrap_err();
        assert_eq!(err, SourceError::Timeout { after_s: 0.2 });
        let reports = tokio::time::timeout(outer, src.probe())
            .await
            .expect("the probe never timed out");
        assert!(
            reports
                .iter()
                .all(|r| r.result == Err(QueryError::Timeout { after_s: 0.2 })),
            "{reports:#?}"
        );
        silent.abort();
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Port 1 on loopback: nothing listens there.
        let mut src = source();
        let err = src.observe(3.0).await.unwrap_err();
        assert_eq!(err.kind(), "unreachable", "{err}");
        // The query is named and the cause said once.
        let text = err.to_string();
        assert!(text.starts_with("unreachable: query `"), "{text}");
        assert_eq!(text.matches("unreachable").count(), 1, "{text}");
        let reports = src.probe().await;
        assert_eq!(reports.len(), 8);
        assert!(
            reports
                .iter()
                .all(|r| r.result.as_ref().is_err_and(QueryError::is_unreachable))
        );
    }
}
