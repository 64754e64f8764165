//! Per-request overhead of the admission layer (issue 15 goal: < 100 ns uncontended, flat
//! across threads): a ready `service_fn` bare vs behind `Admit`, `Gate::try_acquire` + drop
//! alone, and 1, 2, 4 threads contending on one gate (per-thread time per acquire + release;
//! on a 2-core machine 4 threads share cores, so their wall time also counts waiting for a core).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service};
use weir_admit::{AdmitLayer, Config, Gate, Static};

fn gate() -> Arc<Gate> {
    let c = Static::new(1_000_000).unwrap_or_else(|e| panic!("{e}"));
    Gate::with_system_clock(Arc::new(c), &Config::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Calls `svc` once and polls the (ready) future to completion.
fn once<S>(svc: &mut S, cx: &mut Context<'_>) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let fut = pin!(svc.call(Request::new(())));
    match fut.poll(cx) {
        Poll::Ready(Ok(r)) => r,
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => panic!("the service is always ready"),
    }
}

fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    tower::service_fn(|_req: Request<()>| std::future::ready(Ok(Response::new(()))))
}

fn uncontended(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut g = c.benchmark_group("uncontended");
    let mut bare = inner();
    g.bench_function("bare service_fn", |b| {
        b.iter(|| black_box(once(&mut bare, &mut cx)))
    });
    let mut admit = AdmitLayer::new(gate()).layer(inner());
    g.bench_function("Admit around service_fn", |b| {
        b.iter(|| black_box(once(&mut admit, &mut cx)))
    });
    let mut kept = AdmitLayer::from_static(gate().leak()).layer(inner());
    g.bench_function("Admit around service_fn, gate kept for the process", |b| {
        b.iter(|| black_box(once(&mut kept, &mut cx)))
    });
    // The same with the adaptive controllers: their `on_sample` is part of the cost.
    for spec in [
        weir_admit::ControllerSpec::Bbr(weir_admit::BbrConfig::default()),
        weir_admit::ControllerSpec::Qlearn(weir_admit::QLearnConfig::default()),
    ] {
        let c = spec.build(None).unwrap_or_else(|e| panic!("{e}"));
        let name = c.name();
        let g2 = Gate::with_system_clock(c, &Config::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut svc = AdmitLayer::from_static(g2.leak()).layer(inner());
        g.bench_function(format!("Admit ({name}), gate kept for the process"), |b| {
            b.iter(|| black_box(once(&mut svc, &mut cx)))
        });
    }
    let gt = gate();
    g.bench_function("Gate::try_acquire + drop", |b| {
        b.iter(|| drop(black_box(gt.try_acquire())))
    });
    let st = gate().leak();
    g.bench_function("Gate::try_acquire_static + drop", |b| {
        b.iter(|| {
            drop(black_box(Gate::try_acquire_static(
                st,
                weir_admit::Class::Default,
                None,
            )))
        })
    });
    // For reference: the gate reads its clock twice per admitted request (admission and
    // completion), so this is part of the layer's cost; std's clock for comparison.
    let clock = Gate::with_system_clock(
        Arc::new(Static::new(1).unwrap_or_else(|e| panic!("{e}"))),
        &Config::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("gate clock read (reference)", |b| {
        b.iter(|| black_box(clock.now()))
    });
    g.bench_function("std Instant::now (reference)", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.finish();
}

/// `threads` threads each run `op` `iters` times at once; the wall time from their common start
/// (every thread did `iters`, so it is the per-thread time per `iters` operations).
fn per_thread(threads: usize, iters: u64, op: impl Fn() + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in hs {
        h.join().unwrap_or_else(|_| panic!("bench thread panicked"));
    }
    t.elapsed()
}

fn contended(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU32, Ordering::AcqRel};
    let mut g = c.benchmark_group("contended try_acquire + drop, per thread");
    for threads in [1usize, 2, 4] {
        g.bench_function(
            format!("{threads} threads, gate kept for the process"),
            |b| {
                b.iter_custom(|iters| {
                    let gt = gate().leak();
                    per_thread(threads, iters, move || {
                        drop(black_box(Gate::try_acquire_static(
                            gt,
                            weir_admit::Class::Default,
                            None,
                        )))
                    })
                })
            },
        );
        g.bench_function(format!("{threads} threads, shared gate"), |b| {
            b.iter_custom(|iters| {
                let gt = gate();
                per_thread(threads, iters, move || drop(black_box(gt.try_acquire())))
            })
        });
        // The floor: one shared counter taken and given back, with and without the gate's
        // two clock reads.
        for with_clock in [false, true] {
            let what = if with_clock { " + 2 clock reads" } else { "" };
            g.bench_function(
                format!("{threads} threads, bare atomic add + sub{what} (floor)"),
                |b| {
                    b.iter_custom(|iters| {
                        let clock = gate();
                        let n = Arc::new(AtomicU32::new(0));
                        per_thread(threads, iters, move || {
                            black_box(n.fetch_add(1, AcqRel));
                            if with_clock {
                                black_box(clock.now());
                                black_box(clock.now());
                            }
                            black_box(n.fetch_sub(1, AcqRel));
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = uncontended, contended
}
criterion_main!(benches);
