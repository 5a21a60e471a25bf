//! Reading credential files after the kernel reports an access, and
//! deriving their identities, with a cache so that a file is read again
//! only when it changed; a change of a known file is a rotation.
//!
//! Input: the opening process's pid, the path it used, the kernel's device
//! and inode, the matching catalog rule. Output: the file's identities (or
//! why there are none) and, on change, the identities before.
//!
//! Invariants:
//! - paths resolve in the opening process's mount namespace: through
//!   `/proc/<pid>/root` with `openat2(RESOLVE_IN_ROOT)`, so a container's
//!   absolute symlinks stay inside the container (kernel 5.6+; older
//!   kernels fall back to a plain open under the same root);
//! - reads are bounded (`max_bytes`); the bytes go straight into a
//!   `Secret` buffer sized before the read, so no unzeroed copy is made;
//! - the cache key is the path as the process asked for it, within its
//!   mount namespace: a Kubernetes token swapped by symlink (a new inode
//!   each hour) is the same credential file, rotated.
use std::{
    collections::HashMap,
    ffi::OsString,
    fs::File,
    io::Read,
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use observer_creds::{Format, Keyed, Parsed, Secret, Unparsed};

/// Entries kept before the cache is cleared (a host has far fewer
/// credential files; the bound only guards against path churn).
const MAX_CACHE_ENTRIES: usize = 16_384;

/// What the agent knows of one credential file, from its last read.
#[derive(Debug, Clone)]
struct Entry {
    stat: Stat,
    /// Keyed fingerprint of the content: tells a real change from a touch.
    content: String,
    parsed: Parsed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_dev` as userspace sees it.
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stat {
    pub(crate) fn of(m: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// The device as the kernel encodes `s_dev` (major << 20 | minor), the
    /// encoding of kernel events and of the watched-inode map.
    pub fn kernel_dev(&self) -> u64 {
        u64::from(super::watch::kernel_dev(self.dev))
    }
}

/// The outcome of one access.
#[derive(Debug, Clone)]
pub struct Classified {
    pub parsed: Parsed,
    /// The file changed since it was last read: what it held before.
    pub rotated_from: Option<Parsed>,
    /// Whether the file was read now (false: from the cache).
    pub read: bool,
    pub stat: Option<Stat>,
}

/// Where a process's file is.
pub struct Access<'a> {
    /// The opening process (host pid namespace); 0 for the host itself.
    pub pid: u32,
    /// The path as the process passed it, or the kernel's resolved path.
    pub path: &'a Path,
    /// The kernel's `(s_dev, ino)` of the opened file, when known.
    pub kernel_inode: Option<(u64, u64)>,
    pub format: Format,
    pub kind: &'a str,
}

pub struct Reader {
    max_bytes: u64,
    own_mount_ns: Option<u64>,
    cache: HashMap<(u64, PathBuf), Entry>,
}

impl Reader {
    pub fn new(max_bytes: u64) -> Self {
        Self { max_bytes, own_mount_ns: mount_ns("self"), cache: HashMap::new() }
    }

    /// Reads (or recalls) and parses the file of one access.
    pub fn classify(&mut self, access: &Access<'_>, keyed: &Keyed) -> Classified {
        let fail = |reason| Classified { parsed: Parsed::unparsed(reason), rotated_from: None, read: false, stat: None };
        let (ns, file) = match self.open(access) {
            Ok(x) => x,
            Err(reason) => return fail(reason),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return fail(Unparsed::Unreadable(e.kind().to_string())),
        };
        if !meta.is_file() {
            return fail(Unparsed::Unreadable(not_regular(&meta).into()));
        }
        let stat = Stat::of(&meta);
        let key = (ns, access.path.to_owned());
        if let Some(e) = self.cache.get(&key)
            && e.stat == stat
        {
            return Classified { parsed: e.parsed.clone(), rotated_from: None, read: false, stat: Some(stat) };
        }
        let bytes = match read_bounded(file, stat.size, self.max_bytes) {
            Ok(b) => b,
            Err(reason) => return Classified { stat: Some(stat), ..fail(reason) },
        };
        let content = keyed.id("content", bytes.expose());
        let parsed = observer_creds::parse(access.format, &bytes, access.kind, keyed);
        // A rotation is a change of content that held identities; a file
        // filled after being created empty is being provisioned.
        let previous = self
            .cache
            .get(&key)
            .filter(|e| e.content != content && !e.parsed.identities.is_empty())
            .map(|e| e.parsed.clone());
        if self.cache.len() >= MAX_CACHE_ENTRIES && !self.cache.contains_key(&key) {
            self.cache.clear();
        }
        self.cache.insert(key, Entry { stat, content, parsed: parsed.clone() });
        Classified { parsed, rotated_from: previous, read: true, stat: Some(stat) }
    }

    /// Opens the file in the process's mount namespace. Returns the
    /// namespace id (the cache's first key part) and the file.
    fn open(&self, access: &Access<'_>) -> Result<(u64, File), Unparsed> {
        if !access.path.is_absolute() {
            return Err(Unparsed::Unreadable("relative path".into()));
        }
        let pid_ns = if access.pid == 0 { self.own_mount_ns } else { mount_ns(&access.pid.to_string()) };
        match pid_ns {
            // Our own namespace: the path as is.
            Some(ns) if Some(ns) == self.own_mount_ns => Ok((ns, open_plain(access.path)?)),
            Some(ns) => Ok((ns, open_in_root(access.pid, access.path)?)),
            // The process is gone (short-lived `cat`): read the file as we
            // see it, or as the host's init does (the agent in a container),
            // only if it is the very inode the kernel saw opened.
            None => {
                let inode_matches = |f: &File| {
                    let st = f.metadata().map(|m| Stat::of(&m)).ok();
                    matches!((st, access.kernel_inode), (Some(st), Some((dev, ino))) if st.kernel_dev() == dev && st.ino == ino)
                };
                if let Ok(f) = open_plain(access.path)
                    && inode_matches(&f)
                {
                    return Ok((self.own_mount_ns.unwrap_or(0), f));
                }
                if let Some(init_ns) = mount_ns("1").filter(|ns| Some(*ns) != self.own_mount_ns)
                    && let Ok(f) = open_in_root(1, access.path)
                    && inode_matches(&f)
                {
                    return Ok((init_ns, f));
                }
                Err(Unparsed::Unreadable("the process exited before its file could be read in its mount namespace".into()))
            }
        }
    }
}

/// What a non-regular file is, for the unparsed reason's detail: a
/// credential path that is (a symlink to) a FIFO or a device is reported
/// as such, never read.
pub(crate) fn not_regular(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "not a regular file: a FIFO"
    } else if t.is_char_device() {
        "not a regular file: a character device"
    } else if t.is_block_device() {
        "not a regular file: a block device"
    } else if t.is_socket() {
        "not a regular file: a socket"
    } else if t.is_dir() {
        "not a regular file: a directory"
    } else {
        "not a regular file"
    }
}

/// The mount namespace inode of `/proc/<pid>`, if the process exists.
pub fn mount_ns(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok().map(|m| m.ino())
}

fn io_reason(e: &std::io::Error) -> Unparsed {
    Unparsed::Unreadable(e.kind().to_string())
}

pub(crate) fn open_plain(path: &Path) -> Result<File, Unparsed> {
    // O_NONBLOCK: a FIFO at a credential path must not stall the agent.
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    match std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => Ok(f),
        // Longer than PATH_MAX (4 KiB): walk down in pieces that fit.
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => open_long(path).map_err(|e| io_reason(&e)),
        Err(e) => Err(io_reason(&e)),
    }
}

/// Opens a path longer than PATH_MAX: each step opens (relative to the
/// directory the last step opened) a run of components that fits.
fn open_long(path: &Path) -> std::io::Result<File> {
    use std::os::fd::AsFd;
    const STEP: usize = 2048;
    let bytes = path.as_os_str().as_bytes();
    let mut dir = File::open("/")?;
    let mut rest = bytes.strip_prefix(b"/").unwrap_or(bytes);
    loop {
        if rest.len() < STEP {
            let how = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC;
            let fd = nix::fcntl::openat(dir.as_fd(), std::ffi::OsStr::from_bytes(rest), how, nix::sys::stat::Mode::empty())?;
            return Ok(File::from(fd));
        }
        // Cut at the last `/` within the step.
        let cut = rest[..STEP].iter().rposition(|&b| b == b'/').filter(|&c| c > 0).ok_or(std::io::ErrorKind::InvalidFilename)?;
        let how = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(dir.as_fd(), std::ffi::OsStr::from_bytes(&rest[..cut]), how, nix::sys::stat::Mode::empty())?;
        dir = File::from(fd);
        rest = &rest[cut + 1..];
    }
}

/// Opens `path` as process `pid` sees it: relative to `/proc/<pid>/root`,
/// with symlinks resolved inside that root.
pub(crate) fn open_in_root(pid: u32, path: &Path) -> Result<File, Unparsed> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let root = format!("/proc/{pid}/root");
    let rel = PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(
        path.as_os_str().as_bytes().trim_ascii_start().strip_prefix(b"/").unwrap_or(path.as_os_str().as_bytes()),
    )));
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&root)
        .map_err(|e| io_reason(&e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&dir, rel.as_path(), how) {
        Ok(fd) => Ok(File::from(fd)),
        // Kernels before 5.6: no openat2.
        Err(nix::errno::Errno::ENOSYS) => open_plain(&Path::new(&root).join(rel)),
        Err(e) => Err(Unparsed::Unreadable(std::io::Error::from(e).kind().to_string())),
    }
}

/// Reads at most `max` bytes into a `Secret` sized before the read.
pub(crate) fn read_bounded(file: File, size_hint: u64, max: u64) -> Result<Secret, Unparsed> {
    if size_hint > max {
        return Err(Unparsed::TooLarge { limit: max });
    }
    let cap = usize::try_from(size_hint.min(max)).unwrap_or(0);
    // One spare byte tells "exactly max" from "more than max"; the buffer
    // never grows past its first allocation, so no copy is left behind.
    let mut buf = Secret::new(vec![0u8; cap + 1]);
    let mut filled = 0;
    let mut reader = file.take(max.saturating_add(1));
    loop {
        let dst = &mut buf.expose_mut()[filled..];
        if dst.is_empty() {
            break;
        }
        match reader.read(dst) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_reason(&e)),
        }
    }
    if filled > cap {
        // The file grew between stat and read.
        return Err(Unparsed::TooLarge { limit: max });
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn keyed() -> Keyed {
        Keyed::new(Secret::new([5u8; 32]))
    }

    fn access(path: &Path) -> Access<'_> {
        Access { pid: std::process::id(), path, kernel_inode: None, format: Format::AwsIni, kind: "aws.access_key" }
    }

    #[test]
    fn reads_once_rereads_on_change_and_reports_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\n").unwrap();
        let mut r = Reader::new(1 << 20);
        let k = keyed();
        let first = r.classify(&access(&path), &k);
        assert!(first.read && first.rotated_from.is_none());
        assert_eq!(first.parsed.identities[0].id, "AKIAAAAAAAAAAAAAAAAA");
        let again = r.classify(&access(&path), &k);
        assert!(!again.read, "unchanged file must come from the cache");
        // Rotation by rename, as credential tools write: a new inode.
        let tmp = dir.path().join("credentials.tmp");
        std::fs::write(&tmp, "[a]\naws_access_key_id = AKIABBBBBBBBBBBBBBBB\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let rotated = r.classify(&access(&path), &k);
        assert!(rotated.read);
        assert_eq!(rotated.parsed.identities[0].id, "AKIABBBBBBBBBBBBBBBB");
        assert_eq!(rotated.rotated_from.unwrap().identities[0].id, "AKIAAAAAAAAAAAAAAAAA");
        // A touch without a content change is not a rotation.
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        let touched = r.classify(&access(&path), &k);
        assert!(touched.read && touched.rotated_from.is_none());
        // Empty, then filled: provisioning, not rotation.
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, "").unwrap();
        assert!(r.classify(&access(&fresh), &k).parsed.identities.is_empty());
        std::fs::write(&fresh, "[a]\naws_access_key_id = AKIACCCCCCCCCCCCCCCC\n").unwrap();
        let filled = r.classify(&access(&fresh), &k);
        assert!(filled.read && filled.rotated_from.is_none() && filled.parsed.identities.len() == 1);
    }

    #[test]
    fn bounded_missing_and_special_files_are_unparsed_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(&vec![b'a'; 4096]).unwrap();
        let mut r = Reader::new(1024);
        let k = keyed();
        assert_eq!(r.classify(&access(&big), &k).parsed.unparsed.unwrap().reason(), "too_large");
        let missing = dir.path().join("missing");
        assert_eq!(r.classify(&access(&missing), &k).parsed.unparsed.unwrap().reason(), "unreadable");
        assert_eq!(r.classify(&access(dir.path()), &k).parsed.unparsed.unwrap().reason(), "unreadable");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(r.classify(&access(&fifo), &k).parsed.unparsed.unwrap().reason(), "unreadable");
        assert_eq!(r.classify(&access(Path::new("rel/x")), &k).parsed.unparsed.unwrap().reason(), "unreadable");
    }

    /// Issue 14, item 6: a path over PATH_MAX (4 KiB) is read, not skipped.
    #[test]
    fn paths_longer_than_path_max_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_owned();
        let name = "d".repeat(200);
        // Created step by step, relative to the last directory: mkdir of
        // the whole path would hit the same limit.
        let mut cur = File::open(dir.path()).unwrap();
        for _ in 0..25 {
            use std::os::fd::AsFd;
            nix::sys::stat::mkdirat(cur.as_fd(), name.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
            let fd = nix::fcntl::openat(cur.as_fd(), name.as_str(), nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
            cur = File::from(fd);
            deep.push(&name);
        }
        let path = deep.join("credentials");
        assert!(path.as_os_str().len() > 4096);
        {
            use std::os::fd::AsFd;
            let fd = nix::fcntl::openat(cur.as_fd(), "credentials", nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let mut f = File::from(fd);
            f.write_all(b"[a]\naws_access_key_id = AKIALONGPATHSYNTH001\n").unwrap();
        }
        let mut r = Reader::new(1 << 20);
        let got = r.classify(&access(&path), &keyed());
        assert_eq!(got.parsed.identities[0].id, "AKIALONGPATHSYNTH001", "{:?}", got.parsed);
    }

    #[test]
    fn exited_process_reads_host_file_only_for_the_kernels_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\n").unwrap();
        let st = Stat::of(&std::fs::metadata(&path).unwrap());
        let mut r = Reader::new(1 << 20);
        let k = keyed();
        // Pid 0x7fff_fff0 does not exist.
        let gone = |inode| Access { pid: 0x7fff_fff0, path: &path, kernel_inode: inode, format: Format::AwsIni, kind: "" };
        assert_eq!(r.classify(&gone(Some((st.kernel_dev(), st.ino))), &k).parsed.identities.len(), 1);
        let other = r.classify(&gone(Some((st.kernel_dev(), st.ino + 1))), &k);
        assert_eq!(other.parsed.unparsed.unwrap().reason(), "unreadable");
    }

    #[test]
    fn another_mount_namespace_is_read_through_its_root() {
        // Our own pid through /proc/<pid>/root: the same file, via openat2.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\n").unwrap();
        let f = open_in_root(std::process::id(), &path).unwrap();
        assert_eq!(f.metadata().unwrap().ino(), std::fs::metadata(&path).unwrap().ino());
    }
}
