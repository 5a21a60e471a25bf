//! Kernel structure offsets handed to the programs before load.

/// Kernel structure offsets, resolved by the agent from the running kernel's
/// BTF and handed to the programs as a read-only global before load (our
/// substitute for CO-RE, which Rust eBPF lacks). `valid == 0` means the agent
/// could not resolve them: the programs then skip every field walk and send
/// what the helpers alone give.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,

    // task and process (probes/files.rs, probes/process.rs)
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_files: u32,
    pub mm_exe_file: u32,

    // files, paths and mounts (probes/files.rs)
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
    /// `files_struct::fd_array`, the inline table of the first fds.
    pub files_fd_array: u32,
    /// `dentry::d_name.len`, `dentry::d_inode`.
    pub dentry_d_name_len: u32,
    pub dentry_d_inode: u32,
    /// The dentry's inline name (`d_shortname`, `d_iname` before 6.14),
    /// and its size in bytes (40 on 64-bit kernels).
    pub dentry_d_iname: u32,
    pub dname_inline_len: u32,
    /// `task_struct::fs`, `fs_struct::pwd` (the cwd, a `struct path`).
    pub task_fs: u32,
    pub fs_pwd: u32,
    /// BTF type id of `struct kiocb` (the cast target for fd-table slots)
    /// and the offset of its `ki_filp`.
    pub btf_kiocb: u32,
    pub kiocb_ki_filp: u32,
    /// BTF type id of `struct mount` (the cast target that lets a dentry
    /// walk follow mounts with plain loads: `kernel::walk_path_typed`); 0
    /// when the kernel's BTF has none.
    pub btf_mount: u32,

    // processes, terminals and cgroups (probes/process.rs). Resolved apart
    // from the fields above: `process_valid == 0` disables only the process
    // programs' field reads, not the file sensor's.
    pub process_valid: u32,
    pub task_pid: u32,
    pub task_signal: u32,
    pub task_cgroups: u32,
    pub task_exit_code: u32,
    pub signal_live: u32,
    pub signal_tty: u32,
    pub tty_name: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub bprm_filename: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub cgroup_root: u32,
    pub cgroup_root_hierarchy_id: u32,
    pub kernfs_node_id: u32,

    /// `task_struct::self_exec_id`: changes with every exec in a process
    /// (the network programs' executable cache is valid for one exec). 0
    /// when unknown: no cache, every connect walks the path.
    pub task_self_exec_id: u32,

    /// A process's identity by plain loads from a typed `current`
    /// (`kernel::current_task_info_typed`): `task_struct::comm` and
    /// `::cred`, `cred::uid` and `::gid`. `task_ident_valid == 0` when
    /// any is missing: the programs then call the identity helpers.
    pub task_ident_valid: u32,
    pub task_comm: u32,
    pub task_cred: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,

    /// BTF type id of `struct task_struct`: the file sensor's cast of the
    /// task its `task_switch` program last saw switched in on this CPU
    /// (`kernel::files_task`). 0 without `bpf_rdonly_cast` (before 6.2):
    /// the sensor then calls `bpf_get_current_task_btf` at every open.
    pub btf_task: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 60 * 4);
