//! Reads of kernel structures through offsets the agent resolved from the
//! running kernel's BTF ([`KernelOffsets`], a read-only global set before
//! load). Rust eBPF has no CO-RE; this is the pure-Rust substitute.
//!
//! Two kinds of reads:
//! - [`ld`]: a plain load through a BTF-typed pointer (`task_struct` from
//!   `bpf_get_current_task_btf`, and what typed fields lead to). The offsets
//!   are read from the frozen `.rodata` global, so the verifier knows them as
//!   constants and checks every load against the kernel's types; the JIT
//!   turns each into one instruction. This is the hot path: no helper calls.
//! - [`read`]: `bpf_probe_read_kernel`, for untyped pointers (anything read
//!   out of memory the verifier cannot type). About 60 ns each on our
//!   machines, so only on rare paths.
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel, generated,
};
use observer_common::{GATE_HASH_WORDS, KernelOffsets, TaskInfo, WALK_BUF_LEN, WALK_MAX_DEPTH};

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    task_real_parent: 0,
    task_tgid: 0,
    task_mm: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_files: 0,
    mm_exe_file: 0,
    file_f_path: 0,
    file_f_inode: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    vfsmount_mnt_root: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    super_block_s_dev: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    fdtable_max_fds: 0,
    files_fd_array: 0,
    dentry_d_name_len: 0,
    dentry_d_inode: 0,
    dentry_d_iname: 0,
    dname_inline_len: 0,
    task_fs: 0,
    fs_pwd: 0,
    btf_kiocb: 0,
    kiocb_ki_filp: 0,
    btf_mount: 0,
    process_valid: 0,
    task_pid: 0,
    task_signal: 0,
    task_cgroups: 0,
    task_exit_code: 0,
    signal_live: 0,
    signal_tty: 0,
    tty_name: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_env_start: 0,
    mm_env_end: 0,
    bprm_filename: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    cgroup_root: 0,
    cgroup_root_hierarchy_id: 0,
    kernfs_node_id: 0,
    task_self_exec_id: 0,
    task_ident_valid: 0,
    task_comm: 0,
    task_cred: 0,
    cred_uid: 0,
    cred_gid: 0,
    btf_task: 0,
};

/// One field of [`OFFSETS`], loaded so that the verifier sees its value.
macro_rules! off {
    ($f:ident) => {
        // SAFETY: a plain read of a static; volatile so the compiler keeps
        // it a load from .rodata (whose value the verifier then knows).
        unsafe { core::ptr::read_volatile(&$crate::kernel::OFFSETS.$f) }
    };
}
#[allow(unused_imports, reason = "used by probe modules as they need it")]
pub(crate) use off;

/// Plain load of a `T` at `base + off`, where `base` is a BTF-typed pointer
/// (or 0: the JIT's exception table turns a faulting typed load into 0).
#[inline(always)]
pub fn ld<T: Copy>(base: u64, off: u32) -> T {
    // SAFETY: only used on typed kernel pointers at offsets from BTF; the
    // verifier checks each such load against the type and the JIT makes a
    // fault read 0 instead of crashing.
    unsafe { core::ptr::read_volatile((base + off as u64) as *const T) }
}

/// A load at `base + off`: typed ([`ld`]) or through a helper ([`read`]).
#[inline(always)]
pub fn get<const TYPED: bool, T: Copy>(base: u64, off: u32) -> Option<T> {
    if TYPED { Some(ld(base, off)) } else { read(base, off) }
}

/// Reads a `T` at `base + off` through `bpf_probe_read_kernel` (untyped
/// pointers; rare paths only).
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an Err.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// The current task as a BTF-typed pointer.
#[inline(always)]
pub fn task_btf() -> u64 {
    // SAFETY: plain helper call; the result is a trusted task_struct pointer.
    unsafe { generated::bpf_get_current_task_btf() as u64 }
}

/// Start time of the current process (`group_leader->start_boottime`), as
/// in [`TaskInfo::start_boot_ns`]; 0 without kernel offsets.
#[inline(always)]
pub fn process_start_ns() -> u64 {
    if off!(valid) == 0 {
        return 0;
    }
    let leader: u64 = ld(task_btf(), off!(task_group_leader));
    ld::<u64>(leader, off!(task_start_boottime))
}

/// Fills `info` with the current task's identity: plain loads from the
/// typed `current` ([`current_task_info_typed`]).
#[inline(always)]
pub fn current_task_info(info: &mut TaskInfo) {
    current_task_info_typed(info, task_btf());
}

/// [`current_task_info`] from `task`, a BTF-typed pointer to `current`
/// (the `sched_process_exec` and `sched_process_fork` hooks hand it over):
/// plain loads instead of the helpers for the task pointer, pid and tgid,
/// uid and gid, cgroup and name, each a call that pays this kind of
/// host's return-thunk mitigation (docs/design.md, "Process sensor cost").
/// The same values: the helpers read these fields of `current` (the uid
/// and gid as `from_kuid(&init_user_ns, ..)`, the identity). Without the
/// offsets for them, the helpers.
#[inline(always)]
pub fn current_task_info_typed(info: &mut TaskInfo, task: u64) {
    if off!(valid) == 0 || off!(process_valid) == 0 || off!(task_ident_valid) == 0 {
        current_task_info_of(info, || task);
        return;
    }
    info.pid = ld::<u32>(task, off!(task_pid));
    info.tgid = ld::<u32>(task, off!(task_tgid));
    let cred: u64 = ld(task, off!(task_cred));
    info.uid = ld::<u32>(cred, off!(cred_uid));
    info.gid = ld::<u32>(cred, off!(cred_gid));
    info._pad0 = 0;
    let css_set: u64 = ld(task, off!(task_cgroups));
    let cgroup: u64 = ld(css_set, off!(css_set_dfl_cgrp));
    let kn: u64 = ld(cgroup, off!(cgroup_kn));
    info.cgroup_id = ld::<u64>(kn, off!(kernfs_node_id));
    // `comm` is 16 bytes, NUL-padded by the kernel (`strscpy_pad`): two
    // words, as `bpf_get_current_comm` would copy them.
    let words = [ld::<u64>(task, off!(task_comm)), ld::<u64>(task, off!(task_comm) + 8)];
    // SAFETY: 16 bytes into the 16-byte `comm`, unaligned writes.
    unsafe {
        core::ptr::write_unaligned(info.comm.as_mut_ptr().cast::<u64>(), words[0]);
        core::ptr::write_unaligned(info.comm.as_mut_ptr().add(8).cast::<u64>(), words[1]);
    }
    lineage(info, task);
}

/// The parent's tgid and the process's start time (its group leader's)
/// from a typed task pointer.
#[inline(always)]
fn lineage(info: &mut TaskInfo, task: u64) {
    let parent: u64 = ld(task, off!(task_real_parent));
    info.ppid = ld::<u32>(parent, off!(task_tgid));
    let leader: u64 = ld(task, off!(task_group_leader));
    info.start_boot_ns = ld::<u64>(leader, off!(task_start_boottime));
}

/// [`current_task_info`] with `current` as a typed task pointer from
/// `task` (called only with the kernel offsets).
#[inline(always)]
pub fn current_task_info_of(info: &mut TaskInfo, task: impl FnOnce() -> u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    info.tgid = (pid_tgid >> 32) as u32;
    info.pid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    info.uid = uid_gid as u32;
    info.gid = (uid_gid >> 32) as u32;
    info._pad0 = 0;
    // SAFETY: plain helper call without pointer arguments.
    info.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // The raw helper writes the name NUL-padded straight into the event;
    // aya's wrapper zeroes a local copy first, which costs a `memset` call
    // the verifier walks byte by byte.
    // SAFETY: writes at most 16 bytes into the 16-byte `comm`.
    unsafe { generated::bpf_get_current_comm(info.comm.as_mut_ptr().cast(), info.comm.len() as u32) };
    info.ppid = 0;
    info.start_boot_ns = 0;
    if off!(valid) != 0 {
        lineage(info, task());
    }
}

/// A `struct file *`: typed (loads checked against BTF) or untyped (helper
/// reads only). Code on each kind is separate (`const TYPED` parameters):
/// if one variable could hold either, LLVM would merge the two and the
/// verifier could not follow.
#[derive(Clone, Copy)]
pub enum FileRef {
    Typed(u64),
    Untyped(u64),
}

/// `current` as a typed pointer for program types that cannot count on
/// `bpf_get_current_task_btf` (the network sensor's cgroup hooks: it is a
/// tracing helper on older kernels): `bpf_get_current_task()` cast with
/// `bpf_rdonly_cast`. `None` without the kfunc or the identity offsets
/// (load-time constants: the verifier walks one branch only); callers
/// then take the helper path ([`current_task_info_untyped`]).
#[inline(always)]
pub fn current_task_cast() -> Option<u64> {
    if off!(btf_task) == 0 || off!(valid) == 0 || off!(process_valid) == 0 || off!(task_ident_valid) == 0 {
        return None;
    }
    Some(rdonly_cast(current_task(), off!(btf_task)))
}

/// [`current_task_info`] through helper reads only, for program types
/// that cannot count on `bpf_get_current_task_btf` (the network sensor's
/// cgroup hooks: it is a tracing helper on older kernels).
#[inline(always)]
pub fn current_task_info_untyped(info: &mut TaskInfo, o: &KernelOffsets) {
    let pid_tgid = bpf_get_current_pid_tgid();
    info.tgid = (pid_tgid >> 32) as u32;
    info.pid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    info.uid = uid_gid as u32;
    info.gid = (uid_gid >> 32) as u32;
    info._pad0 = 0;
    // SAFETY: plain helper call without pointer arguments.
    info.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: writes at most 16 bytes into the 16-byte `comm`.
    unsafe { generated::bpf_get_current_comm(info.comm.as_mut_ptr().cast(), info.comm.len() as u32) };
    info.ppid = 0;
    info.start_boot_ns = 0;
    if o.valid != 0 {
        let task = current_task();
        if let Some(parent) = read::<u64>(task, o.task_real_parent) {
            info.ppid = read::<u32>(parent, o.task_tgid).unwrap_or(0);
        }
        if let Some(leader) = read::<u64>(task, o.task_group_leader) {
            info.start_boot_ns = read::<u64>(leader, o.task_start_boottime).unwrap_or(0);
        }
    }
}

/// [`current_exe_file`] through helper reads only (see
/// [`current_task_info_untyped`]).
#[inline(always)]
pub fn current_exe_file_untyped(o: &KernelOffsets) -> Option<u64> {
    if o.valid == 0 {
        return None;
    }
    let mm = read::<u64>(current_task(), o.task_mm)?;
    let file = read::<u64>(mm, o.mm_exe_file)?;
    (file != 0).then_some(file)
}

/// The `struct file *` behind `fd` in the current task.
///
/// The fd table's slots are untyped memory (`struct file **`), so the slot
/// is cast with `bpf_rdonly_cast` to `struct kiocb`, whose first member is
/// the `struct file *`: from there every load is typed. Kernels without the
/// kfunc (before 6.2) get `0` from the cast (see [`rdonly_cast`]) and take
/// helper reads instead.
#[inline(always)]
pub fn file_of_fd(fd: i64) -> Option<FileRef> {
    if off!(valid) == 0 || fd < 0 {
        return None;
    }
    let files: u64 = ld(task_btf(), off!(task_files));
    let fdt: u64 = ld(files, off!(files_fdt));
    // Every table holds at least `NR_OPEN_DEFAULT` slots (the one embedded
    // in `files_struct`; tables only grow), so most descriptors need no
    // bound read.
    if fd >= NR_OPEN_DEFAULT {
        let max: u32 = ld(fdt, off!(fdtable_max_fds));
        if fd as u64 >= max as u64 {
            return None;
        }
    }
    let array: u64 = ld(fdt, off!(fdtable_fd));
    let slot = array + (fd as u64) * 8;
    let kiocb = rdonly_cast(slot, off!(btf_kiocb));
    if kiocb != 0 {
        let file: u64 = ld(kiocb, off!(kiocb_ki_filp));
        return (file != 0).then_some(FileRef::Typed(file));
    }
    let file = read::<u64>(slot, 0)?;
    (file != 0).then_some(FileRef::Untyped(file))
}

/// Slots of the smallest fd table (`NR_OPEN_DEFAULT`, `BITS_PER_LONG` on
/// the 64-bit kernels we build for).
const NR_OPEN_DEFAULT: i64 = 64;

/// Marker the agent patches before load (`probes::patch`): the helper call
/// number 32767 (`RDONLY_CAST_MARKER` in the agent) becomes a call of the kfunc
/// `bpf_rdonly_cast(obj, btf_id)` (which the verifier then inlines into a
/// register move), or `r0 = 0` on kernels without it. aya cannot relocate
/// kfunc calls itself.
#[inline(always)]
pub fn rdonly_cast(obj: u64, btf_id: u32) -> u64 {
    let ret: u64;
    // SAFETY: after patching, a kfunc call with the C calling convention:
    // arguments in r1/r2, result in r0, r1-r5 clobbered; no memory written.
    unsafe {
        core::arch::asm!(
            "call 32767",
            inout("r1") obj => _,
            inout("r2") btf_id as u64 => _,
            lateout("r0") ret,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
        );
    }
    ret
}

/// A file's inode and inode number (the device is read separately, only
/// when needed: [`inode_dev`]).
#[inline(always)]
pub fn file_inode<const TYPED: bool>(file: u64) -> (u64, u64) {
    let inode = get::<TYPED, u64>(file, off!(file_f_inode)).unwrap_or(0);
    (inode, get::<TYPED, u64>(inode, off!(inode_i_ino)).unwrap_or(0))
}

/// A dentry's inode and inode number.
#[inline(always)]
pub fn dentry_inode<const TYPED: bool>(dentry: u64) -> (u64, u64) {
    let inode = get::<TYPED, u64>(dentry, off!(dentry_d_inode)).unwrap_or(0);
    (inode, get::<TYPED, u64>(inode, off!(inode_i_ino)).unwrap_or(0))
}

/// The device (`super_block::s_dev`) of an inode.
#[inline(always)]
pub fn inode_dev<const TYPED: bool>(inode: u64) -> u64 {
    get::<TYPED, u64>(inode, off!(inode_i_sb))
        .and_then(|sb| get::<TYPED, u32>(sb, off!(super_block_s_dev)))
        .unwrap_or(0) as u64
}

/// The file's dentry.
#[inline(always)]
pub fn file_dentry<const TYPED: bool>(file: u64) -> u64 {
    get::<TYPED, u64>(file, off!(file_f_path) + off!(path_dentry)).unwrap_or(0)
}

/// A dentry's parent directory.
#[inline(always)]
pub fn dentry_parent<const TYPED: bool>(dentry: u64) -> u64 {
    get::<TYPED, u64>(dentry, off!(dentry_d_parent)).unwrap_or(0)
}

/// A dentry's `len`-byte name (`len` from [`dentry_name_len`], read once
/// by the caller) as little-endian words; returns `len`. Short names come
/// from the inline name with typed loads (words 0..5), longer ones (up to
/// 64 bytes) through one helper read (`None` when it fails). The hashed
/// words are zeroed past the length; words past those are stale.
#[inline(always)]
pub fn dentry_name_words<const TYPED: bool>(dentry: u64, len: u32, words: &mut [u64; 8]) -> Option<u32> {
    if let Some(base) = dentry_inline_name::<TYPED>(dentry, len) {
        words[0] = ld(base, 0);
        words[1] = ld(base, 8);
        words[2] = ld(base, 16);
        words[3] = ld(base, 24);
        words[4] = ld(base, 32);
    } else {
        let name = get::<TYPED, u64>(dentry, off!(dentry_d_name) + off!(qstr_name))?;
        // SAFETY: 64 bytes into our 64-byte array; the helper checks `name`.
        let r = unsafe {
            generated::bpf_probe_read_kernel(words.as_mut_ptr().cast(), 64, name as *const core::ffi::c_void)
        };
        if r != 0 {
            return None;
        }
    }
    mask_words(words, len);
    Some(len)
}

/// The length of a dentry's name when the name gate can take it (1 to
/// `GATE_NAME_MAX` bytes).
#[inline(always)]
pub fn dentry_name_len<const TYPED: bool>(dentry: u64) -> Option<u32> {
    let len = get::<TYPED, u32>(dentry, off!(dentry_d_name_len))?;
    if len == 0 || len as usize > observer_common::GATE_NAME_MAX {
        return None;
    }
    Some(len)
}

/// Address of a dentry's inline name when a `len`-byte name is held there
/// (typed dentries only; longer names live elsewhere).
#[inline(always)]
pub fn dentry_inline_name<const TYPED: bool>(dentry: u64, len: u32) -> Option<u64> {
    (TYPED && len < off!(dname_inline_len)).then(|| dentry + off!(dentry_d_iname) as u64)
}

/// The first two and the last two bytes of a `len`-byte inline name at
/// `base` (see [`dentry_inline_name`]), each as a little-endian pair: what
/// the name gate's pre-filter tests. One to three typed loads, where the
/// whole name takes five plus masking. The name is NUL-terminated at `len`,
/// so for a one-byte name the second byte is 0, and the byte before it
/// (position -1) reads as 0, as in the name gate's padded words.
#[inline(always)]
pub fn inline_name_ends(base: u64, len: u32) -> (u32, u32) {
    let w0: u64 = ld(base, 0);
    let first2 = (w0 & 0xffff) as u32;
    // Byte len - 2 is in word j - 1 at bit `shift`, with j = (len + 6) / 8
    // (no underflow for len 1: j is 0, word -1).
    let i = len as u64 + 6;
    let j = i / 8;
    let shift = (i % 8) * 8;
    let lo = inline_word(base, w0, j) >> shift;
    // Byte len - 1 starts the next word when byte len - 2 ends one.
    let hi = if shift == 56 { inline_word(base, w0, j + 1) << 8 } else { 0 };
    (first2, ((lo | hi) & 0xffff) as u32)
}

/// Word `j - 1` of an inline name (`w0` already loaded), 0 for word -1;
/// chosen by value, so each load has a constant offset.
#[inline(always)]
fn inline_word(base: u64, w0: u64, j: u64) -> u64 {
    match j {
        1 => w0,
        2 => ld(base, 8),
        3 => ld(base, 16),
        4 => ld(base, 24),
        5 => ld(base, 32),
        _ => 0,
    }
}

/// `NAME_MASKS[len][i]` keeps the bytes of word `i` that lie before `len`
/// (the words the name gate hashes). A table instead of comparisons: every
/// comparison on the length would split the verifier's states, and over
/// several words they never merge.
#[unsafe(no_mangle)]
static NAME_MASKS: [[u64; GATE_HASH_WORDS]; 65] = name_masks();

const fn name_masks() -> [[u64; GATE_HASH_WORDS]; 65] {
    let mut t = [[0u64; GATE_HASH_WORDS]; 65];
    let mut len = 0;
    while len <= 64 {
        let mut i = 0;
        while i < GATE_HASH_WORDS {
            let start = i * 8;
            t[len][i] = if len <= start {
                0
            } else if len >= start + 8 {
                u64::MAX
            } else {
                (1u64 << ((len - start) * 8)) - 1
            };
            i += 1;
        }
        len += 1;
    }
    t
}

/// `x`, through one real ALU instruction (`x |= 0`) LLVM cannot see into.
/// Two uses: (1) LLVM may not drop a bounds check it believes redundant
/// (the verifier may have lost that bound); (2) the verifier links registers
/// copied from one another and refines all of them on a branch; an ALU
/// result is a new, unlinked value, so branching on it leaves `x` alone.
#[inline(always)]
pub fn opaque(x: u64) -> u64 {
    let mut v = x;
    // SAFETY: `v |= 0` on a register; no memory, no stack, no flags.
    unsafe { core::arch::asm!("{0} |= 0", inout(reg) v, options(nomem, nostack, pure)) };
    v
}

/// Zeroes every byte at or past `len` in the hashed words (names are
/// compared as whole words; words past those are not looked at).
#[inline(always)]
pub fn mask_words(words: &mut [u64; 8], len: u32) {
    let Some(masks) = NAME_MASKS.get(opaque(len as u64) as usize) else {
        return;
    };
    let mut i = 0;
    while i < GATE_HASH_WORDS {
        words[i] &= masks[i];
        i += 1;
    }
}

/// The current task's executable file (`mm->exe_file`), typed.
#[inline(always)]
pub fn current_exe_file() -> Option<u64> {
    exe_file_of(task_btf())
}

/// `task`'s executable file (`mm->exe_file`); `task` is a typed task
/// pointer.
#[inline(always)]
pub fn exe_file_of(task: u64) -> Option<u64> {
    if off!(valid) == 0 {
        return None;
    }
    let mm: u64 = ld(task, off!(task_mm));
    if mm == 0 {
        return None;
    }
    let file: u64 = ld(mm, off!(mm_exe_file));
    (file != 0).then_some(file)
}

/// The current task's working directory as (vfsmount, dentry), typed.
#[inline(always)]
pub fn current_cwd() -> Option<(u64, u64)> {
    if off!(valid) == 0 {
        return None;
    }
    let fs: u64 = ld(task_btf(), off!(task_fs));
    if fs == 0 {
        return None;
    }
    let mnt: u64 = ld(fs, off!(fs_pwd) + off!(path_mnt));
    let dentry: u64 = ld(fs, off!(fs_pwd) + off!(path_dentry));
    Some((mnt, dentry))
}

/// (vfsmount, dentry) of a file's path, through helper reads (rare paths).
#[inline(always)]
pub fn file_path(file: u64) -> Option<(u64, u64)> {
    let dentry = read::<u64>(file, off!(file_f_path) + off!(path_dentry))?;
    let mnt = read::<u64>(file, off!(file_f_path) + off!(path_mnt))?;
    Some((mnt, dentry))
}

/// The offsets as one value, for code that reads through helpers only
/// (probes/process.rs); typed loads use [`off!`] field by field.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain read of a static.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Untyped current task pointer (for helper reads).
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: plain helper call.
    unsafe { aya_ebpf::helpers::bpf_get_current_task() }
}

/// The cgroup v2 id of `task` (`task->cgroups->dfl_cgrp->kn->id`), as
/// `bpf_get_current_cgroup_id` would return it in that task's context.
#[inline(always)]
pub fn task_cgroup_id(o: &KernelOffsets, task: u64) -> Option<u64> {
    if o.process_valid == 0 {
        return None;
    }
    let css_set = read::<u64>(task, o.task_cgroups)?;
    let cgroup = read::<u64>(css_set, o.css_set_dfl_cgrp)?;
    let kn = read::<u64>(cgroup, o.cgroup_kn)?;
    read::<u64>(kn, o.kernfs_node_id)
}

/// [`walk_path`] of a file's path.
#[inline(always)]
pub fn walk_file_path(file: u64, buf: &mut [u8; WALK_BUF_LEN]) -> Walk {
    match file_path(file) {
        Some((mnt, dentry)) => walk_path(mnt, dentry, buf),
        None => Walk { len: 0, complete: false },
    }
}

/// Outcome of [`walk_path`].
pub struct Walk {
    pub len: u16,
    pub complete: bool,
}

/// Rebuilds a path by walking dentries and mounts up to the root of the
/// task's mount namespace (the in-container view), like the kernel's
/// `prepend_path`. Names are written child first, each with its NUL; the
/// agent reverses them. Stops after [`WALK_MAX_DEPTH`] steps or when the
/// buffer's write window is used up (then `complete` is false). Helper
/// reads throughout: this runs only for events that are emitted.
#[inline(always)]
pub fn walk_path(vfsmnt: u64, dentry: u64, buf: &mut [u8; WALK_BUF_LEN]) -> Walk {
    let mut out = Walk { len: 0, complete: false };
    if off!(valid) == 0 || vfsmnt == 0 || dentry == 0 {
        return out;
    }
    let Some(scratch) = crate::maps::scratch() else {
        return out;
    };
    let pos_slot = &raw mut scratch.walk_pos;
    // SAFETY: plain accesses to our per-CPU scratch value.
    unsafe { core::ptr::write_volatile(pos_slot, 0) };
    let (mut vfsmnt, mut dentry) = (vfsmnt, dentry);
    for _ in 0..WALK_MAX_DEPTH {
        let mnt = vfsmnt - off!(mount_mnt) as u64;
        let Some(mnt_root) = read::<u64>(vfsmnt, off!(vfsmount_mnt_root)) else {
            return out;
        };
        let Some(parent) = read::<u64>(dentry, off!(dentry_d_parent)) else {
            return out;
        };
        if dentry == mnt_root || dentry == parent {
            // Root of this mount: continue at its mountpoint in the parent.
            let Some(mnt_parent) = read::<u64>(mnt, off!(mount_mnt_parent)) else {
                return out;
            };
            if mnt_parent == mnt || mnt_parent == 0 {
                out.complete = true;
                return out;
            }
            let Some(mountpoint) = read::<u64>(mnt, off!(mount_mnt_mountpoint)) else {
                return out;
            };
            dentry = mountpoint;
            vfsmnt = mnt_parent + off!(mount_mnt) as u64;
            continue;
        }
        // SAFETY: as above.
        let pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize;
        if pos >= WALK_BUF_LEN / 2 {
            return out;
        }
        let Some(name) = read::<u64>(dentry, off!(dentry_d_name) + off!(qstr_name)) else {
            return out;
        };
        // SAFETY: the destination window is `buf[pos & 255 ..][..256]`, inside
        // the 512-byte buffer; the helper checks the source address.
        let n = unsafe {
            generated::bpf_probe_read_kernel_str(
                buf.as_mut_ptr().add(pos & (WALK_BUF_LEN / 2 - 1)).cast(),
                (WALK_BUF_LEN / 2) as u32,
                name as *const core::ffi::c_void,
            )
        };
        if n <= 0 {
            return out;
        }
        let pos = pos + n as usize;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(pos_slot, pos as u64) };
        out.len = pos as u16;
        dentry = parent;
    }
    out
}

/// Words of a dentry's inline name copied by [`walk_file_path_typed`] (40
/// bytes: `DNAME_INLINE_LEN` on 64-bit kernels since 6.14; 32 before, when
/// the last word reads the next field of the dentry, past the name's NUL).
const INLINE_NAME_WORDS: usize = 5;

/// [`walk_file_path`] with plain loads instead of helper reads, for a typed
/// `struct file *` (e.g. [`current_exe_file`]): the mount is cast to
/// `struct mount` once (`bpf_rdonly_cast`, see [`rdonly_cast`]), and from
/// there every pointer of the walk is typed. Names shorter than the
/// dentry's inline name are copied as words; longer ones (and names moved
/// out of line by a rename) take one string read. About a tenth of the
/// helper walk's cost (a helper read is about 60 ns; a path of four levels
/// took about sixteen). `None` when the cast is unavailable (kernel before
/// 6.2, or no `struct mount` in its BTF): then use [`walk_file_path`].
#[inline(always)]
pub fn walk_file_path_typed(file: u64, buf: &mut [u8; WALK_BUF_LEN]) -> Option<Walk> {
    if off!(valid) == 0 || off!(btf_mount) == 0 {
        return None;
    }
    let vfsmnt: u64 = ld(file, off!(file_f_path) + off!(path_mnt));
    let dentry: u64 = ld(file, off!(file_f_path) + off!(path_dentry));
    if vfsmnt == 0 || dentry == 0 {
        return None;
    }
    let mnt = rdonly_cast(vfsmnt - off!(mount_mnt) as u64, off!(btf_mount));
    if mnt == 0 {
        return None;
    }
    Some(walk_path_typed(mnt, dentry, buf))
}

/// [`walk_path`] from a typed `struct mount *` and `struct dentry *`: the
/// same output, plain loads throughout.
#[inline(always)]
fn walk_path_typed(mnt: u64, dentry: u64, buf: &mut [u8; WALK_BUF_LEN]) -> Walk {
    let mut out = Walk { len: 0, complete: false };
    let Some(scratch) = crate::maps::scratch() else {
        return out;
    };
    let pos_slot = &raw mut scratch.walk_pos;
    // SAFETY: plain accesses to our per-CPU scratch value.
    unsafe { core::ptr::write_volatile(pos_slot, 0) };
    let (mut mnt, mut dentry) = (mnt, dentry);
    for _ in 0..WALK_MAX_DEPTH {
        let mnt_root: u64 = ld(mnt, off!(mount_mnt) + off!(vfsmount_mnt_root));
        let parent: u64 = ld(dentry, off!(dentry_d_parent));
        if dentry == mnt_root || dentry == parent || parent == 0 {
            // Root of this mount: continue at its mountpoint in the parent.
            let mnt_parent: u64 = ld(mnt, off!(mount_mnt_parent));
            if mnt_parent == mnt || mnt_parent == 0 {
                out.complete = true;
                return out;
            }
            dentry = ld(mnt, off!(mount_mnt_mountpoint));
            mnt = mnt_parent;
            if dentry == 0 {
                return out;
            }
            continue;
        }
        // SAFETY: as above.
        let pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize;
        if pos >= WALK_BUF_LEN / 2 {
            return out;
        }
        // SAFETY: `pos & 255` plus at most 256 bytes stays inside the
        // 512-byte buffer.
        let dst = unsafe { buf.as_mut_ptr().add(pos & (WALK_BUF_LEN / 2 - 1)) };
        let len: u32 = ld(dentry, off!(dentry_d_name_len));
        let name: u64 = ld(dentry, off!(dentry_d_name) + off!(qstr_name));
        let inline = dentry + off!(dentry_d_iname) as u64;
        let n = if name == inline && len < off!(dname_inline_len) && (len as usize) < INLINE_NAME_WORDS * 8 {
            // The inline name is NUL-terminated at `len`: copying whole
            // words carries the NUL along (bytes past it are overwritten by
            // the next name or lie past `len`).
            let mut i = 0;
            while i < INLINE_NAME_WORDS {
                let w: u64 = ld(inline, (i * 8) as u32);
                // SAFETY: at most 40 bytes from `dst`, inside the buffer (see
                // above).
                unsafe { core::ptr::write_unaligned(dst.add(i * 8).cast::<u64>(), w) };
                i += 1;
            }
            len as i64 + 1
        } else {
            // SAFETY: at most 256 bytes from `dst` (see above); the helper
            // checks the source address.
            unsafe {
                generated::bpf_probe_read_kernel_str(dst.cast(), (WALK_BUF_LEN / 2) as u32, name as *const core::ffi::c_void)
            }
        };
        if n <= 0 {
            return out;
        }
        let pos = pos + n as usize;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(pos_slot, pos as u64) };
        out.len = pos as u16;
        dentry = parent;
    }
    out
}
