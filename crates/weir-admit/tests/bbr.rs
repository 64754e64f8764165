//! The BBR rule in front of a simulated server: `W` slots, a FIFO queue behind them, a fixed
//! service time, arrivals at a fixed rate per millisecond that the limit admits or rejects
//! (as the gate does: no queue in front). Time is simulated (1 ms ticks), so nothing here
//! depends on the machine's speed.

#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use weir_admit::{Bbr, BbrConfig, BbrMode, Controller, Outcome, Sample};

/// A server of `slots` slots and a FIFO queue, driven tick by tick.
struct Server {
    bbr: Bbr,
    t0: Instant,
    now_us: u64,
    slots: usize,
    service_us: u64,
    in_flight: u32,
    /// (admitted at, in flight then), waiting for a slot.
    waiting: VecDeque<(u64, u32)>,
    /// (done at, admitted at, in flight then).
    running: BinaryHeap<Reverse<(u64, u64, u32)>>,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    completed: u64,
    rejected: u64,
    max_latency_us: u64,
    latency_sum_us: u64,
    limits: Vec<u32>,
    drains: u64,
}

const TICK_US: u64 = 1000;

impl Server {
    fn new(cfg: BbrConfig, slots: usize, service: Duration) -> Server {
        Server {
            bbr: Bbr::new(cfg, None).unwrap(),
            t0: Instant::now(),
            now_us: 0,
            slots,
            service_us: service.as_micros() as u64,
            in_flight: 0,
            waiting: VecDeque::new(),
            running: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    /// One millisecond: completions, queued requests onto free slots, `arrivals` new ones.
    fn tick(&mut self, arrivals: u32) {
        while let Some(&Reverse((done, admitted, in_flight))) = self.running.peek() {
            if done > self.now_us {
                break;
            }
            self.running.pop();
            self.in_flight -= 1;
            let latency = done - admitted;
            self.stats.completed += 1;
            self.stats.max_latency_us = self.stats.max_latency_us.max(latency);
            self.stats.latency_sum_us += latency;
            self.bbr.on_sample(Sample {
                latency: Duration::from_micros(latency),
                in_flight,
                outcome: Outcome::Success,
                finished: self.at(done),
            });
        }
        while self.running.len() < self.slots {
            let Some((admitted, in_flight)) = self.waiting.pop_front() else {
                break;
            };
            self.running.push(Reverse((
                self.now_us + self.service_us,
                admitted,
                in_flight,
            )));
        }
        for _ in 0..arrivals {
            if self.in_flight < self.bbr.limit() {
                self.in_flight += 1;
                if self.running.len() < self.slots {
                    self.running.push(Reverse((
                        self.now_us + self.service_us,
                        self.now_us,
                        self.in_flight,
                    )));
                } else {
                    self.waiting.push_back((self.now_us, self.in_flight));
                }
            } else {
                self.stats.rejected += 1;
                self.bbr.on_reject(self.at(self.now_us));
            }
        }
        self.stats.limits.push(self.bbr.limit());
        if self.bbr.state().mode == BbrMode::Drain {
            self.stats.drains += 1;
        }
        self.now_us += TICK_US;
    }

    /// Runs `ms` ticks and returns their stats.
    fn run(&mut self, ms: u64, arrivals: u32) -> Stats {
        self.stats = Stats::default();
        for _ in 0..ms {
            self.tick(arrivals);
        }
        std::mem::take(&mut self.stats)
    }
}

/// The Kratos formula alone (no burst headroom): the exact figures below are its.
fn cfg() -> BbrConfig {
    BbrConfig {
        min_limit: 1,
        initial_limit: 5,
        burst_z: 0.0,
        ..BbrConfig::default()
    }
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

const W: usize = 20;

#[test]
fn under_3x_overload_the_limit_converges_to_the_servers_slots_and_the_queue_stays_bounded() {
    // 20 slots × 10 ms = 2000 requests/s; 6 arrivals per ms is 3× that.
    let mut s = Server::new(cfg(), W, Duration::from_millis(10));
    let climb = s.run(5_000, 6);
    assert!(climb.rejected > 0);
    // Six windows: without the drain buckets, the queue would inflate min_rt once per
    // window and the limit would grow by the gain each time.
    let steady = s.run(60_000, 6);
    let lo = *steady.limits.iter().min().unwrap();
    let hi = *steady.limits.iter().max().unwrap();
    let avg = mean(&steady.limits);
    eprintln!(
        "limit min {lo} mean {avg:.2} max {hi}; completed {}/60 s; latency mean {} µs max {} µs; drain ticks {}; {:?}",
        steady.completed,
        steady.latency_sum_us / steady.completed,
        steady.max_latency_us,
        steady.drains,
        s.bbr.explain()
    );
    // Probe buckets hold about 1.25 × W, drain buckets about W ÷ 1.25.
    assert!((16..=W as u32).contains(&lo), "min {lo}");
    assert!((25..=28).contains(&hi), "max {hi}");
    assert!(avg > W as f64 && avg < 1.3 * W as f64, "mean {avg}");
    // The server is kept busy: at least 95% of its capacity completes.
    assert!(
        steady.completed >= 2000 * 60 * 95 / 100,
        "{}",
        steady.completed
    );
    // The queue stays about a quarter of the capacity: on average a request waits at most a
    // quarter of a service time, and none waits a whole one (the queue never reaches W).
    let mean_latency = steady.latency_sum_us / steady.completed;
    assert!(mean_latency <= 12_500, "{mean_latency}");
    assert!(steady.max_latency_us < 20_000, "{}", steady.max_latency_us);
    let state = s.bbr.state();
    let min_rt = state.min_rt.unwrap();
    assert!(min_rt <= Duration::from_micros(10_500), "{min_rt:?}");
    assert!(steady.drains > 0);
}

#[test]
fn below_capacity_nothing_is_rejected_and_no_bucket_drains() {
    // 1 arrival per ms is half the capacity: 10 requests in flight.
    let cfg = BbrConfig {
        initial_limit: 32,
        burst_z: 0.0,
        ..BbrConfig::default()
    };
    let mut s = Server::new(cfg, W, Duration::from_millis(10));
    let run = s.run(30_000, 1);
    assert_eq!(run.rejected, 0);
    assert_eq!(run.drains, 0);
    // The limit follows the load: 1000/s × 10 ms × 1.25.
    assert_eq!(s.bbr.limit(), 13);
}

#[test]
fn min_rt_follows_a_faster_service_at_once_and_a_slower_one_after_the_window() {
    let mut s = Server::new(cfg(), W, Duration::from_millis(10));
    s.run(20_000, 6);
    // The service gets twice as fast: min_rt and max_pass follow within a second, and the
    // limit (the server's slots) stays where it was.
    s.service_us = 5_000;
    let fast = s.run(15_000, 12);
    let st = s.bbr.state();
    eprintln!("fast: {st:?} mean limit {:.2}", mean(&fast.limits[1000..]));
    assert!(st.min_rt.unwrap() <= Duration::from_micros(5_250), "{st:?}");
    let avg = mean(&fast.limits[1000..]);
    assert!(avg > W as f64 && avg < 1.3 * W as f64, "{avg}");
    // Back to 10 ms: the window still remembers 5 ms for its length ...
    s.service_us = 10_000;
    let slow = s.run(9_000, 6);
    let st = s.bbr.state();
    eprintln!("slow, 9 s: {st:?} mean limit {:.2}", mean(&slow.limits));
    assert!(st.min_rt.unwrap() <= Duration::from_micros(5_250), "{st:?}");
    // ... then forgets it: min_rt is the new service time, without the limit having dropped.
    let later = s.run(6_000, 6);
    let st = s.bbr.state();
    eprintln!("slow, 15 s: {st:?} mean limit {:.2}", mean(&later.limits));
    let rt = st.min_rt.unwrap();
    assert!(
        rt >= Duration::from_micros(9_900) && rt <= Duration::from_micros(10_500),
        "{st:?}"
    );
    for run in [&slow, &later] {
        let lo = *run.limits.iter().min().unwrap();
        assert!(lo >= 16, "the limit never fell below the drain level: {lo}");
        let avg = mean(&run.limits);
        assert!(avg > W as f64 && avg < 1.3 * W as f64, "{avg}");
    }
}

/// A server the simulator runs with Poisson arrivals and lognormal service times.
fn poisson_server(load: f64) -> weir_admit::sim::SimConfig {
    weir_admit::sim::SimConfig {
        workers: 24,
        service_mean_ms: 6.0,
        slo_ms: 15.0,
        load: vec![weir_admit::sim::LoadStep { at_s: 0.0, load }],
        duration_s: 25.0,
        warmup_s: 5.0,
        ..weir_admit::sim::SimConfig::default()
    }
}

fn run_sim(load: f64, burst_z: f64) -> weir_admit::sim::SimResult {
    run_sim_from(load, burst_z, BbrConfig::default().initial_limit)
}

fn run_sim_from(load: f64, burst_z: f64, initial_limit: u32) -> weir_admit::sim::SimResult {
    let cfg = BbrConfig {
        burst_z,
        initial_limit,
        min_limit: 1,
        ..BbrConfig::default()
    };
    let bbr = std::sync::Arc::new(Bbr::new(cfg, None).unwrap_or_else(|e| panic!("{e}")));
    weir_admit::sim::Sim::new(poisson_server(load))
        .unwrap_or_else(|e| panic!("{e}"))
        .run(bbr)
}

#[test]
fn burst_headroom_admits_poisson_bursts_below_capacity_and_still_sheds_overload() {
    // Half load, random arrivals: the Kratos formula alone tracks the mean in-flight count
    // and refuses its bursts; the headroom admits them.
    let bare = run_sim(0.5, 0.0);
    let with = run_sim(0.5, 2.0);
    let share = |r: &weir_admit::sim::SimResult| r.rejected as f64 / r.offered as f64;
    eprintln!(
        "0.5×: bare rejects {:.2}%, with headroom {:.2}%",
        100.0 * share(&bare),
        100.0 * share(&with)
    );
    assert!(share(&with) < 0.01, "{:.4}", share(&with));
    assert!(
        share(&bare) > 2.0 * share(&with).max(0.001),
        "{:.4}",
        share(&bare)
    );
    // Started far too low (refusing most of the load during warm-up), it does not stay
    // trapped refusing bursts once the load turns out to be light.
    let low_start = run_sim_from(0.5, 2.0, 3);
    eprintln!("0.5× from a limit of 3: {:.2}%", 100.0 * share(&low_start));
    assert!(share(&low_start) < 0.01, "{:.4}", share(&low_start));
    // Three times the capacity: the overload is still refused and goodput holds.
    let over = run_sim(3.0, 2.0);
    eprintln!(
        "3×: goodput {:.3} of capacity, p99 {:.1} ms, rejected {:.1}%",
        over.goodput_share(),
        over.p99_ms,
        100.0 * share(&over)
    );
    assert!(share(&over) > 0.5, "{:.3}", share(&over));
    assert!(over.goodput_share() > 0.85, "{:.3}", over.goodput_share());
    assert_eq!(over.timed_out, 0);
}
