//! Container registry credentials: Docker's `config.json` and the
//! containers/Podman `auth.json` (the same `auths` shape).
//!
//! Identity: `user@registry`, the user decoded from the `auth` field
//! (base64 `user:password`, the password never leaves a `Secret`). An
//! identity token without a user gets a keyed fingerprint; a registry
//! served by a credential helper is named by helper and registry.
use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::Deserialize;

use super::{ParseResult, json};
use crate::{Identity, Keyed, Secret, Unparsed};

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    auths: Option<BTreeMap<String, Auth>>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct Auth {
    auth: Option<Secret>,
    username: Option<String>,
    identitytoken: Option<Secret>,
    registrytoken: Option<Secret>,
}

pub fn auth(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let c: Config = json(bytes)?;
    if c.auths.is_none() && c.cred_helpers.is_none() && c.creds_store.is_none() {
        return Err(Unparsed::Malformed("no `auths` object: not a registry auth file".into()));
    }
    let mut out = Vec::new();
    for (registry, a) in c.auths.unwrap_or_default() {
        let host = registry_host(&registry);
        let user = match (&a.auth, a.username) {
            (Some(auth), _) if !auth.is_empty() => Some(user_of(auth)?),
            (_, Some(u)) if !u.is_empty() => Some(u),
            _ => None,
        };
        if let Some(user) = user {
            out.push(Identity::new("registry.auth", format!("{user}@{host}")).with("nhi.registry", host.clone()));
        } else if let Some(tok) = a.identitytoken.as_ref().or(a.registrytoken.as_ref()).filter(|t| !t.is_empty()) {
            out.push(Identity::new("registry.token", keyed.id("registry.token", tok.expose())).with("nhi.registry", host));
        } else if let Some(store) = &c.creds_store {
            // An empty entry: the credentials are in the store.
            out.push(
                Identity::new("registry.credential_helper", format!("{store}@{host}")).with("nhi.registry", host),
            );
        }
    }
    for (registry, helper) in c.cred_helpers.unwrap_or_default() {
        let host = registry_host(&registry);
        out.push(Identity::new("registry.credential_helper", format!("{helper}@{host}")).with("nhi.registry", host));
    }
    Ok(out)
}

/// `https://index.docker.io/v1/` -> `index.docker.io`.
fn registry_host(r: &str) -> String {
    let r = r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")).unwrap_or(r);
    r.split('/').next().unwrap_or(r).to_owned()
}

/// The user from base64 `user:password`.
fn user_of(auth: &Secret) -> Result<String, Unparsed> {
    let decoded = Secret::new(
        STANDARD.decode(auth.expose().trim_ascii()).map_err(|_| Unparsed::Malformed("`auth` is not base64".into()))?,
    );
    let colon = decoded
        .expose()
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| Unparsed::Malformed("`auth` is not user:password".into()))?;
    String::from_utf8(decoded.expose()[..colon].to_vec()).map_err(|_| Unparsed::Malformed("user is not UTF-8".into()))
}
