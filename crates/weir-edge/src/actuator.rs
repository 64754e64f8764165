//! Where decisions go: the [`Actuator`] trait, and [`BoxActuator`] for one chosen at run time.

use std::future::Future;
use std::pin::Pin;

use weir_core::{Decision, Weights};

use crate::ActuatorError;

/// Where decisions go (Istio, HAProxy, the simulator, a dry run).
///
/// Besides applying weights, an actuator answers the questions `weir check`, a dry run and a
/// fresh start ask of the target: what is in force now ([`Actuator::read_current`]), exactly
/// what applying a decision would send ([`Actuator::plan`]), and what a user must know about
/// when a change takes effect ([`Actuator::connection_note`]). A component owns those answers,
/// so that the code choosing a component never has to match on its kind.
pub trait Actuator: Send + Sync + 'static {
    /// Applies the decision's weights. Must be idempotent: the loop re-applies the same
    /// weights every interval, which also repairs drift.
    fn apply(
        &mut self,
        decision: &Decision,
    ) -> impl Future<Output = Result<(), ActuatorError>> + Send;

    /// Short name for logs (`istio`, `haproxy`, `simulator`, `dry-run`).
    fn name(&self) -> &str;

    /// The weights in force at the target now, over `replicas` replicas. Reads, never writes.
    /// Actuators that cannot read their target back say so with an error.
    fn read_current(
        &self,
        replicas: usize,
    ) -> impl Future<Output = Result<Weights, ActuatorError>> + Send {
        let _ = replicas;
        let name = self.name().to_string();
        async move {
            Err(ActuatorError::Other(format!(
                "the {name} actuator cannot read the weights in force"
            )))
        }
    }

    /// Whether [`Actuator::read_current`] gives back exactly the weights the last successful
    /// `apply` set (no rounding, no destinations merged), so that any difference is drift:
    /// someone else changed them (a reload, a restart, a hand edit). Only then does the loop
    /// compare them before each decision.
    fn reads_back_exactly(&self) -> bool {
        false
    }

    /// Exactly what applying `decision` would send now, one entry per command or request
    /// body, without sending it. Empty when nothing would be sent.
    fn plan(
        &self,
        decision: &Decision,
    ) -> impl Future<Output = Result<Vec<String>, ActuatorError>> + Send {
        let _ = decision;
        async { Ok(Vec::new()) }
    }

    /// What a user must know about how a weight change reaches traffic (for example that
    /// pooled TCP connections keep their server), when it matters for this target.
    fn connection_note(&self) -> Option<&'static str> {
        None
    }
}

/// A boxed future, as the object-safe [`DynActuator`] returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Actuator`] in object-safe form. Every actuator implements it; use [`BoxActuator`] rather
/// than this trait directly.
pub trait DynActuator: Send + Sync + 'static {
    /// [`Actuator::apply`].
    fn apply_dyn<'a>(
        &'a mut self,
        decision: &'a Decision,
    ) -> BoxFuture<'a, Result<(), ActuatorError>>;
    /// [`Actuator::name`].
    fn name_dyn(&self) -> &str;
    /// [`Actuator::read_current`].
    fn read_current_dyn(&self, replicas: usize) -> BoxFuture<'_, Result<Weights, ActuatorError>>;
    /// [`Actuator::reads_back_exactly`].
    fn reads_back_exactly_dyn(&self) -> bool;
    /// [`Actuator::plan`].
    fn plan_dyn<'a>(
        &'a self,
        decision: &'a Decision,
    ) -> BoxFuture<'a, Result<Vec<String>, ActuatorError>>;
    /// [`Actuator::connection_note`].
    fn connection_note_dyn(&self) -> Option<&'static str>;
}

impl<A: Actuator> DynActuator for A {
    fn apply_dyn<'a>(
        &'a mut self,
        decision: &'a Decision,
    ) -> BoxFuture<'a, Result<(), ActuatorError>> {
        Box::pin(self.apply(decision))
    }

    fn name_dyn(&self) -> &str {
        self.name()
    }

    fn read_current_dyn(&self, replicas: usize) -> BoxFuture<'_, Result<Weights, ActuatorError>> {
        Box::pin(self.read_current(replicas))
    }

    fn reads_back_exactly_dyn(&self) -> bool {
        self.reads_back_exactly()
    }

    fn plan_dyn<'a>(
        &'a self,
        decision: &'a Decision,
    ) -> BoxFuture<'a, Result<Vec<String>, ActuatorError>> {
        Box::pin(self.plan(decision))
    }

    fn connection_note_dyn(&self) -> Option<&'static str> {
        self.connection_note()
    }
}

/// An actuator of a kind chosen at run time (from a configuration file), behind one type.
pub struct BoxActuator(Box<dyn DynActuator>);

impl BoxActuator {
    /// Boxes `actuator`.
    pub fn new(actuator: impl Actuator) -> Self {
        BoxActuator(Box::new(actuator))
    }
}

impl std::fmt::Debug for BoxActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxActuator")
            .field(&self.0.name_dyn())
            .finish()
    }
}

impl Actuator for BoxActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        self.0.apply_dyn(decision).await
    }

    fn name(&self) -> &str {
        self.0.name_dyn()
    }

    async fn read_current(&self, replicas: usize) -> Result<Weights, ActuatorError> {
        self.0.read_current_dyn(replicas).await
    }

    fn reads_back_exactly(&self) -> bool {
        self.0.reads_back_exactly_dyn()
    }

    async fn plan(&self, decision: &Decision) -> Result<Vec<String>, ActuatorError> {
        self.0.plan_dyn(decision).await
    }

    fn connection_note(&self) -> Option<&'static str> {
        self.0.connection_note_dyn()
    }
}
