//! At-rest discovery of credential files: walk the roots, match every file
//! against the catalog as the kernel would, read and parse the matches.
//!
//! Input: the catalog, roots, the fingerprint key. Output: [`Found`] files
//! with their identities (or unparsed reasons) and their `(dev, ino)`, in
//! the kernel's `s_dev` encoding, for the kernel's watched-inode map. A
//! plain function, so the agent calls it at start and `nhi-observer scan`
//! prints it.
//!
//! When the scanner runs in another mount namespace than the host's init
//! (the agent in a container, or under systemd's PrivateTmp), it walks the
//! host's tree through `/proc/1/root` and reports host paths.
//!
//! Invariants: symlinks are not followed (a link's target is found where
//! it lives, once); one file system error never stops the walk (counted);
//! caches, VCS and toolchain directories that hold thousands of test
//! fixtures and no live credential are pruned.
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

use observer_creds::{Format, Keyed, Parsed};

use crate::classify::{
    catalog::Catalog,
    reader::{Access, Reader, Stat},
};

pub mod output;

/// Roots scanned when none are given: every home, `/etc`, the kubelet's
/// pod volumes and Docker/Kubernetes secret mounts.
pub const DEFAULT_ROOTS: &[&str] = &["/root", "/home", "/etc", "/var/lib/kubelet/pods", "/run/secrets"];

/// Directory names never descended into.
/// Version control, package caches and language toolchains: thousands of
/// files, test keys and certificates among them, no live credential.
const PRUNE_NAMES: &[&str] = &[
    ".git", ".hg", ".svn", "node_modules", ".rustup", "__pycache__", ".npm", ".cache", ".pyenv", ".nvm", ".rbenv",
    ".sdkman", "site-packages", "dist-packages",
];
/// Deeper than this, no credential tool writes.
const MAX_DEPTH: usize = 16;

pub struct ScanOptions {
    pub roots: Vec<PathBuf>,
    pub max_bytes: u64,
}

/// One credential file.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub rule: String,
    pub kind: String,
    pub format: Format,
    pub stat: Option<Stat>,
    pub parsed: Parsed,
}

impl Found {
    /// `(s_dev, ino)` as the kernel encodes them.
    pub fn kernel_inode(&self) -> Option<(u64, u64)> {
        self.stat.map(|s| (s.kernel_dev(), s.ino))
    }
}

#[derive(Debug, Default)]
pub struct ScanReport {
    pub found: Vec<Found>,
    /// Regular files looked at.
    pub files_seen: u64,
    /// Entries the walk could not read (permissions, races).
    pub walk_errors: u64,
}

impl ScanReport {
    pub fn identities(&self) -> usize {
        self.found.iter().map(|f| f.parsed.identities.len()).sum()
    }
}

/// The roots to walk: `paths` if given, else the defaults plus `extra`.
pub fn roots(paths: &[PathBuf], extra: &[PathBuf]) -> Vec<PathBuf> {
    if !paths.is_empty() {
        // Absolute, so that catalog patterns and reads see real paths.
        return paths.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect();
    }
    DEFAULT_ROOTS.iter().map(PathBuf::from).chain(extra.iter().cloned()).collect()
}

/// Walks `opts.roots`; `progress` is called for every regular file seen.
pub fn scan(catalog: &Catalog, keyed: &Keyed, opts: &ScanOptions, progress: &mut dyn FnMut(&Path, &ScanReport)) -> ScanReport {
    let mut report = ScanReport::default();
    let mut reader = Reader::new(opts.max_bytes);
    let mut seen = std::collections::HashSet::new();
    let host_root = host_root();
    for root in &opts.roots {
        let walk_root = match &host_root {
            Some(h) => h.join(root.strip_prefix("/").unwrap_or(root)),
            None => root.clone(),
        };
        let walk = walkdir::WalkDir::new(&walk_root).follow_links(false).max_depth(MAX_DEPTH).into_iter();
        for entry in walk.filter_entry(|e| !prune(e)) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // A missing default root is not an error worth counting.
                    if e.depth() > 0 || e.io_error().is_none_or(|io| io.kind() != std::io::ErrorKind::NotFound) {
                        report.walk_errors += 1;
                    }
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            report.files_seen += 1;
            // The path as the host sees it.
            let path = match &host_root {
                Some(h) => Path::new("/").join(entry.path().strip_prefix(h).unwrap_or(entry.path())),
                None => entry.path().to_owned(),
            };
            progress(&path, &report);
            let Some(text) = path.to_str() else { continue };
            let Some(rule) = catalog.match_path(text) else { continue };
            // Overlapping roots (a path given twice): one result per file.
            if !seen.insert(path.clone()) {
                continue;
            }
            let pid = if host_root.is_some() { 1 } else { 0 };
            let access = Access { pid, path: &path, kernel_inode: None, format: rule.format, kind: &rule.kind };
            let c = reader.classify(&access, keyed);
            report.found.push(Found {
                path: path.clone(),
                rule: rule.name.clone(),
                kind: rule.kind.clone(),
                format: rule.format,
                stat: c.stat,
                parsed: c.parsed,
            });
        }
    }
    report
}

/// `/proc/1/root` when we are not in the host init's mount namespace.
fn host_root() -> Option<PathBuf> {
    let init = crate::classify::reader::mount_ns("1")?;
    (Some(init) != crate::classify::reader::mount_ns("self")).then(|| PathBuf::from("/proc/1/root"))
}

fn prune(e: &walkdir::DirEntry) -> bool {
    if !e.file_type().is_dir() || e.depth() == 0 {
        return false;
    }
    let name = e.file_name();
    if PRUNE_NAMES.iter().any(|p| name == OsStr::new(p)) {
        return true;
    }
    // ~/.cargo/registry and ~/.cargo/git: crate sources, full of test keys.
    (name == "registry" || name == "git") && e.path().parent().and_then(Path::file_name) == Some(OsStr::new(".cargo"))
}

#[cfg(test)]
mod tests {
    use observer_creds::Secret;

    use super::*;

    #[test]
    fn finds_matching_files_with_identities_and_inodes_and_prunes() {
        let root = tempfile::tempdir().unwrap();
        let home = root.path();
        std::fs::create_dir_all(home.join("app")).unwrap();
        std::fs::write(home.join("app/.env"), "GITHUB_TOKEN=ghp_SYNTHETIC000000000000000000000000001\n").unwrap();
        std::fs::write(home.join("app/.netrc"), "machine h login u password p\n").unwrap();
        std::fs::write(home.join("app/readme.md"), "nothing").unwrap();
        std::fs::create_dir_all(home.join("app/node_modules/x")).unwrap();
        std::fs::write(home.join("app/node_modules/x/.env"), "A_TOKEN=zzzzzzzzzzzzzzzzzzzzzz\n").unwrap();
        std::fs::write(home.join("app/broken.pem"), "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
            .unwrap();
        let catalog = Catalog::builtin().unwrap();
        let keyed = Keyed::new(Secret::new([1u8; 32]));
        let mut calls = 0;
        let report = scan(
            &catalog,
            &keyed,
            &ScanOptions { roots: vec![home.to_owned(), home.join("app")], max_bytes: 1 << 20 },
            &mut |_, _| calls += 1,
        );
        let mut names: Vec<_> = report.found.iter().map(|f| f.path.file_name().unwrap().to_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(names, [".env", ".netrc", "broken.pem"]);
        assert!(calls >= 4);
        let env = report.found.iter().find(|f| f.rule == "dotenv").unwrap();
        assert_eq!(env.parsed.identities[0].kind, "github.pat");
        let st = std::fs::metadata(home.join("app/.env")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(env.kernel_inode().map(|(_, ino)| ino), Some(st.ino()));
        let broken = report.found.iter().find(|f| f.rule == "tls-key-material").unwrap();
        assert_eq!(broken.parsed.unparsed.as_ref().map(|u| u.reason()), Some("malformed"));
        assert_eq!(report.identities(), 2);
    }
}
