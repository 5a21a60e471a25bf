//! Credentials recognised by their content, wherever they sit: the
//! detector behind `nhi-observer scan` for files no catalog path names,
//! and the format of what the scan found that way (`content`).
//!
//! Input: the bytes of one file (bounded in size by the caller). Output:
//! the identities of the credentials in it, each tagged with the detector
//! that found it (`nhi.detector`) and its line (`nhi.content.line`), or why
//! there are none. Detectors: PEM and OpenSSH private keys; structured
//! files (GCP service-account and ADC JSON, registry auth JSON,
//! kubeconfigs, AWS shared credentials); JWTs; tokens with a known prefix
//! (AWS key ids among them); `NAME=value` / `name: value` assignments and
//! JSON `"name": "value"` pairs whose name says secret; URLs with a
//! password.
//!
//! Invariants:
//! - every identity comes from the parsers of this crate and the prefixes
//!   of [`crate::tokens`], so a credential found by content has the id it
//!   has at its catalog path or in an environment;
//! - public material (certificates, public keys) and placeholders
//!   (`${VAR}`, `changeme`, `<password>`) are not credentials and give no
//!   identity;
//! - a file with a NUL byte in its first [`SNIFF_BYTES`] is binary and is
//!   not searched; invalid UTF-8 elsewhere does not stop the search (the
//!   expressions run on bytes);
//! - no secret byte is copied out of the input except into a [`Secret`];
//! - one literal pre-filter pass rejects most files before any regular
//!   expression runs.
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::bytes::Regex;

use super::{ParseResult, aws, docker, gcp, git_credentials, jwt, kube, ssh, x509};
use crate::{Identity, Keyed, Secret, Unparsed, tokens};

/// How much of a file is sniffed for a NUL byte (as git and ripgrep do).
pub const SNIFF_BYTES: usize = 8192;

/// Whether the file looks binary: a NUL byte near its start.
pub fn is_binary(bytes: &[u8]) -> bool {
    memchr::memchr(0, &bytes[..bytes.len().min(SNIFF_BYTES)]).is_some()
}

/// Parts of a variable or key name that say its value is a secret.
pub(crate) const SECRET_NAME_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
    "CREDENTIAL",
    "AUTH",
];

/// Name endings that make a secret-sounding name point elsewhere: a file,
/// a path, a URL, a length or an identifier of the secret, not the secret.
const NOT_SECRET_NAME_ENDS: &[&str] = &[
    "_FILE", "_PATH", "_DIR", "_URL", "_URI", "_ENDPOINT", "_NAME", "_ID", "_TYPE", "_LENGTH", "_LEN", "_TTL", "_EXPIRY",
    "_EXPIRES", "_HEADER", "_PREFIX", "_ENV", "_VAR", "_MODE", "_METHOD", "_HOST", "_PORT", "_USER", "_USERNAME",
    "AUTHOR", "AUTHORS", "_REGION",
];

/// Values that stand for a secret rather than being one (lower case).
const PLACEHOLDERS: &[&str] = &[
    "changeme", "change_me", "change-me", "password", "passwd", "secret", "token", "example", "null", "none", "nil",
    "true", "false", "undefined", "redacted", "required", "optional", "string", "str", "bytes", "xxxxxx", "******",
    "dummy", "sample", "placeholder", "your_token", "your-token", "yourtoken", "your_password", "mysecret",
    "mypassword", "secretkey", "notasecret", "default", "hidden",
];

/// What a literal of the gate announces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hint {
    Pem,
    Jwt,
    Url,
    Structured,
    Name,
    Prefix,
}

/// Literals at least one of which a file holding a credential contains,
/// with what each announces: a cheap gate, not a detector. Names in their
/// usual spellings (`TOKEN`, `token`, `Token`, `apiKey`).
static GATE: LazyLock<Option<(AhoCorasick, Vec<Hint>)>> = LazyLock::new(|| {
    let mut needles: Vec<(String, Hint)> = vec![
        ("-----BEGIN".into(), Hint::Pem),
        ("eyJ".into(), Hint::Jwt),
        ("://".into(), Hint::Url),
        ("\"auths\"".into(), Hint::Structured),
        ("clusters:".into(), Hint::Structured),
        ("\"type\"".into(), Hint::Structured),
    ];
    for part in SECRET_NAME_PARTS {
        needles.extend(name_spellings(part).into_iter().map(|n| (n, Hint::Name)));
    }
    needles.extend(tokens::PREFIXES.iter().map(|(p, _, _)| ((*p).to_owned(), Hint::Prefix)));
    needles.sort_by(|a, b| a.0.cmp(&b.0));
    needles.dedup_by(|a, b| a.0 == b.0);
    // Case-sensitive and leftmost-first: the packed (SIMD) searcher applies,
    // which case-insensitive matching would rule out (several times slower
    // on source trees, measured by `cargo xtask bench scan`).
    let ac = AhoCorasick::builder().match_kind(aho_corasick::MatchKind::LeftmostFirst).build(needles.iter().map(|(n, _)| n)).ok()?;
    Some((ac, needles.into_iter().map(|(_, h)| h).collect()))
});

/// How a name part is spelled in names: `API_KEY`, `api_key`, `Api_key`,
/// `apiKey`, `ApiKey`.
fn name_spellings(part: &str) -> Vec<String> {
    let lower = part.to_ascii_lowercase();
    let capital = |w: &str| {
        let mut c = w.chars();
        c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
    };
    let mut out = vec![part.to_owned(), lower.clone(), capital(&lower)];
    if let Some((first, rest)) = lower.split_once('_') {
        let tail: String = rest.split('_').map(capital).collect();
        out.push(format!("{first}{tail}"));
        out.push(format!("{}{tail}", capital(first)));
    }
    out
}

static PEM_BEGIN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----").ok());

static JWT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9_-])(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)").ok()
});

/// A known prefix, then token characters; not inside a longer word.
static TOKEN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let alternatives: Vec<String> = tokens::PREFIXES.iter().map(|(p, _, _)| regex::escape(p)).collect();
    Regex::new(&format!(r"(?:^|[^A-Za-z0-9_+/.-])((?:{})[A-Za-z0-9_.=+/-]+)", alternatives.join("|"))).ok()
});

/// `NAME=value`, `export NAME=value`, `name: value`, `"name": "value"`,
/// `name := "value"`, one per line.
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)^[ \t]*(?:export[ \t]+|set[ \t]+|const[ \t]+|let[ \t]+|var[ \t]+)?["']?([A-Za-z_][A-Za-z0-9_.-]{0,127})["']?[ \t]*(?::=|=|:)[ \t]*(?:"([^"\r\n]+)"|'([^'\r\n]+)'|([^\s"'#,;]+))"#,
    )
    .ok()
});

/// `"name": "value"` anywhere (JSON written on one line).
static JSON_PAIR: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#""([A-Za-z_][A-Za-z0-9_.-]{0,127})"[ \t]*:[ \t]*"([^"\\\r\n]+)""#).ok());

/// `scheme://user:password@host`.
static URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s:/@\x22'<>]+:[^\s/@\x22'<>]+@[A-Za-z0-9._\[\]-]+").ok()
});

/// The credentials in one file, by content.
pub fn detect(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    if is_binary(bytes) {
        return Err(Unparsed::Binary);
    }
    let Some((gate, hints)) = GATE.as_ref() else { return Err(Unparsed::Unsupported("content detector unavailable".into())) };
    // One pass: which detectors have something to look at, and on which
    // lines (the line-level ones run on those lines only).
    let mut seen = [false; 6];
    let mut name_lines = Lines::default();
    let mut prefix_lines = Lines::default();
    let mut url_lines = Lines::default();
    for m in gate.find_iter(bytes) {
        let hint = hints[m.pattern().as_usize()];
        seen[hint as usize] = true;
        match hint {
            // Only where the name is followed by `=` or `:`: most
            // mentions of a token or a password in text and code are not
            // assignments.
            Hint::Name if assigned_at(bytes, m.start()) => name_lines.add(bytes, m.start()),
            Hint::Prefix => prefix_lines.add(bytes, m.start()),
            Hint::Url => url_lines.add(bytes, m.start()),
            _ => {}
        }
    }
    if !seen.iter().any(|&s| s) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let structured = (seen[Hint::Structured as usize] || seen[Hint::Name as usize]) && structured(bytes, keyed, &mut out);
    if seen[Hint::Pem as usize] {
        private_keys(bytes, keyed, &mut out);
    }
    if seen[Hint::Jwt as usize] {
        jwts(bytes, keyed, &mut out);
    }
    for (start, end) in prefix_lines.0 {
        prefixed_tokens(bytes, start, end, keyed, &mut out);
    }
    if !structured {
        for (start, end) in name_lines.0 {
            assignments(bytes, start, end, keyed, &mut out);
        }
    }
    for (start, end) in url_lines.0 {
        urls(bytes, start, end, keyed, &mut out);
    }
    Ok(out)
}

/// Whether the word around `at` is followed by `=` or `:` (after an
/// optional closing quote and blanks), not `==` or `::`.
fn assigned_at(bytes: &[u8], at: usize) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let mut i = at;
    while i < bytes.len() && word(&bytes[i]) {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
        i += 1;
    }
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    match (bytes.get(i), bytes.get(i + 1)) {
        (Some(b'='), next) => next != Some(&b'='),
        (Some(b':'), next) => next != Some(&b':'),
        _ => false,
    }
}

/// Line ranges `(start, end)` holding a gate hit, each once, in order.
#[derive(Default)]
struct Lines(Vec<(usize, usize)>);

impl Lines {
    fn add(&mut self, bytes: &[u8], at: usize) {
        if self.0.last().is_some_and(|&(s, e)| s <= at && at < e) {
            return;
        }
        let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |p| p + 1);
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |p| at + p);
        self.0.push((start, end.max(at + 1).min(bytes.len())));
    }
}

fn line_of(bytes: &[u8], offset: usize) -> String {
    (memchr::memchr_iter(b'\n', &bytes[..offset.min(bytes.len())]).count() + 1).to_string()
}

fn tag(id: Identity, detector: &'static str, bytes: &[u8], offset: usize) -> Identity {
    id.with("nhi.detector", detector).with("nhi.content.line", line_of(bytes, offset))
}

/// Whole-file formats recognised by their markers. True when one of them
/// named credentials (its own fields are then not assignments).
fn structured(bytes: &[u8], keyed: &Keyed, out: &mut Vec<Identity>) -> bool {
    let has = |needle: &[u8]| memfind(bytes, needle);
    let starts_json = bytes.trim_ascii_start().first() == Some(&b'{');
    let mut found = Vec::new();
    if starts_json && has(b"\"type\"") && (has(b"\"private_key\"") || has(b"\"refresh_token\"") || has(b"\"audience\"")) {
        found.extend(gcp::json(bytes, keyed).unwrap_or_default().into_iter().map(|i| (i, "gcp-json")));
    }
    if starts_json && has(b"\"auths\"") {
        found.extend(docker::auth(bytes, keyed).unwrap_or_default().into_iter().map(|i| (i, "registry-auth")));
    }
    if has(b"clusters:") && has(b"users:") {
        found.extend(kube::kubeconfig(bytes, keyed).unwrap_or_default().into_iter().map(|i| (i, "kubeconfig")));
    }
    if (has(b"aws_access_key_id") || has(b"aws_secret_access_key")) && has(b"[") {
        // Key ids and secret keys; the config-only entries (roles, SSO)
        // name no secret held here.
        let keys = aws::ini(bytes, keyed).unwrap_or_default();
        found.extend(
            keys.into_iter()
                .filter(|i| matches!(i.kind.as_str(), "aws.access_key" | "aws.session_key" | "aws.secret_key"))
                .map(|i| (i, "aws-credentials")),
        );
    }
    let any = !found.is_empty();
    out.extend(found.into_iter().map(|(i, d)| i.with("nhi.detector", d)));
    any
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// PEM and OpenSSH private-key blocks; certificates and public keys are
/// skipped by the expression, undecodable blocks (documentation
/// placeholders) by the parsers.
fn private_keys(bytes: &[u8], keyed: &Keyed, out: &mut Vec<Identity>) {
    let Some(re) = PEM_BEGIN.as_ref() else { return };
    for c in re.captures_iter(bytes) {
        let (Some(all), Some(label)) = (c.get(0), c.get(1)) else { continue };
        let mut end_marker = b"-----END ".to_vec();
        end_marker.extend_from_slice(label.as_bytes());
        end_marker.extend_from_slice(b"-----");
        let rest = &bytes[all.start()..];
        let Some(end) = memchr::memmem::find(rest, &end_marker) else { continue };
        let block = &rest[..end + end_marker.len()];
        let Ok(text) = std::str::from_utf8(block) else { continue };
        let ids = if label.as_bytes() == b"OPENSSH PRIVATE KEY" { ssh::openssh(text, keyed) } else { x509::tls(block, keyed) };
        for id in ids.unwrap_or_default() {
            out.push(tag(id, "private-key", bytes, all.start()));
        }
    }
}

fn jwts(bytes: &[u8], keyed: &Keyed, out: &mut Vec<Identity>) {
    let Some(re) = JWT.as_ref() else { return };
    for c in re.captures_iter(bytes) {
        let Some(m) = c.get(1) else { continue };
        let Ok(t) = std::str::from_utf8(m.as_bytes()) else { continue };
        if let Ok(id) = jwt::token_identity(t, "", keyed) {
            out.push(tag(id, "jwt", bytes, m.start()));
        }
    }
}

/// Random-looking: at least two of lower case, upper case and digits
/// after the prefix, so that `hf_hub_download` is not a Hugging Face token.
fn random_looking(rest: &[u8]) -> bool {
    let classes = [
        rest.iter().any(u8::is_ascii_lowercase),
        rest.iter().any(u8::is_ascii_uppercase),
        rest.iter().any(u8::is_ascii_digit),
    ];
    classes.iter().filter(|&&c| c).count() >= 2 && rest.len() >= 8
}

fn prefixed_tokens(bytes: &[u8], start: usize, end: usize, keyed: &Keyed, out: &mut Vec<Identity>) {
    let Some(re) = TOKEN.as_ref() else { return };
    let line = &bytes[start..end];
    for c in re.captures_iter(line) {
        let Some(m) = c.get(1) else { continue };
        // A sentence's full stop or a base64 pad run is not the token's.
        let raw = m.as_bytes();
        let t = raw.strip_suffix(b".").unwrap_or(raw);
        let Ok(text) = std::str::from_utf8(t) else { continue };
        let Some((kind, vis)) = tokens::classify(text) else { continue };
        let prefix_len = tokens::PREFIXES.iter().find(|(_, k, _)| *k == kind).map_or(0, |(p, _, _)| p.len());
        if vis == tokens::Visibility::Secret && !random_looking(&t[prefix_len.min(t.len())..]) {
            continue;
        }
        if let Some(id) = tokens::identity(t, kind, keyed) {
            out.push(tag(id, "token-prefix", bytes, start + m.start()));
        }
    }
}

/// Whether a variable or key name announces a secret value.
/// `AUTH` alone is too common a word part in configuration
/// (`authorityKeyIdentifier`, `auth.tunneling.disabledSchemes`): here it
/// counts only as the whole name or its last part (`NPM_AUTH`, `_auth`).
pub(crate) fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace(['-', '.'], "_");
    let by_part = SECRET_NAME_PARTS.iter().filter(|p| **p != "AUTH").any(|p| upper.contains(p));
    let auth = upper == "AUTH" || upper.ends_with("_AUTH");
    (by_part || auth) && !NOT_SECRET_NAME_ENDS.iter().any(|e| upper.ends_with(e))
}

/// Whether a value stands for a secret rather than being one: empty or
/// short, a single word, a reference (`$VAR`, `${VAR}`, `{{ .x }}`, `<password>`,
/// `%(x)s`), a path, code (`get_token()`, `self.token`, `os.environ[`), a placeholder
/// word or a run of one character.
pub(crate) fn placeholder(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    if v.len() < 6 {
        return true;
    }
    let Ok(s) = std::str::from_utf8(v) else { return false };
    let lower = s.to_ascii_lowercase();
    let first = v[0];
    if matches!(first, b'$' | b'{' | b'<' | b'%' | b'/' | b'~' | b'@' | b'[' | b'(' | b'*')
        || s.starts_with("./")
        || s.contains("${")
        || s.contains("{{")
        || s.contains('(')
        || s.contains('[')
        || PLACEHOLDERS.contains(&lower.as_str())
        || ["example", "placeholder", "dummy", "your_", "your-", "changeme", "xxxx", "****", "redacted", "<", "env("]
            .iter()
            .any(|p| lower.contains(p))
        || v.iter().all(|&b| b == v[0])
        // A word (`Basic`, `disabled`, `required`): configuration, not a
        // secret.
        || v.iter().all(u8::is_ascii_alphabetic)
    {
        return true;
    }
    // `config.password`, `os.environ`, `settings.API_TOKEN`: code.
    s.contains('.')
        && s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        && s.split('.').all(|p| p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_'))
        && !s.bytes().any(|b| b.is_ascii_digit())
}

fn assignments(bytes: &[u8], start: usize, end: usize, keyed: &Keyed, out: &mut Vec<Identity>) {
    let (Some(re), Some(json)) = (ASSIGNMENT.as_ref(), JSON_PAIR.as_ref()) else { return };
    let line = &bytes[start..end];
    // No `=` or `:` on the line: no assignment (most lines that merely
    // mention a token or a password).
    if memchr::memchr2(b'=', b':', line).is_none() {
        return;
    }
    let lines = re.captures_iter(line);
    let pairs = json.captures_iter(line);
    let mut seen = std::collections::HashSet::new();
    for c in lines.chain(pairs) {
        let (Some(name), Some(value)) = (c.get(1), c.get(2).or_else(|| c.get(3)).or_else(|| c.get(4))) else { continue };
        // A JSON pair at the start of a line is found by both expressions.
        if !seen.insert(value.start()) {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name.as_bytes()) else { continue };
        if !secret_name(name) || placeholder(value.as_bytes()) {
            continue;
        }
        // The value is a secret from here on.
        let secret = Secret::new(value.as_bytes());
        if let Some(id) = tokens::identity(secret.expose(), tokens::SECRET_VALUE_KIND, keyed) {
            out.push(tag(id.with("nhi.content.name", name), "assignment", bytes, start + value.start()));
        }
    }
}

fn urls(bytes: &[u8], start: usize, end: usize, keyed: &Keyed, out: &mut Vec<Identity>) {
    let Some(re) = URL.as_ref() else { return };
    let line = &bytes[start..end];
    if memchr::memchr(b'@', line).is_none() {
        return;
    }
    for m in re.find_iter(line) {
        let Ok(url) = std::str::from_utf8(m.as_bytes()) else { continue };
        let Some((_, password)) = git_credentials::userinfo(url) else { continue };
        if password.is_none_or(|p| placeholder(p.as_bytes())) {
            continue;
        }
        if let Some(id) = git_credentials::url_identity(url, "url.login", "url.token", keyed) {
            out.push(tag(id, "url-password", bytes, start + m.start()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> Keyed {
        Keyed::new(Secret::new([9u8; 32]))
    }

    fn kinds(text: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = detect(text.as_bytes(), &keyed())
            .unwrap()
            .into_iter()
            .map(|i| (i.kind.clone(), i.attribute("nhi.detector").unwrap_or_default().to_owned()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn tokens_keys_assignments_and_urls_anywhere() {
        let text = "# deploy notes\nexport DB_PASSWORD='Zq8-wT4u!r0'\nurl = postgres://app:S3cr3t-Pw9@db.internal:5432/app\n\
                    gh = ghp_SYNTHETIC0000000000000000000000000001\nkey AKIAIOSFODNN7EXAMPLE here\n";
        assert_eq!(
            kinds(text),
            [
                ("aws.access_key".into(), "token-prefix".into()),
                ("github.pat".into(), "token-prefix".into()),
                ("secret.value".into(), "assignment".into()),
                ("url.login".into(), "url-password".into()),
            ]
        );
        let ids = detect(text.as_bytes(), &keyed()).unwrap();
        let url = ids.iter().find(|i| i.kind == "url.login").unwrap();
        assert_eq!(url.id, "app@db.internal");
        assert_eq!(url.attribute("nhi.content.line"), Some("3"));
        let shown = format!("{ids:?}");
        for secret in ["Zq8-wT4u!r0", "S3cr3t-Pw9", "ghp_SYNTHETIC"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn placeholders_code_and_public_material_are_not_credentials() {
        let text = "PASSWORD=${DB_PASSWORD}\ntoken: <your token>\napi_key = get_api_key()\nsecret = settings.secret\n\
                    TOKEN_FILE=/run/secrets/token\npassword: changeme\nhf_hub_download_function\n\
                    https://user:password@example.com/\nGITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
                    -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\
                    -----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(kinds(text), Vec::<(String, String)>::new());
    }

    #[test]
    fn every_expression_compiles() {
        assert!(GATE.is_some() && PEM_BEGIN.is_some() && JWT.is_some() && TOKEN.is_some());
        assert!(ASSIGNMENT.is_some() && URL.is_some() && JSON_PAIR.is_some());
    }

    #[test]
    fn binary_and_unrelated_files() {
        assert_eq!(detect(b"\x7fELF\0\0\0AKIAIOSFODNN7EXAMPLE", &keyed()), Err(Unparsed::Binary));
        assert_eq!(detect(b"just some prose about nothing in particular", &keyed()), Ok(vec![]));
        // Latin-1 elsewhere does not hide a key id.
        let ids = detect(b"# caf\xe9\nid AKIAIOSFODNN7EXAMPLE\n", &keyed()).unwrap();
        assert_eq!(ids[0].id, "AKIAIOSFODNN7EXAMPLE");
    }
}
