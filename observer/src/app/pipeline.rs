//! The per-event chain: enrich -> identity -> classify (confirm against the
//! watch list, then read the file) -> de-dup accounting -> records.
//! Single-threaded (it runs on the sink thread), so stages keep state
//! without locks.
//!
//! Input: [`Input`]s in order (events, ticks, watch-list updates). Output:
//! typed records ([`Emit`]), and newly seen credential inodes for the
//! kernel's watch list. Every record of an event that has a task gets its
//! typed `Workload` from the one workload-identity lookup
//! (`Identity::typed_workload`, or `typed_consumer` where the record is a
//! credential access that also keys a usage).
//!
//! A credential file whose open succeeded is read (see `classify::reader`)
//! and yields one `nhi.credential.access` record per credential identity
//! it holds, each with its `nhi.id`; a file that holds only public
//! material (certificates, public keys) or nothing is counted, not
//! reported, when opened read-only (`classify::verdict`); one that could not be parsed at a
//! specific credential path yields one file-level record with
//! `nhi.unparsed.reason`; a failed open yields the file-level record
//! alone, as does a write-only open (its content is not written yet); a
//! change of a known file that held identities first yields
//! `nhi.credential.rotation`.
//!
//! Every record that names a credential (`nhi.id`) is also a credential
//! access for the correlator, counted by its `nhi.access.count` (de-dup
//! tails included); connections are linked to the accesses before them.
//! The usage deltas wait in the correlator until the sink drains them
//! ([`Pipeline::drain_usage`]) into the store.
//! Network events go to the network tracker (`crate::net`), which joins
//! connect, payload and close records by socket cookie and yields
//! `nhi.connection` and metadata-service `nhi.credential.access` records,
//! with the connecting task's workload like the others; a connection's
//! destination for the correlator is its typed record's `server.*`.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use observer_common::{INODE_FILE, MatchKind};
use observer_creds::{Keyed, Parsed};
use tokio::sync::mpsc;

use super::dedup::{Accessed, Dedup};
use crate::{
    classify::{
        env_paths,
        reader::{Access, Reader},
        verdict::{self, Verdict},
        watch::{InodeEntry, Via, WatchList},
    },
    clock::BootClock,
    config::Config,
    correlate::{self, Correlator, Subject, UsageDelta, UsageHead},
    decode::{Event, FileOpen},
    enrich,
    model::{self as record, Consumer, Credential, Emit, Source, records::{AccessSource, CredentialAccess, FileAccess}},
    identity::{Identity, env, table::ProcKey},
    net,
    probes::KernelState,
    stats::Stats,
    store::Counters,
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

impl From<Event> for Input {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

pub struct Pipeline {
    /// The host's name, [`crate::model::permanent`]: every record borrows it.
    host_name: &'static str,
    clock: BootClock,
    watch: Arc<WatchList>,
    identity: Identity,
    reader: Reader,
    keyed: Arc<Keyed>,
    own_pid: u32,
    kernel: Option<KernelState>,
    dedup: Dedup,
    stats: Arc<Stats>,
    /// Credential inodes seen in events but not yet in the kernel's watch.
    new_inodes: mpsc::UnboundedSender<InodeEntry>,
    stats_every: Duration,
    last_stats: Instant,
    correlator: Correlator,
    /// Usage heads shared between accesses of the same usage.
    heads: correlate::record::Heads,
    usage_every: Duration,
    last_usage: Instant,
    /// Network sensor: joins connect, payload and close records.
    net: net::Tracker,
    net_out: Vec<net::Output>,
    /// Variables naming credential files, and the inodes already handed
    /// to the kernel for them (bounded: cleared past its size).
    env_paths: Vec<env_paths::EnvPathRule>,
    /// Their names' lengths ([`env_paths::name_lengths`]).
    env_path_lengths: u64,
    env_inodes_sent: std::collections::HashSet<(u32, u64)>,
    env_paths_seen: EnvPathsSeen,
}

/// Env-named inodes remembered as sent; past this the set starts over
/// (a resend is harmless).
const MAX_ENV_INODES: usize = 16_384;

/// How long (kernel boot time) an env-named absolute path resolved for an
/// exec stays resolved for later execs in the same cgroup.
const ENV_PATH_RECHECK_NS: u64 = 1_000_000_000;
/// Recently resolved env-named paths remembered; past this the map starts
/// over (a path then resolves once more).
const MAX_ENV_PATHS_SEEN: usize = 4_096;

/// Processes the stats record names as losing file events (the most
/// first; `nhi.file.events.lost_by_process`).
const LOST_PROCESSES_SHOWN: usize = 8;

/// Env-named paths resolved lately, by (cgroup id, rule id, absolute path):
/// the kernel boot time of the exec that resolved each.
///
/// Resolving one costs several /proc and path look-ups per exec (about
/// 8 us of the agent's CPU on the benchmark's machine, where every shell
/// has `TF_CLI_CONFIG_FILE` set: the largest part of its work for a plain
/// exec). Processes of one cgroup nearly always share their mount
/// namespace and root, so an exec within [`ENV_PATH_RECHECK_NS`] of
/// another that named the same path in the same cgroup would resolve it
/// to the same file: that file is already watched (or was missing). What
/// this gives up: a file created or replaced at that path, or a process
/// of the same cgroup in another mount namespace, within that second, is
/// watched from the next exec after it, not from this one. Relative paths
/// (against each process's own cwd) are always resolved.
#[derive(Default)]
struct EnvPathsSeen {
    seen: std::collections::HashMap<(u64, u32, std::path::PathBuf), u64>,
}

impl EnvPathsSeen {
    /// Whether `path` needs resolving for an exec at `boot_ns`; if so, it
    /// counts as resolved from now.
    fn fresh(&mut self, cgroup_id: u64, rule_id: u32, path: &std::path::Path, boot_ns: u64) -> bool {
        let key = (cgroup_id, rule_id, path.to_path_buf());
        if let Some(at) = self.seen.get_mut(&key) {
            if boot_ns.saturating_sub(*at) < ENV_PATH_RECHECK_NS && boot_ns >= *at {
                return false;
            }
            *at = boot_ns;
            return true;
        }
        if self.seen.len() >= MAX_ENV_PATHS_SEEN {
            self.seen.clear();
        }
        self.seen.insert(key, boot_ns);
        true
    }
}

impl Pipeline {
    /// Builds the stages; loads the process table from /proc.
    pub fn new(
        cfg: &Config,
        watch: Arc<WatchList>,
        kernel: Option<KernelState>,
        keyed: Arc<Keyed>,
        stats: Arc<Stats>,
        new_inodes: mpsc::UnboundedSender<InodeEntry>,
    ) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name: crate::model::permanent(&host_name),
            clock: BootClock::new(),
            watch,
            identity: Identity::new(cfg.identity.clone(), stats.clone()),
            reader: Reader::new(cfg.max_credential_bytes),
            keyed,
            own_pid: std::process::id(),
            kernel,
            dedup: Dedup::new(cfg.dedup),
            stats,
            new_inodes,
            stats_every: cfg.stats_every,
            last_stats: Instant::now(),
            correlator: Correlator::new(cfg.usage.correlator.clone()),
            heads: correlate::record::Heads::new(std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN)),
            usage_every: cfg.usage.flush_every,
            last_usage: Instant::now(),
            net: net::Tracker::new(net::TrackerConfig::default()),
            net_out: Vec::new(),
            env_paths: cfg.env_paths.clone(),
            env_path_lengths: env_paths::name_lengths(&cfg.env_paths),
            env_inodes_sent: std::collections::HashSet::new(),
            env_paths_seen: EnvPathsSeen::default(),
        }
    }

    /// Whether usage deltas are due for the store: every flush interval, or
    /// sooner when the correlator holds its most.
    pub fn usage_due(&self) -> bool {
        self.correlator.pending() > 0 && (self.correlator.full() || self.last_usage.elapsed() >= self.usage_every)
    }

    /// Hands the pending usage deltas over (to the store).
    pub fn drain_usage(&mut self, out: &mut Vec<UsageDelta>) {
        self.last_usage = Instant::now();
        self.correlator.drain(out);
    }

    /// The agent's loss and traffic counters since start (coverage).
    pub fn counters(&self) -> Counters {
        let kernel = self.kernel.as_ref().and_then(|k| k.counters().ok()).unwrap_or_default();
        let decode = self.stats.decode_errors().values().sum::<u64>();
        let mut c = Counters {
            events_received: Stats::get(&self.stats.events_received),
            events_lost: 0,
            decode_errors: decode,
            drops: Default::default(),
        };
        let network =
            kernel.net_connect_reserve_failed + kernel.net_payload_reserve_failed + kernel.net_close_reserve_failed;
        c.events_lost = kernel.file_open_reserve_failed + kernel.process_reserve_failed + network;
        for (k, v) in [
            ("file", kernel.file_open_reserve_failed),
            ("process", kernel.process_reserve_failed),
            ("network", network),
            ("decode", decode),
        ] {
            if v > 0 {
                c.drops.insert(k, v);
            }
        }
        self.stats.set_drops(&c.drops);
        c
    }

    /// The usage an access of `credential` by `consumer` counts for.
    fn head(&mut self, credential: Option<&Credential>, source: Source, consumer: &Consumer) -> Option<Arc<UsageHead>> {
        self.heads.get(&Subject { host: self.host_name, credential: credential?, source, consumer })
    }

    /// Counts a credential access, and feeds the correlator with it when
    /// it names a credential (`head`).
    #[allow(clippy::too_many_arguments, reason = "the typed facts of one access")]
    fn correlate_access(
        &mut self,
        source: Source,
        head: Option<Arc<UsageHead>>,
        process: ProcKey,
        boot_ns: u64,
        wall: std::time::SystemTime,
        count: u64,
    ) {
        self.stats.access(source.as_str(), count);
        let Some(head) = head else { return };
        self.correlator.on_access(correlate::Access { head, process, boot_ns, wall, count });
    }

    /// Handles one input, appending the records it yields to `out`.
    pub fn on_input(&mut self, input: Input, out: &mut Vec<Emit>) {
        match input {
            Input::Event(event) => self.on_event(event, out),
            Input::Watch(watch) => self.watch = watch,
            Input::Tick => {
                self.net.on_tick(Instant::now(), &mut self.net_out);
                self.drain_net(out);
                self.sweep(out);
                self.identity.maintain();
                self.correlator.expire(crate::clock::boot_now_ns());
                if self.last_stats.elapsed() >= self.stats_every {
                    self.last_stats = Instant::now();
                    out.push(self.stats_record().into());
                }
            }
        }
    }

    /// At shutdown: the last de-dup tails and a final stats record.
    pub fn finish(&mut self, out: &mut Vec<Emit>) {
        let pending = self.net.pending();
        self.net.finish_all(&mut self.net_out);
        self.drain_net(out);
        tracing::info!(outcomes = ?self.net.stats(), pending, "network sensor stopped");
        self.sweep(out);
        out.push(self.stats_record().into());
    }

    fn on_event(&mut self, mut event: Event, out: &mut Vec<Emit>) {
        Stats::add(&self.stats.events_received, 1);
        enrich::enrich(&mut event);
        let now = Instant::now();
        let event = match event {
            Event::NetConnect(ev) => return self.on_net(|n, o| n.on_connect(ev, now, o), out),
            Event::NetPayload(ev) => return self.on_net(|n, o| n.on_payload(ev, now, o), out),
            Event::NetClose(ev) => return self.on_net(|n, o| n.on_close(ev, now, o), out),
            other => other,
        };
        match &event {
            Event::FileOpen(ev) => {
                if ev.task.tgid == self.own_pid {
                    // The agent's own reads (scan, classification) are not
                    // accesses.
                    self.stats.count("file_event_self");
                    return;
                }
                let Some((rule_id, via)) = self.watch.confirm(ev) else {
                    Stats::add(&self.stats.candidates_rejected, 1);
                    return;
                };
                // The rule by reference (a clone copied its strings per event).
                let watch = self.watch.clone();
                let Some(rule) = watch.rule(rule_id) else { return };
                if *rule.kind == *crate::identity::k8s::TOKEN_KIND {
                    self.identity.token_opened(&ev.task);
                }
                if via != Via::Kernel || ev.match_kind == MatchKind::Path {
                    self.learn_inode(ev, rule_id);
                }
                let mut access = record::file::file_access(ev, Some((rule.name, rule.kind)));
                let (workload, consumer) = self.identity.typed_consumer(&ev.task, ev.exe.as_ref(), &mut access.process);
                access.workload = workload;
                let base = CredentialAccess {
                    time: self.clock.wall_time(ev.boot_ns),
                    host_name: self.host_name.into(),
                    source: AccessSource::File(access),
                    record_id: None,
                };
                let mut records: Vec<(CredentialAccess, Option<Credential>)> = Vec::new();
                // A write-only open comes before the content it writes: the
                // next read shows it (and a change of known content then is
                // a rotation). Failed opens have nothing to read.
                let readable = ev.ret >= 0 && ev.access() != crate::decode::Access::Write;
                match read_path(ev).filter(|_| readable) {
                    Some(path) => {
                        let access = Access {
                            pid: ev.task.tgid,
                            path: &path,
                            kernel_inode: (ev.ino != 0).then_some((ev.dev, ev.ino)),
                            format: rule.format,
                            kind: rule.kind,
                        };
                        let c = self.reader.classify(&access, &self.keyed);
                        self.stats.count(if c.read { "credential_file_read" } else { "credential_file_cached" });
                        if let Some(before) = &c.rotated_from {
                            self.stats.count("credential_file_rotated");
                            out.extend(record::file::rotation(&base, before, &c.parsed).map(Emit::from));
                        }
                        if let Some(u) = &c.parsed.unparsed {
                            self.stats.count(u.reason());
                            tracing::debug!(reason = %u, "credential file not parsed");
                        }
                        match verdict::judge(&c.parsed, verdict::broad(rule)) {
                            Verdict::Report(parsed) => records.extend(identity_records(base, &parsed, rule.format.name())),
                            // Public material, placeholders, nothing: reading
                            // them is not a credential access (issue 14, item
                            // 7). Opening one to write is: the content comes.
                            Verdict::Count(why) if ev.access() == crate::decode::Access::Read => {
                                self.stats.count("file_not_credential");
                                self.stats.count(why);
                                return;
                            }
                            Verdict::Count(_) => records.extend(identity_records(base, &c.parsed, rule.format.name())),
                        }
                    }
                    None => records.push((base, None)),
                }
                let records: Vec<Accessed> = records
                    .into_iter()
                    .map(|(record, credential)| {
                        let head = self.head(credential.as_ref(), Source::File, &consumer);
                        Accessed { record, head }
                    })
                    .collect();
                let kernel = self.kernel.as_ref();
                let Some(count) = self.dedup.on_event(ev, &records, |k| kernel.and_then(|s| s.dedup.get(k, 0).ok())) else {
                    // Its opens are already counted (emitted on two CPUs at
                    // once, or counted by a sweep while in the ring:
                    // `app::dedup`).
                    self.stats.count("file_event_dedup_duplicate");
                    return;
                };
                let process = ProcKey { tgid: ev.task.tgid, start_boot_ns: ev.task.start_boot_ns };
                for Accessed { mut record, head } in records {
                    set_count(&mut record, count);
                    self.correlate_access(Source::File, head, process, ev.boot_ns, record.time, count);
                    out.push(record.into());
                }
            }
            Event::ProcessExec(ev) => {
                self.identity.on_exec(ev);
                let (environment, cut) = self.identity.exec_environment(ev);
                // One pass over the block for both uses of it.
                let (mut creds, mut paths) = (Vec::new(), Vec::new());
                for (name, value) in env::vars(environment.expose(), cut) {
                    env::var_credential(name, value, &mut creds);
                    if env_paths::may_name(self.env_path_lengths, name) {
                        env_paths::var_targets(name, value, &self.env_paths, &mut paths);
                    }
                }
                if !paths.is_empty() {
                    // Rule names owned: the rules are `self`'s.
                    let paths = paths.into_iter().map(|(rule, path)| (rule.to_owned(), path)).collect();
                    self.watch_env_paths(&ev.task, ev.boot_ns, paths);
                }
                if creds.is_empty() {
                    return;
                }
                Stats::add(&self.stats.env_credentials, creds.len() as u64);
                let time = self.clock.wall_time(ev.boot_ns);
                // One workload look-up for all the exec's credentials (the
                // same task): what `Identity::typed_consumer` does per record.
                let w = self.identity.workload(&ev.task);
                for cred in &creds {
                    let id = env::derive_id(cred, &creds, &self.keyed);
                    let (kind, credential) = env::credential(cred, id);
                    let mut rec = env::record(ev, cred, &kind, credential.as_ref(), self.host_name, time);
                    let (process, workload) = rec.process_workload_mut();
                    w.fill_process(process);
                    *workload = w.typed();
                    let consumer = w.consumer(&ev.task, ev.exe.as_ref());
                    let head = self.head(credential.as_ref(), Source::Env, &consumer);
                    let process = ProcKey { tgid: ev.task.tgid, start_boot_ns: ev.task.start_boot_ns };
                    self.correlate_access(Source::Env, head, process, ev.boot_ns, time, 1);
                    out.push(rec.into());
                }
            }
            Event::ProcessFork(ev) => self.identity.on_fork(ev),
            Event::ProcessExit(ev) => {
                self.identity.on_exit(ev);
                self.dedup.on_exit(ev.tgid, ev.start_boot_ns, ev.boot_ns);
            }
            Event::CgroupMkdir(ev) => self.identity.on_cgroup_mkdir(ev),
            Event::NetConnect(_) | Event::NetPayload(_) | Event::NetClose(_) => {}
        }
    }

    fn on_net(&mut self, step: impl FnOnce(&mut net::Tracker, &mut Vec<net::Output>), out: &mut Vec<Emit>) {
        step(&mut self.net, &mut self.net_out);
        self.drain_net(out);
    }

    /// Network outputs as records, each with its task's workload identity.
    fn drain_net(&mut self, out: &mut Vec<Emit>) {
        for o in std::mem::take(&mut self.net_out) {
            match o {
                net::Output::Connection(c) => {
                    let time = self.clock.wall_time(c.boot_ns);
                    let mut rec = net::record::connection(&c, self.host_name, time);
                    let task = &c.socket.task;
                    rec.workload = self.identity.typed_workload(task, &mut rec.process);
                    let process = ProcKey { tgid: task.tgid, start_boot_ns: task.start_boot_ns };
                    let ancestors = self.identity.ancestor_keys(task, correlate::MAX_DEPTH);
                    let linked = self.correlator.on_connection(&correlate::Connection {
                        process,
                        ancestors: &ancestors,
                        boot_ns: c.boot_ns,
                        wall: time,
                        destination: correlate::Destination {
                            address: rec.server_address.clone(),
                            port: rec.server_port,
                        },
                    });
                    Stats::add(
                        if linked > 0 { &self.stats.connections_linked } else { &self.stats.connections_unlinked },
                        1,
                    );
                    out.push(rec.into());
                }
                net::Output::Imds(r) => {
                    let time = self.clock.wall_time(r.boot_ns);
                    let mut rec = net::record::imds_request(&r, self.host_name, time);
                    let task = &r.socket.task;
                    let (process, workload) = rec.process_workload_mut();
                    let consumer;
                    (*workload, consumer) = self.identity.typed_consumer(task, r.socket.exe.as_ref(), process);
                    let credential = net::record::imds_credential(&r);
                    let head = self.head(credential.as_ref(), Source::Imds, &consumer);
                    let process = ProcKey { tgid: task.tgid, start_boot_ns: task.start_boot_ns };
                    self.correlate_access(Source::Imds, head, process, r.boot_ns, time, 1);
                    out.push(rec.into());
                }
            }
        }
    }

    /// Files the exec's environment names (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// `KUBECONFIG`, ...), resolved in the process's mount namespace and
    /// cwd: watched by inode from now on, under the rule each variable says.
    /// An absolute path resolved for an exec in the same cgroup less than
    /// [`ENV_PATH_RECHECK_NS`] before is not resolved again (see
    /// [`EnvPathsSeen`]).
    fn watch_env_paths(&mut self, task: &crate::decode::Task, boot_ns: u64, paths: Vec<(String, std::path::PathBuf)>) {
        for (rule_name, path) in paths {
            let Some(rule_id) = self.watch.catalog().rules.iter().find(|r| *r.name == *rule_name).map(|r| r.id) else {
                continue;
            };
            if path.is_absolute() && !self.env_paths_seen.fresh(task.cgroup_id, rule_id, &path, boot_ns) {
                continue;
            }
            let Some(entry) = env_paths::inode_entry(task.tgid, &path, rule_id) else {
                self.stats.count("env_path_missing");
                continue;
            };
            if self.env_inodes_sent.len() >= MAX_ENV_INODES {
                self.env_inodes_sent.clear();
            }
            if self.env_inodes_sent.insert((entry.key.dev, entry.key.ino)) {
                self.stats.count("env_path_watched");
                let _ = self.new_inodes.send(entry);
            }
        }
    }

    /// A confirmed credential file the kernel did not know by inode: watch
    /// it by inode from now on (any name, any mount).
    fn learn_inode(&self, ev: &FileOpen, rule_id: u32) {
        if ev.ret < 0 || ev.ino == 0 {
            return;
        }
        let path = ev.resolved.as_ref().map(|r| r.path.clone().into()).unwrap_or_default();
        let entry = InodeEntry::new(ev.dev as u32, ev.ino, rule_id, INODE_FILE, path);
        let _ = self.new_inodes.send(entry);
    }

    fn sweep(&mut self, out: &mut Vec<Emit>) {
        let Some(kernel) = &self.kernel else { return };
        let mut tails = Vec::new();
        let clock = &mut self.clock;
        self.dedup.sweep(|k| kernel.dedup.get(k, 0).ok(), |ns| clock.wall_time(ns), crate::clock::boot_now_ns(), &mut tails);
        for (records, count, key, last_ns) in tails {
            let process = ProcKey { tgid: key.tgid, start_boot_ns: key.start_ns };
            for Accessed { mut record, head } in records {
                set_count(&mut record, count);
                self.correlate_access(Source::File, head, process, last_ns, record.time, count);
                out.push(record.into());
            }
        }
    }

    fn stats_record(&mut self) -> crate::model::records::AgentStats {
        let kernel_state = self.kernel.as_ref();
        let kernel = kernel_state.and_then(|k| k.counters().ok()).unwrap_or_default();
        let lost_by_process = kernel_state
            .map(|k| k.file_lost_by_process(kernel.file_open_reserve_failed, LOST_PROCESSES_SHOWN))
            .unwrap_or_default()
            .into_iter()
            .map(|(tgid, n)| format!("{tgid}:{n}"))
            .collect();
        let s = &self.stats;
        crate::model::records::AgentStats {
            time: Some(std::time::SystemTime::now()),
            host_name: self.host_name.into(),
            file_events_emitted: kernel.file_open_emitted,
            file_events_lost: kernel.file_open_reserve_failed,
            file_events_lost_by_process: lost_by_process,
            file_opens_folded: kernel.file_open_dedup_suppressed,
            file_opens_slow_path: kernel.file_open_slow_path,
            process_events_emitted: kernel.process_emitted,
            process_events_lost: kernel.process_reserve_failed,
            net_connect_emitted: kernel.net_connect_emitted,
            net_connect_lost: kernel.net_connect_reserve_failed,
            net_payload_emitted: kernel.net_payload_emitted,
            net_payload_lost: kernel.net_payload_reserve_failed,
            net_close_lost: kernel.net_close_reserve_failed,
            net_connections_pending: self.net.pending() as u64,
            events_received: Stats::get(&s.events_received),
            candidates_rejected: Stats::get(&s.candidates_rejected),
            records_written: Stats::get(&s.records_written),
            decode_errors: s.decode_errors().values().sum::<u64>(),
            dedup_keys: self.dedup.len() as u64,
            process_table_size: Stats::get(&s.process_table_size),
            process_table_evicted: Stats::get(&s.process_table_evicted),
            watch_rules: self.watch.catalog().rules.iter().filter(|r| r.kernel).count() as u64,
            watch_inodes: Stats::get(&s.watched_inodes),
            usage_pending: self.correlator.pending() as u64,
            connections_linked: self.correlator.linked,
            connections_unlinked: self.correlator.unlinked,
            usage_destinations_dropped: self.correlator.destinations_dropped,
            records_unrenderable: crate::model::record::unrenderable(),
        }
    }
}

/// The path to read: as the process asked for it when absolute (stable
/// across symlink swaps, e.g. Kubernetes' token rotation), else the
/// kernel's resolved path.
fn read_path(ev: &FileOpen) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = Some(ev.path.as_bytes().to_vec()).filter(|p| p.starts_with(b"/")).or_else(|| WatchList::event_path_bytes(ev))?;
    Some(std::path::PathBuf::from(std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&bytes))))
}

/// `nhi.access.count` of a file access.
fn set_count(record: &mut CredentialAccess, count: u64) {
    if let AccessSource::File(f) = &mut record.source {
        f.count = Some(count);
    }
}

/// The file part of a file access.
fn file_part(record: &mut CredentialAccess) -> Option<&mut FileAccess> {
    match &mut record.source {
        AccessSource::File(f) => Some(f),
        _ => None,
    }
}

/// One record per identity, with the credential it names; the file-level
/// record (naming none) when there is no identity.
fn identity_records(
    base: CredentialAccess,
    parsed: &Parsed,
    format: &str,
) -> Vec<(CredentialAccess, Option<Credential>)> {
    use crate::model::records::{Facts, FileContent, Identity};
    let mut base = base;
    let unparsed = if parsed.identities.is_empty() { parsed.unparsed.as_ref() } else { None };
    let content = FileContent {
        format: Some(format.to_owned()),
        unparsed_reason: unparsed.map(observer_creds::Unparsed::reason),
        // Why it could not be read (an I/O error kind, or what a
        // non-regular file is): never content, unlike other details.
        unparsed_detail: match unparsed {
            Some(observer_creds::Unparsed::Unreadable(detail)) => Some(detail.clone()),
            _ => None,
        },
    };
    if let Some(f) = file_part(&mut base) {
        f.content = content;
    }
    if parsed.identities.is_empty() {
        return vec![(base, None)];
    }
    parsed
        .identities
        .iter()
        .map(|i| {
            let mut r = base.clone();
            if let Some(f) = file_part(&mut r) {
                f.kind = Some(i.kind.clone().into());
                f.identity = Identity { id: Some(i.id.clone()), facts: Facts(i.attributes.clone()) };
            }
            (r, Some(Credential { id: i.id.clone(), kind: i.kind.clone() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use observer_creds::{Identity, Unparsed};

    use super::*;
    use crate::model::Record;

    fn base() -> CredentialAccess {
        let mut f = FileAccess { kind: Some("aws.access_key".into()), ..FileAccess::default() };
        f.open.path = "/root/.aws/credentials".into();
        CredentialAccess {
            time: std::time::SystemTime::UNIX_EPOCH,
            host_name: "h".into(),
            source: AccessSource::File(Box::new(f)),
            record_id: None,
        }
    }

    /// An env-named path is resolved again after a second, for another
    /// cgroup or rule, and for an exec that the kernel timed earlier.
    #[test]
    fn env_paths_resolve_once_a_second_per_cgroup() {
        let mut seen = EnvPathsSeen::default();
        let p = std::path::Path::new("/etc/app/sa.json");
        let s = ENV_PATH_RECHECK_NS;
        assert!(seen.fresh(1, 7, p, 10 * s));
        assert!(!seen.fresh(1, 7, p, 10 * s + s / 2));
        assert!(seen.fresh(2, 7, p, 10 * s + s / 2), "another cgroup");
        assert!(seen.fresh(1, 8, p, 10 * s + s / 2), "another rule");
        assert!(seen.fresh(1, 7, std::path::Path::new("/etc/app/other.json"), 10 * s + s / 2));
        assert!(seen.fresh(1, 7, p, 11 * s), "a second later");
        assert!(!seen.fresh(1, 7, p, 11 * s + 1));
        assert!(seen.fresh(1, 7, p, 11 * s - 1), "out of order");
        for i in 0..MAX_ENV_PATHS_SEEN as u64 + 1 {
            seen.fresh(100 + i, 7, p, 12 * s);
        }
        assert!(seen.seen.len() <= MAX_ENV_PATHS_SEEN, "bounded");
    }

    #[test]
    fn one_record_per_identity_with_its_kind_and_id() {
        let parsed = Parsed {
            identities: vec![
                Identity::new("aws.access_key", "AKIA1").with("nhi.aws.profile", "a"),
                Identity::new("aws.session_key", "ASIA2"),
            ],
            unparsed: None,
        };
        let with_ids = identity_records(base(), &parsed, "aws-ini");
        assert_eq!(
            with_ids.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
            [
                Some(Credential { id: "AKIA1".into(), kind: "aws.access_key".into() }),
                Some(Credential { id: "ASIA2".into(), kind: "aws.session_key".into() })
            ]
        );
        let recs: Vec<Record> = with_ids.into_iter().map(|(r, _)| record::render(&r)).collect();
        assert_eq!(recs.len(), 2);
        let get = |r: &Record, k: &str| r.attributes.iter().find(|(x, _)| *x == k).map(|(_, v)| v.clone());
        assert_eq!(get(&recs[1], "nhi.kind"), Some("aws.session_key".into()));
        assert_eq!(get(&recs[0], "nhi.id"), Some("AKIA1".into()));
        assert_eq!(get(&recs[0], "nhi.aws.profile"), Some("a".into()));
        assert_eq!(recs[0].attributes.iter().filter(|(k, _)| *k == "nhi.kind").count(), 1);
        let none: Vec<Record> =
            identity_records(base(), &Parsed::unparsed(Unparsed::Binary), "aws-ini").into_iter().map(|(r, c)| {
                assert!(c.is_none(), "a file-level record names no credential");
                record::render(&r)
            }).collect();
        assert_eq!(get(&none[0], "nhi.unparsed.reason"), Some("binary".into()));
        assert_eq!(get(&none[0], "nhi.id"), None);
        let rot = record::render(&record::file::rotation(&base(), &parsed, &Parsed { identities: vec![Identity::new("aws.access_key", "AKIA3")], unparsed: None }).expect("a file access"));
        assert_eq!(rot.event_name, crate::model::EVENT_CREDENTIAL_ROTATION);
        assert_eq!(get(&rot, "nhi.rotation.previous_ids"), Some("AKIA1,ASIA2".into()));
        assert_eq!(get(&rot, "nhi.rotation.identity_changed"), Some(true.into()));
    }
}
