//! Secret bytes, from the moment they are read: the type lives in
//! `observer-creds` (the credential parsers hold every secret in it) and is
//! re-exported here so the agent names it `crate::secret::Secret`.
pub use observer_creds::Secret;
