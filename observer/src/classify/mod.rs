//! Classification: which credential a watched path is. The catalog holds the
//! watch patterns the kernel filter is built from.
pub mod catalog;
pub mod watch;
