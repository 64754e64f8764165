//! The gate's clock: injected (tests, the simulator) or the system's monotonic clock read
//! through the CPU's time-stamp counter.
//!
//! Every admitted request reads the clock twice (admission and completion). `std`'s
//! `Instant::now` is a `clock_gettime` call through the vDSO (about 40 ns on a VM); quanta reads
//! the invariant TSC directly and scales it (about 25 ns there, less on bare metal), and falls
//! back to the OS clock where the TSC cannot be trusted. Controllers take `std::time::Instant`,
//! so each thread anchors quanta's reading to one `Instant::now` and re-anchors every 100 ms:
//! the two clocks never drift apart by more than the TSC's calibration error over 100 ms.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often (in clock nanoseconds) a thread re-anchors the TSC to `Instant::now`.
const REANCHOR_NS: u64 = 100_000_000;

thread_local! {
    /// (raw TSC reading, the `Instant` it stands for) of this thread's last anchor.
    static ANCHOR: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
}

/// Where the gate's `now` comes from.
#[derive(Clone)]
pub(crate) enum Clock {
    /// The system's monotonic clock, read through quanta.
    System(quanta::Clock),
    /// A clock the caller gives (tests, simulations).
    Injected(Arc<dyn Fn() -> Instant + Send + Sync>),
}

/// A reading of the clock: the raw counter (system clock; turned into an `Instant` only when
/// one is needed) or the injected clock's `Instant`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stamp {
    Raw(u64),
    At(Instant),
}

impl Clock {
    pub(crate) fn system() -> Clock {
        Clock::System(quanta::Clock::new())
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.instant(self.stamp())
    }

    /// A reading, as cheap as the clock allows.
    #[inline]
    pub(crate) fn stamp(&self) -> Stamp {
        match self {
            Clock::System(q) => Stamp::Raw(q.raw()),
            Clock::Injected(f) => Stamp::At(f()),
        }
    }

    /// The time between two readings (zero if `end` is not after `start`).
    #[inline]
    pub(crate) fn between(&self, start: Stamp, end: Stamp) -> Duration {
        match (self, start, end) {
            (Clock::System(q), Stamp::Raw(a), Stamp::Raw(b)) => {
                Duration::from_nanos(q.delta_as_nanos(a, b))
            }
            _ => self
                .instant(end)
                .saturating_duration_since(self.instant(start)),
        }
    }

    /// The `Instant` a reading stands for.
    #[inline]
    pub(crate) fn instant(&self, stamp: Stamp) -> Instant {
        match (self, stamp) {
            (_, Stamp::At(t)) => t,
            (Clock::System(q), Stamp::Raw(raw)) => {
                let anchored = ANCHOR.try_with(|a| match a.get() {
                    Some((r0, t0)) if raw >= r0 => {
                        let ns = q.delta_as_nanos(r0, raw);
                        if ns < REANCHOR_NS {
                            return t0 + Duration::from_nanos(ns);
                        }
                        let t = Instant::now();
                        a.set(Some((raw, t)));
                        t
                    }
                    _ => {
                        let t = Instant::now();
                        a.set(Some((raw, t)));
                        t
                    }
                });
                anchored.unwrap_or_else(|_| Instant::now())
            }
            // A raw reading from another clock: cannot happen (a gate has one clock).
            (Clock::Injected(f), Stamp::Raw(_)) => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_follows_std_and_never_goes_back_within_a_thread() {
        let c = Clock::system();
        let start = Instant::now();
        let mut last = c.now();
        let slack = Duration::from_micros(200);
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(1));
            let before = Instant::now();
            let now = c.now();
            let after = Instant::now();
            assert!(now >= last, "went back by {:?}", last - now);
            // Between std's readings around it, give or take the TSC's calibration error over
            // one anchor period (a preemption only widens the window).
            assert!(
                now + slack >= before && now <= after + slack,
                "{now:?} outside [{before:?}, {after:?}]"
            );
            last = now;
        }
        assert!(last - start >= Duration::from_millis(200));
        let (a, b) = (c.stamp(), {
            std::thread::sleep(Duration::from_millis(2));
            c.stamp()
        });
        assert!(c.between(a, b) >= Duration::from_millis(2));
        assert_eq!(c.between(b, a), Duration::ZERO);
    }
}
