//! Process lifecycle and cgroups: what the agent's process table and
//! workload identity are built from.
//!
//! Hooks (tp_btf, kernel 5.5+ with BTF; the ring buffer needs 5.8):
//! - `sched_process_exec`, in the new program's context after its memory is
//!   set up: executable, path passed to exec, controlling terminal, and argv
//!   and environment copied from the new process's stack, so a process that
//!   exits a millisecond later keeps its identity. One variable-sized
//!   [`ProcessExecEvent`] record per exec.
//! - `sched_process_fork`: a new process (not a thread), with its start time
//!   and cgroup. [`ProcessForkEvent`].
//! - `sched_process_exit`, only when the last thread is gone
//!   (`signal->live == 0`). [`ProcessExitEvent`].
//! - `cgroup_mkdir`, default (v2) hierarchy only: id and path of every new
//!   cgroup. [`CgroupMkdirEvent`].
//!
//! Field reads need the offsets of the `process_valid` section; without them
//! exec records still carry what the helpers give (pid, uid, cgroup, comm).
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::generated,
    macros::{btf_tracepoint, map},
    maps::{Array, PerCpuArray},
    programs::BtfTracePointContext,
};
use observer_common::{
    CGROUP_PATH_LEN, CgroupMkdirEvent, Counter, EXEC_ARGS_MAX, EXEC_DATA_LEN, EXEC_ENV_MAX, EventHeader,
    EventKind, PATH_LEN, ProcessExecEvent, ProcessExitEvent, ProcessForkEvent, TTY_NAME_LEN, WALK_BUF_LEN,
    cgroup_flags, exec_flags,
};

use crate::{
    kernel::{self, ld, off, read},
    maps::{EVENTS, count},
};

/// An exec record with its variable part, built in per-CPU memory (too big
/// for the 512-byte stack) and copied to the ring with only the bytes used.
/// (Reserving the ring record directly, in constant size classes, and
/// reading argv and the environment straight into it measured no
/// difference: see docs/design.md, "Process sensor cost".)
#[repr(C)]
pub struct ExecScratch {
    pub ev: ProcessExecEvent,
    pub data: [u8; EXEC_DATA_LEN],
}

#[map]
static EXEC_SCRATCH: PerCpuArray<ExecScratch> = PerCpuArray::with_max_entries(1, 0);

/// Non-zero while the agent's ring reader polls the ring on a timer (it
/// sets and clears it; see `observer/src/ringbuf`). Process records are
/// then submitted without a wake-up: waking the reader (an irq_work, a
/// self-IPI and a remote wake-up, each a VM exit on our machines) cost more
/// than everything else these programs do, about 5-15 us per process.
/// When the reader is idle (0), records wake it as usual.
#[map]
static READER_POLLING: Array<u32> = Array::with_max_entries(1, 0);

/// Flags for submitting a process record (see [`READER_POLLING`]); the
/// network programs use them too.
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    if READER_POLLING.get(0).is_some_and(|v| *v != 0) { BPF_RB_NO_WAKEUP as u64 } else { 0 }
}

// Program names are short (`proc_*`): the kernel keeps 15 bytes of a
// program's name, and `sched_process_exec` and `sched_process_exit` would
// both read `sched_process_e` in its statistics (`cargo xtask bench process`).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn proc_exec(ctx: BtfTracePointContext) -> i32 {
    // `p` is `current` (exec_binprm passes it), BTF-typed like `bprm`.
    let task: u64 = ctx.arg(0);
    let old_pid: u32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let _ = on_exec(task, old_pid, bprm);
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn proc_fork(ctx: BtfTracePointContext) -> i32 {
    // `parent` is `current` (kernel_clone's caller context), BTF-typed.
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let _ = on_fork(parent, child);
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn proc_exit(ctx: BtfTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let _ = on_exit(task);
    0
}

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    let cgrp: u64 = ctx.arg(0);
    let path: u64 = ctx.arg(1);
    let _ = on_cgroup_mkdir(cgrp, path);
    0
}

#[inline(always)]
fn boot_ns() -> u64 {
    // SAFETY: plain helper call without arguments.
    unsafe { generated::bpf_ktime_get_boot_ns() }
}

#[inline(always)]
fn on_exec(task: u64, old_pid: u32, bprm: u64) -> Option<()> {
    let scratch = EXEC_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the per-CPU value is ours alone for this program run.
    let s = unsafe { &mut *scratch };
    let mut flags = 0;
    s.ev.header = EventHeader { kind: EventKind::ProcessExec as u32, size: 0, boot_ns: boot_ns() };
    // `task` is `current`, typed: plain loads, no helper call for it.
    kernel::current_task_info_typed(&mut s.ev.task, task);
    s.ev.old_pid = old_pid;
    s.ev._pad1 = 0;

    // The data: exec path, executable, argv, environment, each with only
    // the bytes used (see observer_common::process). `pos` is where the
    // next part goes; each part is masked to its maximum so that the
    // verifier can bound every offset.
    let mut pos: usize = 0;
    // `bprm` is the tracepoint's BTF-typed argument, `current` a typed task:
    // plain loads below, helpers only to copy strings and user memory.
    let name: u64 = if off!(process_valid) != 0 && off!(valid) != 0 { ld(bprm, off!(bprm_filename)) } else { 0 };
    if name != 0 {
        // SAFETY: the first PATH_LEN bytes of `data`; the helper checks the
        // source address.
        let n = unsafe {
            generated::bpf_probe_read_kernel_str(s.data.as_mut_ptr().cast(), PATH_LEN as u32, name as *const _)
        };
        if n > 1 {
            // Without the NUL.
            pos = kernel::opaque(n as u64 - 1) as usize & (PATH_LEN - 1);
            if n as usize >= PATH_LEN {
                flags |= exec_flags::FILENAME_TRUNCATED;
            }
        }
    }
    s.ev.filename_len = pos as u16;

    s.ev.exe_len = 0;
    if let Some(exe) = kernel::exe_file_of(task) {
        // The walk writes straight after the exec path, no copy: its window
        // (`WALK_BUF_LEN` bytes from `pos < PATH_LEN`) lies inside `data`.
        // SAFETY: see above; `data` is plain bytes.
        let window = unsafe { &mut *s.data.as_mut_ptr().add(pos).cast::<[u8; WALK_BUF_LEN]>() };
        let walk = match kernel::walk_file_path_typed(exe, window) {
            Some(walk) => walk,
            None => kernel::walk_file_path(exe, window),
        };
        let len = kernel::opaque(walk.len as u64) as usize & (WALK_BUF_LEN - 1);
        if len > 0 {
            s.ev.exe_len = len as u16;
            pos += len;
            flags |= exec_flags::EXE_VALID;
            if !walk.complete {
                flags |= exec_flags::EXE_TRUNCATED;
            }
        }
    }

    s.ev.tty[0] = 0;
    if current_tty(task, &mut s.ev.tty) {
        flags |= exec_flags::HAS_TTY;
    }

    let (args_len, env_len) = copy_args_env(task, &mut s.data, pos, &mut flags);
    s.ev.args_len = args_len as u32;
    s.ev.env_len = env_len as u32;
    s.ev.flags = flags;
    let size = core::mem::size_of::<ProcessExecEvent>() + pos + args_len + env_len;
    s.ev.header.size = size as u32;
    // SAFETY: `size` is at most the size of the event and its data (each
    // part is bounded by its maximum), so the slice stays inside the
    // per-CPU value.
    let bytes = unsafe { core::slice::from_raw_parts(scratch as *const u8, size) };
    match EVENTS.output::<[u8]>(bytes, submit_flags()) {
        Ok(()) => {
            count(EventKind::ProcessExec, Counter::Emitted);
            Some(())
        }
        Err(_) => {
            count(EventKind::ProcessExec, Counter::ReserveFailed);
            None
        }
    }
}

/// The controlling terminal's name (`task->signal->tty->name`), if any.
/// `task` is `current`, typed.
#[inline(always)]
fn current_tty(task: u64, buf: &mut [u8; TTY_NAME_LEN]) -> bool {
    if off!(process_valid) == 0 || off!(valid) == 0 {
        return false;
    }
    let signal: u64 = ld(task, off!(task_signal));
    if signal == 0 {
        return false;
    }
    let tty: u64 = ld(signal, off!(signal_tty));
    if tty == 0 {
        return false;
    }
    // SAFETY: destination is the TTY_NAME_LEN-byte buffer; the helper checks
    // the source address.
    let name = tty + off!(tty_name) as u64;
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(
            buf.as_mut_ptr().cast(),
            TTY_NAME_LEN as u32,
            name as *const _,
        )
    };
    n > 1
}

/// Copies argv and the environment from the new process's memory
/// (`mm->arg_start..arg_end`, `env_start..env_end`) into `data` from `base`
/// (< `PATH_LEN + WALK_BUF_LEN`): argv first, then the environment.
/// Returns the bytes used by each. `task` is `current`, typed.
#[inline(always)]
fn copy_args_env(task: u64, data: &mut [u8; EXEC_DATA_LEN], base: usize, flags: &mut u32) -> (usize, usize) {
    if off!(process_valid) == 0 || off!(valid) == 0 {
        return (0, 0);
    }
    let base = kernel::opaque(base as u64) as usize;
    if base >= PATH_LEN + WALK_BUF_LEN {
        return (0, 0);
    }
    let mm: u64 = ld(task, off!(task_mm));
    if mm == 0 {
        return (0, 0);
    }
    let arg_start: u64 = ld(mm, off!(mm_arg_start));
    let arg_end: u64 = ld(mm, off!(mm_arg_end));
    let env_start: u64 = ld(mm, off!(mm_env_start));
    let env_end: u64 = ld(mm, off!(mm_env_end));

    let mut args_len = arg_end.saturating_sub(arg_start) as usize;
    let env_raw = env_end.saturating_sub(env_start) as usize;
    // The kernel lays the environment out right after argv: one read for
    // both when neither is cut (the two reads of a few bytes each measured
    // about 0.4 us together, most of it per call, not per byte).
    if env_start == arg_end && args_len <= EXEC_ARGS_MAX && env_raw <= EXEC_ENV_MAX && env_raw > 0 {
        let both = kernel::opaque((args_len + env_raw) as u64) as usize;
        if both <= EXEC_ARGS_MAX + EXEC_ENV_MAX {
            // SAFETY: at most EXEC_ARGS_MAX + EXEC_ENV_MAX bytes at `base <
            // PATH_LEN + WALK_BUF_LEN`: inside `data`; the helper checks
            // the user address.
            let r = unsafe {
                generated::bpf_probe_read_user(data.as_mut_ptr().add(base).cast(), both as u32, arg_start as *const _)
            };
            if r == 0 {
                return (args_len, env_raw);
            }
        }
    }
    if args_len > EXEC_ARGS_MAX {
        args_len = EXEC_ARGS_MAX;
        *flags |= exec_flags::ARGS_TRUNCATED;
    }
    if args_len > 0 {
        // SAFETY: `args_len <= EXEC_ARGS_MAX` bytes at `base < PATH_LEN +
        // WALK_BUF_LEN`: inside `data`; the helper checks the user address.
        let r = unsafe {
            generated::bpf_probe_read_user(data.as_mut_ptr().add(base).cast(), args_len as u32, arg_start as *const _)
        };
        if r != 0 {
            args_len = 0;
            *flags |= exec_flags::ARGS_FAILED;
        }
    }

    let mut env_len = env_end.saturating_sub(env_start) as usize;
    if env_len > EXEC_ENV_MAX {
        env_len = EXEC_ENV_MAX;
        *flags |= exec_flags::ENV_TRUNCATED;
    }
    let at = kernel::opaque((base + args_len) as u64) as usize;
    if env_len > 0 && at < PATH_LEN + WALK_BUF_LEN + EXEC_ARGS_MAX {
        // SAFETY: writes `env_len <= EXEC_ENV_MAX` bytes at offset
        // `at < PATH_LEN + WALK_BUF_LEN + EXEC_ARGS_MAX`: inside the
        // EXEC_DATA_LEN buffer.
        let r = unsafe {
            generated::bpf_probe_read_user(data.as_mut_ptr().add(at).cast(), env_len as u32, env_start as *const _)
        };
        if r != 0 {
            env_len = 0;
            *flags |= exec_flags::ENV_FAILED;
        }
    }
    (args_len, env_len)
}

#[inline(always)]
fn on_fork(parent: u64, child: u64) -> Option<()> {
    let o = kernel::offsets();
    if o.process_valid == 0 || o.valid == 0 {
        return None;
    }
    let pid = read::<u32>(child, o.task_pid)?;
    let tgid = read::<u32>(child, o.task_tgid)?;
    if pid != tgid {
        // A new thread, not a new process.
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<ProcessForkEvent>(0) else {
        count(EventKind::ProcessFork, Counter::ReserveFailed);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned record of the
    // right size; every field is written before submit.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::ProcessFork as u32,
            size: core::mem::size_of::<ProcessForkEvent>() as u32,
            boot_ns: boot_ns(),
        };
        kernel::current_task_info_typed(&mut (*ev).parent, parent);
        (*ev).child_tgid = tgid;
        (*ev)._pad0 = 0;
        // A new process is its own group leader.
        (*ev).child_start_boot_ns = read::<u64>(child, o.task_start_boottime).unwrap_or(0);
        (*ev).child_cgroup_id = kernel::task_cgroup_id(&o, child).unwrap_or((*ev).parent.cgroup_id);
    }
    entry.submit(submit_flags());
    count(EventKind::ProcessFork, Counter::Emitted);
    Some(())
}

#[inline(always)]
fn on_exit(task: u64) -> Option<()> {
    if off!(process_valid) == 0 || off!(valid) == 0 {
        return None;
    }
    // `do_exit` decrements `signal->live` before this tracepoint: zero means
    // this is the last thread of the process. `task` is the tracepoint's
    // BTF-typed argument (the exiting task, `current`): plain loads, and no
    // helper calls besides the ring and the clock (this runs for every
    // thread that exits, mostly on a CPU where little of it is cached).
    let signal: u64 = ld(task, off!(task_signal));
    let live: i32 = ld(signal, off!(signal_live));
    if signal == 0 || live != 0 {
        return None;
    }
    let tgid = ld::<u32>(task, off!(task_tgid));
    let exit_code = ld::<u32>(task, off!(task_exit_code));
    let leader: u64 = ld(task, off!(task_group_leader));
    let start_boot_ns = ld::<u64>(leader, off!(task_start_boottime));
    let Some(mut entry) = EVENTS.reserve::<ProcessExitEvent>(0) else {
        count(EventKind::ProcessExit, Counter::ReserveFailed);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: as in on_fork.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::ProcessExit as u32,
            size: core::mem::size_of::<ProcessExitEvent>() as u32,
            boot_ns: boot_ns(),
        };
        (*ev).tgid = tgid;
        (*ev).exit_code = exit_code;
        (*ev).start_boot_ns = start_boot_ns;
    }
    entry.submit(submit_flags());
    count(EventKind::ProcessExit, Counter::Emitted);
    Some(())
}

#[inline(always)]
fn on_cgroup_mkdir(cgrp: u64, path: u64) -> Option<()> {
    let o = kernel::offsets();
    if o.process_valid == 0 {
        return None;
    }
    // The default (v2) hierarchy has id 0; v1 hierarchies are not ours.
    let root = read::<u64>(cgrp, o.cgroup_root)?;
    if read::<i32>(root, o.cgroup_root_hierarchy_id)? != 0 {
        return None;
    }
    let kn = read::<u64>(cgrp, o.cgroup_kn)?;
    let id = read::<u64>(kn, o.kernfs_node_id)?;
    let Some(mut entry) = EVENTS.reserve::<CgroupMkdirEvent>(0) else {
        count(EventKind::CgroupMkdir, Counter::ReserveFailed);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: as in on_fork; the string read stays inside `path`.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::CgroupMkdir as u32,
            size: core::mem::size_of::<CgroupMkdirEvent>() as u32,
            boot_ns: boot_ns(),
        };
        (*ev).cgroup_id = id;
        (*ev)._pad0 = 0;
        let n = generated::bpf_probe_read_kernel_str(
            (*ev).path.as_mut_ptr().cast(),
            CGROUP_PATH_LEN as u32,
            path as *const _,
        );
        let mut flags = 0;
        if n <= 0 {
            (*ev).path[0] = 0;
        } else if n as usize >= CGROUP_PATH_LEN {
            flags |= cgroup_flags::PATH_TRUNCATED;
        }
        (*ev).flags = flags;
    }
    entry.submit(0);
    count(EventKind::CgroupMkdir, Counter::Emitted);
    Some(())
}
