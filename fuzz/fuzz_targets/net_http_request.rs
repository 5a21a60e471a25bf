//! Plaintext request heads (metadata-service traffic) on hostile bytes,
//! resumed at fuzzer-chosen offsets as more of the stream arrives.
#![no_main]
#![allow(dead_code, reason = "the included agent modules have items only the agent uses")]

#[path = "../../observer/src/net/http.rs"]
mod http;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let first = http::parse(&stream[..usize::from(cut).min(stream.len())], 0);
    let rest = http::parse(stream, first.consumed);
    assert!(rest.consumed >= first.consumed && rest.consumed <= stream.len().max(first.consumed));
});
