//! The simulator behind the live controller loop: a [`SimSource`], a [`SimActuator`] and a
//! [`SimClock`] sharing one [`Simulator`]. `weir demo` runs the same
//! [`weir_controller::Controller`] a real deployment runs, with these in place of Prometheus,
//! Istio/HAProxy and the wall clock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use weir_controller::Clock;
use weir_core::{Decision, Observation, Outcome};
use weir_edge::{Actuator, ActuatorError, Source, SourceError};
use weir_sim::{IntervalStats, Simulator};

/// One simulator shared by the source, the actuator and the clock.
pub type SharedSim = Arc<Mutex<Simulator>>;

fn lock(sim: &SharedSim) -> MutexGuard<'_, Simulator> {
    // A panic while holding the lock cannot leave the simulator half-stepped in a way that
    // matters more than stopping the demo would; keep going with its state.
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

/// Advances the simulator to the controller's clock and observes it, like a Prometheus query.
pub struct SimSource {
    sim: SharedSim,
    pending: Option<IntervalStats>,
    total: Arc<Mutex<IntervalStats>>,
}

impl SimSource {
    /// A source over `sim`.
    pub fn new(sim: SharedSim) -> Self {
        SimSource {
            sim,
            pending: None,
            total: Arc::new(Mutex::new(IntervalStats::default())),
        }
    }

    /// The true totals so far (shared: read them after the run).
    pub fn totals(&self) -> Arc<Mutex<IntervalStats>> {
        self.total.clone()
    }
}

impl Source for SimSource {
    fn observe(
        &mut self,
        now_s: f64,
    ) -> impl Future<Output = Result<Observation, SourceError>> + Send {
        let result = {
            let mut sim = lock(&self.sim);
            let behind = now_s - sim.now_s();
            let stats = if behind > 0.0 {
                sim.run_for(behind)
            } else {
                IntervalStats::default()
            };
            if let Ok(mut t) = self.total.lock() {
                t.merge(&stats);
            }
            self.pending = Some(stats);
            let mut obs = sim.observe();
            obs.at_s = now_s;
            obs
        };
        std::future::ready(Ok(result))
    }

    fn take_outcome(&mut self) -> Option<Outcome> {
        self.pending
            .take()
            .filter(|s| s.ticks > 0)
            .map(|s| s.outcome(0.0))
    }
}

/// Applies decisions to the simulator's routing.
pub struct SimActuator {
    sim: SharedSim,
}

impl SimActuator {
    /// An actuator over `sim`.
    pub fn new(sim: SharedSim) -> Self {
        SimActuator { sim }
    }
}

impl Actuator for SimActuator {
    fn apply(
        &mut self,
        decision: &Decision,
    ) -> impl Future<Output = Result<(), ActuatorError>> + Send {
        lock(&self.sim).set_weights(&decision.weights);
        std::future::ready(Ok(()))
    }

    fn name(&self) -> &str {
        "simulator"
    }
}

/// Simulated time. With `speed > 0` each simulated second takes `1/speed` real seconds (so a
/// person can watch); with `speed == 0` time jumps straight to the next decision.
pub struct SimClock {
    now: Mutex<f64>,
    speed: f64,
}

impl SimClock {
    /// A clock at 0 running `speed` simulated seconds per real second (0 = no pacing).
    pub fn new(speed: f64) -> Self {
        SimClock {
            now: Mutex::new(0.0),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
        }
    }
}

impl Clock for SimClock {
    fn now_s(&self) -> f64 {
        self.now.lock().map(|t| *t).unwrap_or(0.0)
    }

    async fn sleep_until(&self, t_s: f64) {
        // Time moves only when the sleep completes: a timeout that loses its race must not
        // have advanced the clock.
        let now = self.now_s();
        if self.speed > 0.0 && t_s > now {
            tokio::time::sleep(Duration::from_secs_f64((t_s - now) / self.speed)).await;
        } else {
            tokio::task::yield_now().await;
        }
        if let Ok(mut n) = self.now.lock() {
            *n = n.max(t_s);
        }
    }
}
