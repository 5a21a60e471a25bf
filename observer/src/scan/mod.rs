//! At-rest discovery of credentials: walk the roots in parallel, match
//! every file against the catalog as the kernel would and parse the
//! matches; recognise credentials by content in every other text file.
//!
//! Input: the catalog, roots (directories, or files named on the command
//! line), the fingerprint key. Output: [`Found`] files that hold a
//! credential, with their identities (or, at specific credential paths,
//! the reason there are none) and their `(dev, ino)`, in the kernel's
//! `s_dev` encoding, for the kernel's watched-inode map; counters of
//! what was looked at and left out. A plain function, so the agent calls
//! it at start and `nhi-observer scan` prints it.
//!
//! When the scanner runs in another mount namespace than the host's init
//! (the agent in a container, or under systemd's PrivateTmp), it walks the
//! host's tree through `/proc/1/root` and reports host paths.
//!
//! Invariants:
//! - symlinks are not followed (a link's target is found where it lives,
//!   once); a symlink at a catalog path to a FIFO or a device is reported
//!   unparsed with what it points to, never opened;
//! - one file system error never stops the walk (counted);
//! - bounded: files over `max_bytes` are counted, not read; a NUL byte in
//!   a file's first 8 KiB makes it binary (counted, not searched);
//!   version control, package caches and language toolchains (thousands
//!   of test fixtures, no live credential) are pruned;
//! - public material (certificates, public keys) and files without a
//!   credential are counted, not listed (`classify::verdict`);
//! - parallel on the `ignore` crate's walker; results and progress reach
//!   the caller on its own thread, so `progress` need not be `Send`.
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::mpsc,
};

use observer_creds::{Format, Keyed, Parsed, Unparsed};

use crate::classify::{
    catalog::{Catalog, WatchRule},
    reader::{self, Access, Reader, Stat},
    verdict::{self, Verdict},
};

pub mod output;

/// Roots scanned when none are given: every home, `/etc`, the kubelet's
/// pod volumes and Docker/Kubernetes secret mounts.
pub const DEFAULT_ROOTS: &[&str] = &["/root", "/home", "/etc", "/var/lib/kubelet/pods", "/run/secrets"];

/// Directory names never descended into.
/// Version control, package caches and language toolchains: thousands of
/// files, test keys and certificates among them, no live credential.
const PRUNE_NAMES: &[&str] = &[
    ".git", ".hg", ".svn", ".bzr", "node_modules", ".rustup", "__pycache__", ".npm", ".cache", ".pyenv", ".nvm",
    ".rbenv", ".sdkman", "site-packages", "dist-packages", ".m2", ".gradle", ".yarn", ".pnpm-store", ".tox", ".venv",
    ".terraform",
];
/// Deeper than this, no credential tool writes.
const MAX_DEPTH: usize = 16;

pub struct ScanOptions {
    pub roots: Vec<PathBuf>,
    pub max_bytes: u64,
    /// Search files at no catalog path by content.
    pub content: bool,
    /// Walker threads; 0: one per CPU.
    pub threads: usize,
}

impl ScanOptions {
    pub fn new(roots: Vec<PathBuf>, max_bytes: u64) -> Self {
        Self { roots, max_bytes, content: true, threads: 0 }
    }
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
    /// Files looked at and left out, by why: `public_material`,
    /// `no_credential`, `empty`, `binary`, `too_large`, `unreadable`, ...
    pub skipped: BTreeMap<&'static str, u64>,
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

/// What a walker thread tells the caller's thread.
enum Msg {
    /// This many more regular files seen, the last one this.
    Seen(u64, PathBuf),
    Found(Box<Found>),
    Skipped(&'static str, u64),
    Error,
}

/// Progress is sent in batches of this many files: a message per file
/// costs more than the work on most files.
const SEEN_BATCH: u64 = 32;

/// A walker thread's side of the channel: counts batched, flushed on drop.
struct Out {
    tx: mpsc::Sender<Msg>,
    seen: u64,
    skipped: BTreeMap<&'static str, u64>,
}

impl Out {
    fn seen(&mut self, path: &Path) {
        self.seen += 1;
        if self.seen >= SEEN_BATCH {
            let _ = self.tx.send(Msg::Seen(std::mem::take(&mut self.seen), path.to_owned()));
        }
    }

    fn skipped(&mut self, why: &'static str) {
        *self.skipped.entry(why).or_default() += 1;
    }

    fn found(&self, f: Found) {
        let _ = self.tx.send(Msg::Found(Box::new(f)));
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if self.seen > 0 {
            let _ = self.tx.send(Msg::Seen(self.seen, PathBuf::new()));
        }
        for (why, n) in std::mem::take(&mut self.skipped) {
            let _ = self.tx.send(Msg::Skipped(why, n));
        }
    }
}

/// Walks `opts.roots`; `progress` is called for every regular file seen.
pub fn scan(catalog: &Catalog, keyed: &Keyed, opts: &ScanOptions, progress: &mut dyn FnMut(&Path, &ScanReport)) -> ScanReport {
    let mut report = ScanReport::default();
    let host_root = host_root();
    let walk_roots: Vec<PathBuf> = opts
        .roots
        .iter()
        .map(|root| match &host_root {
            Some(h) => h.join(root.strip_prefix("/").unwrap_or(root)),
            None => root.clone(),
        })
        // A missing default root is not an error worth counting.
        .filter(|r| r.symlink_metadata().is_ok())
        .collect();
    // Overlapping roots (a path given twice, a directory inside another):
    // each file is walked once.
    let mut walk_roots = walk_roots;
    walk_roots.sort();
    walk_roots.dedup();
    let walk_roots: Vec<PathBuf> =
        walk_roots.iter().filter(|r| !walk_roots.iter().any(|o| o != *r && r.starts_with(o))).cloned().collect();
    let Some((first, rest)) = walk_roots.split_first() else { return report };
    let mut builder = ignore::WalkBuilder::new(first);
    for r in rest {
        builder.add(r);
    }
    builder
        .standard_filters(false)
        .follow_links(false)
        .max_depth(Some(MAX_DEPTH))
        .threads(opts.threads)
        .filter_entry(|e| !prune(e));
    let walker = builder.build_parallel();
    let ctx = Ctx { catalog, keyed, opts, host_root: host_root.as_deref() };
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut seen = std::collections::HashSet::new();
    std::thread::scope(|s| {
        let ctx = &ctx;
        s.spawn(move || {
            walker.run(|| {
                let mut out = Out { tx: tx.clone(), seen: 0, skipped: BTreeMap::new() };
                let mut reader = Reader::new(ctx.opts.max_bytes);
                Box::new(move |entry| {
                    match entry {
                        Ok(e) => visit(ctx, &mut reader, &e, &mut out),
                        Err(_) => {
                            let _ = out.tx.send(Msg::Error);
                        }
                    }
                    ignore::WalkState::Continue
                })
            });
        });
        for msg in rx {
            match msg {
                Msg::Seen(n, path) => {
                    report.files_seen += n;
                    progress(&path, &report);
                }
                // Overlapping roots (a path given twice): one result per file.
                Msg::Found(f) => {
                    if seen.insert(f.path.clone()) {
                        report.found.push(*f);
                    }
                }
                Msg::Skipped(why, n) => *report.skipped.entry(why).or_default() += n,
                Msg::Error => report.walk_errors += 1,
            }
        }
    });
    report.found.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

struct Ctx<'a> {
    catalog: &'a Catalog,
    keyed: &'a Keyed,
    opts: &'a ScanOptions,
    host_root: Option<&'a Path>,
}

fn visit(ctx: &Ctx<'_>, reader: &mut Reader, entry: &ignore::DirEntry, out: &mut Out) {
    let Some(ft) = entry.file_type() else { return };
    // The path as the host sees it.
    let path = match ctx.host_root {
        Some(h) => Path::new("/").join(entry.path().strip_prefix(h).unwrap_or(entry.path())),
        None => entry.path().to_owned(),
    };
    // Non-UTF-8 names are matched with their bad bytes replaced; the
    // path itself is kept, and printed with those bytes escaped.
    let text = path.to_string_lossy();
    // Trust stores, package trees, OpenSSL's config: never credentials,
    // neither by path nor by content.
    if ft.is_file() && ctx.catalog.excluded(&text) {
        out.seen(&path);
        out.skipped("excluded");
        return;
    }
    let rule = ctx.catalog.match_path(&text);
    if ft.is_symlink() {
        if let Some(rule) = rule {
            special_target(entry.path(), &path, rule, out);
        }
        return;
    }
    if !ft.is_file() {
        return;
    }
    out.seen(&path);
    let mut counted = None;
    if let Some(rule) = rule {
        let pid = if ctx.host_root.is_some() { 1 } else { 0 };
        let access = Access { pid, path: &path, kernel_inode: None, format: rule.format, kind: rule.kind };
        let c = reader.classify(&access, ctx.keyed);
        match verdict::judge(&c.parsed, verdict::broad(rule)) {
            Verdict::Report(parsed) => {
                let found = Found {
                    path,
                    rule: rule.name.to_string(),
                    kind: rule.kind.to_string(),
                    format: rule.format,
                    stat: c.stat,
                    parsed,
                };
                out.found(found);
                return;
            }
            Verdict::Count(why) => counted = Some(why),
        }
    }
    // At no catalog path, or at one without a credential: by content.
    let content = if ctx.opts.content { by_content(ctx, entry.path(), &path) } else { Err("no_credential") };
    match (content, counted) {
        (Ok(found), _) => out.found(found),
        // The catalog's reason is the more precise one.
        (Err(_), Some(why)) | (Err(why), None) => out.skipped(why),
    }
}

/// A symlink at a catalog path to a FIFO, a device or a socket: reported
/// unparsed with what it is (opening it could block or read a device).
fn special_target(real: &Path, path: &Path, rule: &WatchRule, out: &Out) {
    let Ok(meta) = std::fs::metadata(real) else { return };
    if meta.is_file() || meta.is_dir() {
        return; // found where it lives
    }
    let found = Found {
        path: path.to_owned(),
        rule: rule.name.to_string(),
        kind: rule.kind.to_string(),
        format: rule.format,
        stat: Some(Stat::of(&meta)),
        parsed: Parsed::unparsed(Unparsed::Unreadable(reader::not_regular(&meta).into())),
    };
    out.found(found);
}

/// Reads a file (bounded, not when binary) and searches it by content;
/// else why it holds no credential.
fn by_content(ctx: &Ctx<'_>, real: &Path, path: &Path) -> Result<Found, &'static str> {
    let rule = ctx.catalog.content_rule().ok_or("no_credential")?;
    let file = reader::open_plain(real).map_err(|_| "unreadable")?;
    let meta = file.metadata().map_err(|_| "unreadable")?;
    if meta.len() > ctx.opts.max_bytes {
        return Err("too_large");
    }
    let bytes = reader::read_bounded(file, meta.len(), ctx.opts.max_bytes).map_err(|u| u.reason())?;
    let parsed = observer_creds::parse(Format::Content, &bytes, rule.kind, ctx.keyed);
    match verdict::judge(&parsed, true) {
        Verdict::Report(parsed) if !parsed.identities.is_empty() => Ok(Found {
            path: path.to_owned(),
            rule: rule.name.to_string(),
            kind: rule.kind.to_string(),
            format: Format::Content,
            stat: Some(Stat::of(&meta)),
            parsed,
        }),
        Verdict::Report(p) => Err(p.unparsed.as_ref().map_or("no_credential", Unparsed::reason)),
        Verdict::Count(why) => Err(why),
    }
}

/// `/proc/1/root` when we are not in the host init's mount namespace.
fn host_root() -> Option<PathBuf> {
    let init = crate::classify::reader::mount_ns("1")?;
    (Some(init) != crate::classify::reader::mount_ns("self")).then(|| PathBuf::from("/proc/1/root"))
}

fn prune(e: &ignore::DirEntry) -> bool {
    if !e.file_type().is_some_and(|t| t.is_dir()) || e.depth() == 0 {
        return false;
    }
    let name = e.file_name();
    if PRUNE_NAMES.iter().any(|p| name == OsStr::new(p)) {
        return true;
    }
    let parent = e.path().parent().and_then(Path::file_name);
    // ~/.cargo/registry and ~/.cargo/git: crate sources, full of test keys;
    // ~/go/pkg/mod: Go module sources.
    ((name == "registry" || name == "git") && parent == Some(OsStr::new(".cargo")))
        || (name == "mod" && parent == Some(OsStr::new("pkg")))
}

#[cfg(test)]
mod tests {
    use observer_creds::Secret;

    use super::*;

    fn keyed() -> Keyed {
        Keyed::new(Secret::new([1u8; 32]))
    }

    fn run(roots: Vec<PathBuf>) -> ScanReport {
        let catalog = Catalog::builtin().unwrap();
        scan(&catalog, &keyed(), &ScanOptions { threads: 2, ..ScanOptions::new(roots, 1 << 20) }, &mut |_, _| {})
    }

    const CERT: &str = include_str!("../../../observer-creds/tests/corpus/tls/server.crt");
    const KEY: &str = include_str!("../../../observer-creds/tests/corpus/tls/pkcs8-rsa.key");

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
        std::fs::write(home.join("app/server.crt"), CERT).unwrap();
        let catalog = Catalog::builtin().unwrap();
        let mut calls = 0;
        let report = scan(
            &catalog,
            &keyed(),
            &ScanOptions::new(vec![home.to_owned(), home.join("app")], 1 << 20),
            &mut |_, _| calls += 1,
        );
        let mut names: Vec<_> = report.found.iter().map(|f| f.path.file_name().unwrap().to_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(names, [".env", ".netrc"]);
        assert!(calls >= 1, "progress is reported (in batches)");
        let env = report.found.iter().find(|f| f.rule == "dotenv").unwrap();
        assert_eq!(env.parsed.identities[0].kind, "github.pat");
        let st = std::fs::metadata(home.join("app/.env")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(env.kernel_inode().map(|(_, ino)| ino), Some(st.ino()));
        assert_eq!(report.identities(), 2);
        // Placeholder and public material: counted, not listed.
        assert_eq!(report.skipped.get("malformed"), Some(&1), "{:?}", report.skipped);
        assert_eq!(report.skipped.get("public_material"), Some(&1), "{:?}", report.skipped);
    }

    /// Issue 14, item 4: credentials at no catalog path are found by
    /// content, also in a file named as a root; binary files are skipped.
    #[test]
    fn finds_credentials_by_content_anywhere() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("srv/app/conf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("settings.yaml"), "db:\n  password: Zq8-wT4u!r0x\n  url: postgres://app:S3cr3t-Pw9@db:5432/x\n").unwrap();
        std::fs::write(d.join("deploy.key.txt"), format!("notes\n{KEY}")).unwrap();
        std::fs::write(d.join("blob.bin"), b"\x00\x01AKIAIOSFODNN7EXAMPLE").unwrap();
        std::fs::write(d.join("notes.txt"), "nothing to see").unwrap();
        let loose = root.path().join("creds-copy");
        std::fs::write(&loose, "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = 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\n").unwrap();
        let report = run(vec![root.path().join("srv"), loose.clone()]);
        let by_name = |n: &str| report.found.iter().find(|f| f.path.file_name().unwrap() == n).unwrap_or_else(|| panic!("{n}: {report:#?}"));
        let yaml = by_name("settings.yaml");
        assert_eq!((yaml.rule.as_str(), yaml.format), ("content", Format::Content));
        let kinds: Vec<_> = yaml.parsed.identities.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, ["secret.value", "url.login"]);
        assert_eq!(by_name("deploy.key.txt").parsed.identities[0].kind, "tls.private_key");
        let aws = by_name("creds-copy");
        assert_eq!(aws.parsed.identities[0].id, "AKIAIOSFODNN7EXAMPLE");
        assert!(aws.stat.is_some());
        assert_eq!(report.found.len(), 3, "{report:#?}");
        assert_eq!(report.skipped.get("binary"), Some(&1));
        assert!(!format!("{report:?}").contains("S3cr3t"));
    }

    /// Issue 14, item 6: a non-UTF-8 name is scanned (not skipped), and a
    /// credential path that is a symlink to a FIFO is reported unparsed.
    #[test]
    fn odd_names_and_special_files_are_reported() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let odd = root.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.env"));
        std::fs::write(&odd, "API_TOKEN=glpat-SYNTH3TIC0123456789ab\n").unwrap();
        let fifo = root.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&fifo, root.path().join(".netrc")).unwrap();
        let report = run(vec![root.path().to_owned()]);
        let odd_found = report.found.iter().find(|f| f.path == odd).unwrap_or_else(|| panic!("{report:#?}"));
        assert_eq!(odd_found.parsed.identities[0].kind, "gitlab.pat");
        let link = report.found.iter().find(|f| f.path.ends_with(".netrc")).unwrap();
        assert_eq!(link.rule, "netrc");
        assert_eq!(link.parsed.unparsed, Some(Unparsed::Unreadable("not a regular file: a FIFO".into())));
    }
}
