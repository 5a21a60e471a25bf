//! `.npmrc`: `//registry/:_authToken=...`, `//registry/:_auth=base64`,
//! `//registry/:username=` + `_password=` (base64), and the unscoped forms.
//!
//! Identity: `user@registry` when a user is named; a token by its token
//! identity (`npm_` prefix, else keyed), tagged with the registry.
use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::{ParseResult, ini, text};
use crate::{Identity, Keyed, Secret, tokens};

pub fn parse(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let (entries, _) = ini::entries_split(t, &['=']);
    let mut out = Vec::new();
    for e in &entries {
        let (registry, key) = match e.key.rsplit_once(':') {
            Some((scope, key)) if scope.starts_with("//") => (scope.trim_start_matches('/').trim_end_matches('/'), key),
            _ => ("registry.npmjs.org", e.key),
        };
        let value = e.value.trim_matches('"');
        match key {
            "_authToken" if !value.is_empty() && !value.starts_with("${") => {
                if let Some(id) = tokens::identity(value.as_bytes(), "npm.token", keyed) {
                    out.push(id.with("nhi.registry", registry));
                }
            }
            "_auth" => {
                let decoded = STANDARD.decode(value).map(Secret::new).ok();
                let user = decoded.as_ref().and_then(|d| {
                    let colon = d.expose().iter().position(|&b| b == b':')?;
                    String::from_utf8(d.expose()[..colon].to_vec()).ok()
                });
                if let Some(user) = user.filter(|u| !u.is_empty()) {
                    out.push(Identity::new("npm.login", format!("{user}@{registry}")).with("nhi.registry", registry));
                }
            }
            "username" if !value.is_empty() => {
                out.push(Identity::new("npm.login", format!("{value}@{registry}")).with("nhi.registry", registry));
            }
            _ => {}
        }
    }
    Ok(out)
}
