//! Maps shared by every probe family. Sizes here are defaults; the agent may
//! override `EVENTS` (ring size) before load.
use aya_ebpf::{
    macros::map,
    maps::{LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
};
use observer_common::{COUNTERS_LEN, Counter, EventKind, PathKeyData, PathRule, counter_index};

/// Default ring size: 8 MiB, about 6,000 file events in flight.
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 << 20;
pub const MAX_PATH_RULES: u32 = 4096;

/// Events to the agent. The agent owns draining it; the kernel never waits.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Per-CPU counters, `counter_index(kind, counter)`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Path rules (exact and prefix) from the credential catalog; the agent can
/// change them at any time without reloading.
#[map]
pub static PATH_RULES: LpmTrie<PathKeyData, PathRule> = LpmTrie::with_max_entries(MAX_PATH_RULES, 0);

/// Per-CPU scratch space: the BPF stack (512 bytes) cannot hold a path key.
#[repr(C)]
pub struct Scratch {
    pub key: Key<PathKeyData>,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count(kind: EventKind, counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter_index(kind, counter)) {
        // SAFETY: per-CPU slot, programs on one CPU do not run concurrently
        // for the tracepoints we use.
        unsafe { *slot += 1 };
    }
}
