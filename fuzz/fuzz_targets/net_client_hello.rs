//! The TLS ClientHello parser on hostile bytes: as a TCP stream prefix
//! (records, cut anywhere, split into segments at fuzzer-chosen offsets and
//! reassembled) and as a bare handshake message (QUIC CRYPTO stream).
#![no_main]
#![allow(dead_code, reason = "the included agent modules have items only the agent uses")]

#[path = "../../observer/src/net/reassembly.rs"]
mod reassembly;
#[path = "../../observer/src/net/tls.rs"]
mod tls;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tls::from_handshake(data);
    let whole = tls::from_records(data);
    // The same bytes delivered as segments (cut points from the first
    // byte), last segment first: reassembly must give the same answer.
    let Some((&cut, stream)) = data.split_first() else { return };
    let cut = usize::from(cut).min(stream.len());
    let mut r = reassembly::Reassembler::new(16 * 1024);
    r.add(cut as u64, &stream[cut..]);
    r.add(0, &stream[..cut]);
    assert_eq!(r.contiguous(), &stream[..stream.len().min(16 * 1024)]);
    if stream.len() <= 16 * 1024 {
        assert_eq!(tls::from_records(r.contiguous()), tls::from_records(stream));
    }
    drop(whole);
});
