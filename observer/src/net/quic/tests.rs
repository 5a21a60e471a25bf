use super::*;
use crate::net::tls;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// RFC 9001 Appendix A.2: the client's first Initial packet, 1200 bytes.
pub(crate) fn rfc9001_client_initial() -> Vec<u8> {
    unhex(include_str!("rfc9001_a2_client_initial.hex"))
}

const RFC_DCID: &str = "8394c8f03e515708";

/// RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: the client's Initial
/// keys for the example destination connection id.
#[test]
fn initial_keys_match_the_rfc_vectors() {
    let k = InitialKeys::client(QUIC_V1, &unhex(RFC_DCID)).unwrap();
    assert_eq!(k.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(k.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(k.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    let k = InitialKeys::client(QUIC_V2, &unhex(RFC_DCID)).unwrap();
    assert_eq!(k.key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(k.iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
    assert_eq!(k.hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    assert!(InitialKeys::client(0xff00_001d, &[]).is_none());
}

/// RFC 9001 Appendix A.2, end to end: header protection off, payload
/// decrypted, CRYPTO frame out, ClientHello read.
#[test]
fn rfc9001_client_initial_decrypts_to_its_client_hello() {
    let d = rfc9001_client_initial();
    assert!(looks_initial(&d));
    let packets = parse_datagram(&d);
    assert_eq!(packets.len(), 1);
    let p = packets[0].as_ref().unwrap();
    assert_eq!(p.version, QUIC_V1);
    assert_eq!(p.dcid, unhex(RFC_DCID));
    assert!(p.scid.is_empty());
    assert_eq!(p.packet_number, 2);
    assert_eq!(p.crypto.len(), 1);
    let (offset, data) = &p.crypto[0];
    assert_eq!((*offset, data.len()), (0, 241));
    let hello = tls::from_handshake(data).unwrap().unwrap();
    assert_eq!(hello.server_name.as_deref(), Some("example.com"));
    assert!(hello.versions.contains(&0x0304));
}

#[test]
fn tampering_fails_authentication() {
    let mut d = rfc9001_client_initial();
    d[600] ^= 1;
    assert_eq!(parse_datagram(&d), vec![Err(QuicError::Decrypt)]);
    // Keys from another connection id (a later Initial, or a server's).
    let mut d = rfc9001_client_initial();
    d[6] ^= 0xff;
    assert_eq!(parse_datagram(&d), vec![Err(QuicError::Decrypt)]);
}

#[test]
fn truncated_and_foreign_packets() {
    let d = rfc9001_client_initial();
    assert_eq!(parse_datagram(&d[..600]), vec![Err(QuicError::Truncated)]);
    assert_eq!(parse_datagram(&d[..10]), vec![Err(QuicError::Truncated)]);
    assert_eq!(parse_datagram(&[0x40, 1, 2, 3]), vec![Err(QuicError::ShortHeader)]);
    assert_eq!(parse_datagram(&[0xc0, 0, 0, 0, 2, 0, 0]), vec![Err(QuicError::Version(2))]);
    let mut bad_cid = d.clone();
    bad_cid[5] = 21;
    assert_eq!(parse_datagram(&bad_cid), vec![Err(QuicError::ConnectionId)]);
    assert!(!looks_initial(&[0xe0, 0, 0, 0, 1]), "a Handshake packet is not an Initial");
    assert!(looks_initial(&[0xd0, 0x6b, 0x33, 0x43, 0xcf]), "v2 Initial type bits are 01");
    // A coalesced short-header packet after the Initial is left alone.
    let mut coalesced = d;
    coalesced.extend_from_slice(&[0x40, 9, 9, 9]);
    let out = parse_datagram(&coalesced);
    assert!(out[0].is_ok());
    assert_eq!(out[1], Err(QuicError::ShortHeader));
}

#[test]
fn varints() {
    let mut b: &[u8] = &unhex("c2197c5eff14e88c 9d7f3e7d 7bbd 25");
    assert_eq!(varint(&mut b), Ok(151_288_809_941_952_652));
    assert_eq!(varint(&mut b), Ok(494_878_333));
    assert_eq!(varint(&mut b), Ok(15_293));
    assert_eq!(varint(&mut b), Ok(37));
    assert_eq!(varint(&mut b), Err(QuicError::Truncated));
}

#[test]
fn frames_allowed_in_initials() {
    // PING, ACK (one range, ECN), CRYPTO, PADDING, CONNECTION_CLOSE
    let payload = unhex("01 03 05 00 01 00 02 01 01 01 01 06 02 03 616263 00 00 1c 00 00 02 6869");
    let frames = crypto_frames(&payload).unwrap();
    assert_eq!(frames, vec![(2, b"abc".to_vec())]);
    assert_eq!(crypto_frames(&[0x08]), Err(QuicError::Frame(8)), "STREAM is not allowed in Initials");
}

proptest::proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1500)) {
        let _ = parse_datagram(&bytes);
        let _ = looks_initial(&bytes);
    }

    #[test]
    fn mutated_rfc_packet_never_panics(at in 0usize..1200, byte in proptest::num::u8::ANY, cut in 0usize..1300) {
        let mut d = rfc9001_client_initial();
        d[at] = byte;
        d.truncate(cut);
        let _ = parse_datagram(&d);
    }
}
