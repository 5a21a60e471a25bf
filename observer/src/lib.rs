//! nhi-observer's agent stages, as a library: the `nhi-observer` binary
//! (`main.rs`) is the command-line edge over it, and the benchmarks
//! (`benches/`) drive the stages directly. The folders follow the data:
//! probes -> ringbuf -> decode -> enrich/identity -> classify -> correlate
//! -> store -> export, wired in `app`.
pub mod alloc;
pub mod app;
pub mod check;
pub mod classify;
pub mod clock;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod enrich;
pub mod export;
pub mod findings;
pub mod host;
pub mod identity;
pub mod inventory;
pub mod model;
pub mod net;
pub mod probes;
pub mod report;
pub mod ringbuf;
pub mod scan;
pub mod secret;
pub mod stats;
pub mod store;

#[cfg(test)]
mod layering;
