//! Injected time. The loop never reads the system clock itself: the demo runs it on an
//! accelerated clock, tests on tokio's paused clock, production on [`WallClock::new`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Seconds since the controller started, and a way to wait for a later instant.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since start.
    fn now_s(&self) -> f64;

    /// Completes once [`Clock::now_s`] has reached `t_s` (at once if it already has).
    fn sleep_until(&self, t_s: f64) -> impl Future<Output = ()> + Send;
}

/// Tokio time, starting at 0 when created, optionally running faster than real time.
///
/// Built on [`tokio::time`], so under `#[tokio::test(start_paused = true)]` it is a
/// deterministic virtual clock that jumps ahead whenever every task is idle.
#[derive(Debug, Clone)]
pub struct WallClock {
    origin: Instant,
    speed: f64,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

impl WallClock {
    /// Real time.
    pub fn new() -> Self {
        WallClock::with_speed(1.0)
    }

    /// Time running `speed` times faster than real time (the demo's simulated minutes pass
    /// in seconds). A `speed` that is not a positive finite number means real time.
    pub fn with_speed(speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        WallClock {
            origin: Instant::now(),
            speed,
        }
    }

    /// How many clock seconds pass per real second.
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for WallClock {
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * self.speed
    }

    fn sleep_until(&self, t_s: f64) -> impl Future<Output = ()> + Send {
        let real = (t_s / self.speed).max(0.0);
        // Far-future targets (or a huge t_s) saturate instead of panicking.
        let deadline = Duration::try_from_secs_f64(real)
            .ok()
            .and_then(|d| self.origin.checked_add(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::time::sleep_until(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn accelerated_clock_sleeps_in_clock_seconds() {
        let clock = WallClock::with_speed(60.0);
        assert!(clock.now_s() < 1e-9);
        let real = Instant::now();
        clock.sleep_until(120.0).await;
        assert!((clock.now_s() - 120.0).abs() < 1e-6);
        assert!((real.elapsed().as_secs_f64() - 2.0).abs() < 1e-6);
        // In the past: returns at once.
        clock.sleep_until(30.0).await;
        assert!((clock.now_s() - 120.0).abs() < 1e-6);
        assert_eq!(WallClock::with_speed(f64::NAN).speed(), 1.0);
    }
}
