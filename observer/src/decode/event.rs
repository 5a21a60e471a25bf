//! Owned, decoded events: what every stage after `decode` works on.
use std::ffi::OsString;

use observer_common::{MatchKind, OpenSyscall};

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum Event {
    FileOpen(FileOpen),
    NetConnect(super::NetConnect),
    NetPayload(super::NetPayload),
    NetClose(super::NetClose),
    ProcessExec(ProcessExec),
    ProcessFork(ProcessFork),
    ProcessExit(ProcessExit),
    CgroupMkdir(CgroupMkdir),
}

/// A successful exec, as the kernel saw it in the new program's context.
#[derive(Debug, Clone)]
pub struct ProcessExec {
    pub boot_ns: u64,
    pub task: Task,
    /// The path passed to exec (for a script, the script).
    pub filename: OsString,
    /// The executable (for a script, its interpreter).
    pub exe: Option<WalkedPath>,
    /// Controlling terminal name as the kernel has it (`pts3`).
    pub tty: Option<String>,
    /// argv, NUL-separated. May hold secrets (`--password=...`): masked
    /// before anything leaves the agent, and only when argv capture is on.
    pub args: Secret,
    pub args_truncated: bool,
    /// The environment, NUL-separated `NAME=value`. Holds secrets.
    pub env: Secret,
    /// The kernel's copy is cut (longer than `EXEC_ENV_MAX`) or missing
    /// (its read of user memory failed): not the whole environment.
    pub env_truncated: bool,
}

/// A new process (not a thread).
#[derive(Debug, Clone)]
pub struct ProcessFork {
    pub parent: Task,
    pub child_tgid: u32,
    pub child_start_boot_ns: u64,
    pub child_cgroup_id: u64,
}

/// The last thread of a process exited.
#[derive(Debug, Clone)]
pub struct ProcessExit {
    pub boot_ns: u64,
    pub tgid: u32,
    /// With `tgid`, the process key ([`Task::start_boot_ns`]).
    pub start_boot_ns: u64,
    /// Wait status (`code << 8`, or the signal).
    pub exit_code: u32,
}

/// A cgroup v2 directory was created.
#[derive(Debug, Clone)]
pub struct CgroupMkdir {
    pub cgroup_id: u64,
    /// From the hierarchy root, e.g. `/system.slice/x.service`.
    pub path: String,
    pub path_truncated: bool,
}

/// The task an event happened in, as the kernel saw it at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub start_boot_ns: u64,
    pub comm: String,
}

/// A path rebuilt from dentries in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedPath {
    pub path: OsString,
    /// False when the walk stopped early: `path` then starts with `…`.
    pub complete: bool,
}

impl WalkedPath {
    /// The path as text, as `to_string_lossy` gives it (bytes that are not
    /// UTF-8 as U+FFFD), checked word by word first: the lossy conversion
    /// alone checks every path byte by byte.
    pub fn lossy(&self) -> String {
        super::lossy(self.path.as_encoded_bytes())
    }
}

#[derive(Debug, Clone)]
pub struct FileOpen {
    pub boot_ns: u64,
    pub task: Task,
    pub syscall: OpenSyscall,
    /// fd, or -errno.
    pub ret: i64,
    pub dev: u64,
    pub ino: u64,
    pub open_flags: u32,
    /// Mode bits for a created file.
    pub mode: u32,
    pub rule_id: u32,
    pub match_kind: MatchKind,
    /// The path as the process passed it.
    pub path: OsString,
    pub path_truncated: bool,
    /// The opened file's path from its dentries; for a failed relative
    /// open, the directory it was looked up in (`resolved_is_base`).
    pub resolved: Option<WalkedPath>,
    pub resolved_is_base: bool,
    /// The executable, from `mm->exe_file` (None for kernel threads or when
    /// kernel offsets are unavailable).
    pub exe: Option<WalkedPath>,
    /// Opens of this de-duplication key so far in the kernel (monotonic);
    /// 0 when de-duplication is off.
    pub dedup_total: u64,
    /// An io_uring open into a fixed-file slot: `ret` is 0 or the slot, no
    /// inode or resolved path (matched on the requested path only).
    pub fixed_file: bool,
}

/// How a file was opened, from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl FileOpen {
    pub fn access(&self) -> Access {
        match self.open_flags & libc::O_ACCMODE as u32 {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::ReadWrite,
        }
    }

    pub fn creates(&self) -> bool {
        self.open_flags & libc::O_CREAT as u32 != 0
    }
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadWrite => "read_write",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn syscall_name(s: OpenSyscall) -> &'static str {
    match s {
        OpenSyscall::Open => "open",
        OpenSyscall::OpenAt => "openat",
        OpenSyscall::OpenAt2 => "openat2",
        OpenSyscall::Creat => "creat",
        OpenSyscall::IoUringOpenAt => "io_uring.openat",
        OpenSyscall::IoUringOpenAt2 => "io_uring.openat2",
    }
}
