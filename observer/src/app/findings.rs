//! The agent's findings and coverage records, on the sink thread, on
//! timers: never per event.
//!
//! Input: the store (the facts it aggregates, the stored findings), the
//! at-rest scan's credentials (a channel), the pipeline's loss counters.
//! Output: `nhi.finding` records when a finding opens, changes or
//! resolves, and `nhi.coverage` records at start, every
//! `findings.coverage_interval` and at stop; both written like any record
//! (store first, then JSON lines; OTLP delivers from the store).
//!
//! Invariants: the findings' state is saved in the same transaction as
//! the records that announce it, so a restart neither repeats nor loses
//! a transition.
use std::{
    sync::mpsc,
    time::{Instant, SystemTime},
};

use crate::{
    config::FindingsConfig,
    model::{Emit, rfc3339},
    findings::{self, lifecycle, render},
    store::{Counters, Store, StoreError, evidence::AtRest},
};

/// Longest time one evaluation spends reading records back.
const INGEST_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

pub struct Findings {
    cfg: FindingsConfig,
    host: String,
    at_rest: mpsc::Receiver<Vec<AtRest>>,
    last_eval: Option<Instant>,
    /// Start of the coverage record's interval and the counters then.
    coverage_from: Option<(SystemTime, Counters)>,
    last_coverage: Instant,
    sensors: Vec<&'static str>,
}

impl Findings {
    pub fn new(cfg: FindingsConfig, at_rest: mpsc::Receiver<Vec<AtRest>>) -> Self {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            cfg,
            host,
            at_rest,
            last_eval: None,
            coverage_from: None,
            last_coverage: Instant::now(),
            sensors: Vec::new(),
        }
    }

    pub fn evaluation_due(&self) -> bool {
        self.last_eval.is_none_or(|t| t.elapsed() >= self.cfg.interval)
    }

    /// Evaluates now: ingests what the store learned since the last time,
    /// judges, and returns the records of the transitions (their state is
    /// saved in the open transaction).
    pub fn evaluate(&mut self, store: &mut Store, out: &mut Vec<Emit>) -> Result<(), StoreError> {
        self.last_eval = Some(Instant::now());
        while let Ok(found) = self.at_rest.try_recv() {
            store.add_at_rest(&found)?;
        }
        // A large backlog (a first start on an old database) is read over
        // several evaluations: the sink thread is also the event path.
        let started = Instant::now();
        while store.ingest_records()? == crate::store::evidence::INGEST_BATCH && started.elapsed() < INGEST_BUDGET {}
        store.refresh_files()?;
        let facts = store.facts()?;
        let previous = store.findings()?;
        let now = SystemTime::now();
        let eval = findings::evaluate(&facts, self.cfg.inventory.as_ref(), &self.cfg.settings, now);
        let changes = lifecycle::reconcile(&previous, eval.findings, now);
        store.save_findings(&changes.store)?;
        if !changes.emit.is_empty() {
            tracing::debug!(transitions = changes.emit.len(), "findings changed");
        }
        out.extend(changes.emit.iter().map(|f| Emit::from(render::record(f, &self.host, now))));
        Ok(())
    }

    /// The probes are attached: coverage records start here.
    pub fn watching(&mut self, since: SystemTime, sensors: Vec<&'static str>, counters: &Counters) {
        self.coverage_from = Some((since, counters.clone()));
        self.sensors = sensors;
        self.last_coverage = Instant::now();
    }

    pub fn coverage_due(&self) -> bool {
        self.coverage_from.is_some() && self.last_coverage.elapsed() >= self.cfg.coverage_every
    }

    /// `nhi.coverage` for the interval since the last one (empty at
    /// start), and a new interval from now.
    pub fn coverage(&mut self, store: &Store, counters: &Counters, state: &str) -> Option<Emit> {
        let (from, base) = self.coverage_from.take()?;
        let now = SystemTime::now();
        self.last_coverage = Instant::now();
        self.coverage_from = Some((now, counters.clone()));
        let lost = counters.events_lost.saturating_sub(base.events_lost);
        let decode = counters.decode_errors.saturating_sub(base.decode_errors);
        let by_kind: Vec<String> = counters
            .drops
            .iter()
            .map(|(k, v)| (*k, v.saturating_sub(base.drops.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let state = match state {
            "up" if lost > 0 || !self.sensors.contains(&"network") => "degraded",
            s => s,
        };
        let tracked_since = match store.tracked_since() {
            Ok(Some(t)) => t.min(from),
            _ => from,
        };
        Some(Emit::from(crate::model::records::Coverage {
            time: now,
            host_name: self.host.clone().into(),
            start: rfc3339(from),
            end: rfc3339(now),
            tracked_since: rfc3339(tracked_since),
            sensors: self.sensors.iter().map(|s| (*s).to_owned()).collect(),
            events_lost: lost,
            events_lost_by_kind: by_kind,
            decode_errors: decode,
            state: state.to_owned(),
            record_id: None,
        }))
    }
}
