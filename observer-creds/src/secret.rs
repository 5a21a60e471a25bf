//! Secret bytes, from the moment they are read.
//!
//! [`Secret`] redacts itself in `Debug` and `Display`, is not `Serialize`,
//! and zeroes its memory on drop. The only way to the bytes is
//! [`Secret::expose`], which classifiers call to derive non-secret identities
//! (key ids, fingerprints, keyed HMACs). Nothing that leaves the agent (logs,
//! exports, the database, reports) may hold a `Secret` or its bytes.
use std::fmt;

use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The secret bytes. Use only to derive a non-secret identity.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl Secret {
    /// The bytes, writable: for filling a fresh buffer in place (key
    /// generation, reads) so no copy exists outside the `Secret`.
    pub fn expose_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// The bytes as text, if they are UTF-8 (most tokens and passwords).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Shortens to `len` bytes, zeroing the cut tail first (a read into a
    /// buffer sized for the worst case keeps what was read, no copy).
    pub fn truncate(&mut self, len: usize) {
        use zeroize::Zeroize as _;
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Deserialises a string straight into a `Secret`, so that typed serde
/// structs never hold a secret in a plain `String`.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v.as_bytes()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted {} bytes>)", self.0.len())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_bytes() {
        let s = Secret::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned());
        for shown in [format!("{s:?}"), format!("{s}"), format!("{s:#?}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains("wJalr"), "{shown}");
        }
        assert_eq!(s.expose().len(), 40);
    }
}
