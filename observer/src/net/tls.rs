//! TLS ClientHello: what a client offers before any encryption starts.
//!
//! Input: either the first bytes of a TCP stream, contiguous from its start
//! and possibly cut anywhere (mid-record, mid-handshake: the kernel copies a
//! bounded prefix, over several segments), or a QUIC CRYPTO stream
//! (handshake messages without the record layer). Output: the server name
//! (SNI, any length the protocol allows), offered ALPN protocols and TLS
//! versions with GREASE values removed; `Ok(None)` while the bytes so far
//! do not hold the whole ClientHello. A ClientHello split over several
//! records is joined; one longer than [`MAX_HELLO`] is an error.
//!
//! Parsing is tls-parser's (rusticata); this module only joins records and
//! reads each extension on its own, so one malformed extension does not
//! hide the server name. Standalone (no `crate::` paths): the fuzz targets
//! include it.
use tls_parser::{TlsExtension, parse_tls_client_hello_extension, parse_tls_handshake_client_hello};

/// Largest ClientHello handshake message accepted (a full record's worth:
/// post-quantum key shares make common ones about 1.8 kB).
pub const MAX_HELLO: usize = 16 * 1024;
const RECORD_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Longest record payload a peer may send (2^14 plus expansion allowance).
const MAX_RECORD: usize = (1 << 14) + 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("record type {0} is not handshake")]
    NotHandshake(u8),
    #[error("handshake message type {0} is not ClientHello")]
    NotClientHello(u8),
    #[error("ClientHello of {0} bytes is larger than accepted")]
    TooLarge(usize),
    #[error("record of {0} bytes is larger than TLS allows")]
    RecordTooLarge(usize),
    #[error("malformed ClientHello")]
    Malformed,
}

impl TlsError {
    /// Low-cardinality reason, for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotHandshake(_) => "not_handshake",
            Self::NotClientHello(_) => "not_client_hello",
            Self::TooLarge(_) => "hello_too_large",
            Self::RecordTooLarge(_) => "record_too_large",
            Self::Malformed => "malformed_hello",
        }
    }
}

/// What a ClientHello offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The first `host_name` entry of the server_name extension.
    pub server_name: Option<String>,
    /// Offered ALPN protocol ids, in order, GREASE removed.
    pub alpn: Vec<String>,
    /// Offered versions: the supported_versions extension (GREASE removed)
    /// or, without it, the legacy version field.
    pub versions: Vec<u16>,
    /// Whether the client sent GREASE values (RFC 8701).
    pub grease: bool,
    /// Extensions tls-parser could not read (skipped, not fatal).
    pub bad_extensions: u32,
    /// Size of the handshake message.
    pub size: usize,
}

impl ClientHello {
    /// The highest offered version, as OpenTelemetry's
    /// `tls.protocol.version` spells it (`"1.3"`).
    pub fn max_version(&self) -> Option<String> {
        self.versions.iter().copied().filter(|v| *v >> 8 == 3).max().map(version_name)
    }
}

/// `0x0304` -> `"1.3"`; SSL 3.0 -> `"3"` (with protocol name `ssl`);
/// anything else in hex.
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "3".into(),
        0x0301 => "1.0".into(),
        0x0302 => "1.1".into(),
        0x0303 => "1.2".into(),
        0x0304 => "1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Parses the ClientHello at the start of a TCP stream (TLS records).
/// `Ok(None)`: more bytes are needed.
pub fn from_records(stream: &[u8]) -> Result<Option<ClientHello>, TlsError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let (ty, len) = (rest[0], usize::from(u16::from_be_bytes([rest[3], rest[4]])));
        if ty != RECORD_HANDSHAKE {
            // Bytes after a complete ClientHello may be anything (0-RTT
            // data); before it, a non-handshake record is an error.
            return match from_handshake(&handshake)? {
                Some(hello) => Ok(Some(hello)),
                None => Err(TlsError::NotHandshake(ty)),
            };
        }
        if len > MAX_RECORD {
            return Err(TlsError::RecordTooLarge(len));
        }
        let body = &rest[5..];
        let take = len.min(body.len());
        if handshake.is_empty() {
            // The first record's bytes are parsed where they lie (a
            // ClientHello nearly always fits one record); copied only when
            // the next record must be joined to them.
            let piece = &body[..take];
            if piece.len() > MAX_HELLO + 4 {
                return Err(TlsError::TooLarge(piece.len()));
            }
            if let Some(hello) = from_handshake(piece)? {
                return Ok(Some(hello));
            }
            handshake.extend_from_slice(piece);
        } else {
            handshake.extend_from_slice(&body[..take]);
            if handshake.len() > MAX_HELLO + 4 {
                return Err(TlsError::TooLarge(handshake.len()));
            }
            if let Some(hello) = from_handshake(&handshake)? {
                return Ok(Some(hello));
            }
        }
        rest = &body[take..];
    }
    if rest.len() == stream.len() && !stream.is_empty() && stream[0] != RECORD_HANDSHAKE {
        return Err(TlsError::NotHandshake(stream[0]));
    }
    Ok(None)
}

/// Parses a ClientHello handshake message (QUIC CRYPTO stream, or the
/// joined record payloads). `Ok(None)`: more bytes are needed.
pub fn from_handshake(msg: &[u8]) -> Result<Option<ClientHello>, TlsError> {
    let Some(&ty) = msg.first() else { return Ok(None) };
    if ty != HANDSHAKE_CLIENT_HELLO {
        return Err(TlsError::NotClientHello(ty));
    }
    if msg.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(msg[1]) << 16 | usize::from(msg[2]) << 8 | usize::from(msg[3]);
    if len > MAX_HELLO {
        return Err(TlsError::TooLarge(len));
    }
    let Some(body) = msg.get(4..4 + len) else { return Ok(None) };
    let (_, ch) = parse_tls_handshake_client_hello(body).map_err(|_| TlsError::Malformed)?;
    let mut hello = ClientHello { size: 4 + len, ..ClientHello::default() };
    hello.grease = ch.ciphers.iter().any(|c| is_grease(c.0));
    let mut supported: Option<Vec<u16>> = None;
    let mut ext = ch.ext.unwrap_or_default();
    while ext.len() >= 4 {
        let ty = u16::from_be_bytes([ext[0], ext[1]]);
        let len = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let Some(one) = ext.get(..4 + len) else {
            hello.bad_extensions += 1;
            break;
        };
        ext = &ext[4 + len..];
        if is_grease(ty) {
            hello.grease = true;
            continue;
        }
        if !matches!(ty, EXT_SERVER_NAME | EXT_ALPN | EXT_SUPPORTED_VERSIONS) {
            continue;
        }
        match parse_tls_client_hello_extension(one) {
            Ok((_, TlsExtension::SNI(names))) => {
                hello.server_name = names
                    .iter()
                    .find(|(t, _)| t.0 == 0)
                    .map(|(_, name)| String::from_utf8_lossy(name).into_owned());
            }
            Ok((_, TlsExtension::ALPN(ids))) => {
                for id in ids {
                    if id.len() == 2 && is_grease(u16::from_be_bytes([id[0], id[1]])) {
                        hello.grease = true;
                    } else {
                        hello.alpn.push(String::from_utf8_lossy(id).into_owned());
                    }
                }
            }
            Ok((_, TlsExtension::SupportedVersions(versions))) => {
                hello.grease |= versions.iter().any(|v| is_grease(v.0));
                supported = Some(versions.iter().map(|v| v.0).filter(|v| !is_grease(*v)).collect());
            }
            _ => hello.bad_extensions += 1,
        }
    }
    hello.versions = supported.unwrap_or_else(|| vec![ch.version.0]);
    Ok(Some(hello))
}

#[cfg(test)]
pub(crate) mod tests;
