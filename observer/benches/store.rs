//! Cost of the store's write path per record, on one core: `Store::append`
//! (record id, JSON text, the row into the open transaction) and the
//! commits, WAL writes and checkpoints it leads to, for typed
//! `nhi.connection` records like those of `cargo xtask bench tls` (about
//! 1 kB of JSON each, serialised from the typed record), 512 per commit (what 2,500 connections/s give in the
//! store's 200 ms commit interval). A real SQLite database in a temporary
//! directory, the agent's allocator.
//!
//! `store/ingest`: the findings' ingest (`Store::ingest_records`) over
//! environment-variable accesses (three per process in `bench process`'s
//! credential workload), which it passes over in SQL, against what it did
//! before for each such row (read the body out, deserialise it as a typed
//! access, skip it: `store/ingest-deserialise`).
//!
//! `cargo bench -p nhi-observer --bench store`.
use std::{
    hint::black_box,
    time::{Duration, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nhi_observer::{
    model::records::{AccessSource, Connection, CredentialAccess, EnvAccess, Peer, Process, SocketFacts, TlsHello, Workload},
    store::{Store, StoreOptions},
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PER_COMMIT: usize = 512;

/// A typed connection record of the benchmark's shape (about 1 kB of
/// JSON, as `bench tls` gives: TLS hello, process, workload).
fn connection(n: usize) -> Connection {
    Connection {
        time: SystemTime::now(),
        host_name: "bench-host-01".into(),
        transport: "tcp",
        server_address: "bench.nhi.test".into(),
        server_port: 43_210,
        server_name_seen: true,
        server_name_source: Some("tls.sni"),
        peer: Peer { network_type: "ipv4", address: "127.0.0.1".into(), port: 43_210 },
        payload: "tls",
        tls: Some(TlsHello {
            protocol_name: Some("tls"),
            protocol_version: Some("1.3".into()),
            offered_versions: vec!["1.3".into(), "1.2".into()],
            alpn: vec!["h2".into(), "http/1.1".into()],
            grease: true,
        }),
        quic_version: None,
        http_method: None,
        url_path: None,
        error_type: None,
        socket: SocketFacts { family: "inet", cookie: format!("{}", 1_000_000 + n) },
        process: Process {
            pid: 40_000 + (n % 64) as u32,
            thread_id: 40_000 + (n % 64) as u32,
            parent_pid: Some(39_999),
            user_id: 0,
            command: "xtask".into(),
            executable_path: Some("/work/wt-sinkcost/target/debug/xtask".into()),
        },
        workload: Workload {
            group_id: Some(0),
            interactive: Some(false),
            creation_time: Some("2026-12-02T16:20:00.123456789Z".into()),
            ancestors: vec![
                "39999 /work/wt-sinkcost/target/debug/xtask".into(),
                "1200 /usr/bin/bash".into(),
                "1 /sbin/init".into(),
            ],
            user_name: Some("root".into()),
            cgroup_path: Some("/user.slice/user-0.slice/session-3.scope".into()),
            systemd_unit: Some("session-3.scope".into()),
            ..Workload::default()
        },
        record_id: None,
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
    ingest(c);
}

/// Environment accesses in the store's ingest.
const ENV_ACCESSES: usize = 3_000;

/// An environment-variable access of `bench process`'s shape.
fn env_access(n: usize) -> CredentialAccess {
    let mut process = connection(n).process;
    process.command = "true".into();
    process.executable_path = Some("/usr/bin/true".into());
    CredentialAccess {
        time: SystemTime::now(),
        host_name: "bench-host-01".into(),
        source: AccessSource::Env(Box::new(EnvAccess {
            kind: "aws.access_key".into(),
            id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            env_name: "AWS_ACCESS_KEY_ID".into(),
            process,
            workload: connection(n).workload,
        })),
        record_id: None,
    }
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for n in 0..ENV_ACCESSES {
        store.append(&mut env_access(n)).unwrap();
    }
    store.maybe_commit(true).unwrap();
    let other = rusqlite::Connection::open(dir.path().join("nhi-observer.db")).unwrap();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(ENV_ACCESSES as u64));
    g.bench_function("ingest", |b| {
        b.iter(|| {
            // From the start again (the cursor only moves forward).
            other.execute("UPDATE cursors SET last_id = 0 WHERE name = 'findings'", []).unwrap();
            black_box(store.ingest_records().unwrap());
            store.maybe_commit(true).unwrap();
        });
    });
    g.bench_function("ingest-deserialise", |b| {
        b.iter(|| {
            let mut stmt = other
                .prepare_cached(
                    "SELECT id, time_ns, event_name, body FROM records WHERE id > 0
                     AND event_name IN ('nhi.credential.access', 'nhi.credential.rotation') ORDER BY id LIMIT 20000",
                )
                .unwrap();
            let rows: Vec<(i64, i64, String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let files = rows
                .iter()
                .filter(|r| {
                    matches!(
                        nhi_observer::model::from_json::<CredentialAccess>(&r.3).map(|a| a.source),
                        Some(AccessSource::File(_))
                    )
                })
                .count();
            assert_eq!(files, 0);
            black_box(rows.len());
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
