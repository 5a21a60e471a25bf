//! The watch list as the agent holds it: the rules, the inodes and
//! directories they resolve to on this host, and the confirmation of what
//! the kernel reports.
//!
//! Input: watch rules. Output: (1) [`InodeEntry`]s for the kernel's inode
//! gate, from expanding the rules over the file system (every user's home,
//! symlinks followed, directory rules walked); (2) for each file event, the
//! rule it concerns, or `None` for a kernel candidate (a name-gate hit)
//! that no rule confirms.
use std::{
    collections::HashMap,
    ffi::OsStr,
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use observer_common::{INODE_DIR, INODE_FILE, InodeKey, InodeRule, MatchKind};

use super::catalog::{Catalog, PatternKind, WatchRule};
use crate::decode::FileOpen;

/// Directories below a directory rule that are watched, and files in them
/// registered by inode, at most (a runaway tree is cut, and says so).
pub const MAX_DIR_DEPTH: usize = 8;
pub const MAX_ENTRIES_PER_RULE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeEntry {
    pub key: InodeKey,
    pub rule: InodeRule,
    /// Where it was found (for logs and tests; for a special file, the
    /// credential path that leads to it).
    pub path: PathBuf,
    /// A FIFO, socket or device reached through a credential path (a
    /// symlink): its opens count only under that path's name.
    pub special: bool,
}

impl InodeEntry {
    /// `dev` in the kernel's encoding ([`kernel_dev`]); `what` is
    /// `INODE_FILE` or `INODE_DIR`.
    pub fn new(dev: u32, ino: u64, rule_id: u32, what: u32, path: PathBuf) -> Self {
        Self { key: InodeKey::new(dev, ino), rule: InodeRule { rule_id, what }, path, special: false }
    }
}

/// Kernel `dev_t` (MKDEV: 12-bit major << 20 | 20-bit minor) from a
/// userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    observer_common::kernel_dev(libc::major(st_dev), libc::minor(st_dev))
}

/// Home directories: `/root`, every directory in `/home`, and the homes of
/// `/etc/passwd` users that exist (service accounts in `/var/lib/...`).
pub fn home_dirs() -> Vec<PathBuf> {
    let mut homes = vec![PathBuf::from("/root")];
    if let Ok(rd) = fs::read_dir("/home") {
        homes.extend(rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()));
    }
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            if let Some(home) = line.split(':').nth(5).filter(|h| h.starts_with('/') && *h != "/") {
                let home = PathBuf::from(home);
                if home.is_dir() && !homes.contains(&home) {
                    homes.push(home);
                }
            }
        }
    }
    homes
}

/// The paths a pattern's text names: `~/x` under each home, an absolute
/// path as it is; none for name and suffix patterns (no place to look).
pub fn pattern_bases(text: &str, homes: &[PathBuf]) -> Vec<PathBuf> {
    match text.strip_prefix("~/") {
        Some(rest) => homes.iter().map(|h| h.join(rest)).collect(),
        None if text.starts_with('/') => vec![PathBuf::from(text)],
        None => Vec::new(),
    }
}

/// Expands `rules` over this host's file system into watched inodes.
/// Basename and suffix rules have no place to look: the name gate covers
/// them.
pub fn expand(rules: &[WatchRule], homes: &[PathBuf]) -> Vec<InodeEntry> {
    let mut out = Vec::new();
    for rule in rules {
        for pattern in rule.pattern.spellings() {
            for base in pattern_bases(&pattern.text, homes) {
                match pattern.kind {
                    PatternKind::Exact => add(&mut out, &base, rule.id, INODE_FILE),
                    PatternKind::Prefix if pattern.text.ends_with('/') => {
                        let mut budget = MAX_ENTRIES_PER_RULE;
                        walk_dir(&mut out, &base, rule.id, 0, &mut budget);
                    }
                    PatternKind::Prefix => {
                        let (dir, prefix) = split_name(&base);
                        if let Ok(rd) = fs::read_dir(dir) {
                            for e in rd.filter_map(Result::ok) {
                                if e.file_name().as_bytes().starts_with(prefix.as_bytes()) {
                                    add(&mut out, &e.path(), rule.id, INODE_FILE);
                                }
                            }
                        }
                    }
                    PatternKind::Basename | PatternKind::Suffix => {}
                }
            }
        }
    }
    out.sort_by_key(|e| (e.key.dev, e.key.ino));
    out.dedup_by_key(|e| (e.key.dev, e.key.ino));
    out
}

fn split_name(path: &Path) -> (&Path, &OsStr) {
    (path.parent().unwrap_or(Path::new("/")), path.file_name().unwrap_or_default())
}

/// Adds `path` (following symlinks: the file opened through any name is the
/// target) if it exists and is a directory or a file as `what` says.
///
/// A file rule may lead to a FIFO, socket or device (a credential path
/// symlinked to one): its opens are reported, unparsed with the reason,
/// but only under the credential path's name ([`WatchList::confirm`]).
/// Memory devices (`/dev/null`, `/dev/zero`, `/dev/urandom`: character
/// major 1) are left out: a credential path pointed at `/dev/null` holds
/// nothing, and the kernel would otherwise hand the agent every open of
/// `/dev/null` on the host.
fn add(out: &mut Vec<InodeEntry>, path: &Path, rule_id: u32, what: u32) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(md) = fs::metadata(path) else { return };
    let t = md.file_type();
    let special = what != INODE_DIR && (t.is_fifo() || t.is_socket() || t.is_block_device() || t.is_char_device());
    let ok = match what {
        INODE_DIR => md.is_dir(),
        _ => md.is_file() || special,
    };
    if t.is_char_device() && nix::sys::stat::major(md.rdev()) == 1 {
        return;
    }
    if ok {
        let mut e = InodeEntry::new(kernel_dev(md.dev()), md.ino(), rule_id, what, path.to_owned());
        e.special = special;
        out.push(e);
    }
}

fn walk_dir(out: &mut Vec<InodeEntry>, dir: &Path, rule_id: u32, depth: usize, budget: &mut usize) {
    if *budget == 0 || depth > MAX_DIR_DEPTH {
        return;
    }
    add(out, dir, rule_id, INODE_DIR);
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        if *budget == 0 {
            tracing::warn!(dir = %dir.display(), "directory rule covers more than {MAX_ENTRIES_PER_RULE} entries; the rest is watched by name only");
            return;
        }
        *budget -= 1;
        let path = e.path();
        match fs::metadata(&path) {
            Ok(md) if md.is_dir() => walk_dir(out, &path, rule_id, depth + 1, budget),
            Ok(md) if md.is_file() => add(out, &path, rule_id, INODE_FILE),
            _ => {}
        }
    }
}

/// How an event was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The kernel named the rule (path rule, watched inode or directory).
    Kernel,
    /// The agent's inode table (a candidate whose inode is known).
    Inode,
    /// The resolved or requested path matched a rule.
    Path,
}

/// The catalog and the inodes its kernel rules resolved to.
#[derive(Debug, Default)]
pub struct WatchList {
    catalog: Catalog,
    inodes: HashMap<(u32, u64), u32>,
    /// Special files (FIFOs, sockets, devices) behind credential paths:
    /// the names of those paths.
    special: HashMap<(u32, u64), Vec<std::ffi::OsString>>,
}

impl WatchList {
    pub fn new(catalog: Catalog, entries: &[InodeEntry]) -> Self {
        let inodes = entries
            .iter()
            .filter(|e| e.rule.what == INODE_FILE)
            .map(|e| ((e.key.dev, e.key.ino), e.rule.rule_id))
            .collect();
        let mut special: HashMap<(u32, u64), Vec<std::ffi::OsString>> = HashMap::new();
        for e in entries.iter().filter(|e| e.special) {
            if let Some(name) = e.path.file_name() {
                special.entry((e.key.dev, e.key.ino)).or_default().push(name.to_owned());
            }
        }
        Self { catalog, inodes, special }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn rule(&self, id: u32) -> Option<&WatchRule> {
        self.catalog.rule(id)
    }

    /// The path an event concerns: for a failed relative open its base
    /// joined with the name, else the file's resolved path (its real
    /// location in the process's mount namespace), else the requested path
    /// when absolute. As text for matching: bytes that are not UTF-8 become
    /// U+FFFD (catalog patterns are ASCII, so they match the same).
    pub fn event_path(ev: &FileOpen) -> Option<String> {
        Self::event_path_text(ev).map(std::borrow::Cow::into_owned)
    }

    /// [`WatchList::event_path`], borrowed from the event when it is one
    /// of its paths as it is (every event is confirmed: no copy for it).
    fn event_path_text(ev: &FileOpen) -> Option<std::borrow::Cow<'_, str>> {
        fn text(p: &OsStr) -> Option<std::borrow::Cow<'_, str>> {
            crate::decode::utf8(p.as_encoded_bytes()).map(std::borrow::Cow::Borrowed)
        }
        let whole = match &ev.resolved {
            Some(r) if r.complete && !ev.resolved_is_base => text(&r.path),
            Some(r) if r.complete => None,
            _ => Some(ev.path.as_bytes()).filter(|p| p.starts_with(b"/")).and_then(|_| text(&ev.path)),
        };
        whole.or_else(|| {
            Self::event_path_bytes(ev)
                .map(|p| String::from_utf8(p).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()).into())
        })
    }

    /// [`WatchList::event_path`] as the exact bytes (to open the file).
    pub fn event_path_bytes(ev: &FileOpen) -> Option<Vec<u8>> {
        let requested = ev.path.as_bytes();
        if let Some(r) = &ev.resolved
            && r.complete
        {
            let mut p = r.path.as_bytes().to_vec();
            if ev.resolved_is_base {
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(requested);
            }
            return Some(p);
        }
        requested.starts_with(b"/").then(|| requested.to_vec())
    }

    /// The rule an event concerns, or `None` to drop it: a kernel candidate
    /// no kernel rule confirms, or a file the catalog excludes (trust
    /// stores). Kernel hits name their rule; candidates are matched by
    /// inode, then by the event's path, then by the requested path.
    /// Kubernetes' atomic-writer directories (`..data`, `..2026_...`) are
    /// ignored when matching, so `serviceaccount/..2026_01_01/token` is
    /// `serviceaccount/token`.
    pub fn confirm(&self, ev: &FileOpen) -> Option<(u32, Via)> {
        let path = Self::event_path_text(ev);
        if path.as_deref().is_some_and(|p| self.catalog.excluded(&clean_path(p))) {
            return None;
        }
        // A FIFO or device behind a credential path: one opened by another
        // name is not that credential.
        if let Some(names) = self.special.get(&(ev.dev as u32, ev.ino)) {
            let requested = Path::new(&ev.path).file_name();
            if !names.iter().any(|n| Some(n.as_os_str()) == requested) {
                return None;
            }
        }
        if ev.match_kind != MatchKind::Name && self.catalog.rule(ev.rule_id).is_some() {
            return Some((ev.rule_id, Via::Kernel));
        }
        if ev.ino != 0
            && let Some(&id) = self.inodes.get(&(ev.dev as u32, ev.ino))
        {
            return Some((id, Via::Inode));
        }
        let requested = Some(ev.path.to_string_lossy()).filter(|p| p.starts_with('/'));
        [path, requested]
            .into_iter()
            .flatten()
            .find_map(|p| self.catalog.match_path_where(&clean_path(&p), |r| r.kernel))
            .map(|r| (r.id, Via::Path))
    }
}

/// Lexically cleans a path: drops `.` and empty components, applies `..`
/// and skips Kubernetes atomic-writer directories (`..data`, `..<stamp>`).
pub fn clean_path(path: &str) -> std::borrow::Cow<'_, str> {
    if is_clean(path) {
        return path.into(); // the common case: nothing to clean, nothing to copy
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c if c.starts_with("..") => {}
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/")).into()
}

/// Whether [`clean_path`] leaves `path` as it is: absolute, and no
/// component empty, `.` or starting with `..`. The `/`s are found eight
/// bytes at a time (this runs for every event the agent confirms;
/// splitting the path into components cost ~600 instructions an event,
/// `memchr` per `/` 360, a test of every byte 260).
fn is_clean(path: &str) -> bool {
    const SLASHES: u64 = u64::from_le_bytes([b'/'; 8]);
    let b = path.as_bytes();
    if b.len() < 2 || b[0] != b'/' {
        return false;
    }
    // A component starts after each `/`: empty (a `/` next, or the end),
    // `.` or `..*` (a `.` then the end, a `/` or another `.`).
    let starts_clean =
        |i: usize| !matches!((b.get(i + 1), b.get(i + 2)), (None | Some(b'/'), _) | (Some(b'.'), None | Some(b'/' | b'.')));
    let words = b.len() / 8 * 8;
    for at in (0..words).step_by(8) {
        let word = u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let mut slashes = crate::decode::zero_bytes(word ^ SLASHES);
        while slashes != 0 {
            if !starts_clean(at + (slashes.trailing_zeros() / 8) as usize) {
                return false;
            }
            slashes &= slashes - 1;
        }
    }
    b[words..].iter().enumerate().all(|(j, &c)| c != b'/' || starts_clean(words + j))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use observer_common::OpenSyscall;

    use super::*;
    use crate::decode::{Task, WalkedPath};

    use crate::classify::catalog::test_rule as rule;

    fn catalog(rules: Vec<WatchRule>) -> Catalog {
        let mut c = Catalog::default();
        c.rules = rules;
        c.extend(Vec::new(), &["/etc/ssl/certs/".into()]).unwrap();
        c
    }

    fn event(path: &str, resolved: Option<&str>, how: MatchKind) -> FileOpen {
        FileOpen {
            boot_ns: 0,
            task: Task { tgid: 1, pid: 1, ppid: 0, uid: 0, gid: 0, cgroup_id: 0, start_boot_ns: 0, comm: "t".into() },
            syscall: OpenSyscall::OpenAt,
            ret: 3,
            dev: 0,
            ino: 0,
            open_flags: 0,
            mode: 0,
            rule_id: 0,
            match_kind: how,
            path: OsString::from(path),
            path_truncated: false,
            resolved: resolved.map(|r| WalkedPath { path: OsString::from(r), complete: true }),
            resolved_is_base: false,
            exe: None,
            dedup_total: 0,
            fixed_file: false,
        }
    }

    #[test]
    fn candidates_are_confirmed_by_resolved_or_requested_path() {
        let wl = WatchList::new(
            catalog(vec![rule(1, "~/.aws/credentials"), rule(2, "/var/run/secrets/kubernetes.io/serviceaccount/token"), rule(3, "*.pem")]),
            &[],
        );
        let ev = event("credentials", Some("/home/bob/.aws/credentials"), MatchKind::Name);
        assert_eq!(wl.confirm(&ev), Some((1, Via::Path)));
        let ev = event(
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            Some("/run/secrets/kubernetes.io/serviceaccount/..2026_11_23_08_00_00.123/token"),
            MatchKind::Name,
        );
        assert_eq!(wl.confirm(&ev).map(|x| x.0), Some(2));
        let ev = event("tls/server.pem", Some("/srv/tls/server.pem"), MatchKind::Name);
        assert_eq!(wl.confirm(&ev).map(|x| x.0), Some(3));
        // A `credentials` file elsewhere is a name-gate false positive.
        let ev = event("credentials", Some("/srv/app/credentials"), MatchKind::Name);
        assert_eq!(wl.confirm(&ev), None);
        // Excluded (a trust store), even when the kernel named a rule.
        let mut ev = event("/etc/ssl/certs/ca.pem", Some("/etc/ssl/certs/ca.pem"), MatchKind::Path);
        ev.rule_id = 3;
        assert_eq!(wl.confirm(&ev), None);
    }

    #[test]
    fn failed_relative_open_is_joined_to_its_base() {
        let wl = WatchList::new(catalog(vec![rule(1, "~/.kube/config")]), &[]);
        let mut ev = event("config", Some("/root/.kube"), MatchKind::Name);
        ev.ret = -2;
        ev.resolved_is_base = true;
        assert_eq!(wl.confirm(&ev), Some((1, Via::Path)));
    }

    #[test]
    fn expand_follows_symlinks_and_walks_directory_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home/alice");
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::create_dir_all(home.join(".ssh")).unwrap();
        let real = tmp.path().join("real-creds");
        fs::write(&real, "x").unwrap();
        std::os::unix::fs::symlink(&real, home.join(".aws/credentials")).unwrap();
        fs::write(home.join(".ssh/id_ed25519"), "k").unwrap();
        fs::write(home.join(".ssh/known_hosts"), "h").unwrap();
        let pki = tmp.path().join("pki");
        fs::create_dir_all(pki.join("etcd")).unwrap();
        fs::write(pki.join("etcd/ca.key"), "k").unwrap();
        let rules = [
            rule(1, "~/.aws/credentials"),
            rule(2, "~/.ssh/id_*"),
            rule(3, &format!("{}/", pki.display())),
        ];
        let entries = expand(&rules, std::slice::from_ref(&home));
        let real_ino = fs::metadata(&real).unwrap().ino();
        assert!(entries.iter().any(|e| e.key.ino == real_ino && e.rule.rule_id == 1), "symlink target: {entries:#?}");
        assert!(entries.iter().any(|e| e.path.ends_with("id_ed25519")));
        assert!(!entries.iter().any(|e| e.path.ends_with("known_hosts")));
        let dirs: Vec<_> = entries.iter().filter(|e| e.rule.what == INODE_DIR).map(|e| e.path.clone()).collect();
        assert_eq!(dirs.len(), 2, "pki and pki/etcd: {dirs:?}");
        assert!(entries.iter().any(|e| e.path.ends_with("etcd/ca.key") && e.rule.what == INODE_FILE));
    }

    /// Guards issue 14 item 6: a credential path symlinked to a FIFO is
    /// watched (as special: only under its own name), one pointed at
    /// /dev/null is not (every open of /dev/null would reach the agent).
    #[test]
    fn special_files_behind_credential_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home/alice");
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::create_dir_all(home.join(".kube")).unwrap();
        let fifo = tmp.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&fifo, home.join(".aws/credentials")).unwrap();
        std::os::unix::fs::symlink("/dev/null", home.join(".kube/config")).unwrap();
        let rules = [rule(1, "~/.aws/credentials"), rule(2, "~/.kube/config")];
        let entries = expand(&rules, std::slice::from_ref(&home));
        assert_eq!(entries.len(), 1, "{entries:#?}");
        let e = &entries[0];
        assert!(e.special && e.key.ino == fs::metadata(&fifo).unwrap().ino() && e.rule.rule_id == 1, "{e:#?}");
        let list = WatchList::new(Catalog::default(), &entries);
        let mut ev = event(home.join(".aws/credentials").to_str().unwrap(), Some(fifo.to_str().unwrap()), MatchKind::Inode);
        (ev.dev, ev.ino, ev.rule_id) = (u64::from(e.key.dev), e.key.ino, 1);
        assert!(list.special.contains_key(&(e.key.dev, e.key.ino)));
        let mut direct = ev.clone();
        direct.path = fifo.clone().into_os_string();
        assert_eq!(list.confirm(&direct), None, "the FIFO by its own name");
    }

    #[test]
    fn kernel_dev_encoding() {
        let st_dev = libc::makedev(254, 1);
        assert_eq!(kernel_dev(st_dev), (254 << 20) | 1);
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(clean_path("/run/s/..data/token"), "/run/s/token");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/a/b/"), "/a/b");
        assert!(matches!(clean_path("/home/u/.aws/credentials"), std::borrow::Cow::Borrowed(_)));
    }

    /// The one-pass test of a clean path says what splitting it into
    /// components says, on paths made of `/`, `.`, `..`, `..data`-like and
    /// plain components.
    #[test]
    fn a_clean_path_is_one_splitting_would_leave() {
        use proptest::prelude::*;
        let by_components = |path: &str| {
            path.strip_prefix('/')
                .is_some_and(|rest| rest.split('/').all(|c| !c.is_empty() && c != "." && !c.starts_with("..")))
        };
        for p in ["/", "//", "/a", "/a/", "/.", "/..", "/.a", "/a/.", "/a/..b", "/a/.b/c", "a/b", "", "/a//b", "/a/./b", "/..data/x"] {
            assert_eq!(is_clean(p), by_components(p), "{p:?}");
        }
        let part = prop_oneof![Just(""), Just("."), Just(".."), Just("..data"), Just(".aws"), Just("a"), Just("credentials"), Just("é")];
        proptest!(|(lead in any::<bool>(), parts in proptest::collection::vec(part, 0..6))| {
            let path = format!("{}{}", if lead { "/" } else { "" }, parts.join("/"));
            prop_assert_eq!(is_clean(&path), by_components(&path), "{:?}", path);
        });
    }
}
