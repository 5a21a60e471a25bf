//! Agent-side counters (kernel-side ones live in the `COUNTERS` map).
use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

#[derive(Default)]
pub struct Stats {
    pub events_received: AtomicU64,
    pub records_written: AtomicU64,
    decode_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Classification outcomes (reads, cache hits, rotations, unparsed
    /// reasons, skipped self/excluded events).
    classify: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn decode_error(&self, reason: &'static str) {
        if let Ok(mut m) = self.decode_errors.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn decode_errors(&self) -> BTreeMap<&'static str, u64> {
        self.decode_errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn count(&self, what: &'static str) {
        if let Ok(mut m) = self.classify.lock() {
            *m.entry(what).or_default() += 1;
        }
    }

    pub fn classify_counts(&self) -> BTreeMap<&'static str, u64> {
        self.classify.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
