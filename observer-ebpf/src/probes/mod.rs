//! One module per probe family; each program entry is a thin shim
//! over a function returning `Option`, so `?` works and nothing panics.
pub mod files;
pub mod net;
pub mod floor;
pub mod iouring;
pub mod process;
