//! One reconciliation of one `ReadSplit`: a governor tick, then status, events and state.
//!
//! The kube-runtime `Controller` calls [`reconcile`] for each ReadSplit and requeues it
//! after its `intervalSeconds`, so every ReadSplit is one control loop. Each has its own
//! [`Governor`] (policy + shield between a source and an actuator), kept in the [`Context`]
//! between reconciliations and rebuilt when the spec's generation changes; one
//! [`Governor::tick`] per interval does what `weir run` does each interval — observe with a
//! timeout, decide, actuate with the same back-off after failures — and this module is the
//! Kubernetes plumbing around it. What must survive a restart or a new leader — the weights in
//! force, the decision count and a learning policy's state — is kept in a ConfigMap owned by
//! the ReadSplit ([`crate::state`]).
//!
//! Sources come from a [`SourceFactory`] (Prometheus in production, canned in tests) and
//! actuators from an [`ActuatorFactory`] (Istio, whose patches carry the operator's field
//! manager); the reconciler takes any [`Actuator`].
//!
//! Failures never panic and never write a guess: a missing VirtualService or route makes the
//! ReadSplit `Degraded` with reason `RouteNotFound` and nothing is patched; metrics that
//! cannot be read make it `Degraded/MetricsUnavailable` while the shield holds the weights
//! (and, after `failSafeAfter` intervals, applies its fail-safe: `ShieldFailSafe`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use weir_controller::{Clock, ControlStep, DEFAULT_STEP_TIMEOUT_S, Governor, GovernorConfig, Tick};
use weir_core::{Observation, Policy, RewardConfig, Weights};
use weir_edge::{Actuator, ActuatorError, BoxActuator, DryRunActuator, Mode, Source};
use weir_istio::{IstioActuator, IstioConfig};
use weir_policy::Model;
use weir_prom::{HttpClient, PromConfig, PromError, PromSource};
use weir_recorder::Actuation;
use weir_shield::Shield;

use crate::MANAGER;
use crate::crd::{ObservationSummary, QuerySpec, ReadSplit, ReadSplitSpec, ReadSplitStatus};
use crate::metrics::Metrics;
use crate::spec::{Plan, SpecError};
use crate::state::{self, SavedState};

/// How long after a failed reconciliation the object is tried again.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);

/// Makes the observation source for one ReadSplit: Prometheus in production, canned
/// observations in tests.
pub trait SourceFactory: Send + Sync + 'static {
    /// The source type.
    type Source: Source;
    /// Why a source could not be built.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A source for `config` (`key` is `namespace/name`).
    fn build(&self, key: &str, config: &PromConfig) -> Result<Self::Source, Self::Error>;
}

/// Makes the actuator for one ReadSplit from its route settings.
pub trait ActuatorFactory: Send + Sync + 'static {
    /// The actuator type.
    type Actuator: Actuator;
    /// An actuator for `config`, on `client`.
    fn build(&self, client: &Client, config: &IstioConfig) -> Self::Actuator;
}

/// Istio, through `weir-istio`, patching under the operator's field manager ([`MANAGER`]) —
/// one identity for everything this process writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct IstioActuators;

impl ActuatorFactory for IstioActuators {
    type Actuator = IstioActuator;
    fn build(&self, client: &Client, config: &IstioConfig) -> IstioActuator {
        config.build(client.clone()).with_field_manager(MANAGER)
    }
}

/// Real Prometheus, through `weir-prom`: every source shares one HTTP client and its
/// connection pool (a client per ReadSplit would keep thousands of idle connections open to
/// the same Prometheus).
#[derive(Debug, Clone)]
pub struct PromSources {
    client: HttpClient,
}

impl PromSources {
    /// Builds the shared HTTP client.
    pub fn new() -> Result<Self, weir_prom::PromError> {
        Ok(PromSources {
            client: PromSource::http_client()?,
        })
    }
}

impl SourceFactory for PromSources {
    type Source = PromSource;
    type Error = PromError;
    fn build(&self, _key: &str, config: &PromConfig) -> Result<PromSource, PromError> {
        PromSource::with_client(config.clone(), self.client.clone())
    }
}

/// Why a reconciliation failed; [`Error::metric_label`] is its stable metric label.
///
/// The message carries the cause, so it is no `source`: `{:#}` prints it once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("kubernetes API: {}", weir_edge::with_causes(.0))]
    Kube(kube::Error),
    /// The ReadSplit has no namespace (it is namespaced; this means a malformed object).
    #[error("ReadSplit {0} has no namespace")]
    NoNamespace(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    /// Stable snake_case label for `weir_operator_reconcile_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(_) => "kube",
            Error::NoNamespace(_) => "malformed",
        }
    }
}

/// One governed ReadSplit between reconciliations.
struct Governed<S> {
    generation: Option<i64>,
    uid: String,
    plan: Plan,
    mode: Mode,
    online_learning: bool,
    governor: Governor<S, BoxActuator>,
    /// The weights really in force at the VirtualService, as far as the operator knows:
    /// the governor's in enforce mode; in shadow and dry-run, what was there at the start.
    in_force: Weights,
    decisions: u64,
    /// When the latest decision was made.
    last_decision: Option<Timestamp>,
    /// The shared queries it uses, if any.
    shared: Option<SharedQueries>,
}

/// One governed ReadSplit, locked while it is reconciled.
type Entry<S> = Arc<tokio::sync::Mutex<Governed<S>>>;
/// Governed ReadSplits by `namespace/name`.
type GovernedMap<S> = HashMap<String, Entry<S>>;

/// The reconciler's clock as the governor's: decisions are made at the injected time (epoch
/// seconds), and timeouts run on tokio's timer.
struct KubeClock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock for KubeClock {
    fn now_s(&self) -> f64 {
        (self.0)().as_millisecond() as f64 / 1000.0
    }

    fn sleep_until(&self, t_s: f64) -> impl Future<Output = ()> + Send {
        let wait = Duration::try_from_secs_f64((t_s - self.now_s()).max(0.0))
            .unwrap_or(Duration::from_secs(86_400));
        tokio::time::sleep(wait)
    }
}

/// Shared by every reconciliation: the client, the governed ReadSplits, metrics, the clock.
pub struct Context<F: SourceFactory = PromSources, A: ActuatorFactory = IstioActuators> {
    client: Client,
    sources: F,
    actuators: A,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    governed: Mutex<GovernedMap<F::Source>>,
    recorder: Recorder,
    /// The operator's metrics (shared with the TrafficPolicy reconciler).
    pub metrics: Arc<Metrics>,
    /// Save the state ConfigMap at least every this many decisions (and at every change of
    /// the weights in force).
    pub save_every: u64,
}

impl<F: SourceFactory> Context<F> {
    /// A context on `client`, making sources with `sources` and Istio actuators, reading time
    /// from `clock`.
    pub fn new(
        client: Client,
        sources: F,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        instance: Option<String>,
    ) -> Self {
        Context::with_actuators(client, sources, IstioActuators, clock, instance)
    }
}

impl<F: SourceFactory, A: ActuatorFactory> Context<F, A> {
    /// A context making actuators with `actuators`.
    pub fn with_actuators(
        client: Client,
        sources: F,
        actuators: A,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sources,
            actuators,
            clock,
            governed: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::new()),
            save_every: 20,
        }
    }

    fn governed_map(&self) -> std::sync::MutexGuard<'_, GovernedMap<F::Source>> {
        self.governed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The clock reconciliations read time from.
    pub fn clock(&self) -> Arc<dyn Fn() -> Timestamp + Send + Sync> {
        self.clock.clone()
    }

    /// How many ReadSplits are governed right now.
    pub fn governed_count(&self) -> usize {
        self.governed_map().len()
    }

    /// Stops governing everything (leadership lost): the next leader starts from the state
    /// ConfigMaps.
    pub fn forget_all(&self) {
        let keys: Vec<String> = self.governed_map().keys().cloned().collect();
        for k in keys {
            self.forget(&k);
        }
    }

    /// Stops governing `key` (`namespace/name`): its state stays in its ConfigMap, which
    /// Kubernetes deletes with the ReadSplit.
    fn forget(&self, key: &str) {
        if self.governed_map().remove(key).is_some() {
            tracing::info!(readsplit = key, "no longer governed");
        }
        self.metrics.forget(key);
        self.metrics.set_governed(self.governed_count());
    }
}

fn key_of(rs: &ReadSplit) -> Result<(String, String, String), Error> {
    let name = rs.name_any();
    let ns = rs
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    Ok((format!("{ns}/{name}"), ns, name))
}

/// The kube-runtime reconciler.
pub async fn reconcile<F: SourceFactory, A: ActuatorFactory>(
    rs: Arc<ReadSplit>,
    ctx: Arc<Context<F, A>>,
) -> Result<Action, Error> {
    let (key, ns, name) = key_of(&rs)?;
    if rs.meta().deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let result = govern(&rs, &ctx, &key, &ns, &name).await;
    ctx.metrics
        .observe_reconcile(started.elapsed().as_secs_f64(), result.is_ok());
    result
}

/// The kube-runtime error policy: count it, try again later.
pub fn error_policy<F: SourceFactory, A: ActuatorFactory>(
    rs: Arc<ReadSplit>,
    error: &Error,
    ctx: Arc<Context<F, A>>,
) -> Action {
    tracing::warn!(readsplit = %rs.name_any(), kind = error.metric_label(), error = %error, "reconcile failed");
    ctx.metrics.count_error(error.metric_label());
    Action::requeue(ERROR_REQUEUE)
}

/// Decisions kept per ReadSplit. The policies and the shield look only at the latest one;
/// the status and the events report what matters, and each record holds a whole observation
/// (about a kilobyte), so a long history would cost megabytes per thousand ReadSplits.
const HISTORY_LEN: usize = 4;

/// How often a `queriesFrom` ConfigMap is read again, so edits to shared queries reach
/// every ReadSplit that uses them (and a missing one is looked for again).
pub const SHARED_QUERIES_RECHECK: Duration = Duration::from_secs(60);

/// The `queriesFrom` ConfigMap a governed ReadSplit was built with.
struct SharedQueries {
    /// Its `resourceVersion` when read.
    version: Option<String>,
    /// When it was last read.
    checked: Timestamp,
}

/// Query overrides from the `queriesFrom` ConfigMap (`queries.json`), with the ConfigMap's
/// `resourceVersion` (`None` when the spec names no ConfigMap).
async fn shared_queries(
    client: &Client,
    ns: &str,
    spec: &ReadSplitSpec,
) -> Result<(BTreeMap<String, QuerySpec>, Option<String>), SpecError> {
    let Some(cm) = &spec.prometheus.queries_from else {
        return Ok((BTreeMap::new(), None));
    };
    let invalid = |problem: String| SpecError {
        field: "spec.prometheus.queriesFrom".into(),
        problem,
    };
    let (text, version) = state::config_map_entry(client, ns, cm, "queries.json")
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let queries = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("ConfigMap {ns}/{cm} queries.json: {e}")))?;
    Ok((queries, version))
}

/// Whether an invalid spec may mend itself without a new generation: the shared-queries
/// ConfigMap can be created or fixed at any time.
fn outside_spec(e: &SpecError) -> bool {
    e.field.starts_with("spec.prometheus.queriesFrom")
}

async fn build_policy(
    client: &Client,
    ns: &str,
    spec: &ReadSplitSpec,
    saved: Option<&SavedState>,
) -> Result<Box<dyn Policy>, SpecError> {
    let kind = spec.policy.kind;
    let online = spec.policy.online_learning;
    let field = "spec.policy.modelConfigMap";
    let invalid = |problem: String| SpecError {
        field: field.into(),
        problem,
    };
    if !kind.needs_model() {
        return kind.build(None, online).map_err(|e| invalid(e.to_string()));
    }
    // Learning online, the policy carries on from its saved snapshot; one that cannot be read
    // (written by another build, damaged) is logged and the policy starts from its model.
    if online && let Some(bytes) = saved.and_then(|s| s.policy.as_deref()) {
        match Model::from_bytes(kind, bytes, Path::new("the learned state")) {
            Ok(model) => {
                return kind
                    .build(Some(&model), online)
                    .map_err(|e| invalid(e.to_string()));
            }
            Err(e) => {
                tracing::error!(namespace = ns, error = %e, "the learned state is unusable; the policy starts from its model");
            }
        }
    }
    let model = match (&spec.policy.model_config_map, kind.model_file()) {
        (Some(cm), Some(key)) => {
            let bytes = state::config_map_bytes(client, ns, cm, key)
                .await
                .map_err(|e| invalid(e.to_string()))?;
            let origin = format!("ConfigMap {ns}/{cm} {key}");
            Model::from_bytes(kind, &bytes, Path::new(&origin))
                .map_err(|e| invalid(e.to_string()))?
        }
        // No ConfigMap named: the model built into this binary (`models/` of its source).
        _ => Model::shipped(kind)
            .ok_or_else(|| invalid(format!("policy kind {kind} ships no model")))?
            .map_err(|e| invalid(e.to_string()))?,
    };
    kind.build(Some(&model), online)
        .map_err(|e| invalid(e.to_string()))
}

/// The metrics source for `plan`.
fn source_for<F: SourceFactory, A: ActuatorFactory>(
    ctx: &Context<F, A>,
    key: &str,
    plan: &Plan,
) -> Result<F::Source, SpecError> {
    ctx.sources
        .build(key, &plan.prometheus)
        .map_err(|e| SpecError {
            field: "spec.prometheus".into(),
            problem: format!("{key}: {e}"),
        })
}

/// Stops governing `key` and says why: `Degraded/InvalidSpec` naming the field, and the
/// `invalid_spec` error metric.
async fn report_invalid_spec<F: SourceFactory, A: ActuatorFactory>(
    rs: &ReadSplit,
    ctx: &Context<F, A>,
    (key, ns, name): (&str, &str, &str),
    now: Timestamp,
    e: &SpecError,
) -> Result<(), Error> {
    ctx.forget(key);
    let status = degraded_status(rs, now, "InvalidSpec", &e.to_string());
    patch_status(ctx, ns, name, &status).await?;
    ctx.metrics.count_error("invalid_spec");
    Ok(())
}

/// What went wrong in building a governed ReadSplit.
enum BuildError {
    Spec(SpecError),
    Kube(kube::Error),
}

async fn build<F: SourceFactory, A: ActuatorFactory>(
    rs: &ReadSplit,
    ctx: &Context<F, A>,
    key: &str,
    ns: &str,
    name: &str,
) -> Result<Governed<F::Source>, BuildError> {
    let spec = &rs.spec;
    let (shared, shared_version) = shared_queries(&ctx.client, ns, spec)
        .await
        .map_err(BuildError::Spec)?;
    let plan = spec.plan(ns, &shared).map_err(BuildError::Spec)?;
    let saved = state::load(&ctx.client, ns, name)
        .await
        .map_err(BuildError::Kube)?;
    let policy = build_policy(&ctx.client, ns, spec, saved.as_ref())
        .await
        .map_err(BuildError::Spec)?;
    let source = source_for(ctx, key, &plan).map_err(BuildError::Spec)?;
    let target = ctx.actuators.build(&ctx.client, &plan.istio);
    let n = plan.replicas.len();
    let initial = match saved.as_ref().map(|s| &s.in_force) {
        Some(w) if w.replicas.len() == n => w.clone(),
        _ => target
            .read_current(n)
            .await
            .unwrap_or_else(|_| Weights::even(n)),
    };
    let mode = Mode::from(spec.mode);
    // A dry run plans with the real actuator and sends nothing.
    let actuator = match mode {
        Mode::DryRun => BoxActuator::new(DryRunActuator::planning_with(target)),
        Mode::Enforce | Mode::Shadow => BoxActuator::new(target),
    };
    // The ReadSplit has no priorities section yet: the defaults, for the reward and the shield
    // alike (reads stay off the primary while the replicas can serve them).
    let priorities = RewardConfig::default();
    let shield = Shield::new(plan.shield.clone(), plan.slo.clone(), n).with_priorities(&priorities);
    let step = ControlStep::new(
        policy,
        shield,
        plan.slo.clone(),
        priorities,
        initial.clone(),
        HISTORY_LEN,
    );
    let config = GovernorConfig {
        step_timeout_s: DEFAULT_STEP_TIMEOUT_S.max(plan.prometheus.timeout_s + 1.0),
        replica_names: plan.replicas.clone(),
        ..GovernorConfig::new(mode)
    };
    let governor = Governor::new(step, source, actuator, config).map_err(|e| {
        BuildError::Spec(SpecError {
            field: "spec".into(),
            problem: e.to_string(),
        })
    })?;
    tracing::info!(readsplit = key, weights = %initial, policy = %spec.policy.kind, mode = %mode, "governing");
    Ok(Governed {
        generation: rs.meta().generation,
        uid: rs.uid().unwrap_or_default(),
        plan,
        mode,
        online_learning: spec.policy.online_learning,
        governor,
        in_force: initial,
        decisions: saved.map_or(0, |s| s.decisions),
        last_decision: None,
        shared: spec
            .prometheus
            .queries_from
            .as_ref()
            .map(|_| SharedQueries {
                version: shared_version,
                checked: (ctx.clock)(),
            }),
    })
}

/// Why the ReadSplit is degraded this interval, if it is.
struct Degraded {
    reason: &'static str,
    message: String,
}

/// The condition reason for an actuation failure: the route is not there as configured, a
/// writer kept winning the race, or anything else.
fn actuation_reason(e: &ActuatorError) -> &'static str {
    match e {
        ActuatorError::TargetMissing(_) => "RouteNotFound",
        ActuatorError::Conflict(_) => "Conflict",
        _ => "ActuationFailed",
    }
}

/// Reads the `queriesFrom` ConfigMap again when [`SHARED_QUERIES_RECHECK`] has passed; when
/// it changed, the source is rebuilt with the new queries (the policy, its learning and the
/// weights in force carry on).
async fn refresh_shared_queries<F: SourceFactory, A: ActuatorFactory>(
    rs: &ReadSplit,
    ctx: &Context<F, A>,
    g: &mut Governed<F::Source>,
    key: &str,
    ns: &str,
    now: Timestamp,
) -> Result<(), SpecError> {
    let Some(shared) = &g.shared else {
        return Ok(());
    };
    let due = i64::try_from(SHARED_QUERIES_RECHECK.as_millis()).unwrap_or(i64::MAX);
    if now.as_millisecond() - shared.checked.as_millisecond() < due {
        return Ok(());
    }
    let (queries, version) = shared_queries(&ctx.client, ns, &rs.spec).await?;
    if version != shared.version {
        let plan = rs.spec.plan(ns, &queries)?;
        g.governor.set_source(source_for(ctx, key, &plan)?);
        tracing::info!(
            readsplit = key,
            "shared queries changed: new metrics source"
        );
        g.plan = plan;
    }
    g.shared = Some(SharedQueries {
        version,
        checked: now,
    });
    Ok(())
}

async fn govern<F: SourceFactory, A: ActuatorFactory>(
    rs: &ReadSplit,
    ctx: &Context<F, A>,
    key: &str,
    ns: &str,
    name: &str,
) -> Result<Action, Error> {
    let interval = Duration::from_secs(u64::from(rs.spec.interval_seconds.max(1)));
    let existing = ctx.governed_map().get(key).cloned();
    let entry = match existing {
        Some(e)
            if {
                let g = e.lock().await;
                g.generation == rs.meta().generation && Some(g.uid.as_str()) == rs.uid().as_deref()
            } =>
        {
            e
        }
        _ => match build(rs, ctx, key, ns, name).await {
            Ok(g) => {
                let e = Arc::new(tokio::sync::Mutex::new(g));
                ctx.governed_map().insert(key.to_string(), e.clone());
                ctx.metrics.set_governed(ctx.governed_count());
                e
            }
            Err(BuildError::Spec(e)) => {
                report_invalid_spec(rs, ctx, (key, ns, name), (ctx.clock)(), &e).await?;
                // Nothing to do until the spec changes, or the shared queries do.
                return Ok(if outside_spec(&e) {
                    Action::requeue(SHARED_QUERIES_RECHECK)
                } else {
                    Action::await_change()
                });
            }
            Err(BuildError::Kube(e)) => return Err(e.into()),
        },
    };
    let mut g = entry.lock().await;
    let now = (ctx.clock)();
    // One decision per interval, whatever triggered this reconciliation: the watch also
    // reports the operator's own status patches, and those must not become decisions.
    if let Some(last) = g.last_decision {
        let elapsed_ms = now.as_millisecond() - last.as_millisecond();
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if (0..interval_ms).contains(&elapsed_ms) {
            let remaining = u64::try_from(interval_ms - elapsed_ms).unwrap_or(0);
            return Ok(Action::requeue(Duration::from_millis(remaining)));
        }
    }
    g.last_decision = Some(now);
    if let Err(e) = refresh_shared_queries(rs, ctx, &mut g, key, ns, now).await {
        drop(g);
        report_invalid_spec(rs, ctx, (key, ns, name), now, &e).await?;
        return Ok(Action::requeue(SHARED_QUERIES_RECHECK));
    }
    let tick = g.governor.tick(&KubeClock(ctx.clock.clone())).await;
    g.decisions += 1;
    let before = g.in_force.clone();
    if g.mode == Mode::Enforce {
        g.in_force = g.governor.in_force().clone();
    }
    let mut degraded = degraded_by(&g, &tick);
    let Tick { record: rec, .. } = tick;
    let weights = rec.decision.weights.clone();
    let obs = &rec.observation;
    // The fail-safe outranks the reason that led to it (usually MetricsUnavailable).
    if g.governor.step().shield().status().fail_safe_engaged {
        let cause = degraded
            .as_ref()
            .map(|d| format!(" ({})", d.message))
            .unwrap_or_default();
        degraded = Some(Degraded {
            reason: "ShieldFailSafe",
            message: format!(
                "observations stale for too long: the fail-safe weights {weights} are in force{cause}"
            ),
        });
    }

    let names: Vec<String> = std::iter::once("primary".to_string())
        .chain(g.plan.replicas.iter().cloned())
        .collect();
    ctx.metrics.observe_decision(key, &names, &weights, obs);
    if g.in_force != before {
        let why = rec
            .decision
            .interventions
            .iter()
            .map(|i| i.detail.clone())
            .chain(std::iter::once(rec.decision.proposal.reason.clone()))
            .collect::<Vec<_>>()
            .join("; ");
        let note = format!("{before} → {}: {why}", g.in_force);
        let event = Event {
            type_: EventType::Normal,
            reason: "WeightsChanged".into(),
            note: Some(truncate(&note, 1000)),
            action: "SetWeights".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &rs.object_ref(&())).await {
            tracing::warn!(readsplit = key, error = %e, "could not publish the event");
        }
    }

    let status = status_for(rs, &g, obs, now, degraded.as_ref(), &weights);
    patch_status(ctx, ns, name, &status).await?;

    if g.in_force != before || g.decisions.is_multiple_of(ctx.save_every.max(1)) {
        let saved = SavedState {
            decisions: g.decisions,
            in_force: g.in_force.clone(),
            policy: if g.online_learning {
                g.governor.step().policy().snapshot()
            } else {
                None
            },
        };
        if let state::SaveOutcome::PolicyTooLarge { .. } =
            state::save(&ctx.client, rs, &saved).await?
        {
            ctx.metrics.count_error("state_too_large");
        }
    }
    Ok(Action::requeue(interval))
}

/// Why the tick leaves the ReadSplit degraded, before the fail-safe is considered: the
/// actuator failed (or is left alone after failures, backing off), or the metrics could not
/// be read and the shield holds.
fn degraded_by<S>(g: &Governed<S>, tick: &Tick) -> Option<Degraded> {
    if let Some(e) = &tick.actuation_error {
        return Some(Degraded {
            reason: actuation_reason(e),
            message: e.detail(),
        });
    }
    if let (Actuation::Skipped { reason }, Some(e)) = (&tick.record.actuation, g.governor.failing())
    {
        return Some(Degraded {
            reason: actuation_reason(e),
            message: format!("{}; {reason}", e.detail()),
        });
    }
    tick.source_error.as_ref().map(|e| Degraded {
        reason: "MetricsUnavailable",
        message: format!(
            "observation failed ({}): {e}; holding the weights",
            e.kind()
        ),
    })
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn condition(
    rs: &ReadSplit,
    now: &Timestamp,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let previous = rs.status.as_ref().map_or(&[][..], |s| &s.conditions);
    new_condition(
        previous,
        rs.meta().generation,
        now,
        (type_, status),
        reason,
        message,
    )
}

/// Condition `type_` with `status` for an object of `generation` whose conditions were
/// `previous`: the transition time moves only when the status does.
pub(crate) fn new_condition(
    previous: &[Condition],
    generation: Option<i64>,
    now: &Timestamp,
    (type_, status): (&str, bool),
    reason: &str,
    message: &str,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status)
        .map_or_else(|| Time(*now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

fn degraded_status(rs: &ReadSplit, now: Timestamp, reason: &str, message: &str) -> ReadSplitStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    status.observed_generation = rs.meta().generation;
    status.conditions = vec![
        condition(rs, &now, "Ready", false, reason, message),
        condition(rs, &now, "Degraded", true, reason, message),
    ];
    status
}

fn status_for<S>(
    rs: &ReadSplit,
    g: &Governed<S>,
    obs: &Observation,
    now: Timestamp,
    degraded: Option<&Degraded>,
    decided: &Weights,
) -> ReadSplitStatus {
    let slo = g.governor.step().slo();
    let mut weights = BTreeMap::new();
    // In shadow and dry-run nothing is applied: report what was decided.
    let shown = if g.mode == Mode::Enforce {
        &g.in_force
    } else {
        decided
    };
    weights.insert("primary".to_string(), shown.primary);
    for (n, w) in g.plan.replicas.iter().zip(&shown.replicas) {
        weights.insert(n.clone(), *w);
    }
    let mut lag = BTreeMap::new();
    let mut unhealthy = Vec::new();
    for r in &obs.replicas {
        match r.lag_s.value {
            Some(l) => {
                lag.insert(r.name.clone(), l);
                if l > slo.max_staleness_s || r.up == Some(false) {
                    unhealthy.push(r.name.clone());
                }
            }
            None => unhealthy.push(r.name.clone()),
        }
    }
    let max_lag = obs
        .max_known_lag_s()
        .map_or_else(|| "unknown".to_string(), |l| format!("{l:.1}s"));
    let (ready_reason, ready_msg) = match g.mode {
        Mode::Enforce => ("Governing", "weights applied every interval"),
        Mode::DryRun => ("DryRun", "decisions logged as patches, nothing applied"),
        Mode::Shadow => ("Shadow", "decisions recorded, nothing applied"),
    };
    let conditions = match degraded {
        Some(d) => vec![
            condition(rs, &now, "Ready", false, d.reason, &d.message),
            condition(rs, &now, "Degraded", true, d.reason, &d.message),
        ],
        None => vec![
            condition(rs, &now, "Ready", true, ready_reason, ready_msg),
            condition(rs, &now, "Degraded", false, "AsExpected", "no problems"),
        ],
    };
    ReadSplitStatus {
        observed_generation: rs.meta().generation,
        weights_summary: Some(shown.to_string()),
        weights,
        last_observation: Some(ObservationSummary {
            max_lag,
            lag_seconds: lag,
            unhealthy,
            primary_cpu: obs.primary.cpu.value,
        }),
        last_decision_time: Some(now.to_string()),
        conditions,
    }
}

async fn patch_status<F: SourceFactory, A: ActuatorFactory>(
    ctx: &Context<F, A>,
    ns: &str,
    name: &str,
    status: &ReadSplitStatus,
) -> Result<(), Error> {
    let api: Api<ReadSplit> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(MANAGER);
    let body = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "ReadSplit",
        "status": status,
    });
    api.patch_status(name, &params, &Patch::Merge(&body))
        .await?;
    Ok(())
}
