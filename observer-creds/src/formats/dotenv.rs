//! `.env` files: `KEY=value` lines as dotenv tools read them.
//!
//! A variable is a credential when its value has a known token prefix, or
//! its name says so (`*_TOKEN`, `*_SECRET`, `*_PASSWORD`, `*_API_KEY`, ...).
//! Identity: an AWS key id as itself; a token by prefix or the variable's
//! keyed fingerprint, tagged with the variable name (names are not secret).
use super::{ParseResult, content::SECRET_NAME_PARTS, text};
use crate::{Keyed, Secret, Unparsed, tokens};


pub fn parse(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    text(bytes)?;
    let mut out = Vec::new();
    let mut bad_lines = 0usize;
    // dotenvy hands values back as `String`s: each goes into a `Secret` the
    // moment it is returned.
    for item in dotenvy::from_read_iter(bytes) {
        let (name, value) = match item {
            Ok((k, v)) => (k, Secret::from(v)),
            // dotenvy's errors quote the offending line: keep only a count.
            Err(_) => {
                bad_lines += 1;
                continue;
            }
        };
        if value.is_empty() {
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let by_prefix = value.expose_str().and_then(tokens::classify).is_some();
        let by_name = SECRET_NAME_PARTS.iter().any(|p| upper.contains(p)) || upper == "AWS_ACCESS_KEY_ID";
        if !(by_prefix || by_name) {
            continue;
        }
        if let Some(id) = tokens::identity(value.expose(), tokens::SECRET_VALUE_KIND, keyed) {
            out.push(id.with("nhi.env.name", name));
        }
    }
    if out.is_empty() && bad_lines > 0 {
        return Err(Unparsed::Malformed(format!("{bad_lines} line(s) dotenv cannot read")));
    }
    Ok(out)
}

