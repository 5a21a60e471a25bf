//! PEM blocks (RFC 7468 and the older OpenSSL form with headers), several
//! per file. Lenient on line width (ssh-keygen, keytool and OpenSSL differ);
//! decoded bodies go straight into [`Secret`]s, which `pem` crates do not do.
use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::Secret;

pub struct Block<'a> {
    pub label: &'a str,
    /// Has `Proc-Type: 4,ENCRYPTED` (OpenSSL's legacy encrypted keys).
    pub encrypted_header: bool,
    /// The decoded body, or None when it is not valid base64.
    pub der: Option<Secret>,
    /// The raw text of the block, BEGIN to END line (OpenSSH keys are
    /// parsed from it).
    pub text: &'a str,
}

/// Every well-formed block in `text`; unterminated blocks are skipped.
pub fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else { break };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let body_start = start + "-----BEGIN ".len() + label_end + 5;
        let Some(end_rel) = rest[body_start..].find(&end_marker) else {
            rest = &rest[body_start..];
            continue;
        };
        let body = &rest[body_start..body_start + end_rel];
        let block_text = &rest[start..body_start + end_rel + end_marker.len()];
        let mut encrypted_header = false;
        // Sized up front: no reallocation leaves base64 copies behind.
        let mut buf = Vec::with_capacity(body.len());
        for line in body.lines() {
            let line = line.trim();
            if line.contains(':') {
                encrypted_header |= line.starts_with("Proc-Type:") && line.contains("ENCRYPTED");
                continue;
            }
            buf.extend_from_slice(line.as_bytes());
        }
        let b64 = Secret::new(buf);
        let der = STANDARD.decode(b64.expose()).ok().map(Secret::new);
        out.push(Block { label, encrypted_header, der, text: block_text });
        rest = &rest[body_start + end_rel + end_marker.len()..];
    }
    out
}
