//! Inventory: the operator's list of declared credentials (YAML), against
//! which the findings engine judges what it saw (shadow, unexpected
//! consumer or destination).
//!
//! Input: a YAML file with a top-level `credentials:` list (see
//! `deploy/inventory.example.yaml`). Output: a validated [`Inventory`]
//! whose entries answer "does this entry declare that credential?",
//! "is this workload an expected consumer?", "is this server an expected
//! destination?".
//!
//! Invariants: unknown keys are refused (a typo never silently widens or
//! narrows what is declared); every error carries the line it was found
//! on; path patterns are compiled once, at load.
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("inventory {path}, line {line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error("inventory {path}: {reason}")]
    InvalidNoLine { path: PathBuf, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    credentials: Vec<RawEntry>,
}

/// One declared credential. Named by `id` (an `nhi.id`), or by `kind`
/// plus a `path` glob (`/etc/app/*.pem`, `/home/*/.aws/credentials`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub path: Option<String>,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    /// When the credential expires (RFC 3339 or `YYYY-MM-DD`).
    pub expires: Option<String>,
    pub consumers: Vec<Consumer>,
    pub destinations: Vec<String>,
    path_glob: Option<GlobMatcher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: Option<String>,
    kind: Option<String>,
    path: Option<String>,
    owner: Option<String>,
    purpose: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    consumers: Vec<Consumer>,
    #[serde(default)]
    destinations: Vec<String>,
}

impl TryFrom<RawEntry> for Entry {
    type Error = String;
    fn try_from(r: RawEntry) -> Result<Self, String> {
        let path_glob = match (&r.id, &r.kind, &r.path) {
            (Some(id), _, _) if id.trim().is_empty() => return Err("`id` is empty".into()),
            (Some(_), _, None) => None,
            (Some(_), _, Some(p)) | (None, Some(_), Some(p)) => Some(compile(p)?),
            (None, None, _) | (None, Some(_), None) => {
                return Err("an entry needs `id`, or `kind` and `path`".into());
            }
        };
        if let Some(e) = &r.expires {
            parse_expiry(e).ok_or_else(|| format!("`expires: {e}`: not an RFC 3339 time or YYYY-MM-DD date"))?;
        }
        for d in &r.destinations {
            let bare = d.strip_prefix("*.").unwrap_or(d);
            if bare.is_empty() || bare.contains('*') || bare.contains('/') || bare.contains(':') {
                return Err(format!("destination {d:?}: a server name, optionally starting with `*.`"));
            }
        }
        for c in &r.consumers {
            if c.is_empty() {
                return Err("a consumer needs at least one of executable, systemd_unit, container_image, container_id, k8s_namespace, k8s_service_account".into());
            }
        }
        Ok(Entry {
            id: r.id,
            kind: r.kind,
            path: r.path,
            owner: r.owner,
            purpose: r.purpose,
            expires: r.expires,
            consumers: r.consumers,
            destinations: r.destinations,
            path_glob,
        })
    }
}

fn compile(pattern: &str) -> Result<GlobMatcher, String> {
    if !pattern.starts_with('/') {
        return Err(format!("path {pattern:?}: must be absolute"));
    }
    Glob::new(pattern).map(|g| g.compile_matcher()).map_err(|e| format!("path {pattern:?}: {e}"))
}

/// Expiry as a time: RFC 3339, or a date (midnight UTC).
pub fn parse_expiry(s: &str) -> Option<std::time::SystemTime> {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.into());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|d| d.midnight().assume_utc().into())
}

/// An expected consumer: every field given must match the workload.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Executable path, or a glob of it (`/usr/bin/*`).
    pub executable: Option<String>,
    pub systemd_unit: Option<String>,
    pub container_image: Option<String>,
    pub container_id: Option<String>,
    pub k8s_namespace: Option<String>,
    pub k8s_service_account: Option<String>,
}

impl Consumer {
    fn is_empty(&self) -> bool {
        *self == Consumer::default()
    }
}

/// What the engine knows of a workload (from the usage's consumer
/// attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    pub executable: Option<String>,
    pub user_id: Option<i64>,
    pub interactive: bool,
    pub systemd_unit: Option<String>,
    pub container_image: Option<String>,
    pub container_id: Option<String>,
    pub k8s_namespace: Option<String>,
    pub k8s_service_account: Option<String>,
}

impl Workload {
    /// A short human name: `/usr/bin/aws (uid 1000)`, `pod ns/sa`.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if let (Some(ns), Some(sa)) = (&self.k8s_namespace, &self.k8s_service_account) {
            s.push_str(&format!("pod {ns}/{sa} "));
        } else if let Some(c) = &self.container_id {
            s.push_str(&format!("container {} ", c.get(..12).unwrap_or(c)));
        }
        if let Some(u) = &self.systemd_unit {
            s.push_str(&format!("unit {u} "));
        }
        s.push_str(self.executable.as_deref().unwrap_or("unknown executable"));
        if let Some(uid) = self.user_id {
            s.push_str(&format!(" (uid {uid})"));
        }
        s
    }
}

fn matches_opt(want: &Option<String>, have: &Option<String>) -> bool {
    match want {
        None => true,
        Some(w) => have.as_deref() == Some(w.as_str()),
    }
}

impl Consumer {
    pub fn matches(&self, w: &Workload) -> bool {
        let exe = match &self.executable {
            None => true,
            Some(pattern) => match (&w.executable, Glob::new(pattern)) {
                (Some(e), Ok(g)) => g.compile_matcher().is_match(e),
                _ => false,
            },
        };
        let container = match &self.container_id {
            None => true,
            // A short id (docker ps) names the container too.
            Some(c) => w.container_id.as_deref().is_some_and(|have| have.starts_with(c.as_str())),
        };
        exe && container
            && matches_opt(&self.systemd_unit, &w.systemd_unit)
            && matches_opt(&self.container_image, &w.container_image)
            && matches_opt(&self.k8s_namespace, &w.k8s_namespace)
            && matches_opt(&self.k8s_service_account, &w.k8s_service_account)
    }
}

/// `api.example.com` matches `api.example.com`; `*.example.com` matches
/// any name below `example.com` (not `example.com` itself). Case-blind.
pub fn destination_matches(pattern: &str, server: &str) -> bool {
    let server = server.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => server.len() > suffix.len() + 1 && server.ends_with(&format!(".{suffix}")),
        None => server == pattern,
    }
}

impl Entry {
    /// Whether this entry declares the credential `nhi_id` of `kind`,
    /// stored at `paths`.
    pub fn declares(&self, nhi_id: &str, kind: &str, paths: &[String]) -> bool {
        if let Some(id) = &self.id {
            return id == nhi_id;
        }
        let kind_ok = self.kind.as_deref().is_none_or(|k| k == kind);
        kind_ok && self.path_glob.as_ref().is_some_and(|g| paths.iter().any(|p| g.is_match(p)))
    }

    pub fn expects_consumer(&self, w: &Workload) -> bool {
        self.consumers.iter().any(|c| c.matches(w))
    }

    pub fn expects_destination(&self, server: &str) -> bool {
        self.destinations.iter().any(|d| destination_matches(d, server))
    }

    /// A short name for reports: the id, or `kind at path`.
    pub fn name(&self) -> String {
        match (&self.id, &self.kind, &self.path) {
            (Some(id), _, _) => id.clone(),
            (None, Some(k), Some(p)) => format!("{k} at {p}"),
            _ => String::new(),
        }
    }
}

/// The line (1-based) where the `n`th item (0-based) of the block list
/// under `credentials:` starts. The parser has no spans for values it
/// accepted, so the check that runs after parsing finds its line here;
/// `None` for flow-style lists, whose error then names the entry only.
fn entry_line(text: &str, n: usize) -> Option<usize> {
    let mut lines = text.lines().enumerate().skip_while(|(_, l)| !l.trim_start().starts_with("credentials:"));
    lines.next()?;
    let mut indent = None;
    let mut seen = 0;
    for (i, l) in lines {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = l.len() - trimmed.len();
        if trimmed.starts_with("- ") || trimmed == "-" {
            let level = *indent.get_or_insert(at);
            if at == level {
                if seen == n {
                    return Some(i + 1);
                }
                seen += 1;
            }
        } else if indent.is_none_or(|level| at < level) && at == 0 {
            return None; // the next top-level key
        }
    }
    None
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InventoryError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, InventoryError> {
        let doc: FileDoc = serde_yaml_ng::from_str(text).map_err(|e| {
            // The parser's message ends with its own "at line L column C";
            // the line is ours to say, once.
            let reason = e.to_string();
            let reason = reason.split(" at line ").next().unwrap_or(&reason).to_owned();
            match e.location() {
                Some(l) => InventoryError::Invalid { path: path.to_owned(), line: l.line(), reason },
                None => InventoryError::InvalidNoLine { path: path.to_owned(), reason },
            }
        })?;
        let mut entries = Vec::with_capacity(doc.credentials.len());
        for (n, raw) in doc.credentials.into_iter().enumerate() {
            let entry = Entry::try_from(raw).map_err(|reason| {
                let reason = format!("credentials[{n}]: {reason}");
                match entry_line(text, n) {
                    Some(line) => InventoryError::Invalid { path: path.to_owned(), line, reason },
                    None => InventoryError::InvalidNoLine { path: path.to_owned(), reason },
                }
            })?;
            entries.push(entry);
        }
        Ok(Self { path: path.to_owned(), entries })
    }

    /// The first entry that declares the credential.
    pub fn entry_for(&self, nhi_id: &str, kind: &str, paths: &[String]) -> Option<&Entry> {
        self.entries.iter().find(|e| e.declares(nhi_id, kind, paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("inv.yaml"), t)
    }

    const GOOD: &str = r#"
credentials:
  - id: AKIAIOSFODNN7EXAMPLE
    owner: team-billing
    purpose: nightly export
    expires: 2027-01-31
    consumers:
      - executable: /usr/bin/aws
      - k8s_namespace: billing
        k8s_service_account: exporter
    destinations: [sts.amazonaws.com, "*.s3.amazonaws.com"]
  - kind: ssh.private_key
    path: /home/*/.ssh/id_*
"#;

    #[test]
    fn a_valid_inventory_declares_by_id_and_by_kind_and_path() {
        let inv = parse(GOOD).unwrap();
        assert_eq!(inv.entries.len(), 2);
        let e = inv.entry_for("AKIAIOSFODNN7EXAMPLE", "aws.access_key", &[]).unwrap();
        assert_eq!(e.owner.as_deref(), Some("team-billing"));
        assert!(e.expects_consumer(&Workload { executable: Some("/usr/bin/aws".into()), ..Workload::default() }));
        assert!(!e.expects_consumer(&Workload { executable: Some("/usr/bin/python3".into()), ..Workload::default() }));
        assert!(e.expects_consumer(&Workload {
            executable: Some("/app/exporter".into()),
            k8s_namespace: Some("billing".into()),
            k8s_service_account: Some("exporter".into()),
            ..Workload::default()
        }));
        assert!(e.expects_destination("sts.amazonaws.com"));
        assert!(e.expects_destination("bucket.s3.amazonaws.com"));
        assert!(!e.expects_destination("s3.amazonaws.com"), "a wildcard needs a label in front");
        assert!(!e.expects_destination("evil.example.com"));
        let ssh = ["/home/ann/.ssh/id_ed25519".to_owned()];
        assert!(inv.entry_for("SHA256:x", "ssh.private_key", &ssh).is_some());
        assert!(inv.entry_for("SHA256:x", "aws.access_key", &ssh).is_none(), "kind must match");
        assert!(inv.entry_for("SHA256:x", "ssh.private_key", &["/root/.ssh/id_rsa".into()]).is_none());
    }

    fn invalid(t: &str) -> (usize, String) {
        match parse(t) {
            Err(InventoryError::Invalid { line, reason, .. }) => (line, reason),
            other => panic!("not refused with a line: {other:?}"),
        }
    }

    #[test]
    fn invalid_files_are_refused_with_line_and_reason() {
        let (line, reason) = invalid("credentials:\n  - id: A\n    ownr: x\n");
        assert_eq!(line, 3, "{reason}");
        assert!(reason.contains("unknown field `ownr`"), "{reason}");
        let (line, reason) = invalid("credentials:\n  - id: A\n  - owner: b\n");
        assert_eq!(line, 3, "{reason}");
        assert!(reason.contains("needs `id`, or `kind` and `path`"), "{reason}");
        let (_, reason) = invalid("credentials:\n  - kind: k\n    path: relative/x\n");
        assert!(reason.contains("must be absolute"), "{reason}");
        let (_, reason) = invalid("credentials:\n  - id: A\n    expires: next week\n");
        assert!(reason.contains("not an RFC 3339"), "{reason}");
        let (_, reason) = invalid("credentials:\n  - id: A\n    destinations: [\"https://x\"]\n");
        assert!(reason.contains("server name"), "{reason}");
        let (_, reason) = invalid("credentials:\n  - id: A\n    consumers: [{}]\n");
        assert!(reason.contains("at least one of"), "{reason}");
        let (line, _) = invalid("creds: []\n");
        assert_eq!(line, 1);
        let (line, _) = invalid("credentials:\n  - id: [unclosed\n");
        assert!(line >= 2);
    }

    #[test]
    fn the_example_in_the_repository_is_valid() {
        let text = include_str!("../../../deploy/inventory.example.yaml");
        let inv = parse(text).unwrap();
        assert_eq!(inv.entries.len(), 3);
        assert!(inv.entries.iter().all(|e| !e.consumers.is_empty()));
    }

    #[test]
    fn expiry_dates_and_times() {
        assert!(parse_expiry("2027-01-31").is_some());
        assert!(parse_expiry("2027-01-31T10:00:00Z").is_some());
        assert!(parse_expiry("tomorrow").is_none());
    }
}
