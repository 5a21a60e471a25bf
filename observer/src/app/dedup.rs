//! De-duplication accounting: turns the kernel's monotonic per-key totals
//! into exact per-record counts (`nhi.access.count`), and reports the tail
//! of opens folded after a key's last record.
//!
//! Invariant: for every key, the counts of all records emitted for it sum
//! to the kernel's total for it (unless the kernel's LRU evicted the key
//! between two sweeps, which resets its total; then the opens folded since
//! the last sweep are lost, and said so at debug level).
use std::collections::HashMap;

use observer_common::{DedupKey, DedupValue};

use crate::{decode::FileOpen, export::record::Record};

/// Keys tracked at most; the least recently seen go first.
pub const MAX_TRACKED: usize = 16384;

struct Tracked {
    /// Opens already reported in records.
    reported: u64,
    /// The key's last record, re-emitted with the tail count.
    last: Record,
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
    let access = (ev.open_flags & 0o3) | u32::from(ev.creates()) << 2;
    let tgid = ev.task.tgid;
    if ev.ret < 0 {
        let bytes = ev.path.as_bytes();
        let bytes = &bytes[..bytes.len().min(observer_common::PATH_LEN - 1)];
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &c in bytes {
            h = (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3);
        }
        DedupKey { tgid, access, dev: 0, ino: h, errno: u32::try_from(-ev.ret).unwrap_or(0), _pad0: 0 }
    } else {
        DedupKey { tgid, access, dev: ev.dev, ino: ev.ino, errno: 0, _pad0: 0 }
    }
}

impl Dedup {
    /// The count an event's record stands for, and remembers the record.
    pub fn on_event(&mut self, ev: &FileOpen, record: &Record) -> u64 {
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
        self.keys.insert(key, Tracked { reported: total, last: record.clone(), seen_tick: tick });
        count
    }

    /// Reports tails: for each key whose kernel total grew since its last
    /// record, the key's last record with the new count and time.
    /// `lookup` reads the kernel's value; `None` means the key is gone.
    pub fn sweep(
        &mut self,
        mut lookup: impl FnMut(&DedupKey) -> Option<DedupValue>,
        mut wall: impl FnMut(u64) -> std::time::SystemTime,
        out: &mut Vec<(Record, u64)>,
    ) {
        self.tick += 1;
        let tick = self.tick;
        self.keys.retain(|key, t| {
            let Some(v) = lookup(key) else { return false };
            if v.total > t.reported {
                let mut r = t.last.clone();
                r.time = wall(v.last_ns);
                out.push((r, v.total - t.reported));
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
