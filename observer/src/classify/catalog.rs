//! The credential catalog's path side: which paths are watched, and as what.
//!
//! Input: built-in rules (and, later, config). Output: validated
//! [`WatchRule`]s; `probes::rules` turns their patterns into kernel map keys.
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
use std::fmt;

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

    /// Whether `normalised` (a path with its home prefix replaced by `~`)
    /// matches; the kernel's semantics, for confirming its candidates.
    pub fn matches(&self, normalised: &str) -> bool {
        let name = normalised.rsplit('/').next().unwrap_or(normalised);
        match self.kind {
            PatternKind::Exact => normalised == self.text,
            PatternKind::Prefix => normalised.starts_with(&self.text),
            PatternKind::Basename => name == self.text,
            PatternKind::Suffix => name.ends_with(&self.text),
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
    /// Short name, e.g. `aws-shared-credentials`.
    pub name: String,
    /// `nhi.kind` of what the file holds.
    pub kind: String,
    pub pattern: PathPattern,
}

const BUILTIN: &[(&str, &str, &str)] = &[
    ("aws-shared-credentials", "aws.access_key", "~/.aws/credentials"),
    ("aws-config", "aws.config", "~/.aws/config"),
    ("kubeconfig", "kubernetes.kubeconfig", "~/.kube/config"),
    ("ssh-private-key", "ssh.private_key", "~/.ssh/id_*"),
    (
        "k8s-service-account-token",
        "kubernetes.service_account_token",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ),
];

/// The built-in watch list. Ids are positions + 1 and part of the output
/// contract of a given version only (records carry the rule name too).
pub fn builtin_rules() -> Vec<WatchRule> {
    BUILTIN
        .iter()
        .enumerate()
        .map(|(i, (name, kind, pattern))| WatchRule {
            id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            name: (*name).to_owned(),
            kind: (*kind).to_owned(),
            pattern: PathPattern::parse(pattern).unwrap_or_else(|e| panic!("built-in pattern: {e}")),
        })
        .collect()
}

/// Replaces a leading `/root` or `/home/<user>` by `~`, as the kernel does
/// (`probes/files.rs` in observer-ebpf).
pub fn normalise_home(path: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = path.strip_prefix("/root/") {
        return format!("~/{rest}").into();
    }
    if let Some(after) = path.strip_prefix("/home/")
        && let Some(slash) = after.find('/')
        && slash > 0
        && slash <= 64
    {
        return format!("~{}", &after[slash..]).into();
    }
    path.into()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn home_normalisation_matches_the_kernel_rules() {
        assert_eq!(normalise_home("/root/.aws/credentials"), "~/.aws/credentials");
        assert_eq!(normalise_home("/home/alice/.kube/config"), "~/.kube/config");
        assert_eq!(normalise_home("/home//x"), "/home//x");
        assert_eq!(normalise_home("/etc/passwd"), "/etc/passwd");
        assert_eq!(normalise_home("/rootfs/x"), "/rootfs/x");
    }
}
