//! QUIC Initial packets: the ClientHello of a QUIC connection.
//!
//! Input: one UDP datagram as the client sent it (possibly several
//! coalesced long-header packets; possibly cut short by the kernel's copy
//! bound). Output: per Initial packet, its connection ids and the CRYPTO
//! frames of its decrypted payload, to be joined by [`super::reassembly`]
//! and read by [`super::tls::from_handshake`].
//!
//! Initial packets are protected with keys anyone can derive from the
//! packet's destination connection id (RFC 9001 section 5.2; QUIC v2:
//! RFC 9369): HKDF-SHA256 from a version-specific salt, AES-128 header
//! protection, AES-128-GCM payload protection. The client's first Initials
//! (and its Initials after a Retry) carry the destination connection id the
//! keys come from; later ones (after the server answered) do not, fail
//! authentication, and are reported as [`QuicError::Decrypt`]. Server
//! Initials fail the same way: only client ClientHellos come out.
//! Standalone (no `crate::` paths): the fuzz targets include it.
use aes::{
    Aes128,
    cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray},
};
use aes_gcm::{AeadInPlace, Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

pub const QUIC_V1: u32 = 1;
pub const QUIC_V2: u32 = 0x6b33_43cf;
const V1_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f,
    0x0a,
];
const V2_SALT: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e,
    0xd9,
];
const MAX_CID: usize = 20;
const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;
/// Most CRYPTO frames taken from one packet.
const MAX_FRAMES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("not a long-header packet")]
    ShortHeader,
    #[error("QUIC version {0:#x} is not handled")]
    Version(u32),
    #[error("packet ends early")]
    Truncated,
    #[error("connection id longer than 20 bytes")]
    ConnectionId,
    #[error("payload did not authenticate with the client Initial keys")]
    Decrypt,
    #[error("frame type {0:#x} not allowed in an Initial packet")]
    Frame(u64),
}

impl QuicError {
    /// Low-cardinality reason, for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ShortHeader => "quic_short_header",
            Self::Version(_) => "quic_version",
            Self::Truncated => "quic_truncated",
            Self::ConnectionId => "quic_connection_id",
            Self::Decrypt => "quic_not_client_initial",
            Self::Frame(_) => "quic_frame",
        }
    }
}

/// A decrypted client Initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialPacket {
    pub version: u32,
    pub dcid: Vec<u8>,
    pub scid: Vec<u8>,
    pub packet_number: u64,
    /// CRYPTO frames: (stream offset, bytes).
    pub crypto: Vec<(u64, Vec<u8>)>,
}

/// The client's Initial packet protection keys (RFC 9001 section 5).
#[derive(Clone)]
pub struct InitialKeys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys(..)")
    }
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(secret: &[u8], label: &[u8], out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
    let len = u16::try_from(out.len()).ok()?;
    let full_len = u8::try_from(6 + label.len()).ok()?;
    let len_bytes = len.to_be_bytes();
    let info: [&[u8]; 6] = [&len_bytes, &[full_len], b"tls13 ", label, &[0], &[]];
    hk.expand_multi_info(&info, out).ok()
}

impl InitialKeys {
    /// The client's keys for a connection whose client-chosen destination
    /// connection id is `dcid`. None for an unknown version.
    pub fn client(version: u32, dcid: &[u8]) -> Option<Self> {
        let (salt, key_label, iv_label, hp_label): (&[u8], &[u8], &[u8], &[u8]) = match version {
            QUIC_V1 => (&V1_SALT, b"quic key", b"quic iv", b"quic hp"),
            QUIC_V2 => (&V2_SALT, b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
            _ => return None,
        };
        let (initial, _) = Hkdf::<Sha256>::extract(Some(salt), dcid);
        let mut client = [0u8; 32];
        expand_label(&initial, b"client in", &mut client)?;
        let mut keys = Self { key: [0; 16], iv: [0; 12], hp: [0; 16] };
        expand_label(&client, key_label, &mut keys.key)?;
        expand_label(&client, iv_label, &mut keys.iv)?;
        expand_label(&client, hp_label, &mut keys.hp)?;
        Some(keys)
    }
}

/// Reads a variable-length integer (RFC 9000 section 16).
fn varint(b: &mut &[u8]) -> Result<u64, QuicError> {
    let first = *b.first().ok_or(QuicError::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len).ok_or(QuicError::Truncated)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = v << 8 | u64::from(x);
    }
    *b = &b[len..];
    Ok(v)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], QuicError> {
    let out = b.get(..n).ok_or(QuicError::Truncated)?;
    *b = &b[n..];
    Ok(out)
}

fn to_usize(v: u64) -> Result<usize, QuicError> {
    usize::try_from(v).map_err(|_| QuicError::Truncated)
}

/// Whether a datagram starts like a client Initial (long header, v1 or v2,
/// Initial type): the cheap test before any crypto.
pub fn looks_initial(d: &[u8]) -> bool {
    let (Some(&b0), Some(v)) = (d.first(), d.get(1..5)) else { return false };
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    b0 & 0xc0 == 0xc0 && initial_type(version) == Some((b0 >> 4) & 0x03)
}

fn initial_type(version: u32) -> Option<u8> {
    match version {
        QUIC_V1 => Some(0),
        QUIC_V2 => Some(1),
        _ => None,
    }
}

/// Parses every long-header packet of a datagram, decrypting the Initial
/// ones. Stops at a short-header packet, at an unknown version or at the
/// first packet that does not fit; what came before is kept.
pub fn parse_datagram(datagram: &[u8]) -> Vec<Result<InitialPacket, QuicError>> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() && out.len() < 8 {
        match parse_packet(rest) {
            Ok((packet, used)) => {
                if let Some(p) = packet {
                    out.push(Ok(p));
                }
                rest = &rest[used..];
            }
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

/// One long-header packet at the start of `d`: the decrypted Initial (None
/// for another long-header type) and the bytes it spans.
fn parse_packet(d: &[u8]) -> Result<(Option<InitialPacket>, usize), QuicError> {
    let mut b = d;
    let b0 = take(&mut b, 1)?[0];
    if b0 & 0x80 == 0 {
        return Err(QuicError::ShortHeader);
    }
    let v = take(&mut b, 4)?;
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let initial = initial_type(version).ok_or(QuicError::Version(version))?;
    let dcid_len = usize::from(take(&mut b, 1)?[0]);
    if dcid_len > MAX_CID {
        return Err(QuicError::ConnectionId);
    }
    let dcid = take(&mut b, dcid_len)?;
    let scid_len = usize::from(take(&mut b, 1)?[0]);
    if scid_len > MAX_CID {
        return Err(QuicError::ConnectionId);
    }
    let scid = take(&mut b, scid_len)?;
    let ty = (b0 >> 4) & 0x03;
    let is_initial = ty == initial;
    let retry = match version {
        QUIC_V2 => ty == 0,
        _ => ty == 3,
    };
    if retry {
        // A Retry has no length field and fills the datagram.
        return Ok((None, d.len()));
    }
    if is_initial {
        let token_len = to_usize(varint(&mut b)?)?;
        take(&mut b, token_len)?;
    }
    let length = to_usize(varint(&mut b)?)?;
    let pn_offset = d.len() - b.len();
    let end = pn_offset.checked_add(length).ok_or(QuicError::Truncated)?;
    if end > d.len() {
        return Err(QuicError::Truncated);
    }
    if !is_initial {
        return Ok((None, end));
    }
    let keys = InitialKeys::client(version, dcid).ok_or(QuicError::Version(version))?;
    let packet = decrypt(&keys, &d[..end], pn_offset)?;
    Ok((
        Some(InitialPacket {
            version,
            dcid: dcid.to_vec(),
            scid: scid.to_vec(),
            packet_number: packet.0,
            crypto: crypto_frames(&packet.1)?,
        }),
        end,
    ))
}

/// Removes header protection and decrypts the payload of the packet `p`
/// (exactly one packet) whose packet number starts at `pn_offset`.
fn decrypt(keys: &InitialKeys, p: &[u8], pn_offset: usize) -> Result<(u64, Vec<u8>), QuicError> {
    let sample_at = pn_offset + 4;
    let sample = p.get(sample_at..sample_at + SAMPLE_LEN).ok_or(QuicError::Truncated)?;
    let hp = Aes128::new(GenericArray::from_slice(&keys.hp));
    let mut mask = GenericArray::clone_from_slice(sample);
    hp.encrypt_block(&mut mask);
    let mut header = p[..pn_offset + 4].to_vec();
    header[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        header[pn_offset + i] ^= mask[1 + i];
        pn = pn << 8 | u64::from(header[pn_offset + i]);
    }
    header.truncate(pn_offset + pn_len);
    let body = &p[pn_offset + pn_len..];
    if body.len() < TAG_LEN {
        return Err(QuicError::Truncated);
    }
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let mut nonce = keys.iv;
    for (n, x) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= x;
    }
    let aead = Aes128Gcm::new(GenericArray::from_slice(&keys.key));
    let mut plain = ciphertext.to_vec();
    aead.decrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut plain, Tag::from_slice(tag))
        .map_err(|_| QuicError::Decrypt)?;
    Ok((pn, plain))
}

/// The CRYPTO frames of a decrypted Initial payload. Only the frame types
/// RFC 9000 allows in Initial packets may appear.
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, QuicError> {
    let mut out = Vec::new();
    let mut b = payload;
    while !b.is_empty() {
        match varint(&mut b)? {
            0x00 | 0x01 => {} // PADDING, PING
            ty @ (0x02 | 0x03) => {
                // ACK: largest, delay, range count, first range, ranges, [ECN]
                varint(&mut b)?;
                varint(&mut b)?;
                let ranges = varint(&mut b)?;
                varint(&mut b)?;
                for _ in 0..ranges.min(1 << 16) {
                    varint(&mut b)?;
                    varint(&mut b)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        varint(&mut b)?;
                    }
                }
            }
            0x06 => {
                let offset = varint(&mut b)?;
                let len = to_usize(varint(&mut b)?)?;
                let data = take(&mut b, len)?;
                if out.len() < MAX_FRAMES {
                    out.push((offset, data.to_vec()));
                }
            }
            0x1c => {
                // CONNECTION_CLOSE (transport): code, frame type, reason
                varint(&mut b)?;
                varint(&mut b)?;
                let len = to_usize(varint(&mut b)?)?;
                take(&mut b, len)?;
            }
            other => return Err(QuicError::Frame(other)),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
