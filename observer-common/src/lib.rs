//! The ABI shared by the kernel programs (`observer-ebpf`) and the agent.
//!
//! Input/output: nothing runs here; these are the byte layouts of ring-buffer
//! records, map keys/values and load-time globals.
//!
//! Invariants:
//! - every type is `#[repr(C)]`, `Copy`, has explicit padding fields, no
//!   `bool`, and a compile-time size assertion: the kernel and the agent are
//!   built by different compilers and must agree byte for byte;
//! - every ring-buffer record starts with [`EventHeader`];
//! - [`EventKind`] and [`Counter`] numbers are never reused.
#![no_std]

/// Bytes of a path the kernel copies and matches. Credential paths are short;
/// a longer path is truncated (flag [`event_flags::PATH_TRUNCATED`]).
pub const PATH_LEN: usize = 256;
/// Buffer for a path the kernel rebuilds by walking dentries. Components are
/// written child first, each NUL-terminated; the agent reverses them. Only the
/// first half is ever a write offset so every bounded read stays in bounds.
pub const WALK_BUF_LEN: usize = 512;
/// Components a dentry walk follows before it gives up (flag `*_TRUNCATED`).
pub const WALK_MAX_DEPTH: u32 = 24;
pub const COMM_LEN: usize = 16;
/// Size of the data part of a path key ([`PathKeyData`]): the kernel's LPM trie maximum.
pub const PATH_KEY_LEN: usize = 256;

mod file;
mod iouring;
mod net;
mod offsets;
mod process;
pub use file::*;
pub use iouring::*;
pub use net::*;
pub use offsets::*;
pub use process::*;

/// Ring-buffer record kinds. Numbers are part of the ABI: never reuse one.
/// Each probe family owns a range, so families grow independently.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    // 1..=15: credential files (probes/files.rs).
    FileOpen = 1,

    // 16..=31: network (probes/net.rs).
    NetConnect = 16,
    NetPayload = 17,
    NetClose = 18,

    // 32..=47: processes and workload identity (probes/process.rs).
    ProcessExec = 32,
    ProcessFork = 33,
    ProcessExit = 34,
    CgroupMkdir = 35,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::FileOpen),

            16 => Some(Self::NetConnect),
            17 => Some(Self::NetPayload),
            18 => Some(Self::NetClose),

            32 => Some(Self::ProcessExec),
            33 => Some(Self::ProcessFork),
            34 => Some(Self::ProcessExit),
            35 => Some(Self::CgroupMkdir),
            _ => None,
        }
    }
}

/// Number of [`EventKind`] slots in the counter array (kind 0 is unused).
pub const EVENT_KIND_SLOTS: u32 = 48;

/// Per-CPU counters the kernel keeps per event kind. Index into the
/// `COUNTERS` per-CPU array is `kind * COUNTER_SLOTS + counter`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `bpf_ringbuf_reserve` failed: the event was lost.
    ReserveFailed = 0,
    /// An event was emitted.
    Emitted = 1,
    /// An event was folded into the count of an earlier one (de-dup).
    DedupSuppressed = 2,
    /// The sensor took its slow path (no typed access, helper reads).
    SlowPath = 3,
}

pub const COUNTER_SLOTS: u32 = 4;
pub const COUNTERS_LEN: u32 = EVENT_KIND_SLOTS * COUNTER_SLOTS;

/// Processes whose lost file events the kernel counts apiece (the
/// `FILE_LOST_TGID` LRU map; the machine-wide count is in the counters).
pub const MAX_LOST_PROCESSES: u32 = 1024;

#[inline(always)]
pub const fn counter_index(kind: EventKind, counter: Counter) -> u32 {
    kind as u32 * COUNTER_SLOTS + counter as u32
}

/// Header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`].
    pub kind: u32,
    /// Size of the whole record in bytes (header included).
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the event happened.
    pub boot_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// The task an event happened in, captured in the kernel at event time so a
/// process that has already exited still has its identity.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo {
    /// Process id (kernel tgid).
    pub tgid: u32,
    /// Thread id (kernel pid).
    pub pid: u32,
    /// Parent process id (`real_parent->tgid`), 0 if unknown.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad0: u32,
    /// cgroup v2 id (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// `task->group_leader->start_boottime` in ns: with tgid, a process key
    /// that survives pid reuse. 0 if the offset is unknown.
    pub start_boot_ns: u64,
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<TaskInfo>() == 56);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], Copy, contain only integers and
    // integer arrays, and have explicit padding fields, so every bit pattern
    // is valid and there are no uninitialised padding bytes.
    unsafe impl aya::Pod for EventHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TaskInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FileOpenEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PathRule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MetadataDest {}
    unsafe impl aya::Pod for InodeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for InodeRule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DedupKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DedupValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FileSensorConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProcessExecEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProcessForkEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProcessExitEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CgroupMkdirEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for IoUringOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for IoUringOpen {}
    // SAFETY: as above (their sizes are asserted to be the sum of their
    // fields, so there is no implicit padding).
    unsafe impl aya::Pod for NetConnectEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NetPayloadEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NetCloseEvent {}
}
