//! Command-line arguments, with values that look like secrets masked.
//!
//! Input: argv as the kernel copied it (a [`Secret`]: `--password=hunter2`
//! happens). Output: the arguments as strings, each secret-looking value
//! replaced by [`MASK`]. Only used when argument capture is on (off by
//! default). Masked:
//! - the value of `--name=value`, `-name=value` and `NAME=value` when the
//!   name contains a secret word (password, token, secret, key, auth, ...);
//! - the argument after a flag of that kind (`--token abc`);
//! - the password of a URL's user info (`https://user:pass@host`);
//! - anything that looks like a token by itself: known prefixes (`AKIA`,
//!   `ghp_`, `glpat-`, `xoxb-`, `sk-`, JWTs, PEM blocks) or a long string
//!   of mixed letters and digits with high entropy.
//!
//! Masking is a heuristic: it errs towards masking.
use crate::secret::Secret;

pub const MASK: &str = "<masked>";

/// Words that make a flag or variable name a secret's name.
const SECRET_WORDS: &[&str] = &[
    "password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "api-key", "accesskey", "access_key",
    "access-key", "auth", "credential", "private", "privkey", "passphrase", "session", "cookie", "bearer",
];

/// Prefixes of well-known token formats.
const TOKEN_PREFIXES: &[&str] = &[
    "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-",
    "xoxs-", "sk-", "sk_live_", "rk_live_", "hvs.", "hvb.", "AIza", "eyJ", "-----BEGIN",
];

fn secret_name(name: &str) -> bool {
    let lower = name.trim_start_matches('-').to_ascii_lowercase();
    !lower.is_empty() && SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Whether a bare value looks like a credential by itself.
pub fn looks_like_token(v: &str) -> bool {
    if v.len() >= 12 && TOKEN_PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    if v.len() < 24 || v.contains('/') || v.contains(' ') {
        return false;
    }
    let classes = [
        v.bytes().any(|b| b.is_ascii_lowercase()),
        v.bytes().any(|b| b.is_ascii_uppercase()),
        v.bytes().any(|b| b.is_ascii_digit()),
    ];
    classes.iter().filter(|&&c| c).count() >= 3 && entropy(v) >= 4.0
}

/// Shannon entropy in bits per byte.
fn entropy(v: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in v.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

/// Masks the password in `scheme://user:password@host...`.
fn mask_url_password(arg: &str) -> Option<String> {
    let (scheme, rest) = arg.split_once("://")?;
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{MASK}{}", &rest[at..]))
}

fn mask_one(arg: &str, after_secret_flag: bool) -> String {
    if after_secret_flag && !arg.starts_with('-') {
        return MASK.to_owned();
    }
    if let Some(masked) = mask_url_password(arg) {
        return masked;
    }
    if let Some((name, value)) = arg.split_once('=')
        && !value.is_empty()
        && (secret_name(name) || looks_like_token(value))
    {
        return format!("{name}={MASK}");
    }
    if looks_like_token(arg) {
        return MASK.to_owned();
    }
    arg.to_owned()
}

/// argv (NUL-separated) to strings, with secret-looking values masked. A
/// cut-off last argument is kept (masked like any other).
pub fn mask(args: &Secret) -> Vec<String> {
    let bytes = args.expose();
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut after_secret_flag = false;
    for raw in bytes.split(|&b| b == 0) {
        let arg = String::from_utf8_lossy(raw);
        out.push(mask_one(&arg, after_secret_flag));
        // `--token VALUE`: a flag with a secret name and no `=value`.
        after_secret_flag = arg.starts_with('-') && !arg.contains('=') && secret_name(&arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Secret {
        Secret::new(args.join("\0").into_bytes())
    }

    #[test]
    fn masks_secret_values_and_keeps_the_rest() {
        let got = mask(&argv(&[
            "mysql",
            "--user=app",
            "--password=hunter2",
            "-h",
            "db.internal",
            "--token",
            "abc123",
            "--verbose",
            "https://deploy:s3cr3t@git.example/repo.git",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
            "/usr/share/doc/some-long-path-name/README.md",
            "report-2026-11-23.csv",
        ]));
        assert_eq!(
            got,
            [
                "mysql",
                "--user=app",
                "--password=<masked>",
                "-h",
                "db.internal",
                "--token",
                "<masked>",
                "--verbose",
                "https://deploy:<masked>@git.example/repo.git",
                "AWS_SECRET_ACCESS_KEY=<masked>",
                "<masked>",
                "<masked>",
                "/usr/share/doc/some-long-path-name/README.md",
                "report-2026-11-23.csv",
            ]
        );
    }

    #[test]
    fn high_entropy_strings_are_masked_plain_words_are_not() {
        assert!(looks_like_token("q8Zt3LkP0vX2mN7bR4yW9cD1"));
        assert!(!looks_like_token("this-is-just-a-long-argument-name"));
        assert!(!looks_like_token("0123456789abcdef0123456789abcdef"), "hex digests are not masked");
        assert!(looks_like_token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig"));
    }

    #[test]
    fn empty_and_trailing_nul() {
        assert!(mask(&Secret::new(Vec::new())).is_empty());
        assert_eq!(mask(&Secret::new(b"cat\0/etc/hosts\0".to_vec())), ["cat", "/etc/hosts"]);
    }
}
