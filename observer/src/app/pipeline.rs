//! The per-event chain: enrich -> identity -> classify (confirm against the
//! watch list) -> de-dup accounting -> records. Single-threaded (it runs on
//! the sink thread), so stages keep state without locks.
//!
//! Input: [`Input`]s in order (events, ticks, watch-list updates). Output:
//! records in the data-contract shape, and newly seen credential inodes for
//! the kernel's watch list. Every record of an event that has a task goes
//! through `Identity::annotate`, the one workload-identity lookup.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use observer_common::{INODE_FILE, InodeKey, InodeRule, MatchKind};
use tokio::sync::mpsc;

use super::dedup::Dedup;
use crate::{
    classify::watch::{InodeEntry, Via, WatchList},
    clock::BootClock,
    config::Config,
    decode::{Event, FileOpen},
    enrich,
    export::record::{self, Context, Record},
    identity::{Identity, env},
    probes::KernelState,
    stats::Stats,
};

/// What the sink thread receives, in order.
#[allow(clippy::large_enum_variant, reason = "events are the traffic; boxing them would allocate per event")]
pub enum Input {
    Event(Event),
    /// Once a second: de-dup tails, process-table upkeep, periodic stats.
    Tick,
    /// A new watch list (start, rescan, SIGHUP).
    Watch(Arc<WatchList>),
}

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    watch: Arc<WatchList>,
    identity: Identity,
    kernel: Option<KernelState>,
    dedup: Dedup,
    stats: Arc<Stats>,
    /// Credential inodes seen in events but not yet in the kernel's watch.
    new_inodes: mpsc::UnboundedSender<InodeEntry>,
    stats_every: Duration,
    last_stats: Instant,
}

impl Pipeline {
    /// Builds the stages; loads the process table from /proc.
    pub fn new(
        cfg: &Config,
        watch: Arc<WatchList>,
        kernel: Option<KernelState>,
        stats: Arc<Stats>,
        new_inodes: mpsc::UnboundedSender<InodeEntry>,
    ) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            watch,
            identity: Identity::new(cfg.identity.clone(), stats.clone()),
            kernel,
            dedup: Dedup::default(),
            stats,
            new_inodes,
            stats_every: cfg.stats_every,
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
                self.identity.maintain();
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
                if via != Via::Kernel || ev.match_kind == MatchKind::Path {
                    self.learn_inode(ev, rule_id);
                }
                let cx = Context {
                    host_name: &self.host_name,
                    time: self.clock.wall_time(ev.boot_ns),
                    rule: rule.map(|r| (r.name.as_str(), r.kind.as_str())),
                };
                let Some(mut record) = record::from_event(&event, &cx) else { return };
                self.identity.annotate(&ev.task, &mut record.attributes);
                let count = self.dedup.on_event(ev, &record);
                record.set_count(count);
                out.push(record);
            }
            Event::ProcessExec(ev) => {
                self.identity.on_exec(ev);
                let (environment, cut) = self.identity.exec_environment(ev);
                let creds = env::credentials(&environment, cut);
                if creds.is_empty() {
                    return;
                }
                Stats::add(&self.stats.env_credentials, creds.len() as u64);
                let time = self.clock.wall_time(ev.boot_ns);
                for cred in &creds {
                    let id = env::derive_id(cred, &creds);
                    let mut rec = env::record(ev, cred, id, &self.host_name, time);
                    self.identity.annotate(&ev.task, &mut rec.attributes);
                    out.push(rec);
                }
            }
            Event::ProcessFork(ev) => self.identity.on_fork(ev),
            Event::ProcessExit(ev) => self.identity.on_exit(ev),
            Event::CgroupMkdir(ev) => self.identity.on_cgroup_mkdir(ev),
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
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX).into();
        let attributes = vec![
            ("host.name", self.host_name.clone().into()),
            ("nhi.file.events.emitted", int(kernel.file_open_emitted)),
            ("nhi.file.events.lost", int(kernel.file_open_reserve_failed)),
            ("nhi.file.opens.folded", int(kernel.file_open_dedup_suppressed)),
            ("nhi.file.opens.slow_path", int(kernel.file_open_slow_path)),
            ("nhi.process.events.emitted", int(kernel.process_emitted)),
            ("nhi.process.events.lost", int(kernel.process_reserve_failed)),
            ("nhi.agent.events.received", int(Stats::get(&s.events_received))),
            ("nhi.agent.candidates.rejected", int(Stats::get(&s.candidates_rejected))),
            ("nhi.agent.records.written", int(Stats::get(&s.records_written))),
            ("nhi.agent.decode_errors", int(s.decode_errors().values().sum::<u64>())),
            ("nhi.agent.dedup.keys", int(self.dedup.len() as u64)),
            ("nhi.agent.process_table.size", int(Stats::get(&s.process_table_size))),
            ("nhi.agent.process_table.evicted", int(Stats::get(&s.process_table_evicted))),
            ("nhi.watch.rules", int(self.watch.rules().len() as u64)),
            ("nhi.watch.inodes", int(Stats::get(&s.watched_inodes))),
        ];
        Record { time: std::time::SystemTime::now(), event_name: record::EVENT_AGENT_STATS, attributes }
    }
}
