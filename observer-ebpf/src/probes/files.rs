//! Credential-file opens: open, openat, openat2, creat.
//!
//! One hook, the raw syscall-exit tracepoint (tp_btf `sys_exit`): the
//! syscall's arguments are still in the saved user registers there, so one
//! program sees arguments and result, and any other syscall costs a register
//! load and a compare (the "floor", see probes/floor.rs).
//!
//! Input: the exit of every syscall. Output: a [`FileOpenEvent`] into
//! `EVENTS` for each open that may concern a credential; the agent confirms
//! candidates against its catalog. How an open qualifies:
//! - successful opens, without a single helper call on the common path
//!   (typed loads from `task->files->fd_array[fd]`, see kernel.rs): the
//!   file's (dev, ino) or its directory's is watched (`INODE_GATE` then
//!   `WATCHED_INODES`), or its name passes the name gate (`NAME_GATE`);
//!   so the spelling of the path (relative, dirfd, symlinks, bind mounts,
//!   another mount namespace) does not matter;
//! - failed opens (no file): the requested string, `~`-normalised, matches
//!   a path rule (`PATH_RULES`), or its last component passes the name gate.
//!
//! Repeated opens of one key (process, file, access, outcome) within
//! `FILE_CFG.dedup_ns` are folded into a monotonic count (`DEDUP`).
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated, macros::btf_tracepoint, programs::BtfTracePointContext};
use observer_common::{
    AFFIX_EXACT_BASE, AFFIX_PREFIX_BASE, Counter, DedupKey, DedupValue, EventHeader, EventKind, FileOpenEvent, FileSensorConfig,
    GATE_AFFIX_LENS, GATE_NAME_MAX,
    GATE_PREFIX, GATE_SUFFIX, INODE_DIR, INODE_FILE, InodeKey, MatchKind, OpenSyscall, PATH_KEY_LEN, PATH_LEN,
    event_flags, gate_affix_bit, gate_inode_bit, gate_name_bit, FNV1A_OFFSET, O_CREAT, dedup_access_class, fnv1a_step,
    first_bytes, path_gate_bit,
};

use crate::{
    kernel::{self, FileRef},
    maps::{
        AFFIX_GATE, DEDUP, EVENTS, FILE_CFG, FILE_LOST_TGID, INODE_GATE, atomic_inc, NAME_GATE, PATH_GATE, PATH_RULES, Pending, SCRATCH, WATCHED_INODES, count,
        file_cfg, gate_test, scratch,
    },
};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u32 = 0o1;
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

/// Reads a saved register. `regs` is the tp_btf argument, a trusted BTF
/// pointer to `struct pt_regs`, so this is a plain load the verifier checks
/// against the type (and the JIT turns into one instruction), not a helper.
#[inline(always)]
fn reg(regs: u64, off: u32) -> u64 {
    kernel::ld(regs, off)
}

/// The syscall number at exit, from the saved registers.
#[inline(always)]
fn syscall_nr(regs: u64) -> u64 {
    let nr = reg(regs, arch::ORIG_NR);
    #[cfg(bpf_target_arch = "aarch64")]
    let nr = nr as u32 as u64;
    nr
}

/// Whether this exit is one of the open-family syscalls: the filter every
/// other syscall on the host pays.
#[inline(always)]
pub fn is_open_family(regs: u64) -> bool {
    let nr = syscall_nr(regs);
    nr == arch::NR_OPENAT || nr == arch::NR_OPEN || nr == arch::NR_OPENAT2 || nr == arch::NR_CREAT
}

/// One open to judge. `path` is the requested path: a user address for
/// the open syscalls, a kernel address for io_uring (see
/// [`kernel_path`]).
pub(crate) struct OpenArgs {
    pub syscall: OpenSyscall,
    pub dirfd: i32,
    pub path: u64,
    pub flags: u32,
    pub mode: u32,
}

/// Whether the requested path of an open is a kernel copy (io_uring:
/// probes/iouring.rs) rather than the process's own memory.
#[inline(always)]
fn kernel_path(syscall: u32) -> bool {
    syscall == OpenSyscall::IoUringOpenAt as u32 || syscall == OpenSyscall::IoUringOpenAt2 as u32
}

/// `bpf_probe_read_{kernel,user}_str`: at most `len` bytes of the string at
/// `src` into `dst`, NUL included; the helper's return value.
#[inline(always)]
fn read_str<const KERNEL: bool>(dst: *mut u8, len: u32, src: u64) -> i64 {
    // SAFETY: callers pass a destination of at least `len` bytes; the
    // helpers check the source address.
    unsafe {
        if KERNEL {
            generated::bpf_probe_read_kernel_str(dst.cast(), len, src as *const _)
        } else {
            generated::bpf_probe_read_user_str(dst.cast(), len, src as *const _)
        }
    }
}

#[inline(always)]
fn open_args(regs: u64) -> Option<OpenArgs> {
    let nr = syscall_nr(regs);
    let args = if nr == arch::NR_OPENAT {
        OpenArgs {
            syscall: OpenSyscall::OpenAt,
            dirfd: reg(regs, arch::ARG0) as i32,
            path: reg(regs, arch::ARG1),
            flags: reg(regs, arch::ARG2) as u32,
            mode: reg(regs, arch::ARG3) as u32,
        }
    } else if nr == arch::NR_OPEN {
        OpenArgs {
            syscall: OpenSyscall::Open,
            dirfd: AT_FDCWD,
            path: reg(regs, arch::ARG0),
            flags: reg(regs, arch::ARG1) as u32,
            mode: reg(regs, arch::ARG2) as u32,
        }
    } else if nr == arch::NR_OPENAT2 {
        // struct open_how { u64 flags; u64 mode; u64 resolve; } in user memory.
        let how = reg(regs, arch::ARG2);
        // SAFETY: the helper checks the user address.
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how as *const u64) }.unwrap_or(0);
        // SAFETY: as above.
        let mode = unsafe { aya_ebpf::helpers::bpf_probe_read_user((how + 8) as *const u64) }.unwrap_or(0);
        OpenArgs {
            syscall: OpenSyscall::OpenAt2,
            dirfd: reg(regs, arch::ARG0) as i32,
            path: reg(regs, arch::ARG1),
            flags: flags as u32,
            mode: mode as u32,
        }
    } else if nr == arch::NR_CREAT {
        OpenArgs {
            syscall: OpenSyscall::Creat,
            dirfd: AT_FDCWD,
            path: reg(regs, arch::ARG0),
            flags: O_CREAT | O_WRONLY | O_TRUNC,
            mode: reg(regs, arch::ARG1) as u32,
        }
    } else {
        return None;
    };
    Some(args)
}

/// Why an open is reported: the rule (0 for a candidate) and how.
struct Hit {
    rule_id: u32,
    how: MatchKind,
}

#[inline(always)]
fn on_sys_exit(regs: u64, ret: i64) -> Option<()> {
    if !is_open_family(regs) {
        return None;
    }
    // The arguments are read from the saved registers only when an open is
    // reported or its string matched: most opens end at the gates, and
    // the loads are volatile (LLVM would not sink them there itself).
    on_open::<false>(|| open_args(regs), ret, true)
}

/// Judges one finished open and reports it when it may concern a
/// credential. `args` gives the open's arguments, called only past the
/// gates. `has_fd`: a non-negative `ret` is a descriptor in the current
/// task's table (not an io_uring fixed-file slot). `KERNEL`: the requested
/// path is a kernel copy ([`OpenArgs::path`]).
#[inline(always)]
pub(crate) fn on_open<const KERNEL: bool>(args: impl Fn() -> Option<OpenArgs>, ret: i64, has_fd: bool) -> Option<()> {
    if ret >= 0 && has_fd {
        match kernel::file_of_fd(ret) {
            Some(FileRef::Typed(file)) => return on_opened::<true>(&args, ret, file),
            Some(FileRef::Untyped(file)) => {
                count(EventKind::FileOpen, Counter::SlowPath);
                return on_opened::<false>(&args, ret, file);
            }
            None => {}
        }
    }
    // A failed open, or no kernel offsets: only the requested string is left.
    let args = args()?;
    let hit = match_string::<KERNEL>(&args)?;
    report(&args, ret, hit, None)
}

/// A successful open: gates on the file itself.
#[inline(always)]
fn on_opened<const TYPED: bool>(args: &impl Fn() -> Option<OpenArgs>, ret: i64, file: u64) -> Option<()> {
    let (inode, ino) = kernel::file_inode::<TYPED>(file);
    let hit = if let Some(rule_id) = watched::<TYPED>(inode, ino, INODE_FILE) {
        Hit { rule_id, how: MatchKind::Inode }
    } else {
        let dentry = kernel::file_dentry::<TYPED>(file);
        // The settings by reference, each field read where it is tested: a
        // copy (`file_cfg`) loads and unpacks every byte of them on every
        // open. Index 0 of a one-entry array is always there.
        let cfg = FILE_CFG.get(0)?;
        let dir = if cfg.dir_rules != 0 {
            let parent = kernel::dentry_parent::<TYPED>(dentry);
            let (pinode, pino) = kernel::dentry_inode::<TYPED>(parent);
            watched::<TYPED>(pinode, pino, INODE_DIR)
        } else {
            None
        };
        if let Some(rule_id) = dir {
            Hit { rule_id, how: MatchKind::Dir }
        } else {
            // Short names first meet the pre-filter alone (their first and
            // last two bytes): most names stop there, before the whole name
            // is loaded and masked.
            let len = kernel::dentry_name_len::<TYPED>(dentry)?;
            if let Some(base) = kernel::dentry_inline_name::<TYPED>(dentry, len) {
                let (first2, last2) = kernel::inline_name_ends(base, len);
                if !affix_passes(first2, last2, cfg) {
                    return None;
                }
            }
            // Not zeroed (that would be a `memset` call): every word the gate
            // reads is written first (see `dentry_name_words`).
            let mut words = core::mem::MaybeUninit::<[u64; 8]>::uninit();
            // SAFETY: see above; the array is plain integers.
            let words = unsafe { words.assume_init_mut() };
            let len = kernel::dentry_name_words::<TYPED>(dentry, len, words)?;
            if !name_gate(words, len, cfg) {
                return None;
            }
            Hit { rule_id: 0, how: MatchKind::Name }
        }
    };
    let dev = kernel::inode_dev::<TYPED>(inode);
    report(&args()?, ret, hit, Some((file, dev, ino)))
}

/// Hands an open to [`emit_file_open`] through the per-CPU scratch.
#[inline(always)]
fn report(args: &OpenArgs, ret: i64, hit: Hit, file: Option<(u64, u64, u64)>) -> Option<()> {
    let (file, dev, ino) = file.unwrap_or((0, 0, 0));
    scratch()?.pending = Pending {
        path: args.path,
        ret,
        file,
        dev,
        ino,
        syscall: args.syscall as u32,
        dirfd: args.dirfd,
        flags: args.flags,
        mode: args.mode,
        rule_id: hit.rule_id,
        how: hit.how as u32,
    };
    (emit_file_open() == 0).then_some(())
}

/// Rule id of a watched inode of the given kind. The gate bit depends on
/// the inode number alone, so the device is read only past the gate.
#[inline(always)]
fn watched<const TYPED: bool>(inode: u64, ino: u64, what: u32) -> Option<u32> {
    if !gate_test(&INODE_GATE, gate_inode_bit(ino)) {
        return None;
    }
    let dev = kernel::inode_dev::<TYPED>(inode);
    let key = InodeKey { ino, dev: dev as u32, _pad0: 0 };
    // SAFETY: read-only use of the value right away.
    let rule = unsafe { WATCHED_INODES.get(key) }?;
    (rule.what == what).then_some(rule.rule_id)
}

/// The name gate: the exact name, then each configured prefix and suffix
/// length. `words` is the name, zero past `len` in the hashed words.
///
/// No comparison here involves `len` (see `kernel::NAME_MASKS` for why). A
/// name shorter than a prefix length cannot match that prefix (its padding
/// is NUL, which no pattern holds), so the length is not checked; a suffix
/// longer than the name reads padding and at worst makes a candidate.
#[inline(always)]
fn name_gate(words: &[u64; 8], len: u32, cfg: &FileSensorConfig) -> bool {
    let first2 = (words[0] & 0xffff) as u32;
    if gate_test(&AFFIX_GATE, AFFIX_EXACT_BASE + first2) && gate_test(&NAME_GATE, gate_name_bit(len as u64, words)) {
        return true;
    }
    // Prefixes: only when the name's first two bytes start some prefix.
    if cfg.prefix_lens[0] != 0 && gate_test(&AFFIX_GATE, AFFIX_PREFIX_BASE + first2) {
        let mut i = 0;
        while i < GATE_AFFIX_LENS {
            // A fresh copy: a branch on the configuration itself would split
            // the verifier's states at every iteration (see `kernel::opaque`).
            let n = kernel::opaque(cfg.prefix_lens[i] as u64) as u32;
            if n == 0 {
                break;
            }
            let w = words[0] & low_bytes(n);
            if gate_test(&NAME_GATE, gate_affix_bit(GATE_PREFIX, n as u64, w)) {
                return true;
            }
            i += 1;
        }
    }
    if cfg.suffix_lens[0] == 0 {
        return false;
    }
    // Suffixes: only when the name's last two bytes end some suffix.
    let tail = last8(words, len);
    if !gate_test(&AFFIX_GATE, (tail >> 48) as u32) {
        return false;
    }
    let mut i = 0;
    while i < GATE_AFFIX_LENS {
        let n = kernel::opaque(cfg.suffix_lens[i] as u64) as u32;
        if n == 0 {
            break;
        }
        // The last n bytes are the top n bytes of the last eight.
        let w = (tail >> ((8 - n) * 8)) & low_bytes(n);
        if gate_test(&NAME_GATE, gate_affix_bit(GATE_SUFFIX, n as u64, w)) {
            return true;
        }
        i += 1;
    }
    false
}

/// The name gate's pre-filter alone, from a name's first two bytes
/// (`first2`) and last two (`last2`, as the top of [`last8`]): false only
/// when [`name_gate`] is false too, since each of its three tests starts
/// with one of these bits.
#[inline(always)]
fn affix_passes(first2: u32, last2: u32, cfg: &FileSensorConfig) -> bool {
    gate_test(&AFFIX_GATE, AFFIX_EXACT_BASE + first2)
        || (cfg.prefix_lens[0] != 0 && gate_test(&AFFIX_GATE, AFFIX_PREFIX_BASE + first2))
        || (cfg.suffix_lens[0] != 0 && gate_test(&AFFIX_GATE, last2))
}

/// Mask of the low `n` bytes (1..=8) of a word.
#[inline(always)]
fn low_bytes(n: u32) -> u64 {
    if n >= 8 { u64::MAX } else { (1u64 << (n * 8)) - 1 }
}

/// The last eight bytes of a `len`-byte name as one word (for names
/// shorter than eight, NUL padding in front). No comparison on `len`.
#[inline(always)]
fn last8(words: &[u64; 8], len: u32) -> u64 {
    // Bytes [len - 8, len): word `i` from bit `shift`, then word `i + 1`.
    let start = (len as u64).wrapping_add(56); // (len - 8) + 64, no underflow
    let i = (start / 8) as usize; // the real word index + 8
    let shift = (start % 8) * 8;
    // Word -1 (a name shorter than eight bytes) reads as NUL padding.
    let lo = word_at(words, i.wrapping_sub(8)) >> shift;
    // `<< (64 - shift)` without a shift by 64 when shift is 0.
    let hi = (word_at(words, i.wrapping_sub(7)) << (63 - shift)) << 1;
    lo | hi
}

/// `words[i]` chosen by value, so no variable-offset stack access.
#[inline(always)]
fn word_at(words: &[u64; 8], i: usize) -> u64 {
    match i {
        0 => words[0],
        1 => words[1],
        2 => words[2],
        3 => words[3],
        4 => words[4],
        5 => words[5],
        6 => words[6],
        7 => words[7],
        _ => 0,
    }
}

/// Matches the requested path string (failed opens, or no kernel offsets):
/// path rules for absolute paths, then the name gate on its last component.
#[inline(always)]
#[allow(clippy::needless_range_loop, reason = "constant-bounded index loops are what the verifier checks best")]
fn match_string<const KERNEL: bool>(args: &OpenArgs) -> Option<Hit> {
    let s = scratch()?;
    // Into our 256-byte buffer.
    let n = read_str::<KERNEL>(s.path.as_mut_ptr(), PATH_LEN as u32, args.path);
    if n <= 1 {
        return None;
    }
    let len = n as usize - 1; // without the NUL
    if s.path[0] == b'/'
        && let Some(rule_id) = match_path_rules::<KERNEL>(args.path, s, n as usize)
    {
        return Some(Hit { rule_id, how: MatchKind::Path });
    }
    (failed_open_name(len as u64) == 1).then_some(Hit { rule_id: 0, how: MatchKind::Name })
}

/// Whether the last component of the requested string in scratch
/// (`Scratch::path`, `len` bytes without the NUL) passes the name gate: its
/// first and last two bytes meet the pre-filter first, as an opened file's
/// name does, so most names end before the name is copied, masked and
/// hashed. Returns 1 when it passes.
///
/// A BPF *global* function, like [`emit_file_open`]: checked once on its
/// own rather than for every state of the path-rule steps before it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn failed_open_name(len: u64) -> i32 {
    let (Some(s), Some(cfg)) = (scratch(), FILE_CFG.get(0)) else { return 0 };
    if len == 0 || len >= PATH_LEN as u64 {
        return 0;
    }
    let len = len as usize;
    // Last component: scan back for a '/' over at most 65 bytes (the
    // longest name the gate takes, 64 bytes, and the '/' before it).
    let mut start = 0usize;
    let mut i = 0usize;
    while i <= GATE_NAME_MAX {
        if i >= len {
            break;
        }
        let at = len - 1 - i;
        if s.path[at & (PATH_LEN - 1)] == b'/' {
            start = at + 1;
            break;
        }
        i += 1;
    }
    let name_len = len - start;
    if name_len == 0 || name_len > 64 {
        return 0;
    }
    let at = |i: usize| u32::from(s.path[i & (PATH_LEN - 1)]);
    // The byte after a one-byte name is its NUL; the byte before it reads
    // as 0, as in the name gate's padded words.
    let first2 = at(start) | (at(start + 1) << 8);
    let before_last = if name_len >= 2 { at(len - 2) } else { 0 };
    let last2 = before_last | (at(len - 1) << 8);
    if !affix_passes(first2, last2, cfg) {
        return 0;
    }
    // SAFETY: copies 64 bytes from inside the scratch value (the path buffer
    // is followed by other scratch memory) into its 64-byte `words`.
    let r = unsafe {
        generated::bpf_probe_read_kernel(
            s.words.as_mut_ptr().cast(),
            64,
            s.path.as_ptr().add(start & (PATH_LEN - 1)).cast(),
        )
    };
    if r != 0 {
        return 0;
    }
    kernel::mask_words(&mut s.words, name_len as u32);
    i32::from(name_gate(&s.words, name_len as u32, cfg))
}

/// Words of a path the key is copied from `Scratch::path` (240 bytes):
/// longer strings are read again instead (the key holds 256 bytes, and
/// with the leading `~` the copy must end inside it).
const KEY_COPY_WORDS: usize = 30;

/// Looks the path up in `PATH_RULES`, with a leading `/root` or
/// `/home/<user>` replaced by `~`. Returns the matching rule id. `n`: the
/// bytes of the string in `s.path`, NUL included.
#[inline(always)]
#[allow(clippy::needless_range_loop, reason = "constant-bounded index loops are what the verifier checks best")]
fn match_path_rules<const KERNEL: bool>(upath: u64, s: &mut crate::maps::Scratch, n: usize) -> Option<u32> {
    let d = &s.path;
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
    // The path gate, on the key's first bytes (`~` and the string after
    // `skip`, or the string), read from the string already in scratch: a
    // path no rule can match skips the key's copy and the trie lookup,
    // the costliest steps of a failed open (library search paths, imports).
    // SAFETY: `skip` is below 71, so the word is inside `path`.
    let first = unsafe { core::ptr::read_unaligned(s.path.as_ptr().add(skip).cast::<u64>()) };
    let first = if skip != 0 { (first << 8) | u64::from(b'~') } else { first };
    let gate_len = FILE_CFG.get(0).map_or(0, |c| c.path_gate_len) as u64;
    if gate_len != 0 && !gate_test(&PATH_GATE, path_gate_bit(gate_len, first_bytes(first, gate_len))) {
        return None;
    }
    // The key from the string already read (most paths): a word copy in
    // map memory instead of a second helper read of the process's memory.
    let dst_off = if skip != 0 { 1 } else { 0 };
    let m = n.wrapping_sub(skip); // bytes from `skip`, NUL included
    if n <= KEY_COPY_WORDS * 8 && m >= 1 {
        s.key.data[0] = b'~';
        let src = s.path.as_ptr();
        let dst = s.key.data.as_mut_ptr();
        let mut i = 0;
        while i < KEY_COPY_WORDS {
            if i * 8 >= m {
                break;
            }
            // SAFETY: `skip` is below 71 and `i` below 30, so the source
            // stays inside the scratch value (the path is followed by
            // `words` and `pending`) and the destination, at most 241 bytes
            // in, inside the 256-byte key. Bytes past the NUL are left out
            // of the lookup by the prefix length. `opaque` keeps LLVM from
            // turning the loop into a `memcpy` call.
            unsafe {
                let w = kernel::opaque(core::ptr::read_unaligned(src.add(skip + i * 8).cast::<u64>()));
                core::ptr::write_unaligned(dst.add(dst_off + i * 8).cast::<u64>(), w);
            }
            i += 1;
        }
        s.key.prefix_len = ((m + dst_off) * 8) as u32;
        return PATH_RULES.get(&s.key).map(|r| r.rule_id);
    }
    let key = &mut s.key;
    let data = key.data.as_mut_ptr();
    let n = if skip != 0 {
        key.data[0] = b'~';
        // SAFETY: at most 255 bytes after the first byte of the key.
        let m = read_str::<KERNEL>(unsafe { data.add(1) }, (PATH_KEY_LEN - 1) as u32, upath + skip as u64);
        if m <= 0 {
            return None;
        }
        m as u32 + 1
    } else {
        // At most 256 bytes into the key.
        let m = read_str::<KERNEL>(data, PATH_KEY_LEN as u32, upath);
        if m <= 0 {
            return None;
        }
        m as u32
    };
    key.prefix_len = n * 8;
    PATH_RULES.get(&*key).map(|r| r.rule_id)
}

/// FNV-1a of the requested path in scratch (the de-dup key of a failed open).
#[inline(always)]
fn path_hash() -> u64 {
    let Some(scratch) = SCRATCH.get_ptr(0) else { return 0 };
    // SAFETY: per-CPU scratch value.
    let p = unsafe { &(*scratch).path };
    let mut h: u64 = FNV1A_OFFSET;
    let mut i = 0;
    while i < PATH_LEN {
        let c = p[i];
        if c == 0 {
            break;
        }
        h = fnv1a_step(h, c);
        i += 1;
    }
    h
}

/// De-duplication: `Some(total)` to emit, `None` when folded into a count.
#[inline(always)]
fn dedup(p: &Pending, now: u64) -> Option<u64> {
    let (ret, dev, ino) = (p.ret, p.dev, p.ino);
    let window = file_cfg().dedup_ns;
    if window == 0 {
        return Some(0);
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let start_ns = kernel::process_start_ns();
    let access = dedup_access_class(p.flags);
    // No file (a failed open, or an io_uring fixed-file slot): the path.
    let errno = if ret < 0 { (-ret) as u32 } else { 0 };
    let (dev, ino) = if p.file == 0 { (0, path_hash()) } else { (dev, ino) };
    let key = DedupKey { start_ns, tgid, access, dev, ino, errno, _pad0: 0 };
    if let Some(v) = DEDUP.get_ptr_mut(key) {
        return fold(v, now, window);
    }
    // A new key. Inserted only if still absent: two threads of the process
    // opening the file on two CPUs at once would otherwise both insert a
    // total of 1, the second over the first, and one open would never be
    // counted. The CPU that loses folds its open into the winner's key.
    let v = DedupValue { emitted_ns: now, last_ns: now, total: 1 };
    if DEDUP.insert(key, v, u64::from(BPF_NOEXIST)).is_err()
        && let Some(v) = DEDUP.get_ptr_mut(key)
    {
        return fold(v, now, window);
    }
    Some(1)
}

/// One more open of an existing de-dup key: counted, and emitted (with the
/// key's total) only when the window since the key's last event has passed.
#[inline(always)]
fn fold(v: *mut DedupValue, now: u64, window: u64) -> Option<u64> {
    // SAFETY: a live map value (its count added atomically: threads of
    // one process may hit the key on several CPUs at once).
    unsafe {
        atomic_inc(&raw mut (*v).total);
        (*v).last_ns = now;
        if now.wrapping_sub((*v).emitted_ns) < window {
            count(EventKind::FileOpen, Counter::DedupSuppressed);
            return None;
        }
        (*v).emitted_ns = now;
        Some((*v).total)
    }
}

/// One more file event of `tgid` lost ([`FILE_LOST_TGID`]), exactly when
/// its threads lose events on several CPUs at once: an existing count is
/// added to atomically, a new one inserted only if still absent, else
/// added to.
#[inline(always)]
fn count_lost(tgid: u32) {
    if let Some(n) = FILE_LOST_TGID.get_ptr_mut(tgid) {
        // SAFETY: a live map value.
        unsafe { atomic_inc(n) };
    } else if FILE_LOST_TGID.insert(tgid, 1, u64::from(BPF_NOEXIST)).is_err()
        && let Some(n) = FILE_LOST_TGID.get_ptr_mut(tgid)
    {
        // SAFETY: a live map value.
        unsafe { atomic_inc(n) };
    }
}

/// Writes the pending open (scratch) to the ring buffer: de-dup, task
/// identity, the requested path, the resolved path and the executable.
///
/// A BPF *global* function (exported, no pointer arguments): the verifier
/// checks it once on its own, instead of once for every path of the filter
/// that leads here, each with two 24-step dentry walks. Returns 0 when an
/// event was written.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn emit_file_open() -> i32 {
    match emit() {
        Some(()) => 0,
        None => 1,
    }
}

#[inline(always)]
fn emit() -> Option<()> {
    let p = scratch()?.pending;
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == file_cfg().agent_tgid {
        return None;
    }
    // SAFETY: plain helper call.
    let now = unsafe { generated::bpf_ktime_get_boot_ns() };
    let total = dedup(&p, now)?;
    let Some(mut entry) = EVENTS.reserve::<FileOpenEvent>(0) else {
        count(EventKind::FileOpen, Counter::ReserveFailed);
        count_lost(tgid);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned record of the
    // right size; every field is written before submit.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::FileOpen as u32,
            size: core::mem::size_of::<FileOpenEvent>() as u32,
            boot_ns: now,
        };
        kernel::current_task_info(&mut (*ev).task);
        (*ev).ret = p.ret;
        // Volatile: two adjacent zero stores would become a `memset` call.
        core::ptr::write_volatile(&raw mut (*ev).dev, p.dev);
        core::ptr::write_volatile(&raw mut (*ev).ino, p.ino);
        (*ev).syscall = p.syscall;
        (*ev).open_flags = p.flags;
        (*ev).mode = p.mode;
        (*ev).dirfd = p.dirfd;
        (*ev).rule_id = p.rule_id;
        (*ev).match_kind = p.how;
        (*ev).dedup_total = total;
        let mut flags = 0;
        let from_kernel = kernel_path(p.syscall);
        let n = if from_kernel {
            read_str::<true>((*ev).path.as_mut_ptr(), PATH_LEN as u32, p.path)
        } else {
            read_str::<false>((*ev).path.as_mut_ptr(), PATH_LEN as u32, p.path)
        };
        if from_kernel && p.file == 0 && p.ret >= 0 {
            flags |= event_flags::IOURING_FIXED;
        }
        if n <= 0 {
            (*ev).path[0] = 0;
        } else if n as usize >= PATH_LEN {
            flags |= event_flags::PATH_TRUNCATED;
        }
        (*ev).resolved_len = 0;
        let relative = n > 0 && (*ev).path[0] != b'/';
        // The file's own path; for a failed relative open, its base directory.
        let base = if p.file != 0 {
            kernel::file_path(p.file)
        } else if relative && p.dirfd == AT_FDCWD {
            flags |= event_flags::RESOLVED_IS_BASE;
            kernel::current_cwd()
        } else if relative {
            flags |= event_flags::RESOLVED_IS_BASE;
            kernel::file_of_fd(p.dirfd as i64).and_then(|f| match f {
                FileRef::Typed(f) | FileRef::Untyped(f) => kernel::file_path(f),
            })
        } else {
            None
        };
        if let Some((mnt, dentry)) = base {
            let walk = kernel::walk_path(mnt, dentry, &mut (*ev).resolved);
            (*ev).resolved_len = walk.len;
            flags |= event_flags::RESOLVED_VALID;
            if !walk.complete {
                flags |= event_flags::RESOLVED_TRUNCATED;
            }
        } else {
            flags &= !event_flags::RESOLVED_IS_BASE;
        }
        (*ev).exe_len = 0;
        if let Some((mnt, dentry)) = kernel::current_exe_file().and_then(kernel::file_path) {
            let walk = kernel::walk_path(mnt, dentry, &mut (*ev).exe);
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
