//! The per-event chain: enrich -> classify (confirm against the watch list)
//! -> de-dup accounting -> records. Single-threaded (it runs on the sink
//! thread), so stages keep state without locks.
//!
//! Input: [`Input`]s in order (events, ticks, watch-list updates). Output:
//! records in the data-contract shape, and newly seen credential inodes for
//! the kernel's watch list.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use observer_common::{INODE_FILE, InodeKey, InodeRule};
use tokio::sync::mpsc;

use super::dedup::Dedup;
use crate::{
    classify::watch::{InodeEntry, Via, WatchList},
    clock::BootClock,
    decode::{Event, FileOpen},
    enrich,
    export::record::{self, Context, Record},
    probes::KernelState,
    stats::Stats,
};

/// What the sink thread receives, in order.
#[allow(clippy::large_enum_variant, reason = "events are the traffic; boxing them would allocate per event")]
pub enum Input {
    Event(Event),
    /// Once a second: de-dup tails, periodic stats.
    Tick,
    /// A new watch list (start, rescan, SIGHUP).
    Watch(Arc<WatchList>),
}

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    watch: Arc<WatchList>,
    kernel: Option<KernelState>,
    dedup: Dedup,
    stats: Arc<Stats>,
    /// Credential inodes seen in events but not yet in the kernel's watch.
    new_inodes: mpsc::UnboundedSender<InodeEntry>,
    stats_every: Duration,
    last_stats: Instant,
}

impl Pipeline {
    pub fn new(
        watch: Arc<WatchList>,
        kernel: Option<KernelState>,
        stats: Arc<Stats>,
        new_inodes: mpsc::UnboundedSender<InodeEntry>,
        stats_every: Duration,
    ) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            watch,
            kernel,
            dedup: Dedup::default(),
            stats,
            new_inodes,
            stats_every,
            last_stats: Instant::now(),
        }
    }

    /// Handles one input, appending the records it yields to `out`.
    pub fn on_input(&mut self, input: Input, out: &mut Vec<Record>) {
        match input {
            Input::Event(event) => self.on_event(event, out),
            Input::Watch(watch) => self.watch = watch,
            Input::Tick => {
                self.sweep(out);
                if self.last_stats.elapsed() >= self.stats_every {
                    self.last_stats = Instant::now();
                    out.push(self.stats_record());
                }
            }
        }
    }

    /// At shutdown: the last de-dup tails and a final stats record.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.sweep(out);
        out.push(self.stats_record());
    }

    fn on_event(&mut self, mut event: Event, out: &mut Vec<Record>) {
        Stats::add(&self.stats.events_received, 1);
        enrich::enrich(&mut event);
        match &event {
            Event::FileOpen(ev) => {
                let Some((rule_id, via)) = self.watch.confirm(ev) else {
                    Stats::add(&self.stats.candidates_rejected, 1);
                    return;
                };
                let rule = self.watch.rule(rule_id);
                if via != Via::Kernel || ev.match_kind == observer_common::MatchKind::Path {
                    self.learn_inode(ev, rule_id);
                }
                let cx = Context {
                    host_name: &self.host_name,
                    time: self.clock.wall_time(ev.boot_ns),
                    rule: rule.map(|r| (r.name.as_str(), r.kind.as_str())),
                };
                let mut record = record::from_event(&event, &cx);
                let count = self.dedup.on_event(ev, &record);
                record.set_count(count);
                out.push(record);
            }
        }
    }

    /// A confirmed credential file the kernel did not know by inode: watch
    /// it by inode from now on (any name, any mount).
    fn learn_inode(&self, ev: &FileOpen, rule_id: u32) {
        if ev.ret < 0 || ev.ino == 0 {
            return;
        }
        let entry = InodeEntry {
            key: InodeKey { ino: ev.ino, dev: ev.dev as u32, _pad0: 0 },
            rule: InodeRule { rule_id, what: INODE_FILE },
            path: ev.resolved.as_ref().map(|r| r.path.clone().into()).unwrap_or_default(),
        };
        let _ = self.new_inodes.send(entry);
    }

    fn sweep(&mut self, out: &mut Vec<Record>) {
        let Some(kernel) = &self.kernel else { return };
        let mut tails = Vec::new();
        let clock = &mut self.clock;
        self.dedup.sweep(|k| kernel.dedup.get(k, 0).ok(), |ns| clock.wall_time(ns), &mut tails);
        for (mut record, count) in tails {
            record.set_count(count);
            out.push(record);
        }
    }

    fn stats_record(&mut self) -> Record {
        let kernel = self.kernel.as_ref().and_then(|k| k.counters().ok()).unwrap_or_default();
        let s = &self.stats;
        let attributes = vec![
            ("host.name", self.host_name.clone().into()),
            ("nhi.file.events.emitted", (kernel.file_open_emitted as i64).into()),
            ("nhi.file.events.lost", (kernel.file_open_reserve_failed as i64).into()),
            ("nhi.file.opens.folded", (kernel.file_open_dedup_suppressed as i64).into()),
            ("nhi.file.opens.slow_path", (kernel.file_open_slow_path as i64).into()),
            ("nhi.agent.events.received", (Stats::get(&s.events_received) as i64).into()),
            ("nhi.agent.candidates.rejected", (Stats::get(&s.candidates_rejected) as i64).into()),
            ("nhi.agent.records.written", (Stats::get(&s.records_written) as i64).into()),
            ("nhi.agent.decode_errors", (s.decode_errors().values().sum::<u64>() as i64).into()),
            ("nhi.agent.dedup.keys", (self.dedup.len() as i64).into()),
            ("nhi.watch.rules", (self.watch.rules().len() as i64).into()),
            ("nhi.watch.inodes", (Stats::get(&s.watched_inodes) as i64).into()),
        ];
        Record { time: std::time::SystemTime::now(), event_name: record::EVENT_AGENT_STATS, attributes }
    }
}
