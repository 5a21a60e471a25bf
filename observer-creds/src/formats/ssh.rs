//! SSH keys: OpenSSH private keys (encrypted or not: the public half is
//! stored in the clear), PEM private keys (PKCS#1, SEC1, PKCS#8) and, since
//! `~/.ssh/id_*` matches them too, OpenSSH public-key lines.
//!
//! Identity: the public key's `SHA256:` fingerprint, as `ssh-keygen -l`
//! prints it and as servers log it, so a key's use can be matched with
//! `authorized_keys` and sshd logs. A legacy encrypted PEM key hides its
//! public half: it gets a keyed fingerprint.
use super::{ParseResult, keys, pem, text};
use crate::{Identity, Keyed, Unparsed};

pub fn private_key(bytes: &[u8], keyed: &Keyed) -> ParseResult {
    let t = text(bytes)?;
    let blocks = pem::blocks(t);
    if blocks.is_empty() {
        return public_key_lines(t);
    }
    let mut out = Vec::new();
    let mut first_error = None;
    for b in blocks {
        let r = match (b.label, &b.der) {
            ("OPENSSH PRIVATE KEY", _) => openssh(b.text, keyed),
            (_, None) => Err(Unparsed::Malformed("a PEM block is not valid base64".into())),
            (_, Some(der)) if b.encrypted_header || b.label == "ENCRYPTED PRIVATE KEY" => Ok(vec![
                Identity::new("ssh.private_key", keyed.id("ssh.private_key", der.expose()))
                    .with("nhi.key.encrypted", "true"),
            ]),
            ("RSA PRIVATE KEY", Some(der)) => from_public(keys::from_pkcs1(der.expose())),
            ("EC PRIVATE KEY", Some(der)) => from_public(keys::from_sec1(der.expose(), None)),
            ("PRIVATE KEY", Some(der)) => from_public(keys::from_pkcs8(der.expose())),
            ("DSA PRIVATE KEY", _) => Err(Unparsed::Unsupported("DSA keys".into())),
            _ => Ok(Vec::new()),
        };
        match r {
            Ok(ids) => out.extend(ids),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

fn from_public(public: Result<keys::PublicKey, Unparsed>) -> ParseResult {
    let public = public?;
    Ok(vec![Identity::new("ssh.private_key", public.ssh_fingerprint()?).with("nhi.key.algorithm", public.algorithm())])
}

/// An `OPENSSH PRIVATE KEY` block.
pub fn openssh(block: &str, _keyed: &Keyed) -> ParseResult {
    let key = ssh_key::PrivateKey::from_openssh(block)
        .map_err(|e| Unparsed::Malformed(format!("OpenSSH private key: {e}")))?;
    let public = key.public_key();
    let mut id = Identity::new("ssh.private_key", public.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .with("nhi.key.algorithm", public.algorithm().as_str());
    if key.is_encrypted() {
        id = id.with("nhi.key.encrypted", "true");
    }
    // The comment is often user@host: useful and not secret.
    Ok(vec![id.with("nhi.ssh.comment", public.comment())])
}

/// `ssh-ed25519 AAAA... comment` lines (`id_*.pub`).
fn public_key_lines(t: &str) -> ParseResult {
    let mut out = Vec::new();
    for line in t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let k = ssh_key::PublicKey::from_openssh(line)
            .map_err(|e| Unparsed::Malformed(format!("neither a PEM private key nor an OpenSSH public key: {e}")))?;
        out.push(
            Identity::new("ssh.public_key", k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
                .with("nhi.key.algorithm", k.algorithm().as_str())
                .with("nhi.ssh.comment", k.comment()),
        );
    }
    Ok(out)
}

