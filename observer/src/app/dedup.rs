//! De-duplication accounting: turns the kernel's monotonic per-key totals
//! into exact per-record counts (`nhi.access.count`), and reports the tail
//! of opens folded after a key's last record.
//!
//! Invariant: for every key, the counts of all records emitted for it sum
//! to the kernel's total for it (unless the kernel's LRU evicted the key
//! between two sweeps, which resets its total; then the opens folded since
//! the last sweep are lost, and said so at debug level).
//!
//! An event whose total is not above the key's reported count carries
//! opens already counted: two threads of a process opening the file on two
//! CPUs at once both passed the kernel's window test and both emitted
//! (the second to arrive has the same total, or a lower one), or a sweep
//! read the kernel's total while the event was still in the ring. Such an
//! event counts nothing and has no records of its own. Only a key the
//! kernel evicted and created anew starts its total below the count: the
//! kernel's value for the key, read then, tells the two apart (a key's
//! total never falls). Before, every such event counted its whole total
//! again (`bench burst`, 100,000 opens/s from two threads: 0.6% over; a
//! 1 ms window: 2.5 times the opens). The kernel inserts a new key only if
//! still absent, so two CPUs creating it at once count both opens.

use std::{collections::HashMap, sync::Arc, time::Duration};

use observer_common::{DedupKey, DedupValue};

use crate::{correlate::UsageHead, decode::FileOpen, model::records::CredentialAccess};

/// A file access's record and the usage it counts for (`None`: it names no
/// credential), as an open made them and its de-dup tails repeat them.
#[derive(Debug, Clone)]
pub struct Accessed {
    pub record: CredentialAccess,
    pub head: Option<Arc<UsageHead>>,
}

/// Keys tracked at most; the least recently seen go first.
pub const MAX_TRACKED: usize = 16384;

struct Tracked {
    /// Opens already reported in records.
    reported: u64,
    /// The key's last records (one per identity), re-emitted with the tail
    /// count; dropped (memory: a few KiB per key, for every process and
    /// file) once no tail can follow them (see [`Dedup::sweep`]).
    last: Vec<Accessed>,
    seen_tick: u64,
}

pub struct Dedup {
    keys: HashMap<DedupKey, Tracked>,
    /// Processes (tgid, start) that exited, with their exit time (boot
    /// ns), for as long as their keys may still hold records: a key of an
    /// exited process is forgotten with its records, since no open can
    /// follow (10,000 short-lived readers left 10,000 keys for an hour).
    exited: HashMap<(u32, u64), u64>,
    tick: u64,
    /// How long after a key's last emitted event the kernel may still fold
    /// opens into it: the de-dup window, and a margin.
    foldable_ns: u64,
}

/// The kernel's key for an event (same fields, same path hash).
pub fn key_of(ev: &FileOpen) -> DedupKey {
    use std::os::unix::ffi::OsStrExt;
    let access = observer_common::dedup_access_class(ev.open_flags);
    let (tgid, start_ns) = (ev.task.tgid, ev.task.start_boot_ns);
    // No file (a failed open, or an io_uring fixed-file slot): the path.
    if ev.ret < 0 || ev.ino == 0 {
        let bytes = ev.path.as_bytes();
        let bytes = &bytes[..bytes.len().min(observer_common::PATH_LEN - 1)];
        let h = bytes.iter().fold(observer_common::FNV1A_OFFSET, |h, &c| observer_common::fnv1a_step(h, c));
        DedupKey { start_ns, tgid, access, dev: 0, ino: h, errno: u32::try_from(-ev.ret.min(0)).unwrap_or(0), _pad0: 0 }
    } else {
        DedupKey { start_ns, tgid, access, dev: ev.dev, ino: ev.ino, errno: 0, _pad0: 0 }
    }
}

/// Added to the de-dup window before a key's records are dropped (sweeps
/// run once a second).
const FOLD_MARGIN: Duration = Duration::from_secs(2);

/// How long an exit is remembered past the window: a few sweeps.
const EXIT_MARGIN_NS: u64 = 3_000_000_000;

impl Dedup {
    /// For the kernel's de-dup `window` (`dedup_interval_ms`).
    pub fn new(window: Duration) -> Self {
        let foldable = window.saturating_add(FOLD_MARGIN);
        Self { keys: HashMap::new(), exited: HashMap::new(), tick: 0, foldable_ns: u64::try_from(foldable.as_nanos()).unwrap_or(u64::MAX) }
    }

    /// The count an event's records stand for, and remembers the records;
    /// `None` for an event whose opens are already counted (see the
    /// module's docs): no count, no records. `lookup` reads the kernel's
    /// value for the key (only for an event not above the count).
    pub fn on_event(
        &mut self,
        ev: &FileOpen,
        records: &[Accessed],
        lookup: impl FnOnce(&DedupKey) -> Option<DedupValue>,
    ) -> Option<u64> {
        if ev.dedup_total == 0 {
            return Some(1); // de-duplication off
        }
        let key = key_of(ev);
        let tick = self.tick;
        let total = ev.dedup_total;
        let count = match self.keys.get(&key) {
            Some(t) if total > t.reported => total - t.reported,
            Some(t) => match lookup(&key) {
                // The same key: its opens are counted.
                Some(v) if v.total >= t.reported => return None,
                _ => {
                    tracing::debug!(reported = t.reported, total, "de-dup key was evicted in the kernel and restarted");
                    total
                }
            },
            None => total,
        };
        if self.keys.len() >= MAX_TRACKED && !self.keys.contains_key(&key) {
            self.evict_oldest();
        }
        self.keys.insert(key, Tracked { reported: total, last: records.to_vec(), seen_tick: tick });
        Some(count)
    }

    /// The process (tgid, start time) exited at `exit_ns` (boot time).
    pub fn on_exit(&mut self, tgid: u32, start_ns: u64, exit_ns: u64) {
        self.exited.insert((tgid, start_ns), exit_ns);
    }

    /// Reports tails: for each key whose kernel total grew since its last
    /// record, the key's last record with the new count and time.
    /// `lookup` reads the kernel's value; `None` means the key is gone.
    /// `now_ns` is kernel boot time.
    ///
    /// A key whose tail is reported and whose last emitted event is older
    /// than the window (and a margin) cannot fold any more opens: its next
    /// open is an event with records of its own. Its records are dropped
    /// then (only its count is kept). Should its total grow all the same
    /// (that event is still on its way, or was lost in the ring), the count
    /// waits for the key's next record, which then carries it.
    pub fn sweep(
        &mut self,
        mut lookup: impl FnMut(&DedupKey) -> Option<DedupValue>,
        mut wall: impl FnMut(u64) -> std::time::SystemTime,
        now_ns: u64,
        out: &mut Vec<(Vec<Accessed>, u64, DedupKey, u64)>,
    ) {
        self.tick += 1;
        let tick = self.tick;
        let foldable_ns = self.foldable_ns;
        let exited = &self.exited;
        self.keys.retain(|key, t| {
            let Some(v) = lookup(key) else { return false };
            if v.total > t.reported && t.last.is_empty() {
                // See above: the key's next record carries the count.
            } else if v.total == t.reported {
                if !t.last.is_empty() && now_ns.saturating_sub(v.emitted_ns) > foldable_ns {
                    t.last = Vec::new();
                }
                if t.last.is_empty() && exited.contains_key(&(key.tgid, key.start_ns)) {
                    // Everything reported, and its process is gone.
                    return false;
                }
            } else if v.total > t.reported {
                let time = wall(v.last_ns);
                let records = t.last.iter().cloned().map(|mut a| {
                    a.record.time = time;
                    a
                });
                out.push((records.collect(), v.total - t.reported, *key, v.last_ns));
                t.reported = v.total;
                t.seen_tick = tick;
            }
            // Forget keys quiet for an hour of sweeps; the kernel keeps them.
            tick - t.seen_tick < 3600
        });
        // By then every key of the process has had its records dropped (its
        // last event came before the exit) and so is forgotten.
        let keep_ns = foldable_ns.saturating_add(EXIT_MARGIN_NS);
        self.exited.retain(|_, exit_ns| now_ns.saturating_sub(*exit_ns) <= keep_ns);
        // A burst's table stays allocated after its keys are gone.
        if self.keys.capacity() > 1024 && self.keys.len() < self.keys.capacity() / 4 {
            self.keys.shrink_to_fit();
        }
        if self.exited.capacity() > 1024 && self.exited.len() < self.exited.capacity() / 4 {
            self.exited.shrink_to_fit();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.keys.iter().min_by_key(|(_, t)| t.seen_tick).map(|(k, _)| *k) {
            self.keys.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use observer_common::{MatchKind, OpenSyscall};

    use super::*;
    use crate::decode::Task;

    fn open(tgid: u32, start: u64, total: u64) -> FileOpen {
        open_at(tgid, start, total, 0)
    }

    fn open_at(tgid: u32, start: u64, total: u64, boot_ns: u64) -> FileOpen {
        FileOpen {
            boot_ns,
            task: Task { tgid, pid: tgid, ppid: 1, uid: 0, gid: 0, cgroup_id: 0, start_boot_ns: start, comm: "t".into() },
            syscall: OpenSyscall::OpenAt,
            ret: 3,
            dev: 1,
            ino: 2,
            open_flags: 0,
            mode: 0,
            rule_id: 1,
            match_kind: MatchKind::Inode,
            path: OsString::from("/x"),
            path_truncated: false,
            resolved: None,
            resolved_is_base: false,
            exe: None,
            dedup_total: total,
            fixed_file: false,
        }
    }

    fn record() -> [Accessed; 1] {
        [Accessed {
            record: CredentialAccess {
                time: std::time::SystemTime::UNIX_EPOCH,
                host_name: "".into(),
                source: crate::model::records::AccessSource::File(Box::default()),
                record_id: None,
            },
            head: None,
        }]
    }

    /// Regression: a new process that reuses a pid used to share the old
    /// one's de-dup key, so its opens were folded into the old count.
    #[test]
    fn pid_reuse_is_a_new_key() {
        assert_ne!(key_of(&open(10, 1_000, 1)), key_of(&open(10, 2_000, 1)));
    }

    #[test]
    fn counts_are_differences_of_the_kernel_totals() {
        let mut d = Dedup::new(Duration::from_secs(1));
        assert_eq!(d.on_event(&open(10, 1, 1), &record(), |_| None), Some(1));
        let mut out = Vec::new();
        // Kernel folded 4 more: the sweep reports them once.
        let v = DedupValue { emitted_ns: 0, last_ns: 5, total: 5 };
        d.sweep(|_| Some(v), |_| std::time::SystemTime::UNIX_EPOCH, 1, &mut out);
        assert_eq!(out.iter().map(|(_, n, _, _)| n).sum::<u64>(), 4);
        out.clear();
        d.sweep(|_| Some(v), |_| std::time::SystemTime::UNIX_EPOCH, 1, &mut out);
        assert!(out.is_empty(), "nothing new, nothing reported");
        // The next emitted event carries total 7: one more folded, plus it.
        assert_eq!(d.on_event(&open(10, 1, 7), &record(), |_| None), Some(2));
        // Evicted in the kernel and restarted (a window later): counts
        // restart too.
        assert_eq!(d.on_event(&open_at(10, 1, 1, 2_000_000_000), &record(), |_| None), Some(1));
        // De-dup off: every record is one open.
        assert_eq!(d.on_event(&open(11, 1, 0), &record(), |_| None), Some(1));
    }

    /// Guards the memory of the de-dup tracker: every (process, file) key
    /// kept a copy of its last records for as long as the kernel kept the
    /// key, though no tail can follow once the window has passed.
    #[test]
    fn records_are_dropped_once_no_tail_can_follow_and_counts_stay_exact() {
        const S: u64 = 1_000_000_000;
        let mut d = Dedup::new(Duration::from_secs(1));
        let key = key_of(&open(10, 1, 1));
        assert_eq!(d.on_event(&open(10, 1, 1), &record(), |_| None), Some(1));
        let mut out = Vec::new();
        let quiet = DedupValue { emitted_ns: 10 * S, last_ns: 10 * S, total: 1 };
        let never = |_: u64| std::time::SystemTime::UNIX_EPOCH;
        // Within the window (and its margin): kept, a tail may come.
        d.sweep(|_| Some(quiet), never, 12 * S, &mut out);
        assert_eq!(d.keys[&key].last.len(), 1);
        // Past it: dropped, the count kept.
        d.sweep(|_| Some(quiet), never, 14 * S, &mut out);
        assert!(d.keys[&key].last.is_empty() && d.keys[&key].reported == 1);
        assert!(out.is_empty());
        // The next open is an event; the sweep may see its total first: the
        // event's record carries the count (here 1 lost in the ring, 1 its own).
        let grown = DedupValue { emitted_ns: 20 * S, last_ns: 20 * S, total: 3 };
        d.sweep(|_| Some(grown), never, 20 * S, &mut out);
        assert!(out.is_empty(), "no tail without records");
        assert_eq!(d.on_event(&open_at(10, 1, 3, 20 * S), &record(), |_| None), Some(2));
        assert_eq!(d.keys[&key].last.len(), 1, "the new event's records are kept");
        // Folded after it: the tail is reported with them.
        let folded = DedupValue { emitted_ns: 20 * S, last_ns: 20 * S + 5, total: 6 };
        d.sweep(|_| Some(folded), never, 20 * S + 10, &mut out);
        assert_eq!(out.iter().map(|(_, n, _, _)| *n).sum::<u64>(), 3);
    }

    /// Guards the memory of the de-dup tracker: short-lived readers (one
    /// key per process and file) left their keys, counts only, for an hour.
    /// A key of an exited process goes with its records; a live process's
    /// key keeps its count (its next open must count from it), and the
    /// exit is forgotten once no key can need it.
    #[test]
    fn an_exited_process_s_keys_are_forgotten_once_their_records_are_dropped() {
        const S: u64 = 1_000_000_000;
        let mut d = Dedup::new(Duration::from_secs(1));
        let (gone, alive) = (key_of(&open(10, 1, 1)), key_of(&open(11, 1, 1)));
        assert_eq!(d.on_event(&open(10, 1, 1), &record(), |_| None), Some(1));
        assert_eq!(d.on_event(&open(11, 1, 1), &record(), |_| None), Some(1));
        d.on_exit(10, 1, 10 * S);
        let mut out = Vec::new();
        let quiet = DedupValue { emitted_ns: 10 * S, last_ns: 10 * S, total: 1 };
        let never = |_: u64| std::time::SystemTime::UNIX_EPOCH;
        // Within the window: both kept with their records (a tail may come).
        d.sweep(|_| Some(quiet), never, 12 * S, &mut out);
        assert_eq!((d.keys[&gone].last.len(), d.keys[&alive].last.len()), (1, 1));
        // Past it: the exited process's key is gone, the live one's count kept.
        d.sweep(|_| Some(quiet), never, 14 * S, &mut out);
        assert!(!d.keys.contains_key(&gone));
        assert!(d.keys[&alive].last.is_empty() && d.keys[&alive].reported == 1);
        assert!(out.is_empty());
        // A pid reused by a new process is a new key, counted from its own total.
        assert_eq!(d.on_event(&open(10, 2, 1), &record(), |_| None), Some(1));
        // The exit is forgotten a few sweeps later.
        d.sweep(|_| Some(quiet), never, 17 * S, &mut out);
        assert!(d.exited.is_empty());
        assert_eq!(d.len(), 2);
    }

    /// An event not above the key's count: a duplicate while the kernel's
    /// key still holds at least that count (two CPUs emitting at once, or
    /// a sweep that read the total while the event was in the ring), a
    /// restart once the key was evicted and created anew.
    #[test]
    fn an_event_not_above_the_count_is_a_duplicate_unless_the_key_was_created_anew() {
        const S: u64 = 1_000_000_000;
        let mut d = Dedup::new(Duration::from_secs(1));
        let kernel = |total| move |_: &DedupKey| Some(DedupValue { emitted_ns: 0, last_ns: 0, total });
        assert_eq!(d.on_event(&open_at(10, 1, 1, S), &record(), kernel(1)), Some(1));
        // Two CPUs at once: the same total twice, the second counts nothing.
        assert_eq!(d.on_event(&open_at(10, 1, 3129, 2 * S), &record(), kernel(3129)), Some(3128));
        assert_eq!(d.on_event(&open_at(10, 1, 3129, 2 * S + 40), &record(), kernel(3129)), None);
        // Out of order: the later total first, then the earlier one.
        assert_eq!(d.on_event(&open_at(10, 1, 6000, 3 * S + 40), &record(), kernel(6000)), Some(2871));
        assert_eq!(d.on_event(&open_at(10, 1, 5999, 3 * S), &record(), kernel(6000)), None);
        // A sweep reported the kernel's total while an event was in the ring.
        let mut out = Vec::new();
        d.sweep(|_| Some(DedupValue { emitted_ns: 3 * S, last_ns: 4 * S, total: 6100 }), |_| std::time::SystemTime::UNIX_EPOCH, 4 * S, &mut out);
        assert_eq!(out.iter().map(|(_, n, _, _)| *n).sum::<u64>(), 100);
        assert_eq!(d.on_event(&open_at(10, 1, 6050, 4 * S), &record(), kernel(6100)), None);
        assert_eq!(d.on_event(&open_at(10, 1, 6200, 5 * S), &record(), kernel(6200)), Some(100));
        // Evicted and created anew: its total starts below the count.
        assert_eq!(d.on_event(&open_at(10, 1, 1, 6 * S), &record(), kernel(1)), Some(1));
        assert_eq!(d.on_event(&open_at(10, 1, 2, 7 * S), &record(), kernel(2)), Some(1));
    }
}
