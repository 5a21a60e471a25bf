//! io_uring opens (`observer-ebpf/src/probes/iouring.rs`): load-time offsets
//! and the per-request state kept between submission and completion.
use crate::PATH_LEN;

/// `IORING_OP_OPENAT` and `IORING_OP_OPENAT2` (uapi, stable).
pub const IORING_OP_OPENAT: u8 = 18;
pub const IORING_OP_OPENAT2: u8 = 28;

/// Offsets into io_uring's kernel structures, resolved by the agent from
/// the running kernel's BTF (global `IOURING_OFFSETS`). `valid == 0` (no
/// io_uring in the kernel, or unknown layout) keeps the programs inert.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoUringOffsets {
    pub valid: u32,
    /// BTF id of `struct io_kiocb` (for `bpf_rdonly_cast` of the untyped
    /// `req` of `io_uring_complete`; 0 without the kfunc).
    pub btf_io_kiocb: u32,
    /// `io_kiocb.opcode` (u8).
    pub req_opcode: u32,
    /// Offset of the command data (`io_kiocb.cmd`, where `struct io_open`
    /// lives) plus each `io_open` field.
    pub open_dfd: u32,
    pub open_file_slot: u32,
    pub open_filename: u32,
    /// `io_open.how.flags` and `.mode` (u64 each).
    pub open_how_flags: u32,
    pub open_how_mode: u32,
    /// `filename.name` (the kernel copy of the path).
    pub filename_name: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<IoUringOffsets>() == 40);

/// An io_uring open between submission and completion (map
/// `IOURING_OPENS`, keyed by the `struct io_kiocb` address).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoUringOpen {
    pub dfd: i32,
    /// Fixed-file slot + 1 (`IORING_FILE_INDEX_ALLOC` included); 0 for a
    /// regular descriptor.
    pub file_slot: u32,
    pub flags: u32,
    pub mode: u32,
    /// `IORING_OP_OPENAT` or `IORING_OP_OPENAT2`.
    pub opcode: u32,
    pub _pad0: u32,
    /// The path as the kernel copied it at submission, NUL-terminated.
    pub path: [u8; PATH_LEN],
}
const _: () = assert!(core::mem::size_of::<IoUringOpen>() == 24 + PATH_LEN);
