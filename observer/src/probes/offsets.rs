//! Kernel structure offsets from the running kernel's BTF, for the programs'
//! field walks (see `observer_common::KernelOffsets`).
//!
//! Input: a BTF blob (normally `/sys/kernel/btf/vmlinux`). Output: a
//! validated `KernelOffsets`. A field that does not resolve is an error: the
//! caller then loads the programs with `valid = 0` and says what is lost.
use std::path::Path;

use btfparse::{Offset, Readable, TypeInformation};
use observer_common::{IoUringOffsets, KernelOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot parse BTF: {0:?}")]
    Parse(btfparse::Error),
    #[error("type `{0}` not found in BTF")]
    NoType(&'static str),
    #[error("field `{ty}.{field}` not found in BTF: {err}")]
    NoField { ty: &'static str, field: &'static str, err: String },
    #[error("field `{ty}.{field}` is a bit field")]
    BitField { ty: &'static str, field: &'static str },
}

struct Buffer(Vec<u8>);

impl Readable for Buffer {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.checked_add(buffer.len());
        match end.and_then(|end| self.0.get(start..end)) {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(btfparse::ErrorKind::EOF, "read past the end of the BTF blob")),
        }
    }
}

/// What the programs need from the running kernel's BTF.
#[derive(Debug, Clone, Copy)]
pub struct KernelBtf {
    pub offsets: KernelOffsets,
    /// BTF id of the `bpf_rdonly_cast` kfunc (kernel 6.2+), if present.
    pub rdonly_cast: Option<u32>,
    /// io_uring opens (probes/iouring.rs); `valid == 0` when the kernel has
    /// no io_uring or an unknown layout.
    pub iouring: IoUringOffsets,
}

/// Resolves the offsets from the BTF file at `path`.
pub fn resolve_file(path: &Path) -> Result<KernelBtf, OffsetsError> {
    let blob = std::fs::read(path)
        .map_err(|source| OffsetsError::Read { path: path.display().to_string(), source })?;
    resolve(blob)
}

/// Resolves the offsets from a BTF blob.
pub fn resolve(blob: Vec<u8>) -> Result<KernelBtf, OffsetsError> {
    let info = TypeInformation::new(&Buffer(blob)).map_err(OffsetsError::Parse)?;
    let rdonly_cast = info
        .id_of("bpf_rdonly_cast")
        .filter(|&id| matches!(info.from_id(id), Some(btfparse::TypeVariant::Func(_))));
    let btf_kiocb = info
        .id_of("kiocb")
        .filter(|&id| matches!(info.from_id(id), Some(btfparse::TypeVariant::Struct(_))))
        .ok_or(OffsetsError::NoType("kiocb"))?;
    let field = |ty: &'static str, field: &'static str| -> Result<(u32, u32), OffsetsError> {
        let tid = info.id_of(ty).ok_or(OffsetsError::NoType(ty))?;
        match info.offset_of(tid, field) {
            Ok((ftid, Offset::ByteOffset(o))) => Ok((o, ftid)),
            Ok((_, Offset::BitOffsetAndSize(..))) => Err(OffsetsError::BitField { ty, field }),
            Err(err) => Err(OffsetsError::NoField { ty, field, err: format!("{err:?}") }),
        }
    };
    let off = |ty: &'static str, f: &'static str| field(ty, f).map(|(o, _)| o);
    // The dentry's inline name: `d_shortname.string` since 6.14, `d_iname`
    // before; its size is DNAME_INLINE_LEN.
    let (dentry_d_iname, iname_tid) = field("dentry", "d_shortname.string").or_else(|_| field("dentry", "d_iname"))?;
    let dname_inline_len = info
        .size_of(iname_tid)
        .ok()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(OffsetsError::NoType("dentry inline name size"))?;
    let mut offsets = KernelOffsets {
        valid: 1,
        task_real_parent: off("task_struct", "real_parent")?,
        task_tgid: off("task_struct", "tgid")?,
        task_mm: off("task_struct", "mm")?,
        task_group_leader: off("task_struct", "group_leader")?,
        task_start_boottime: off("task_struct", "start_boottime")?,
        task_files: off("task_struct", "files")?,
        mm_exe_file: off("mm_struct", "exe_file")?,
        file_f_path: off("file", "f_path")?,
        file_f_inode: off("file", "f_inode")?,
        path_mnt: off("path", "mnt")?,
        path_dentry: off("path", "dentry")?,
        dentry_d_parent: off("dentry", "d_parent")?,
        dentry_d_name: off("dentry", "d_name")?,
        qstr_name: off("qstr", "name")?,
        mount_mnt: off("mount", "mnt")?,
        mount_mnt_parent: off("mount", "mnt_parent")?,
        mount_mnt_mountpoint: off("mount", "mnt_mountpoint")?,
        vfsmount_mnt_root: off("vfsmount", "mnt_root")?,
        inode_i_ino: off("inode", "i_ino")?,
        inode_i_sb: off("inode", "i_sb")?,
        super_block_s_dev: off("super_block", "s_dev")?,
        files_fdt: off("files_struct", "fdt")?,
        fdtable_fd: off("fdtable", "fd")?,
        fdtable_max_fds: off("fdtable", "max_fds")?,
        files_fd_array: off("files_struct", "fd_array")?,
        dentry_d_name_len: off("dentry", "d_name.len")?,
        dentry_d_inode: off("dentry", "d_inode")?,
        dentry_d_iname,
        dname_inline_len,
        task_fs: off("task_struct", "fs")?,
        fs_pwd: off("fs_struct", "pwd")?,
        btf_kiocb,
        kiocb_ki_filp: off("kiocb", "ki_filp")?,
        ..KernelOffsets::default()
    };
    match resolve_process(&info, &mut offsets) {
        Ok(()) => offsets.process_valid = 1,
        Err(e) => tracing::warn!(
            error = %e,
            "process offsets unavailable: no exec arguments, environment credentials, terminals, forks, exits or cgroup names"
        ),
    }
    let iouring = resolve_iouring(&info).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "io_uring offsets unavailable: opens through io_uring are not seen");
        IoUringOffsets::default()
    });
    Ok(KernelBtf { offsets, rdonly_cast, iouring })
}

/// The io_uring section (probes/iouring.rs). Optional: without it only
/// io_uring opens go unseen. `struct io_open` lives in the request's
/// command data (`io_kiocb.cmd`, an anonymous union with `file`).
fn resolve_iouring(info: &TypeInformation) -> Result<IoUringOffsets, OffsetsError> {
    let off = |ty, field| field_offset(info, ty, field);
    let btf_io_kiocb = info
        .id_of("io_kiocb")
        .filter(|&id| matches!(info.from_id(id), Some(btfparse::TypeVariant::Struct(_))))
        .ok_or(OffsetsError::NoType("io_kiocb"))?;
    let cmd = off("io_kiocb", "cmd").or_else(|_| off("io_kiocb", "file"))?;
    let how = cmd + off("io_open", "how")?;
    Ok(IoUringOffsets {
        valid: 1,
        btf_io_kiocb,
        req_opcode: off("io_kiocb", "opcode")?,
        open_dfd: cmd + off("io_open", "dfd")?,
        open_file_slot: cmd + off("io_open", "file_slot")?,
        open_filename: cmd + off("io_open", "filename")?,
        open_how_flags: how + off("open_how", "flags")?,
        open_how_mode: how + off("open_how", "mode")?,
        filename_name: off("filename", "name")?,
        _pad0: 0,
    })
}

fn field_offset(info: &TypeInformation, ty: &'static str, field: &'static str) -> Result<u32, OffsetsError> {
    let tid = info.id_of(ty).ok_or(OffsetsError::NoType(ty))?;
    match info.offset_of(tid, field) {
        Ok((_, Offset::ByteOffset(o))) => Ok(o),
        Ok((_, Offset::BitOffsetAndSize(..))) => Err(OffsetsError::BitField { ty, field }),
        Err(err) => Err(OffsetsError::NoField { ty, field, err: format!("{err:?}") }),
    }
}

/// The process section (probes/process.rs). Optional: without it the file
/// sensor still works.
fn resolve_process(info: &TypeInformation, o: &mut KernelOffsets) -> Result<(), OffsetsError> {
    let off = |ty, field| field_offset(info, ty, field);
    o.task_pid = off("task_struct", "pid")?;
    o.task_signal = off("task_struct", "signal")?;
    o.task_cgroups = off("task_struct", "cgroups")?;
    o.task_exit_code = off("task_struct", "exit_code")?;
    o.signal_live = off("signal_struct", "live")?;
    o.signal_tty = off("signal_struct", "tty")?;
    o.tty_name = off("tty_struct", "name")?;
    o.mm_arg_start = off("mm_struct", "arg_start")?;
    o.mm_arg_end = off("mm_struct", "arg_end")?;
    o.mm_env_start = off("mm_struct", "env_start")?;
    o.mm_env_end = off("mm_struct", "env_end")?;
    o.bprm_filename = off("linux_binprm", "filename")?;
    o.css_set_dfl_cgrp = off("css_set", "dfl_cgrp")?;
    o.cgroup_kn = off("cgroup", "kn")?;
    o.cgroup_root = off("cgroup", "root")?;
    o.cgroup_root_hierarchy_id = off("cgroup_root", "hierarchy_id")?;
    o.kernfs_node_id = off("kernfs_node", "id")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the field walks: if BTF parsing picked a wrong type of the same
    /// name, offsets would point into unrelated memory. The kernel's own
    /// layout fixes a few of them (`struct path` is two pointers).
    #[test]
    fn resolves_running_kernel_offsets() {
        if !Path::new(VMLINUX_BTF).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI needs {VMLINUX_BTF}");
            eprintln!("no {VMLINUX_BTF}: nothing to resolve on this machine");
            return;
        }
        let btf = resolve_file(Path::new(VMLINUX_BTF)).expect("offsets resolve");
        let o = btf.offsets;
        assert_eq!(o.valid, 1);
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.path_dentry, 8);
        assert_eq!(o.qstr_name, 8, "qstr is {{ hash_len: u64, name: *const u8 }}");
        assert!(o.task_files > 0 && o.task_mm > 0 && o.task_tgid > 0);
        assert_ne!(o.task_real_parent, o.task_group_leader);
        assert_eq!(o.dentry_d_name_len, o.dentry_d_name + 4, "qstr.len follows qstr.hash");
        assert!(o.dname_inline_len >= 32 && o.dname_inline_len.is_multiple_of(8), "{}", o.dname_inline_len);
        assert!(o.btf_kiocb > 0);
        assert_eq!(o.process_valid, 1, "process offsets resolve on this kernel");
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8, "mm_struct keeps arg_start, arg_end adjacent");
        assert_eq!(o.mm_env_end, o.mm_env_start + 8);
        assert!(o.task_pid + 4 == o.task_tgid, "task_struct: pid then tgid");
        // io_uring: `struct io_open` at the start of the request (uapi-
        // independent, but stable since 5.19), `open_how` as in the uapi.
        let io = btf.iouring;
        assert_eq!(io.valid, 1, "io_uring offsets resolve on this kernel");
        assert!(io.btf_io_kiocb > 0 && io.req_opcode > 0);
        assert_eq!(io.open_file_slot, io.open_dfd + 4);
        assert_eq!(io.open_how_mode, io.open_how_flags + 8, "open_how is {{ flags, mode, resolve }}");
        assert_eq!(io.filename_name, 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(resolve(vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        assert!(resolve(Vec::new()).is_err());
    }
}
