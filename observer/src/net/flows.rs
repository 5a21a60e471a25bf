//! Joins the kernel's connect, payload and close records by socket cookie
//! and decides, per connection, what to report.
//!
//! Input: decoded [`NetConnect`], [`NetPayload`] and [`NetClose`] events,
//! in ring order, and the time (injected, for tests). Output: [`Output`]s:
//! one [`Connection`] per TCP connection and per QUIC connection attempt,
//! and one [`ImdsRequest`] per metadata-service request that hands out or
//! names a credential.
//!
//! A TCP connection is reported as soon as its outcome is known: its
//! ClientHello parsed, its first bytes not TLS, the kernel's copy budget
//! used up, the socket closed, or [`TrackerConfig::timeout`] passed (a
//! client that connects and waits). Every table is bounded; the oldest
//! entry is reported and dropped when one is full, so nothing is lost
//! silently and memory stays flat. Payload bytes live in zeroed-on-drop
//! buffers: plaintext to a metadata service carries tokens.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use observer_common::NetCloseReason;

use super::{
    http, imds,
    quic::{self, QUIC_V2},
    reassembly::Reassembler,
    tls::{self, ClientHello},
};
use crate::decode::{NetClose, NetConnect, NetPayload, Task, Transport, WalkedPath};

/// Bytes of a TCP stream the agent keeps: more than the kernel ever copies.
const STREAM_LIMIT: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// A connection with no outcome after this long is reported as it is.
    pub timeout: Duration,
    /// A UDP socket with no QUIC Initial for this long is forgotten.
    pub udp_idle: Duration,
    /// Most TCP connections and QUIC attempts pending at once (each).
    pub max_pending: usize,
    /// Metadata-service addresses (plaintext HTTP is parsed for these).
    pub metadata: Vec<IpAddr>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            udp_idle: Duration::from_secs(120),
            max_pending: 65_536,
            metadata: imds::default_endpoints(),
        }
    }
}

/// The process and socket behind a connection, as the kernel saw it at
/// `connect()` (or at a UDP socket's first `sendmsg()`).
#[derive(Debug, Clone)]
pub struct Socket {
    pub cookie: u64,
    pub task: Task,
    pub exe: Option<WalkedPath>,
    /// `AF_INET` or `AF_INET6`.
    pub family: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnTransport {
    Tcp,
    Quic,
}

/// What the first bytes of a connection were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A TLS ClientHello (parsed, or `error` says why not).
    Tls,
    /// A QUIC Initial with a ClientHello.
    Quic,
    /// Plaintext HTTP to a metadata service.
    Http,
    /// Something else: not copied, not parsed.
    Other,
    /// Nothing was sent before the socket closed or the timeout.
    None,
    /// A ClientHello began but did not finish within what was copied.
    Incomplete,
}

impl Payload {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Quic => "quic",
            Self::Http => "http",
            Self::Other => "other",
            Self::None => "none",
            Self::Incomplete => "incomplete",
        }
    }
}

/// One reported connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub socket: Socket,
    /// Kernel time of the `connect()` (QUIC: of the first Initial).
    pub boot_ns: u64,
    pub peer: SocketAddr,
    pub transport: ConnTransport,
    pub payload: Payload,
    pub hello: Option<ClientHello>,
    /// QUIC version of the Initial.
    pub quic_version: Option<u32>,
    /// The first plaintext request: its `Host`, method and path.
    pub http: Option<(Option<String>, String, String)>,
    /// Why TLS or QUIC bytes did not yield a ClientHello.
    pub error: Option<&'static str>,
}

/// One credential-related metadata-service request.
#[derive(Debug, Clone)]
pub struct ImdsRequest {
    pub socket: Socket,
    /// Kernel time of the segment that carried it.
    pub boot_ns: u64,
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub call: imds::Call,
}

#[derive(Debug, Clone)]
pub enum Output {
    Connection(Box<Connection>),
    Imds(Box<ImdsRequest>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Tls,
    Http,
}

struct TcpFlow {
    socket: Socket,
    boot_ns: u64,
    peer: SocketAddr,
    stream: Reassembler,
    base_seq: Option<u32>,
    kind: Kind,
    http_consumed: usize,
    /// HTTP flows report the connection at their first request.
    reported: bool,
}

struct UdpSocket {
    socket: Socket,
    last_seen: Instant,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct QuicKey {
    cookie: u64,
    peer: SocketAddr,
    dcid: Vec<u8>,
}

struct QuicConn {
    socket: Socket,
    boot_ns: u64,
    version: u32,
    crypto: Reassembler,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Tcp(u64),
    Udp(u64),
    Quic(QuicKey),
}

pub struct Tracker {
    cfg: TrackerConfig,
    tcp: HashMap<u64, TcpFlow>,
    udp: HashMap<u64, UdpSocket>,
    quic: HashMap<QuicKey, QuicConn>,
    /// QUIC connections already reported (their later Initials are ignored).
    quic_done: HashSet<QuicKey>,
    quic_done_order: VecDeque<QuicKey>,
    deadlines: VecDeque<(Instant, Key)>,
    stats: BTreeMap<&'static str, u64>,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tcp: HashMap::new(),
            udp: HashMap::new(),
            quic: HashMap::new(),
            quic_done: HashSet::new(),
            quic_done_order: VecDeque::new(),
            deadlines: VecDeque::new(),
            stats: BTreeMap::new(),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    /// Counters by outcome and by reason, for the stop log.
    pub fn stats(&self) -> &BTreeMap<&'static str, u64> {
        &self.stats
    }

    /// Connections and QUIC attempts waiting for an outcome.
    pub fn pending(&self) -> usize {
        self.tcp.len() + self.quic.len()
    }

    pub fn on_connect(&mut self, ev: NetConnect, now: Instant, out: &mut Vec<Output>) {
        let socket = Socket { cookie: ev.cookie, task: ev.task, exe: ev.exe, family: ev.socket_family };
        match ev.transport {
            Transport::Tcp => {
                if let Some(old) = self.tcp.remove(&ev.cookie) {
                    // connect() again on the same socket: report the first.
                    self.finish_tcp(old, None, out);
                }
                while self.tcp.len() >= self.cfg.max_pending {
                    if !self.expire_oldest(out) {
                        break;
                    }
                }
                let flow = TcpFlow {
                    socket,
                    boot_ns: ev.boot_ns,
                    peer: ev.peer,
                    stream: Reassembler::new(STREAM_LIMIT),
                    base_seq: None,
                    kind: Kind::Unknown,
                    http_consumed: 0,
                    reported: false,
                };
                self.tcp.insert(ev.cookie, flow);
                self.deadlines.push_back((now + self.cfg.timeout, Key::Tcp(ev.cookie)));
            }
            Transport::Udp => {
                if self.udp.len() >= self.cfg.max_pending {
                    // Forget the stalest socket; its pending attempts stay.
                    if let Some(oldest) = self.udp.iter().min_by_key(|(_, s)| s.last_seen).map(|(c, _)| *c) {
                        self.udp.remove(&oldest);
                        self.count("udp_socket_evicted");
                    }
                }
                self.udp.insert(ev.cookie, UdpSocket { socket, last_seen: now });
                self.deadlines.push_back((now + self.cfg.udp_idle, Key::Udp(ev.cookie)));
            }
        }
    }

    pub fn on_payload(&mut self, ev: NetPayload, now: Instant, out: &mut Vec<Output>) {
        match ev.transport {
            Transport::Tcp => self.on_tcp_payload(ev, out),
            Transport::Udp => self.on_udp_payload(ev, now, out),
        }
    }

    fn on_tcp_payload(&mut self, ev: NetPayload, out: &mut Vec<Output>) {
        let Some(mut flow) = self.tcp.remove(&ev.cookie) else {
            // The connect record was lost (ring full) or the flow was
            // already reported (timeout): nothing to join with.
            self.count("payload_without_connection");
            return;
        };
        let base = *flow.base_seq.get_or_insert(ev.seq);
        let offset = ev.seq.wrapping_sub(base);
        // A stream's first segment holding a whole ClientHello (what TLS
        // clients send) is parsed where it lies: not copied into the
        // reassembler, nor zeroed out of it. The outcome is the one below,
        // whose stream would hold exactly these bytes (nothing before them,
        // no piece after them waiting, within the limit); a hello that
        // needs more segments goes the way below.
        if offset == 0 && flow.kind == Kind::Unknown && flow.stream.is_empty() {
            let data = ev.data.expose();
            if data.len() <= STREAM_LIMIT && data.first() == Some(&0x16) {
                let parsed = tls::from_records(data);
                match self.settle_tls(flow, parsed, out) {
                    Some(more) => flow = more,
                    None => return,
                }
            }
        }
        if offset < 1 << 31 {
            flow.stream.add(u64::from(offset), ev.data.expose());
        }
        if flow.kind == Kind::Unknown
            && let Some(&first) = flow.stream.contiguous().first()
        {
            flow.kind = if first == 0x16 {
                Kind::Tls
            } else if self.cfg.metadata.contains(&flow.peer.ip()) {
                Kind::Http
            } else {
                // The kernel copies no other plaintext; be safe anyway.
                self.finish_tcp(flow, Some(Payload::Other), out);
                return;
            };
        }
        match flow.kind {
            Kind::Unknown => {}
            Kind::Tls => {
                let parsed = tls::from_records(flow.stream.contiguous());
                match self.settle_tls(flow, parsed, out) {
                    Some(more) => flow = more,
                    None => return,
                }
            }
            Kind::Http => {
                let invalid = self.read_http(&mut flow, ev.boot_ns, out);
                if invalid {
                    self.count("http_unreadable");
                    self.finish_tcp(flow, None, out);
                    return;
                }
            }
        }
        if ev.end || flow.stream.full() {
            self.finish_tcp(flow, None, out);
        } else {
            self.tcp.insert(ev.cookie, flow);
        }
    }

    /// Reports the connection when the parse of its first TLS bytes settles
    /// it (a whole ClientHello, or bytes that cannot be one); gives the
    /// flow back when the hello needs more bytes.
    fn settle_tls(
        &mut self,
        flow: TcpFlow,
        parsed: Result<Option<ClientHello>, tls::TlsError>,
        out: &mut Vec<Output>,
    ) -> Option<TcpFlow> {
        match parsed {
            Ok(Some(hello)) => {
                self.count("tls_client_hello");
                self.report_tcp(flow, Payload::Tls, Some(hello), None, out);
                None
            }
            Ok(None) => Some(flow),
            Err(e) => {
                self.count(e.reason());
                self.report_tcp(flow, Payload::Tls, None, Some(e.reason()), out);
                None
            }
        }
    }

    /// Reports the complete requests that arrived; true when the stream is
    /// not HTTP.
    fn read_http(&mut self, flow: &mut TcpFlow, boot_ns: u64, out: &mut Vec<Output>) -> bool {
        let r = http::parse(flow.stream.contiguous(), flow.http_consumed);
        flow.http_consumed = r.consumed;
        for head in r.heads {
            self.count("http_request");
            if !flow.reported {
                flow.reported = true;
                out.push(Output::Connection(Box::new(Connection {
                    socket: flow.socket.clone(),
                    boot_ns: flow.boot_ns,
                    peer: flow.peer,
                    transport: ConnTransport::Tcp,
                    payload: Payload::Http,
                    hello: None,
                    quic_version: None,
                    http: Some((head.host.clone(), head.method.clone(), head.path.clone())),
                    error: None,
                })));
            }
            let call = imds::classify(flow.peer.ip(), &head);
            if call.kind.is_some() {
                self.count("imds_credential_request");
                out.push(Output::Imds(Box::new(ImdsRequest {
                    socket: flow.socket.clone(),
                    boot_ns,
                    peer: flow.peer,
                    method: head.method,
                    path: head.path,
                    host: head.host,
                    call,
                })));
            }
        }
        r.invalid
    }

    fn on_udp_payload(&mut self, ev: NetPayload, now: Instant, out: &mut Vec<Output>) {
        let Some(sock) = self.udp.get_mut(&ev.cookie) else {
            self.count("quic_without_socket");
            return;
        };
        sock.last_seen = now;
        let socket = sock.socket.clone();
        let data = ev.data.expose();
        if !quic::looks_initial(data) {
            return;
        }
        if ev.truncated {
            // Longer than the kernel copies: the last packet may not parse.
            self.count("quic_datagram_truncated");
        }
        for packet in quic::parse_datagram(data) {
            let p = match packet {
                Ok(p) => p,
                Err(e) => {
                    // Server Initials and a client's later Initials (keys
                    // from another connection id) end up here.
                    self.count(e.reason());
                    continue;
                }
            };
            let key = QuicKey { cookie: ev.cookie, peer: ev.peer, dcid: p.dcid };
            if self.quic_done.contains(&key) {
                continue;
            }
            if !self.quic.contains_key(&key) {
                while self.quic.len() >= self.cfg.max_pending {
                    if !self.expire_oldest(out) {
                        break;
                    }
                }
                let conn = QuicConn {
                    socket: socket.clone(),
                    boot_ns: ev.boot_ns,
                    version: p.version,
                    crypto: Reassembler::new(tls::MAX_HELLO + 4),
                };
                self.quic.insert(key.clone(), conn);
                self.deadlines.push_back((now + self.cfg.timeout, Key::Quic(key.clone())));
            }
            let Some(conn) = self.quic.get_mut(&key) else { continue };
            for (offset, bytes) in &p.crypto {
                conn.crypto.add(*offset, bytes);
            }
            match tls::from_handshake(conn.crypto.contiguous()) {
                Ok(None) => {}
                Ok(Some(hello)) => {
                    self.count("quic_client_hello");
                    self.finish_quic(key, Some(hello), None, out);
                }
                Err(e) => {
                    self.count(e.reason());
                    self.finish_quic(key, None, Some(e.reason()), out);
                }
            }
        }
    }

    pub fn on_close(&mut self, ev: NetClose, _now: Instant, out: &mut Vec<Output>) {
        if let Some(flow) = self.tcp.remove(&ev.cookie) {
            let payload = match ev.reason {
                NetCloseReason::NotCaptured => Some(Payload::Other),
                NetCloseReason::Released => None,
            };
            self.finish_tcp(flow, payload, out);
            return;
        }
        if self.udp.remove(&ev.cookie).is_some() {
            let keys: Vec<QuicKey> = self.quic.keys().filter(|k| k.cookie == ev.cookie).cloned().collect();
            for key in keys {
                self.finish_quic(key, None, None, out);
            }
        }
    }

    /// Reports what timed out.
    pub fn on_tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        while self.deadlines.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, key)) = self.deadlines.pop_front() {
                self.expire(key, now, out);
            }
        }
    }

    /// Reports everything still pending (the agent is stopping).
    pub fn finish_all(&mut self, out: &mut Vec<Output>) {
        let cookies: Vec<u64> = self.tcp.keys().copied().collect();
        for cookie in cookies {
            if let Some(flow) = self.tcp.remove(&cookie) {
                self.finish_tcp(flow, None, out);
            }
        }
        let keys: Vec<QuicKey> = self.quic.keys().cloned().collect();
        for key in keys {
            self.finish_quic(key, None, None, out);
        }
        self.deadlines.clear();
    }

    /// Expires the entry with the earliest deadline, whatever its time.
    fn expire_oldest(&mut self, out: &mut Vec<Output>) -> bool {
        while let Some((_, key)) = self.deadlines.pop_front() {
            let live = match &key {
                Key::Tcp(c) => self.tcp.contains_key(c),
                Key::Quic(k) => self.quic.contains_key(k),
                Key::Udp(_) => false,
            };
            if live {
                self.count("evicted_full");
                self.expire(key, Instant::now(), out);
                return true;
            }
        }
        false
    }

    fn expire(&mut self, key: Key, now: Instant, out: &mut Vec<Output>) {
        match key {
            Key::Tcp(cookie) => {
                if let Some(flow) = self.tcp.remove(&cookie) {
                    self.count("timeout");
                    self.finish_tcp(flow, None, out);
                }
            }
            Key::Quic(key) => {
                if self.quic.contains_key(&key) {
                    self.count("timeout");
                    self.finish_quic(key, None, None, out);
                }
            }
            Key::Udp(cookie) => {
                let idle = self.udp.get(&cookie).map(|s| s.last_seen + self.cfg.udp_idle);
                match idle {
                    Some(until) if until > now => self.deadlines.push_back((until, Key::Udp(cookie))),
                    Some(_) => {
                        self.udp.remove(&cookie);
                    }
                    None => {}
                }
            }
        }
    }

    /// Reports a TCP connection from what it has so far (`payload`: when
    /// the caller knows better than the stream).
    fn finish_tcp(&mut self, flow: TcpFlow, payload: Option<Payload>, out: &mut Vec<Output>) {
        if flow.reported {
            return;
        }
        let payload = payload.unwrap_or(match flow.kind {
            Kind::Unknown if flow.stream.contiguous().is_empty() => Payload::None,
            Kind::Unknown => Payload::Other,
            Kind::Tls => Payload::Incomplete,
            Kind::Http => Payload::Http,
        });
        let error = (payload == Payload::Incomplete).then_some("incomplete_client_hello");
        self.report_tcp(flow, payload, None, error, out);
    }

    fn report_tcp(
        &mut self,
        flow: TcpFlow,
        payload: Payload,
        hello: Option<ClientHello>,
        error: Option<&'static str>,
        out: &mut Vec<Output>,
    ) {
        self.count("connection");
        out.push(Output::Connection(Box::new(Connection {
            socket: flow.socket,
            boot_ns: flow.boot_ns,
            peer: flow.peer,
            transport: ConnTransport::Tcp,
            payload,
            hello,
            quic_version: None,
            http: None,
            error,
        })));
    }

    fn finish_quic(
        &mut self,
        key: QuicKey,
        hello: Option<ClientHello>,
        error: Option<&'static str>,
        out: &mut Vec<Output>,
    ) {
        let Some(conn) = self.quic.remove(&key) else { return };
        let error = error.or((hello.is_none()).then_some("incomplete_client_hello"));
        self.count("connection");
        out.push(Output::Connection(Box::new(Connection {
            socket: conn.socket,
            boot_ns: conn.boot_ns,
            peer: key.peer,
            transport: ConnTransport::Quic,
            payload: if hello.is_some() { Payload::Quic } else { Payload::Incomplete },
            hello,
            quic_version: Some(conn.version),
            http: None,
            error,
        })));
        if self.quic_done_order.len() >= 4096
            && let Some(old) = self.quic_done_order.pop_front()
        {
            self.quic_done.remove(&old);
        }
        self.quic_done.insert(key.clone());
        self.quic_done_order.push_back(key);
    }
}

/// `"1"` or `"2"` for the QUIC versions we read.
pub fn quic_version_name(v: u32) -> String {
    match v {
        quic::QUIC_V1 => "1".into(),
        QUIC_V2 => "2".into(),
        other => format!("{other:#x}"),
    }
}

#[cfg(test)]
mod tests;
