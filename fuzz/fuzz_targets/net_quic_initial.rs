//! QUIC Initial datagrams on hostile bytes: header parsing, key derivation
//! from the destination connection id, header protection removal, AEAD,
//! frame parsing, CRYPTO reassembly and the ClientHello inside.
#![no_main]
#![allow(dead_code, reason = "the included agent modules have items only the agent uses")]

#[path = "../../observer/src/net/quic.rs"]
mod quic;
#[path = "../../observer/src/net/reassembly.rs"]
mod reassembly;
#[path = "../../observer/src/net/tls.rs"]
mod tls;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fuzzer cannot forge AEAD tags, so the frame parser behind the
    // decryption gets the raw bytes too.
    if let Ok(frames) = quic::crypto_frames(data) {
        let mut r = reassembly::Reassembler::new(tls::MAX_HELLO + 4);
        for (offset, bytes) in &frames {
            r.add(*offset, bytes);
        }
        let _ = tls::from_handshake(r.contiguous());
    }
    let _ = quic::looks_initial(data);
    let mut crypto = reassembly::Reassembler::new(tls::MAX_HELLO + 4);
    for packet in quic::parse_datagram(data).into_iter().flatten() {
        assert!(packet.dcid.len() <= 20 && packet.scid.len() <= 20);
        for (offset, bytes) in &packet.crypto {
            crypto.add(*offset, bytes);
        }
        let _ = tls::from_handshake(crypto.contiguous());
    }
});
