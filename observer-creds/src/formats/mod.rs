//! The parsers, one module per file format, and the dispatch by [`Format`].
//!
//! Every parser takes the whole file (already bounded in size by the
//! caller), the catalog kind of the rule that matched (a fallback for
//! formats that do not name their own kind) and the deployment's [`Keyed`]
//! fingerprinter, and returns identities or an [`Unparsed`] reason.
use std::{fmt, str::FromStr};

use crate::{Identity, Keyed, Parsed, Secret, Unparsed};

mod aws;
mod azure;
pub mod content;
mod docker;
mod dotenv;
mod gcp;
mod gh;
mod git_credentials;
mod ini;
pub(crate) mod jwt;
mod keys;
mod kube;
mod netrc;
mod npmrc;
mod pem;
mod pgpass;
mod pypirc;
mod ssh;
mod terraform;
mod token;
mod x509;

/// How a credential file is laid out: which parser reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Guess from the content: PEM, DER, JSON, YAML, JWT, a bare token.
    Auto,
    /// `~/.aws/credentials` and `~/.aws/config` (INI, one section per profile).
    AwsIni,
    /// `~/.aws/sso/cache/*.json`: SSO sessions and client registrations.
    AwsSsoCache,
    /// `~/.aws/cli/cache/*.json`: assumed-role temporary credentials.
    AwsCliCache,
    /// GCP JSON: service-account keys, application-default credentials
    /// (authorized user, external account, impersonation).
    GcpJson,
    /// Azure CLI state: `msal_token_cache.json`, `azureProfile.json`,
    /// `service_principal_entries.json`, legacy `accessTokens.json`.
    AzureCli,
    /// kubeconfig: every user entry (client certificate, token, basic auth,
    /// exec plugin, auth provider) with the clusters that use it.
    Kubeconfig,
    /// A JWT: Kubernetes service-account tokens (projected, legacy, EKS IRSA
    /// and pod identity) and SPIFFE JWT-SVIDs.
    Jwt,
    /// SSH private keys: OpenSSH and PEM (PKCS#1, SEC1, PKCS#8).
    SshPrivateKey,
    /// TLS material: PEM bundles (certificates and keys), DER, unencrypted
    /// PKCS#12. X.509-SVIDs (a `spiffe://` URI SAN) are named by SPIFFE id.
    Tls,
    /// Docker `config.json` and Podman/containers `auth.json`.
    DockerAuth,
    Netrc,
    GitCredentials,
    /// GitHub CLI `hosts.yml`.
    GhHosts,
    Npmrc,
    Pypirc,
    Pgpass,
    /// A file that holds one opaque token (`~/.vault-token`).
    Token,
    /// Terraform `credentials.tfrc.json`.
    TerraformCredentials,
    /// `.env` files.
    Dotenv,
    /// Any text file, searched for credentials by content (what the
    /// at-rest scan found outside the catalog's paths).
    Content,
}

/// Every format, for docs, config errors and the fuzz targets.
pub const ALL: &[Format] = &[
    Format::Auto,
    Format::AwsIni,
    Format::AwsSsoCache,
    Format::AwsCliCache,
    Format::GcpJson,
    Format::AzureCli,
    Format::Kubeconfig,
    Format::Jwt,
    Format::SshPrivateKey,
    Format::Tls,
    Format::DockerAuth,
    Format::Netrc,
    Format::GitCredentials,
    Format::GhHosts,
    Format::Npmrc,
    Format::Pypirc,
    Format::Pgpass,
    Format::Token,
    Format::TerraformCredentials,
    Format::Dotenv,
    Format::Content,
];

impl Format {
    pub const ALL: &'static [Format] = ALL;

    /// The name used in config files and output (`aws-ini`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::AwsIni => "aws-ini",
            Self::AwsSsoCache => "aws-sso-cache",
            Self::AwsCliCache => "aws-cli-cache",
            Self::GcpJson => "gcp-json",
            Self::AzureCli => "azure-cli",
            Self::Kubeconfig => "kubeconfig",
            Self::Jwt => "jwt",
            Self::SshPrivateKey => "ssh-private-key",
            Self::Tls => "tls",
            Self::DockerAuth => "docker-auth",
            Self::Netrc => "netrc",
            Self::GitCredentials => "git-credentials",
            Self::GhHosts => "gh-hosts",
            Self::Npmrc => "npmrc",
            Self::Pypirc => "pypirc",
            Self::Pgpass => "pgpass",
            Self::Token => "token",
            Self::TerraformCredentials => "terraform-credentials",
            Self::Dotenv => "dotenv",
            Self::Content => "content",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential format `{0}` (known: {list})", list = ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter().copied().find(|f| f.name() == s).ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

type ParseResult = Result<Vec<Identity>, Unparsed>;

/// Parses one file. `kind` is the catalog kind of the rule that matched.
pub fn parse(format: Format, input: &Secret, kind: &str, keyed: &Keyed) -> Parsed {
    let bytes = input.expose();
    if bytes.trim_ascii().is_empty() {
        return Parsed::unparsed(Unparsed::Empty);
    }
    let result = match format {
        Format::Auto => auto(bytes, kind, keyed),
        Format::AwsIni => aws::ini(bytes, keyed),
        Format::AwsSsoCache => aws::sso_cache(bytes, keyed),
        Format::AwsCliCache => aws::cli_cache(bytes),
        Format::GcpJson => gcp::json(bytes, keyed),
        Format::AzureCli => azure::json(bytes),
        Format::Kubeconfig => kube::kubeconfig(bytes, keyed),
        Format::Jwt => jwt::file(bytes, kind, keyed),
        Format::SshPrivateKey => ssh::private_key(bytes, keyed),
        Format::Tls => x509::tls(bytes, keyed),
        Format::DockerAuth => docker::auth(bytes, keyed),
        Format::Netrc => netrc::netrc(bytes, keyed),
        Format::GitCredentials => git_credentials::parse(bytes, keyed),
        Format::GhHosts => gh::hosts(bytes, keyed),
        Format::Npmrc => npmrc::parse(bytes, keyed),
        Format::Pypirc => pypirc::parse(bytes, keyed),
        Format::Pgpass => pgpass::parse(bytes),
        Format::Token => token::file(bytes, kind, keyed),
        Format::TerraformCredentials => terraform::credentials(bytes, keyed),
        Format::Dotenv => dotenv::parse(bytes, keyed),
        Format::Content => content::detect(bytes, keyed),
    };
    match result {
        Ok(mut identities) if !identities.is_empty() => {
            dedup(&mut identities);
            Parsed { identities, unparsed: None }
        }
        Ok(_) => Parsed::unparsed(Unparsed::NoCredential),
        Err(reason) => Parsed::unparsed(reason),
    }
}

/// Same kind and id twice (a key and its certificate name the same SPKI,
/// a user listed under two contexts): keep the first.
fn dedup(ids: &mut Vec<Identity>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|i| seen.insert((i.kind.clone(), i.id.clone())));
}

/// Content sniffing for rules without a format.
fn auto(bytes: &[u8], kind: &str, keyed: &Keyed) -> ParseResult {
    let text = std::str::from_utf8(bytes).ok();
    let trimmed = text.map(str::trim_start).unwrap_or_default();
    if trimmed.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return ssh::private_key(bytes, keyed);
    }
    if trimmed.starts_with("-----BEGIN") {
        // A PEM key is an SSH key or a TLS key by where it lives.
        if kind.starts_with("ssh.") {
            return ssh::private_key(bytes, keyed);
        }
        return x509::tls(bytes, keyed);
    }
    if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-sha2-") || trimmed.starts_with("sk-ssh-") {
        return ssh::private_key(bytes, keyed);
    }
    if text.is_none() {
        // DER certificate or PKCS#12: binary.
        return x509::tls(bytes, keyed);
    }
    if trimmed.starts_with('{') {
        for f in [gcp::json, docker::auth, aws::sso_cache] {
            if let Ok(ids) = f(bytes, keyed)
                && !ids.is_empty()
            {
                return Ok(ids);
            }
        }
        if let Ok(ids) = aws::cli_cache(bytes)
            && !ids.is_empty()
        {
            return Ok(ids);
        }
        return azure::json(bytes);
    }
    if jwt::looks_like_jwt(trimmed.trim_end()) {
        return jwt::file(bytes, kind, keyed);
    }
    if trimmed.starts_with("apiVersion:") || trimmed.contains("\nclusters:") {
        return kube::kubeconfig(bytes, keyed);
    }
    token::file(bytes, kind, keyed)
}

/// Seconds since the epoch as RFC 3339, if representable.
fn rfc3339(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

/// The file as UTF-8 text, or [`Unparsed::Binary`].
fn text(bytes: &[u8]) -> Result<&str, Unparsed> {
    let t = std::str::from_utf8(bytes).map_err(|_| Unparsed::Binary)?;
    if t.contains('\0') {
        return Err(Unparsed::Binary);
    }
    Ok(t.strip_prefix('\u{feff}').unwrap_or(t))
}

/// The file as text even when some bytes are not UTF-8 (a Latin-1 `é` in
/// a comment): each invalid sequence becomes U+FFFD, in a [`Secret`]
/// sized for the worst case before the first byte is copied, so no
/// reallocation leaves a copy behind. A NUL byte still means binary.
fn text_lossy(bytes: &[u8]) -> Result<Secret, Unparsed> {
    if bytes.contains(&0) {
        return Err(Unparsed::Binary);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(3));
    for chunk in bytes.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    Ok(Secret::new(out))
}

/// serde_json from bytes, with the error as an [`Unparsed`].
fn json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Unparsed> {
    let t = text(bytes)?;
    serde_json::from_str(t).map_err(|e| json_error(&e))
}

/// A serde_json error without its message: serde messages quote the
/// offending value (`invalid type: string "..."`), which may be a secret.
fn json_error(e: &serde_json::Error) -> Unparsed {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "JSON syntax error",
        Category::Eof => "JSON ends early",
        Category::Data => "unexpected JSON structure",
        Category::Io => "JSON read error",
    };
    Unparsed::Malformed(format!("{what} at line {} column {}", e.line(), e.column()))
}

/// A YAML error without its message, for the same reason as [`json_error`].
fn yaml_error(e: &serde_yaml_ng::Error) -> Unparsed {
    match e.location() {
        Some(l) => Unparsed::Malformed(format!("YAML error at line {} column {}", l.line(), l.column())),
        None => Unparsed::Malformed("YAML error".into()),
    }
}

#[cfg(test)]
mod tests;
