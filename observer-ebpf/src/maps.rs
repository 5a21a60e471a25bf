//! Maps shared by every probe family. Sizes here are defaults; the agent may
//! override `EVENTS` (ring size) before load.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use observer_common::{
    COUNTERS_LEN, Counter, DedupKey, DedupValue, EventKind, FileSensorConfig, GATE_WORDS, InodeKey, InodeRule,
    PathKeyData, PathRule, counter_index,
};

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

/// Name gate: a bitmap of hashed exact names, name prefixes and suffixes
/// (see `observer_common::gate_name_bit`). The agent fills it; a set bit
/// makes an open a candidate the agent confirms.
#[map]
pub static NAME_GATE: Array<u64> = Array::with_max_entries(GATE_WORDS, 0);

/// Affix pre-filter: the first two bytes of name prefixes and the last two
/// of name suffixes (see `observer_common::AFFIX_GATE_BITS`).
#[map]
pub static AFFIX_GATE: Array<u64> = Array::with_max_entries(observer_common::AFFIX_GATE_WORDS, 0);

/// Path gate: a bitmap of the path-rule keys' first bytes (see
/// `observer_common::path_gate_bit`), in front of the `PATH_RULES` trie.
#[map]
pub static PATH_GATE: Array<u64> = Array::with_max_entries(GATE_WORDS, 0);

/// Inode gate: a bitmap of hashed (dev, ino) of watched files and
/// directories, in front of the exact `WATCHED_INODES` lookup.
#[map]
pub static INODE_GATE: Array<u64> = Array::with_max_entries(GATE_WORDS, 0);

pub const MAX_WATCHED_INODES: u32 = 65536;

/// Watched files (any name they are opened by) and directories (every file
/// directly inside), from the agent's scans.
#[map]
pub static WATCHED_INODES: HashMap<InodeKey, InodeRule> = HashMap::with_max_entries(MAX_WATCHED_INODES, 0);

pub const MAX_DEDUP_KEYS: u32 = 16384;

/// De-duplication state per (process, file, access, outcome).
#[map]
pub static DEDUP: LruHashMap<DedupKey, DedupValue> = LruHashMap::with_max_entries(MAX_DEDUP_KEYS, 0);

/// File events lost (the ring was full) per process (tgid), counted with
/// `COUNTERS`' machine-wide count, so that a loss can be told apart by
/// whose it was (the agent reports the largest; a benchmark or test
/// checks its own process's exactly). Touched only on a loss.
#[map]
pub static FILE_LOST_TGID: LruHashMap<u32, u64> = LruHashMap::with_max_entries(observer_common::MAX_LOST_PROCESSES, 0);

/// Settings of the file sensor (one entry; the agent may change it at any
/// time, e.g. when the watch list gains a new prefix length).
#[map]
pub static FILE_CFG: Array<FileSensorConfig> = Array::with_max_entries(1, 0);

/// The file sensor's settings (all zero until the agent sets them).
#[inline(always)]
pub fn file_cfg() -> FileSensorConfig {
    FILE_CFG.get(0).copied().unwrap_or(FileSensorConfig {
        dedup_ns: 0,
        prefix_lens: [0; observer_common::GATE_AFFIX_LENS],
        suffix_lens: [0; observer_common::GATE_AFFIX_LENS],
        dir_rules: 0,
        agent_tgid: 0,
        path_gate_len: 0,
        _pad0: 0,
    })
}

/// Tests bit `bit` of a gate bitmap.
#[inline(always)]
pub fn gate_test(gate: &Array<u64>, bit: u32) -> bool {
    gate.get(bit / 64).is_some_and(|w| w & (1u64 << (bit % 64)) != 0)
}

/// Hits of the benchmark's floor program (probes/floor.rs).
#[map]
pub static FLOOR_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space: the BPF stack (512 bytes) cannot hold a path key.
#[repr(C)]
pub struct Scratch {
    pub key: Key<PathKeyData>,
    /// The requested path as read from the process (failed opens).
    pub path: [u8; observer_common::PATH_LEN],
    /// A file name as eight little-endian words (name gate). Here rather
    /// than on the stack: a stack array needs zeroing, which LLVM turns into
    /// a `memset` call the verifier walks byte by byte.
    pub words: [u64; 8],
    /// An open to report, handed from the filter to `emit_file_open`.
    pub pending: Pending,
    /// The write position of a dentry walk (`kernel::walk_path`). In map
    /// memory the verifier does not track its value, so every step of the
    /// walk ends in the same state and verification stays linear.
    pub walk_pos: u64,
}

/// What the file sensor's filter found, for the emitter.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    pub path: u64,
    pub ret: i64,
    /// `struct file *` of a successful open (0 for a failed one).
    pub file: u64,
    pub dev: u64,
    pub ino: u64,
    pub syscall: u32,
    pub dirfd: i32,
    pub flags: u32,
    pub mode: u32,
    pub rule_id: u32,
    pub how: u32,
}

/// The per-CPU scratch space.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: a per-CPU map value, used by one program run at a time.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a map value's count, atomically: threads of one process
/// may reach the same entry on several CPUs at once. The result is unused,
/// so LLVM emits the plain atomic add (no fetch), which every kernel with
/// BPF atomics supports.
///
/// # Safety
/// `n` points into a live map value.
#[inline(always)]
pub unsafe fn atomic_inc(n: *mut u64) {
    // SAFETY: the caller's.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(n, 1) };
}

#[inline(always)]
pub fn count(kind: EventKind, counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter_index(kind, counter)) {
        // SAFETY: per-CPU slot, programs on one CPU do not run concurrently
        // for the tracepoints we use.
        unsafe { *slot += 1 };
    }
}

