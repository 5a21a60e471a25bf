use std::net::{Ipv4Addr, Ipv6Addr};

use observer_common::{AF_INET, AF_INET6};

use super::*;
use crate::{
    decode::{NetClose, NetConnect, NetPayload, Task},
    net::{quic::tests::rfc9001_client_initial, tls::tests::rustls_hello},
    secret::Secret,
};

fn task(pid: u32) -> Task {
    Task { tgid: pid, pid, ppid: 1, uid: 0, gid: 0, cgroup_id: 7, start_boot_ns: 1, comm: "client".into() }
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn connect(cookie: u64, pid: u32, peer: SocketAddr, transport: Transport) -> NetConnect {
    NetConnect {
        boot_ns: 100,
        task: task(pid),
        cookie,
        peer,
        socket_family: if peer.is_ipv4() { AF_INET } else { AF_INET6 },
        transport,
        exe: None,
    }
}

fn payload(cookie: u64, peer: SocketAddr, seq: u32, data: &[u8], end: bool) -> NetPayload {
    NetPayload {
        boot_ns: 200,
        cookie,
        peer,
        seq,
        transport: Transport::Tcp,
        end,
        truncated: false,
        data: Secret::new(data),
    }
}

fn connections(out: &[Output]) -> Vec<&Connection> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connection(c) => Some(&**c),
            Output::Imds(_) => None,
        })
        .collect()
}

fn tracker() -> Tracker {
    Tracker::new(TrackerConfig::default())
}

#[test]
fn client_hello_over_segments_with_retransmission_and_seq_wrap() {
    let now = Instant::now();
    let hello = rustls_hello("seg.example.test", &["h2"], true);
    let (a, b) = hello.split_at(700);
    let base: u32 = 0xffff_ff00; // the sequence number wraps inside the hello
    let mut t = tracker();
    let mut out = Vec::new();
    t.on_connect(connect(1, 42, peer(443), Transport::Tcp), now, &mut out);
    t.on_payload(payload(1, peer(443), base, a, false), now, &mut out);
    t.on_payload(payload(1, peer(443), base, &a[..100], false), now, &mut out);
    assert!(out.is_empty());
    t.on_payload(payload(1, peer(443), base.wrapping_add(700), b, true), now, &mut out);
    let c = connections(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].payload, Payload::Tls);
    assert_eq!(c[0].hello.as_ref().and_then(|h| h.server_name.as_deref()), Some("seg.example.test"));
    assert_eq!(c[0].socket.task.tgid, 42);
    assert_eq!(t.pending(), 0);
    // A late retransmission has nothing to join.
    t.on_payload(payload(1, peer(443), base, a, false), now, &mut out);
    assert_eq!(connections(&out).len(), 1);
    assert_eq!(t.stats().get("payload_without_connection"), Some(&1));
}

#[test]
fn outcomes_without_a_hello() {
    let now = Instant::now();
    let mut t = tracker();
    let mut out = Vec::new();
    // Not captured by the kernel (plaintext to an ordinary address).
    t.on_connect(connect(1, 10, peer(80), Transport::Tcp), now, &mut out);
    t.on_close(NetClose { cookie: 1, reason: NetCloseReason::NotCaptured }, now, &mut out);
    // Closed before sending anything.
    t.on_connect(connect(2, 11, peer(81), Transport::Tcp), now, &mut out);
    t.on_close(NetClose { cookie: 2, reason: NetCloseReason::Released }, now, &mut out);
    // The copy budget ended inside the hello.
    t.on_connect(connect(3, 12, peer(443), Transport::Tcp), now, &mut out);
    let hello = rustls_hello("cut.example.test", &[], true);
    t.on_payload(payload(3, peer(443), 5, &hello[..300], true), now, &mut out);
    // Waits, then times out.
    t.on_connect(connect(4, 13, peer(443), Transport::Tcp), now, &mut out);
    t.on_tick(now + Duration::from_secs(1), &mut out);
    assert_eq!(connections(&out).len(), 3);
    t.on_tick(now + Duration::from_secs(6), &mut out);
    let c = connections(&out);
    let got: Vec<(u32, Payload, Option<&str>)> = c.iter().map(|c| (c.socket.task.tgid, c.payload, c.error)).collect();
    assert_eq!(
        got,
        [
            (10, Payload::Other, None),
            (11, Payload::None, None),
            (12, Payload::Incomplete, Some("incomplete_client_hello")),
            (13, Payload::None, None),
        ]
    );
    assert!(c.iter().all(|c| c.hello.is_none()));
}

#[test]
fn tables_are_bounded_and_nothing_is_dropped_silently() {
    let now = Instant::now();
    let mut t = Tracker::new(TrackerConfig { max_pending: 2, ..TrackerConfig::default() });
    let mut out = Vec::new();
    for cookie in 1..=5 {
        t.on_connect(connect(cookie, 100 + cookie as u32, peer(443), Transport::Tcp), now, &mut out);
    }
    assert_eq!(t.pending(), 2);
    assert_eq!(connections(&out).len(), 3, "the three oldest were reported when the table filled");
    t.finish_all(&mut out);
    assert_eq!(connections(&out).len(), 5);
    assert_eq!(t.pending(), 0);
}

#[test]
fn metadata_requests_name_the_role_and_never_carry_the_token() {
    let now = Instant::now();
    let imds_peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80);
    let mut t = tracker();
    let mut out = Vec::new();
    t.on_connect(connect(9, 77, imds_peer, Transport::Tcp), now, &mut out);
    let put = b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n";
    let get = b"GET /latest/meta-data/iam/security-credentials/app-role HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: AQAEAtokenvalue==\r\n\r\n";
    t.on_payload(payload(9, imds_peer, 1000, put, false), now, &mut out);
    t.on_payload(payload(9, imds_peer, 1000 + put.len() as u32, get, false), now, &mut out);
    t.on_close(NetClose { cookie: 9, reason: NetCloseReason::Released }, now, &mut out);
    assert!(!format!("{out:?}").contains("AQAEAtokenvalue"), "the token must not leave the tracker");
    let c = connections(&out);
    assert_eq!(c.len(), 1, "one connection record for the keep-alive connection");
    assert_eq!(c[0].payload, Payload::Http);
    assert_eq!(c[0].http.as_ref().map(|h| h.1.as_str()), Some("PUT"));
    let calls: Vec<&imds::Call> = out
        .iter()
        .filter_map(|o| match o {
            Output::Imds(r) => Some(&r.call),
            Output::Connection(_) => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].operation, calls[0].kind), ("token", Some("aws.imds.session_token")));
    assert_eq!(calls[1].id.as_deref(), Some("app-role"));
}

#[test]
fn quic_initial_is_reported_once_per_connection() {
    let now = Instant::now();
    let server = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4433);
    let mut t = tracker();
    let mut out = Vec::new();
    t.on_connect(connect(5, 55, server, Transport::Udp), now, &mut out);
    let datagram = rfc9001_client_initial();
    let udp = |data: &[u8]| NetPayload {
        boot_ns: 300,
        cookie: 5,
        peer: server,
        seq: 0,
        transport: Transport::Udp,
        end: false,
        truncated: false,
        data: Secret::new(data),
    };
    t.on_payload(udp(&datagram), now, &mut out);
    t.on_payload(udp(&datagram), now, &mut out); // retransmission
    let mut garbage = datagram.clone();
    garbage[700] ^= 0x55;
    t.on_payload(udp(&garbage), now, &mut out); // e.g. a server Initial
    let c = connections(&out);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].transport, ConnTransport::Quic);
    assert_eq!(c[0].payload, Payload::Quic);
    assert_eq!(c[0].quic_version, Some(1));
    assert_eq!(c[0].peer, server);
    assert_eq!(c[0].boot_ns, 300);
    assert_eq!(c[0].hello.as_ref().and_then(|h| h.server_name.as_deref()), Some("example.com"));
    assert_eq!(t.stats().get("quic_not_client_initial"), Some(&1));
}

/// Guards the first-segment fast path (a whole ClientHello parsed where it
/// lies, never copied into the reassembler): for a hello alone, a hello
/// with bytes after it, and TLS-looking bytes that are no ClientHello, one
/// segment reports what the same bytes in two segments (the reassembler's
/// way) report, with the same counts, and the flow is gone either way.
#[test]
fn a_hello_in_one_segment_reports_what_the_reassembled_stream_reports() {
    let now = Instant::now();
    let hello = rustls_hello("one.example.test", &["h2", "http/1.1"], true);
    let mut with_data = hello.clone();
    with_data.extend_from_slice(&[0x17, 3, 3, 0, 2, 0xaa, 0xbb]);
    let not_hello = [0x16, 3, 1, 0, 4, 2, 0, 0, 0];
    let outcome = |c: &Connection| {
        (
            c.payload,
            c.error,
            c.hello.as_ref().map(|h| (h.server_name.clone(), h.alpn.clone(), h.versions.clone(), h.grease)),
        )
    };
    for (what, bytes) in [("hello", &hello[..]), ("hello and data", &with_data[..]), ("not a hello", &not_hello[..])] {
        let mut t = tracker();
        let mut out = Vec::new();
        t.on_connect(connect(1, 42, peer(443), Transport::Tcp), now, &mut out);
        t.on_payload(payload(1, peer(443), 1000, bytes, false), now, &mut out);
        assert_eq!(t.pending(), 0, "{what}: reported at once");
        let split = 3; // inside the first record's header: nothing to parse yet
        let mut t2 = tracker();
        let mut out2 = Vec::new();
        t2.on_connect(connect(1, 42, peer(443), Transport::Tcp), now, &mut out2);
        // A first piece too short to parse: copied, the rest joined to it.
        t2.on_payload(payload(1, peer(443), 1000, &bytes[..split], false), now, &mut out2);
        assert_eq!(t2.pending(), 1, "{what}: waits for more");
        t2.on_payload(payload(1, peer(443), 1000 + split as u32, &bytes[split..], false), now, &mut out2);
        assert_eq!(t2.pending(), 0, "{what}: reported once joined");
        let (one, two) = (connections(&out), connections(&out2));
        assert_eq!(one.len(), 1, "{what}");
        assert_eq!(two.len(), 1, "{what}");
        assert_eq!(outcome(one[0]), outcome(two[0]), "{what}");
        assert_eq!(one[0].payload, Payload::Tls, "{what}");
        assert_eq!(t.stats(), t2.stats(), "{what}: the same counts");
    }
    let mut t = tracker();
    let mut out = Vec::new();
    t.on_connect(connect(1, 42, peer(443), Transport::Tcp), now, &mut out);
    t.on_payload(payload(1, peer(443), 1000, &hello, false), now, &mut out);
    assert_eq!(connections(&out)[0].hello.as_ref().and_then(|h| h.server_name.as_deref()), Some("one.example.test"));
}
