//! Classification: which credential a file is, and whose.
//!
//! - `catalog`: watched paths, their kinds and formats (built-in data plus
//!   config), and userspace path matching;
//! - `reader`: reading a file after an access, bounded, in the process's
//!   mount namespace, cached, with rotation detection;
//! - `env_paths`: credential files named by a process's environment at
//!   exec, watched by inode from then on;
//! - `key`: the per-deployment key of the keyed fingerprints;
//! - `verdict`: which reads are credential accesses (public material and
//!   files without a credential are counted, not reported).
//!
//! The parsers themselves are the `observer-creds` crate.
pub mod catalog;
pub mod env_paths;
pub mod key;
pub mod reader;
pub mod verdict;
pub mod watch;
