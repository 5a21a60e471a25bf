//! Peers for the network-sensor tests: a rustls TLS server and client in the
//! test process, network namespaces the test creates (and deletes), and the
//! Python peers in tests/net/. Traffic only ever goes to loopback or to
//! addresses inside the test's own namespaces.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{int_attr, str_attr};

/// A self-signed certificate for `*.nhi.test` and `localhost`, in memory
/// and as PEM files (for openssl and the Python peers).
pub struct Certs {
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let names = vec!["*.nhi.test".to_owned(), "localhost".to_owned()];
        let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
        let dir = tempfile::tempdir().expect("cert dir");
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        Certs { cert_der: ck.cert.der().clone(), key_der: ck.signing_key.serialize_der(), dir }
    }

    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key_pem(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    pub fn client_config(&self, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("root");
        let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A TLS server (rustls) answering every connection with a short HTTP/1.1
/// response. It tolerates clients that are not TLS at all.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TlsServer {
    /// Binds `bind` (port 0 for any) in `ns` or the current namespace.
    pub fn start(certs: &Certs, bind: SocketAddr, ns: Option<&NetNs>) -> TlsServer {
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certs.cert_der.clone()], certs.key())
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let handshakes = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let ns_name = ns.map(|n| n.name.clone());
        let (stop2, hs2) = (stop.clone(), handshakes.clone());
        let thread = thread::spawn(move || {
            if let Some(name) = ns_name {
                enter_netns(&name);
            }
            let listener = TcpListener::bind(bind).expect("bind TLS server");
            listener.set_nonblocking(true).unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (cfg, hs) = (cfg.clone(), hs2.clone());
                        thread::spawn(move || serve_one(tcp, cfg, &hs));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("TLS server listening");
        TlsServer { addr, handshakes, stop, thread: Some(thread) }
    }
}

fn serve_one(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, handshakes: &AtomicU32) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else { return };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !tls.conn.is_handshaking() {
                    handshakes.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    handshakes.fetch_add(1, Ordering::Relaxed);
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a test client writes its ClientHello.
#[derive(Clone, Copy)]
pub enum HelloWrite {
    /// As rustls does: one write.
    Whole,
    /// In pieces cut at these offsets, with a pause between them (TCP_NODELAY
    /// on, so each piece leaves as its own segment).
    Pieces(&'static [usize]),
}

/// A full TLS handshake and one HTTP request from this process (rustls,
/// aws-lc-rs provider: post-quantum key share), in a thread of its own so
/// that `ns` applies only to it. Returns the negotiated ALPN.
pub fn rustls_client(
    certs: &Certs,
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&str],
    how: HelloWrite,
    ns: Option<&NetNs>,
) -> Result<Option<String>, String> {
    let cfg = certs.client_config(alpn);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let ns_name = ns.map(|n| n.name.clone());
    thread::spawn(move || {
        if let Some(n) = ns_name {
            enter_netns(&n);
        }
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
        if let HelloWrite::Pieces(cuts) = how {
            let mut hello = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut hello).map_err(|e| e.to_string())?;
            }
            let mut from = 0;
            for &cut in cuts.iter().chain(std::iter::once(&hello.len())) {
                tcp.write_all(&hello[from..cut]).map_err(|e| e.to_string())?;
                from = cut;
                thread::sleep(Duration::from_millis(60));
            }
        }
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", addr).as_bytes()).map_err(|e| format!("handshake: {e}"))?;
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        if !response.starts_with(b"HTTP/1.1 200") {
            return Err(format!("bad response {:?}", String::from_utf8_lossy(&response)));
        }
        Ok(tls.conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()))
    })
    .join()
    .map_err(|_| "client thread panicked".to_owned())?
}

/// A network namespace of the test's own, deleted on drop.
pub struct NetNs {
    pub name: String,
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    pub fn new() -> NetNs {
        let name = format!("nhi-t{}-{}", std::process::id(), NS_SEQ.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// A command that runs `program` inside the namespace (same pid:
    /// `ip netns exec` execs the program).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Moves the calling thread into the named namespace.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A script in tests/net/.
pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/net").join(name)
}

/// A long-running peer, started and waited for until it prints `ready`.
pub struct Peer(pub Child);

impl Peer {
    pub fn start(mut cmd: Command, ready: &str) -> Peer {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start peer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(&ready) {
                    let _ = tx.send(());
                }
            }
        });
        let peer = Peer(child);
        rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("peer {cmd:?} not ready"));
        peer
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a client to completion within `timeout`; returns its pid and status.
pub fn run_client(mut cmd: Command, timeout: Duration) -> (u32, std::process::Output) {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start client");
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let out = thread::spawn(move || child.wait_with_output().expect("client output"));
    while !out.is_finished() {
        assert!(Instant::now() < deadline, "client {cmd:?} did not finish within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
    (pid, out.join().expect("client thread"))
}

/// The `nhi.connection` records of process `pid`.
pub fn connections_of(records: &[Value], pid: u32) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| str_attr(r, "event.name") == Some("nhi.connection") && int_attr(r, "process.pid") == Some(i64::from(pid)))
        .collect()
}

pub fn list_attr(r: &Value, key: &str) -> Vec<String> {
    r.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Reads the credential file `opens` times, then makes a TLS connection
/// with SNI `argv[4]` to 127.0.0.1:`argv[3]`, then, when `argv[5]` is given,
/// runs it as a child command (curl).
pub const READ_THEN_CONNECT: &str = r#"
import os, socket, ssl, subprocess, sys
path, opens, port, sni = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for _ in range(opens):
    with open(path, "rb") as f:
        f.read()
if sni != "-":
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", port))
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert t.recv(100).startswith(b"HTTP/1.1 200"), "bad response"
    t.close()
if len(sys.argv) > 5:
    subprocess.run(sys.argv[5:], check=True, stdout=subprocess.DEVNULL)
"#;

/// Runs [`READ_THEN_CONNECT`]; returns the Python process's pid.
pub fn read_then_connect(cred: &std::path::Path, opens: u32, port: u16, sni: &str, child: &[String]) -> u32 {
    let mut args = vec![cred.to_str().unwrap().to_owned(), opens.to_string(), port.to_string(), sni.to_owned()];
    args.extend(child.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    super::python(READ_THEN_CONNECT, &args).0
}
