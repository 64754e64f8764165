//! The gate's counters and latency histograms, kept per thread so the request path never
//! shares a cache line for bookkeeping: each thread writes only its own [`Shard`] with plain
//! loads and stores (no locked instruction), and readers add every shard up at scrape time.
//!
//! A shard is created the first time a thread counts for a gate (one mutex lock per thread
//! and gate) and folded into the gate's `retired` totals when the thread exits, so a server
//! that starts and ends threads does not grow its gate. Counters never go backwards: a sum
//! read while a thread retires sees its counts either in its shard or in `retired`, never
//! both (both sides change under the same lock).
//!
//! Hand-written: `thread_local` crates give per-thread values but neither the fold on exit
//! nor single-writer counters readable from other threads.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The same bounds in nanoseconds, compared as integers on the request path.
const BOUNDS_NS: [u64; 14] = [
    1_000_000,
    2_500_000,
    5_000_000,
    7_500_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A counter one thread writes (a load and a store, no locked add) and any thread reads.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Adds `n`. Only the shard's own thread calls this (or a holder of the set's lock).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram of latencies: per bucket (non-cumulative, +Inf last) and the sum.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [Count; LATENCY_BUCKETS.len() + 1],
    sum_ns: Count,
}

impl LatencyHistogram {
    /// Records one latency (from the shard's own thread).
    #[inline]
    pub(crate) fn observe(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|b| ns > *b);
        self.buckets[i].add(1);
        self.sum_ns.add(ns);
    }

    fn add_from(&self, other: &LatencyHistogram) {
        add_all(&self.buckets, &other.buckets);
        self.sum_ns.add(other.sum_ns.get());
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds, +Inf last).
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let counts: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(Count::get))
            .collect();
        let count = counts.iter().map(|(_, c)| c).sum();
        let sum = self.sum_ns.get() as f64 / 1e9;
        (sum, count, counts)
    }
}

/// What one thread has counted for one gate.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Per class.
    pub(crate) admitted: [Count; 3],
    /// Per class, per reason.
    pub(crate) rejected: [[Count; 3]; 3],
    pub(crate) exempt: Count,
    /// Per class, per outcome (success, error).
    pub(crate) latency: [[LatencyHistogram; 2]; 3],
    /// Per partition: admitted, rejected.
    pub(crate) partitions: Vec<[Count; 2]>,
}

impl Shard {
    fn new(partitions: usize) -> Shard {
        Shard {
            admitted: Default::default(),
            rejected: Default::default(),
            exempt: Count::default(),
            latency: Default::default(),
            partitions: (0..partitions).map(|_| Default::default()).collect(),
        }
    }

    fn add_from(&self, other: &Shard) {
        add_all(&self.admitted, &other.admitted);
        add_all(
            self.rejected.iter().flatten(),
            other.rejected.iter().flatten(),
        );
        self.exempt.add(other.exempt.get());
        for (a, b) in self
            .latency
            .iter()
            .flatten()
            .zip(other.latency.iter().flatten())
        {
            a.add_from(b);
        }
        add_all(
            self.partitions.iter().flatten(),
            other.partitions.iter().flatten(),
        );
    }
}

/// Adds each counter of `from` to its counterpart in `to`.
fn add_all<'a>(to: impl IntoIterator<Item = &'a Count>, from: impl IntoIterator<Item = &'a Count>) {
    for (a, b) in to.into_iter().zip(from) {
        a.add(b.get());
    }
}

#[derive(Debug)]
struct Inner {
    live: Vec<Arc<Shard>>,
    /// What exited threads counted.
    retired: Shard,
}

/// Every thread's shard of one gate.
#[derive(Debug)]
pub(crate) struct ShardSet {
    id: u64,
    partitions: usize,
    inner: Mutex<Inner>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's handle on its shard of one set; folds the shard into the set when the thread
/// exits.
struct Mine {
    id: u64,
    set: Weak<ShardSet>,
    shard: Arc<Shard>,
}

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            set.retire(&self.shard);
        }
    }
}

thread_local! {
    static MINE: RefCell<Vec<Mine>> = const { RefCell::new(Vec::new()) };
}

impl ShardSet {
    pub(crate) fn new(partitions: usize) -> Arc<ShardSet> {
        Arc::new(ShardSet {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            partitions,
            inner: Mutex::new(Inner {
                live: Vec::new(),
                retired: Shard::new(partitions),
            }),
        })
    }

    /// Runs `f` on this thread's shard (created on first use).
    #[inline]
    pub(crate) fn with(self: &Arc<Self>, f: impl Fn(&Shard)) {
        let found = MINE
            .try_with(|m| match m.try_borrow() {
                Ok(m) => m
                    .iter()
                    .find(|e| e.id == self.id)
                    .map(|e| f(&e.shard))
                    .is_some(),
                Err(_) => false,
            })
            .unwrap_or(false);
        if !found {
            self.register(f);
        }
    }

    #[cold]
    fn register(self: &Arc<Self>, f: impl Fn(&Shard)) {
        let shard = Arc::new(Shard::new(self.partitions));
        f(&shard);
        if let Ok(mut inner) = self.inner.lock() {
            inner.live.push(shard.clone());
        }
        let kept = MINE.try_with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return false;
            };
            // Threads outlive gates in tests and reloads: forget sets that are gone.
            m.retain(|e| e.set.strong_count() > 0);
            m.push(Mine {
                id: self.id,
                set: Arc::downgrade(self),
                shard: shard.clone(),
            });
            true
        });
        if kept != Ok(true) {
            // No thread-local storage left (the thread is exiting): fold it in at once.
            self.retire(&shard);
        }
    }

    fn retire(&self, shard: &Arc<Shard>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.retired.add_from(shard);
            inner.live.retain(|s| !Arc::ptr_eq(s, shard));
        }
    }

    /// Adds up one value over every shard, live and retired.
    pub(crate) fn sum(&self, f: impl Fn(&Shard) -> u64) -> u64 {
        match self.inner.lock() {
            Ok(inner) => inner.live.iter().map(|s| f(s)).sum::<u64>() + f(&inner.retired),
            Err(_) => 0,
        }
    }

    /// Every shard added up, as one shard.
    pub(crate) fn total(&self) -> Shard {
        let total = Shard::new(self.partitions);
        if let Ok(inner) = self.inner.lock() {
            for s in &inner.live {
                total.add_from(s);
            }
            total.add_from(&inner.retired);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_and_the_sum() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(900));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 20.0319).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.001, 2), "a bucket's bound is inclusive");
        assert_eq!(buckets[6], (0.05, 1));
        assert_eq!(buckets.last().map(|b| b.1), Some(1), "+Inf");
    }

    #[test]
    fn counts_from_every_thread_add_up_and_survive_the_threads() {
        let set = ShardSet::new(1);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let set = set.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        set.with(|s| {
                            s.admitted[0].add(1);
                            s.partitions[0][1].add(1);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        set.with(|s| s.admitted[0].add(5));
        assert_eq!(set.sum(|s| s.admitted[0].get()), 4005);
        assert_eq!(set.total().partitions[0][1].get(), 4000);
        let live = set.inner.lock().map(|i| i.live.len()).unwrap_or(0);
        assert_eq!(
            live, 1,
            "exited threads were folded into the retired totals"
        );
    }
}
