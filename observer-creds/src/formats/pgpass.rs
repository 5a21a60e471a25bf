//! PostgreSQL `.pgpass`: `host:port:database:user:password`, `\:` and `\\`
//! escaped, `*` as a wildcard.
//!
//! Identity: `user@host:port/database` (wildcards kept as `*`).
use super::{ParseResult, text};
use crate::{Identity, Unparsed};

pub fn parse(bytes: &[u8]) -> ParseResult {
    let t = text(bytes)?;
    let mut out = Vec::new();
    let mut bad = 0usize;
    for line in t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let fields = fields(line);
        if fields.len() != 5 {
            bad += 1;
            continue;
        }
        let (host, port, db, user) = (&fields[0], &fields[1], &fields[2], &fields[3]);
        out.push(
            Identity::new("postgres.password", format!("{user}@{host}:{port}/{db}"))
                .with("nhi.server.address", host.clone())
                .with("nhi.db.user", user.clone()),
        );
    }
    if out.is_empty() && bad > 0 {
        return Err(Unparsed::Malformed(format!("{bad} line(s) without five fields")));
    }
    Ok(out)
}

/// The first four fields unescaped; the fifth (the password) is only
/// counted, never copied.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(5);
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if out.len() == 4 {
            // The password: not copied anywhere.
            out.push(String::new());
            break;
        }
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if out.len() < 5 && out.len() == 4 {
        // A line ending right after the fourth colon has an empty password.
        out.push(String::new());
    }
    out
}
