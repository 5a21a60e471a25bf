//! Reads of kernel structures through offsets the agent resolved from the
//! running kernel's BTF ([`KernelOffsets`], a read-only global set before
//! load). Rust eBPF has no CO-RE; this is the pure-Rust substitute.
//!
//! Every read goes through `bpf_probe_read_kernel`, so a wrong offset yields
//! garbage or an error, never a verifier rejection or a crash.
use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_probe_read_kernel, generated,
    },
};
use observer_common::{KernelOffsets, TaskInfo, WALK_BUF_LEN, WALK_MAX_DEPTH};

#[unsafe(no_mangle)]
static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
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
    _pad0: 0,
});

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    OFFSETS.load()
}

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an Err.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Fills `info` with the current task's identity.
#[inline(always)]
pub fn current_task_info(info: &mut TaskInfo, o: &KernelOffsets) {
    let pid_tgid = bpf_get_current_pid_tgid();
    info.tgid = (pid_tgid >> 32) as u32;
    info.pid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    info.uid = uid_gid as u32;
    info.gid = (uid_gid >> 32) as u32;
    info._pad0 = 0;
    // SAFETY: plain helper call without pointer arguments.
    info.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    info.comm = bpf_get_current_comm().unwrap_or([0; 16]);
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

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_current_task() }
}

/// The `struct file *` behind `fd` in the current task, if any.
#[inline(always)]
pub fn file_of_fd(o: &KernelOffsets, fd: i64) -> Option<u64> {
    if o.valid == 0 || fd < 0 {
        return None;
    }
    let files = read::<u64>(current_task(), o.task_files)?;
    let fdt = read::<u64>(files, o.files_fdt)?;
    let max = read::<u32>(fdt, o.fdtable_max_fds)?;
    if fd as u64 >= max as u64 {
        return None;
    }
    let array = read::<u64>(fdt, o.fdtable_fd)?;
    let file = read::<u64>(array + fd as u64 * 8, 0)?;
    (file != 0).then_some(file)
}

/// Device and inode number of a `struct file *`.
#[inline(always)]
pub fn file_dev_ino(o: &KernelOffsets, file: u64) -> (u64, u64) {
    let Some(inode) = read::<u64>(file, o.file_f_inode) else {
        return (0, 0);
    };
    let ino = read::<u64>(inode, o.inode_i_ino).unwrap_or(0);
    let dev = read::<u64>(inode, o.inode_i_sb)
        .and_then(|sb| read::<u32>(sb, o.super_block_s_dev))
        .unwrap_or(0);
    (dev as u64, ino)
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

/// The current task's executable file (`mm->exe_file`), if any.
#[inline(always)]
pub fn current_exe_file(o: &KernelOffsets) -> Option<u64> {
    if o.valid == 0 {
        return None;
    }
    let mm = read::<u64>(current_task(), o.task_mm)?;
    let file = read::<u64>(mm, o.mm_exe_file)?;
    (file != 0).then_some(file)
}

/// Outcome of [`walk_file_path`].
pub struct Walk {
    pub len: u16,
    pub complete: bool,
}

/// Rebuilds the path of `file` by walking its dentries and mounts up to the
/// root of the task's mount namespace (the in-container view), like the
/// kernel's `prepend_path`. Names are written child first, each with its NUL;
/// the agent reverses them. Stops after [`WALK_MAX_DEPTH`] steps or when the
/// buffer's write window is used up (then `complete` is false).
#[inline(always)]
pub fn walk_file_path(o: &KernelOffsets, file: u64, buf: &mut [u8; WALK_BUF_LEN]) -> Walk {
    let mut out = Walk { len: 0, complete: false };
    if o.valid == 0 {
        return out;
    }
    let Some(mut dentry) = read::<u64>(file, o.file_f_path + o.path_dentry) else {
        return out;
    };
    let Some(mut vfsmnt) = read::<u64>(file, o.file_f_path + o.path_mnt) else {
        return out;
    };
    let mut pos: usize = 0;
    for _ in 0..WALK_MAX_DEPTH {
        let mnt = vfsmnt - o.mount_mnt as u64;
        let Some(mnt_root) = read::<u64>(vfsmnt, o.vfsmount_mnt_root) else {
            return out;
        };
        let Some(parent) = read::<u64>(dentry, o.dentry_d_parent) else {
            return out;
        };
        if dentry == mnt_root || dentry == parent {
            // Root of this mount: continue at its mountpoint in the parent.
            let Some(mnt_parent) = read::<u64>(mnt, o.mount_mnt_parent) else {
                return out;
            };
            if mnt_parent == mnt || mnt_parent == 0 {
                out.complete = true;
                return out;
            }
            let Some(mountpoint) = read::<u64>(mnt, o.mount_mnt_mountpoint) else {
                return out;
            };
            dentry = mountpoint;
            vfsmnt = mnt_parent + o.mount_mnt as u64;
            continue;
        }
        if pos >= WALK_BUF_LEN / 2 {
            return out;
        }
        let Some(name) = read::<u64>(dentry, o.dentry_d_name + o.qstr_name) else {
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
        pos += n as usize;
        out.len = pos as u16;
        dentry = parent;
    }
    out
}
