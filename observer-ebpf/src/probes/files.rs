//! Credential-file opens: open, openat, openat2, creat.
//!
//! One hook, the raw syscall-exit tracepoint (tp_btf `sys_exit`): the
//! syscall's arguments are still in the saved user registers there, so one
//! program sees arguments and result, and any other syscall costs a register
//! read and a compare. Input: the exit of every syscall. Output: a
//! [`FileOpenEvent`] into `EVENTS` for each open whose path matches a rule in
//! `PATH_RULES`, with the opened file's device, inode and dentry path and the
//! task's identity and executable, captured now so that short-lived processes
//! keep them.
use aya_ebpf::{helpers::generated, macros::btf_tracepoint, programs::BtfTracePointContext};
use observer_common::{
    Counter, EventHeader, EventKind, FileOpenEvent, MatchKind, OpenSyscall, PATH_KEY_LEN, PATH_LEN,
    event_flags,
};

use crate::{
    kernel::{self, read},
    maps::{EVENTS, PATH_RULES, SCRATCH, count},
};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

/// Longest user name we skip over in `/home/<user>/`.
const MAX_HOME_NAME: usize = 64;

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    //! `struct pt_regs` offsets (ABI-stable) and syscall numbers, x86_64.
    pub const ORIG_NR: u32 = 15 * 8; // orig_ax
    pub const ARG0: u32 = 14 * 8; // di
    pub const ARG1: u32 = 13 * 8; // si
    pub const ARG2: u32 = 12 * 8; // dx
    pub const ARG3: u32 = 7 * 8; // r10
    pub const NR_OPEN: u64 = 2;
    pub const NR_CREAT: u64 = 85;
    pub const NR_OPENAT: u64 = 257;
    pub const NR_OPENAT2: u64 = 437;
}

#[cfg(bpf_target_arch = "aarch64")]
mod arch {
    //! aarch64: x0 is overwritten by the return value; orig_x0 keeps arg 0.
    //! No open/creat syscalls on this architecture. Untested on our machines.
    pub const ORIG_NR: u32 = 280; // syscallno (s32; low half of the u64 read)
    pub const ARG0: u32 = 272; // orig_x0
    pub const ARG1: u32 = 8;
    pub const ARG2: u32 = 16;
    pub const ARG3: u32 = 24;
    pub const NR_OPEN: u64 = u64::MAX;
    pub const NR_CREAT: u64 = u64::MAX;
    pub const NR_OPENAT: u64 = 56;
    pub const NR_OPENAT2: u64 = 437;
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let _ = on_sys_exit(regs, ret);
    0
}

struct OpenArgs {
    syscall: OpenSyscall,
    dirfd: i32,
    path: u64,
    flags: u32,
    mode: u32,
}

#[inline(always)]
fn open_args(regs: u64) -> Option<OpenArgs> {
    let nr = read::<u64>(regs, arch::ORIG_NR)?;
    #[cfg(bpf_target_arch = "aarch64")]
    let nr = nr as u32 as u64;
    let arg = |off| read::<u64>(regs, off);
    let args = if nr == arch::NR_OPENAT {
        OpenArgs {
            syscall: OpenSyscall::OpenAt,
            dirfd: arg(arch::ARG0)? as i32,
            path: arg(arch::ARG1)?,
            flags: arg(arch::ARG2)? as u32,
            mode: arg(arch::ARG3)? as u32,
        }
    } else if nr == arch::NR_OPEN {
        OpenArgs {
            syscall: OpenSyscall::Open,
            dirfd: AT_FDCWD,
            path: arg(arch::ARG0)?,
            flags: arg(arch::ARG1)? as u32,
            mode: arg(arch::ARG2)? as u32,
        }
    } else if nr == arch::NR_OPENAT2 {
        // struct open_how { u64 flags; u64 mode; u64 resolve; } in user memory.
        let how = arg(arch::ARG2)?;
        // SAFETY: the helper checks the user address.
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how as *const u64) }.ok()?;
        // SAFETY: as above.
        let mode = unsafe { aya_ebpf::helpers::bpf_probe_read_user((how + 8) as *const u64) }.ok()?;
        OpenArgs {
            syscall: OpenSyscall::OpenAt2,
            dirfd: arg(arch::ARG0)? as i32,
            path: arg(arch::ARG1)?,
            flags: flags as u32,
            mode: mode as u32,
        }
    } else if nr == arch::NR_CREAT {
        OpenArgs {
            syscall: OpenSyscall::Creat,
            dirfd: AT_FDCWD,
            path: arg(arch::ARG0)?,
            flags: O_CREAT | O_WRONLY | O_TRUNC,
            mode: arg(arch::ARG1)? as u32,
        }
    } else {
        return None;
    };
    Some(args)
}

#[inline(always)]
fn on_sys_exit(regs: u64, ret: i64) -> Option<()> {
    let args = open_args(regs)?;
    let rule_id = match_path(args.path)?;
    emit(&args, ret, rule_id, MatchKind::Path)
}

/// Looks the path up in `PATH_RULES`, with a leading `/root` or
/// `/home/<user>` replaced by `~`. Returns the matching rule id.
#[inline(always)]
#[allow(clippy::needless_range_loop, reason = "a constant-bounded index loop is what the verifier checks best")]
fn match_path(upath: u64) -> Option<u32> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch value, valid for this program run.
    let key = unsafe { &mut (*scratch).key };
    let data = key.data.as_mut_ptr();
    // SAFETY: destination is the 256-byte key; the helper checks the source.
    let n = unsafe {
        generated::bpf_probe_read_user_str(data.cast(), PATH_KEY_LEN as u32, upath as *const _)
    };
    if n <= 1 {
        return None;
    }
    let mut len = n as u32; // includes the NUL
    let d = &mut key.data;
    if d[0] != b'/' {
        // Relative paths are not matched by path rules.
        return None;
    }
    let mut skip: usize = 0;
    if d[1] == b'r' && d[2] == b'o' && d[3] == b'o' && d[4] == b't' && d[5] == b'/' {
        skip = 5;
    } else if d[1] == b'h' && d[2] == b'o' && d[3] == b'm' && d[4] == b'e' && d[5] == b'/' && d[6] != b'/' {
        for i in 7..(7 + MAX_HOME_NAME) {
            let c = d[i];
            if c == 0 {
                break;
            }
            if c == b'/' {
                skip = i;
                break;
            }
        }
    }
    if skip != 0 {
        d[0] = b'~';
        // SAFETY: writes at most 255 bytes after the first byte of the key.
        let m = unsafe {
            generated::bpf_probe_read_user_str(
                data.add(1).cast(),
                (PATH_KEY_LEN - 1) as u32,
                (upath + skip as u64) as *const _,
            )
        };
        if m <= 0 {
            return None;
        }
        len = m as u32 + 1;
    }
    key.prefix_len = len * 8;
    // SAFETY: per-CPU scratch, see above.
    PATH_RULES.get(unsafe { &(*scratch).key }).map(|r| r.rule_id)
}

#[inline(always)]
fn emit(args: &OpenArgs, ret: i64, rule_id: u32, how: MatchKind) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<FileOpenEvent>(0) else {
        count(EventKind::FileOpen, Counter::ReserveFailed);
        return None;
    };
    let o = kernel::offsets();
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned record of the
    // right size; every field is written before submit.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::FileOpen as u32,
            size: core::mem::size_of::<FileOpenEvent>() as u32,
            boot_ns: generated::bpf_ktime_get_boot_ns(),
        };
        kernel::current_task_info(&mut (*ev).task, &o);
        (*ev).ret = ret;
        (*ev).syscall = args.syscall as u32;
        (*ev).open_flags = args.flags;
        (*ev).mode = args.mode;
        (*ev).dirfd = args.dirfd;
        (*ev).rule_id = rule_id;
        (*ev).match_kind = how as u32;
        let mut flags = 0;
        let n = generated::bpf_probe_read_user_str(
            (*ev).path.as_mut_ptr().cast(),
            PATH_LEN as u32,
            args.path as *const _,
        );
        if n <= 0 {
            (*ev).path[0] = 0;
        } else if n as usize >= PATH_LEN {
            flags |= event_flags::PATH_TRUNCATED;
        }
        (*ev).dev = 0;
        (*ev).ino = 0;
        (*ev).resolved_len = 0;
        if let Some(file) = kernel::file_of_fd(&o, ret) {
            let (dev, ino) = kernel::file_dev_ino(&o, file);
            (*ev).dev = dev;
            (*ev).ino = ino;
            let walk = kernel::walk_file_path(&o, file, &mut (*ev).resolved);
            (*ev).resolved_len = walk.len;
            flags |= event_flags::RESOLVED_VALID;
            if !walk.complete {
                flags |= event_flags::RESOLVED_TRUNCATED;
            }
        }
        (*ev).exe_len = 0;
        if let Some(exe) = kernel::current_exe_file(&o) {
            let walk = kernel::walk_file_path(&o, exe, &mut (*ev).exe);
            (*ev).exe_len = walk.len;
            flags |= event_flags::EXE_VALID;
            if !walk.complete {
                flags |= event_flags::EXE_TRUNCATED;
            }
        }
        (*ev).flags = flags;
    }
    entry.submit(0);
    count(EventKind::FileOpen, Counter::Emitted);
    Some(())
}
