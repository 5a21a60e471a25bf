//! Cost of one TLS connection in the agent's user space, without the
//! workload lookup (which needs a live process table): the flow tracker
//! joining its connect and its ClientHello segment (`net::flows`), the
//! `nhi.connection` record built from it (`net::record`), and its row in
//! the store (`Store::append`, one commit per 512 such records, as in
//! `benches/store.rs`). The ClientHello is rustls's (X25519MLKEM768, about
//! 1.5 kB in one segment), as `cargo xtask bench tls` sends.
//!
//! `cargo bench -p nhi-observer --bench net`. For instruction counts,
//! run the bench binary under `valgrind --tool=callgrind
//! --toggle-collect='*one_connection*'` and divide the inclusive count
//! by the calls (`callgrind_annotate --inclusive=yes`): deterministic, so
//! two builds can be compared on a loaded machine.
use std::{
    hint::black_box,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nhi_observer::{
    decode::{NetConnect, NetPayload, Task, Transport},
    net::{
        flows::{Output, Tracker, TrackerConfig},
        record,
    },
    secret::Secret,
    store::{Store, StoreOptions},
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PER_COMMIT: u64 = 512;

fn client_hello() -> Vec<u8> {
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("bench.nhi.test").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// One connection: connect, its ClientHello, its record into the store.
#[inline(never)]
fn one_connection(
    tracker: &mut Tracker,
    store: &mut Store,
    hello: &[u8],
    cookie: u64,
    out: &mut Vec<Output>,
) {
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:43210".parse().unwrap();
    let task = Task {
        tgid: 40_000,
        pid: 40_001,
        ppid: 39_999,
        uid: 0,
        gid: 0,
        cgroup_id: 7,
        start_boot_ns: 1,
        comm: "xtask".into(),
    };
    tracker.on_connect(
        NetConnect { boot_ns: 100, task, cookie, peer, socket_family: 2, transport: Transport::Tcp, exe: None },
        now,
        out,
    );
    tracker.on_payload(
        NetPayload {
            boot_ns: 200,
            cookie,
            peer,
            seq: 7,
            transport: Transport::Tcp,
            end: false,
            truncated: false,
            data: Secret::new(hello),
        },
        now,
        out,
    );
    for o in out.drain(..) {
        if let Output::Connection(c) = o {
            let mut r = record::connection(&c, "bench-host-01", SystemTime::now());
            store.append(&mut r).unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    nhi_observer::alloc::tune();
    let hello = client_hello();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut cookie = 0;
    let mut g = c.benchmark_group("net");
    g.throughput(Throughput::Elements(PER_COMMIT));
    g.bench_function("connection+store", |b| {
        b.iter(|| {
            for _ in 0..PER_COMMIT {
                cookie += 1;
                one_connection(&mut tracker, &mut store, &hello, cookie, &mut out);
            }
            store.maybe_commit(true).unwrap();
            store.take_committed(&mut lines);
            black_box(lines.len());
            lines.clear();
        });
    });
    assert_eq!(tracker.pending(), 0, "every connection was reported");
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
