//! Time for the window maths, injected so tests can cross window boundaries without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix time in whole seconds, the unit envoyproxy/ratelimit's windows are counted in.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that moves only when told to; clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `now_unix`.
    pub fn new(now_unix: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(now_unix)),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_unix: u64) {
        self.now.store(now_unix, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, seconds: u64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The window a time falls in, for a period of `period` seconds: its start (the counter key's
/// suffix) and the seconds until the next one starts.
pub fn window(now_unix: u64, period: u64) -> (u64, u64) {
    let period = period.max(1);
    let into = now_unix % period;
    (now_unix - into, period - into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_on_multiples_of_the_period() {
        assert_eq!(window(120, 60), (120, 60));
        assert_eq!(window(179, 60), (120, 1));
        assert_eq!(window(180, 60), (180, 60));
        assert_eq!(window(7, 1), (7, 1));
        assert_eq!(window(86_399, 86_400), (0, 1));
        // A zero period (never produced by `Unit::seconds`) is not a division by zero.
        assert_eq!(window(5, 0), (5, 1));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(100);
        let shared = c.clone();
        assert_eq!(c.now_unix(), 100);
        shared.advance(5);
        assert_eq!(c.now_unix(), 105);
        c.set(7);
        assert_eq!(shared.now_unix(), 7);
    }
}
