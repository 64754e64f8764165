//! Shared fixtures for Weir's tests, so that every crate builds observations the same way.
//!
//! [`ObsBuilder`] makes a fresh, healthy observation of a primary and N replicas, and lets a
//! test change one thing at a time (a lagging replica, a down replica, stale metrics, a hot
//! primary). [`procs`] starts real Prometheus, HAProxy and Redis processes for end-to-end
//! tests and benchmarks.
//! With the `kube` feature, [`kube_api`] is a fake Kubernetes API server for kube clients.

#[cfg(feature = "kube")]
pub mod kube_api;
pub mod procs;

use weir_core::{Observation, PrimaryObs, ReplicaObs, Signal, Unknown};

/// Builds [`Observation`]s for tests. Defaults: primary CPU 0.3, 4000 reads/s split evenly
/// over the replicas, 300 writes/s, every lag 0.5 s, every signal 5 s old.
#[derive(Debug, Clone)]
pub struct ObsBuilder {
    obs: Observation,
}

impl ObsBuilder {
    /// `replicas` healthy replicas named `replica-1`, `replica-2`, ...
    pub fn new(replicas: usize) -> Self {
        let age = 5.0;
        let per = if replicas > 0 {
            4000.0 / replicas as f64
        } else {
            0.0
        };
        let replicas = (1..=replicas)
            .map(|i| ReplicaObs {
                name: format!("replica-{i}"),
                up: Some(true),
                lag_s: Signal::aged(0.5, age),
                read_qps: Signal::aged(per, age),
                read_p99_ms: Signal::aged(8.0, age),
            })
            .collect();
        ObsBuilder {
            obs: Observation {
                at_s: 100.0,
                primary: PrimaryObs {
                    cpu: Signal::aged(0.3, age),
                    read_qps: Signal::aged(0.0, age),
                    write_qps: Signal::aged(300.0, age),
                    read_p99_ms: Signal::aged(5.0, age),
                },
                replicas,
            },
        }
    }

    /// Sets the observation time.
    pub fn at(mut self, at_s: f64) -> Self {
        self.obs.at_s = at_s;
        self
    }

    /// Sets replica `i`'s lag (0-based index).
    pub fn lag(mut self, i: usize, lag_s: f64) -> Self {
        let age = self.obs.replicas[i].lag_s.age_s.unwrap_or(5.0);
        self.obs.replicas[i].lag_s = Signal::aged(lag_s, age);
        self
    }

    /// Makes replica `i`'s lag unknown (its series vanished).
    pub fn lag_unknown(mut self, i: usize) -> Self {
        self.obs.replicas[i].lag_s = Signal::unknown(Unknown::NoSeries);
        self
    }

    /// Marks replica `i` down.
    pub fn down(mut self, i: usize) -> Self {
        let r = &mut self.obs.replicas[i];
        r.up = Some(false);
        r.lag_s = Signal::unknown(Unknown::TargetDown);
        r.read_qps = Signal::unknown(Unknown::TargetDown);
        r.read_p99_ms = Signal::unknown(Unknown::TargetDown);
        self
    }

    /// Sets primary CPU (0..1) and the reads it serves.
    pub fn primary(mut self, cpu: f64, read_qps: f64) -> Self {
        let age = self.obs.primary.cpu.age_s.unwrap_or(5.0);
        self.obs.primary.cpu = Signal::aged(cpu, age);
        self.obs.primary.read_qps = Signal::aged(read_qps, age);
        self
    }

    /// Sets replica `i`'s served reads.
    pub fn replica_reads(mut self, i: usize, read_qps: f64) -> Self {
        let age = self.obs.replicas[i].read_qps.age_s.unwrap_or(5.0);
        self.obs.replicas[i].read_qps = Signal::aged(read_qps, age);
        self
    }

    /// Sets replica `i`'s read p99, milliseconds.
    pub fn replica_p99(mut self, i: usize, p99_ms: f64) -> Self {
        let age = self.obs.replicas[i].read_p99_ms.age_s.unwrap_or(5.0);
        self.obs.replicas[i].read_p99_ms = Signal::aged(p99_ms, age);
        self
    }

    /// Ages every known signal to `age_s` seconds.
    pub fn aged(mut self, age_s: f64) -> Self {
        let set = |s: &mut Signal| {
            if s.value.is_some() {
                s.age_s = Some(age_s);
            }
        };
        set(&mut self.obs.primary.cpu);
        set(&mut self.obs.primary.read_qps);
        set(&mut self.obs.primary.write_qps);
        set(&mut self.obs.primary.read_p99_ms);
        for r in &mut self.obs.replicas {
            set(&mut r.lag_s);
            set(&mut r.read_qps);
            set(&mut r.read_p99_ms);
        }
        self
    }

    /// Makes every signal unknown (a metrics outage).
    pub fn blank(mut self) -> Self {
        let u = Signal::unknown(Unknown::SourceError);
        self.obs.primary = PrimaryObs {
            cpu: u,
            read_qps: u,
            write_qps: u,
            read_p99_ms: u,
        };
        for r in &mut self.obs.replicas {
            r.up = None;
            r.lag_s = u;
            r.read_qps = u;
            r.read_p99_ms = u;
        }
        self
    }

    /// The observation.
    pub fn build(self) -> Observation {
        self.obs
    }
}
