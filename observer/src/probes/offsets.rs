//! Kernel structure offsets from the running kernel's BTF, for the programs'
//! field walks (see `observer_common::KernelOffsets`).
//!
//! Input: a BTF blob (normally `/sys/kernel/btf/vmlinux`). Output: a
//! validated `KernelOffsets`. A field that does not resolve is an error: the
//! caller then loads the programs with `valid = 0` and says what is lost.
//!
//! The lookup reads the blob in place: one index of where each type record
//! starts (4 bytes a type), no parsed copy of the types. A full parse
//! (btfparse, before) held ~69 MB at its peak for the ~30 fields we need,
//! more than aya's own parse of the same BTF, and set the agent's start
//! peak. aya's `Btf` keeps its types private, so it cannot answer this.
use std::path::Path;

use observer_common::{IoUringOffsets, KernelOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot parse BTF: {0}")]
    Parse(&'static str),
    #[error("type `{0}` not found in BTF")]
    NoType(&'static str),
    #[error("field `{ty}.{field}` not found in BTF: {err}")]
    NoField { ty: &'static str, field: &'static str, err: String },
    #[error("field `{ty}.{field}` is a bit field")]
    BitField { ty: &'static str, field: &'static str },
}

/// BTF kinds (include/uapi/linux/btf.h).
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

const BTF_MAGIC: u16 = 0xeb9f;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_HEADER: usize = 12;

/// The type section of a BTF blob, indexed by type id, read in place.
struct Types<'a> {
    /// The type section.
    types: &'a [u8],
    /// The string section.
    strings: &'a [u8],
    /// Where type id `i + 1` starts in `types` (id 0 is void).
    starts: Vec<u32>,
}

/// One type record's header.
#[derive(Clone, Copy)]
struct Type {
    at: usize,
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, by kind.
    size_or_type: u32,
}

/// A member's offset: bytes, or a bit field (bit offset, bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offset {
    Bytes(u32),
    Bits,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

impl<'a> Types<'a> {
    fn new(blob: &'a [u8]) -> Result<Self, OffsetsError> {
        let bad = OffsetsError::Parse;
        let magic = blob.get(0..2).ok_or(bad("no header"))?;
        // The kernel's BTF is in the host's byte order; another order is a
        // foreign blob we do not read.
        if u16::from_ne_bytes([magic[0], magic[1]]) != BTF_MAGIC {
            return Err(bad("bad magic (not BTF, or another byte order)"));
        }
        let hdr = |i: usize| u32_at(blob, 8 + 4 * i).map(|v| v as usize).ok_or(bad("short header"));
        let hdr_len = u32_at(blob, 4).ok_or(bad("short header"))? as usize;
        let (type_off, type_len, str_off, str_len) = (hdr(0)?, hdr(1)?, hdr(2)?, hdr(3)?);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            blob.get(start..start.checked_add(len)?)
        };
        let types = section(type_off, type_len).ok_or(bad("type section out of bounds"))?;
        let strings = section(str_off, str_len).ok_or(bad("string section out of bounds"))?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4).ok_or(bad("truncated type"))?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen,
                kind::ENUM | kind::FUNC_PROTO => 8 * vlen,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                _ => return Err(bad("unknown type kind")),
            };
            starts.push(u32::try_from(at).map_err(|_| bad("type section too large"))?);
            at += TYPE_HEADER + extra;
        }
        if at != types.len() {
            return Err(bad("truncated type"));
        }
        Ok(Self { types, strings, starts })
    }

    fn get(&self, id: u32) -> Option<Type> {
        let at = *self.starts.get(usize::try_from(id).ok()?.checked_sub(1)?)? as usize;
        let info = u32_at(self.types, at + 4)?;
        Some(Type {
            at,
            name_off: u32_at(self.types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(self.types, at + 8)?,
        })
    }

    /// The NUL-terminated string at `off`.
    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        rest.split(|&b| b == 0).next().unwrap_or_default()
    }

    /// The id of the first type of one of `kinds` named `name`.
    fn id_of(&self, name: &str, kinds: &[u32]) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            self.get(id).is_some_and(|t| kinds.contains(&t.kind) && self.name(t.name_off) == name.as_bytes())
        })
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn skip_modifiers(&self, mut id: u32) -> Option<Type> {
        // A cycle would be a corrupt blob: bound the walk.
        for _ in 0..64 {
            let t = self.get(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// The members of a struct or union: (name_off, type id, offset).
    fn members(&self, t: Type) -> impl Iterator<Item = (u32, u32, Offset)> + '_ {
        (0..t.vlen).filter_map(move |i| {
            let at = t.at + TYPE_HEADER + 12 * i;
            let (name_off, ty, raw) = (u32_at(self.types, at)?, u32_at(self.types, at + 4)?, u32_at(self.types, at + 8)?);
            // With kind_flag the top 8 bits are a bit field's size.
            let (bits, size) = if t.kind_flag { (raw & 0xff_ffff, raw >> 24) } else { (raw, 0) };
            let offset = if size == 0 && bits % 8 == 0 { Offset::Bytes(bits / 8) } else { Offset::Bits };
            Some((name_off, ty, offset))
        })
    }

    /// The offset and type of `path` (member names joined by `.`) in type
    /// `id`. Members of anonymous structs and unions count as members of the
    /// enclosing type, as in C.
    fn offset_of(&self, id: u32, path: &str) -> Result<(Offset, u32), String> {
        let mut parts = path.split('.');
        let first = parts.next().filter(|p| !p.is_empty()).ok_or("empty path")?;
        let (mut offset, mut ty) = self.member(id, first)?;
        for part in parts {
            let (inner, inner_ty) = self.member(ty, part)?;
            offset = add(offset, inner);
            ty = inner_ty;
        }
        Ok((offset, ty))
    }

    /// The member `name` of the struct or union `id`, looked for in its
    /// anonymous members first.
    fn member(&self, id: u32, name: &str) -> Result<(Offset, u32), String> {
        let t = self.skip_modifiers(id).ok_or_else(|| format!("bad type id {id}"))?;
        if t.kind != kind::STRUCT && t.kind != kind::UNION {
            return Err(format!("looking up `{name}`: not a struct or union"));
        }
        for (_, ty, offset) in self.members(t).filter(|&(n, ..)| n == 0) {
            if let Ok((inner, inner_ty)) = self.member(ty, name) {
                return Ok((add(offset, inner), inner_ty));
            }
        }
        self.members(t)
            .find(|&(n, ..)| n != 0 && self.name(n) == name.as_bytes())
            .map(|(_, ty, offset)| (offset, ty))
            .ok_or_else(|| format!("member `{name}` not found"))
    }

    /// The size in bytes of type `id`.
    fn size_of(&self, id: u32) -> Option<u64> {
        let t = self.skip_modifiers(id)?;
        match t.kind {
            kind::INT | kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 | kind::FLOAT | kind::DATASEC => {
                Some(u64::from(t.size_or_type))
            }
            kind::PTR => Some(std::mem::size_of::<usize>() as u64),
            kind::ARRAY => {
                let elem = u32_at(self.types, t.at + TYPE_HEADER)?;
                let count = u32_at(self.types, t.at + TYPE_HEADER + 8)?;
                self.size_of(elem)?.checked_mul(u64::from(count))
            }
            kind::VAR => self.size_of(t.size_or_type),
            _ => None,
        }
    }
}

fn add(a: Offset, b: Offset) -> Offset {
    match (a, b) {
        (Offset::Bytes(a), Offset::Bytes(b)) => a.checked_add(b).map_or(Offset::Bits, Offset::Bytes),
        _ => Offset::Bits,
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
    resolve(&blob)
}

/// Resolves the offsets from a BTF blob.
pub fn resolve(blob: &[u8]) -> Result<KernelBtf, OffsetsError> {
    let types = Types::new(blob)?;
    let rdonly_cast = types.id_of("bpf_rdonly_cast", &[kind::FUNC]);
    let btf_kiocb = types.id_of("kiocb", &[kind::STRUCT]).ok_or(OffsetsError::NoType("kiocb"))?;
    let field = |ty: &'static str, field: &'static str| field_of(&types, ty, field);
    let off = |ty: &'static str, f: &'static str| field(ty, f).map(|(o, _)| o);
    // The dentry's inline name: `d_shortname.string` since 6.14, `d_iname`
    // before; its size is DNAME_INLINE_LEN.
    let (dentry_d_iname, iname_tid) = field("dentry", "d_shortname.string").or_else(|_| field("dentry", "d_iname"))?;
    let dname_inline_len = types
        .size_of(iname_tid)
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
        btf_mount: types.id_of("mount", &[kind::STRUCT]).unwrap_or(0),
        // Optional: without it the network programs walk the executable's
        // path at every connect.
        task_self_exec_id: off("task_struct", "self_exec_id").unwrap_or(0),
        ..KernelOffsets::default()
    };
    match resolve_task_ident(&types, &mut offsets) {
        Ok(()) => offsets.task_ident_valid = 1,
        Err(e) => tracing::info!(error = %e, "task identity offsets unavailable: the process programs use the identity helpers"),
    }
    match resolve_process(&types, &mut offsets) {
        Ok(()) => offsets.process_valid = 1,
        Err(e) => tracing::warn!(
            error = %e,
            "process offsets unavailable: no exec arguments, environment credentials, terminals, forks, exits or cgroup names"
        ),
    }
    let iouring = resolve_iouring(&types).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "io_uring offsets unavailable: opens through io_uring are not seen");
        IoUringOffsets::default()
    });
    // The file sensor's cached task is read through `bpf_rdonly_cast`:
    // without the kfunc it stays 0 and the sensor calls the helper.
    if rdonly_cast.is_some() {
        offsets.btf_task = types.id_of("task_struct", &[kind::STRUCT]).unwrap_or(0);
    }
    Ok(KernelBtf { offsets, rdonly_cast, iouring })
}

/// The io_uring section (probes/iouring.rs). Optional: without it only
/// io_uring opens go unseen. `struct io_open` lives in the request's
/// command data (`io_kiocb.cmd`, an anonymous union with `file`).
fn resolve_iouring(types: &Types) -> Result<IoUringOffsets, OffsetsError> {
    let off = |ty, field| field_of(types, ty, field).map(|(o, _)| o);
    let btf_io_kiocb = types.id_of("io_kiocb", &[kind::STRUCT]).ok_or(OffsetsError::NoType("io_kiocb"))?;
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

/// The byte offset and type id of `field` (a `.`-joined path) in the struct
/// or union named `ty`.
fn field_of(types: &Types, ty: &'static str, field: &'static str) -> Result<(u32, u32), OffsetsError> {
    let id = types.id_of(ty, &[kind::STRUCT, kind::UNION]).ok_or(OffsetsError::NoType(ty))?;
    match types.offset_of(id, field) {
        Ok((Offset::Bytes(o), tid)) => Ok((o, tid)),
        Ok((Offset::Bits, _)) => Err(OffsetsError::BitField { ty, field }),
        Err(err) => Err(OffsetsError::NoField { ty, field, err }),
    }
}

/// A task's identity fields (pid and tgid are in the main section, the
/// cgroup in the process section). Optional: without them the programs
/// call the identity helpers.
fn resolve_task_ident(types: &Types, o: &mut KernelOffsets) -> Result<(), OffsetsError> {
    let off = |ty, field| field_of(types, ty, field).map(|(o, _)| o);
    o.task_comm = off("task_struct", "comm")?;
    o.task_cred = off("task_struct", "cred")?;
    o.cred_uid = off("cred", "uid")?;
    o.cred_gid = off("cred", "gid")?;
    Ok(())
}

/// The process section (probes/process.rs). Optional: without it the file
/// sensor still works.
fn resolve_process(types: &Types, o: &mut KernelOffsets) -> Result<(), OffsetsError> {
    let off = |ty, field| field_of(types, ty, field).map(|(o, _)| o);
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
        // io_uring: `struct io_open` sits in the request's command data,
        // after the file pointer of the same anonymous union.
        let u = btf.iouring;
        assert_eq!(u.valid, 1, "io_uring offsets resolve on this kernel");
        assert_eq!(u.open_dfd, 8, "io_open.dfd follows its file pointer at io_kiocb.cmd (offset 0)");
        assert!(u.open_filename > u.open_dfd && u.open_how_flags > u.open_dfd && u.req_opcode > 0);
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.path_dentry, 8);
        assert_eq!(o.qstr_name, 8, "qstr is {{ hash_len: u64, name: *const u8 }}");
        assert!(o.task_files > 0 && o.task_mm > 0 && o.task_tgid > 0);
        assert_ne!(o.task_real_parent, o.task_group_leader);
        assert_eq!(o.dentry_d_name_len, o.dentry_d_name + 4, "qstr.len follows qstr.hash");
        assert!(o.dname_inline_len >= 32 && o.dname_inline_len.is_multiple_of(8), "{}", o.dname_inline_len);
        assert!(o.btf_kiocb > 0);
        assert!(o.btf_mount > 0, "struct mount is in the kernel BTF");
        assert!(o.btf_task > 0 && btf.rdonly_cast.is_some(), "struct task_struct and bpf_rdonly_cast are in the kernel BTF");
        assert_eq!(o.process_valid, 1, "process offsets resolve on this kernel");
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8, "mm_struct keeps arg_start, arg_end adjacent");
        assert_eq!(o.mm_env_end, o.mm_env_start + 8);
        assert!(o.task_pid + 4 == o.task_tgid, "task_struct: pid then tgid");
        assert_eq!(o.task_ident_valid, 1, "task identity offsets resolve on this kernel");
        assert!(o.task_comm > 0 && o.task_cred > 0 && o.task_comm != o.task_cred);
        assert_eq!(o.cred_gid, o.cred_uid + 4, "struct cred keeps uid, gid adjacent");
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
        assert!(resolve(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        assert!(resolve(&[]).is_err());
        // A valid header whose type section runs past the blob.
        let mut blob = Vec::new();
        for v in [0xeb9f_u16.to_ne_bytes().as_slice(), &[1, 0], &24_u32.to_ne_bytes(), &0_u32.to_ne_bytes()] {
            blob.extend_from_slice(v);
        }
        for v in [100_u32, 0, 0] {
            blob.extend_from_slice(&v.to_ne_bytes());
        }
        assert!(matches!(resolve(&blob), Err(OffsetsError::Parse(_))));
    }

    /// A small BTF blob: `int`, `int[5]`, an anonymous union { int b; int c; }
    /// and `struct s { int a; union {..}; int arr[5]; int bf:3; }`.
    fn synthetic_btf() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0c\0arr\0bf\0";
        let name = |n: &str| {
            let pat = [b"\0".as_slice(), n.as_bytes(), b"\0"].concat();
            strings.windows(pat.len()).position(|w| w == pat.as_slice()).unwrap() as u32 + 1
        };
        let info = |kind: u32, vlen: u32, kind_flag: bool| (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        let types: Vec<u32> = [
            vec![name("int"), info(kind::INT, 0, false), 4, 32],
            vec![0, info(kind::ARRAY, 0, false), 0, 1, 1, 5],
            vec![0, info(kind::UNION, 2, false), 4, name("b"), 1, 0, name("c"), 1, 0],
            vec![name("s"), info(kind::STRUCT, 4, true), 32],
            vec![name("a"), 1, 0, 0, 3, 32, name("arr"), 2, 64, name("bf"), 1, (3 << 24) | 224],
        ]
        .concat();
        let types: Vec<u8> = types.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut blob = Vec::new();
        blob.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [24, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&v.to_ne_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_sizes_arrays() {
        let blob = synthetic_btf();
        let types = Types::new(&blob).expect("valid BTF");
        assert_eq!(types.id_of("s", &[kind::STRUCT]), Some(4));
        assert_eq!(types.id_of("s", &[kind::UNION]), None);
        assert_eq!(field_of(&types, "s", "a").unwrap(), (0, 1));
        assert_eq!(field_of(&types, "s", "b").unwrap(), (4, 1), "member of the anonymous union");
        assert_eq!(field_of(&types, "s", "c").unwrap(), (4, 1));
        let (arr, arr_ty) = field_of(&types, "s", "arr").unwrap();
        assert_eq!((arr, types.size_of(arr_ty)), (8, Some(20)));
        assert!(matches!(field_of(&types, "s", "bf"), Err(OffsetsError::BitField { .. })));
        assert!(matches!(field_of(&types, "s", "nope"), Err(OffsetsError::NoField { .. })));
        assert!(matches!(field_of(&types, "s", "a.b"), Err(OffsetsError::NoField { .. })), "int has no members");
        assert!(matches!(field_of(&types, "t", "a"), Err(OffsetsError::NoType("t"))));
        // The kernel offsets need types this blob lacks: an error, not a panic.
        assert!(matches!(resolve(&blob), Err(OffsetsError::NoType("kiocb"))));
    }
}
