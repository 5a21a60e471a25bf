//! Terraform CLI credentials (`~/.terraform.d/credentials.tfrc.json`, what
//! `terraform login` writes): `{"credentials": {"<host>": {"token": ...}}}`.
//!
//! Identity: the token's keyed fingerprint, tagged with the host (the
//! token does not name its user or organisation).
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ParseResult, json};
use crate::{Keyed, Secret, Unparsed, tokens};

#[derive(Deserialize)]
struct File {
    credentials: Option<BTreeMap<String, Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    token: Option<Secret>,
}

pub fn credentials(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let f: File = json(bytes)?;
    let creds = f.credentials.ok_or_else(|| Unparsed::Malformed("no `credentials` object".into()))?;
    let mut out = Vec::new();
    for (host, e) in creds {
        if let Some(id) = e.token.as_ref().and_then(|t| tokens::identity(t.expose(), "terraform.token", keyed)) {
            out.push(id.with("nhi.server.address", host));
        }
    }
    Ok(out)
}
