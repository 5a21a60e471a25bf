//! Decode: ring-buffer records to owned events. This is the only code that
//! reads raw bytes from the kernel. It never panics; every record it cannot
//! decode is reported as a [`DecodeError`], which the reader counts by kind.
use std::{ffi::OsString, os::unix::ffi::OsStringExt};

use observer_common::{
    CgroupMkdirEvent, EXEC_ARGS_MAX, EXEC_ENV_MAX, EventHeader, EventKind, FileOpenEvent, MatchKind,
    OpenSyscall, PATH_LEN, ProcessExecEvent, ProcessExitEvent, ProcessForkEvent, TaskInfo, WALK_BUF_LEN, cgroup_flags,
    event_flags, exec_flags,
};

use crate::secret::Secret;

mod event;
mod net;
pub use event::*;
pub use net::{NetClose, NetConnect, NetPayload, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record shorter than its header")]
    ShortHeader,
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("record of {got} bytes, {kind:?} needs {want}")]
    Short { kind: EventKind, got: usize, want: usize },
    #[error("unknown value {value} for {field}")]
    BadValue { field: &'static str, value: u32 },
    #[error("{kind:?} record claims {claimed} bytes of data, has {got}")]
    BadLength { kind: EventKind, claimed: usize, got: usize },
}

impl DecodeError {
    /// Low-cardinality reason, for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ShortHeader => "short_header",
            Self::UnknownKind(_) => "unknown_kind",
            Self::Short { .. } => "short_record",
            Self::BadValue { .. } => "bad_value",
            Self::BadLength { .. } => "bad_length",
        }
    }
}

/// `bytes` as text if they are UTF-8. Paths from the kernel are nearly
/// always ASCII, and the texts the agent formats itself (a time, a
/// device number) always: that is tested first, eight bytes at a time,
/// and the full UTF-8 validation (about three times the cost on a 30-byte
/// path, and paid four times an event: the record's two paths, the
/// executable, the confirmed path) runs only for other bytes.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// `bytes` as text, bytes that are not UTF-8 as U+FFFD, through [`utf8`].
fn lossy(bytes: &[u8]) -> String {
    match utf8(bytes) {
        Some(text) => text.to_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reads a `T` from the start of `bytes`, if it is long enough.
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>())
        // SAFETY: length checked; T is `Pod` (a #[repr(C)] integer-only ABI
        // type: every bit pattern valid); read_unaligned needs no alignment.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(bytes).ok_or(DecodeError::ShortHeader)?;
    match EventKind::from_u32(header.kind) {
        Some(EventKind::FileOpen) => decode_file_open(bytes).map(Event::FileOpen),
        Some(EventKind::NetConnect) => net::decode_connect(bytes).map(Event::NetConnect),
        Some(EventKind::NetPayload) => net::decode_payload(bytes).map(Event::NetPayload),
        Some(EventKind::NetClose) => net::decode_close(bytes).map(Event::NetClose),
        Some(EventKind::ProcessExec) => decode_exec(bytes).map(Event::ProcessExec),
        Some(EventKind::ProcessFork) => decode_fork(bytes).map(Event::ProcessFork),
        Some(EventKind::ProcessExit) => decode_exit(bytes).map(Event::ProcessExit),
        Some(EventKind::CgroupMkdir) => decode_cgroup_mkdir(bytes).map(Event::CgroupMkdir),
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

/// A `T` at the start of `bytes`, in place, when `bytes` is long enough
/// and aligned for it (ring-buffer records are 8-byte aligned); else
/// `None`, and the caller copies it ([`read`]). A file open is 1.4 KB,
/// most of it path buffers that are copied once, into the event. (A
/// `Cow` of it, returned and moved, copied all 1.4 KB each move even when
/// it only borrowed: 160 instructions an event.)
fn view<T: aya::Pod>(bytes: &[u8]) -> Option<&T> {
    if bytes.len() < size_of::<T>() || bytes.as_ptr().align_offset(align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: length and alignment checked; T is `Pod` (a #[repr(C)]
    // integer-only ABI type: every bit pattern valid), and the bytes are
    // initialised and borrowed for the reference's lifetime.
    Some(unsafe { &*bytes.as_ptr().cast::<T>() })
}

#[inline(always)]
fn decode_file_open(bytes: &[u8]) -> Result<FileOpen, DecodeError> {
    // In place, or (a record not aligned) copied here: set only then.
    let copied: FileOpenEvent;
    let raw: &FileOpenEvent = match view::<FileOpenEvent>(bytes) {
        Some(raw) => raw,
        None => {
            copied = read(bytes).ok_or(DecodeError::Short {
                kind: EventKind::FileOpen,
                got: bytes.len(),
                want: size_of::<FileOpenEvent>(),
            })?;
            &copied
        }
    };
    let syscall = OpenSyscall::from_u32(raw.syscall)
        .ok_or(DecodeError::BadValue { field: "syscall", value: raw.syscall })?;
    let match_kind = MatchKind::from_u32(raw.match_kind)
        .ok_or(DecodeError::BadValue { field: "match_kind", value: raw.match_kind })?;
    let resolved = (raw.flags & event_flags::RESOLVED_VALID != 0).then(|| {
        walked_path(&raw.resolved, raw.resolved_len, raw.flags & event_flags::RESOLVED_TRUNCATED == 0)
    });
    let exe = (raw.flags & event_flags::EXE_VALID != 0)
        .then(|| walked_path(&raw.exe, raw.exe_len, raw.flags & event_flags::EXE_TRUNCATED == 0));
    Ok(FileOpen {
        boot_ns: raw.header.boot_ns,
        task: task(&raw.task),
        syscall,
        ret: raw.ret,
        dev: raw.dev,
        ino: raw.ino,
        open_flags: raw.open_flags,
        mode: raw.mode,
        rule_id: raw.rule_id,
        match_kind,
        path: cstr(&raw.path),
        path_truncated: raw.flags & event_flags::PATH_TRUNCATED != 0,
        resolved,
        resolved_is_base: raw.flags & event_flags::RESOLVED_IS_BASE != 0,
        exe,
        dedup_total: raw.dedup_total,
        fixed_file: raw.flags & event_flags::IOURING_FIXED != 0,
    })
}

fn fixed<T: aya::Pod>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    read(bytes).ok_or(DecodeError::Short { kind, got: bytes.len(), want: size_of::<T>() })
}

/// An exec record: the fixed part, then `filename_len` bytes of the exec
/// path, `exe_len` of the executable's walk, `args_len` of argv and
/// `env_len` of environment. argv and the environment go straight into
/// [`Secret`]s.
fn decode_exec(bytes: &[u8]) -> Result<ProcessExec, DecodeError> {
    let kind = EventKind::ProcessExec;
    let raw: ProcessExecEvent = fixed(kind, bytes)?;
    let data = &bytes[size_of::<ProcessExecEvent>()..];
    let (filename_len, exe_len) = (usize::from(raw.filename_len), usize::from(raw.exe_len));
    let (args_len, env_len) = (raw.args_len as usize, raw.env_len as usize);
    let claimed = filename_len + exe_len + args_len.saturating_add(env_len);
    if filename_len >= PATH_LEN
        || exe_len >= WALK_BUF_LEN
        || args_len > EXEC_ARGS_MAX
        || env_len > EXEC_ENV_MAX
        || claimed > data.len()
    {
        return Err(DecodeError::BadLength { kind, claimed, got: data.len() });
    }
    let (filename, rest) = data.split_at(filename_len);
    let (exe_walk, rest) = rest.split_at(exe_len);
    let (args, rest) = rest.split_at(args_len);
    let env = &rest[..env_len];
    let flag = |f: u32| raw.flags & f != 0;
    let exe = flag(exec_flags::EXE_VALID).then(|| walked_path(exe_walk, raw.exe_len, !flag(exec_flags::EXE_TRUNCATED)));
    let tty = flag(exec_flags::HAS_TTY)
        .then(|| lossy(cstr_bytes(&raw.tty)))
        .filter(|t| !t.is_empty());
    Ok(ProcessExec {
        boot_ns: raw.header.boot_ns,
        task: task(&raw.task),
        filename: cstr(filename),
        exe,
        tty,
        args: Secret::new(args),
        args_truncated: flag(exec_flags::ARGS_TRUNCATED),
        env: Secret::new(env),
        // A failed read leaves no environment at all: like a cut one, the
        // agent reads it from /proc while the process lives.
        env_truncated: flag(exec_flags::ENV_TRUNCATED) || flag(exec_flags::ENV_FAILED),
    })
}

fn decode_fork(bytes: &[u8]) -> Result<ProcessFork, DecodeError> {
    let raw: ProcessForkEvent = fixed(EventKind::ProcessFork, bytes)?;
    Ok(ProcessFork {
        parent: task(&raw.parent),
        child_tgid: raw.child_tgid,
        child_start_boot_ns: raw.child_start_boot_ns,
        child_cgroup_id: raw.child_cgroup_id,
    })
}

fn decode_exit(bytes: &[u8]) -> Result<ProcessExit, DecodeError> {
    let raw: ProcessExitEvent = fixed(EventKind::ProcessExit, bytes)?;
    Ok(ProcessExit {
        boot_ns: raw.header.boot_ns,
        tgid: raw.tgid,
        start_boot_ns: raw.start_boot_ns,
        exit_code: raw.exit_code,
    })
}

fn decode_cgroup_mkdir(bytes: &[u8]) -> Result<CgroupMkdir, DecodeError> {
    let raw: CgroupMkdirEvent = fixed(EventKind::CgroupMkdir, bytes)?;
    Ok(CgroupMkdir {
        cgroup_id: raw.cgroup_id,
        path: lossy(cstr_bytes(&raw.path)),
        path_truncated: raw.flags & cgroup_flags::PATH_TRUNCATED != 0,
    })
}

fn task(t: &TaskInfo) -> Task {
    Task {
        tgid: t.tgid,
        pid: t.pid,
        ppid: t.ppid,
        uid: t.uid,
        gid: t.gid,
        cgroup_id: t.cgroup_id,
        start_boot_ns: t.start_boot_ns,
        comm: lossy(cstr_bytes(&t.comm)),
    }
}

/// The bytes before the first NUL (memchr: a path's 30-odd bytes in two
/// vector compares, not a loop per byte).
fn cstr_bytes(b: &[u8]) -> &[u8] {
    let end = memchr::memchr(0, b).unwrap_or(b.len());
    &b[..end]
}

fn cstr(b: &[u8]) -> OsString {
    OsString::from_vec(cstr_bytes(b).to_vec())
}

/// Turns a kernel dentry walk (names child first, each NUL-terminated) into a
/// path. An incomplete walk keeps the names it has, under a leading `…`.
/// `buf` is the walk buffer (at most [`WALK_BUF_LEN`] bytes of it are
/// read), `len` the bytes the kernel used.
pub fn walked_path(buf: &[u8], len: u16, complete: bool) -> WalkedPath {
    let used = &buf[..usize::from(len).min(WALK_BUF_LEN).min(buf.len())];
    let mut path = Vec::with_capacity(used.len() + 4);
    if !complete {
        path.extend_from_slice("…".as_bytes());
    }
    // The names from the last (the root's child) back to the first: each
    // NUL found from the end closes the name after it. The walk is read
    // back to front a word at a time, the NULs of a word found at once
    // ([`zero_bytes`]); splitting it tested byte by byte, and `memrchr`'s
    // iterator paid a call's set-up per name (both about twice the cost).
    let mut end = used.len();
    let mut name = |nul: usize, end: &mut usize| {
        let name = &used[nul + 1..*end];
        if !name.is_empty() {
            path.push(b'/');
            path.extend_from_slice(name);
        }
        *end = nul;
    };
    let words = used.len() / 8 * 8;
    for (i, &b) in used[words..].iter().enumerate().rev() {
        if b == 0 {
            name(words + i, &mut end);
        }
    }
    for at in (0..words).step_by(8).rev() {
        let mut zeros = zero_bytes(u64::from_le_bytes(used[at..at + 8].try_into().unwrap_or([1; 8])));
        while zeros != 0 {
            let high = 63 - zeros.leading_zeros();
            name(at + (high / 8) as usize, &mut end);
            zeros &= !(1u64 << high);
        }
    }
    if end > 0 {
        path.push(b'/');
        path.extend_from_slice(&used[..end]);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    WalkedPath { path: OsString::from_vec(path), complete }
}

/// The high bit of each byte of `x` (little-endian) that is 0, and no
/// other bit: adding 0x7f to the low seven bits carries into the high bit
/// of every byte but a zero one (no carry leaves a byte, so no false hit).
#[inline(always)]
pub(crate) fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

#[cfg(test)]
mod tests;
