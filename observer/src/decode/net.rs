//! Network records: connect, payload, close (observer-ebpf `probes/net.rs`).
//!
//! Payload bytes are wrapped in [`Secret`] the moment they leave the ring:
//! plaintext to a metadata service carries tokens in its headers, and no
//! stage may log or export them.
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use observer_common::{
    EventKind, IPPROTO_TCP, IPPROTO_UDP, NET_CHUNK_LEN, NetAddr, NetCloseEvent, NetCloseReason, NetConnectEvent,
    NetHook, NetPayloadEvent, net_flags,
};

use super::{DecodeError, Task, WalkedPath, read, task, walked_path};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A socket connecting (TCP or UDP `connect()`), or a UDP socket's first
/// QUIC Initial (then `exe` is None: the kernel was not in the task).
#[derive(Debug, Clone)]
pub struct NetConnect {
    pub boot_ns: u64,
    pub task: Task,
    pub cookie: u64,
    /// Destination.
    pub peer: SocketAddr,
    /// The socket's family (`AF_INET`/`AF_INET6`): an IPv4 `peer` on an
    /// `AF_INET6` socket is a dual-stack (v4-mapped) connection.
    pub socket_family: u32,
    pub transport: Transport,
    pub exe: Option<WalkedPath>,
}

/// Outbound payload bytes of a followed socket, joined to its [`NetConnect`]
/// by `cookie`.
#[derive(Debug, Clone)]
pub struct NetPayload {
    pub boot_ns: u64,
    pub cookie: u64,
    /// Destination of the packet.
    pub peer: SocketAddr,
    /// TCP sequence number of the first byte (0 for UDP).
    pub seq: u32,
    pub transport: Transport,
    /// The kernel copies nothing more of this stream.
    pub end: bool,
    /// The segment or datagram was longer than `data`.
    pub truncated: bool,
    pub data: Secret,
}

/// The kernel stopped following a socket.
#[derive(Debug, Clone)]
pub struct NetClose {
    pub cookie: u64,
    pub reason: NetCloseReason,
}

/// The 16-byte kernel form to an address; v4-mapped becomes IPv4 (what is
/// on the wire, also for a dual-stack socket).
pub fn net_addr(a: &NetAddr, port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(*a);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, port)
}

fn transport(protocol: u32) -> Result<Transport, DecodeError> {
    match protocol {
        IPPROTO_TCP => Ok(Transport::Tcp),
        IPPROTO_UDP => Ok(Transport::Udp),
        value => Err(DecodeError::BadValue { field: "protocol", value }),
    }
}

pub(super) fn decode_connect(bytes: &[u8]) -> Result<NetConnect, DecodeError> {
    let raw: NetConnectEvent = read(bytes).ok_or(DecodeError::Short {
        kind: EventKind::NetConnect,
        got: bytes.len(),
        want: size_of::<NetConnectEvent>(),
    })?;
    NetHook::from_u32(raw.hook).ok_or(DecodeError::BadValue { field: "hook", value: raw.hook })?;
    let exe = (raw.flags & net_flags::EXE_VALID != 0)
        .then(|| walked_path(&raw.exe, raw.exe_len, raw.flags & net_flags::EXE_TRUNCATED == 0));
    Ok(NetConnect {
        boot_ns: raw.header.boot_ns,
        task: task(&raw.task),
        cookie: raw.cookie,
        peer: net_addr(&raw.addr, raw.port),
        socket_family: raw.family,
        transport: transport(raw.protocol)?,
        exe,
    })
}

pub(super) fn decode_payload(bytes: &[u8]) -> Result<NetPayload, DecodeError> {
    let prefix = size_of::<NetPayloadEvent>();
    let raw: NetPayloadEvent = read(bytes).ok_or(DecodeError::Short {
        kind: EventKind::NetPayload,
        got: bytes.len(),
        want: prefix,
    })?;
    let len = usize::try_from(raw.len).unwrap_or(usize::MAX);
    if len > NET_CHUNK_LEN {
        return Err(DecodeError::BadValue { field: "len", value: raw.len });
    }
    let data = bytes.get(prefix..prefix + len).ok_or(DecodeError::Short {
        kind: EventKind::NetPayload,
        got: bytes.len(),
        want: prefix + len,
    })?;
    Ok(NetPayload {
        boot_ns: raw.header.boot_ns,
        cookie: raw.cookie,
        peer: net_addr(&raw.addr, raw.port),
        seq: raw.seq,
        transport: transport(raw.protocol)?,
        end: raw.flags & net_flags::PAYLOAD_END != 0,
        truncated: raw.flags & net_flags::PAYLOAD_TRUNCATED != 0,
        data: Secret::new(data),
    })
}

pub(super) fn decode_close(bytes: &[u8]) -> Result<NetClose, DecodeError> {
    let raw: NetCloseEvent = read(bytes).ok_or(DecodeError::Short {
        kind: EventKind::NetClose,
        got: bytes.len(),
        want: size_of::<NetCloseEvent>(),
    })?;
    let reason =
        NetCloseReason::from_u32(raw.reason).ok_or(DecodeError::BadValue { field: "reason", value: raw.reason })?;
    Ok(NetClose { cookie: raw.cookie, reason })
}
