//! `cargo xtask bench tls [--rounds N]`: TLS handshakes per second against a local
//! server, without and with the agent, and whether the agent missed any.
//!
//! Workload: `--clients` threads, each making new TCP connections and full
//! TLS 1.3 handshakes (rustls with its post-quantum key share, server name
//! `bench.nhi.test`) to a rustls server on 127.0.0.1 in this process, for
//! `--seconds`. Each round runs a baseline, the agent, and a baseline
//! again (the round's baseline is the mean of the two); the report gives
//! the median rate of each and their ratio, and for every agent run the
//! handshakes made against the `nhi.connection` records the agent wrote for
//! this process and that server name (the difference is what it missed)
//! and the kernel's ring-buffer reserve failures. Exits non-zero if any
//! connection was missed. Needs root (the agent loads BPF).
//!
//! Where the agent's cost goes, meaningful on a busy machine too: its CPU
//! time per connection (all threads, from /proc, during the timed runs)
//! and by thread, its context switches per connection, and, in a short
//! extra pass with the kernel's BPF statistics on (never while timing),
//! the BPF run time per connection of each of its programs.
use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::JsonAgent;
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

/// What one `bench tls` invocation measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Median handshakes/s without and with the agent.
    pub baseline: f64,
    pub with_agent: f64,
    /// Each round's handshakes/s with the agent over its own baseline (the
    /// mean of the runs just before and just after), in round order.
    pub round_ratios: Vec<f64>,
    /// Connections made with the agent attached that have no record, plus
    /// the kernel's ring reserve failures for network records.
    pub missed: u64,
    /// Handshakes made with the agent attached (timed runs and the BPF
    /// statistics pass).
    pub made: u64,
    /// The agent's CPU time (all its threads, user + system) per
    /// connection during the timed runs, in us (median over rounds).
    pub agent_cpu_us: f64,
    /// BPF run time of all the agent's programs per connection, in us
    /// (separate pass with the kernel's BPF statistics on).
    pub bpf_us: f64,
}

impl Figures {
    /// The median of the rounds' own ratios: each round's agent run
    /// against the baselines around it, so the host's drift between rounds
    /// (its baselines moved 2,197-2,427/s in one run) cancels, as in `bench
    /// process`. Until 2026-12-04 the target row showed the ratio of the
    /// medians ([`Self::ratio_of_medians`]), which mixes rounds.
    pub fn ratio(&self) -> f64 {
        super::median(&mut self.round_ratios.clone())
    }

    pub fn ratio_of_medians(&self) -> f64 {
        self.with_agent / self.baseline
    }

    /// The lowest and highest round ratio.
    pub fn round_range(&self) -> (f64, f64) {
        let lo = self.round_ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.round_ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }
}

/// Runs the benchmark and prints its table; the figures are returned (an
/// error only if it could not run). [`run`] also fails on a miss.
pub fn measure(args: &Args) -> anyhow::Result<Figures> {
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
    println!(
        "{:<7} {:>12} {:>12} {:>7} {:>10} {:>10} {:>9} {:>14} {:>12}",
        "round", "baseline/s", "agent/s", "ratio", "made", "recorded", "lost(k)", "agent CPU/conn", "BPF/conn"
    );
    let (mut base, mut with, mut missed_total, mut made) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let mut round_ratios = Vec::new();
    let (mut cpu, mut bpf, mut threads) = (Vec::new(), Vec::new(), std::collections::BTreeMap::<String, u64>::new());
    let mut progs = std::collections::BTreeMap::<String, Vec<f64>>::new();
    let mut wakeups = Vec::new();
    for round in 1..=args.rounds {
        let b = workload(&tls, server.addr, args.clients, duration)?;
        let state = tempfile_dir()?;
        let agent = JsonAgent::start(&agent_bin, &state, &[])?;
        let agent = TlsAgent(agent);
        let pid = agent.0.pid();
        let (t0, s0) = (super::thread_ticks(pid), super::switches(pid)?);
        let w = workload(&tls, server.addr, args.clients, duration)?;
        let (t1, s1) = (super::thread_ticks(pid), super::switches(pid)?);
        wakeups.push(s1.saturating_sub(s0) as f64 / w.handshakes.max(1) as f64);
        // BPF run time per connection, in a pass of its own: the kernel's
        // statistics add two clock reads to every program run, so they are
        // never on while handshakes are timed.
        let (bpf_ns, extra) = {
            let _stats = super::BpfStats::enable();
            let before = super::prog_stats_by_name(pid);
            let x = workload(&tls, server.addr, args.clients, Duration::from_secs(args.seconds.clamp(1, 2)))?;
            let after = super::prog_stats_by_name(pid);
            let n = x.handshakes.max(1) as f64;
            let mut total = 0.0;
            for (name, (t1, _)) in &after {
                let ns = t1.saturating_sub(before.get(name).map_or(0, |v| v.0)) as f64 / n;
                total += ns;
                progs.entry(name.clone()).or_default().push(ns);
            }
            (total, x.handshakes)
        };
        let want = w.handshakes + extra;
        let recorded = agent.wait_for_records(want)?;
        let lost = agent.stop()?;
        // A second baseline after the agent: the round's baseline is the
        // mean of the two, so drift within the round hits both sides alike.
        let b2 = workload(&tls, server.addr, args.clients, duration)?;
        let base_rate = (b.rate() + b2.rate()) / 2.0;
        let missed = want.saturating_sub(recorded);
        missed_total += missed + lost;
        made += want;
        let mut ticks = 0;
        for (name, t) in &t1 {
            let d = t.saturating_sub(t0.get(name).copied().unwrap_or(0));
            ticks += d;
            *threads.entry(name.clone()).or_default() += d;
        }
        let cpu_us = ticks as f64 * 1e6 / super::clock_ticks() / w.handshakes.max(1) as f64;
        println!(
            "{round:<7} {:>12.0} {:>12.0} {:>7.3} {:>10} {:>10} {:>9} {:>11.1} us {:>9.1} us",
            base_rate,
            w.rate(),
            w.rate() / base_rate,
            want,
            recorded,
            lost,
            cpu_us,
            bpf_ns / 1e3
        );
        base.push(base_rate);
        with.push(w.rate());
        round_ratios.push(w.rate() / base_rate);
        cpu.push(cpu_us);
        bpf.push(bpf_ns / 1e3);
        let _ = std::fs::remove_dir_all(&state);
        if b.failures + w.failures + b2.failures > 0 {
            println!("        ({} failed handshakes not counted)", b.failures + w.failures + b2.failures);
        }
    }
    let figures = Figures {
        baseline: super::median(&mut base),
        with_agent: super::median(&mut with),
        round_ratios,
        missed: missed_total,
        made,
        agent_cpu_us: super::median(&mut cpu),
        bpf_us: super::median(&mut bpf),
    };
    let (mb, mw) = (figures.baseline, figures.with_agent);
    println!("median: baseline {mb:.0} handshakes/s, with agent {mw:.0} handshakes/s");
    let (lo, hi) = figures.round_range();
    println!(
        "ratio (with agent / baseline, median of the rounds' own ratios): {:.3} (rounds {lo:.3}-{hi:.3}); ratio of the medians: {:.3}",
        figures.ratio(),
        figures.ratio_of_medians()
    );
    println!("missed connections: {missed_total} of {made}");
    println!(
        "agent CPU per connection (timed runs, all threads, /proc): {:.1} us; BPF run time per connection (all programs, machine-wide): {:.1} us",
        figures.agent_cpu_us, figures.bpf_us
    );
    let all: u64 = threads.values().sum();
    let by_thread: Vec<String> = threads
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(n, t)| format!("{n} {:.0}%", *t as f64 * 100.0 / all.max(1) as f64))
        .collect();
    println!("agent CPU by thread: {}", by_thread.join(", "));
    println!("agent context switches per connection (timed runs, median): {:.2}", super::median(&mut wakeups));
    let mut by_prog: Vec<(f64, String)> =
        progs.iter_mut().map(|(n, v)| (super::median(v), n.clone())).filter(|(ns, _)| *ns >= 1.0).collect();
    by_prog.sort_by(|a, b| b.0.total_cmp(&a.0));
    let by_prog: Vec<String> = by_prog.iter().map(|(ns, n)| format!("{n} {:.2} us", ns / 1e3)).collect();
    println!("BPF run time per connection by program (median): {}", by_prog.join(", "));
    Ok(figures)
}

/// `bench tls`: [`measure`], failing if any connection was missed.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let f = measure(args)?;
    if f.missed > 0 {
        bail!("the agent missed {} connection(s) at {:.0} handshakes/s", f.missed, f.with_agent);
    }
    Ok(())
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

/// The agent under test, counting its records for this benchmark.
struct TlsAgent(JsonAgent);

impl TlsAgent {
    /// Records for this process and the bench server name.
    fn count(&self) -> u64 {
        let pid = i64::from(std::process::id());
        self.0
            .records()
            .iter()
            .filter(|r| {
                r["event.name"] == "nhi.connection" && r["server.address"] == SERVER_NAME && r["process.pid"] == pid
            })
            .count() as u64
    }

    /// Waits until `want` records are there or none arrive for 5 s.
    fn wait_for_records(&self, want: u64) -> anyhow::Result<u64> {
        Ok(self.0.wait_for(want, || self.count()))
    }

    /// Stops the agent; returns the network records the kernel could not
    /// reserve ring space for.
    fn stop(self) -> anyhow::Result<u64> {
        let stats = self.0.stop()?;
        let counter = |name: &str| stats[name].as_u64().unwrap_or(0);
        Ok(counter("nhi.net.connect.lost") + counter("nhi.net.payload.lost"))
    }
}
