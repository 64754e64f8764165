//! A bounded ring of recent observations and decisions, for trends and for the dashboard.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Decision, Observation};

/// One control interval: what was seen, what was decided, how it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The observation the decision was based on.
    pub observation: Observation,
    /// The decision applied.
    pub decision: Decision,
    /// Reward of the previous interval's decision, known at this step (if any).
    pub reward: Option<f64>,
}

/// Most recent records, oldest first, capped in length.
#[derive(Debug, Clone, Default)]
pub struct History {
    records: VecDeque<Record>,
    capacity: usize,
}

impl History {
    /// An empty history keeping at most `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        History {
            records: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Appends a record, dropping the oldest if full.
    pub fn push(&mut self, record: Record) {
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// The latest record.
    pub fn last(&self) -> Option<&Record> {
        self.records.back()
    }

    /// Records, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Record> + ExactSizeIterator {
        self.records.iter()
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets everything (a new episode).
    pub fn clear(&mut self) {
        self.records.clear();
    }
}
