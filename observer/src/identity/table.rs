//! The process table: one entry per process, keyed by
//! ([`ProcKey`]: tgid, start time) so that a reused pid never merges two
//! processes.
//!
//! Input: fork, exec and exit records, the /proc scan at start and /proc
//! look-ups on a miss. Output: the entry for an event's task.
//!
//! Bounded: at most `capacity` entries, least recently used evicted first;
//! exited processes are dropped after a grace period (events already in
//! flight may still name them); a periodic reconciliation against /proc
//! removes processes whose exit record was lost.
use std::{collections::HashMap, num::NonZeroUsize, sync::Arc};

use lru::LruCache;

/// A process: tgid and the group leader's start time (boot-time ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcKey {
    pub tgid: u32,
    pub start_boot_ns: u64,
}

/// Where an entry's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The /proc scan at start or a /proc look-up on a miss.
    Proc,
    /// A fork record (inherits the parent's program until it execs).
    Fork,
    /// An exec record.
    Exec,
    /// Only what an event's task carried (the process was already gone).
    Task,
}

#[derive(Debug, Clone)]
pub struct ProcessEntry {
    pub key: ProcKey,
    /// The start time is known only to /proc's clock-tick resolution.
    pub coarse: bool,
    pub origin: Origin,
    pub ppid: u32,
    /// The parent's key, when known exactly (fork records, scan).
    pub parent: Option<ProcKey>,
    // The strings are `Arc<str>` (16 bytes, no spare capacity): a fork
    // copies its parent's entry, and then shares them instead of copying
    // each (10,000 live processes: 1.3 MB less, `bench memory`).
    pub comm: Arc<str>,
    pub exe: Option<Arc<str>>,
    /// The path given to exec when it is not the executable: a script (the
    /// executable is its interpreter) or a symlink.
    pub exec_path: Option<Arc<str>>,
    /// Masked argv (only when argument capture is on).
    pub args: Option<Arc<[String]>>,
    pub args_truncated: bool,
    pub uid: u32,
    pub gid: u32,
    /// Controlling terminal (`pts/3`), if any.
    pub tty: Option<Arc<str>>,
    /// cgroup at fork/exec/scan time (events carry their own).
    pub cgroup_id: u64,
    /// Boot-time ns of the exit record.
    pub exited: Option<u64>,
}

impl ProcessEntry {
    pub fn new(key: ProcKey, origin: Origin) -> Self {
        Self {
            key,
            coarse: false,
            origin,
            ppid: 0,
            parent: None,
            comm: Arc::from(""),
            exe: None,
            exec_path: None,
            args: None,
            args_truncated: false,
            uid: 0,
            gid: 0,
            tty: None,
            cgroup_id: 0,
            exited: None,
        }
    }
}

/// Counters the stats line reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableCounters {
    /// Entries evicted because the table was full.
    pub evicted: u64,
    /// Exited entries dropped after their grace period.
    pub expired: u64,
    /// Entries removed by reconciliation (their exit record was lost).
    pub reconciled: u64,
}

pub struct ProcessTable {
    entries: LruCache<ProcKey, ProcessEntry>,
    /// Latest key per tgid, to match a coarse (/proc) start time or a
    /// start time of 0 (kernel offsets unavailable).
    by_tgid: HashMap<u32, ProcKey>,
    /// Nanoseconds per clock tick of /proc's start times.
    ns_per_tick: u64,
    pub counters: TableCounters,
}

impl ProcessTable {
    pub fn new(capacity: NonZeroUsize, ns_per_tick: u64) -> Self {
        Self {
            // `sparse`: the index grows with the entries instead of being
            // allocated for the capacity up front (32,768 entries: 1 MiB,
            // all of it touched by 10,000 entries hashed across it).
            entries: LruCache::sparse(capacity),
            by_tgid: HashMap::new(),
            ns_per_tick: ns_per_tick.max(1),
            counters: TableCounters::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn capacity(&self) -> usize {
        self.entries.cap().get()
    }

    pub fn ns_per_tick(&self) -> u64 {
        self.ns_per_tick
    }

    /// Inserts or replaces an entry. The least recently used entry goes when
    /// the table is full.
    pub fn insert(&mut self, entry: ProcessEntry) {
        let key = entry.key;
        if let Some((old_key, _)) = self.entries.push(key, entry)
            && old_key != key
        {
            self.counters.evicted += 1;
            if self.by_tgid.get(&old_key.tgid) == Some(&old_key) {
                self.by_tgid.remove(&old_key.tgid);
            }
        }
        self.by_tgid.insert(key.tgid, key);
    }

    /// Whether a start time seen by the kernel and one read from /proc (or
    /// unknown, 0) name the same process.
    fn same_start(&self, entry: &ProcessEntry, start_boot_ns: u64) -> bool {
        if entry.key.start_boot_ns == start_boot_ns {
            return true;
        }
        if start_boot_ns == 0 || entry.key.start_boot_ns == 0 {
            return true;
        }
        entry.coarse && entry.key.start_boot_ns / self.ns_per_tick == start_boot_ns / self.ns_per_tick
    }

    /// The entry for a process, matching a coarse or unknown start time by
    /// tgid and re-keying it to the exact one.
    pub fn get_mut(&mut self, key: ProcKey) -> Option<&mut ProcessEntry> {
        if self.entries.contains(&key) {
            return self.entries.get_mut(&key);
        }
        let known = *self.by_tgid.get(&key.tgid)?;
        let matches = self.entries.peek(&known).is_some_and(|e| self.same_start(e, key.start_boot_ns));
        if !matches {
            return None;
        }
        if key.start_boot_ns != 0 && known.start_boot_ns != key.start_boot_ns {
            // Re-key to the exact start time.
            let mut entry = self.entries.pop(&known)?;
            entry.key = key;
            entry.coarse = false;
            self.insert(entry);
            return self.entries.get_mut(&key);
        }
        self.entries.get_mut(&known)
    }

    pub fn get(&mut self, key: ProcKey) -> Option<&ProcessEntry> {
        self.get_mut(key).map(|e| &*e)
    }

    /// Looks at an entry without touching its recency.
    #[cfg(test)]
    pub fn peek(&self, key: &ProcKey) -> Option<&ProcessEntry> {
        self.entries.peek(key)
    }

    pub fn remove(&mut self, key: &ProcKey) -> Option<ProcessEntry> {
        let e = self.entries.pop(key)?;
        if self.by_tgid.get(&key.tgid) == Some(key) {
            self.by_tgid.remove(&key.tgid);
        }
        Some(e)
    }

    /// The current key of a tgid, if any.
    pub fn key_of(&self, tgid: u32) -> Option<ProcKey> {
        self.by_tgid.get(&tgid).copied()
    }

    /// Drops exited entries whose exit is older than `grace_ns` at `now_ns`.
    pub fn expire(&mut self, now_ns: u64, grace_ns: u64) {
        let old: Vec<ProcKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.exited.is_some_and(|t| now_ns.saturating_sub(t) > grace_ns))
            .map(|(k, _)| *k)
            .collect();
        for key in old {
            self.remove(&key);
            self.counters.expired += 1;
        }
    }

    /// Removes live-looking entries for which `alive` says the process is
    /// gone (its exit record was lost). Returns how many went.
    pub fn reconcile(&mut self, alive: impl Fn(&ProcessEntry) -> bool) -> usize {
        let dead: Vec<ProcKey> =
            self.entries.iter().filter(|(_, e)| e.exited.is_none() && !alive(e)).map(|(k, _)| *k).collect();
        for key in &dead {
            self.remove(key);
        }
        self.counters.reconciled += dead.len() as u64;
        dead.len()
    }

    /// Ancestors of `key`, nearest first, at most `max`.
    pub fn ancestors(&self, key: ProcKey, max: usize) -> Vec<&ProcessEntry> {
        let mut out: Vec<&ProcessEntry> = Vec::new();
        let mut cur = self.entries.peek(&key).and_then(|e| self.parent_of(e));
        while let Some(p) = cur {
            if out.len() >= max || out.iter().any(|e| e.key == p.key) {
                break;
            }
            out.push(p);
            cur = self.parent_of(p);
        }
        out
    }

    fn parent_of(&self, e: &ProcessEntry) -> Option<&ProcessEntry> {
        match e.parent {
            Some(k) => self.entries.peek(&k),
            // Without an exact key, the live process with that pid, if it
            // started before the child.
            None if e.ppid != 0 => self
                .by_tgid
                .get(&e.ppid)
                .and_then(|k| self.entries.peek(k))
                .filter(|p| p.key.start_boot_ns <= e.key.start_boot_ns || e.key.start_boot_ns == 0),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 10_000_000;

    fn entry(tgid: u32, start: u64, comm: &str) -> ProcessEntry {
        let mut e = ProcessEntry::new(ProcKey { tgid, start_boot_ns: start }, Origin::Exec);
        e.comm = comm.into();
        e
    }

    fn table(cap: usize) -> ProcessTable {
        ProcessTable::new(NonZeroUsize::new(cap).unwrap(), TICK)
    }

    /// Guards pid reuse: two processes with one pid stay two entries.
    #[test]
    fn pid_reuse_never_merges() {
        let mut t = table(8);
        t.insert(entry(100, 5_000, "old"));
        t.insert(entry(100, 9_000_000_000, "new"));
        assert_eq!(t.get(ProcKey { tgid: 100, start_boot_ns: 5_000 }).unwrap().comm.as_ref(), "old");
        assert_eq!(t.get(ProcKey { tgid: 100, start_boot_ns: 9_000_000_000 }).unwrap().comm.as_ref(), "new");
        assert!(t.get(ProcKey { tgid: 100, start_boot_ns: 7_000_000_000 }).is_none(), "a third start is unknown");
    }

    #[test]
    fn coarse_start_is_rekeyed_to_the_exact_one() {
        let mut t = table(8);
        let mut e = entry(7, 123 * TICK, "scanned");
        e.coarse = true;
        t.insert(e);
        let exact = ProcKey { tgid: 7, start_boot_ns: 123 * TICK + 4_567 };
        assert_eq!(t.get(exact).unwrap().comm.as_ref(), "scanned");
        assert!(t.peek(&exact).is_some() && !t.peek(&exact).unwrap().coarse);
        // Another tick is another process.
        assert!(t.get(ProcKey { tgid: 7, start_boot_ns: 124 * TICK + 1 }).is_none());
    }

    #[test]
    fn never_grows_past_capacity() {
        let mut t = table(16);
        for pid in 0..1000 {
            t.insert(entry(pid, u64::from(pid) + 1, "x"));
        }
        assert_eq!(t.len(), 16);
        assert_eq!(t.counters.evicted, 1000 - 16);
        assert_eq!(t.by_tgid.len(), 16, "the pid index is bounded with the table");
    }

    #[test]
    fn exited_entries_expire_after_grace() {
        let mut t = table(8);
        let mut e = entry(1, 1, "gone");
        e.exited = Some(1_000);
        t.insert(e);
        t.insert(entry(2, 2, "alive"));
        t.expire(1_500, 1_000);
        assert_eq!(t.len(), 2);
        t.expire(3_000, 1_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t.counters.expired, 1);
    }

    #[test]
    fn reconcile_removes_lost_exits() {
        let mut t = table(8);
        t.insert(entry(1, 1, "a"));
        t.insert(entry(2, 2, "b"));
        assert_eq!(t.reconcile(|e| e.key.tgid == 1), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.counters.reconciled, 1);
    }

    #[test]
    fn ancestors_follow_exact_keys() {
        let mut t = table(8);
        t.insert(entry(1, 1, "init"));
        let mut sh = entry(10, 10, "sh");
        sh.parent = Some(ProcKey { tgid: 1, start_boot_ns: 1 });
        t.insert(sh);
        let mut cat = entry(20, 20, "cat");
        cat.ppid = 10;
        t.insert(cat);
        let names: Vec<_> = t.ancestors(ProcKey { tgid: 20, start_boot_ns: 20 }, 8).iter().map(|e| e.comm.to_string()).collect();
        assert_eq!(names, ["sh", "init"]);
        // A "parent" that started after the child is a reused pid, not the parent.
        let mut orphan = entry(30, 5, "orphan");
        orphan.ppid = 10;
        t.insert(orphan);
        assert!(t.ancestors(ProcKey { tgid: 30, start_boot_ns: 5 }, 8).is_empty());
    }
}
