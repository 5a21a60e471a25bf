//! Credentials in a new process's environment.
//!
//! Input: the environment block the kernel copied at exec (a [`Secret`]).
//! Output: one [`EnvCredential`] per variable whose name says it holds a
//! credential, or whose value has a known token prefix, with its value
//! still in a [`Secret`]; its identity ([`derive_id`]: the same as the same
//! credential's in a file); and the `nhi.credential.access` record for it
//! (`nhi.source = env`).
//!
//! Only variable names, kinds and non-secret identities derived from values
//! (see [`derive_id`], the classifier's hook) leave the agent; a value never
//! does. A variable with an empty value is not a credential. When the kernel
//! had to cut the block, the last (partial) variable is dropped.
use std::time::SystemTime;

use observer_creds::{Keyed, tokens::SECRET_VALUE_KIND};

use crate::{
    decode::ProcessExec,
    model::{
        Credential,
        records::{AccessSource, CredentialAccess, EnvAccess, Process, Workload},
    },
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

/// The last bytes (upper case) of the names in [`EXACT`] and [`SUFFIXES`].
const NAME_LAST_BYTES: &[u8] = &{
    const N: usize = EXACT.len() + SUFFIXES.len();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < EXACT.len() {
        let n = EXACT[i].0.as_bytes();
        out[i] = n[n.len() - 1];
        i += 1;
    }
    let mut j = 0;
    while j < SUFFIXES.len() {
        let n = SUFFIXES[j].0.as_bytes();
        out[i + j] = n[n.len() - 1];
        j += 1;
    }
    out
};

/// The credential kind a variable name announces, if any (case-insensitive).
pub fn kind_of(name: &str) -> Option<&'static str> {
    kind_of_bytes(name.as_bytes())
}

/// [`kind_of`] on the name's bytes, without an upper-cased copy: it runs
/// for every variable of every exec.
fn kind_of_bytes(name: &[u8]) -> Option<&'static str> {
    // Every name above ends in one of a few letters: most variables stop here.
    let last = name.last()?.to_ascii_uppercase();
    if !NAME_LAST_BYTES.contains(&last) {
        return None;
    }
    EXACT
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.as_bytes().eq_ignore_ascii_case(name))
        .or_else(|| {
            SUFFIXES.iter().find(|(s, _)| name.len() > s.len() && name[name.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes()))
        })
        .map(|(_, kind)| *kind)
}

/// The `(name, value)` pairs of a NUL-separated `NAME=value` block (an
/// entry without `=` is skipped), without the last, cut-off entry when the
/// kernel had to cut the block. Runs for every exec, twice: the bytes are
/// searched with `memchr`, not a byte loop.
pub fn vars(env: &[u8], truncated: bool) -> impl Iterator<Item = (&[u8], &[u8])> {
    let env = if truncated {
        // Everything before the last NUL: the entries whole.
        &env[..memchr::memrchr(0, env).unwrap_or(0)]
    } else {
        env
    };
    let mut rest = Some(env);
    std::iter::from_fn(move || {
        loop {
            let block = rest?;
            let (entry, next) = match memchr::memchr(0, block) {
                Some(i) => (&block[..i], Some(&block[i + 1..])),
                None => (block, None),
            };
            rest = next;
            if let Some(eq) = memchr::memchr(b'=', entry) {
                return Some((&entry[..eq], &entry[eq + 1..]));
            }
        }
    })
}

/// Whether `value` may start with a known token prefix
/// ([`observer_creds::tokens::classify`] is sure): the first bytes are
/// compared before any UTF-8 check or prefix search, so the ordinary
/// variables of an environment (`PATH`, `HOME`, ...) cost a few compares.
/// A value that starts with a non-ASCII byte passes (`classify` trims
/// Unicode whitespace).
fn may_be_token(value: &[u8]) -> bool {
    // What `str::trim` takes off at the start, as far as ASCII goes.
    let Some(start) = value.iter().position(|&b| !(b.is_ascii() && char::from(b).is_whitespace())) else {
        return false;
    };
    let v = &value[start..];
    match v.first() {
        None => false,
        Some(b) if !b.is_ascii() => true,
        Some(&b) => {
            v.len() >= observer_creds::tokens::MIN_TOKEN_LEN
                && observer_creds::tokens::PREFIXES.iter().any(|(p, _, _)| p.as_bytes()[0] == b && v.starts_with(p.as_bytes()))
        }
    }
}

/// Credential variables in a NUL-separated `NAME=value` block: the tests'
/// form of what the pipeline does in its one pass over an exec's block
/// ([`vars`], then [`var_credential`] per variable).
#[cfg(test)]
pub fn credentials(env: &Secret, truncated: bool) -> Vec<EnvCredential> {
    let mut out = Vec::new();
    for (name, value) in vars(env.expose(), truncated) {
        var_credential(name, value, &mut out);
    }
    out
}

/// The credential a variable holds (of [`vars`]), appended to `out` when
/// it is one.
/// Runs for every variable of every exec.
pub fn var_credential(name: &[u8], value: &[u8], out: &mut Vec<EnvCredential>) {
    // By name, else by a known token prefix of the value (`HF_HUB=hf_...`).
    let kind = kind_of_bytes(name).or_else(|| {
        if !may_be_token(value) {
            return None;
        }
        let v = std::str::from_utf8(value).ok()?;
        match observer_creds::tokens::classify(v)? {
            (kind, observer_creds::tokens::Visibility::Secret) => Some(kind),
            _ => None,
        }
    });
    let Some(kind) = kind else { return };
    let Ok(name) = std::str::from_utf8(name) else { return };
    if !value.is_empty() {
        out.push(EnvCredential { name: name.to_owned(), kind, value: Secret::new(value) });
    }
}

/// The identity (`nhi.kind`, `nhi.id`) of an environment credential, from
/// its value and its siblings in the same environment, derived as for the
/// same credential in a file, so both name it alike:
/// - AWS: the access key id (not secret); the secret key and session token
///   take the id of the `AWS_ACCESS_KEY_ID` beside them, else a keyed
///   fingerprint of their own;
/// - a value with a known token prefix (`ghp_`, `glpat-`, `xoxb-`, ...):
///   that kind and the keyed fingerprint, as in any file;
/// - any other value: `secret.value` and its keyed fingerprint, as in a
///   `.env` file;
/// - a variable that names a file (`GOOGLE_APPLICATION_CREDENTIALS`): none
///   (the file's read is the credential access).
pub fn derive_id(cred: &EnvCredential, siblings: &[EnvCredential], keyed: &Keyed) -> Option<CredIdentity> {
    let key_id = |c: &EnvCredential| {
        let v = std::str::from_utf8(c.value.expose()).ok()?.trim();
        aws_access_key_id(v).then(|| v.to_owned())
    };
    let name = cred.name.to_ascii_uppercase();
    match name.as_str() {
        "AWS_ACCESS_KEY_ID" => key_id(cred).map(|id| CredIdentity { kind: None, id }),
        "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN" => {
            match siblings.iter().find(|s| s.name.eq_ignore_ascii_case("AWS_ACCESS_KEY_ID")).and_then(key_id) {
                Some(id) => Some(CredIdentity { kind: None, id }),
                None => {
                    let kind = if name == "AWS_SESSION_TOKEN" { "aws.session_token" } else { "aws.secret_key" };
                    Some(CredIdentity { kind: None, id: keyed.id(kind, cred.value.expose().trim_ascii()) })
                }
            }
        }
        "GOOGLE_APPLICATION_CREDENTIALS" => None,
        _ => observer_creds::tokens::identity(cred.value.expose(), SECRET_VALUE_KIND, keyed).map(|i| CredIdentity {
            kind: (i.kind != SECRET_VALUE_KIND).then_some(i.kind),
            id: i.id,
        }),
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

/// `nhi.kind` and `nhi.id` of an environment credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredIdentity {
    /// The value's own kind when its prefix names one (`github.pat`);
    /// else the variable's name says the kind.
    pub kind: Option<String>,
    pub id: String,
}

/// `nhi.kind` of an environment credential, and the credential when it has
/// an id: the value's own kind when it names one, else the name's.
pub fn credential(cred: &EnvCredential, id: Option<CredIdentity>) -> (String, Option<Credential>) {
    match id {
        Some(i) => {
            let kind = i.kind.unwrap_or_else(|| cred.kind.to_owned());
            (kind.clone(), Some(Credential { id: i.id, kind }))
        }
        None => (cred.kind.to_owned(), None),
    }
}

/// The `nhi.credential.access` record for one environment credential
/// (`kind` and `credential` as [`credential`] says). The pipeline adds the
/// workload identity ([`CredentialAccess::process_workload_mut`]).
pub fn record(
    ev: &ProcessExec,
    cred: &EnvCredential,
    kind: &str,
    credential: Option<&Credential>,
    host_name: &'static str,
    time: SystemTime,
) -> CredentialAccess {
    CredentialAccess {
        time,
        host_name: host_name.into(),
        source: AccessSource::Env(Box::new(EnvAccess {
            kind: kind.to_owned(),
            id: credential.map(|c| c.id.clone()),
            env_name: cred.name.clone(),
            process: Process::new(&ev.task, ev.exe.as_ref()),
            workload: Workload::default(),
        })),
        record_id: None,
    }
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
        let keyed = keyed();
        let ids: Vec<_> = creds.iter().map(|c| derive_id(c, &creds, &keyed)).collect();
        let aws = Some(CredIdentity { kind: None, id: "AKIAIOSFODNN7EXAMPLE".into() });
        assert_eq!(ids[..2], [aws.clone(), aws]);
        // Issue 14, item 3: a token's kind from its prefix and the same
        // keyed id as the same token in a file.
        let gh = ids[2].clone().unwrap();
        assert_eq!(gh.kind.as_deref(), Some("github.pat"));
        let in_file = observer_creds::tokens::identity(b"ghp_000000000000000000000000000000000000", "x", &keyed).unwrap();
        assert_eq!(gh.id, in_file.id);
        assert!(!gh.id.contains("ghp_0000"));
    }

    fn keyed() -> Keyed {
        Keyed::new(Secret::new([3u8; 32]))
    }

    #[test]
    fn values_without_a_prefix_get_keyed_ids_and_prefixed_values_are_found_by_value() {
        let env = block(&["DB_PASSWORD=hunter2-synthetic", "HF_HUB=hf_SYNTH3TICtokenValue0123456789", "HOME=/root", "GOOGLE_APPLICATION_CREDENTIALS=/srv/sa.json"]);
        let creds = credentials(&env, false);
        let names: Vec<_> = creds.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(names, [("DB_PASSWORD", "generic.password"), ("HF_HUB", "huggingface.token"), ("GOOGLE_APPLICATION_CREDENTIALS", "gcp.service_account_key")]);
        let keyed = keyed();
        let db = derive_id(&creds[0], &creds, &keyed).unwrap();
        assert_eq!(db.kind, None);
        assert_eq!(db.id, keyed.id("secret.value", b"hunter2-synthetic"));
        assert_eq!(derive_id(&creds[2], &creds, &keyed), None);
        // A secret key alone: the keyed id the AWS INI parser gives it.
        let alone = credentials(&block(&["AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]), false);
        let id = derive_id(&alone[0], &alone, &keyed).unwrap();
        assert_eq!(id.id, keyed.id("aws.secret_key", b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
    }

    #[test]
    fn truncated_block_drops_the_cut_variable() {
        let mut bytes = block(&["VAULT_TOKEN=hvs.full"]).expose().to_vec();
        bytes.extend_from_slice(b"GITHUB_TOKEN=ghp_cut");
        let creds = credentials(&Secret::new(bytes), true);
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].name, "VAULT_TOKEN");
    }

    /// `vars` gives what splitting the block at NULs (less the last piece
    /// when cut) and each entry at its first `=` gives.
    #[test]
    fn vars_split_like_the_block() {
        let blocks: &[&[u8]] = &[
            b"",
            b"\0",
            b"A=1",
            b"A=1\0",
            b"A=1\0B=2=3\0no-equals\0\0=x\0C=",
            b"A=1\0B=cut",
            b"no-nul-at-all=cut",
            b"A=1\0\0",
        ];
        for block in blocks {
            for truncated in [false, true] {
                let mut entries: Vec<&[u8]> = block.split(|&b| b == 0).collect();
                if truncated {
                    entries.pop();
                }
                let want: Vec<(&[u8], &[u8])> = entries
                    .into_iter()
                    .filter_map(|e| e.iter().position(|&b| b == b'=').map(|i| (&e[..i], &e[i + 1..])))
                    .collect();
                let got: Vec<_> = vars(block, truncated).collect();
                assert_eq!(got, want, "{:?}, truncated {truncated}", String::from_utf8_lossy(block));
            }
        }
    }

    /// The quick test before classifying a value never drops a value the
    /// classifier would report.
    #[test]
    fn token_values_pass_the_prefilter() {
        for (prefix, _, _) in observer_creds::tokens::PREFIXES {
            for lead in ["", " ", "\t", "\u{b}", "\u{a0}", "\n "] {
                let v = format!("{lead}{prefix}SYNTHETIC0123456789abcdefXYZ");
                if observer_creds::tokens::classify(&v).is_some() {
                    assert!(may_be_token(v.as_bytes()), "{v:?}");
                }
            }
        }
        assert!(!may_be_token(b"/usr/local/bin:/usr/bin:/bin"));
        assert!(!may_be_token(b"ghp_short"));
        let env = block(&["PATH=/usr/bin", "HF_HUB= hf_SYNTH3TICtokenValue0123456789", "X=\u{b}ghp_000000000000000000000000000000000000"]);
        let names: Vec<_> = credentials(&env, false).into_iter().map(|c| (c.name, c.kind)).collect();
        assert_eq!(names, [("HF_HUB".to_owned(), "huggingface.token"), ("X".to_owned(), "github.pat")]);
    }

    #[test]
    fn not_an_access_key_id_is_no_id() {
        let creds = credentials(&block(&["AWS_ACCESS_KEY_ID=hello"]), false);
        assert_eq!(derive_id(&creds[0], &creds, &keyed()), None);
    }
}
