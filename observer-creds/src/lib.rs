//! Credential file formats to non-secret identities: the parsers behind
//! nhi-observer's credential catalog.
//!
//! Input: the bytes of one file, held in a [`Secret`] from the moment they
//! were read, and the [`Format`] the catalog says the file has. Output: the
//! [`Identity`]s the file holds (several for a credentials file with several
//! profiles), or an [`Unparsed`] reason. Nothing here does I/O.
//!
//! Invariants:
//! - an identity is never the secret and never a bare hash of it: it is a
//!   public part of the credential (key id, client email, certificate or
//!   public-key fingerprint, account and host) or, when the credential has
//!   none, its kind plus an HMAC-SHA256 under the deployment's key
//!   ([`Keyed`]);
//! - every secret value a parser meets is wrapped in [`Secret`] at once;
//! - parsers never panic: malformed, truncated, binary or hostile input is an
//!   [`Unparsed`] (the fuzz targets in `fuzz/` hold them to that).
mod formats;
mod identity;
mod keyed;
mod secret;
pub mod tokens;

pub use formats::{
    Format, UnknownFormat, content,
    jwt::{JwtError, ServiceAccount, service_account},
    parse,
};
pub use identity::{Identity, Parsed, Unparsed};
pub use keyed::{KEY_LEN, Keyed};
pub use secret::Secret;
