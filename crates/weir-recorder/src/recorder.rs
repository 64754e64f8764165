//! The [`Recorder`]: a shared, cheap-to-clone sink for [`StepRecord`]s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::record::{Actuation, ErrorInfo, Setup, StepRecord};

/// Records kept for `/api/history` unless configured otherwise.
pub const DEFAULT_HISTORY: usize = 2000;

/// Records a slow live subscriber may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 256;

/// Where the latest error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorOrigin {
    /// Reading the cluster's metrics.
    Source,
    /// Applying weights.
    Actuator,
    /// An operator command the controller refused.
    Command,
    /// Saving the learned policy's state (the previous state stays on disk).
    StateSave,
}

/// The most recent error, for `/api/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    /// Where it came from.
    pub origin: ErrorOrigin,
    /// Controller clock when it happened (seconds).
    pub at_s: f64,
    /// Record sequence number it belongs to, if any.
    pub seq: Option<u64>,
    /// The error.
    #[serde(flatten)]
    pub error: ErrorInfo,
}

struct State {
    ring: VecDeque<Arc<StepRecord>>,
    capacity: usize,
    last_error: Option<LastError>,
    recorded: u64,
    setup: Option<Arc<Setup>>,
    /// `None` once closed: live streams end.
    live: Option<broadcast::Sender<Arc<StepRecord>>>,
}

struct Inner {
    state: Mutex<State>,
    metrics: Metrics,
}

/// History ring, latest state, live stream and metrics of one controller.
///
/// Cloning is cheap (an `Arc`); every clone sees the same data. The controller writes with
/// [`Recorder::record`], the HTTP API and the demo console read.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(DEFAULT_HISTORY)
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Recorder")
            .field("held", &s.ring.len())
            .field("capacity", &s.capacity)
            .field("recorded", &s.recorded)
            .finish()
    }
}

impl Recorder {
    /// A recorder keeping the last `history` records (at least 1).
    pub fn new(history: usize) -> Self {
        let capacity = history.max(1);
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        Recorder {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    ring: VecDeque::with_capacity(capacity.min(4096)),
                    capacity,
                    last_error: None,
                    recorded: 0,
                    setup: None,
                    live: Some(live),
                }),
                metrics: Metrics::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the ring half-written in a way that
        // matters to readers, so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores one interval's record: history, latest state, metrics, last error, and the
    /// live stream.
    pub fn record(&self, rec: StepRecord) {
        self.inner.metrics.observe(&rec);
        let error = match (&rec.source_error, &rec.actuation) {
            (_, Actuation::Failed { error }) => Some((ErrorOrigin::Actuator, error.clone())),
            (Some(error), _) => Some((ErrorOrigin::Source, error.clone())),
            _ => None,
        };
        let rec = Arc::new(rec);
        let live = {
            let mut s = self.lock();
            if s.ring.len() == s.capacity {
                s.ring.pop_front();
            }
            s.ring.push_back(Arc::clone(&rec));
            s.recorded += 1;
            if let Some((origin, error)) = error {
                s.last_error = Some(LastError {
                    origin,
                    at_s: rec.at_s,
                    seq: Some(rec.seq),
                    error,
                });
            }
            s.live.clone()
        };
        if let Some(live) = live {
            // No subscriber is not an error.
            let _ = live.send(rec);
        }
    }

    /// Describes the run (objectives, interval): shown by `/api/state` and exported as
    /// metrics. Replaces an earlier description.
    pub fn set_setup(&self, setup: Setup) {
        self.inner.metrics.describe(&setup);
        self.lock().setup = Some(Arc::new(setup));
    }

    /// The run's description, once set.
    pub fn setup(&self) -> Option<Arc<Setup>> {
        self.lock().setup.clone()
    }

    /// Ends every live stream (and makes new ones end at once), so that an HTTP server can
    /// shut down without waiting for event-stream clients. Recording still works.
    pub fn close(&self) {
        self.lock().live = None;
    }

    /// Notes an error that is not part of a record (e.g. a refused operator command).
    pub fn note_error(&self, origin: ErrorOrigin, at_s: f64, error: ErrorInfo) {
        self.lock().last_error = Some(LastError {
            origin,
            at_s,
            seq: None,
            error,
        });
    }

    /// Notes a failed save of the policy's state: `/api/state`'s last error (at the latest
    /// decision's time) and `weir_state_save_errors_total`.
    pub fn note_save_error(&self, message: impl Into<String>) {
        self.inner.metrics.state_save_failed();
        let at_s = self.latest().map_or(0.0, |r| r.at_s);
        self.note_error(ErrorOrigin::StateSave, at_s, ErrorInfo::new("io", message));
    }

    /// The latest record, if any.
    pub fn latest(&self) -> Option<Arc<StepRecord>> {
        self.lock().ring.back().cloned()
    }

    /// The last `limit` records (all held when `None`), oldest first.
    pub fn history(&self, limit: Option<usize>) -> Vec<Arc<StepRecord>> {
        let s = self.lock();
        let n = limit.map_or(s.ring.len(), |l| l.min(s.ring.len()));
        s.ring.iter().skip(s.ring.len() - n).cloned().collect()
    }

    /// The most recent error.
    pub fn last_error(&self) -> Option<LastError> {
        self.lock().last_error.clone()
    }

    /// Records received since the recorder was created (not capped by the ring).
    pub fn recorded(&self) -> u64 {
        self.lock().recorded
    }

    /// Whether at least one decision has been recorded (readiness).
    pub fn is_ready(&self) -> bool {
        self.recorded() > 0
    }

    /// A live feed of every record from now on. A subscriber that falls more than a few
    /// hundred records behind gets [`broadcast::error::RecvError::Lagged`] and continues.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StepRecord>> {
        match &self.lock().live {
            Some(live) => live.subscribe(),
            // Closed: a receiver whose sender is already gone.
            None => broadcast::channel(1).1,
        }
    }

    /// Weir's metrics in the OpenMetrics text format.
    pub fn encode_metrics(&self) -> String {
        self.inner.metrics.encode()
    }
}
