//! Classification: which credential a file is, and whose.
//!
//! - `catalog`: watched paths, their kinds and formats (built-in data plus
//!   config), and userspace path matching;
//! - `reader`: reading a file after an access, bounded, in the process's
//!   mount namespace, cached, with rotation detection;
//! - `key`: the per-deployment key of the keyed fingerprints.
//!
//! The parsers themselves are the `observer-creds` crate.
pub mod catalog;
pub mod key;
pub mod reader;
pub mod watch;
