//! The per-event chain: enrich -> classify -> records. Single-threaded (it
//! runs on the sink thread), so stages may keep state without locks.
//!
//! Input: decoded events. Output: records in the data-contract shape.
use std::collections::HashMap;

use crate::{
    clock::BootClock,
    config::Config,
    decode::Event,
    enrich,
    export::record::{self, Context, Record},
};

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    /// Watch-rule id -> (rule name, credential kind).
    rules: HashMap<u32, (String, String)>,
}

impl Pipeline {
    pub fn new(cfg: &Config) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            rules: cfg.rules.iter().map(|r| (r.id, (r.name.clone(), r.kind.clone()))).collect(),
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
                out.push(record::file_open(ev, &cx));
            }
            Event::NetConnect(_) | Event::NetPayload(_) | Event::NetClose(_) => {}
        }
    }
}
