//! Keyed fingerprints: the identity of a credential that has no public part.
//!
//! `<kind>:hmac-sha256:<hex>` where the HMAC is over the secret alone (so
//! the same token under two file formats is visibly the same) with the
//! deployment's key. Without the key the value says nothing about the
//! secret; with one key shared by a fleet the same token on two hosts has
//! the same id, which is how reuse shows up in the backend.
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Secret;

/// Length of a deployment key in bytes.
pub const KEY_LEN: usize = 32;

pub struct Keyed {
    key: Secret,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(<redacted>)")
    }
}

impl Keyed {
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    /// `<kind>:hmac-sha256:<64 hex digits>` for `secret`.
    pub fn id(&self, kind: &str, secret: &[u8]) -> String {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(secret);
        format!("{kind}:hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_same_id_other_key_other_id() {
        let a = Keyed::new(Secret::new([1u8; KEY_LEN]));
        let b = Keyed::new(Secret::new([2u8; KEY_LEN]));
        let id = a.id("npm.token", b"npm_secret");
        assert_eq!(id, a.id("npm.token", b"npm_secret"));
        assert_ne!(id, b.id("npm.token", b"npm_secret"));
        assert!(id.starts_with("npm.token:hmac-sha256:") && id.len() == "npm.token:hmac-sha256:".len() + 64);
        assert!(!id.contains("npm_secret"));
        assert!(!format!("{a:?}").contains('1'));
    }
}
