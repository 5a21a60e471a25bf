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
    /// Kernel candidates no watch rule confirmed (name-gate false positives).
    pub candidates_rejected: AtomicU64,
    /// Inodes in the kernel's watch list.
    pub watched_inodes: AtomicU64,
    /// Process table (identity): entries now, and removals since start.
    pub process_table_size: AtomicU64,
    pub process_table_evicted: AtomicU64,
    pub process_table_reconciled: AtomicU64,
    /// Environment credentials found at exec.
    pub env_credentials: AtomicU64,
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

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }
}
