//! Credential-file sensor records and watch-list map types
//! (`observer-ebpf/src/probes/files.rs`).
use crate::{EventHeader, PATH_KEY_LEN, PATH_LEN, TaskInfo, WALK_BUF_LEN};

/// Which open-family syscall an event came from.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    Open = 1,
    OpenAt = 2,
    OpenAt2 = 3,
    Creat = 4,
    /// io_uring `IORING_OP_OPENAT` / `IORING_OP_OPENAT2` (probes/iouring.rs):
    /// the path is the kernel's copy, taken at submission.
    IoUringOpenAt = 5,
    IoUringOpenAt2 = 6,
}

impl OpenSyscall {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Open),
            2 => Some(Self::OpenAt),
            3 => Some(Self::OpenAt2),
            4 => Some(Self::Creat),
            5 => Some(Self::IoUringOpenAt),
            6 => Some(Self::IoUringOpenAt2),
            _ => None,
        }
    }
}

/// Bits of [`FileOpenEvent::flags`].
pub mod event_flags {
    /// The path as passed by the process was longer than `PATH_LEN`.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// `resolved` holds the opened file's path rebuilt from its dentries.
    pub const RESOLVED_VALID: u32 = 1 << 1;
    /// The dentry walk of `resolved` stopped early (depth or buffer).
    pub const RESOLVED_TRUNCATED: u32 = 1 << 2;
    /// `resolved` is the directory a relative path was looked up in (cwd
    /// or dirfd) for an open that failed; the agent joins `path` to it.
    pub const RESOLVED_IS_BASE: u32 = 1 << 5;
    /// `exe` holds the executable's path rebuilt from its dentries.
    pub const EXE_VALID: u32 = 1 << 3;
    pub const EXE_TRUNCATED: u32 = 1 << 4;
    /// An io_uring open into a fixed-file slot: no descriptor, so no inode
    /// and no resolved path; matched on the requested path only.
    pub const IOURING_FIXED: u32 = 1 << 6;
}

/// How an open reached the agent. `Path` and `Inode` name a rule; the
/// others are candidates the agent confirms against its catalog.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// The requested path (absolute, `~` normalised) matched an exact or
    /// prefix rule in `PATH_RULES` (failed opens).
    Path = 1,
    /// The file's (dev, ino) is in `WATCHED_INODES` (known from a scan).
    Inode = 2,
    /// The file's directory is a watched directory (directory rules).
    Dir = 3,
    /// The file name passed the name gate (exact names, name prefixes,
    /// suffixes): a candidate.
    Name = 4,
}

impl MatchKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Path),
            2 => Some(Self::Inode),
            3 => Some(Self::Dir),
            4 => Some(Self::Name),
            _ => None,
        }
    }
}

/// Bits in the name gate and inode gate bitmaps (`NAME_GATE`, `INODE_GATE`,
/// arrays of u64 words). A set bit means "maybe": false positives are
/// confirmed or dropped by the agent, there are no false negatives.
pub const GATE_BITS: u32 = 1 << 16;
pub const GATE_WORDS: u32 = GATE_BITS / 64;
/// Longest file name the name gate hashes (the catalog's name patterns
/// are at most this long minus one).
pub const GATE_NAME_MAX: usize = 64;
/// Words of a name the exact-name hash covers (an inline dentry name holds
/// at most 39 bytes; longer names are hashed by their first 40 bytes).
pub const GATE_HASH_WORDS: usize = 5;
/// Name-gate entry kinds, mixed into the hash.
pub const GATE_EXACT: u64 = 1;
pub const GATE_PREFIX: u64 = 2;
pub const GATE_SUFFIX: u64 = 3;
/// Longest name prefix or suffix the gate tests (one word).
pub const GATE_AFFIX_MAX: u32 = 8;
/// Distinct prefix (and suffix) lengths the gate tests per open; rules with
/// other lengths are tested through a shorter kept length.
pub const GATE_AFFIX_LENS: usize = 4;

/// Mixes one 64-bit word into a running gate hash (both sides use this
/// exact function; it is not cryptographic, only well spread).
#[inline(always)]
pub const fn gate_mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// Bit index of an exact-name gate entry: the length and the name's first
/// [`GATE_HASH_WORDS`] words (little-endian, zero past `len`).
#[inline(always)]
pub const fn gate_name_bit(len: u64, words: &[u64; GATE_NAME_MAX / 8]) -> u32 {
    let mut h = gate_mix(GATE_EXACT, len);
    let mut i = 0;
    while i < GATE_HASH_WORDS {
        h = gate_mix(h, words[i]);
        i += 1;
    }
    (h % GATE_BITS as u64) as u32
}

/// The name pre-filter (`AFFIX_GATE`): one bit per possible pair of bytes,
/// for the last two bytes of suffix rules (bits 0..65536), the first two of
/// prefix rules (65536..131072) and the first two of exact names
/// (131072..196608). Indexed directly, no hashing: most names fail here,
/// before any name hash is computed.
pub const AFFIX_GATE_BITS: u32 = 3 << 16;
pub const AFFIX_GATE_WORDS: u32 = AFFIX_GATE_BITS / 64;
/// Where the prefix region of the pre-filter starts.
pub const AFFIX_PREFIX_BASE: u32 = 1 << 16;
/// Where the exact-name region of the pre-filter starts.
pub const AFFIX_EXACT_BASE: u32 = 2 << 16;

/// Path-gate entry kind, mixed into the hash.
pub const GATE_PATH: u64 = 4;

/// Bit index of a path-gate entry (`PATH_GATE`, a [`GATE_BITS`] bitmap in
/// front of the `PATH_RULES` trie): the first `len` bytes (1..=8) of a
/// path-rule key as one little-endian word, zero above them. `len` is the
/// shortest key's length (at most 8), so every key that can match a path
/// starts with one of the gated words: a path whose first `len` bytes are
/// not in the gate matches no rule, and its trie lookup is skipped.
#[inline(always)]
pub const fn path_gate_bit(len: u64, word: u64) -> u32 {
    (gate_mix(gate_mix(GATE_PATH, len), word) % GATE_BITS as u64) as u32
}

/// The first `len` bytes (0..=8) of a little-endian `word`, zero above.
#[inline(always)]
pub const fn first_bytes(word: u64, len: u64) -> u64 {
    if len >= 8 { word } else { word & ((1u64 << (len * 8)) - 1) }
}

/// Bit index of a name-gate prefix or suffix entry: the first (prefix) or
/// last (suffix) `len` bytes of the name as one little-endian word.
#[inline(always)]
pub const fn gate_affix_bit(kind: u64, len: u64, word: u64) -> u32 {
    (gate_mix(gate_mix(kind, len), word) % GATE_BITS as u64) as u32
}

/// Bit index of an inode-gate entry: the inode number alone, so the kernel
/// reads the device only when the bit is set.
#[inline(always)]
pub const fn gate_inode_bit(ino: u64) -> u32 {
    (gate_mix(7, ino) % GATE_BITS as u64) as u32
}

/// Key of `WATCHED_INODES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    /// Kernel `dev_t` of the file system (`super_block::s_dev`).
    pub dev: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);

impl InodeKey {
    /// `dev` in the kernel's encoding ([`kernel_dev`]).
    pub const fn new(dev: u32, ino: u64) -> Self {
        Self { ino, dev, _pad0: 0 }
    }
}

/// The kernel's internal `dev_t` (`MKDEV`: 12-bit major << 20 | 20-bit
/// minor), as in `super_block::s_dev` and so in file events and
/// `WATCHED_INODES`. Userspace `st_dev` uses another encoding: convert with
/// this from its major and minor.
pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
    ((major & 0xfff) << 20) | (minor & 0xf_ffff)
}

/// Major and minor of a kernel `dev_t` ([`kernel_dev`]).
pub const fn kernel_dev_split(dev: u32) -> (u32, u32) {
    ((dev >> 20) & 0xfff, dev & 0xf_ffff)
}

/// Value of `WATCHED_INODES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeRule {
    pub rule_id: u32,
    /// `INODE_FILE` or `INODE_DIR`.
    pub what: u32,
}
const _: () = assert!(core::mem::size_of::<InodeRule>() == 8);
pub const INODE_FILE: u32 = 1;
pub const INODE_DIR: u32 = 2;

/// De-duplication key: the same process, file, access and outcome. The
/// process is (tgid, start time): a new process that reuses a pid is not
/// folded into the old one's count.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// `TaskInfo::start_boot_ns` of the process.
    pub start_ns: u64,
    pub tgid: u32,
    /// Access class: `O_ACCMODE` bits | `O_CREAT` presence << 2.
    pub access: u32,
    /// (dev, ino) of the file, or for a failed open 0 and a hash of the
    /// requested path.
    pub dev: u64,
    pub ino: u64,
    /// 0 for success, else the errno.
    pub errno: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<DedupKey>() == 40);

/// `open(2)` flag bits the de-dup access class reads.
pub const O_ACCMODE: u32 = 0o3;
pub const O_CREAT: u32 = 0o100;

/// [`DedupKey::access`] of an open's flags: `O_ACCMODE` bits | `O_CREAT`
/// presence << 2. The kernel and the agent both derive it from here.
#[inline(always)]
pub const fn dedup_access_class(flags: u32) -> u32 {
    (flags & O_ACCMODE) | (((flags & O_CREAT) != 0) as u32) << 2
}

/// FNV-1a offset basis: the start of [`fnv1a_step`] (the de-dup key of a
/// failed open hashes its requested path, up to its NUL or [`PATH_LEN`]
/// - 1 bytes).
///
/// [`PATH_LEN`]: crate::PATH_LEN
pub const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One byte of FNV-1a (64-bit).
#[inline(always)]
pub const fn fnv1a_step(h: u64, byte: u8) -> u64 {
    (h ^ byte as u64).wrapping_mul(0x100_0000_01b3)
}

/// De-duplication state: counts are monotonic, so the agent derives exact
/// per-record counts by subtraction and never writes to the map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupValue {
    /// When the last event for this key was emitted.
    pub emitted_ns: u64,
    /// When the key was last seen (emitted or folded).
    pub last_ns: u64,
    /// Opens seen for this key since the entry was created.
    pub total: u64,
}
const _: () = assert!(core::mem::size_of::<DedupValue>() == 24);

/// Settings of the file sensor (`FILE_CFG`, changeable at runtime).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSensorConfig {
    /// Fold repeated opens of one key within this window into a count;
    /// 0 turns de-duplication off.
    pub dedup_ns: u64,
    /// Name-gate prefix and suffix lengths to test, ascending, 0-terminated.
    pub prefix_lens: [u8; GATE_AFFIX_LENS],
    pub suffix_lens: [u8; GATE_AFFIX_LENS],
    /// Non-zero when some rule watches a directory (the parent-directory
    /// gate is skipped otherwise).
    pub dir_rules: u32,
    /// The agent's own process: its reads of credential files (to classify
    /// them) are not accesses, and must not take ring space.
    pub agent_tgid: u32,
    /// Bytes of a path-rule key the path gate (`PATH_GATE`) covers: the
    /// shortest key's length, at most 8 (see [`path_gate_bit`]).
    pub path_gate_len: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<FileSensorConfig>() == 32);

/// A credential-file open (open, openat, openat2, creat), successful or not.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpenEvent {
    pub header: EventHeader,
    pub task: TaskInfo,
    /// The syscall's return value: an fd, or `-errno`.
    pub ret: i64,
    /// Device and inode of the opened file (0 when the open failed).
    pub dev: u64,
    pub ino: u64,
    /// An [`OpenSyscall`].
    pub syscall: u32,
    /// `O_*` flags as passed (for `creat`: `O_CREAT|O_WRONLY|O_TRUNC`).
    pub open_flags: u32,
    pub mode: u32,
    /// Directory fd for `*at` calls (`AT_FDCWD` = -100), else -100.
    pub dirfd: i32,
    /// Rule id from the watch list that matched.
    pub rule_id: u32,
    /// A [`MatchKind`].
    pub match_kind: u32,
    /// [`event_flags`] bits.
    pub flags: u32,
    /// Bytes used in `resolved` and `exe` (the rest is stale ring memory).
    pub resolved_len: u16,
    pub exe_len: u16,
    /// Opens of this de-duplication key so far (monotonic, see
    /// [`DedupValue::total`]); 0 when de-duplication is off.
    pub dedup_total: u64,
    /// The path as the process passed it, NUL-terminated.
    pub path: [u8; PATH_LEN],
    /// The opened file's path from its dentries (see [`WALK_BUF_LEN`]).
    pub resolved: [u8; WALK_BUF_LEN],
    /// The executable's path from `mm->exe_file` (see [`WALK_BUF_LEN`]).
    pub exe: [u8; WALK_BUF_LEN],
}
const _: () = assert!(core::mem::size_of::<FileOpenEvent>() == 16 + 56 + 24 + 32 + 8 + 256 + 512 + 512);

/// LPM-trie key data for path rules. The key is the path with a home
/// directory prefix (`/root`, `/home/<user>`) replaced by `~`. Exact rules
/// include the terminating NUL, prefix rules do not, so the longest match of
/// `"~/.aws/credentials\0"` is the exact rule, and an exact rule never
/// shadows a shorter prefix rule for a longer path.
pub type PathKeyData = [u8; PATH_KEY_LEN];

/// Value of a path rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRule {
    pub rule_id: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<PathRule>() == 8);
