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
    Gate::new(Arc::new(c), &Config::default(), Arc::new(Instant::now))
        .unwrap_or_else(|e| panic!("{e}"))
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
    let gt = gate();
    g.bench_function("Gate::try_acquire + drop", |b| {
        b.iter(|| drop(black_box(gt.try_acquire())))
    });
    // For reference: the gate reads its clock twice per admitted request (admission and
    // completion), so this is part of the layer's cost.
    g.bench_function("Instant::now (reference)", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended try_acquire + drop, per thread");
    for threads in [1usize, 2, 4] {
        g.bench_function(format!("{threads} threads"), |b| {
            b.iter_custom(|iters| {
                let gt = gate();
                let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        let (gt, barrier) = (gt.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            for _ in 0..iters {
                                drop(black_box(gt.try_acquire()));
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let t = Instant::now();
                for h in hs {
                    h.join().unwrap_or_else(|_| panic!("bench thread panicked"));
                }
                // Every thread did `iters`: the wall time is the per-thread time.
                t.elapsed()
            })
        });
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
