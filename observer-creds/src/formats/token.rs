//! A file that holds one opaque token (`~/.vault-token`, mounted API
//! tokens): the token's identity by prefix, else the rule's kind plus the
//! keyed fingerprint. A JWT is named by its claims.
use super::{ParseResult, jwt, text};
use crate::{Keyed, Unparsed, tokens};

/// Longer than any token; a longer file is some other kind of file.
const MAX_TOKEN_LEN: usize = 16 * 1024;

pub fn file(bytes: &[u8], kind: &str, keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?.trim();
    if t.len() > MAX_TOKEN_LEN {
        return Err(Unparsed::Malformed(format!("more than {MAX_TOKEN_LEN} bytes: not a single token")));
    }
    if t.contains(char::is_whitespace) {
        return Err(Unparsed::Malformed("whitespace inside: not a single token".into()));
    }
    if jwt::looks_like_jwt(t) {
        return jwt::file(bytes, kind, keyed);
    }
    let kind = if kind.is_empty() || kind == "unknown" { "opaque.token" } else { kind };
    Ok(tokens::identity(t.as_bytes(), kind, keyed).into_iter().collect())
}
