//! Process-lifecycle and cgroup records (`observer-ebpf/src/probes/process.rs`):
//! what the agent's process table and workload identity are built from.
//!
//! Exec records are variable-sized: a fixed [`ProcessExecEvent`] followed by
//! `filename_len` bytes of the path passed to exec, `exe_len` bytes of the
//! executable's dentry walk, `args_len` bytes of argv and `env_len` bytes of
//! environment (the last two as the kernel laid them out in the new
//! process's memory, NUL-separated strings). Only the bytes used are sent:
//! writing to the ring costs about half a nanosecond per byte on our
//! machines (its memory is rarely in cache), so fixed-size path buffers
//! made up a third of an exec's program time. `header.size` is the whole
//! record. The environment holds secrets: the agent wraps it in its
//! redacting `Secret` type the moment it decodes it.
use crate::{EventHeader, PATH_LEN, TaskInfo, WALK_BUF_LEN};

/// argv bytes copied at exec; longer argument lists are cut (flag
/// [`exec_flags::ARGS_TRUNCATED`]).
pub const EXEC_ARGS_MAX: usize = 1024;
/// Environment bytes copied at exec; a longer environment is cut (flag
/// [`exec_flags::ENV_TRUNCATED`]) and the agent reads the rest from
/// `/proc/<pid>/environ` while the process lives.
pub const EXEC_ENV_MAX: usize = 16384;
/// Variable part of an exec record at most: the exec path (without its
/// NUL), the executable's walk, argv, then the environment.
pub const EXEC_DATA_LEN: usize = PATH_LEN + WALK_BUF_LEN + EXEC_ARGS_MAX + EXEC_ENV_MAX;
/// Bytes of the controlling terminal's name (`tty->name`, e.g. `pts3`).
pub const TTY_NAME_LEN: usize = 32;
/// Bytes of a cgroup path copied at `cgroup_mkdir`.
pub const CGROUP_PATH_LEN: usize = 512;

/// Bits of [`ProcessExecEvent::flags`].
pub mod exec_flags {
    /// `exe` holds the executable's path (`mm->exe_file`).
    pub const EXE_VALID: u32 = 1 << 0;
    pub const EXE_TRUNCATED: u32 = 1 << 1;
    /// The process has a controlling terminal; `tty` holds its name.
    pub const HAS_TTY: u32 = 1 << 2;
    /// argv was longer than [`super::EXEC_ARGS_MAX`].
    pub const ARGS_TRUNCATED: u32 = 1 << 3;
    /// The environment was longer than [`super::EXEC_ENV_MAX`].
    pub const ENV_TRUNCATED: u32 = 1 << 4;
    /// Reading argv or the environment from user memory failed.
    pub const ARGS_FAILED: u32 = 1 << 5;
    pub const ENV_FAILED: u32 = 1 << 6;
    /// `filename` was longer than `PATH_LEN`.
    pub const FILENAME_TRUNCATED: u32 = 1 << 7;
}

/// A successful `execve`/`execveat` (tp_btf `sched_process_exec`, in the new
/// program's context). Followed by `filename_len + exe_len + args_len +
/// env_len` bytes of data (see the module notes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessExecEvent {
    pub header: EventHeader,
    pub task: TaskInfo,
    /// Thread id that called exec (differs from `task.pid` when a non-leader
    /// thread exec'd and took over the leader's pid).
    pub old_pid: u32,
    /// [`exec_flags`] bits.
    pub flags: u32,
    /// Bytes of argv in the data (NUL-separated).
    pub args_len: u32,
    /// Bytes of environment after argv (NUL-separated `NAME=value`).
    pub env_len: u32,
    /// Bytes of the executable's dentry walk in the data (from
    /// `mm->exe_file`; for a script, the interpreter), names child first,
    /// each NUL-terminated, as in a `WALK_BUF_LEN` walk buffer.
    pub exe_len: u16,
    /// Bytes of the path passed to exec (`bprm->filename`; for a script,
    /// the script), first in the data, without a NUL.
    pub filename_len: u16,
    pub _pad1: u32,
    /// Controlling terminal name (`pts3`, `tty1`), NUL-terminated; empty
    /// without [`exec_flags::HAS_TTY`].
    pub tty: [u8; TTY_NAME_LEN],
}
const _: () = assert!(core::mem::size_of::<ProcessExecEvent>() == 16 + 56 + 24 + 32);

/// A new process (tp_btf `sched_process_fork`; threads are not reported).
/// Sent from the parent's context.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessForkEvent {
    pub header: EventHeader,
    /// The forking task.
    pub parent: TaskInfo,
    pub child_tgid: u32,
    pub _pad0: u32,
    /// The child's `start_boottime`: with `child_tgid`, its process key.
    pub child_start_boot_ns: u64,
    /// The child's cgroup v2 id (differs from the parent's with
    /// `CLONE_INTO_CGROUP`, as systemd spawns services).
    pub child_cgroup_id: u64,
}
const _: () = assert!(core::mem::size_of::<ProcessForkEvent>() == 16 + 56 + 24);

/// The last thread of a process exited (tp_btf `sched_process_exit` with
/// `signal->live == 0`). Only the process key and the exit status: the
/// agent knows the rest from the fork and exec records (or /proc), and the
/// program stays a handful of plain loads (it runs at every exit).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessExitEvent {
    pub header: EventHeader,
    /// The process id (`task->tgid`).
    pub tgid: u32,
    /// `task->exit_code` (wait status: `code << 8` or the signal).
    pub exit_code: u32,
    /// The group leader's `start_boottime`: with `tgid`, the process key
    /// ([`crate::TaskInfo::start_boot_ns`]).
    pub start_boot_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ProcessExitEvent>() == 16 + 16);

/// Bits of [`CgroupMkdirEvent::flags`].
pub mod cgroup_flags {
    /// The path was longer than [`super::CGROUP_PATH_LEN`].
    pub const PATH_TRUNCATED: u32 = 1 << 0;
}

/// A cgroup v2 directory was created (tp_btf `cgroup_mkdir`, default
/// hierarchy only): its id and path, so a cgroup that lives for a few
/// milliseconds can still be named afterwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupMkdirEvent {
    pub header: EventHeader,
    /// The cgroup id (`kn->id`, what `bpf_get_current_cgroup_id` returns).
    pub cgroup_id: u64,
    /// [`cgroup_flags`] bits.
    pub flags: u32,
    pub _pad0: u32,
    /// Path from the hierarchy root (`/system.slice/x.service`), NUL-terminated.
    pub path: [u8; CGROUP_PATH_LEN],
}
const _: () = assert!(core::mem::size_of::<CgroupMkdirEvent>() == 16 + 16 + CGROUP_PATH_LEN);
