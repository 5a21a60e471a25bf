//! Cost of the store's write path per record, on one core: `Store::append`
//! (record id, JSON text, the row into the open transaction) and the
//! commits, WAL writes and checkpoints it leads to, for records shaped like
//! the `nhi.connection` records of `cargo xtask bench tls` (about 1 kB of
//! JSON each), 512 per commit (what 2,500 connections/s give in the
//! store's 200 ms commit interval). A real SQLite database in a temporary
//! directory, the agent's allocator.
//!
//! `cargo bench -p nhi-observer --bench store`.
use std::{
    hint::black_box,
    time::{Duration, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nhi_observer::{
    model::{Record, Value},
    store::{Store, StoreOptions},
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PER_COMMIT: usize = 512;

/// A connection record of the benchmark's size and shape.
fn connection(n: usize) -> Record {
    let s = |v: &str| Value::from(v.to_owned());
    Record {
        time: SystemTime::now(),
        event_name: "nhi.connection",
        attributes: vec![
            ("host.name", s("bench-host-01")),
            ("host.id", s("0f3ae57bc2d33a7494e41e244bb686af")),
            ("process.pid", Value::Int(40_000 + (n % 64) as i64)),
            ("process.parent.pid", Value::Int(39_999)),
            (
                "process.executable.path",
                s("/work/wt-sinkcost/target/debug/xtask"),
            ),
            ("process.executable.name", s("xtask")),
            ("process.command", s("xtask")),
            ("process.user.id", Value::Int(0)),
            ("process.user.name", s("root")),
            ("process.start_time", s("2026-12-02T16:20:00.123456789Z")),
            (
                "nhi.consumer.id",
                s("exe:/work/wt-sinkcost/target/debug/xtask"),
            ),
            ("nhi.consumer.kind", s("process")),
            ("network.transport", s("tcp")),
            ("network.type", s("ipv4")),
            ("network.peer.address", s("127.0.0.1")),
            ("network.peer.port", Value::Int(43_210)),
            ("server.address", s("bench.nhi.test")),
            ("server.port", Value::Int(43_210)),
            ("nhi.socket.family", s("inet")),
            ("nhi.connection.payload", s("tls")),
            ("nhi.server_name.seen", Value::Bool(true)),
            ("tls.protocol.name", s("tls")),
            ("tls.protocol.version", s("1.3")),
            (
                "tls.client.supported_versions",
                Value::StrList(vec!["1.3".into(), "1.2".into()]),
            ),
            ("tls.client.ja4", s("t13d0312h2_55b375c5d22e_1e4e2d2fbe5d")),
            (
                "tls.client.supported_groups",
                Value::StrList(vec![
                    "X25519MLKEM768".into(),
                    "x25519".into(),
                    "secp256r1".into(),
                ]),
            ),
            (
                "tls.client.alpn",
                Value::StrList(vec!["h2".into(), "http/1.1".into()]),
            ),
            ("nhi.connection.id", s(&format!("c-{n:016x}"))),
            ("nhi.process.key", s(&format!("{:016x}", n % 64))),
            ("container.id", s("")),
            ("nhi.identity.source", s("process")),
        ],
    }
}

fn bench(c: &mut Criterion) {
    nhi_observer::alloc::tune();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut out = Vec::new();
    let mut n = 0;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(PER_COMMIT as u64));
    g.bench_function("append+commit", |b| {
        b.iter(|| {
            for _ in 0..PER_COMMIT {
                n += 1;
                store.append(&mut connection(n)).unwrap();
            }
            store.maybe_commit(true).unwrap();
            store.take_committed(&mut out);
            black_box(out.len());
            out.clear();
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
