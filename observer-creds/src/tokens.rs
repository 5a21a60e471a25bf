//! Known prefixes of opaque tokens, and the identity of a token value.
//!
//! A value that starts with a known prefix is that vendor's token kind,
//! wherever it was found (a `.env` file, a netrc password, a token file), so
//! the same token gets the same kind and keyed id everywhere. AWS access key
//! ids are the one prefix that is not secret: the value itself is the id.
use crate::{Identity, Keyed};

/// Whether the value itself is the identity (AWS key ids) or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The value is a public identifier.
    Public,
    /// The value is a secret: only its keyed fingerprint is shown.
    Secret,
}

/// (prefix, kind, visibility). Longer prefixes first where they overlap.
pub const PREFIXES: &[(&str, &str, Visibility)] = &[
    ("AKIA", "aws.access_key", Visibility::Public),
    ("ASIA", "aws.session_key", Visibility::Public),
    ("github_pat_", "github.fine_grained_pat", Visibility::Secret),
    ("ghp_", "github.pat", Visibility::Secret),
    ("gho_", "github.oauth_token", Visibility::Secret),
    ("ghu_", "github.user_token", Visibility::Secret),
    ("ghs_", "github.app_token", Visibility::Secret),
    ("ghr_", "github.refresh_token", Visibility::Secret),
    ("glpat-", "gitlab.pat", Visibility::Secret),
    ("gldt-", "gitlab.deploy_token", Visibility::Secret),
    ("glrt-", "gitlab.runner_token", Visibility::Secret),
    ("glptt-", "gitlab.trigger_token", Visibility::Secret),
    ("xoxb-", "slack.bot_token", Visibility::Secret),
    ("xoxp-", "slack.user_token", Visibility::Secret),
    ("xoxa-", "slack.app_token", Visibility::Secret),
    ("xoxe-", "slack.refresh_token", Visibility::Secret),
    ("xapp-", "slack.app_level_token", Visibility::Secret),
    ("sk_live_", "stripe.secret_key", Visibility::Secret),
    ("rk_live_", "stripe.restricted_key", Visibility::Secret),
    ("sk_test_", "stripe.test_secret_key", Visibility::Secret),
    ("npm_", "npm.token", Visibility::Secret),
    ("pypi-", "pypi.token", Visibility::Secret),
    ("hvs.", "vault.service_token", Visibility::Secret),
    ("hvb.", "vault.batch_token", Visibility::Secret),
    ("hvr.", "vault.recovery_token", Visibility::Secret),
    ("sk-ant-", "anthropic.api_key", Visibility::Secret),
    ("sk-proj-", "openai.api_key", Visibility::Secret),
    ("AIza", "gcp.api_key", Visibility::Secret),
    ("ya29.", "gcp.oauth_access_token", Visibility::Secret),
    ("dop_v1_", "digitalocean.token", Visibility::Secret),
    ("dckr_pat_", "docker.pat", Visibility::Secret),
    ("hf_", "huggingface.token", Visibility::Secret),
    ("glsa_", "grafana.service_account_token", Visibility::Secret),
    ("shpat_", "shopify.access_token", Visibility::Secret),
    ("SG.", "sendgrid.api_key", Visibility::Secret),
    ("AGE-SECRET-KEY-1", "age.secret_key", Visibility::Secret),
];

/// The kind of a secret value with no known prefix, named only by the
/// variable or key that holds it (`DB_PASSWORD=...` in a `.env` file, in
/// any text file, or in a process's environment): the same value gets the
/// same keyed id wherever it is found.
pub const SECRET_VALUE_KIND: &str = "secret.value";

/// The shortest token we classify by prefix: shorter values are too likely
/// to be ordinary words that happen to share a prefix.
pub const MIN_TOKEN_LEN: usize = 16;

/// The kind of a token value from its prefix, if known.
pub fn classify(value: &str) -> Option<(&'static str, Visibility)> {
    let value = value.trim();
    if value.len() < MIN_TOKEN_LEN {
        return None;
    }
    // The prefix first (its first byte, then the rest), the whole value's
    // bytes only for a candidate: most values have no known prefix.
    let first = value.as_bytes()[0];
    let (_, kind, vis) = PREFIXES.iter().find(|(p, _, _)| p.as_bytes()[0] == first && value.starts_with(p))?;
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if *vis == Visibility::Public && !is_aws_key_id(value) {
        return None;
    }
    Some((kind, *vis))
}

/// `AKIA`/`ASIA` + 16 upper-case letters or digits.
pub fn is_aws_key_id(v: &str) -> bool {
    v.len() == 20 && (v.starts_with("AKIA") || v.starts_with("ASIA")) && v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The identity of a token value found in a file: by prefix when known,
/// else `fallback_kind` plus the keyed fingerprint. None for an empty value.
pub fn identity(value: &[u8], fallback_kind: &str, keyed: &Keyed) -> Option<Identity> {
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(trimmed).ok();
    match text.and_then(classify) {
        Some((kind, Visibility::Public)) => Some(Identity::new(kind, text.unwrap_or_default())),
        Some((kind, Visibility::Secret)) => Some(Identity::new(kind, keyed.id(kind, trimmed))),
        None if text.is_some_and(|t| t.contains(".atlasv1.")) => {
            Some(Identity::new("terraform.token", keyed.id("terraform.token", trimmed)))
        }
        None => Some(Identity::new(fallback_kind, keyed.id(fallback_kind, trimmed))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn prefixes_classify_and_short_values_do_not() {
        assert_eq!(classify("ghp_0123456789abcdefghijABCDEFGHIJ012345"), Some(("github.pat", Visibility::Secret)));
        assert_eq!(classify("github_pat_11ABCDEFG0123456789_abcdef"), Some(("github.fine_grained_pat", Visibility::Secret)));
        assert_eq!(classify("AKIAIOSFODNN7EXAMPLE"), Some(("aws.access_key", Visibility::Public)));
        assert_eq!(classify("AKIA-not-a-key-id-at-all"), None);
        assert_eq!(classify("npm_x"), None);
        assert_eq!(classify("hello world with spaces"), None);
    }

    #[test]
    fn token_identity_never_holds_the_token() {
        let keyed = Keyed::new(Secret::new([7u8; 32]));
        let tok = b"glpat-synthetic0123456789abcd";
        let id = identity(tok, "opaque.token", &keyed).unwrap();
        assert_eq!(id.kind, "gitlab.pat");
        assert!(!id.id.contains("synthetic"));
        let aws = identity(b" AKIAIOSFODNN7EXAMPLE\n", "x", &keyed).unwrap();
        assert_eq!((aws.kind.as_str(), aws.id.as_str()), ("aws.access_key", "AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(identity(b"  ", "x", &keyed), None);
        assert!(identity(b"some-opaque-secret", "vault.token", &keyed).unwrap().id.starts_with("vault.token:hmac-sha256:"));
    }
}
