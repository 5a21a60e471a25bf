//! `cargo xtask bench tls [--rounds N]`: TLS handshakes per second against a local
//! server, without and with the agent, and whether the agent missed any.
//!
//! Workload: `--clients` threads, each making new TCP connections and full
//! TLS 1.3 handshakes (rustls with its post-quantum key share, server name
//! `bench.nhi.test`) to a rustls server on 127.0.0.1 in this process, for
//! `--seconds`. Rounds alternate baseline and agent runs; the report gives
//! the median rate of each and their ratio, and for every agent run the
//! handshakes made against the `nhi.connection` records the agent wrote for
//! this process and that server name (the difference is what it missed)
//! and the kernel's ring-buffer reserve failures. Exits non-zero if any
//! connection was missed. Needs root (the agent loads BPF).
use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use crate::setup::{self, status};

const SERVER_NAME: &str = "bench.nhi.test";

pub struct Args {
    /// Seconds of handshakes per run.
    pub seconds: u64,
    /// Baseline/agent round pairs.
    pub rounds: u32,
    /// Client threads making handshakes in parallel.
    pub clients: usize,
    /// The agent binary [default: build target/release/nhi-observer].
    pub agent: Option<PathBuf>,
}

impl Args {
    /// 5 s runs, two client threads, the release agent built here.
    pub fn with_rounds(rounds: usize) -> Self {
        Self { seconds: 5, rounds: u32::try_from(rounds).unwrap_or(3), clients: 2, agent: None }
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::tasks::workspace_root();
    let agent_bin = match &args.agent {
        Some(p) => p.clone(),
        None => {
            setup::ensure()?;
            status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
            root.join("target/release/nhi-observer")
        }
    };
    let tls = Tls::new()?;
    let server = Server::start(&tls, args.clients.max(2))?;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "bench tls: {} client thread(s), {} s per run, {} round(s), server {} (rustls, TLS 1.3, X25519MLKEM768)",
        args.clients, args.seconds, args.rounds, server.addr
    );
    println!("{:<7} {:>12} {:>12} {:>10} {:>10} {:>9}", "round", "baseline/s", "agent/s", "made", "recorded", "lost(k)");
    let (mut base, mut with, mut missed_total) = (Vec::new(), Vec::new(), 0u64);
    for round in 1..=args.rounds {
        let b = workload(&tls, server.addr, args.clients, duration)?;
        let state = tempfile_dir()?;
        let agent = Agent::start(&agent_bin, &state)?;
        let w = workload(&tls, server.addr, args.clients, duration)?;
        let recorded = agent.wait_for_records(w.handshakes)?;
        let lost = agent.stop()?;
        let missed = w.handshakes.saturating_sub(recorded);
        missed_total += missed + lost;
        println!(
            "{round:<7} {:>12.0} {:>12.0} {:>10} {:>10} {:>9}",
            b.rate(),
            w.rate(),
            w.handshakes,
            recorded,
            lost
        );
        base.push(b.rate());
        with.push(w.rate());
        let _ = std::fs::remove_dir_all(&state);
        if b.failures + w.failures > 0 {
            println!("        ({} failed handshakes not counted)", b.failures + w.failures);
        }
    }
    let (mb, mw) = (median(&mut base), median(&mut with));
    println!("median: baseline {mb:.0} handshakes/s, with agent {mw:.0} handshakes/s");
    println!("ratio (with agent / baseline): {:.3}", mw / mb);
    println!("missed connections: {missed_total}");
    if missed_total > 0 {
        bail!("the agent missed {missed_total} connection(s) at {mw:.0} handshakes/s");
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let dir = std::env::temp_dir().join(format!("nhi-bench-tls-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Client and server configurations with a fresh self-signed certificate.
struct Tls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl Tls {
    fn new() -> anyhow::Result<Self> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).context("certificate")?;
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert.clone()], key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let client = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(Self { client: Arc::new(client), server: Arc::new(server) })
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Server {
    fn start(tls: &Tls, threads: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (listener, cfg, stop) = (listener.try_clone()?, tls.server.clone(), stop.clone());
            handles.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((tcp, _)) = listener.accept() {
                        let _ = serve(tcp, cfg.clone());
                    }
                }
            }));
        }
        Ok(Self { addr, stop, threads: handles })
    }
}

fn serve(mut tcp: TcpStream, cfg: Arc<rustls::ServerConfig>) -> anyhow::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = rustls::ServerConnection::new(cfg)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    // Until the client's close_notify or EOF.
    let mut buf = [0u8; 512];
    while tcp.read(&mut buf).is_ok_and(|n| n > 0) {}
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in 0..self.threads.len() {
            let _ = TcpStream::connect(self.addr);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Run {
    handshakes: u64,
    failures: u64,
    elapsed: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.handshakes as f64 / self.elapsed.as_secs_f64()
    }
}

fn workload(tls: &Tls, addr: SocketAddr, clients: usize, duration: Duration) -> anyhow::Result<Run> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME)?.to_owned();
    let threads: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (cfg, name, done, failed) = (tls.client.clone(), name.clone(), done.clone(), failed.clone());
            thread::spawn(move || {
                while Instant::now() < deadline {
                    match handshake(&cfg, &name, addr) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("client thread panicked"))?;
    }
    Ok(Run { handshakes: done.load(Ordering::Relaxed), failures: failed.load(Ordering::Relaxed), elapsed: start.elapsed() })
}

fn handshake(
    cfg: &Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name.clone())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    conn.send_close_notify();
    conn.complete_io(&mut tcp)?;
    Ok(())
}

/// The agent under test, writing JSON lines to a file.
struct Agent {
    child: Child,
    jsonl: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(bin: &Path, state: &Path) -> anyhow::Result<Self> {
        let jsonl = state.join("out.jsonl");
        let log = state.join("agent.log");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root { Command::new(bin) } else { Command::new("sudo") };
        if !root {
            cmd.arg("-E").arg(bin);
        }
        cmd.arg("run").arg("--state-dir").arg(state).arg("--jsonl").arg(&jsonl);
        cmd.env("NHI_OBSERVER_LOG", "info").env("NHI_OBSERVER_LOG_FORMAT", "json");
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let agent = Self { child, jsonl, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !agent.log_text().contains("probes attached") {
            if Instant::now() > deadline {
                bail!("the agent did not attach its probes in 60 s:\n{}", agent.log_text());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Records for this process and the bench server name.
    fn count(&self) -> u64 {
        let pid = i64::from(std::process::id());
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| {
                r["event.name"] == "nhi.connection" && r["server.address"] == SERVER_NAME && r["process.pid"] == pid
            })
            .count() as u64
    }

    /// Waits until `want` records are there or none arrive for 5 s.
    fn wait_for_records(&self, want: u64) -> anyhow::Result<u64> {
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let n = self.count();
            if n >= want {
                return Ok(n);
            }
            if n != last {
                (last, since) = (n, Instant::now());
            } else if since.elapsed() > Duration::from_secs(5) {
                return Ok(n);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the agent; returns the network records the kernel could not
    /// reserve ring space for.
    fn stop(mut self) -> anyhow::Result<u64> {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait()?;
        if !st.success() {
            bail!("the agent exited with {st}:\n{}", self.log_text());
        }
        // The last `nhi.agent.stats` record (written at stop) has the kernel's
        // counts of records it had no ring space for.
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        let stats = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["event.name"] == "nhi.agent.stats")
            .ok_or_else(|| anyhow!("no nhi.agent.stats record from the agent"))?;
        let counter = |name: &str| stats[name].as_u64().unwrap_or(0);
        Ok(counter("nhi.net.connect.lost") + counter("nhi.net.payload.lost"))
    }
}
