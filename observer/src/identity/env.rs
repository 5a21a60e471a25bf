//! Credentials in a new process's environment.
//!
//! Input: the environment block the kernel copied at exec (a [`Secret`]).
//! Output: one [`EnvCredential`] per variable whose *name* says it holds a
//! credential, with its value still in a [`Secret`], and the
//! `nhi.credential.access` record for it (`nhi.source = env`).
//!
//! Only variable names, kinds and non-secret identities derived from values
//! (see [`derive_id`], the classifier's hook) leave the agent; a value never
//! does. A variable with an empty value is not a credential. When the kernel
//! had to cut the block, the last (partial) variable is dropped.
use std::time::SystemTime;

use crate::{
    decode::ProcessExec,
    model::{EVENT_CREDENTIAL_ACCESS, Record, Value},
    secret::Secret,
};

/// A credential found in an environment.
#[derive(Debug, Clone)]
pub struct EnvCredential {
    pub name: String,
    /// `nhi.kind`, from the variable's name.
    pub kind: &'static str,
    pub value: Secret,
}

/// Well-known credential variables, by exact name.
const EXACT: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "aws.access_key"),
    ("AWS_SECRET_ACCESS_KEY", "aws.access_key"),
    ("AWS_SESSION_TOKEN", "aws.session_token"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "gcp.service_account_key"),
    ("GITHUB_TOKEN", "github.token"),
    ("GH_TOKEN", "github.token"),
    ("VAULT_TOKEN", "vault.token"),
];

/// Generic credential variables, by name suffix.
const SUFFIXES: &[(&str, &str)] = &[
    ("_TOKEN", "generic.token"),
    ("_API_KEY", "generic.api_key"),
    ("_SECRET", "generic.secret"),
    ("_PASSWORD", "generic.password"),
];

/// The credential kind a variable name announces, if any (case-insensitive).
pub fn kind_of(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    EXACT
        .iter()
        .find(|(n, _)| *n == upper)
        .or_else(|| SUFFIXES.iter().find(|(s, _)| upper.len() > s.len() && upper.ends_with(s)))
        .map(|(_, kind)| *kind)
}

/// Credential variables in a NUL-separated `NAME=value` block.
pub fn credentials(env: &Secret, truncated: bool) -> Vec<EnvCredential> {
    let mut entries: Vec<&[u8]> = env.expose().split(|&b| b == 0).collect();
    if truncated {
        entries.pop();
    }
    entries
        .into_iter()
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            let (name, value) = (&entry[..eq], &entry[eq + 1..]);
            let name = std::str::from_utf8(name).ok()?;
            let kind = kind_of(name)?;
            (!value.is_empty()).then(|| EnvCredential { name: name.to_owned(), kind, value: Secret::new(value) })
        })
        .collect()
}

/// The classifier's hook: a stable, non-secret identity (`nhi.id`) for an
/// environment credential, from its value and its siblings in the same
/// environment. Today: AWS access keys (the key id is not secret and names
/// the key; the secret key and session token take the id of the
/// `AWS_ACCESS_KEY_ID` beside them). Other kinds return `None` until the
/// credential catalog (issue 7) derives their ids (keyed fingerprints).
pub fn derive_id(cred: &EnvCredential, siblings: &[EnvCredential]) -> Option<String> {
    let key_id = |c: &EnvCredential| {
        let v = std::str::from_utf8(c.value.expose()).ok()?.trim();
        aws_access_key_id(v).then(|| v.to_owned())
    };
    match cred.name.to_ascii_uppercase().as_str() {
        "AWS_ACCESS_KEY_ID" => key_id(cred),
        "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN" => {
            siblings.iter().find(|s| s.name.eq_ignore_ascii_case("AWS_ACCESS_KEY_ID")).and_then(key_id)
        }
        _ => None,
    }
}

/// `AKIA…`/`ASIA…` and the other IAM unique-id prefixes: 4 letters, 16
/// upper-case letters or digits.
fn aws_access_key_id(v: &str) -> bool {
    const PREFIXES: &[&str] = &["AKIA", "ASIA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA"];
    v.len() == 20
        && PREFIXES.iter().any(|p| v.starts_with(p))
        && v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The `nhi.credential.access` record for one environment credential. The
/// pipeline adds the workload identity.
pub fn record(ev: &ProcessExec, cred: &EnvCredential, id: Option<String>, host_name: &str, time: SystemTime) -> Record {
    let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    a.push(("host.name", host_name.into()));
    a.push(("nhi.source", "env".into()));
    a.push(("nhi.kind", cred.kind.into()));
    if let Some(id) = id {
        a.push(("nhi.id", id.into()));
    }
    a.push(("nhi.env.name", cred.name.clone().into()));
    crate::model::process_attributes(&mut a, &ev.task, ev.exe.as_ref());
    Record { time, event_name: EVENT_CREDENTIAL_ACCESS, attributes: a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(vars: &[&str]) -> Secret {
        let mut b = Vec::new();
        for v in vars {
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        Secret::new(b)
    }

    #[test]
    fn names_decide_kinds() {
        assert_eq!(kind_of("AWS_ACCESS_KEY_ID"), Some("aws.access_key"));
        assert_eq!(kind_of("GITHUB_TOKEN"), Some("github.token"));
        assert_eq!(kind_of("VAULT_TOKEN"), Some("vault.token"));
        assert_eq!(kind_of("GOOGLE_APPLICATION_CREDENTIALS"), Some("gcp.service_account_key"));
        assert_eq!(kind_of("SLACK_BOT_TOKEN"), Some("generic.token"));
        assert_eq!(kind_of("openai_api_key"), Some("generic.api_key"));
        assert_eq!(kind_of("DJANGO_SECRET"), Some("generic.secret"));
        assert_eq!(kind_of("PGPASSWORD"), None, "suffix rules need the underscore");
        assert_eq!(kind_of("DB_PASSWORD"), Some("generic.password"));
        assert_eq!(kind_of("_TOKEN"), None);
        assert_eq!(kind_of("AWS_WEB_IDENTITY_TOKEN_FILE"), None, "a path to a token, not a token");
        assert_eq!(kind_of("PATH"), None);
    }

    #[test]
    fn finds_credentials_and_keeps_values_secret() {
        let env = block(&[
            "PATH=/usr/bin",
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "EMPTY_TOKEN=",
            "not a variable",
            "GITHUB_TOKEN=ghp_000000000000000000000000000000000000",
        ]);
        let creds = credentials(&env, false);
        let names: Vec<_> = creds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"]);
        assert!(!format!("{creds:?}").contains("wJalr"), "Debug must not show values");
        let ids: Vec<_> = creds.iter().map(|c| derive_id(c, &creds)).collect();
        assert_eq!(ids, [Some("AKIAIOSFODNN7EXAMPLE".to_owned()), Some("AKIAIOSFODNN7EXAMPLE".to_owned()), None]);
    }

    #[test]
    fn truncated_block_drops_the_cut_variable() {
        let mut bytes = block(&["VAULT_TOKEN=hvs.full"]).expose().to_vec();
        bytes.extend_from_slice(b"GITHUB_TOKEN=ghp_cut");
        let creds = credentials(&Secret::new(bytes), true);
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].name, "VAULT_TOKEN");
    }

    #[test]
    fn not_an_access_key_id_is_no_id() {
        let creds = credentials(&block(&["AWS_ACCESS_KEY_ID=hello"]), false);
        assert_eq!(derive_id(&creds[0], &creds), None);
    }
}
