//! The per-event chain: enrich -> classify -> records. Single-threaded (it
//! runs on the sink thread), so stages may keep state without locks.
//!
//! Input: decoded events. Output: records in the data-contract shape.
use std::{collections::HashMap, time::Instant};

use crate::{
    clock::BootClock,
    config::Config,
    decode::Event,
    enrich,
    export::record::{self, Context, Record},
    net,
};

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    /// Watch-rule id -> (rule name, credential kind).
    rules: HashMap<u32, (String, String)>,
    /// Network sensor: joins connect, payload and close records.
    net: net::Tracker,
    net_out: Vec<net::Output>,
}

impl Pipeline {
    pub fn new(cfg: &Config) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            rules: cfg.rules.iter().map(|r| (r.id, (r.name.clone(), r.kind.clone()))).collect(),
            net: net::Tracker::new(net::TrackerConfig::default()),
            net_out: Vec::new(),
        }
    }

    /// Handles one event, appending the records it yields to `out`.
    pub fn on_event(&mut self, mut event: Event, out: &mut Vec<Record>) {
        enrich::enrich(&mut event);
        let now = Instant::now();
        match event {
            Event::FileOpen(ev) => {
                let cx = Context {
                    host_name: &self.host_name,
                    time: self.clock.wall_time(ev.boot_ns),
                    rule: self.rules.get(&ev.rule_id).map(|(n, k)| (n.as_str(), k.as_str())),
                };
                out.push(record::file_open(&ev, &cx));
            }
            Event::NetConnect(ev) => self.net.on_connect(ev, now, &mut self.net_out),
            Event::NetPayload(ev) => self.net.on_payload(ev, now, &mut self.net_out),
            Event::NetClose(ev) => self.net.on_close(ev, now, &mut self.net_out),
        }
        self.drain_net(out);
    }

    /// Time passes: reports connections whose outcome timed out.
    pub fn on_tick(&mut self, out: &mut Vec<Record>) {
        self.net.on_tick(Instant::now(), &mut self.net_out);
        self.drain_net(out);
    }

    /// End of input: reports everything still pending.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let pending = self.net.pending();
        self.net.finish_all(&mut self.net_out);
        self.drain_net(out);
        tracing::info!(outcomes = ?self.net.stats(), pending, "network sensor stopped");
    }

    fn drain_net(&mut self, out: &mut Vec<Record>) {
        for o in self.net_out.drain(..) {
            out.push(match o {
                net::Output::Connection(c) => {
                    net::record::connection(&c, &self.host_name, self.clock.wall_time(c.boot_ns))
                }
                net::Output::Imds(r) => net::record::imds_request(&r, &self.host_name, self.clock.wall_time(r.boot_ns)),
            });
        }
    }
}
