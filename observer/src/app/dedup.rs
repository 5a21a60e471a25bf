//! De-duplication accounting: turns the kernel's monotonic per-key totals
//! into exact per-record counts (`nhi.access.count`), and reports the tail
//! of opens folded after a key's last record.
//!
//! Invariant: for every key, the counts of all records emitted for it sum
//! to the kernel's total for it (unless the kernel's LRU evicted the key
//! between two sweeps, which resets its total; then the opens folded since
//! the last sweep are lost, and said so at debug level).
use std::{collections::HashMap, sync::Arc};

use observer_common::{DedupKey, DedupValue};

use crate::{correlate::UsageHead, decode::FileOpen, model::Record};

/// A file access's record and the usage it counts for (`None`: it names no
/// credential), as an open made them and its de-dup tails repeat them.
#[derive(Debug, Clone)]
pub struct Accessed {
    pub record: Record,
    pub head: Option<Arc<UsageHead>>,
}

/// Keys tracked at most; the least recently seen go first.
pub const MAX_TRACKED: usize = 16384;

struct Tracked {
    /// Opens already reported in records.
    reported: u64,
    /// The key's last records (one per identity), re-emitted with the tail
    /// count.
    last: Vec<Accessed>,
    seen_tick: u64,
}

#[derive(Default)]
pub struct Dedup {
    keys: HashMap<DedupKey, Tracked>,
    tick: u64,
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

impl Dedup {
    /// The count an event's records stand for; remembers the records.
    pub fn on_event(&mut self, ev: &FileOpen, records: &[Accessed]) -> u64 {
        if ev.dedup_total == 0 {
            return 1; // de-duplication off
        }
        let key = key_of(ev);
        let tick = self.tick;
        let total = ev.dedup_total;
        let count = match self.keys.get(&key) {
            Some(t) if total > t.reported => total - t.reported,
            Some(t) => {
                tracing::debug!(reported = t.reported, total, "de-dup key was evicted in the kernel and restarted");
                total
            }
            None => total,
        };
        if self.keys.len() >= MAX_TRACKED && !self.keys.contains_key(&key) {
            self.evict_oldest();
        }
        self.keys.insert(key, Tracked { reported: total, last: records.to_vec(), seen_tick: tick });
        count
    }

    /// Reports tails: for each key whose kernel total grew since its last
    /// record, the key's last record with the new count and time.
    /// `lookup` reads the kernel's value; `None` means the key is gone.
    pub fn sweep(
        &mut self,
        mut lookup: impl FnMut(&DedupKey) -> Option<DedupValue>,
        mut wall: impl FnMut(u64) -> std::time::SystemTime,
        out: &mut Vec<(Vec<Accessed>, u64, DedupKey, u64)>,
    ) {
        self.tick += 1;
        let tick = self.tick;
        self.keys.retain(|key, t| {
            let Some(v) = lookup(key) else { return false };
            if v.total > t.reported {
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
        FileOpen {
            boot_ns: 0,
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
            record: Record { time: std::time::SystemTime::UNIX_EPOCH, event_name: "t", attributes: Vec::new() },
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
        let mut d = Dedup::default();
        assert_eq!(d.on_event(&open(10, 1, 1), &record()), 1);
        let mut out = Vec::new();
        // Kernel folded 4 more: the sweep reports them once.
        let v = DedupValue { emitted_ns: 0, last_ns: 5, total: 5 };
        d.sweep(|_| Some(v), |_| std::time::SystemTime::UNIX_EPOCH, &mut out);
        assert_eq!(out.iter().map(|(_, n, _, _)| n).sum::<u64>(), 4);
        out.clear();
        d.sweep(|_| Some(v), |_| std::time::SystemTime::UNIX_EPOCH, &mut out);
        assert!(out.is_empty(), "nothing new, nothing reported");
        // The next emitted event carries total 7: one more folded, plus it.
        assert_eq!(d.on_event(&open(10, 1, 7), &record()), 2);
        // Evicted in the kernel and restarted: counts restart too.
        assert_eq!(d.on_event(&open(10, 1, 1), &record()), 1);
        // De-dup off: every record is one open.
        assert_eq!(d.on_event(&open(11, 1, 0), &record()), 1);
    }
}
