//! Weir's Prometheus source: real PromQL per signal, real `/api/v1/query` answers.
//!
//! [`PromSource`] implements [`weir_edge::Source`]. Each observation runs one instant
//! query per signal ([`Queries`], eight in all) concurrently, splits per-replica answers by a
//! configured label ([`QuerySpec::replica_label`], matched against
//! [`ReplicaTarget::value_for`]) and builds a complete [`weir_core::Observation`].
//!
//! # Unknown is never zero
//!
//! - an empty vector, or a replica absent from the vector → [`Unknown::NoSeries`]
//!   (`TargetDown` instead when the replica's `up` query says 0);
//! - a sample of `NaN`, `+Inf` or `-Inf` → [`Unknown::NotANumber`];
//! - a query that fails (HTTP error, bad JSON, PromQL error, duplicate replica label, a
//!   primary query returning several series) → [`Unknown::SourceError`] for its signal, the
//!   rest of the observation intact, and a `warn` log naming the query;
//! - every query failing (Prometheus down) → `Err(SourceError)`: `Unreachable` for a refused
//!   connection, `Timeout`, or `BadResponse` naming the query, so the controller holds.
//!
//! [`PromSource::probe`] runs the same queries for `weir check` and reports, per query, the
//! value for each replica, the label values that matched no replica, or the error.
//!
//! # Sample age
//!
//! An instant query's `[<timestamp>, "<value>"]` carries the *evaluation* time, not the time
//! the sample was scraped, so Weir cannot compute "evaluation − sample time" from it.
//! Wrapping queries in `timestamp()` does not help: for anything but a bare selector (and the
//! lag query is a subtraction, the rates are `rate()`) it returns the evaluation time again.
//! Signals are therefore reported with age 0 relative to the evaluation, and freshness is left
//! to Prometheus, which already does it well:
//!
//! - when a target stops exposing a series, or a scrape fails, Prometheus writes a staleness
//!   marker at the next scrape and the series disappears from instant queries at once
//!   (→ `NoSeries`);
//! - otherwise (Prometheus stopped scraping a target, e.g. after a config reload) the last
//!   sample would be carried forward for the default five-minute lookback. Weir sends
//!   `lookback_delta = max_sample_age_s` (default 60 s) with every query, so no raw sample
//!   older than that is used. Keep it above twice the scrape interval. Range functions like
//!   `rate(x[1m])` are bounded by their own window.
//!
//! # Default queries and where the metrics come from
//!
//! | signal | default PromQL | exporter |
//! |---|---|---|
//! | `replica_lag_s` | `mysql_heartbeat_now_timestamp_seconds - mysql_heartbeat_stored_timestamp_seconds`, by `instance` | mysqld_exporter `--collect.heartbeat` |
//! | `replica_up` | `mysql_up`, by `instance` | mysqld_exporter |
//! | `replica_read_qps` | `rate(mysql_global_status_commands_total{command="select"}[1m])`, by `instance` | mysqld_exporter (global status, `Com_select`) |
//! | `replica_read_p99_ms` | `histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket[1m])))`, by `destination_workload` | Istio sidecars |
//! | `primary_cpu` | `1 - avg(rate(node_cpu_seconds_total{mode="idle", role="primary"}[1m]))` | node_exporter on the primary's host |
//! | `primary_read_qps` | `sum(rate(mysql_global_status_commands_total{command="select", role="primary"}[1m]))` | mysqld_exporter |
//! | `primary_write_qps` | the same over `insert|update|delete|replace|insert_select|replace_select|update_multi|delete_multi` | mysqld_exporter |
//! | `primary_read_p99_ms` | `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{destination_workload="mysql-primary"}[1m])))` | Istio sidecars |
//!
//! Conventions the defaults assume, to adapt to your labels:
//!
//! - each replica's mysqld_exporter target is identified by its `instance` label, which is
//!   what [`ReplicaTarget::label_value`] holds (the primary's own heartbeat series simply
//!   matches no replica and is listed as unmatched by `probe`);
//! - the primary's mysqld_exporter and node_exporter targets carry `role="primary"` (a
//!   `labels:` entry in `static_configs`, or a relabel rule in Kubernetes);
//! - the Istio workload of a replica is given with
//!   `labels = { destination_workload = "…" }` on its [`ReplicaTarget`].
//!
//! Notes on each choice:
//!
//! - **Lag.** Heartbeat lag (pt-heartbeat writes the primary's clock into a table every
//!   second; the exporter reports it with the replica's `NOW()`) measures what a reader sees,
//!   to about one heartbeat interval, and includes clock skew between primary and replica (run
//!   NTP). The fallback is `mysql_slave_status_seconds_behind_master` (`SHOW REPLICA STATUS`):
//!   it is NULL when the SQL thread stops, and mysqld_exporter then drops the series — here
//!   that is `NoSeries`, never 0 — it reads 0 while the IO thread is behind, and has 1 s
//!   resolution. A replica that has heartbeat rows from several primaries (after a failover)
//!   returns several series per `instance`: the query then fails with a duplicate-label error;
//!   select the current primary's `server_id` or aggregate. A variant that also grows when
//!   scrapes stop is `time() - mysql_heartbeat_stored_timestamp_seconds` (it adds the scrape
//!   age and the Prometheus–primary clock skew).
//! - **CPU.** `process_cpu_seconds_total` of the mysqld_exporter job is the *exporter's*
//!   CPU, not mysqld's. Use node_exporter (the default; machine-wide, 0..1), process-exporter
//!   (`rate(namedprocess_namegroup_cpu_seconds_total{groupname="mysqld"}[1m])` divided by
//!   the core count), or in Kubernetes cAdvisor's
//!   `container_cpu_usage_seconds_total{container="mysql"}` divided by the CPU limit.
//! - **p99.** Istio records `istio_request_duration_milliseconds` for HTTP and gRPC only.
//!   MySQL over an Istio `tcp` route has no latency histogram (only byte and connection
//!   counters), so with plain MySQL traffic these queries return no series and the p99
//!   signals are `NoSeries`. HAProxy exports averages only
//!   (`haproxy_server_response_time_average_seconds` in HTTP mode,
//!   `haproxy_server_total_time_average_seconds` in TCP mode). For a real p99 use a
//!   client-side histogram from the application's database pool, or a proxy that records one.
//!
//! # Without the HTTP client
//!
//! With the default `client` feature this crate is the source itself. Without it
//! (`default-features = false`) only [`PromConfig`] and the response parser remain, with no
//! HTTP stack or async runtime: that is how `weir-config` reads the `[prometheus]` section.
//!
//! # Security
//!
//! The bearer token is sent as `Authorization: Bearer …`, and is left out of `Debug`,
//! serialisation and error messages (reqwest errors are reported without their URL).

mod config;
mod response;
#[cfg(feature = "client")]
mod source;

pub use config::{
    ConfigError, DEFAULT_MAX_SAMPLE_AGE_S, DEFAULT_PRIMARY_CPU, DEFAULT_PRIMARY_READ_P99,
    DEFAULT_PRIMARY_READ_QPS, DEFAULT_PRIMARY_WRITE_QPS, DEFAULT_REPLICA_LAG,
    DEFAULT_REPLICA_READ_P99, DEFAULT_REPLICA_READ_QPS, DEFAULT_REPLICA_UP, DEFAULT_TIMEOUT_S,
    PromConfig, Queries, QuerySpec, ReplicaTarget, SignalId,
};
pub use response::{
    QueryData, QueryError, ReplicaMatch, Series, parse_response, parse_value, primary_signal,
    replica_signals,
};
#[cfg(feature = "client")]
pub use source::{HttpClient, ProbeValues, PromError, PromSource, QueryFailure, QueryReport};

#[doc(no_inline)]
pub use weir_core::Unknown;
