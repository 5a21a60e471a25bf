use std::sync::Arc;

use super::*;

/// A real ClientHello from rustls (aws-lc-rs provider: X25519MLKEM768 key
/// share first, about 1.5 kB), as TLS records.
pub(crate) fn rustls_hello(server_name: &str, alpn: &[&str], sni: bool) -> Vec<u8> {
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    cfg.enable_sni = sni;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn u16be(v: usize) -> [u8; 2] {
    u16::try_from(v).unwrap().to_be_bytes()
}

/// A ClientHello handshake message built by hand (GREASE, odd extensions).
fn handshake(ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&u16be(ciphers.len() * 2));
    for c in ciphers {
        body.extend_from_slice(&c.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    for (ty, data) in exts {
        ext.extend_from_slice(&ty.to_be_bytes());
        ext.extend_from_slice(&u16be(data.len()));
        ext.extend_from_slice(data);
    }
    body.extend_from_slice(&u16be(ext.len()));
    body.extend_from_slice(&ext);
    let mut msg = vec![1, 0];
    msg.extend_from_slice(&u16be(body.len()));
    msg.extend_from_slice(&body);
    msg
}

fn records(msg: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in msg.chunks(fragment) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&u16be(part.len()));
        out.extend_from_slice(part);
    }
    out
}

fn sni_ext(name: &[u8]) -> Vec<u8> {
    let mut v = u16be(name.len() + 3).to_vec();
    v.push(0);
    v.extend_from_slice(&u16be(name.len()));
    v.extend_from_slice(name);
    v
}

fn alpn_ext(ids: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for id in ids {
        list.push(u8::try_from(id.len()).unwrap());
        list.extend_from_slice(id);
    }
    let mut v = u16be(list.len()).to_vec();
    v.extend_from_slice(&list);
    v
}

#[test]
fn post_quantum_rustls_hello() {
    let bytes = rustls_hello("api.example.test", &["h2", "http/1.1"], true);
    // X25519MLKEM768 alone is 1216 bytes of key share: the hello does not
    // fit one TCP segment of an Ethernet-MTU path (1460 bytes).
    assert!(bytes.len() > 1460, "expected a PQ-sized ClientHello, got {} bytes", bytes.len());
    let hello = from_records(&bytes).unwrap().unwrap();
    assert_eq!(hello.server_name.as_deref(), Some("api.example.test"));
    assert_eq!(hello.alpn, ["h2", "http/1.1"]);
    assert_eq!(hello.versions, [0x0304, 0x0303]);
    assert_eq!(hello.max_version().as_deref(), Some("1.3"));
    assert_eq!(hello.bad_extensions, 0);
}

/// Every cut of the stream is either "need more" or the full answer: the
/// kernel may hand us the ClientHello in pieces of any size.
#[test]
fn every_prefix_needs_more_until_complete() {
    let bytes = rustls_hello("split.example.test", &[], true);
    for cut in 0..bytes.len() {
        assert_eq!(from_records(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(from_records(&bytes).unwrap().is_some());
}

#[test]
fn hello_split_over_records() {
    let bytes = rustls_hello("records.example.test", &["h2"], true);
    let msg = &bytes[5..];
    for fragment in [1, 7, 100, 512, 1000] {
        let hello = from_records(&records(msg, fragment)).unwrap().unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("records.example.test"), "fragment {fragment}");
        assert_eq!(hello.alpn, ["h2"]);
    }
}

#[test]
fn grease_is_removed_everywhere() {
    let msg = handshake(
        &[0x2a2a, 0x1301, 0x1302],
        &[
            (0x0a0a, vec![]),
            (0, sni_ext(b"grease.example.test")),
            (16, alpn_ext(&[&[0x3a, 0x3a], b"h2"])),
            (43, vec![6, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03]),
            (0xfafa, vec![0]),
        ],
    );
    let hello = from_records(&records(&msg, 16384)).unwrap().unwrap();
    assert!(hello.grease);
    assert_eq!(hello.server_name.as_deref(), Some("grease.example.test"));
    assert_eq!(hello.alpn, ["h2"]);
    assert_eq!(hello.versions, [0x0304, 0x0303]);
    assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x0304));
}

#[test]
fn server_name_of_255_bytes() {
    let name = [["a"; 63].concat(), ["b"; 63].concat(), ["c"; 63].concat(), ["d"; 63].concat()].join(".");
    assert_eq!(name.len(), 255);
    let msg = handshake(&[0x1301], &[(0, sni_ext(name.as_bytes()))]);
    let hello = from_handshake(&msg).unwrap().unwrap();
    assert_eq!(hello.server_name.as_deref(), Some(name.as_str()));
    assert_eq!(hello.versions, [0x0303], "legacy version without supported_versions");
}

#[test]
fn no_server_name() {
    let bytes = rustls_hello("ignored.example.test", &[], false);
    let hello = from_records(&bytes).unwrap().unwrap();
    assert_eq!(hello.server_name, None);
}

/// A broken extension (here ALPN whose list length lies) must not hide the
/// server name that comes after it.
#[test]
fn malformed_extension_is_skipped() {
    let msg = handshake(&[0x1301], &[(16, vec![0, 9, 2, b'h']), (0, sni_ext(b"after.example.test"))]);
    let hello = from_handshake(&msg).unwrap().unwrap();
    assert_eq!(hello.server_name.as_deref(), Some("after.example.test"));
    assert_eq!(hello.bad_extensions, 1);
}

#[test]
fn not_tls_and_not_client_hello() {
    assert_eq!(from_records(b"GET / HTTP/1.1\r\n"), Err(TlsError::NotHandshake(b'G')));
    assert_eq!(from_records(b"SSH"), Err(TlsError::NotHandshake(b'S')));
    assert_eq!(from_records(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Err(TlsError::NotClientHello(2)));
    assert_eq!(from_handshake(&[1, 0xff, 0, 0]), Err(TlsError::TooLarge(0xff0000)));
    assert_eq!(from_records(&[0x16, 3, 1, 0xff, 0xff]), Err(TlsError::RecordTooLarge(0xffff)));
    assert_eq!(from_handshake(&[1, 0, 0, 2, 3, 3]), Err(TlsError::Malformed));
    // Application data after a complete hello (0-RTT) is fine.
    let mut bytes = rustls_hello("early.example.test", &[], true);
    bytes.extend_from_slice(&[0x17, 3, 3, 0, 1, 0]);
    assert!(from_records(&bytes).unwrap().is_some());
}

#[test]
fn version_names() {
    assert_eq!(version_name(0x0304), "1.3");
    assert_eq!(version_name(0x0300), "3");
    assert_eq!(version_name(0x7f17), "0x7f17");
}

proptest::proptest! {
    /// Hostile bytes: an answer or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
        let _ = from_records(&bytes);
        let _ = from_handshake(&bytes);
    }

    /// A real hello with its tail replaced by junk: still no panic.
    #[test]
    fn corrupted_hello_never_panics(cut in 0usize..1800, junk in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let mut bytes = rustls_hello("junk.example.test", &["h2"], true);
        bytes.truncate(cut.min(bytes.len()));
        bytes.extend_from_slice(&junk);
        let _ = from_records(&bytes);
    }
}
