//! `.netrc`: `machine <host> login <user> password <secret>` (tokens may
//! span lines; `default` is a machine; `macdef` bodies run to a blank line).
//!
//! Identity: `login@host`. An entry with a password but no login gets the
//! password's token identity (prefix or keyed fingerprint). A hand-written
//! tokenizer because the netrc crates return passwords as plain `String`s.
use super::{ParseResult, text};
use crate::{Identity, Keyed, tokens};

pub fn netrc(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let mut out = Vec::new();
    let mut host: Option<&str> = None;
    let mut login: Option<&str> = None;
    let mut password: Option<&str> = None;
    let flush = |host: Option<&str>, login: Option<&str>, password: Option<&str>, out: &mut Vec<Identity>| {
        let Some(host) = host else { return };
        match (login.filter(|l| !l.is_empty()), password) {
            (Some(l), _) => out.push(Identity::new("netrc.login", format!("{l}@{host}")).with("nhi.server.address", host)),
            (None, Some(p)) => {
                if let Some(id) = tokens::identity(p.as_bytes(), "netrc.password", keyed) {
                    out.push(id.with("nhi.server.address", host));
                }
            }
            (None, None) => {}
        }
    };
    let mut words = Words::new(t);
    while let Some(w) = words.next() {
        match w {
            "machine" | "default" => {
                flush(host, login, password, &mut out);
                host = if w == "default" { Some("default") } else { words.next() };
                login = None;
                password = None;
            }
            "login" => login = words.next(),
            "password" => password = words.next(),
            "account" => {
                words.next();
            }
            "macdef" => words.skip_macro(),
            _ => {}
        }
    }
    flush(host, login, password, &mut out);
    Ok(out)
}

/// Whitespace-separated words; `#` starts a comment to the end of line.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(t: &'a str) -> Self {
        Self { rest: t }
    }

    fn next(&mut self) -> Option<&'a str> {
        loop {
            self.rest = self.rest.trim_start();
            if self.rest.starts_with('#') {
                self.rest = self.rest.find('\n').map_or("", |p| &self.rest[p..]);
                continue;
            }
            if self.rest.is_empty() {
                return None;
            }
            let end = self.rest.find(char::is_whitespace).unwrap_or(self.rest.len());
            let (w, r) = self.rest.split_at(end);
            self.rest = r;
            return Some(w);
        }
    }

    /// A macro body ends at the first empty line.
    fn skip_macro(&mut self) {
        self.rest = self.rest.find("\n\n").map_or("", |p| &self.rest[p..]);
    }
}
