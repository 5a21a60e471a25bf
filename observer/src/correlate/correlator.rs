//! The correlator's state machine (see the module docs in `mod.rs`).
use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, SystemTime},
};

use lru::LruCache;

use crate::{identity::table::ProcKey, model::Consumer};

/// Ancestors a connection is checked against (parent, grandparent, ...).
pub const MAX_DEPTH: usize = 4;
/// Credentials remembered per process (the most recent ones).
pub const MAX_CREDS_PER_PROCESS: usize = 8;
/// Distinct destinations a usage delta holds between two flushes; a
/// process that reads a credential and then scans a network still counts
/// every connection, but the destinations past this are counted, not kept.
pub const MAX_DESTINATIONS_PER_DELTA: usize = 256;

#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    /// Same process, connection at most this long after the access: `direct`.
    pub direct_window: Duration,
    /// Same process later, or a descendant: `inferred`, up to this long.
    pub inferred_window: Duration,
    /// Processes with recent credential accesses remembered.
    pub max_processes: NonZeroUsize,
    /// Usage deltas held before the sink must drain them.
    pub max_pending: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            direct_window: Duration::from_secs(10),
            inferred_window: Duration::from_secs(300),
            max_processes: NonZeroUsize::new(16_384).unwrap_or(NonZeroUsize::MIN),
            max_pending: 4_096,
        }
    }
}

/// What identifies a usage: the credential, how it was obtained, and the
/// workload that used it. `key` is its canonical text (the store's unique
/// key); the rest is for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageHead {
    /// Set by [`UsageHead::new`] only (`key_hash` is made from it there).
    pub key: Arc<str>,
    pub nhi_id: String,
    pub kind: String,
    pub source: String,
    pub host: String,
    /// The workload that used the credential.
    pub consumer: Consumer,
    /// A hash of `key`, made once ([`UsageHead::new`]): the pending map
    /// is keyed by it rather than hashing the key's long text per access.
    key_hash: u64,
}

impl UsageHead {
    pub fn new(key: Arc<str>, nhi_id: String, kind: String, source: String, host: String, consumer: Consumer) -> Self {
        use std::hash::BuildHasher;
        // SipHash with fixed keys: the same text, the same hash.
        let key_hash = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(&*key);
        Self { key, nhi_id, kind, source, host, consumer, key_hash }
    }
}

/// A pending delta's key: its head, hashed by the key's hash made once,
/// equal by the key (the pointer first: heads of one usage are shared).
struct Pending(Arc<UsageHead>);

impl std::hash::Hash for Pending {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.key_hash);
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || same_key(&self.0, &other.0)
    }
}

/// Whether two heads name one usage: their keys' hashes first, the texts
/// only when those agree.
fn same_key(a: &UsageHead, b: &UsageHead) -> bool {
    a.key_hash == b.key_hash && a.key == b.key
}

impl Eq for Pending {}

/// A credential use by a process.
#[derive(Debug, Clone)]
pub struct Access {
    pub head: Arc<UsageHead>,
    pub process: ProcKey,
    /// Kernel boot-time ns of the (last folded) access.
    pub boot_ns: u64,
    pub wall: SystemTime,
    /// Accesses this stands for (`nhi.access.count`).
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// `server.address`: the TLS/QUIC server name, HTTP host, or the peer IP.
    pub address: String,
    pub port: u16,
}

/// A connection by a process.
#[derive(Debug, Clone)]
pub struct Connection<'a> {
    pub process: ProcKey,
    /// Ancestors, nearest first (parent, grandparent, ...).
    pub ancestors: &'a [ProcKey],
    pub boot_ns: u64,
    pub wall: SystemTime,
    pub destination: Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Confidence {
    /// Same process, within `direct_window` of the access.
    Direct,
    /// Same process later, or a descendant, within `inferred_window`.
    Inferred,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Inferred => "inferred",
        }
    }
}

pub type DestKey = (Destination, Confidence);

#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub first: SystemTime,
    pub last: SystemTime,
    pub count: u64,
}

impl Seen {
    fn new(t: SystemTime, count: u64) -> Self {
        Self { first: t, last: t, count }
    }

    fn add(&mut self, t: SystemTime, count: u64) {
        self.first = self.first.min(t);
        self.last = self.last.max(t);
        self.count += count;
    }
}

/// What happened to one usage since the last drain.
#[derive(Debug, Clone)]
pub struct UsageDelta {
    pub head: Arc<UsageHead>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub accesses: u64,
    pub connections: u64,
    /// Hashed with the fast hasher the LRU caches use: a connection looks
    /// its destination up in every delta it is linked to (SipHash of the
    /// name showed in `bench pipeline`'s profile).
    pub destinations: Destinations,
}

/// Where a usage's connections went since the last drain.
pub type Destinations = HashMap<DestKey, Seen, lru::DefaultHasher>;

impl UsageDelta {
    fn new(head: Arc<UsageHead>, t: SystemTime) -> Self {
        Self { head, first_seen: t, last_seen: t, accesses: 0, connections: 0, destinations: Destinations::default() }
    }

    fn touch(&mut self, t: SystemTime) {
        self.first_seen = self.first_seen.min(t);
        self.last_seen = self.last_seen.max(t);
    }
}

struct Recent {
    head: Arc<UsageHead>,
    boot_ns: u64,
}

pub struct Correlator {
    cfg: CorrelatorConfig,
    recent: LruCache<ProcKey, Vec<Recent>>,
    /// By usage key ([`Pending`]: its hash made once per head; hashing the
    /// long text per access showed in the profile).
    pending: HashMap<Pending, UsageDelta, lru::DefaultHasher>,
    /// Connections linked to at least one credential, and not.
    pub linked: u64,
    pub unlinked: u64,
    /// Links whose destination a full usage delta could not keep
    /// ([`MAX_DESTINATIONS_PER_DELTA`]).
    pub destinations_dropped: u64,
    /// A connection's links, kept between connections (no allocation each).
    links: Vec<(Arc<UsageHead>, Confidence)>,
}

impl Correlator {
    pub fn new(cfg: CorrelatorConfig) -> Self {
        Self {
            recent: LruCache::sparse(cfg.max_processes),
            pending: HashMap::default(),
            cfg,
            linked: 0,
            unlinked: 0,
            destinations_dropped: 0,
            links: Vec::new(),
        }
    }

    /// Usage deltas waiting for the sink.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the sink should drain now (the pending map is full).
    pub fn full(&self) -> bool {
        self.pending.len() >= self.cfg.max_pending
    }

    pub fn on_access(&mut self, a: Access) {
        let delta = self
            .pending
            .entry(Pending(a.head.clone()))
            .or_insert_with(|| UsageDelta::new(a.head.clone(), a.wall));
        delta.touch(a.wall);
        delta.accesses += a.count;
        let list = self.recent.get_or_insert_mut(a.process, Vec::new);
        // Heads of one usage are shared: the pointers answer first, the keys
        // (long texts) only when no pointer does. A list holds a usage once.
        let at = list
            .iter()
            .position(|r| Arc::ptr_eq(&r.head, &a.head))
            .or_else(|| list.iter().position(|r| same_key(&r.head, &a.head)));
        match at.map(|i| &mut list[i]) {
            Some(r) => r.boot_ns = r.boot_ns.max(a.boot_ns),
            None => {
                if list.len() >= MAX_CREDS_PER_PROCESS
                    && let Some(oldest) = list.iter().enumerate().min_by_key(|(_, r)| r.boot_ns).map(|(i, _)| i)
                {
                    list.swap_remove(oldest);
                }
                list.push(Recent { head: a.head, boot_ns: a.boot_ns });
            }
        }
    }

    /// Links a connection to the credentials its process and ancestors
    /// accessed before it; returns how many usages it was linked to.
    pub fn on_connection(&mut self, c: &Connection<'_>) -> usize {
        let direct = nanos(self.cfg.direct_window);
        let inferred = nanos(self.cfg.inferred_window);
        // Best confidence per usage: a credential reached both through the
        // process and an ancestor counts once.
        let mut links = std::mem::take(&mut self.links);
        links.clear();
        let lineage = std::iter::once(&c.process).chain(c.ancestors.iter().take(MAX_DEPTH));
        for (depth, key) in lineage.enumerate() {
            let Some(list) = self.recent.peek(key) else { continue };
            for r in list {
                let Some(dt) = c.boot_ns.checked_sub(r.boot_ns) else { continue };
                let confidence = if depth == 0 && dt <= direct {
                    Confidence::Direct
                } else if dt <= inferred {
                    Confidence::Inferred
                } else {
                    continue;
                };
                match links.iter_mut().find(|(h, _)| Arc::ptr_eq(h, &r.head) || same_key(h, &r.head)) {
                    Some((_, best)) => *best = (*best).min(confidence),
                    None => links.push((r.head.clone(), confidence)),
                }
            }
        }
        if links.is_empty() {
            self.unlinked += 1;
            self.links = links;
            return 0;
        }
        self.linked += 1;
        let n = links.len();
        // The destination key, made once per confidence (not per link).
        let mut keys: [Option<DestKey>; 2] = [None, None];
        for (head, confidence) in links.drain(..) {
            let delta =
                self.pending.entry(Pending(head.clone())).or_insert_with(|| UsageDelta::new(head.clone(), c.wall));
            delta.touch(c.wall);
            delta.connections += 1;
            let slot = match confidence {
                Confidence::Direct => 0,
                Confidence::Inferred => 1,
            };
            let key = keys[slot].get_or_insert_with(|| (c.destination.clone(), confidence));
            if let Some(seen) = delta.destinations.get_mut(key) {
                seen.add(c.wall, 1);
            } else if delta.destinations.len() < MAX_DESTINATIONS_PER_DELTA {
                delta.destinations.insert(key.clone(), Seen::new(c.wall, 1));
            } else {
                self.destinations_dropped += 1;
            }
        }
        self.links = links;
        n
    }

    /// Hands over every pending delta.
    pub fn drain(&mut self, out: &mut Vec<UsageDelta>) {
        out.extend(self.pending.drain().map(|(_, d)| d));
    }

    /// Forgets accesses too old to link anything any more (cheap; call on
    /// ticks). `now_ns` is kernel boot time.
    pub fn expire(&mut self, now_ns: u64) {
        let keep = nanos(self.cfg.inferred_window);
        let stale: Vec<ProcKey> = self
            .recent
            .iter_mut()
            .filter_map(|(k, list)| {
                list.retain(|r| now_ns.saturating_sub(r.boot_ns) <= keep);
                list.is_empty().then_some(*k)
            })
            .collect();
        for k in stale {
            self.recent.pop(&k);
        }
    }

    pub fn processes(&self) -> usize {
        self.recent.len()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn head(id: &str) -> Arc<UsageHead> {
        Arc::new(UsageHead::new(
            Arc::from(format!("{id}|file|exe")),
            id.into(),
            "aws.access_key".into(),
            "file".into(),
            "h".into(),
            Consumer { executable_path: Some("/usr/bin/x".into()), ..Consumer::default() },
        ))
    }

    fn proc(tgid: u32) -> ProcKey {
        ProcKey { tgid, start_boot_ns: u64::from(tgid) * 7 }
    }

    fn at(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    fn access(c: &mut Correlator, id: &str, p: ProcKey, ns: u64, count: u64) {
        c.on_access(Access { head: head(id), process: p, boot_ns: ns, wall: at(ns), count });
    }

    fn connect(c: &mut Correlator, p: ProcKey, ancestors: &[ProcKey], ns: u64, host: &str) -> usize {
        c.on_connection(&Connection {
            process: p,
            ancestors,
            boot_ns: ns,
            wall: at(ns),
            destination: Destination { address: host.into(), port: 443 },
        })
    }

    fn drained(c: &mut Correlator) -> HashMap<String, UsageDelta> {
        let mut v = Vec::new();
        c.drain(&mut v);
        v.into_iter().map(|d| (d.head.nhi_id.clone(), d)).collect()
    }

    #[test]
    fn a_usage_delta_keeps_a_bounded_number_of_destinations() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let p = ProcKey { tgid: 7, start_boot_ns: 1 };
        c.on_access(Access { head: head("AKIASCAN"), process: p, boot_ns: S, wall: UNIX_EPOCH, count: 1 });
        let extra = 10;
        for port in 0..(MAX_DESTINATIONS_PER_DELTA + extra) {
            let destination = Destination { address: "10.0.0.1".into(), port: u16::try_from(port).unwrap() };
            c.on_connection(&Connection { process: p, ancestors: &[], boot_ns: 2 * S, wall: UNIX_EPOCH, destination });
        }
        let mut out = Vec::new();
        c.drain(&mut out);
        assert_eq!(out[0].connections, (MAX_DESTINATIONS_PER_DELTA + extra) as u64, "every connection counted");
        assert_eq!(out[0].destinations.len(), MAX_DESTINATIONS_PER_DELTA);
        assert_eq!(c.destinations_dropped, extra as u64);
    }

    #[test]
    fn same_process_within_seconds_is_direct_later_inferred() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        access(&mut c, "AKIA1", proc(10), 100 * S, 3);
        assert_eq!(connect(&mut c, proc(10), &[], 102 * S, "sts.amazonaws.com"), 1);
        assert_eq!(connect(&mut c, proc(10), &[], 200 * S, "s3.amazonaws.com"), 1);
        let d = &drained(&mut c)["AKIA1"];
        assert_eq!(d.accesses, 3, "counts add the records' access counts");
        assert_eq!(d.connections, 2);
        let dest = |h: &str, conf| d.destinations.get(&(Destination { address: h.into(), port: 443 }, conf));
        assert_eq!(dest("sts.amazonaws.com", Confidence::Direct).map(|s| s.count), Some(1));
        assert_eq!(dest("s3.amazonaws.com", Confidence::Inferred).map(|s| s.count), Some(1));
        assert_eq!(d.first_seen, at(100 * S));
        assert_eq!(d.last_seen, at(200 * S));
    }

    #[test]
    fn children_are_inferred_strangers_and_earlier_connections_are_not_linked() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        // A connection before the access is not its use.
        assert_eq!(connect(&mut c, proc(10), &[], 99 * S, "early.example"), 0);
        access(&mut c, "AKIA1", proc(10), 100 * S, 1);
        // The child (a curl the script runs) connects: inferred.
        assert_eq!(connect(&mut c, proc(11), &[proc(10), proc(1)], 101 * S, "api.example"), 1);
        // An unrelated process: nothing.
        assert_eq!(connect(&mut c, proc(12), &[proc(1)], 101 * S, "api.example"), 0);
        // A reused pid is another process.
        let reused = ProcKey { tgid: 10, start_boot_ns: 1 };
        assert_eq!(connect(&mut c, reused, &[], 101 * S, "api.example"), 0);
        // Past the inferred window: nothing.
        assert_eq!(connect(&mut c, proc(10), &[], 100 * S + 301 * S, "late.example"), 0);
        let d = &drained(&mut c)["AKIA1"];
        assert_eq!(d.connections, 1);
        assert_eq!(d.destinations.keys().map(|(_, conf)| *conf).collect::<Vec<_>>(), [Confidence::Inferred]);
        assert_eq!((c.linked, c.unlinked), (1, 4));
    }

    #[test]
    fn a_connection_counts_once_per_usage_with_its_best_confidence() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        access(&mut c, "AKIA1", proc(1), 10 * S, 1);
        access(&mut c, "AKIA1", proc(10), 10 * S, 1);
        access(&mut c, "ghp", proc(10), 10 * S, 1);
        assert_eq!(connect(&mut c, proc(10), &[proc(1)], 11 * S, "x"), 2);
        let d = drained(&mut c);
        assert_eq!(d["AKIA1"].connections, 1);
        assert_eq!(d["AKIA1"].destinations.keys().next().map(|k| k.1), Some(Confidence::Direct));
        assert_eq!(d["ghp"].connections, 1);
        assert!(drained(&mut c).is_empty(), "drain empties");
    }

    #[test]
    fn bounded_and_expiring() {
        let cfg = CorrelatorConfig {
            max_processes: NonZeroUsize::new(4).unwrap(),
            max_pending: 3,
            ..CorrelatorConfig::default()
        };
        let mut c = Correlator::new(cfg);
        for p in 0..10 {
            for id in 0..20 {
                access(&mut c, &format!("k{id}"), proc(p), S, 1);
            }
        }
        assert_eq!(c.processes(), 4);
        assert!(c.recent.iter().all(|(_, l)| l.len() <= MAX_CREDS_PER_PROCESS));
        assert!(c.full());
        c.expire(1000 * S);
        assert_eq!(c.processes(), 0);
    }

    proptest! {
        /// Whatever the order and timing, accesses add up exactly and a
        /// connection never links to an access that came after it.
        #[test]
        fn counts_add_up_and_links_respect_time(
            events in proptest::collection::vec((0u8..2, 0u32..4, 0u64..600, 1u64..5, 0u8..3), 1..200)
        ) {
            let mut c = Correlator::new(CorrelatorConfig::default());
            let mut total = HashMap::<String, u64>::new();
            let mut first_access = HashMap::<u32, u64>::new();
            let mut links = 0u64;
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.2);
            for (what, p, t, count, id) in sorted {
                let id = format!("k{id}");
                if what == 0 {
                    access(&mut c, &id, proc(p), t * S, count);
                    *total.entry(id).or_default() += count;
                    first_access.entry(p).or_insert(t);
                } else {
                    let n = connect(&mut c, proc(p), &[], t * S, "d");
                    if n > 0 {
                        prop_assert!(first_access.get(&p).is_some_and(|f| *f <= t));
                    }
                    links += n as u64;
                }
            }
            let d = drained(&mut c);
            for (id, n) in total {
                prop_assert_eq!(d[&id].accesses, n);
            }
            prop_assert_eq!(d.values().map(|d| d.connections).sum::<u64>(), links);
        }
    }
}
