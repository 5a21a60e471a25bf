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

#[cfg(test)]
mod tests {
    use observer_common::{AF_INET6, EventHeader, NET_CHUNK_LEN};

    use super::*;
    use crate::decode::{Event, decode};

    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data ABI value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn mapped(ip: [u8; 4]) -> NetAddr {
        std::net::Ipv4Addr::from(ip).to_ipv6_mapped().octets()
    }

    #[test]
    fn connect_with_a_v4_mapped_destination_is_ipv4() {
        // SAFETY: integer-only repr(C) type; all zeroes is valid.
        let mut raw: NetConnectEvent = unsafe { std::mem::zeroed() };
        raw.header = EventHeader { kind: EventKind::NetConnect as u32, size: size_of::<NetConnectEvent>() as u32, boot_ns: 5 };
        raw.task.tgid = 77;
        raw.cookie = 9;
        raw.addr = mapped([127, 0, 0, 1]);
        raw.port = 8443;
        raw.family = AF_INET6;
        raw.protocol = IPPROTO_TCP;
        raw.hook = NetHook::Connect6 as u32;
        let Ok(Event::NetConnect(ev)) = decode(&as_bytes(&raw)) else { panic!("not a connect") };
        assert_eq!(ev.peer, "127.0.0.1:8443".parse().unwrap());
        assert_eq!((ev.socket_family, ev.transport, ev.task.tgid, ev.exe.is_none()), (AF_INET6, Transport::Tcp, 77, true));
        raw.addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let Ok(Event::NetConnect(ev)) = decode(&as_bytes(&raw)) else { panic!("not a connect") };
        assert_eq!(ev.peer, "[2001:db8::1]:8443".parse().unwrap());
        raw.protocol = 1;
        assert_eq!(decode(&as_bytes(&raw)).unwrap_err(), DecodeError::BadValue { field: "protocol", value: 1 });
    }

    #[test]
    fn payload_length_is_checked_against_the_record() {
        // SAFETY: as above.
        let mut raw: NetPayloadEvent = unsafe { std::mem::zeroed() };
        raw.header.kind = EventKind::NetPayload as u32;
        raw.protocol = IPPROTO_TCP;
        raw.len = 5;
        raw.flags = net_flags::PAYLOAD_END;
        let mut bytes = as_bytes(&raw);
        bytes.extend_from_slice(b"hello");
        let Ok(Event::NetPayload(ev)) = decode(&bytes) else { panic!("not a payload") };
        assert_eq!(ev.data.expose(), b"hello");
        assert!(ev.end && !ev.truncated);
        assert!(!format!("{ev:?}").contains("hello"), "payload bytes are redacted in Debug");
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(DecodeError::Short { .. })));
        raw.len = NET_CHUNK_LEN as u32 + 1;
        assert!(matches!(decode(&as_bytes(&raw)), Err(DecodeError::BadValue { field: "len", .. })));
    }

    #[test]
    fn close_reasons() {
        let raw = NetCloseEvent {
            header: EventHeader { kind: EventKind::NetClose as u32, size: 32, boot_ns: 0 },
            cookie: 3,
            reason: NetCloseReason::NotCaptured as u32,
            _pad0: 0,
        };
        let Ok(Event::NetClose(ev)) = decode(&as_bytes(&raw)) else { panic!("not a close") };
        assert_eq!((ev.cookie, ev.reason), (3, NetCloseReason::NotCaptured));
        let bad = NetCloseEvent { reason: 99, ..raw };
        assert_eq!(decode(&as_bytes(&bad)).unwrap_err(), DecodeError::BadValue { field: "reason", value: 99 });
    }

    proptest::proptest! {
        /// Valid headers of each network kind with arbitrary bodies: an
        /// event or a named error, never a panic.
        #[test]
        fn network_records_with_random_bodies(kind in 16u32..19, body in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            let mut bytes = body;
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&kind.to_ne_bytes());
            }
            let _ = decode(&bytes);
        }
    }
}
