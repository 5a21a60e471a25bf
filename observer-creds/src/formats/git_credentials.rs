//! `.git-credentials` (the `store` helper): one URL per line,
//! `https://user:secret@host/path`.
//!
//! Identity: `user@host`, unless the user is a placeholder the forges use
//! for token auth (`x-access-token`, `oauth2`, ...), in which case the
//! secret is the credential: its token identity (prefix or keyed).
use super::{ParseResult, text};
use crate::{Identity, Keyed, Secret, Unparsed, tokens};

const PLACEHOLDER_USERS: &[&str] =
    &["x-access-token", "oauth2", "oauth", "token", "x-token-auth", "gitlab-ci-token", "private-token", "__token__", "git"];

pub fn parse(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let mut out = Vec::new();
    let mut bad = 0usize;
    for line in t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((host, user, password)) = split_url(line) else {
            bad += 1;
            continue;
        };
        let user = decode(user);
        let user = String::from_utf8_lossy(user.expose()).into_owned();
        let id = if !user.is_empty() && !PLACEHOLDER_USERS.contains(&user.to_ascii_lowercase().as_str()) {
            Some(Identity::new("git.credential", format!("{user}@{host}")))
        } else {
            password.map(decode).and_then(|p| tokens::identity(p.expose(), "git.token", keyed))
        };
        if let Some(id) = id {
            out.push(id.with("nhi.server.address", host));
        }
    }
    if out.is_empty() && bad > 0 {
        return Err(Unparsed::Malformed(format!("{bad} line(s) are not credential URLs")));
    }
    Ok(out)
}

/// `scheme://user:password@host[:port]/path` -> (host, user, password),
/// borrowed from the line. Done here rather than with a URL crate because
/// those copy the whole URL, password included, into a plain `String`.
fn split_url(line: &str) -> Option<(&str, &str, Option<&str>)> {
    let (_scheme, rest) = line.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, hostport) = authority.rsplit_once('@')?;
    let host = hostport.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(hostport, |(h, _)| h);
    if host.is_empty() {
        return None;
    }
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    Some((host, user, password))
}

fn decode(s: &str) -> Secret {
    Secret::new(percent_encoding::percent_decode_str(s).collect::<Vec<u8>>())
}
