//! Credential files named by a process's environment
//! (`GOOGLE_APPLICATION_CREDENTIALS=/srv/app/keys/sa.json`,
//! `KUBECONFIG=a:b`, `DOCKER_CONFIG=/ci/docker`): their targets join the
//! kernel's watched inodes at exec, so the process's read of them is a
//! credential access wherever the file sits.
//!
//! Input: the exec's environment block (a `Secret`; only the values of the
//! variables below are looked at, and those are paths, not secrets), the
//! process's pid (its mount namespace and working directory) and the
//! rules: built-in ([`BUILTIN`]) and configured (`[[env_path]]`). Output:
//! one [`InodeEntry`] per existing regular file, under the catalog rule
//! that says how to read it.
//!
//! Invariants: paths resolve in the process's mount namespace
//! (`/proc/<pid>/root`, symlinks kept inside it) and, when relative,
//! against its working directory; a missing or special file is skipped;
//! the file is only stat'ed here, never read. Limit: the process may read
//! its file before the agent has handled its exec (milliseconds); such a
//! first read is missed, later ones are seen. The pipeline resolves an
//! absolute path at most once a second per cgroup (resolving costs /proc
//! look-ups on every exec): a file created or replaced at that path, or a
//! process of the same cgroup in another mount namespace, within that
//! second is watched from the next exec after it.
use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use observer_common::{INODE_FILE, InodeKey, InodeRule};
use serde::Deserialize;

use super::{
    catalog::Catalog,
    reader,
    watch::{InodeEntry, kernel_dev},
};

/// One variable that locates credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvPathRule {
    /// The variable's name (exact, case-sensitive, as programs read it).
    pub variable: String,
    /// The catalog rule (`nhi.rule`) whose format and kind apply to the
    /// file(s): `gcp-service-account-key`, `kubeconfig`, `content`, ...
    pub rule: String,
    /// The value is a directory: these files in it. Empty: the value is
    /// the file.
    #[serde(default)]
    pub files: Vec<String>,
    /// The value is a `:`-separated list (`KUBECONFIG`).
    #[serde(default)]
    pub list: bool,
}

/// (variable, rule, files in the directory it names, list).
const BUILTIN_TABLE: &[(&str, &str, &[&str], bool)] = &[
    ("GOOGLE_APPLICATION_CREDENTIALS", "gcp-service-account-key", &[], false),
    ("AWS_SHARED_CREDENTIALS_FILE", "aws-shared-credentials", &[], false),
    ("AWS_CONFIG_FILE", "aws-config", &[], false),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "eks-irsa-token", &[], false),
    ("KUBECONFIG", "kubeconfig", &[], true),
    ("DOCKER_CONFIG", "container-registry-auth", &["config.json"], false),
    ("REGISTRY_AUTH_FILE", "container-registry-auth", &[], false),
    ("CLOUDSDK_CONFIG", "gcp-application-default-credentials", &["application_default_credentials.json", "credentials.db", "access_tokens.db"], false),
    ("AZURE_CONFIG_DIR", "azure-cli", &["msal_token_cache.json", "azureProfile.json", "service_principal_entries.json", "accessTokens.json"], false),
    ("NETRC", "netrc", &[], false),
    ("PGPASSFILE", "pgpass", &[], false),
    ("GH_CONFIG_DIR", "github-cli", &["hosts.yml"], false),
    ("NPM_CONFIG_USERCONFIG", "npmrc", &[], false),
    ("TF_CLI_CONFIG_FILE", "content", &[], false),
    ("VAULT_TOKEN_FILE", "vault-token", &[], false),
];

/// The built-in rules.
pub fn builtin() -> Vec<EnvPathRule> {
    BUILTIN_TABLE
        .iter()
        .map(|(variable, rule, files, list)| EnvPathRule {
            variable: (*variable).into(),
            rule: (*rule).into(),
            files: files.iter().map(|f| (*f).into()).collect(),
            list: *list,
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvPathError {
    #[error("env_path `{variable}`: no catalog rule named `{rule}`")]
    UnknownRule { variable: String, rule: String },
    #[error("env_path `{0}`: the variable name must not be empty or hold `=`")]
    BadVariable(String),
}

/// Checks every rule names a catalog rule; configured rules for a variable
/// replace the built-in one.
pub fn resolve(configured: Vec<EnvPathRule>, catalog: &Catalog) -> Result<Vec<EnvPathRule>, EnvPathError> {
    let mut out: Vec<EnvPathRule> = builtin().into_iter().filter(|b| !configured.iter().any(|c| c.variable == b.variable)).collect();
    out.extend(configured);
    for r in &out {
        if r.variable.is_empty() || r.variable.contains('=') || r.variable.contains('\0') {
            return Err(EnvPathError::BadVariable(r.variable.clone()));
        }
        if !catalog.rules.iter().any(|c| *c.name == *r.rule) {
            return Err(EnvPathError::UnknownRule { variable: r.variable.clone(), rule: r.rule.clone() });
        }
    }
    Ok(out)
}

/// The paths an environment names, as the process would open them, with
/// the rule of each: `(rule name, path)`. Relative paths stay relative.
/// The tests' form of what the pipeline does in its one pass over an
/// exec's block ([`may_name`], then [`var_targets`] per variable).
#[cfg(test)]
pub fn targets<'r>(env: &[u8], truncated: bool, rules: &'r [EnvPathRule]) -> Vec<(&'r str, PathBuf)> {
    let mut out = Vec::new();
    let lengths = name_lengths(rules);
    for (name, value) in crate::identity::env::vars(env, truncated) {
        if may_name(lengths, name) {
            var_targets(name, value, rules, &mut out);
        }
    }
    out
}

/// The lengths of the rules' variable names, as bits (63: 63 bytes or
/// more), for [`may_name`].
pub fn name_lengths(rules: &[EnvPathRule]) -> u64 {
    rules.iter().fold(0, |m, r| m | 1 << r.variable.len().min(63))
}

/// Whether a variable's name may be one of the rules' (of
/// [`name_lengths`] `lengths`): most names of an environment are ruled out
/// by their length before the rules are searched.
pub fn may_name(lengths: u64, name: &[u8]) -> bool {
    lengths & 1 << name.len().min(63) != 0
}

/// The paths one variable names, with the rule of each, appended to
/// `out`; relative paths stay relative. Runs for every
/// variable of every exec: no copies unless the variable matches.
pub fn var_targets<'r>(name: &[u8], value: &[u8], rules: &'r [EnvPathRule], out: &mut Vec<(&'r str, PathBuf)>) {
    let Some(rule) = rules.iter().find(|r| r.variable.as_bytes() == name) else { return };
    let values = value.split(move |&b| rule.list && b == b':');
    for v in values.filter(|v| !v.is_empty()) {
        let base = PathBuf::from(std::ffi::OsStr::from_bytes(v));
        if rule.files.is_empty() {
            out.push((rule.rule.as_str(), base));
        } else {
            out.extend(rule.files.iter().map(|f| (rule.rule.as_str(), base.join(f))));
        }
    }
}

/// Resolves `path` as process `pid` sees it (relative to its working
/// directory) and returns the watched-inode entry for `rule_id` when it is
/// an existing regular file.
pub fn inode_entry(pid: u32, path: &Path, rule_id: u32) -> Option<InodeEntry> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        // The cwd as the process sees it (within its mount namespace).
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(path)
    };
    let file = reader::open_in_root(pid, &absolute).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    use std::os::unix::fs::MetadataExt;
    Some(InodeEntry {
        key: InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad0: 0 },
        rule: InodeRule { rule_id, what: INODE_FILE },
        path: absolute,
        special: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_name_catalog_rules() {
        let catalog = Catalog::builtin().unwrap();
        let rules = resolve(Vec::new(), &catalog).unwrap();
        assert_eq!(rules.len(), BUILTIN_TABLE.len());
        let bad = EnvPathRule { variable: "X_KEY_FILE".into(), rule: "nope".into(), files: vec![], list: false };
        assert!(matches!(resolve(vec![bad], &catalog), Err(EnvPathError::UnknownRule { .. })));
        let mine = EnvPathRule { variable: "KUBECONFIG".into(), rule: "content".into(), files: vec![], list: false };
        let rules = resolve(vec![mine.clone()], &catalog).unwrap();
        assert_eq!(rules.iter().filter(|r| r.variable == "KUBECONFIG").collect::<Vec<_>>(), [&mine]);
    }

    #[test]
    fn targets_follow_lists_directories_and_files() {
        let rules = builtin();
        let env = b"PATH=/usr/bin\0KUBECONFIG=/a/k1:rel/k2::\0DOCKER_CONFIG=/ci/docker\0GOOGLE_APPLICATION_CREDENTIALS=/srv/sa.json\0NETRC=/cut";
        let t = targets(env, true, &rules);
        let shown: Vec<(&str, &str)> = t.iter().map(|(r, p)| (*r, p.to_str().unwrap())).collect();
        assert_eq!(
            shown,
            [
                ("kubeconfig", "/a/k1"),
                ("kubeconfig", "rel/k2"),
                ("container-registry-auth", "/ci/docker/config.json"),
                ("gcp-service-account-key", "/srv/sa.json"),
            ]
        );
    }

    #[test]
    fn name_lengths_never_rule_out_a_rule() {
        let mut rules = builtin();
        rules.push(EnvPathRule { variable: "X".repeat(70), rule: "content".into(), files: vec![], list: false });
        let lengths = name_lengths(&rules);
        for r in &rules {
            assert!(may_name(lengths, r.variable.as_bytes()), "{}", r.variable);
        }
        assert!(!may_name(name_lengths(&builtin()), b"PATH"));
        assert!(!may_name(name_lengths(&builtin()), b""));
    }

    #[test]
    fn relative_paths_resolve_against_the_process_cwd_in_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sa.json");
        std::fs::write(&file, "{}").unwrap();
        let e = inode_entry(std::process::id(), &file, 7).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((e.key.ino, e.rule.rule_id), (std::fs::metadata(&file).unwrap().ino(), 7));
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(&file, &cwd);
        assert_eq!(inode_entry(std::process::id(), &rel, 7).map(|e| e.key.ino), Some(e.key.ino));
        assert!(inode_entry(std::process::id(), dir.path(), 7).is_none(), "a directory is not watched as a file");
        assert!(inode_entry(std::process::id(), &dir.path().join("missing"), 7).is_none());
    }

    /// `to` relative to `from` (both absolute).
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let ups = from.components().count() - 1;
        let mut p = PathBuf::new();
        for _ in 0..ups {
            p.push("..");
        }
        p.join(to.strip_prefix("/").unwrap())
    }
}
