//! The gRPC service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) and the
//! state it shares with the reloader and the HTTP side.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use serde::Serialize;
use tonic::{Request, Response, Status};
use weir_govern::ratelimit::Unit;

use crate::FailureMode;
use crate::clock::{Clock, window};
use crate::counter::{Counter, CounterError, Hit};
use crate::limits::{Limits, Matched};
use crate::metrics::{DecisionLabels, Metrics, UNKNOWN_DOMAIN};

/// The most a single descriptor may add to a counter: Envoy's own field is a `uint32`, and a
/// larger per-descriptor addend could only overflow Redis's counter.
const MAX_HITS: u64 = u32::MAX as u64;

/// What `/status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The configuration.
    pub config: ConfigStatus,
    /// Redis.
    pub redis: RedisStatus,
    /// `allow` or `deny`: the answer while Redis cannot count.
    pub failure_mode: FailureMode,
}

/// The configuration in force and the last refused change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// The files the configuration in force was read from.
    pub files: Vec<String>,
    /// Its domains.
    pub domains: Vec<String>,
    /// Why the latest change on disk was refused; `None` when the files on disk are in force.
    pub last_error: Option<String>,
    /// Changes loaded.
    pub reloads: u64,
    /// Changes refused.
    pub reload_errors: u64,
}

/// Redis as last seen.
#[derive(Debug, Clone, Serialize)]
pub struct RedisStatus {
    /// Its address.
    pub addr: String,
    /// Whether the last use succeeded (`None` before the first).
    pub up: Option<bool>,
    /// The last failure, kept after recovery for the record.
    pub last_error: Option<String>,
}

/// Everything the gRPC service, the reloader and the HTTP side share.
pub(crate) struct Shared {
    pub limits: ArcSwap<Limits>,
    pub metrics: Metrics,
    pub config: Mutex<ConfigStatus>,
    pub redis_state: Mutex<(Option<bool>, Option<String>)>,
    pub failure_mode: FailureMode,
    pub counter: Counter,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    pub(crate) fn status(&self) -> StatusView {
        let config = self.config.lock().map(|c| c.clone()).unwrap_or_default();
        let (up, last_error) = self
            .redis_state
            .lock()
            .map(|r| r.clone())
            .unwrap_or((None, None));
        StatusView {
            config,
            redis: RedisStatus {
                addr: self.counter.addr().to_string(),
                up,
                last_error,
            },
            failure_mode: self.failure_mode,
        }
    }

    /// Records a use of Redis; logs only the changes (down, back), not every request.
    pub(crate) fn redis_result(&self, result: Result<(), &CounterError>) {
        let Ok(mut state) = self.redis_state.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                if state.0 == Some(false) {
                    tracing::info!(redis = %self.counter.addr(), "redis is back: counting again");
                }
                state.0 = Some(true);
                self.metrics.redis_up.set(1);
            }
            Err(e) => {
                self.metrics.redis_errors.inc();
                self.metrics.redis_up.set(0);
                if state.0 != Some(false) {
                    let then = match self.failure_mode {
                        FailureMode::Allow => "failure_mode allow: requests are allowed",
                        FailureMode::Deny => "failure_mode deny: requests are refused",
                    };
                    tracing::warn!(error = %e, "cannot count in redis; {then} until it is back");
                }
                *state = (Some(false), Some(e.to_string()));
            }
        }
    }
}

/// The gRPC service.
#[derive(Clone)]
pub(crate) struct RateLimiter {
    pub shared: Arc<Shared>,
}

fn invalid(shared: &Shared, message: String) -> Status {
    shared.metrics.invalid_requests.inc();
    Status::invalid_argument(message)
}

fn pb_unit(unit: Unit) -> PbUnit {
    match unit {
        Unit::Second => PbUnit::Second,
        Unit::Minute => PbUnit::Minute,
        Unit::Hour => PbUnit::Hour,
        Unit::Day => PbUnit::Day,
    }
}

fn entries(d: &RateLimitDescriptor) -> Vec<(&str, &str)> {
    d.entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect()
}

/// What one request descriptor gets.
enum Decision {
    /// No limit applies (no match, or a replaced limit).
    NoLimit,
    /// `unlimited: true`: OK, not counted.
    Unlimited,
    /// Counted against `requests` per `unit`; `shadow`: never refused.
    Counted {
        unit: Unit,
        requests: u32,
        shadow: bool,
        reset: u64,
    },
}

impl RateLimiter {
    pub(crate) async fn decide(&self, req: RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let shared = &self.shared;
        if req.descriptors.is_empty() {
            return Err(invalid(
                shared,
                "the request has no descriptors: a RateLimitRequest must carry at least one \
                 (check the route's rate_limits actions)"
                    .to_string(),
            ));
        }
        if req.domain.is_empty() {
            return Err(invalid(shared, "the request has no domain".to_string()));
        }
        if let Some(i) = req.descriptors.iter().position(|d| d.entries.is_empty()) {
            return Err(invalid(
                shared,
                format!("descriptors[{i}] has no entries: each descriptor needs at least one"),
            ));
        }
        let request_hits = u64::from(req.hits_addend.max(1));
        let limits = shared.limits.load();
        let domain_label = if limits.has_domain(&req.domain) {
            req.domain.clone()
        } else {
            UNKNOWN_DOMAIN.to_string()
        };
        let now = shared.clock.now_unix();

        // The limit of each descriptor and, for the counted ones, the counter to raise.
        let found: Vec<Option<Matched>> = req
            .descriptors
            .iter()
            .map(|d| limits.find(&req.domain, &entries(d)))
            .collect();
        drop(limits);
        // `replaces`: a limit named by another matched limit's `replaces` is not applied.
        let replaced: Vec<&str> = found
            .iter()
            .flatten()
            .flat_map(|m| m.limit.replaces.iter().map(|r| r.name.as_str()))
            .collect();
        let mut matched: Vec<Decision> = Vec::with_capacity(req.descriptors.len());
        let mut hits = Vec::new();
        for (d, m) in req.descriptors.iter().zip(&found) {
            let Some(m) = m else {
                matched.push(Decision::NoLimit);
                continue;
            };
            if m.limit
                .name
                .as_deref()
                .is_some_and(|n| replaced.contains(&n))
            {
                matched.push(Decision::NoLimit);
                continue;
            }
            if m.limit.unlimited {
                matched.push(Decision::Unlimited);
                continue;
            }
            // Both are present on every limit that is not unlimited (the loader's check).
            let (Some(unit), Some(requests)) = (m.limit.unit, m.limit.requests_per_unit) else {
                matched.push(Decision::NoLimit);
                continue;
            };
            let period = unit.seconds();
            let (start, reset) = window(now, period);
            let by = d
                .hits_addend
                .map_or(request_hits, |h| h.value)
                .min(MAX_HITS);
            hits.push(Hit {
                key: format!("{}{start}", m.key),
                hits: by,
                ttl: period,
            });
            matched.push(Decision::Counted {
                unit,
                requests,
                shadow: m.shadow,
                reset,
            });
        }

        let counts = match shared.counter.raise(&hits).await {
            Ok(counts) => {
                if !hits.is_empty() {
                    shared.redis_result(Ok(()));
                }
                counts
            }
            Err(e) => {
                shared.redis_result(Err(&e));
                return match shared.failure_mode {
                    FailureMode::Allow => {
                        self.count(domain_label, "redis_failure_allowed");
                        Ok(RateLimitResponse {
                            overall_code: Code::Ok as i32,
                            statuses: req
                                .descriptors
                                .iter()
                                .map(|_| DescriptorStatus {
                                    code: Code::Ok as i32,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                    }
                    FailureMode::Deny => {
                        self.count(domain_label, "redis_failure_denied");
                        Err(Status::unavailable(format!(
                            "cannot count this request ({e}); failure_mode is deny, so it is \
                             refused until Redis is back"
                        )))
                    }
                };
            }
        };

        let mut counts = counts.into_iter();
        let mut overall = Code::Ok;
        let mut shadow_over = false;
        let statuses = matched
            .into_iter()
            .map(|m| {
                let (unit, requests, shadow, reset) = match m {
                    Decision::NoLimit => {
                        return DescriptorStatus {
                            code: Code::Ok as i32,
                            ..Default::default()
                        };
                    }
                    // The reference service's answer for an unlimited descriptor.
                    Decision::Unlimited => {
                        return DescriptorStatus {
                            code: Code::Ok as i32,
                            limit_remaining: u32::MAX,
                            ..Default::default()
                        };
                    }
                    Decision::Counted {
                        unit,
                        requests,
                        shadow,
                        reset,
                    } => (unit, requests, shadow, reset),
                };
                let count = counts.next().unwrap_or(0);
                let limit = u64::from(requests);
                let over = count > limit;
                let refused = over && !shadow;
                if refused {
                    overall = Code::OverLimit;
                }
                shadow_over |= over && shadow;
                DescriptorStatus {
                    code: if refused { Code::OverLimit } else { Code::Ok } as i32,
                    current_limit: Some(RateLimit {
                        name: String::new(),
                        requests_per_unit: requests,
                        unit: pb_unit(unit) as i32,
                    }),
                    limit_remaining: u32::try_from(limit.saturating_sub(count)).unwrap_or(0),
                    duration_until_reset: Some(PbDuration {
                        seconds: i64::try_from(reset).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        self.count(
            domain_label,
            if overall == Code::OverLimit {
                "over_limit"
            } else if shadow_over {
                "shadow_over_limit"
            } else {
                "ok"
            },
        );
        Ok(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            ..Default::default()
        })
    }

    fn count(&self, domain: String, code: &'static str) {
        self.shared
            .metrics
            .decisions
            .get_or_create(&DecisionLabels { domain, code })
            .inc();
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimiter {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let started = Instant::now();
        let result = self.decide(request.into_inner()).await;
        self.shared
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        result.map(Response::new)
    }
}
