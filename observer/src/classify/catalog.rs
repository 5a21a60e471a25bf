//! The credential catalog: which paths hold credentials, of which kind, in
//! which file format (so which parser of `observer-creds` reads them).
//!
//! Input: the built-in catalog (`builtin.toml`, data in the same shape as
//! the config file's `[[watch]]` entries and `exclude` list) and the
//! config's entries, which extend it. Output: validated [`WatchRule`]s, one
//! per path pattern (`probes::rules` turns the kernel ones into map keys),
//! exclusions, and [`Catalog::match_path`] for userspace matching (scan).
//!
//! Pattern syntax (kept small on purpose, the kernel matches it):
//! - `~/x` — `x` under every user's home (`/root`, `/home/<user>`);
//! - `/x` — an absolute path;
//! - a trailing `/` — everything below that directory;
//! - a trailing `*` — every name that starts with the text before it;
//! - `name` (no `/`) — a file of that name in any directory;
//! - `*suffix` (no `/`) — a file whose name ends with `suffix`, anywhere
//!   (e.g. `*.pem`).
//!
//! `/var/run/...` and `/run/...` are the same directory on every modern
//! distribution; a pattern under either is watched under both.
use std::{fmt, str::FromStr};

use observer_creds::Format;
use serde::Deserialize;

/// Longest pattern (after `~` normalisation) the kernel can match.
pub const MAX_PATTERN_LEN: usize = observer_common::PATH_KEY_LEN - 1;
/// Longest file name or suffix a basename/suffix pattern may hold.
pub const MAX_NAME_PATTERN_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternKind {
    /// The whole path.
    Exact,
    /// A path prefix (directory or name prefix).
    Prefix,
    /// The file name, in any directory.
    Basename,
    /// The end of the file name, in any directory.
    Suffix,
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// Normalised text without the trailing `*`: `~/.ssh/id_`, `/etc/x`.
    pub text: String,
    pub kind: PatternKind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern `{0}` must start with `/` or `~/`")]
    NotAbsolute(String),
    #[error("pattern `{0}` has `*` somewhere other than at the end")]
    InnerWildcard(String),
    #[error("pattern `{0}` is longer than {MAX_PATTERN_LEN} bytes")]
    TooLong(String),
    #[error("pattern `{0}` contains a NUL byte")]
    Nul(String),
    #[error("pattern `{0}` contains `.` or `..` components")]
    DotComponent(String),
    #[error("pattern `{0}`: a name or suffix pattern holds at most {MAX_NAME_PATTERN_LEN} bytes")]
    NameTooLong(String),
    #[error("pattern `{0}`: without a `/`, `*` may only start a suffix pattern (`*.pem`)")]
    BadNameWildcard(String),
}

impl PathPattern {
    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        if raw.is_empty() {
            return Err(PatternError::Empty);
        }
        if raw.contains('\0') {
            return Err(PatternError::Nul(raw.escape_debug().to_string()));
        }
        if !raw.contains('/') {
            return Self::parse_name(raw);
        }
        if !(raw.starts_with('/') || raw.starts_with("~/")) {
            return Err(PatternError::NotAbsolute(raw.to_owned()));
        }
        if raw.split('/').any(|c| c == "." || c == "..") {
            return Err(PatternError::DotComponent(raw.to_owned()));
        }
        let (text, kind) = match raw.strip_suffix('*') {
            Some(head) => (head, PatternKind::Prefix),
            None if raw.ends_with('/') => (raw, PatternKind::Prefix),
            None => (raw, PatternKind::Exact),
        };
        if text.contains('*') {
            return Err(PatternError::InnerWildcard(raw.to_owned()));
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(raw.to_owned()));
        }
        Ok(Self { text: text.to_owned(), kind })
    }

    /// `name` or `*suffix`: matched on the file name wherever it is.
    fn parse_name(raw: &str) -> Result<Self, PatternError> {
        let (text, kind) = match raw.strip_prefix('*') {
            Some(suffix) => (suffix, PatternKind::Suffix),
            None => (raw, PatternKind::Basename),
        };
        if text.is_empty() || text.contains('*') {
            return Err(PatternError::BadNameWildcard(raw.to_owned()));
        }
        if kind == PatternKind::Basename && (text == "." || text == "..") {
            return Err(PatternError::DotComponent(raw.to_owned()));
        }
        if text.len() > MAX_NAME_PATTERN_LEN {
            return Err(PatternError::NameTooLong(raw.to_owned()));
        }
        Ok(Self { text: text.to_owned(), kind })
    }

    /// This pattern and its `/run` <-> `/var/run` twin, if any.
    pub fn spellings(&self) -> Vec<PathPattern> {
        let mut out = vec![self.clone()];
        let twin = if let Some(rest) = self.text.strip_prefix("/var/run/") {
            Some(format!("/run/{rest}"))
        } else {
            self.text.strip_prefix("/run/").map(|rest| format!("/var/run/{rest}"))
        };
        if let Some(text) = twin.filter(|t| t.len() <= MAX_PATTERN_LEN) {
            out.push(PathPattern { text, kind: self.kind.clone() });
        }
        out
    }

    /// The length of the spelling of this pattern (itself or its `/run` <->
    /// `/var/run` twin, as [`PathPattern::spellings`] lists them) that
    /// matches `normalised`, without building the twin: this runs for every
    /// event the agent confirms.
    pub fn matching_spelling_len(&self, normalised: &str) -> Option<usize> {
        if self.matches(normalised) {
            return Some(self.text.len());
        }
        if !matches!(self.kind, PatternKind::Exact | PatternKind::Prefix) {
            return None; // name patterns hold no directory to respell
        }
        let (rest, twin_head, path_head) = if let Some(rest) = self.text.strip_prefix("/var/run/") {
            (rest, "/run/", "/run/")
        } else if let Some(rest) = self.text.strip_prefix("/run/") {
            (rest, "/var/run/", "/var/run/")
        } else {
            return None;
        };
        let twin_len = twin_head.len() + rest.len();
        if twin_len > MAX_PATTERN_LEN {
            return None;
        }
        let tail = normalised.strip_prefix(path_head)?;
        let hit = match self.kind {
            PatternKind::Exact => tail == rest,
            _ => tail.starts_with(rest),
        };
        hit.then_some(twin_len)
    }

    /// A necessary condition of [`PathPattern::matching_spelling_len`]
    /// finding a spelling, one byte compared: a whole-path pattern and its
    /// `/run` twin start as the path does (both with `/`, or the pattern
    /// with `~`), a name pattern ends as it does. Every path the agent
    /// confirms is checked against every exclusion; most fail here.
    pub fn may_match(&self, normalised: &str) -> bool {
        let (t, n) = (self.text.as_bytes(), normalised.as_bytes());
        match self.kind {
            PatternKind::Exact | PatternKind::Prefix => t.first() == n.first(),
            PatternKind::Basename | PatternKind::Suffix => t.last() == n.last(),
        }
    }

    /// Whether `normalised` (a path with its home prefix replaced by `~`)
    /// matches; the kernel's semantics, for scan and for confirming the
    /// kernel's candidates.
    pub fn matches(&self, normalised: &str) -> bool {
        if self.text.is_empty() {
            return false; // the content rule's: no path
        }
        let name = || normalised.rsplit('/').next().unwrap_or(normalised);
        match self.kind {
            PatternKind::Exact => normalised == self.text,
            PatternKind::Prefix => normalised.starts_with(&self.text),
            PatternKind::Basename => normalised.ends_with(&self.text) && name() == self.text,
            PatternKind::Suffix => normalised.ends_with(&self.text) && name().ends_with(&self.text),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PatternKind::Prefix if !self.text.ends_with('/') => write!(f, "{}*", self.text),
            PatternKind::Suffix => write!(f, "*{}", self.text),
            _ => f.write_str(&self.text),
        }
    }
}

/// A watched path and what credential kind it holds.
#[derive(Debug, Clone)]
pub struct WatchRule {
    /// Stable id; the kernel reports it with each match. 0 is never used.
    pub id: u32,
    /// Short name, e.g. `aws-shared-credentials`. Several rules (one per
    /// pattern of a catalog entry) share a name.
    pub name: &'static str,
    /// `nhi.kind` of what the file holds, when its parser does not say.
    pub kind: &'static str,
    pub pattern: PathPattern,
    /// Which parser reads the file.
    pub format: Format,
    /// Whether the kernel filter gets this rule (false: scan only).
    pub kernel: bool,
}

/// One catalog entry: the shape of `[[watch]]` in the config file and in
/// the built-in catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEntry {
    /// Short name, reported as `nhi.rule`.
    pub name: String,
    /// Credential kind, reported as `nhi.kind` when the file's parser does
    /// not name a more precise one. Default: `unknown`.
    pub kind: Option<String>,
    /// Path pattern: `~/x` (every home), `/abs/path`, `dir/` (everything
    /// below), `prefix*`, `name` (that file name in any directory),
    /// `*suffix` (file names ending so, anywhere).
    pub path: Option<String>,
    /// More path patterns for the same entry.
    #[serde(default)]
    pub paths: Vec<String>,
    /// File format, i.e. which parser derives identities: `aws-ini`,
    /// `gcp-json`, `kubeconfig`, `jwt`, `ssh-private-key`, `tls`, `token`,
    /// ... (README lists them). Default: `auto` (guess from the content).
    pub format: Option<String>,
    /// Also filter on it in the kernel. Default: true. `false` makes a
    /// scan-only entry (for patterns too broad to watch every open of).
    pub kernel: Option<bool>,
}

/// The built-in catalog file's shape (and the catalog part of the config).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    watch: Vec<WatchEntry>,
}

static BUILTIN: &str = include_str!("builtin.toml");

/// The name of the built-in rule of files recognised by content
/// (`nhi.rule`), which no configured rule may take.
pub const CONTENT_RULE: &str = "content";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("watch rule `{name}`: {source}")]
    Pattern { name: String, source: PatternError },
    #[error("watch rule `{name}`: {source}")]
    Format { name: String, source: observer_creds::UnknownFormat },
    #[error("watch rule `{0}` has neither `path` nor `paths`")]
    NoPath(String),
    #[error("watch rule `{name}`: path `{path}` names every file, not credential files: give the files' own paths")]
    Everything { name: String, path: String },
    #[error("watch rule name `{0}` is used twice")]
    DuplicateName(String),
    #[error("exclude pattern: {0}")]
    Exclude(PatternError),
    #[error("built-in catalog: {0}")]
    Builtin(String),
}

/// Watch rules and exclusions.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub rules: Vec<WatchRule>,
    /// Paths never treated as credentials (trust stores). Private, so that
    /// [`Catalog::exclude_ends`] always describes them.
    exclude: Vec<PathPattern>,
    /// The two bytes each exclusion's spellings start with (exact and
    /// prefix patterns) or end with (name and suffix ones): a path whose
    /// two first and two last bytes are not among them is not excluded,
    /// without a look at each of the ~20 patterns (most confirmed paths).
    exclude_ends: PairSets,
}

/// Two sets of byte pairs (hashed to 4,096 bits each): what a path's first
/// two bytes, and its last two, may be for some pattern to match it.
#[derive(Debug, Clone)]
struct PairSets {
    first: Box<[u64; 64]>,
    last: Box<[u64; 64]>,
}

impl Default for PairSets {
    fn default() -> Self {
        Self { first: Box::new([0; 64]), last: Box::new([0; 64]) }
    }
}

impl PairSets {
    /// The bit of a pair: its outer byte (first or last), then the one
    /// next to it, 0 past the end of a one-byte text.
    fn bit(outer: u8, inner: u8) -> usize {
        (usize::from(outer) << 4 ^ usize::from(inner)) & 4095
    }

    fn set(set: &mut [u64; 64], outer: u8, inner: u8) {
        let b = Self::bit(outer, inner);
        set[b / 64] |= 1 << (b % 64);
    }

    fn has(set: &[u64; 64], outer: u8, inner: u8) -> bool {
        let b = Self::bit(outer, inner);
        set[b / 64] & (1 << (b % 64)) != 0
    }

    /// Adds every spelling of a pattern. A one-byte spelling matches a
    /// path by that byte alone, so it adds every pair it starts (or
    /// ends); an empty one matches nothing.
    fn add(&mut self, p: &PathPattern) {
        for spelling in p.spellings() {
            let (set, bytes): (&mut [u64; 64], Vec<u8>) = match p.kind {
                PatternKind::Exact | PatternKind::Prefix => (&mut self.first, spelling.text.bytes().take(2).collect()),
                PatternKind::Basename | PatternKind::Suffix => (&mut self.last, spelling.text.bytes().rev().take(2).collect()),
            };
            match bytes[..] {
                [outer, inner] => Self::set(set, outer, inner),
                [outer] => (0..=u8::MAX).for_each(|inner| Self::set(set, outer, inner)),
                _ => {}
            }
        }
    }

    /// False only when no added pattern matches `normalised`.
    fn may_match(&self, normalised: &str) -> bool {
        let b = normalised.as_bytes();
        match *b {
            [] => false,
            [only] => Self::has(&self.first, only, 0) || Self::has(&self.last, only, 0),
            [a, b2, ..] => {
                let [.., y, z] = *b else { return true };
                Self::has(&self.first, a, b2) || Self::has(&self.last, z, y)
            }
        }
    }
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(BUILTIN).map_err(|e| CatalogError::Builtin(e.to_string()))?;
        let mut c = Self::default();
        c.extend(file.watch, &file.exclude)?;
        // Files the at-rest scan recognised by content, at no catalog
        // path: watched by inode only (the pattern matches no path).
        let id = u32::try_from(c.rules.len() + 1).unwrap_or(u32::MAX);
        c.rules.push(WatchRule {
            id,
            name: CONTENT_RULE,
            kind: "unknown",
            pattern: PathPattern { text: String::new(), kind: PatternKind::Basename },
            format: Format::Content,
            kernel: false,
        });
        Ok(c)
    }

    /// The rule of files found by content ([`CONTENT_RULE`]).
    pub fn content_rule(&self) -> Option<&WatchRule> {
        self.rules.iter().find(|r| r.name == CONTENT_RULE)
    }

    /// Adds entries and exclusions (from the config file). Rule ids go on
    /// from the last one; names must be new.
    pub fn extend(&mut self, entries: Vec<WatchEntry>, exclude: &[String]) -> Result<(), CatalogError> {
        for raw in exclude {
            self.add_exclusion(PathPattern::parse(raw).map_err(CatalogError::Exclude)?);
        }
        for e in entries {
            if e.name == CONTENT_RULE || self.rules.iter().any(|r| *r.name == *e.name) {
                return Err(CatalogError::DuplicateName(e.name));
            }
            let format = match &e.format {
                Some(f) => Format::from_str(f).map_err(|source| CatalogError::Format { name: e.name.clone(), source })?,
                None => Format::Auto,
            };
            let raws: Vec<&String> = e.path.iter().chain(e.paths.iter()).collect();
            if raws.is_empty() {
                return Err(CatalogError::NoPath(e.name));
            }
            for raw in raws {
                if matches!(raw.trim().trim_end_matches('/'), "" | "/*" | "/**" | "*" | "**" | "/**/*" | "**/*") {
                    return Err(CatalogError::Everything { name: e.name.clone(), path: raw.clone() });
                }
                let pattern =
                    PathPattern::parse(raw).map_err(|source| CatalogError::Pattern { name: e.name.clone(), source })?;
                let id = u32::try_from(self.rules.len() + 1).unwrap_or(u32::MAX);
                self.rules.push(WatchRule {
                    id,
                    name: crate::model::permanent(&e.name),
                    kind: crate::model::permanent(e.kind.as_deref().unwrap_or("unknown")),
                    pattern,
                    format,
                    kernel: e.kernel.unwrap_or(true),
                });
            }
        }
        Ok(())
    }

    pub fn rule(&self, id: u32) -> Option<&WatchRule> {
        // Ids are positions + 1.
        usize::try_from(id).ok().and_then(|i| i.checked_sub(1)).and_then(|i| self.rules.get(i)).filter(|r| r.id == id)
    }

    /// The rules the kernel filter is built from.
    pub fn kernel_rules(&self) -> Vec<WatchRule> {
        self.rules.iter().filter(|r| r.kernel).cloned().collect()
    }

    /// Excludes one file by its exact path (never read as a pattern: a
    /// path may hold `*` or end in `/`).
    pub fn exclude_exact(&mut self, path: &str) {
        self.add_exclusion(PathPattern { text: path.to_owned(), kind: PatternKind::Exact });
    }

    fn add_exclusion(&mut self, p: PathPattern) {
        self.exclude_ends.add(&p);
        self.exclude.push(p);
    }

    /// The exclusions, in the order they were added.
    pub fn exclusions(&self) -> &[PathPattern] {
        &self.exclude
    }

    /// Whether `path` (absolute, as on the host or in the process's mount
    /// namespace) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        with_normalised_home(path, |n| {
            self.exclude_ends.may_match(n) && self.exclude.iter().any(|p| p.may_match(n) && p.matching_spelling_len(n).is_some())
        })
    }

    /// The rule for `path`, as the kernel would pick it: an exact path,
    /// else the longest prefix, else a file name, else the longest suffix
    /// (ties: the later rule, so configuration wins over built-ins); None
    /// when excluded or unmatched.
    pub fn match_path(&self, path: &str) -> Option<&WatchRule> {
        self.match_path_where(path, |_| true)
    }

    /// [`Catalog::match_path`] among the rules `keep` accepts.
    pub fn match_path_where(&self, path: &str, keep: impl Fn(&WatchRule) -> bool) -> Option<&WatchRule> {
        if self.excluded(path) {
            return None;
        }
        let n = normalise_home(path);
        let class = |p: &PathPattern| -> u8 {
            match p.kind {
                PatternKind::Exact => 3,
                PatternKind::Prefix => 2,
                PatternKind::Basename => 1,
                PatternKind::Suffix => 0,
            }
        };
        let mut best: Option<(&WatchRule, (u8, usize))> = None;
        for rule in self.rules.iter().filter(|r| keep(r)) {
            if let Some(len) = rule.pattern.matching_spelling_len(&n) {
                let r = (class(&rule.pattern), len);
                // Ties go to the later rule: configuration extends the
                // built-in list, and a user's own rule is the intent.
                if best.is_none_or(|(_, b)| r >= b) {
                    best = Some((rule, r));
                }
            }
        }
        if best.is_none() && !n.starts_with('~') {
            // Homes outside /root and /home (service users, a temporary
            // HOME): home-relative rules as path suffixes, so
            // `/var/lib/postgresql/.pgpass` is `~/.pgpass`.
            best = home_suffixes(path)
                .find_map(|tail| {
                    self.rules
                        .iter()
                        .filter(|r| keep(r) && r.pattern.text.starts_with("~/"))
                        .filter_map(|rule| rule.pattern.matching_spelling_len(&tail).map(|len| (rule, (class(&rule.pattern), len))))
                        .max_by_key(|&(_, r)| r)
                });
        }
        best.map(|(r, _)| r)
    }
}

/// A kernel rule for tests: id `id`, name `r<id>`, kind `test`.
#[cfg(test)]
pub fn test_rule(id: u32, pattern: &str) -> WatchRule {
    WatchRule {
        id,
        name: crate::model::permanent(&format!("r{id}")),
        kind: "test",
        pattern: PathPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")),
        format: observer_creds::Format::Auto,
        kernel: true,
    }
}

/// The built-in watch list. Ids are positions + 1 and part of the output
/// contract of a given version only (records carry the rule name too).
#[cfg(test)]
pub fn builtin_rules() -> Vec<WatchRule> {
    Catalog::builtin().map(|c| c.rules).unwrap_or_else(|e| panic!("built-in catalog: {e}"))
}

/// `path` seen from each directory it passes through as a home, nearest
/// the root first: `/var/lib/pg/.pgpass` gives `~/lib/pg/.pgpass`,
/// `~/pg/.pgpass`, `~/.pgpass`.
pub fn home_suffixes(path: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = path.as_bytes();
    (1..bytes.len()).filter(move |&i| bytes[i] == b'/').map(move |i| format!("~{}", &path[i..]))
}

/// Replaces a leading `/root` or `/home/<user>` by `~`, as the kernel does
/// (`probes/files.rs` in observer-ebpf).
pub fn normalise_home(path: &str) -> std::borrow::Cow<'_, str> {
    match home_tail(path) {
        Some(tail) => format!("~{tail}").into(),
        None => path.into(),
    }
}

/// What follows the home directory that [`normalise_home`] replaces by
/// `~` (from its `/`), or `None` when `path` is not in a home.
fn home_tail(path: &str) -> Option<&str> {
    if path.starts_with("/root/") {
        return Some(&path["/root".len()..]);
    }
    let after = path.strip_prefix("/home/")?;
    // A byte search: `str::find` set up a pattern searcher per event.
    let slash = after.bytes().position(|c| c == b'/')?;
    (slash > 0 && slash <= 64).then(|| &after[slash..])
}

/// Calls `f` with [`normalise_home`]`(path)`, made on the stack when it
/// fits (this runs for every event the agent confirms).
fn with_normalised_home<R>(path: &str, f: impl FnOnce(&str) -> R) -> R {
    let Some(tail) = home_tail(path) else { return f(path) };
    // Most paths fit 256 bytes (zeroing a larger buffer cost as much as
    // the rest of this); a longer one takes the allocation below.
    let mut buf = [0u8; 256];
    let n = tail.len() + 1;
    if n > buf.len() {
        return f(&normalise_home(path));
    }
    buf[0] = b'~';
    buf[1..n].copy_from_slice(tail.as_bytes());
    // SAFETY: `~` and then the bytes of a `str` (`tail`): UTF-8, with no
    // validation pass (one per confirmed event).
    f(unsafe { std::str::from_utf8_unchecked(&buf[..n]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allocation-free matcher agrees with matching every spelling.
    #[test]
    fn matching_spelling_len_agrees_with_spellings() {
        let patterns = ["/var/run/secrets/", "/run/secrets/token", "/var/run/a", "/run/", "~/.kube/config", "token", "*.pem", "/etc/x/"];
        let paths = [
            "/run/secrets/token",
            "/var/run/secrets/token",
            "/var/run/a",
            "/run/a",
            "/run/x/y.pem",
            "~/.kube/config",
            "/run/secrets/",
            "/var/run/",
            "/etc/x/y",
            "/var/runx/a",
        ];
        for raw in patterns {
            let p = PathPattern::parse(raw).unwrap();
            for path in paths {
                let slow = p.spellings().iter().filter(|s| s.matches(path)).map(|s| s.text.len()).max();
                assert_eq!(p.matching_spelling_len(path), slow, "{raw} on {path}");
            }
        }
    }

    /// The one-byte filter never turns a match away: every pattern of
    /// these and of the built-in exclusions, on paths that each of them
    /// matches and on near misses.
    #[test]
    fn may_match_never_rejects_a_match() {
        let mut patterns: Vec<PathPattern> = ["/var/run/secrets/", "/run/secrets/token", "/var/run/a", "/run/", "~/.kube/config", "token", "*.pem", "/etc/x/", "~/.ssh/id_*"]
            .iter()
            .map(|p| PathPattern::parse(p).unwrap())
            .collect();
        patterns.extend(Catalog::builtin().unwrap().exclusions().iter().cloned());
        let mut paths: Vec<String> = ["/run/secrets/token", "/var/run/secrets/token", "/var/run/a", "/run/a", "/run/x/y.pem", "~/.kube/config", "/run/secrets/", "/var/run/", "/etc/x/y", "~/a/token", "/", ""]
            .iter()
            .map(|p| p.to_string())
            .collect();
        for p in &patterns {
            for s in p.spellings() {
                paths.extend([s.text.clone(), format!("{}x", s.text), format!("/a/{}", s.text), format!("~/{}", s.text)]);
            }
        }
        let mut matched = 0;
        for p in &patterns {
            for path in &paths {
                if p.matching_spelling_len(path).is_some() {
                    matched += 1;
                    assert!(p.may_match(path), "{p} on {path}");
                }
            }
        }
        assert!(matched > patterns.len(), "the paths match the patterns: {matched}");
        // The catalog's pairs pass every path a pattern matches, and stop
        // the common credential paths.
        let mut ends = PairSets::default();
        for p in &patterns {
            ends.add(p);
        }
        paths.extend(["/".into(), "t".into(), "m".into(), "/r".into(), "x.pem".into()]);
        for path in &paths {
            if patterns.iter().any(|p| p.matching_spelling_len(path).is_some()) {
                assert!(ends.may_match(path), "{path}");
            }
        }
        let mut builtin = PairSets::default();
        for p in Catalog::builtin().unwrap().exclusions() {
            builtin.add(p);
        }
        for path in ["~/.aws/credentials", "~/.ssh/id_ed25519", "/var/run/secrets/kubernetes.io/serviceaccount/token"] {
            assert!(!builtin.may_match(path), "{path}");
        }
        assert!(builtin.may_match("/etc/ssl/certs/x.pem") && builtin.may_match("~/x/ca.crt"));
    }

    #[test]
    fn catalog_matches_paths_like_the_kernel_and_skips_trust_stores() {
        let c = Catalog::builtin().unwrap();
        let name = |p: &str| c.match_path(p).map(|r| r.name);
        assert_eq!(name("/root/.aws/credentials"), Some("aws-shared-credentials"));
        assert_eq!(name("/home/alice/.ssh/id_ed25519"), Some("ssh-private-key"));
        assert_eq!(name("/srv/app/.env"), Some("dotenv"));
        assert_eq!(name("/etc/nginx/tls/server.key"), Some("tls-key-material"));
        // Exact beats suffix: a kubeconfig under /etc/kubernetes is not TLS.
        assert_eq!(name("/etc/kubernetes/admin.conf"), Some("kubeconfig"));
        assert_eq!(name("/run/secrets/kubernetes.io/serviceaccount/token"), Some("k8s-service-account-token"));
        assert_eq!(name("/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api-access-x/token"), Some("token-file"));
        assert_eq!(name("/etc/ssl/certs/ca-certificates.crt"), None);
        assert_eq!(name("/usr/lib/python3/dist-packages/certifi/cacert.pem"), None);
        assert_eq!(name("/etc/passwd"), None);
        let r = c.match_path("/home/bob/.aws/config").unwrap();
        assert_eq!((r.format, r.kernel), (Format::AwsIni, true));
        assert!(!c.match_path("/x/token").unwrap().kernel);
        assert!(c.kernel_rules().iter().all(|r| r.kernel));
        assert_eq!(c.rule(r.id).map(|x| x.id), Some(r.id));
        assert!(c.rule(0).is_none() && c.rule(100_000).is_none());
    }

    #[test]
    fn config_entries_extend_the_catalog() {
        let mut c = Catalog::builtin().unwrap();
        let n = c.rules.len();
        let entry = |name: &str, path: Option<&str>, format: Option<&str>| WatchEntry {
            name: name.into(),
            kind: None,
            path: path.map(Into::into),
            paths: vec![],
            format: format.map(Into::into),
            kernel: None,
        };
        c.extend(vec![entry("vault2", Some("/etc/vault/token"), Some("token"))], &["/srv/public/".into()]).unwrap();
        assert_eq!(c.rules.len(), n + 1);
        assert_eq!(c.match_path("/etc/vault/token").map(|r| (r.id, r.format)), Some((u32::try_from(n + 1).unwrap(), Format::Token)));
        assert!(c.match_path("/srv/public/site.key").is_none());
        assert!(matches!(c.extend(vec![entry("x", None, None)], &[]), Err(CatalogError::NoPath(_))));
        assert!(matches!(c.extend(vec![entry("y", Some("/y"), Some("yaml"))], &[]), Err(CatalogError::Format { .. })));
        assert!(matches!(c.extend(vec![entry("npmrc", Some("/z"), None)], &[]), Err(CatalogError::DuplicateName(_))));
        // A rule that names every file would read the whole machine.
        for everything in ["/", "/*", "/**", "*"] {
            assert!(
                matches!(c.extend(vec![entry("all", Some(everything), None)], &[]), Err(CatalogError::Everything { .. })),
                "`{everything}` accepted"
            );
        }
    }

    #[test]
    fn builtin_rules_parse_and_have_unique_ids() {
        let rules = builtin_rules();
        let mut ids: Vec<_> = rules.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), rules.len());
        assert!(ids.iter().all(|&i| i != 0));
    }

    #[test]
    fn pattern_syntax() {
        let p = PathPattern::parse("~/.ssh/id_*").unwrap();
        assert_eq!(p, PathPattern { text: "~/.ssh/id_".into(), kind: PatternKind::Prefix });
        assert!(p.matches("~/.ssh/id_ed25519"));
        assert!(!p.matches("~/.ssh/known_hosts"));
        let d = PathPattern::parse("/etc/kubernetes/pki/").unwrap();
        assert_eq!(d.kind, PatternKind::Prefix);
        assert_eq!(PathPattern::parse("~/.aws/credentials").unwrap().kind, PatternKind::Exact);
        assert_eq!(PathPattern::parse("").unwrap_err(), PatternError::Empty);
        assert!(matches!(PathPattern::parse("aws/creds"), Err(PatternError::NotAbsolute(_))));
        let b = PathPattern::parse(".git-credentials").unwrap();
        assert_eq!(b.kind, PatternKind::Basename);
        assert!(b.matches("~/.git-credentials") && b.matches("/srv/app/.git-credentials"));
        assert!(!b.matches("/srv/app/.git-credentials.bak"));
        let x = PathPattern::parse("*.pem").unwrap();
        assert_eq!((x.kind.clone(), x.text.as_str()), (PatternKind::Suffix, ".pem"));
        assert!(x.matches("/etc/ssl/private/server.pem") && !x.matches("/etc/ssl/pem/readme"));
        assert_eq!(x.to_string(), "*.pem");
        assert!(matches!(PathPattern::parse("*"), Err(PatternError::BadNameWildcard(_))));
        assert!(matches!(PathPattern::parse("id_*"), Err(PatternError::BadNameWildcard(_))));
        assert!(matches!(PathPattern::parse(".."), Err(PatternError::DotComponent(_))));
        assert!(matches!(PathPattern::parse(&"n".repeat(64)), Err(PatternError::NameTooLong(_))));
        assert!(matches!(PathPattern::parse("/a/*/b"), Err(PatternError::InnerWildcard(_))));
        assert!(matches!(PathPattern::parse("/a/../b"), Err(PatternError::DotComponent(_))));
        assert!(matches!(PathPattern::parse(&format!("/{}", "a".repeat(300))), Err(PatternError::TooLong(_))));
    }

    #[test]
    fn run_and_var_run_are_twins() {
        let p = PathPattern::parse("/var/run/secrets/x/token").unwrap();
        let texts: Vec<_> = p.spellings().into_iter().map(|p| p.text).collect();
        assert_eq!(texts, ["/var/run/secrets/x/token", "/run/secrets/x/token"]);
        let q = PathPattern::parse("/run/a").unwrap();
        assert_eq!(q.spellings()[1].text, "/var/run/a");
    }

    /// Guards issue 14 item 1: homes outside /root and /home (service
    /// users, a CI runner's temporary HOME) match home-relative rules as
    /// path suffixes; paths under standard homes and other rules unchanged.
    #[test]
    fn home_relative_rules_match_as_path_suffixes() {
        let c = Catalog::builtin().unwrap();
        let name = |p: &str| c.match_path(p).map(|r| r.name);
        assert_eq!(name("/var/lib/postgresql/.pgpass"), name("/root/.pgpass"));
        assert!(name("/var/lib/postgresql/.pgpass").is_some());
        assert_eq!(name("/var/lib/jenkins/.aws/credentials"), Some("aws-shared-credentials"));
        assert_eq!(name("/tmp/ci-home/x/.kube/config"), name("/root/.kube/config"));
        assert_eq!(name("/srv/build/.ssh/id_ed25519"), Some("ssh-private-key"));
        assert_eq!(name("/var/lib/app/credentials"), None, "a bare name is not `~/.aws/credentials`");
        assert_eq!(name("/var/lib/app/.aws/credentials.bak"), None);
        let tails: Vec<_> = home_suffixes("/var/lib/pg/.pgpass").collect();
        assert_eq!(tails, ["~/lib/pg/.pgpass", "~/pg/.pgpass", "~/.pgpass"]);
    }

    #[test]
    fn home_normalisation_matches_the_kernel_rules() {
        assert_eq!(normalise_home("/root/.aws/credentials"), "~/.aws/credentials");
        assert_eq!(normalise_home("/home/alice/.kube/config"), "~/.kube/config");
        assert_eq!(normalise_home("/home//x"), "/home//x");
        assert_eq!(normalise_home("/etc/passwd"), "/etc/passwd");
        assert_eq!(normalise_home("/rootfs/x"), "/rootfs/x");
        // Made on the stack, or allocated when longer than its buffer: the
        // same text either way.
        let long = format!("/home/alice/{}/.kube/config", "d".repeat(300));
        for path in ["/home/alice/.kube/config", "/root/x", "/home/bob", "/home/é/x/é", long.as_str()] {
            assert_eq!(with_normalised_home(path, str::to_owned), normalise_home(path), "{path}");
        }
        let c = Catalog::builtin().unwrap();
        assert!(c.excluded(&format!("/home/alice/{}/ca.crt", "d".repeat(300))));
        assert!(!c.excluded(&format!("/home/alice/{}/creds", "d".repeat(300))));
    }
}
