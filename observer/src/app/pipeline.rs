//! The per-event chain: enrich -> identity -> classify -> records.
//! Single-threaded (it runs on the sink thread), so stages may keep state
//! without locks.
//!
//! Input: decoded events. Output: records in the data-contract shape. Every
//! record of an event that has a task goes through `Identity::annotate`, the
//! one workload-identity lookup.
use std::{collections::HashMap, sync::Arc};

use crate::{
    clock::BootClock,
    config::Config,
    decode::Event,
    enrich,
    export::record::{self, Context, Record},
    identity::{Identity, env},
    stats::Stats,
};

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    /// Watch-rule id -> (rule name, credential kind).
    rules: HashMap<u32, (String, String)>,
    identity: Identity,
    stats: Arc<Stats>,
}

impl Pipeline {
    /// Builds the stages; loads the process table from /proc.
    pub fn new(cfg: &Config, stats: Arc<Stats>) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            rules: cfg.rules.iter().map(|r| (r.id, (r.name.clone(), r.kind.clone()))).collect(),
            identity: Identity::new(cfg.identity.clone(), stats.clone()),
            stats,
        }
    }

    /// Handles one event, appending the records it yields to `out`.
    pub fn on_event(&mut self, mut event: Event, out: &mut Vec<Record>) {
        enrich::enrich(&mut event);
        match &event {
            Event::FileOpen(ev) => {
                let cx = Context {
                    host_name: &self.host_name,
                    time: self.clock.wall_time(ev.boot_ns),
                    rule: self.rules.get(&ev.rule_id).map(|(n, k)| (n.as_str(), k.as_str())),
                };
                if let Some(mut rec) = record::from_event(&event, &cx) {
                    self.identity.annotate(&ev.task, &mut rec.attributes);
                    out.push(rec);
                }
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

    /// Periodic work of the stateful stages (called at least once a second).
    pub fn maintain(&mut self) {
        self.identity.maintain();
    }
}
