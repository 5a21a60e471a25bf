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
    /// Records committed to the store, and written to JSON lines.
    pub records_stored: AtomicU64,
    /// Store writes that failed (the records wait in the store's retry
    /// queue: a failed write is not a lost record; losses are in
    /// `store_drops`).
    pub store_errors: AtomicU64,
    /// Records given to the store and not yet written to JSON lines (the
    /// open transaction and, while writes fail, the retry queue).
    pub store_queued: AtomicU64,
    /// Records deleted from the store before they were exported.
    pub store_dropped: AtomicU64,
    /// Size of the database and its WAL, in bytes.
    pub store_bytes: AtomicU64,
    /// Connections the correlator linked to a credential access, and not.
    pub connections_linked: AtomicU64,
    pub connections_unlinked: AtomicU64,
    /// OTLP: records delivered, failed export calls per signal, and the
    /// records still behind the cursor.
    pub exported_records: AtomicU64,
    pub export_failures_logs: AtomicU64,
    pub export_failures_metrics: AtomicU64,
    pub export_backlog: AtomicU64,
    decode_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Credential accesses by `nhi.source` (sum of `nhi.access.count`).
    accesses: Mutex<BTreeMap<String, u64>>,
    /// Losses since start by kind (kernel ring full per sensor, decode).
    drops: Mutex<BTreeMap<&'static str, u64>>,
    /// Classification outcomes (reads, cache hits, rotations, unparsed
    /// reasons, skipped self/excluded events).
    classify: Mutex<BTreeMap<&'static str, u64>>,
    /// Writes the store gave up, by reason (see `store::Store::drops`).
    store_drops: Mutex<BTreeMap<&'static str, u64>>,
    /// Records an OTLP collector refused for good, by reason.
    export_rejected: Mutex<BTreeMap<String, u64>>,
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

    pub fn access(&self, source: &str, n: u64) {
        if let Ok(mut m) = self.accesses.lock() {
            match m.get_mut(source) {
                Some(v) => *v += n,
                None => {
                    m.insert(source.to_owned(), n);
                }
            }
        }
    }

    pub fn accesses(&self) -> BTreeMap<String, u64> {
        self.accesses.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn set_drops(&self, drops: &BTreeMap<&'static str, u64>) {
        if let Ok(mut m) = self.drops.lock() {
            m.clone_from(drops);
        }
    }

    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        self.drops.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn set_store_drops(&self, drops: &BTreeMap<&'static str, u64>) {
        if let Ok(mut m) = self.store_drops.lock() {
            m.clone_from(drops);
        }
    }

    pub fn store_drops(&self) -> BTreeMap<&'static str, u64> {
        self.store_drops.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn export_rejected(&self, reason: &str) {
        if let Ok(mut m) = self.export_rejected.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }

    pub fn export_rejections(&self) -> BTreeMap<String, u64> {
        self.export_rejected.lock().map(|m| m.clone()).unwrap_or_default()
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
