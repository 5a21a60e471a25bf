//! Network sensor records and map types (`observer-ebpf/src/probes/net.rs`).
//!
//! The kernel sees connections at `connect()`/`sendmsg()` (process context:
//! who connects where) and the first outbound payload bytes in a cgroup_skb
//! egress program (no process context). Both carry the socket cookie, which
//! the agent uses to join them. Addresses are 16 bytes, IPv4 as v4-mapped
//! IPv6 (`::ffff:a.b.c.d`), so one key type serves both families and a
//! dual-stack socket's v4-mapped destination matches its IPv4 packets.
use crate::{EventHeader, TaskInfo, WALK_BUF_LEN};

/// Most payload bytes one [`NetPayloadEvent`] carries. A larger segment
/// (GSO on loopback) is sent as several records.
pub const NET_CHUNK_LEN: usize = 2048;
/// Most bytes of one TCP stream the kernel copies when it starts with a TLS
/// record: a post-quantum ClientHello is about 1.8 kB; the kernel trims the
/// budget to the ClientHello's own length from its record header.
pub const NET_TLS_CAPTURE_MAX: u32 = 8192;
/// Most bytes of a plaintext stream to a metadata-service address (HTTP
/// request lines and headers of a few requests on one connection).
pub const NET_PLAIN_CAPTURE_MAX: u32 = 4096;
/// Most payload-carrying segments copied per TCP connection.
pub const NET_MAX_SEGMENTS: u32 = 16;
/// Entries in the kernel's socket table (LRU: the oldest idle entry goes).
pub const NET_MAX_FLOWS: u32 = 65536;
/// Entries in the metadata-service destination table.
pub const NET_MAX_METADATA_DESTS: u32 = 64;

/// The 16-byte address form used in every network record and map key.
pub type NetAddr = [u8; 16];

/// Which hook saw a socket first.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetHook {
    Connect4 = 1,
    Connect6 = 2,
    Sendmsg4 = 3,
    Sendmsg6 = 4,
}

impl NetHook {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Connect4),
            2 => Some(Self::Connect6),
            3 => Some(Self::Sendmsg4),
            4 => Some(Self::Sendmsg6),
            _ => None,
        }
    }
}

/// IP protocol numbers the sensor handles.
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
/// Socket families (`AF_*`).
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// Bits of the `flags` fields of network records.
pub mod net_flags {
    /// [`super::NetConnectEvent::exe`] holds the executable's path.
    pub const EXE_VALID: u32 = 1 << 0;
    pub const EXE_TRUNCATED: u32 = 1 << 1;
    /// The kernel stopped copying this stream after this record (budget,
    /// segment limit or the ClientHello's own length reached).
    pub const PAYLOAD_END: u32 = 1 << 8;
    /// The segment or datagram had more bytes than the record carries.
    pub const PAYLOAD_TRUNCATED: u32 = 1 << 9;
}

/// Why the kernel stopped following a socket.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetCloseReason {
    /// The socket was released (closed) while the kernel still followed it.
    Released = 1,
    /// The first payload was neither TLS nor plaintext to a metadata
    /// service: nothing of it was copied.
    NotCaptured = 2,
}

impl NetCloseReason {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Released),
            2 => Some(Self::NotCaptured),
            _ => None,
        }
    }
}

/// A socket seen connecting (TCP or UDP `connect()`, in process context),
/// or a UDP socket's first QUIC Initial (then `task` is the one recorded at
/// its `connect()`/`sendmsg()`, and `exe` is not valid).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetConnectEvent {
    pub header: EventHeader,
    pub task: TaskInfo,
    pub cookie: u64,
    /// Destination ([`NetAddr`] form).
    pub addr: NetAddr,
    /// Destination port, host byte order.
    pub port: u16,
    pub _pad0: u16,
    /// The socket's family (`AF_INET`/`AF_INET6`).
    pub family: u32,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u32,
    /// A [`NetHook`].
    pub hook: u32,
    /// [`net_flags`] bits.
    pub flags: u32,
    /// Bytes used in `exe`.
    pub exe_len: u16,
    pub _pad1: u16,
    /// The executable's path from `mm->exe_file` (see [`WALK_BUF_LEN`]).
    pub exe: [u8; WALK_BUF_LEN],
}
const _: () = assert!(core::mem::size_of::<NetConnectEvent>() == 16 + 56 + 8 + 16 + 4 + 16 + 4 + WALK_BUF_LEN);

/// Fixed part of a payload record; `len` payload bytes follow it and
/// `header.size` is `size_of::<NetPayloadEvent>() + len`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetPayloadEvent {
    pub header: EventHeader,
    pub cookie: u64,
    /// Destination of the packet ([`NetAddr`] form) and port (host order).
    pub addr: NetAddr,
    pub port: u16,
    pub _pad0: u16,
    /// TCP sequence number of the first byte carried (0 for UDP).
    pub seq: u32,
    /// Payload bytes that follow.
    pub len: u32,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u32,
    /// [`net_flags`] bits.
    pub flags: u32,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<NetPayloadEvent>() == 16 + 8 + 16 + 4 + 4 + 4 + 4 + 4 + 4);

/// The kernel stopped following a socket without a last payload record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetCloseEvent {
    pub header: EventHeader,
    pub cookie: u64,
    /// A [`NetCloseReason`].
    pub reason: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<NetCloseEvent>() == 32);

/// Value of the metadata-service destination table (key: [`NetAddr`]).
/// Plaintext to these addresses is copied (request lines and headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataDest {
    /// Opaque id the agent chose (index into its own table).
    pub id: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<MetadataDest>() == 8);
