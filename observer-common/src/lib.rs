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
/// Size of the data part of a [`PathKey`]: the kernel's LPM trie maximum.
pub const PATH_KEY_LEN: usize = 256;

/// Ring-buffer record kinds. Numbers are part of the ABI: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    FileOpen = 1,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::FileOpen),
            _ => None,
        }
    }
}

/// Number of [`EventKind`] slots in the counter array (kind 0 is unused).
pub const EVENT_KIND_SLOTS: u32 = 8;

/// Per-CPU counters the kernel keeps per event kind. Index into the
/// `COUNTERS` per-CPU array is `kind * COUNTER_SLOTS + counter`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `bpf_ringbuf_reserve` failed: the event was lost.
    ReserveFailed = 0,
    /// An event was emitted.
    Emitted = 1,
}

pub const COUNTER_SLOTS: u32 = 4;
pub const COUNTERS_LEN: u32 = EVENT_KIND_SLOTS * COUNTER_SLOTS;

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

/// Which open-family syscall an event came from.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    Open = 1,
    OpenAt = 2,
    OpenAt2 = 3,
    Creat = 4,
}

impl OpenSyscall {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Open),
            2 => Some(Self::OpenAt),
            3 => Some(Self::OpenAt2),
            4 => Some(Self::Creat),
            _ => None,
        }
    }
}

/// Bits of [`FileOpenEvent::flags`].
pub mod event_flags {
    /// The path as passed by the process was longer than `PATH_LEN`.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// `resolved` holds the opened file's path rebuilt from its dentries.
    pub const RESOLVED_VALID: u32 = 1 << 1;
    /// The dentry walk of `resolved` stopped early (depth or buffer).
    pub const RESOLVED_TRUNCATED: u32 = 1 << 2;
    /// `exe` holds the executable's path rebuilt from its dentries.
    pub const EXE_VALID: u32 = 1 << 3;
    pub const EXE_TRUNCATED: u32 = 1 << 4;
}

/// How an open matched the watch list.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// The path (absolute, `~` normalised) matched an exact or prefix rule.
    Path = 1,
}

impl MatchKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Path),
            _ => None,
        }
    }
}

/// A credential-file open (open, openat, openat2, creat), successful or not.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    pub task: TaskInfo,
    /// The syscall's return value: an fd, or `-errno`.
    pub ret: i64,
    /// Device and inode of the opened file (0 when the open failed).
    pub dev: u64,
    pub ino: u64,
    /// An [`OpenSyscall`].
    pub syscall: u32,
    /// `O_*` flags as passed (for `creat`: `O_CREAT|O_WRONLY|O_TRUNC`).
    pub open_flags: u32,
    pub mode: u32,
    /// Directory fd for `*at` calls (`AT_FDCWD` = -100), else -100.
    pub dirfd: i32,
    /// Rule id from the watch list that matched.
    pub rule_id: u32,
    /// A [`MatchKind`].
    pub match_kind: u32,
    /// [`event_flags`] bits.
    pub flags: u32,
    /// Bytes used in `resolved` and `exe` (the rest is stale ring memory).
    pub resolved_len: u16,
    pub exe_len: u16,
    /// The path as the process passed it, NUL-terminated.
    pub path: [u8; PATH_LEN],
    /// The opened file's path from its dentries (see [`WALK_BUF_LEN`]).
    pub resolved: [u8; WALK_BUF_LEN],
    /// The executable's path from `mm->exe_file` (see [`WALK_BUF_LEN`]).
    pub exe: [u8; WALK_BUF_LEN],
}
const _: () = assert!(core::mem::size_of::<FileOpenEvent>() == 16 + 56 + 24 + 32 + 256 + 512 + 512);

/// LPM-trie key data for path rules. The key is the path with a home
/// directory prefix (`/root`, `/home/<user>`) replaced by `~`. Exact rules
/// include the terminating NUL, prefix rules do not, so the longest match of
/// `"~/.aws/credentials\0"` is the exact rule, and an exact rule never
/// shadows a shorter prefix rule for a longer path.
pub type PathKeyData = [u8; PATH_KEY_LEN];

/// Value of a path rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRule {
    pub rule_id: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<PathRule>() == 8);

/// Kernel structure offsets, resolved by the agent from the running kernel's
/// BTF and handed to the programs as a read-only global before load (our
/// substitute for CO-RE, which Rust eBPF lacks). `valid == 0` means the agent
/// could not resolve them: the programs then skip every field walk and send
/// what the helpers alone give.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_files: u32,
    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 26 * 4);

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
}
