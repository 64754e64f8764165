//! Slots a refused higher class holds back from the classes below it ([`weir_admit::Reserve`]):
//! the reservation's arithmetic on a gate with an injected clock, and its effect on a small
//! discrete-event model of an overloaded server (critical requests stop being refused because
//! sheddable ones stop holding the slots they need).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir_admit::{Class, Config, Gate, Permit, Reason, Reserve, Static};

/// A gate with a fixed `limit` and a clock the test moves.
fn gate(limit: u32, reserve: Reserve) -> (Arc<Gate>, Arc<AtomicU64>) {
    let base = Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let clock = offset.clone();
    let now = Arc::new(move || base + Duration::from_nanos(clock.load(Ordering::Relaxed)));
    let config = Config {
        reserve,
        ..Config::default()
    };
    let c = Static::new(limit).unwrap_or_else(|e| panic!("{e}"));
    let g = Gate::new(Arc::new(c), &config, now).unwrap_or_else(|e| panic!("{e}"));
    (g, offset)
}

fn take(g: &Arc<Gate>, class: Class, n: usize) -> Vec<Permit> {
    (0..n)
        .map(|i| {
            g.try_acquire_as(class, None)
                .unwrap_or_else(|r| panic!("{} #{i} refused: {r:?}", class.as_str()))
        })
        .collect()
}

#[test]
fn refused_critical_requests_hold_slots_back_until_admissions_or_quiet_give_them_back() {
    let reserve = Reserve {
        enabled: true,
        target_refused: 0.25, // one slot back every 3 critical admissions
        idle_ms: 1000,
    };
    let (g, clock) = gate(10, reserve);
    // Sheddable fills its 70 %, critical the rest up to its 110 %.
    let shed = take(&g, Class::Sheddable, 7);
    let mut crit = take(&g, Class::Critical, 4);
    for _ in 0..5 {
        let r = g.try_acquire_as(Class::Critical, None).unwrap_err();
        assert_eq!(r.reason, Reason::OverLimit);
    }
    assert_eq!(
        g.reserved(),
        [5, 0],
        "one slot per refused critical request"
    );
    drop(shed);
    // 4 in flight, sheddable's share is 7 but 5 of the 10 slots are held for critical.
    let _more = take(&g, Class::Sheddable, 1);
    let r = g.try_acquire_as(Class::Sheddable, None).unwrap_err();
    assert_eq!((r.reason, r.in_flight), (Reason::Reserved, 5));
    let r = g.try_acquire_as(Class::Default, None).unwrap_err();
    assert_eq!(r.reason, Reason::Reserved, "default is below critical too");
    assert_eq!(
        g.reserved(),
        [5, 1],
        "a refused default request reserves from sheddable"
    );
    // Critical admissions give slots back: 3 of them, one slot.
    crit.extend(take(&g, Class::Critical, 3));
    assert_eq!(g.reserved()[0], 4);
    drop(crit);
    // A quiet second halves what critical holds, two more empty it.
    clock.store(1_100_000_000, Ordering::Relaxed);
    let _ = g.try_acquire_as(Class::Sheddable, None);
    assert_eq!(g.reserved()[0], 2);
    clock.store(3_200_000_000, Ordering::Relaxed);
    let _s = take(&g, Class::Sheddable, 6);
    assert_eq!(g.reserved(), [0, 0]);
}

#[test]
fn with_reservations_off_a_lower_class_is_limited_by_its_share_alone() {
    let (g, _) = gate(
        10,
        Reserve {
            enabled: false,
            ..Reserve::default()
        },
    );
    let _c = take(&g, Class::Critical, 11);
    for _ in 0..20 {
        assert!(g.try_acquire_as(Class::Critical, None).is_err());
    }
    assert_eq!(g.reserved(), [0, 0]);
    drop(_c);
    let _s = take(&g, Class::Sheddable, 7);
}

/// xorshift64*: a seeded stream without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Served {
    offered: u64,
    refused: u64,
}

/// A server of 8 slots (uniform 2.5–7.5 ms service, FIFO queue behind the gate, 1,600 req/s)
/// offered `rate` req/s for `secs`, a fraction `critical` of it critical and the rest
/// sheddable; per class, what was offered and refused.
fn overload(reserve: Reserve, rate: f64, critical: f64, secs: f64, seed: u64) -> [Served; 2] {
    let (g, clock) = gate(24, reserve);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = [Served::default(); 2];
    let mut done: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut permits: Vec<Option<Permit>> = Vec::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut busy = 0;
    let end = (secs * 1e9) as u64;
    let mut next_arrival = 0u64;
    loop {
        let next_done = done.peek().map(|Reverse((at, _))| *at);
        if next_arrival >= end && next_done.is_none() {
            break;
        }
        if next_done.is_some_and(|d| d <= next_arrival) || next_arrival >= end {
            let Some(Reverse((at, id))) = done.pop() else {
                break;
            };
            let t = at;
            clock.store(t, Ordering::Relaxed);
            drop(permits[id].take());
            busy -= 1;
            if let Some(id) = queue.pop_front() {
                busy += 1;
                done.push(Reverse((t + (2.5e6 + 5e6 * rng.unit()) as u64, id)));
            }
            continue;
        }
        let t = next_arrival;
        clock.store(t, Ordering::Relaxed);
        next_arrival = t + (-(1.0 - rng.unit()).ln() / rate * 1e9) as u64;
        let (class, i) = if rng.unit() < critical {
            (Class::Critical, 0)
        } else {
            (Class::Sheddable, 1)
        };
        out[i].offered += 1;
        match g.try_acquire_as(class, None) {
            Err(_) => out[i].refused += 1,
            Ok(p) => {
                let id = permits.len();
                permits.push(Some(p));
                if busy < 8 {
                    busy += 1;
                    done.push(Reverse((t + (2.5e6 + 5e6 * rng.unit()) as u64, id)));
                } else {
                    queue.push_back(id);
                }
            }
        }
    }
    out
}

#[test]
fn under_overload_sheddable_traffic_gives_way_so_critical_requests_are_not_refused() {
    // 3x the capacity, critical alone 90 % of it: the configured shares alone leave sheddable
    // requests holding slots a critical burst needs (critical refused 1.6-1.9 %); with
    // reservations, 0.5-0.6 % (critical alone, without sheddable traffic: 0.2-0.3 %).
    for seed in 1..=3 {
        let off = overload(
            Reserve {
                enabled: false,
                ..Reserve::default()
            },
            4800.0,
            0.3,
            20.0,
            seed,
        );
        let on = overload(Reserve::default(), 4800.0, 0.3, 20.0, seed);
        let pct = |s: Served| 100.0 * s.refused as f64 / s.offered.max(1) as f64;
        eprintln!(
            "seed {seed}: critical refused {:.2} % without reservations, {:.2} % with; sheddable refused {:.1} % / {:.1} %",
            pct(off[0]),
            pct(on[0]),
            pct(off[1]),
            pct(on[1])
        );
        assert!(pct(on[0]) < 1.0, "seed {seed}: {on:?}");
        assert!(
            pct(on[0]) * 2.0 < pct(off[0]),
            "seed {seed}: {off:?} vs {on:?}"
        );
        // Sheddable still gets what critical leaves: the capacity is not held idle.
        assert!(on[1].refused < on[1].offered, "seed {seed}: {on:?}");
    }
}
