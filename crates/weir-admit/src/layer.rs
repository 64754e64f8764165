//! The layer: [`AdmitLayer`] wraps a service in [`Admit`], which asks the shared [`Gate`] for
//! an in-flight slot on every request and answers at once when there is none. The gate also
//! applies the class shares and partition guarantees of [`crate::class`], counts what it
//! does (for [`crate::metrics`]), and logs a `tracing` event when the limit moves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::class::{self, Class, ClassShares, Partition, PartitionState, Reserve};
use crate::clock::{Clock, Stamp};
use crate::controller::{Controller, Outcome, Sample};
use crate::shard::ShardSet;

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `field` has an unusable `value`.
    #[error("{field} = {value}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// Why it cannot be used.
        why: &'static str,
    },
}

/// How rejections look, and what is never rejected.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP status of a rejection: 429 (default) or 503.
    pub reject_status: u16,
    /// `Retry-After` on HTTP rejections, in seconds (at least 1).
    pub retry_after_s: u32,
    /// Paths admitted whatever the load (health checks): exact matches.
    pub exempt_paths: Vec<String>,
    /// The header a request's [`Class`] is read from when its extensions carry none.
    pub criticality_header: String,
    /// The share of the limit each class may fill.
    pub class_shares: ClassShares,
    /// Route partitions and their guaranteed shares (none by default).
    pub partitions: Vec<Partition>,
    /// How a refused class holds slots back from the classes below it.
    pub reserve: Reserve,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reject_status: 429,
            retry_after_s: 1,
            exempt_paths: vec!["/healthz".into(), "/readyz".into(), "/livez".into()],
            criticality_header: "x-weir-criticality".into(),
            class_shares: ClassShares::default(),
            partitions: Vec::new(),
            reserve: Reserve::default(),
        }
    }
}

impl Config {
    fn check(&self) -> Result<StatusCode, ConfigError> {
        if self.retry_after_s == 0 {
            return Err(ConfigError::Invalid {
                field: "retry_after_s",
                value: "0".into(),
                why: "must be at least 1 second (0 invites an immediate retry storm)",
            });
        }
        match self.reject_status {
            429 => Ok(StatusCode::TOO_MANY_REQUESTS),
            503 => Ok(StatusCode::SERVICE_UNAVAILABLE),
            other => Err(ConfigError::Invalid {
                field: "reject_status",
                value: other.to_string(),
                why: "must be 429 or 503",
            }),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every slot under the limit was taken.
    OverLimit,
    /// Below the limit, but over the share of the limit the request's class may fill.
    ClassShare,
    /// Within its class share, but the slot is held back for a higher class that is being
    /// refused (see [`Reserve`]).
    Reserved,
}

impl Reason {
    /// The reason's name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OverLimit => "over_limit",
            Reason::ClassShare => "class_share",
            Reason::Reserved => "reserved",
        }
    }
}

/// What a rejected response carries in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The limit at the time.
    pub limit: u32,
    /// Requests in flight at the time.
    pub in_flight: u32,
    /// The request's class.
    pub class: Class,
    /// Why.
    pub reason: Reason,
}

/// The state every clone of the service shares: in-flight count, controller, counters.
pub struct Gate {
    /// On a cache line of its own (which also aligns the gate so that the `Arc`'s reference
    /// counts, written by every permit, do not share a line with the fields every request
    /// reads).
    in_flight: CachePadded<AtomicU32>,
    /// Counters and latency histograms, one shard per thread.
    pub(crate) stats: Arc<ShardSet>,
    /// Slots held back by `critical` and by `default` from the classes below them.
    pub(crate) reserved: [AtomicU32; 2],
    /// Per reserving class: admissions since its reservation last shrank.
    reserve_ticks: [AtomicU32; 2],
    /// Per reserving class: nanoseconds after `epoch` of its last refusal or idle halving.
    reserve_touched: [AtomicU64; 2],
    /// Admissions that give one reserved slot back (`None`: reservations are off).
    reserve_every: Option<u32>,
    reserve_idle_ns: u64,
    epoch: Instant,
    pub(crate) partitions: Vec<PartitionState>,
    pub(crate) controller: Arc<dyn Controller>,
    /// `controller.wants_samples()`, asked once.
    samples: bool,
    last_limit: AtomicU32,
    clock: Clock,
    reject_status: StatusCode,
    retry_after: HeaderValue,
    exempt_paths: Vec<String>,
    criticality_header: http::HeaderName,
    /// Class shares in millionths (integer arithmetic on the request path).
    shares_ppm: [u64; 3],
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("controller", &self.controller.name())
            .field("limit", &self.controller.limit())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Gate {
    /// A gate with `controller`, rejections as `config` says, and `now` as the clock (tests and
    /// simulations; a server takes [`Gate::with_system_clock`]).
    pub fn new(
        controller: Arc<dyn Controller>,
        config: &Config,
        now: Arc<dyn Fn() -> Instant + Send + Sync>,
    ) -> Result<Arc<Gate>, ConfigError> {
        Gate::build(controller, config, Clock::Injected(now))
    }

    /// A gate on the system's monotonic clock, read through the CPU's time-stamp counter where
    /// it can be trusted (see [`crate::clock`]).
    pub fn with_system_clock(
        controller: Arc<dyn Controller>,
        config: &Config,
    ) -> Result<Arc<Gate>, ConfigError> {
        Gate::build(controller, config, Clock::system())
    }

    fn build(
        controller: Arc<dyn Controller>,
        config: &Config,
        clock: Clock,
    ) -> Result<Arc<Gate>, ConfigError> {
        let reject_status = config.check()?;
        let shares = config.class_shares.check()?;
        let partitions = class::check_partitions(&config.partitions)?;
        let criticality_header = http::HeaderName::from_bytes(config.criticality_header.as_bytes())
            .map_err(|_| ConfigError::Invalid {
                field: "criticality_header",
                value: format!("{:?}", config.criticality_header),
                why: "not a valid HTTP header name",
            })?;
        let reserve_every = config.reserve.check()?;
        let initial = controller.limit();
        let samples = controller.wants_samples();
        let epoch = clock.now();
        Ok(Arc::new(Gate {
            in_flight: CachePadded::new(AtomicU32::new(0)),
            stats: ShardSet::new(partitions.len()),
            reserved: Default::default(),
            reserve_ticks: Default::default(),
            reserve_touched: Default::default(),
            reserve_every: config.reserve.enabled.then_some(reserve_every),
            reserve_idle_ns: config.reserve.idle_ms.saturating_mul(1_000_000),
            epoch,
            partitions,
            controller,
            samples,
            last_limit: AtomicU32::new(initial),
            clock,
            reject_status,
            retry_after: HeaderValue::from(config.retry_after_s),
            exempt_paths: config.exempt_paths.clone(),
            criticality_header,
            shares_ppm: shares.map(|s| (s * 1e6).round() as u64),
        }))
    }

    /// The gate's clock: the `Instant` it stamps admissions, completions and refusals with.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The controller (for explanations).
    pub fn controller(&self) -> &Arc<dyn Controller> {
        &self.controller
    }

    /// Logs the controller's explanation when the limit it answers has moved since the last
    /// request saw it: a load and a compare on the hot path, a swap only on change.
    fn note_limit(&self, limit: u32) {
        let seen = self.last_limit.load(Ordering::Relaxed);
        if seen != limit && self.last_limit.swap(limit, Ordering::Relaxed) != limit {
            let e = self.controller.explain();
            let big = seen.abs_diff(limit).saturating_mul(5) >= seen.max(1);
            if big {
                tracing::info!(controller = e.controller, from = seen, to = limit, state = %e.state, why = %e.why, "admission limit moved");
            } else {
                tracing::debug!(controller = e.controller, from = seen, to = limit, state = %e.state, why = %e.why, "admission limit moved");
            }
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests admitted and rejected so far, all classes (exempt ones are in neither).
    pub fn counts(&self) -> (u64, u64) {
        let t = self.stats.total();
        let admitted = t.admitted.iter().map(|c| c.get()).sum();
        let rejected = t.rejected.iter().flatten().map(|c| c.get()).sum();
        (admitted, rejected)
    }

    /// Requests of `class` admitted and rejected so far.
    pub fn class_counts(&self, class: Class) -> (u64, u64) {
        let i = class.index();
        (
            self.stats.sum(|s| s.admitted[i].get()),
            self.stats
                .sum(|s| s.rejected[i].iter().map(|c| c.get()).sum()),
        )
    }

    /// A `default`-class slot outside any partition, or the rejection.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejection> {
        self.try_acquire_as(Class::Default, None)
    }

    /// A slot for a request of `class` in partition `partition` (an index into the configured
    /// partitions), or the rejection: one compare-and-swap on the shared count, no lock, no
    /// wait. A partition below its guaranteed share is admitted over the class threshold (the
    /// overshoot is bounded by the guarantees, which sum to at most the limit).
    pub fn try_acquire_as(
        self: &Arc<Self>,
        class: Class,
        partition: Option<usize>,
    ) -> Result<Permit, Rejection> {
        self.acquire(class, partition, || GateRef::Shared(Arc::clone(self)))
    }

    /// [`Gate::try_acquire_as`] on a gate that lives as long as the process ([`Gate::leak`]):
    /// the permit holds a plain reference, so the request path updates no reference count.
    pub fn try_acquire_static(
        this: &'static Arc<Gate>,
        class: Class,
        partition: Option<usize>,
    ) -> Result<Permit, Rejection> {
        this.acquire(class, partition, || GateRef::Static(this))
    }

    /// Keeps the gate for the rest of the process, for [`AdmitLayer::from_static`] and
    /// [`Gate::try_acquire_static`]: saves two atomic reference-count updates per request (about
    /// a fifth of the layer's cost on a VM). The gate is never freed: call it once per gate a
    /// server builds, not per reload in a loop.
    pub fn leak(self: Arc<Self>) -> &'static Arc<Gate> {
        Box::leak(Box::new(self))
    }

    fn acquire(
        &self,
        class: Class,
        partition: Option<usize>,
        handle: impl FnOnce() -> GateRef,
    ) -> Result<Permit, Rejection> {
        let stamp = self.clock.stamp();
        let limit = self.controller.limit().max(1);
        self.note_limit(limit);
        let share = u32::try_from(u64::from(limit) * self.shares_ppm[class.index()] / 1_000_000)
            .unwrap_or(u32::MAX)
            .max(1);
        let threshold = match self.reserve_every {
            Some(_) if class != Class::Critical => {
                share.min(limit.saturating_sub(self.held_back(class, limit, stamp)))
            }
            _ => share,
        };
        let part = partition.and_then(|i| self.partitions.get(i).map(|p| (i, p)));
        let guaranteed = part.is_some_and(|(_, p)| {
            let share = (f64::from(threshold) * p.share).floor() as u32;
            p.in_flight.load(Ordering::Acquire) < share
        });
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current >= threshold && !guaranteed {
                let reason = if current >= limit {
                    Reason::OverLimit
                } else if current >= share {
                    Reason::ClassShare
                } else {
                    Reason::Reserved
                };
                let pi = part.map(|(i, _)| i);
                self.stats.with(|s| {
                    s.rejected[class.index()][reason as usize].add(1);
                    if let Some(c) = pi.and_then(|i| s.partitions.get(i)) {
                        c[1].add(1);
                    }
                });
                let now = self.clock.instant(stamp);
                self.reserve_more(class, limit, now);
                if reason == Reason::OverLimit {
                    self.controller.on_reject(now);
                }
                return Err(Rejection {
                    limit,
                    in_flight: current,
                    class,
                    reason,
                });
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        // The partition's slot is taken before anything else, so the window in which a
        // concurrent request of the same partition does not see it is as short as it can be.
        if let Some((_, p)) = part {
            p.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        let pi = part.map(|(i, _)| i);
        self.stats.with(|s| {
            s.admitted[class.index()].add(1);
            if let Some(c) = pi.and_then(|i| s.partitions.get(i)) {
                c[0].add(1);
            }
        });
        self.reserve_less(class);
        Ok(Permit {
            gate: handle(),
            started: stamp,
            in_flight: current + 1,
            class,
            partition: part.map(|(i, _)| i),
            reported: false,
        })
    }

    /// Slots the classes above `class` hold back from it now, after halving any reservation
    /// whose class has not been refused for `idle_ms` (lazily, here: no timer thread).
    fn held_back(&self, class: Class, limit: u32, stamp: Stamp) -> u32 {
        let mut held = 0u32;
        for h in 0..class.index().min(2) {
            let r = self.reserved[h].load(Ordering::Relaxed);
            if r == 0 {
                continue;
            }
            let now_ns = nanos_since(self.epoch, self.clock.instant(stamp));
            let touched = self.reserve_touched[h].load(Ordering::Relaxed);
            let idle = now_ns.saturating_sub(touched) / self.reserve_idle_ns.max(1);
            let r = if idle > 0
                && self.reserve_touched[h]
                    .compare_exchange(touched, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let halved = r
                    .checked_shr(u32::try_from(idle).unwrap_or(u32::MAX))
                    .unwrap_or(0);
                self.reserved[h].store(halved, Ordering::Relaxed);
                halved
            } else {
                r
            };
            held = held.saturating_add(r);
        }
        held.min(limit)
    }

    /// A refused `critical` or `default` request reserves one more slot (at most the limit).
    /// Also when no lower-class request is in flight at that moment: the lower-class requests
    /// admitted just before still built the queue the refused one found (measured: refusals
    /// happen with every slot held by the refused class itself, and holding lower classes
    /// back still cuts them by two thirds).
    fn reserve_more(&self, class: Class, limit: u32, now: Instant) {
        let h = class.index();
        if self.reserve_every.is_none() || h > 1 {
            return;
        }
        let _ = self.reserved[h].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
            (r < limit).then_some(r + 1)
        });
        self.reserve_touched[h].store(nanos_since(self.epoch, now), Ordering::Relaxed);
    }

    /// Every `reserve_every` admissions of a reserving class give one slot back.
    fn reserve_less(&self, class: Class) {
        let h = class.index();
        let Some(every) = self.reserve_every else {
            return;
        };
        if h > 1 || self.reserved[h].load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.reserve_ticks[h].fetch_add(1, Ordering::Relaxed) + 1 >= every {
            self.reserve_ticks[h].store(0, Ordering::Relaxed);
            let _ = self.reserved[h]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1));
        }
    }

    /// Slots held back now by `critical` and by `default` from the classes below them.
    pub fn reserved(&self) -> [u32; 2] {
        [
            self.reserved[0].load(Ordering::Relaxed),
            self.reserved[1].load(Ordering::Relaxed),
        ]
    }

    /// The class of a request: a [`Class`] in its extensions, else the criticality header,
    /// else `default`.
    fn class_of<B>(&self, req: &Request<B>) -> Class {
        if let Some(c) = req.extensions().get::<Class>() {
            return *c;
        }
        req.headers()
            .get(&self.criticality_header)
            .and_then(|v| Class::parse(v.as_bytes()))
            .unwrap_or(Class::Default)
    }

    fn exempt(&self, path: &str) -> bool {
        self.exempt_paths.iter().any(|p| p == path)
    }

    fn rejection<B: Default>(&self, grpc: bool, why: Rejection) -> Response<B> {
        let mut r = Response::new(B::default());
        if grpc {
            // A trailers-only gRPC answer: status 8 in the headers.
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from_static("8"));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("over the admission limit, retry later"),
            );
        } else {
            *r.status_mut() = self.reject_status;
            r.headers_mut()
                .insert(header::RETRY_AFTER, self.retry_after.clone());
        }
        r.extensions_mut().insert(why);
        r
    }
}

fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// An in-flight slot: given back when dropped; reports its sample to the controller once.
#[derive(Debug)]
pub struct Permit {
    gate: GateRef,
    started: Stamp,
    in_flight: u32,
    class: Class,
    partition: Option<usize>,
    reported: bool,
}

impl Permit {
    fn finish(&mut self, outcome: Outcome) {
        if !self.reported {
            self.reported = true;
            let end = self.gate.clock.stamp();
            let latency = self.gate.clock.between(self.started, end);
            if outcome != Outcome::Dropped {
                let (c, o) = (self.class.index(), usize::from(outcome == Outcome::Error));
                self.gate.stats.with(|s| s.latency[c][o].observe(latency));
            }
            if self.gate.samples {
                self.gate.controller.on_sample(Sample {
                    latency,
                    in_flight: self.in_flight,
                    outcome,
                    finished: self.gate.clock.instant(end),
                });
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Cancelled, or the inner service panicked: no answer, so no latency sample.
        self.finish(Outcome::Dropped);
        if let Some(p) = self.partition.and_then(|i| self.gate.partitions.get(i)) {
            p.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a service or a permit holds its gate: a counted reference, or a plain one to a gate
/// kept for the process ([`Gate::leak`]), which costs nothing to copy.
#[derive(Debug, Clone)]
enum GateRef {
    Shared(Arc<Gate>),
    Static(&'static Arc<Gate>),
}

impl GateRef {
    fn arc(&self) -> &Arc<Gate> {
        match self {
            GateRef::Shared(g) => g,
            GateRef::Static(g) => g,
        }
    }
}

impl std::ops::Deref for GateRef {
    type Target = Gate;

    #[inline]
    fn deref(&self) -> &Gate {
        self.arc()
    }
}

/// The layer.
#[derive(Debug, Clone)]
pub struct AdmitLayer {
    gate: GateRef,
}

impl AdmitLayer {
    /// A layer whose services share `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        AdmitLayer {
            gate: GateRef::Shared(gate),
        }
    }

    /// A layer on a gate kept for the process ([`Gate::leak`]): the same behaviour, without the
    /// two reference-count updates per request that a shared gate costs.
    pub fn from_static(gate: &'static Arc<Gate>) -> Self {
        AdmitLayer {
            gate: GateRef::Static(gate),
        }
    }

    /// A layer with `controller`, `config`, and the system clock.
    pub fn with(controller: Arc<dyn Controller>, config: &Config) -> Result<Self, ConfigError> {
        Ok(AdmitLayer::new(Gate::with_system_clock(
            controller, config,
        )?))
    }

    /// The shared gate (for metrics and explanations).
    pub fn gate(&self) -> &Arc<Gate> {
        self.gate.arc()
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// A service behind admission control.
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    gate: GateRef,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Admit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AdmitFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if self.gate.exempt(req.uri().path()) {
            self.gate.stats.with(|s| s.exempt.add(1));
            return AdmitFuture::Exempt {
                fut: self.inner.call(req),
            };
        }
        let class = self.gate.class_of(&req);
        let partition = class::partition_of(&self.gate.partitions, req.uri().path());
        // The permit holds the gate as this service does: a counted or a plain reference.
        match self.gate.acquire(class, partition, || self.gate.clone()) {
            Ok(permit) => AdmitFuture::Admitted {
                grpc: is_grpc(&req),
                fut: self.inner.call(req),
                permit: Some(permit),
            },
            Err(why) => AdmitFuture::Rejected {
                response: Some(self.gate.rejection(is_grpc(&req), why)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Admit`].
    #[project = Proj]
    pub enum AdmitFuture<F, B> {
        /// Holding a slot.
        Admitted { #[pin] fut: F, permit: Option<Permit>, grpc: bool },
        /// An exempt path: no slot.
        Exempt { #[pin] fut: F },
        /// Answered at once.
        Rejected { response: Option<Response<B>> },
    }
}

/// How an answer ended: only a gRPC request's answer is looked at for `grpc-status` (a
/// custom header's lookup hashes its name: kept off plain HTTP's path).
fn outcome<B>(r: &Response<B>, grpc: bool) -> Outcome {
    let grpc_error = grpc
        && r.headers()
            .get("grpc-status")
            .is_some_and(|s| s.as_bytes() != b"0");
    if r.status().is_server_error() || grpc_error {
        Outcome::Error
    } else {
        Outcome::Success
    }
}

impl<F, B, E> Future for AdmitFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Admitted { fut, permit, grpc } => {
                let out = std::task::ready!(fut.poll(cx));
                if let Some(mut p) = permit.take() {
                    p.finish(match &out {
                        Ok(r) => outcome(r, *grpc),
                        Err(_) => Outcome::Error,
                    });
                }
                Poll::Ready(out)
            }
            Proj::Exempt { fut } => fut.poll(cx),
            Proj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled after completion (a caller bug): never ready again, like a fused
                // future, rather than a panic.
                None => Poll::Pending,
            },
        }
    }
}
