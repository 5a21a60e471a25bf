//! End-to-end: the real agent, real probes on the cgroup v2 root, real TLS,
//! QUIC and HTTP clients against servers on loopback or in network
//! namespaces this test creates. Each test asserts the exact server name
//! and the pid of the connecting process in the `nhi.connection` (or
//! `nhi.credential.access`) records the agent wrote.
mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket},
    process::Command,
    time::Duration,
};

use common::{
    net::{Certs, HelloWrite, NetNs, Peer, TlsServer, connections_of, list_attr, peer_script, run_client, rustls_client},
    *,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

fn loopback4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// Waits for the one `nhi.connection` record of `pid`, stops the agent and
/// returns that record (and all records).
fn connection_of(agent: Agent, pid: u32) -> (Value, Vec<Value>) {
    let (r, records, _) = connection_and_log(agent, pid);
    (r, records)
}

fn connection_and_log(agent: Agent, pid: u32) -> (Value, Vec<Value>, Vec<String>) {
    agent.wait_for_record(WAIT, |r| !connections_of(std::slice::from_ref(r), pid).is_empty());
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));
    let mine = connections_of(&records, pid);
    assert_eq!(mine.len(), 1, "exactly one connection from pid {pid}, got {mine:#?}");
    (mine[0].clone(), records, stderr)
}

/// A counter from the agent's last `nhi.agent.stats` record (written at stop).
fn agent_stat(records: &[Value], name: &str) -> i64 {
    let stats = records.iter().rev().find(|r| str_attr(r, "event.name") == Some("nhi.agent.stats")).expect("stats record");
    int_attr(stats, name).unwrap_or_else(|| panic!("no {name} in {stats:#}"))
}

fn assert_process(r: &Value, pid: u32, exe: &std::path::Path) {
    assert_eq!(int_attr(r, "process.pid"), Some(i64::from(pid)), "{r:#}");
    assert_eq!(str_attr(r, "process.executable.path"), exe.to_str(), "{r:#}");
    assert_eq!(int_attr(r, "process.user.id"), Some(0));
}

fn assert_tls(r: &Value, server_name: &str, peer: &SocketAddr) {
    assert_eq!(str_attr(r, "event.name"), Some("nhi.connection"));
    assert_eq!(str_attr(r, "server.address"), Some(server_name), "{r:#}");
    // Deprecated since semantic conventions 1.28: server.address carries it.
    assert_eq!(str_attr(r, "tls.client.server_name"), None);
    assert_eq!(r.get("nhi.server_name.seen").and_then(Value::as_bool), Some(true));
    assert_eq!(str_attr(r, "nhi.server_name.source"), Some("tls.sni"));
    assert_eq!(str_attr(r, "network.transport"), Some("tcp"));
    assert_eq!(str_attr(r, "nhi.connection.payload"), Some("tls"));
    assert_eq!(str_attr(r, "network.peer.address"), Some(peer.ip().to_string().as_str()));
    assert_eq!(int_attr(r, "server.port"), Some(i64::from(peer.port())));
    assert_eq!(str_attr(r, "tls.protocol.name"), Some("tls"));
    assert_eq!(str_attr(r, "tls.protocol.version"), Some("1.3"));
    assert!(list_attr(r, "nhi.tls.offered_versions").contains(&"1.3".to_owned()), "{r:#}");
}

#[test]
fn openssl_s_client_sni_and_alpn() {
    if !bpf_available("openssl_s_client_sni_and_alpn") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(which("openssl"));
    cmd.args(["s_client", "-brief", "-connect", &server.addr.to_string()])
        .args(["-servername", "openssl.nhi.test", "-alpn", "h2,http/1.1"]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let (r, _) = connection_of(agent, pid);
    assert_tls(&r, "openssl.nhi.test", &server.addr);
    assert_process(&r, pid, &which("openssl"));
    assert_eq!(list_attr(&r, "nhi.tls.alpn"), ["h2", "http/1.1"]);
    assert_eq!(str_attr(&r, "process.command"), Some("openssl"));
}

#[test]
fn curl_https_sni() {
    if !bpf_available("curl_https_sni") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    let port = server.addr.port();
    let mut cmd = Command::new(which("curl"));
    cmd.args(["-sS", "-k", "--resolve", &format!("curl.nhi.test:{port}:127.0.0.1")])
        .arg(format!("https://curl.nhi.test:{port}/"));
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"ok");
    let (r, _) = connection_of(agent, pid);
    assert_tls(&r, "curl.nhi.test", &server.addr);
    assert_process(&r, pid, &which("curl"));
    assert!(list_attr(&r, "nhi.tls.alpn").contains(&"http/1.1".to_owned()));
    // The workload identity stage annotates network records like file ones.
    assert_eq!(str_attr(&r, "process.user.name"), Some("root"), "{r:#}");
    assert!(str_attr(&r, "nhi.cgroup.path").is_some_and(|p| p.starts_with('/')), "{r:#}");
}

const PY_TLS_CLIENT: &str = r#"
import socket, ssl, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
s = socket.socket(family, socket.SOCK_STREAM)
s.connect((sys.argv[1], int(sys.argv[2])))
t = ctx.wrap_socket(s, server_hostname=sys.argv[3])
t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
assert t.recv(100).startswith(b"HTTP/1.1 200"), "bad response"
"#;

fn python3() -> std::path::PathBuf {
    which("python3")
}

#[test]
fn python_ssl_over_ipv6() {
    if !bpf_available("python_ssl_over_ipv6") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0), None);
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(python3());
    cmd.args(["-c", PY_TLS_CLIENT, "::1", &server.addr.port().to_string(), "py6.nhi.test"]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let (r, _) = connection_of(agent, pid);
    assert_tls(&r, "py6.nhi.test", &server.addr);
    assert_eq!(str_attr(&r, "network.type"), Some("ipv6"));
    assert_eq!(str_attr(&r, "network.peer.address"), Some("::1"));
    assert_eq!(str_attr(&r, "nhi.socket.family"), Some("inet6"));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
    assert_eq!(str_attr(&r, "process.command"), Some("python3"));
}

/// An AF_INET6 socket connecting to a v4-mapped address sends IPv4
/// packets: the kernel must join them to the connect() it saw as IPv6.
#[test]
fn python_dual_stack_socket_reports_ipv4_peer() {
    if !bpf_available("python_dual_stack_socket_reports_ipv4_peer") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(python3());
    cmd.args(["-c", PY_TLS_CLIENT, "::ffff:127.0.0.1", &server.addr.port().to_string(), "dual.nhi.test"]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let (r, _) = connection_of(agent, pid);
    assert_tls(&r, "dual.nhi.test", &server.addr);
    assert_eq!(str_attr(&r, "network.type"), Some("ipv4"));
    assert_eq!(str_attr(&r, "nhi.socket.family"), Some("inet6"));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

/// rustls in this very process, with its post-quantum key share (a
/// ClientHello larger than one Ethernet-MTU segment).
#[test]
fn rustls_client_post_quantum_hello() {
    if !bpf_available("rustls_client_post_quantum_hello") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    let alpn = rustls_client(&certs, server.addr, "rustls.nhi.test", &["h2", "http/1.1"], HelloWrite::Whole, None)
        .expect("rustls handshake");
    assert_eq!(alpn.as_deref(), Some("http/1.1"));
    let pid = std::process::id();
    let (r, _) = connection_of(agent, pid);
    assert_tls(&r, "rustls.nhi.test", &server.addr);
    assert_eq!(list_attr(&r, "nhi.tls.alpn"), ["h2", "http/1.1"]);
    assert_eq!(list_attr(&r, "nhi.tls.offered_versions"), ["1.3", "1.2"]);
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

/// A client that writes its ClientHello in three pieces (TCP_NODELAY, a
/// pause between): the server name lies in the second segment.
#[test]
fn client_hello_written_in_pieces() {
    if !bpf_available("client_hello_written_in_pieces") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    // 5 record + 4 handshake + 2 version + 32 random + 33 session id bytes:
    // the extensions (and the server name) start after byte 76.
    let cuts: &'static [usize] = &[60, 400];
    rustls_client(&certs, server.addr, "pieces.nhi.test", &[], HelloWrite::Pieces(cuts), None).expect("handshake");
    let pid = std::process::id();
    let (r, records, _) = connection_and_log(agent, pid);
    assert_tls(&r, "pieces.nhi.test", &server.addr);
    // Three segments, three payload records (other traffic only adds).
    assert!(agent_stat(&records, "nhi.net.payload.emitted") >= 3);
}

/// A namespace whose loopback has a 1280-byte MTU and no segmentation
/// offload: the post-quantum ClientHello leaves as two TCP segments.
#[test]
fn small_mtu_namespace_splits_the_hello() {
    if !bpf_available("small_mtu_namespace_splits_the_hello") {
        return;
    }
    let _serial = serial();
    let ns = NetNs::new();
    ns.ip(&["link", "set", "lo", "mtu", "1280", "gso_max_segs", "1"]);
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), Some(&ns));
    let agent = Agent::start(&[]);
    rustls_client(&certs, server.addr, "mtu.nhi.test", &[], HelloWrite::Whole, Some(&ns)).expect("handshake");
    let pid = std::process::id();
    let (r, records, _) = connection_and_log(agent, pid);
    assert_tls(&r, "mtu.nhi.test", &server.addr);
    assert!(agent_stat(&records, "nhi.net.payload.emitted") >= 2);
}

#[test]
fn server_name_of_255_bytes() {
    if !bpf_available("server_name_of_255_bytes") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let name = [["a"; 63].concat(), ["b"; 63].concat(), ["c"; 63].concat(), ["d"; 58].concat(), "test".into()].join(".");
    assert_eq!(name.len(), 255);
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(which("openssl"));
    cmd.args(["s_client", "-brief", "-connect", &server.addr.to_string(), "-servername", &name]);
    // The server may refuse a name this long; the ClientHello was sent.
    let (pid, _) = run_client(cmd, CLIENT_TIMEOUT);
    let (r, _) = connection_of(agent, pid);
    assert_eq!(str_attr(&r, "server.address"), Some(name.as_str()));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

#[test]
fn no_sni_reports_the_address() {
    if !bpf_available("no_sni_reports_the_address") {
        return;
    }
    let _serial = serial();
    let certs = Certs::new();
    let server = TlsServer::start(&certs, loopback4(), None);
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(which("openssl"));
    cmd.args(["s_client", "-brief", "-noservername", "-connect", &server.addr.to_string()]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let (r, _) = connection_of(agent, pid);
    assert_eq!(r.get("nhi.server_name.seen").and_then(Value::as_bool), Some(false), "{r:#}");
    assert_eq!(str_attr(&r, "server.address"), Some("127.0.0.1"));
    assert_eq!(str_attr(&r, "tls.client.server_name"), None);
    assert_eq!(str_attr(&r, "nhi.connection.payload"), Some("tls"));
    assert_eq!(str_attr(&r, "tls.protocol.version"), Some("1.3"));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

/// Plaintext to an ordinary address: reported, and the kernel copied none
/// of it (the record says the first bytes were not captured).
/// Guards the kernel's executable cache (`EXE_CACHE` in probes/net.rs):
/// exec keeps the pid, so each connection of one pid that execs python3,
/// then bash, then python3 again must name the executable it ran then.
#[test]
fn connections_after_exec_in_the_same_pid_name_the_new_executable() {
    if !bpf_available("connections_after_exec_in_the_same_pid_name_the_new_executable") {
        return;
    }
    let _serial = serial();
    // Connections complete in the listen backlog; nothing need accept them.
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind(loopback4()).unwrap()).collect();
    let ports: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().port().to_string()).collect();
    // The interpreter itself (`python3` on PATH may be a pyenv shim, a script).
    let real = Command::new(python3()).args(["-c", "import os,sys; print(os.path.realpath(sys.executable))"]).output().unwrap();
    let python = std::path::PathBuf::from(String::from_utf8(real.stdout).unwrap().trim());
    let bash = which("bash");
    let connect = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()";
    let first = "import os,socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close(); os.execv(sys.argv[2], sys.argv[2:])";
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(&python);
    cmd.args(["-c", first, &ports[0]])
        .arg(&bash)
        .args(["-c", r#"exec 3<>"/dev/tcp/127.0.0.1/$1" && exec 3>&- && exec "$2" -c "$3" "$4""#, "bash", &ports[1]])
        .arg(&python)
        .args([connect, &ports[2]]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    agent.wait_for_record(WAIT, |r| {
        connections_of(std::slice::from_ref(r), pid).first().and_then(|r| int_attr(r, "network.peer.port"))
            == ports[2].parse().ok()
    });
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));
    let mine = connections_of(&records, pid);
    assert_eq!(mine.len(), 3, "three connections from pid {pid}: {mine:#?}");
    for (port, exe) in ports.iter().zip([&python, &bash, &python]) {
        let port: i64 = port.parse().unwrap();
        let r = mine.iter().find(|r| int_attr(r, "network.peer.port") == Some(port)).expect("a connection to each port");
        assert_process(r, pid, exe);
    }
}

/// The connecting task's fields as the connect program reads them: a
/// process running as uid 65534 / gid 65533 in a cgroup of its own, named
/// after a link that differs from its target, connects twice. Pid, parent, user
/// id, name, cgroup (and so the unit) and executable of the record come
/// from the connect event (`current_identity` in probes/net.rs); a field
/// taken from the wrong place fails here. (The group id comes from the
/// process table, which the exec record filled.)
#[test]
fn connection_records_carry_the_connecting_task_fields() {
    if !bpf_available("connection_records_carry_the_connecting_task_fields") {
        return;
    }
    let _serial = serial();
    let listener = TcpListener::bind(loopback4()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let link = renamed_link(dir.path(), "nhi-e2e-netconn", &which("bash"));
    let root = unique("nhi-e2e-netid");
    let cg = TestCgroup::new(&root, "system.slice/nhi-e2e-netid.service");
    let agent = Agent::start(&[]);
    let script = format!("exec '{}' -c 'exec 3<>/dev/tcp/127.0.0.1/{port} 4<>/dev/tcp/127.0.0.1/{port}'", link.display());
    let mut sh = nobody_shell_in(&cg, &script, &[]);
    let pid = sh.id();
    assert!(sh.wait().unwrap().success());
    agent.wait_for_record(WAIT, |_| connections_of(&agent.records(), pid).len() >= 2);
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));
    // Two connections: the second takes the executable from the kernel's
    // cache (`EXE_CACHE`), the first walked it.
    let mine = connections_of(&records, pid);
    assert_eq!(mine.len(), 2, "{mine:#?}");
    for r in mine {
        assert_eq!(int_attr(r, "network.peer.port"), Some(i64::from(port)), "{r:#}");
        assert_eq!(int_attr(r, "process.pid"), Some(i64::from(pid)), "{r:#}");
        assert_eq!(int_attr(r, "process.parent_pid"), Some(i64::from(std::process::id())), "{r:#}");
        assert_eq!(int_attr(r, "process.user.id"), Some(65534), "{r:#}");
        assert_eq!(int_attr(r, "nhi.process.group.id"), Some(65533), "{r:#}");
        assert_eq!(str_attr(r, "process.command"), Some("nhi-e2e-netconn"), "{r:#}");
        assert_eq!(str_attr(r, "process.executable.path"), which("bash").canonicalize().unwrap().to_str(), "{r:#}");
        assert_eq!(str_attr(r, "nhi.cgroup.path"), Some(cg.path.as_str()), "{r:#}");
        assert_eq!(str_attr(r, "nhi.systemd.unit"), Some("nhi-e2e-netid.service"), "{r:#}");
    }
    drop(listener);
}

#[test]
fn plain_tcp_connection_copies_nothing() {
    if !bpf_available("plain_tcp_connection_copies_nothing") {
        return;
    }
    let _serial = serial();
    let listener = TcpListener::bind(loopback4()).unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut buf).unwrap();
        buf
    });
    let agent = Agent::start(&[]);
    let secret = "password=hunter2-plaintext";
    let mut cmd = Command::new(python3());
    cmd.args(["-c", "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.sendall(sys.argv[2].encode()); s.close()"])
        .args([&addr.port().to_string(), secret]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success());
    assert_eq!(reader.join().unwrap(), secret.as_bytes());
    let (r, records) = connection_of(agent, pid);
    assert_eq!(str_attr(&r, "nhi.connection.payload"), Some("other"));
    assert_eq!(r.get("nhi.server_name.seen").and_then(Value::as_bool), Some(false));
    assert_eq!(str_attr(&r, "server.address"), Some("127.0.0.1"));
    assert_eq!(str_attr(&r, "network.peer.address"), Some("127.0.0.1"));
    assert_eq!(int_attr(&r, "network.peer.port"), Some(i64::from(addr.port())));
    assert!(!serde_json::to_string(&records).unwrap().contains("hunter2"));
}

fn free_udp_port(ip: IpAddr) -> u16 {
    UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap().local_addr().unwrap().port()
}

fn quic_roundtrip(server_ip: IpAddr, client_target: &str, server_name: &str) -> (u32, Value) {
    let certs = Certs::new();
    let port = free_udp_port(server_ip);
    let mut server = Command::new(python3());
    server.arg(peer_script("quic_peer.py")).arg("server").arg(certs.cert_pem()).arg(certs.key_pem());
    server.args([&server_ip.to_string(), &port.to_string()]);
    let _server = Peer::start(server, "listening");
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(python3());
    cmd.arg(peer_script("quic_peer.py")).args(["client", client_target, &port.to_string(), server_name, "h3"]);
    let (pid, out) = run_client(cmd, CLIENT_TIMEOUT);
    assert!(out.status.success(), "aioquic client: {}", String::from_utf8_lossy(&out.stderr));
    let (r, _) = connection_of(agent, pid);
    assert_eq!(int_attr(&r, "server.port"), Some(i64::from(port)));
    (pid, r)
}

/// QUIC v1 with aioquic on both ends: the agent derives the Initial keys
/// from the destination connection id, decrypts, and reads the SNI.
#[test]
fn quic_aioquic_client_initial() {
    if !bpf_available("quic_aioquic_client_initial") {
        return;
    }
    let _serial = serial();
    let (pid, r) = quic_roundtrip(IpAddr::V4(Ipv4Addr::LOCALHOST), "127.0.0.1", "quic.nhi.test");
    assert_eq!(str_attr(&r, "network.transport"), Some("quic"));
    assert_eq!(str_attr(&r, "server.address"), Some("quic.nhi.test"));
    assert_eq!(str_attr(&r, "nhi.server_name.source"), Some("quic.sni"));
    assert_eq!(str_attr(&r, "nhi.connection.payload"), Some("quic"));
    assert_eq!(str_attr(&r, "nhi.quic.version"), Some("1"));
    assert_eq!(str_attr(&r, "tls.protocol.version"), Some("1.3"));
    assert_eq!(list_attr(&r, "nhi.tls.alpn"), ["h3"]);
    assert_eq!(str_attr(&r, "network.peer.address"), Some("127.0.0.1"));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

#[test]
fn quic_over_ipv6() {
    if !bpf_available("quic_over_ipv6") {
        return;
    }
    let _serial = serial();
    let (pid, r) = quic_roundtrip(IpAddr::V6(Ipv6Addr::LOCALHOST), "::1", "quic6.nhi.test");
    assert_eq!(str_attr(&r, "server.address"), Some("quic6.nhi.test"));
    assert_eq!(str_attr(&r, "network.type"), Some("ipv6"));
    assert_eq!(str_attr(&r, "network.peer.address"), Some("::1"));
    assert_eq!(int_attr(&r, "process.pid"), Some(i64::from(pid)));
}

/// IMDSv2 against a stand-in metadata service bound to 169.254.169.254 on
/// the loopback of a namespace this test created: the token PUT and the
/// role fetch become `nhi.credential.access` records naming the role, from
/// the right processes; the token never appears in the output.
#[test]
fn imds_token_put_and_role_fetch_name_the_role() {
    if !bpf_available("imds_token_put_and_role_fetch_name_the_role") {
        return;
    }
    let _serial = serial();
    const ROLE: &str = "nhi-e2e-role";
    const TOKEN: &str = "AQAEAsyntheticIMDSv2tokenE2E==";
    let ns = NetNs::new();
    ns.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let mut server = ns.command(python3());
    server.arg(peer_script("imds_server.py")).args(["169.254.169.254", "80", ROLE, TOKEN]);
    let _server = Peer::start(server, "listening");
    let agent = Agent::start(&[]);

    let base = "http://169.254.169.254";
    let mut put = ns.command(which("curl"));
    put.args(["-sS", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600"]).arg(format!("{base}/latest/api/token"));
    let (put_pid, out) = run_client(put, CLIENT_TIMEOUT);
    assert!(out.status.success(), "curl PUT: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, TOKEN.as_bytes());
    let mut get = ns.command(which("curl"));
    get.args(["-sS", "-f", "-H", &format!("X-aws-ec2-metadata-token: {TOKEN}")])
        .arg(format!("{base}/latest/meta-data/iam/security-credentials/{ROLE}"));
    let (get_pid, out) = run_client(get, CLIENT_TIMEOUT);
    assert!(out.status.success(), "curl GET: {}", String::from_utf8_lossy(&out.stderr));
    // An SDK-like client: token, role list and role on one keep-alive connection.
    let sdk = format!(
        r#"
import http.client
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=10)
c.request("PUT", "/latest/api/token", headers={{"X-aws-ec2-metadata-token-ttl-seconds": "60"}})
t = c.getresponse().read().decode()
for path in ["/latest/meta-data/iam/security-credentials/", "/latest/meta-data/iam/security-credentials/{ROLE}"]:
    c.request("GET", path, headers={{"X-aws-ec2-metadata-token": t}})
    assert c.getresponse().read(), path
"#
    );
    let mut py = ns.command(python3());
    py.args(["-c", &sdk]);
    let (sdk_pid, out) = run_client(py, CLIENT_TIMEOUT);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));

    let is_access = |r: &Value, pid: u32| {
        str_attr(r, "event.name") == Some("nhi.credential.access") && int_attr(r, "process.pid") == Some(i64::from(pid))
    };
    agent.wait_for_record(WAIT, |r| is_access(r, sdk_pid) && str_attr(r, "nhi.id") == Some(ROLE));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains(TOKEN), "the IMDSv2 token leaked into the output");
    assert!(!stderr.join("\n").contains(TOKEN), "the IMDSv2 token leaked into the log");

    let of = |pid: u32| -> Vec<&Value> { records.iter().filter(|r| is_access(r, pid)).collect() };
    let put_rec = of(put_pid);
    assert_eq!(put_rec.len(), 1, "{put_rec:#?}");
    assert_eq!(str_attr(put_rec[0], "nhi.source"), Some("imds"));
    assert_eq!(str_attr(put_rec[0], "nhi.kind"), Some("aws.imds.session_token"));
    assert_eq!(str_attr(put_rec[0], "http.request.method"), Some("PUT"));
    assert_eq!(str_attr(put_rec[0], "url.path"), Some("/latest/api/token"));
    assert_eq!(str_attr(put_rec[0], "server.address"), Some("169.254.169.254"));

    let get_rec = of(get_pid);
    assert_eq!(get_rec.len(), 1, "{get_rec:#?}");
    assert_eq!(str_attr(get_rec[0], "nhi.kind"), Some("aws.iam_role"));
    assert_eq!(str_attr(get_rec[0], "nhi.id"), Some(ROLE));
    assert_eq!(str_attr(get_rec[0], "nhi.imds.operation"), Some("credentials"));
    assert_eq!(str_attr(get_rec[0], "url.path"), Some(format!("/latest/meta-data/iam/security-credentials/{ROLE}").as_str()));
    assert_eq!(str_attr(get_rec[0], "process.executable.path"), which("curl").to_str());

    let sdk_rec = of(sdk_pid);
    let ops: Vec<_> = sdk_rec.iter().map(|r| (str_attr(r, "nhi.imds.operation"), str_attr(r, "nhi.id"))).collect();
    assert_eq!(ops, [(Some("token"), None), (Some("list"), None), (Some("credentials"), Some(ROLE))]);
    // One connection record per connection, with the Host header as server name.
    let conns = connections_of(&records, sdk_pid);
    assert_eq!(conns.len(), 1, "{conns:#?}");
    assert_eq!(str_attr(conns[0], "nhi.connection.payload"), Some("http"));
    assert_eq!(str_attr(conns[0], "nhi.server_name.source"), Some("http.host"));
    assert_eq!(str_attr(conns[0], "server.address"), Some("169.254.169.254"));
}
