//! `.pypirc`: one INI section per index, `username` and `password`
//! (`__token__` + a `pypi-` API token, or a real account).
//!
//! Identity: `username@repository`, or for API tokens the token identity.
use super::{ParseResult, ini, text};
use crate::{Identity, Keyed, tokens};

pub fn parse(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let (entries, _) = ini::entries(t);
    let mut out = Vec::new();
    for section in ini::sections(&entries) {
        if section == "distutils" {
            continue;
        }
        let get = |k| ini::get(&entries, section, k).filter(|v| !v.is_empty());
        let repo = get("repository").map(str::to_owned).unwrap_or_else(|| match section {
            "pypi" => "https://upload.pypi.org/legacy/".into(),
            "testpypi" => "https://test.pypi.org/legacy/".into(),
            other => other.into(),
        });
        let host = repo.split("://").nth(1).unwrap_or(&repo).split('/').next().unwrap_or_default().to_owned();
        match (get("username"), get("password")) {
            (Some("__token__") | None, Some(p)) => {
                if let Some(id) = tokens::identity(p.as_bytes(), "pypi.token", keyed) {
                    out.push(id.with("nhi.pypi.index", section).with("nhi.server.address", host));
                }
            }
            (Some(user), _) => out.push(
                Identity::new("pypi.login", format!("{user}@{host}"))
                    .with("nhi.pypi.index", section)
                    .with("nhi.server.address", host),
            ),
            (None, None) => {}
        }
    }
    Ok(out)
}
