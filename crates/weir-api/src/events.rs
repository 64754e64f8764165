//! `/api/events`: live decisions as server-sent events, bounded.
//!
//! One forwarder task subscribes to the recorder and hands every record to each open stream
//! through that stream's own bounded queue ([`Limits::event_buffer`](crate::Limits)). A
//! client that does not read fills its queue; further records are dropped for it alone and
//! counted, and when it reads again it first gets a `lagged` event with the number missed
//! (the dashboard then backfills from `/api/history`). So a client that never reads holds at
//! most `event_buffer` records, whatever is published, and at most
//! [`Limits::max_event_streams`](crate::Limits) streams are open at once (503 past that).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use tokio::sync::{broadcast, mpsc};
use weir_recorder::{Recorder, StepRecord};

use crate::AppState;
use crate::views::error;

/// The live event streams' figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventStats {
    /// Streams open now.
    pub streams: usize,
    /// Records queued for all open streams, not yet sent.
    pub buffered: usize,
    /// Records dropped for a stream whose queue was full, since start.
    pub dropped: u64,
    /// Streams refused because too many were open, since start.
    pub refused: u64,
    /// Records the forwarder has handed out, since start.
    pub forwarded: u64,
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Arc<StepRecord>>,
    missed: Arc<AtomicU64>,
}

#[derive(Default)]
struct HubState {
    clients: Vec<Client>,
    next_id: u64,
    forwarding: bool,
    /// The recorder closed: no more records will come.
    closed: bool,
}

/// Fans the recorder's records out to the open streams.
pub(crate) struct EventHub {
    recorder: Recorder,
    max_streams: usize,
    buffer: usize,
    state: Mutex<HubState>,
    dropped: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
}

/// One open stream's end of the hub; leaving it closes the stream's slot.
struct Subscription {
    hub: Arc<EventHub>,
    id: u64,
    rx: mpsc::Receiver<Arc<StepRecord>>,
    missed: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().clients.retain(|c| c.id != self.id);
    }
}

impl EventHub {
    pub(crate) fn new(recorder: Recorder, max_streams: usize, buffer: usize) -> Self {
        EventHub {
            recorder,
            max_streams,
            buffer: buffer.max(1),
            state: Mutex::new(HubState::default()),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves the client list consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> EventStats {
        let st = self.lock();
        EventStats {
            streams: st.clients.len(),
            buffered: st
                .clients
                .iter()
                .map(|c| self.buffer.saturating_sub(c.tx.capacity()))
                .sum(),
            dropped: self.dropped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }

    /// A new stream's slot, or `None` when `max_streams` are open.
    fn join(self: &Arc<Self>) -> Option<Subscription> {
        let mut st = self.lock();
        if st.clients.len() >= self.max_streams {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let missed = Arc::new(AtomicU64::new(0));
        let id = st.next_id;
        st.next_id += 1;
        if !st.closed {
            st.clients.push(Client {
                id,
                tx,
                missed: missed.clone(),
            });
            if !st.forwarding {
                st.forwarding = true;
                // Subscribed before the caller reads the latest record: nothing falls between.
                let rx = self.recorder.subscribe();
                tokio::spawn(forward(Arc::downgrade(self), rx));
            }
        }
        // When closed, `tx` is dropped here and the stream ends after the latest record.
        Some(Subscription {
            hub: self.clone(),
            id,
            rx,
            missed,
        })
    }

    /// Hands `rec` to every open stream that has room; counts a miss for the others.
    fn publish(&self, rec: &Arc<StepRecord>) {
        let mut st = self.lock();
        st.clients.retain(|c| match c.tx.try_send(rec.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.missed.fetch_add(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    fn missed_all(&self, n: u64) {
        for c in &self.lock().clients {
            c.missed.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.forwarding = false;
        // Dropping the senders ends every stream once it has sent what it holds.
        st.clients.clear();
    }
}

async fn forward(hub: Weak<EventHub>, mut rx: broadcast::Receiver<Arc<StepRecord>>) {
    loop {
        let next = rx.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match next {
            Ok(rec) => hub.publish(&rec),
            Err(broadcast::error::RecvError::Lagged(n)) => hub.missed_all(n),
            Err(broadcast::error::RecvError::Closed) => {
                hub.close();
                return;
            }
        }
    }
}

fn decision_event(rec: &StepRecord) -> Option<Event> {
    match Event::default()
        .event("decision")
        .id(rec.seq.to_string())
        .json_data(rec)
    {
        Ok(ev) => Some(ev),
        Err(e) => {
            tracing::warn!(error = %e, seq = rec.seq, "cannot serialise record for the event stream");
            None
        }
    }
}

pub(crate) async fn get_events(State(st): State<AppState>) -> Response {
    let Some(sub) = st.events.join() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many live event streams open (at most {}); retry later",
                st.events.max_streams
            ),
        );
    };
    let first = st.recorder.latest().and_then(|r| decision_event(&r));
    let live = stream::unfold(sub, |mut sub| async move {
        loop {
            let missed = sub.missed.swap(0, Ordering::Relaxed);
            if missed > 0 {
                let ev = Event::default().event("lagged").data(missed.to_string());
                return Some((ev, sub));
            }
            let rec = sub.rx.recv().await?;
            if let Some(ev) = decision_event(&rec) {
                return Some((ev, sub));
            }
        }
    });
    let events = stream::iter(first).chain(live).map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
