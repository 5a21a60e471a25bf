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
        match split_url(line) {
            Some(_) => out.extend(url_identity(line, "git.credential", "git.token", keyed)),
            None => bad += 1,
        }
    }
    if out.is_empty() && bad > 0 {
        return Err(Unparsed::Malformed(format!("{bad} line(s) are not credential URLs")));
    }
    Ok(out)
}

/// The identity of a credential URL: `user@host` as `user_kind`, unless
/// the user is a placeholder the forges use for token auth
/// (`x-access-token`, `oauth2`, ...) or itself a token, in which case the
/// secret is the credential: its token identity (prefix or keyed).
pub fn url_identity(url: &str, user_kind: &str, token_kind: &str, keyed: &Keyed) -> Option<Identity> {
    let (host, user, password) = split_url(url)?;
    let user = decode(user);
    let user_text = std::str::from_utf8(user.expose()).ok().filter(|u| tokens::classify(u).is_none());
    let id = match user_text {
        Some(u) if !u.is_empty() && !PLACEHOLDER_USERS.contains(&u.to_ascii_lowercase().as_str()) => {
            Some(Identity::new(user_kind, format!("{u}@{host}")))
        }
        // A token as the user name (`https://ghp_...@github.com`).
        None if !user.is_empty() => tokens::identity(user.expose(), token_kind, keyed),
        _ => password.map(decode).and_then(|p| tokens::identity(p.expose(), token_kind, keyed)),
    };
    id.map(|id| id.with("nhi.server.address", host))
}

/// The user and password of a credential URL, borrowed.
pub fn userinfo(url: &str) -> Option<(&str, Option<&str>)> {
    split_url(url).map(|(_, u, p)| (u, p))
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
