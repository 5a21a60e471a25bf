#![no_main]
//! Content detector (`content`): never panics, never returns identities and
//! a reason together with nothing, never echoes the input's secret into a
//! reason.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nhi_observer_fuzz::check("content", data));
