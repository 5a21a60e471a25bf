//! The sink thread: inputs through the pipeline, records into the store,
//! and from there (once committed) to the JSON lines output and the OTLP
//! exporter; heartbeats, pruning, coverage and findings on its cadence.
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Input, Pipeline, findings, health};
use crate::{
    export::jsonl::JsonLines,
    model::Emit,
    stats::Stats,
    store::{self, COMMIT_ROWS, Store},
};

/// Where records go: the store (which gives each its id and JSON text),
/// then, once committed, the JSON lines output: a line is written only
/// for a record the database holds.
pub(super) struct Out<'a> {
    pub(super) sink: &'a mut JsonLines,
    pub(super) store: &'a mut Store,
    pub(super) stats: &'a Stats,
    /// Committed records' text, between the store and the sink.
    pub(super) lines: Vec<String>,
    /// The agent's own stats lines (not stored): written once the records
    /// before them are.
    pub(super) unstored: Vec<String>,
    /// Told after each commit: the OTLP exporter, which delivers what is
    /// committed.
    pub(super) wake: Option<&'a tokio::sync::Notify>,
}

impl Out<'_> {
    /// A failed store write: counted; the store logs the outage and keeps
    /// the records for a retry.
    fn store_error(&mut self, e: &store::StoreError) {
        Stats::add(&self.stats.store_errors, 1);
        tracing::debug!(error = %e, "store write failed");
    }

    fn write(&mut self, records: &mut Vec<Emit>) {
        for mut record in records.drain(..) {
            match &record {
                // Counters, not observations: JSON lines, and OTLP metrics.
                Emit::Stats(_) => self.unstored.extend(record.json()),
                _ => {
                    if let Err(e) = self.store.append(&mut record) {
                        self.store_error(&e);
                    }
                }
            }
            Stats::add(&self.stats.records_written, 1);
        }
    }

    /// Usage deltas into the store; the resulting `nhi.usage` records out.
    fn usage(&mut self, pipeline: &mut Pipeline, deltas: &mut Vec<crate::correlate::UsageDelta>) {
        pipeline.drain_usage(deltas);
        let mut records = Vec::with_capacity(deltas.len());
        for d in deltas.drain(..) {
            match self.store.upsert_usage(&d) {
                Ok(Some(row)) => records.push(Emit::from(store::usage_record(&row))),
                Ok(None) => {}
                Err(e) => self.store_error(&e),
            }
        }
        // The totals now count every access record so far (a restart after
        // a crash recounts the ones committed after this).
        if let Err(e) = self.store.usage_counted() {
            self.store_error(&e);
        }
        self.write(&mut records);
    }

    /// The `nhi.usage` records of usages the store recounted at start
    /// (after a crash), once their totals are committed.
    fn recounted(&mut self) {
        let mut records: Vec<Emit> = self
            .store
            .take_recounted()
            .iter()
            .map(|u| Emit::from(store::usage_record(u)))
            .collect();
        self.write(&mut records);
    }

    /// Commits when due (or `force`); the JSON lines follow each commit, and
    /// the exporter hears of it.
    fn commit(&mut self, force: bool) -> std::io::Result<()> {
        match self.store.maybe_commit(force) {
            Ok(true) => {
                self.release()?;
                if let Some(w) = self.wake {
                    w.notify_one();
                }
            }
            Ok(false) => self.release()?,
            Err(e) => self.store_error(&e),
        }
        Ok(())
    }

    /// Committed records to the JSON lines output, then the stats lines
    /// once no record before them waits; flushed.
    fn release(&mut self) -> std::io::Result<()> {
        self.store.take_committed(&mut self.lines);
        let stored = self.lines.len() as u64;
        for line in self.lines.drain(..) {
            self.sink.write_raw(&line)?;
        }
        Stats::add(&self.stats.records_stored, stored);
        if self.store.unreleased() == 0 {
            for line in self.unstored.drain(..) {
                self.sink.write_raw(&line)?;
            }
        }
        Stats::set(&self.stats.store_queued, self.store.unreleased() as u64);
        self.stats.set_store_drops(&self.store.drops);
        if stored > 0 || self.store.unreleased() == 0 {
            self.sink.flush()?;
            Stats::set(&self.stats.jsonl_lines_lost, self.sink.lines_lost);
        }
        Ok(())
    }
}

/// Heartbeats (coverage, run alive) and pruning, at most this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often freed heap is handed back to the system: after a burst
/// (thousands of processes, a batch of credential reads) the allocator
/// otherwise keeps its peak.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// The sink thread: inputs through the pipeline, records to the store and
/// the JSON lines output, committed in batches (at most [`COMMIT_ROWS`]
/// rows or [`store::COMMIT_INTERVAL`] old), never per event.
pub(super) fn sink_loop(
    runtime: &tokio::runtime::Handle,
    mut rx: mpsc::Receiver<Input>,
    pipeline: &mut Pipeline,
    out: &mut Out<'_>,
    findings: &mut findings::Findings,
    attached: &std::sync::OnceLock<(std::time::SystemTime, Vec<&'static str>)>,
    health: &health::Health,
) -> std::io::Result<()> {
    let mut records = Vec::new();
    let mut emitted = Vec::new();
    let mut deltas = Vec::new();
    let mut last_heartbeat = Instant::now();
    let mut last_trim = Instant::now();
    let result = (|| {
        loop {
            // Wait for input; with a transaction open, only until it is due.
            let next = match out.store.commit_due_in() {
                None => rx.blocking_recv().map(Some),
                Some(due) => {
                    match runtime.block_on(async { tokio::time::timeout(due, rx.recv()).await }) {
                        Ok(Some(input)) => Some(Some(input)),
                        Ok(None) => None,
                        Err(_elapsed) => Some(None),
                    }
                }
            };
            let Some(input) = next else { break };
            health.beat();
            if let Some(input) = input {
                pipeline.on_input(input, &mut emitted);
                out.write(&mut emitted);
                // What is already queued, up to one transaction's worth.
                while out.store.pending_rows() < COMMIT_ROWS {
                    let Ok(input) = rx.try_recv() else { break };
                    pipeline.on_input(input, &mut emitted);
                    out.write(&mut emitted);
                }
            }
            if pipeline.usage_due() {
                out.usage(pipeline, &mut deltas);
            }
            out.recounted();
            // Once the store can take it (a start on a full disk waits).
            if !out.store.is_watching()
                && !out.store.is_failing()
                && let Some((since, sensors)) = attached.get()
            {
                let counters = pipeline.counters();
                if let Err(e) = out
                    .store
                    .watching(*since, &counters)
                    .and_then(|()| out.store.set_sensors(sensors))
                {
                    out.store_error(&e);
                }
                findings.watching(*since, sensors.clone(), &counters);
                records.extend(findings.coverage(out.store, &counters, "up"));
                out.write(&mut records);
            }
            if last_heartbeat.elapsed() >= HEARTBEAT {
                last_heartbeat = Instant::now();
                if let Err(e) = out.store.heartbeat(&pipeline.counters()) {
                    out.store_error(&e);
                }
                if let Err(e) = out.store.prune(false) {
                    out.store_error(&e);
                }
                Stats::set(&out.stats.store_bytes, out.store.size_bytes());
                Stats::set(&out.stats.store_dropped, out.store.dropped);
            }
            if findings.coverage_due() {
                records.extend(findings.coverage(out.store, &pipeline.counters(), "up"));
                out.write(&mut records);
            }
            if out.store.is_watching() && findings.evaluation_due() {
                if let Err(e) = findings.evaluate(out.store, &mut records) {
                    out.store_error(&e);
                }
                out.write(&mut records);
            }
            if last_trim.elapsed() >= TRIM_EVERY {
                last_trim = Instant::now();
                crate::alloc::release_free_memory();
            }
            out.commit(false)?;
        }
        pipeline.finish(&mut emitted);
        out.write(&mut emitted);
        out.usage(pipeline, &mut deltas);
        // Last judgement on what this run saw, and its last interval.
        if out.store.is_watching() {
            if let Err(e) = findings.evaluate(out.store, &mut records) {
                out.store_error(&e);
            }
            records.extend(findings.coverage(out.store, &pipeline.counters(), "stopping"));
            out.write(&mut records);
        }
        out.commit(true)?;
        if let Err(e) = out.store.close(&pipeline.counters()) {
            out.store_error(&e);
        }
        // Whatever the store could not take is counted (`close`): the
        // stats lines go out regardless.
        out.store.take_committed(&mut out.lines);
        out.release()?;
        for line in out.unstored.drain(..) {
            out.sink.write_raw(&line)?;
        }
        let flushed = out.sink.flush();
        Stats::set(&out.stats.jsonl_lines_lost, out.sink.lines_lost);
        flushed
    })();
    match result {
        // A closed stdout (`| head`) is the reader of our output leaving.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            tracing::info!("output closed");
            Ok(())
        }
        other => other,
    }
}
