//! AWS: shared credentials and config files (INI), the SSO token cache and
//! the CLI's assumed-role cache (JSON).
//!
//! Identities: an access key by its key id (`AKIA...`, public by design);
//! a role by its ARN; an IAM Identity Center (SSO) role by account and role
//! name; an SSO session by its start URL. A secret key without a key id
//! and a `credential_process` command get keyed fingerprints.
use serde::Deserialize;

use super::{ParseResult, ini, json, text, text_lossy};
use crate::{Identity, Keyed, Secret, Unparsed, tokens};

pub fn ini(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    // The CLI reads these files as text whatever a comment holds: so do we.
    let lossy;
    let t = match text(bytes) {
        Ok(t) => t,
        Err(Unparsed::Binary) => {
            lossy = text_lossy(bytes)?;
            lossy.expose_str().unwrap_or_default()
        }
        Err(e) => return Err(e),
    };
    let (entries, bad) = ini::entries(t);
    if entries.is_empty() && !bad.is_empty() {
        return Err(Unparsed::Malformed(format!("no INI entries; unreadable lines {bad:?}")));
    }
    let mut out = Vec::new();
    for section in ini::sections(&entries) {
        if section.starts_with("sso-session ") || section.starts_with("services ") {
            continue;
        }
        let profile = section.strip_prefix("profile ").unwrap_or(section).trim();
        let get = |k| ini::get(&entries, section, k).filter(|v| !v.is_empty());
        if let Some(key_id) = get("aws_access_key_id") {
            let id = if tokens::is_aws_key_id(key_id) {
                let kind = if key_id.starts_with("ASIA") { "aws.session_key" } else { "aws.access_key" };
                Identity::new(kind, key_id)
            } else {
                // Not a key id: do not risk printing a misplaced secret.
                Identity::new("aws.access_key", keyed.id("aws.access_key", key_id.as_bytes()))
            };
            out.push(id.with("nhi.aws.profile", profile));
        } else if let Some(secret) = get("aws_secret_access_key") {
            let secret = Secret::new(secret.as_bytes());
            out.push(
                Identity::new("aws.secret_key", keyed.id("aws.secret_key", secret.expose()))
                    .with("nhi.aws.profile", profile),
            );
        }
        if let Some(role) = get("role_arn") {
            let mut id = Identity::new("aws.role", role).with("nhi.aws.profile", profile);
            if let Some(src) = get("source_profile") {
                id = id.with("nhi.aws.source_profile", src);
            }
            if get("web_identity_token_file").is_some() {
                id = id.with("nhi.aws.web_identity", "true");
            }
            out.push(id);
        }
        if let (Some(account), Some(role)) = (get("sso_account_id"), get("sso_role_name")) {
            let mut id = Identity::new("aws.sso_role", format!("aws-sso:{account}/{role}"))
                .with("nhi.aws.profile", profile)
                .with("nhi.aws.account_id", account);
            if let Some(url) = get("sso_start_url") {
                id = id.with("nhi.aws.sso_start_url", url);
            }
            out.push(id);
        }
        if let Some(cmd) = get("credential_process") {
            // The command line may carry secrets in its arguments.
            let cmd = Secret::new(cmd.as_bytes());
            out.push(
                Identity::new("aws.credential_process", keyed.id("aws.credential_process", cmd.expose()))
                    .with("nhi.aws.profile", profile),
            );
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SsoCache {
    start_url: Option<String>,
    region: Option<String>,
    expires_at: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    access_token: Option<Secret>,
}

pub fn sso_cache(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let c: SsoCache = json(bytes)?;
    if let Some(url) = c.start_url.filter(|u| !u.is_empty()) {
        return Ok(vec![
            Identity::new("aws.sso_session", url)
                .with("nhi.aws.region", c.region.unwrap_or_default())
                .with("nhi.credential.expires_at", c.expires_at.unwrap_or_default()),
        ]);
    }
    if let Some(client) = c.client_id.filter(|u| !u.is_empty()) {
        return Ok(vec![Identity::new("aws.sso_client", client)]);
    }
    if let Some(tok) = c.access_token {
        return Ok(vec![Identity::new("aws.sso_session", keyed.id("aws.sso_session", tok.expose()))]);
    }
    Ok(Vec::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CliCache {
    credentials: Option<CliCredentials>,
    assumed_role_user: Option<AssumedRoleUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CliCredentials {
    access_key_id: Option<String>,
    expiration: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumedRoleUser {
    arn: Option<String>,
}

pub fn cli_cache(bytes: &[u8]) -> ParseResult {
    let c: CliCache = json(bytes)?;
    let key_id = c.credentials.as_ref().and_then(|k| k.access_key_id.clone()).filter(|k| tokens::is_aws_key_id(k));
    let expires = c.credentials.and_then(|k| k.expiration).unwrap_or_default();
    // Temporary keys change every hour; the role is the stable identity.
    let id = match (c.assumed_role_user.and_then(|u| u.arn), key_id.clone()) {
        (Some(arn), _) => Identity::new("aws.assumed_role", arn),
        (None, Some(key)) => Identity::new("aws.session_key", key),
        (None, None) => return Ok(Vec::new()),
    };
    Ok(vec![id.with("nhi.aws.access_key_id", key_id.unwrap_or_default()).with("nhi.credential.expires_at", expires)])
}
