//! Credential-file sensor records and watch-list map types
//! (`observer-ebpf/src/probes/files.rs`).
use crate::{EventHeader, PATH_KEY_LEN, PATH_LEN, TaskInfo, WALK_BUF_LEN};

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
