//! GitHub CLI `hosts.yml`: per host, the active `user` and its
//! `oauth_token` (older versions), and a `users:` map (newer ones, which
//! keep the tokens in the system keyring when one exists).
//!
//! Identity: `user@host`; a token without a user gets its token identity.
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ParseResult, text, yaml_error};
use crate::{Identity, Keyed, Secret, tokens};

#[derive(Deserialize, Default)]
struct Host {
    user: Option<String>,
    oauth_token: Option<Secret>,
    /// Per-user entries; their tokens are never read.
    #[serde(default)]
    users: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

pub fn hosts(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let hosts: BTreeMap<String, Option<Host>> = serde_yaml_ng::from_str(t).map_err(|e| yaml_error(&e))?;
    let mut out = Vec::new();
    for (host, h) in hosts {
        let Some(h) = h else { continue };
        let mut users: Vec<String> = h.users.as_ref().map(|u| u.keys().cloned().collect()).unwrap_or_default();
        if let Some(u) = h.user.as_ref().filter(|u| !u.is_empty())
            && !users.contains(u)
        {
            users.insert(0, u.clone());
        }
        for user in &users {
            out.push(Identity::new("github.cli_login", format!("{user}@{host}")).with("nhi.server.address", host.clone()));
        }
        if users.is_empty()
            && let Some(id) = h.oauth_token.as_ref().and_then(|t| tokens::identity(t.expose(), "github.oauth_token", keyed))
        {
            out.push(id.with("nhi.server.address", host.clone()));
        }
    }
    Ok(out)
}
