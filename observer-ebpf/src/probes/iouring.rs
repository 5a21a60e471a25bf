//! io_uring opens: `IORING_OP_OPENAT` and `IORING_OP_OPENAT2`.
//!
//! A process that opens a file through io_uring makes no open syscall, so
//! the file sensor's `sys_exit` hook (probes/files.rs) never sees it. Two
//! io_uring tracepoints (tp_btf; kernel 5.19+ for these prototypes) close
//! the gap:
//! - `io_uring_submit_req(req)`, after the request's preparation: for an
//!   open, its directory fd, flags, fixed-file slot and the kernel's copy of
//!   the path (`io_open.filename`, freed once the open ran) go into
//!   `IOURING_OPENS`, keyed by the request's address. Any other opcode costs
//!   one typed load and a compare.
//! - `io_uring_complete(ctx, req, cqe)`, when the result is posted: an open
//!   found in `IOURING_OPENS` is judged exactly like a syscall open
//!   ([`files::on_open`]: inode, directory and name gates on the opened
//!   file; path rules and the name gate on the path for a failed open) and
//!   reported as a `FileOpenEvent` with syscall `IoUringOpenAt{,2}`. Other
//!   completions are dismissed by opcode (a typed load through
//!   `bpf_rdonly_cast`, 6.2+; before that, one hash lookup).
//!
//! Whose context: the completion runs in the submitting task (inline issue,
//! task work) or in one of its io-wq worker threads (`iou-wrk-*`, a thread
//! of the submitting process sharing its file table, cwd and credentials),
//! so the descriptor in `cqe->res` resolves in the current task's table and
//! the record carries the submitter's process id. An open into a fixed-file
//! slot (`file_index`) has no descriptor: it is matched on its path only
//! and flagged `IOURING_FIXED`.
//!
//! Limits: a completion that goes to the overflow list (CQ ring full) is
//! posted without this tracepoint; its entry ages out of the LRU map.
use aya_ebpf::{
    helpers::generated,
    macros::{btf_tracepoint, map},
    maps::{LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use observer_common::{
    IORING_OP_OPENAT, IORING_OP_OPENAT2, IoUringOffsets, IoUringOpen, OpenSyscall, PATH_LEN,
};

use crate::{
    kernel,
    probes::files::{self, OpenArgs},
};

/// Set by the agent before load from the kernel's BTF; all zero keeps the
/// programs inert.
#[unsafe(no_mangle)]
pub static IOURING_OFFSETS: IoUringOffsets = IoUringOffsets {
    valid: 0,
    btf_io_kiocb: 0,
    req_opcode: 0,
    open_dfd: 0,
    open_file_slot: 0,
    open_filename: 0,
    open_how_flags: 0,
    open_how_mode: 0,
    filename_name: 0,
    _pad0: 0,
};

/// One field of [`IOURING_OFFSETS`], loaded so that the verifier sees its value.
macro_rules! io_off {
    ($f:ident) => {
        // SAFETY: a plain read of a static (frozen .rodata after load).
        unsafe { core::ptr::read_volatile(&IOURING_OFFSETS.$f) }
    };
}

pub const MAX_IOURING_OPENS: u32 = 4096;

/// Opens submitted and not yet completed, by `struct io_kiocb` address.
#[map]
static IOURING_OPENS: LruHashMap<u64, IoUringOpen> =
    LruHashMap::with_max_entries(MAX_IOURING_OPENS, 0);

/// Per-CPU room for one [`IoUringOpen`] (too large for the BPF stack).
#[map]
static IOURING_SCRATCH: PerCpuArray<IoUringOpen> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "io_uring_submit_req")]
pub fn io_uring_submit_req(ctx: BtfTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let _ = on_submit(req);
    0
}

#[btf_tracepoint(function = "io_uring_complete")]
pub fn io_uring_complete(ctx: BtfTracePointContext) -> i32 {
    let req: u64 = ctx.arg(1);
    let cqe: u64 = ctx.arg(2);
    let _ = on_complete(req, cqe);
    0
}

#[inline(always)]
fn is_open(op: u8) -> bool {
    op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2
}

#[inline(always)]
fn on_submit(req: u64) -> Option<()> {
    if io_off!(valid) == 0 {
        return None;
    }
    // `req` is a typed `struct io_kiocb *`: a plain load.
    let op: u8 = kernel::ld(req, io_off!(req_opcode));
    if !is_open(op) {
        return None;
    }
    // SAFETY: per-CPU map value, used by one program run at a time.
    let v = unsafe { &mut *IOURING_SCRATCH.get_ptr_mut(0)? };
    // The command data is a byte array in BTF: helper reads (opens only).
    v.opcode = op as u32;
    v.dfd = kernel::read::<i32>(req, io_off!(open_dfd))?;
    v.file_slot = kernel::read::<u32>(req, io_off!(open_file_slot)).unwrap_or(0);
    v.flags = kernel::read::<u64>(req, io_off!(open_how_flags)).unwrap_or(0) as u32;
    v.mode = kernel::read::<u64>(req, io_off!(open_how_mode)).unwrap_or(0) as u32;
    v._pad0 = 0;
    let filename = kernel::read::<u64>(req, io_off!(open_filename))?;
    let name = kernel::read::<u64>(filename, io_off!(filename_name))?;
    // SAFETY: at most PATH_LEN bytes into the PATH_LEN-byte buffer; the
    // helper checks the source.
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(
            v.path.as_mut_ptr().cast(),
            PATH_LEN as u32,
            name as *const _,
        )
    };
    if n <= 0 {
        v.path[0] = 0;
    }
    IOURING_OPENS.insert(req, v, 0).ok()
}

#[inline(always)]
fn on_complete(req: u64, cqe: u64) -> Option<()> {
    if io_off!(valid) == 0 || req == 0 {
        return None;
    }
    // `req` is `void *` in this tracepoint: typed through bpf_rdonly_cast
    // (0 on kernels without the kfunc: then the map lookup decides).
    let typed = kernel::rdonly_cast(req, io_off!(btf_io_kiocb));
    if typed != 0 && !is_open(kernel::ld::<u8>(typed, io_off!(req_opcode))) {
        return None;
    }
    // SAFETY: the value is copied out at once (below) before removal.
    let found = unsafe { IOURING_OPENS.get(req) }? as *const IoUringOpen;
    // SAFETY: per-CPU map value, used by one program run at a time.
    let v = unsafe { &mut *IOURING_SCRATCH.get_ptr_mut(0)? };
    // SAFETY: map value to map value, both `IoUringOpen`.
    let r = unsafe {
        generated::bpf_probe_read_kernel(
            (v as *mut IoUringOpen).cast(),
            core::mem::size_of::<IoUringOpen>() as u32,
            found.cast(),
        )
    };
    let _ = IOURING_OPENS.remove(req);
    if r != 0 {
        return None;
    }
    // `cqe` is a typed `struct io_uring_cqe *`; `res` is at 8 (uapi).
    let res: i32 = kernel::ld(cqe, 8);
    let syscall = if v.opcode == IORING_OP_OPENAT2 as u32 {
        OpenSyscall::IoUringOpenAt2
    } else {
        OpenSyscall::IoUringOpenAt
    };
    let args = || Some(OpenArgs { syscall, dirfd: v.dfd, path: v.path.as_ptr() as u64, flags: v.flags, mode: v.mode });
    files::on_open::<true>(args, res as i64, v.file_slot == 0)
}
