//! Which reads of catalog files are credential accesses: only files that
//! hold a credential (a private key, a token, a password) are reported;
//! public material and files with nothing in them are counted.
//!
//! Input: what the parser made of a file, and whether the rule that
//! matched it is broad (a file name or suffix anywhere: `*.pem`, `token`).
//! Output: [`Verdict::Report`] with the identities worth a record (public
//! ones removed), or [`Verdict::Count`] with the counter to bump.
//!
//! Invariants: a file that holds one credential is always reported, with
//! that credential; a certificate, a public key, an empty file or a file
//! the parser found no credential in never is; a file that could not be
//! read or parsed at a specific credential path (`~/.aws/credentials`) is
//! reported with its reason, at a broad one (a `*.pem` of documentation)
//! only when its reason says a credential may be there (encrypted,
//! unsupported, too large, unreadable).
use observer_creds::{Parsed, Unparsed};

use super::catalog::{PatternKind, WatchRule};

/// Identity kinds that name public material: whoever reads them holds no
/// secret by doing so.
pub const PUBLIC_KINDS: &[&str] = &["x509.certificate", "x509.ca_certificate", "ssh.public_key", "spiffe.x509_svid"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A credential access: these identities (or the file-level reason).
    Report(Parsed),
    /// Not a credential: count it under this name.
    Count(&'static str),
}

/// Whether `rule` names files anywhere by name or suffix.
pub fn broad(rule: &WatchRule) -> bool {
    matches!(rule.pattern.kind, PatternKind::Basename | PatternKind::Suffix)
}

pub fn judge(parsed: &Parsed, broad: bool) -> Verdict {
    let creds: Vec<_> = parsed.identities.iter().filter(|i| !PUBLIC_KINDS.contains(&i.kind.as_str())).cloned().collect();
    if !creds.is_empty() {
        return Verdict::Report(Parsed { identities: creds, unparsed: None });
    }
    if !parsed.identities.is_empty() {
        return Verdict::Count("public_material");
    }
    match &parsed.unparsed {
        None | Some(Unparsed::NoCredential) => Verdict::Count("no_credential"),
        Some(Unparsed::Empty) => Verdict::Count("empty"),
        Some(u @ (Unparsed::Malformed(_) | Unparsed::Binary)) if broad => Verdict::Count(u.reason()),
        Some(_) => Verdict::Report(parsed.clone()),
    }
}

#[cfg(test)]
mod tests {
    use observer_creds::Identity;

    use super::*;

    fn parsed(ids: &[(&str, &str)], unparsed: Option<Unparsed>) -> Parsed {
        Parsed { identities: ids.iter().map(|(k, i)| Identity::new(*k, *i)).collect(), unparsed }
    }

    #[test]
    fn only_credentials_are_reported() {
        let bundle = parsed(&[("x509.certificate", "AB"), ("tls.private_key", "spki-sha256:1")], None);
        match judge(&bundle, true) {
            Verdict::Report(p) => assert_eq!(p.identities.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(), ["tls.private_key"]),
            v => panic!("{v:?}"),
        }
        assert_eq!(judge(&parsed(&[("x509.ca_certificate", "CD")], None), false), Verdict::Count("public_material"));
        assert_eq!(judge(&parsed(&[("ssh.public_key", "SHA256:x")], None), false), Verdict::Count("public_material"));
        assert_eq!(judge(&parsed(&[], Some(Unparsed::NoCredential)), false), Verdict::Count("no_credential"));
        assert_eq!(judge(&parsed(&[], Some(Unparsed::Empty)), false), Verdict::Count("empty"));
        // A placeholder `*.pem` of documentation: counted; the same bytes
        // at ~/.kube/config: reported with the reason.
        let bad = parsed(&[], Some(Unparsed::Malformed("x".into())));
        assert_eq!(judge(&bad, true), Verdict::Count("malformed"));
        assert_eq!(judge(&bad, false), Verdict::Report(bad.clone()));
        let enc = parsed(&[], Some(Unparsed::Encrypted("x".into())));
        assert_eq!(judge(&enc, true), Verdict::Report(enc.clone()));
        let unread = parsed(&[], Some(Unparsed::Unreadable("x".into())));
        assert_eq!(judge(&unread, true), Verdict::Report(unread.clone()));
    }
}
