//! Throughput of the agent's per-event chain on a replayed event stream,
//! on one core: decode (raw ring-buffer bytes to events), classify (confirm
//! against the built-in catalog's watch list, build the record, attach the
//! credential's identity from the cache, make the typed consumer from what
//! the event carries) and correlate (usage key from the typed credential,
//! source and consumer, access bookkeeping, and one connection per four
//! accesses linked to them).
//!
//! Four benchmarks over the same stream, so each stage's cost shows as a
//! ratio against the one before it in the same run: `decode` (the
//! baseline), `decode+classify` (the typed access record, as the agent
//! carries it to the store), `decode+classify+correlate`, and
//! `decode+classify+correlate+serialise` (plus each access record's one
//! rendering, its JSON text as the store keeps it). The stream:
//! 4,096 credential-file opens by 512 processes of 1,000 credentials (by
//! inode, as the kernel reports a known credential file), and 1,024
//! connections. Target (issue 12, item 7): at least 1M events/s with the
//! serialisation.
//!
//! Not in it, though the agent does them for every credential-file open
//! (`app/pipeline.rs`), so the figures are an upper bound of the agent's
//! chain: the reader's cache check (`classify::reader`: the process's
//! mount namespace from `/proc`, an open and an `fstat` of the file, the
//! cached identities cloned; the content is read only when the file
//! changed), the verdict, the workload from the process table
//! (`typed_consumer`; here the consumer is what the kernel event carries),
//! the de-dup tracker and the stats counters.
//!
//! Figures (docs/design.md, "Pipeline"): 2026-12-03 04:22, the merged
//! build on a quiet 2-core VM: decode + classify + correlate 1.29 M
//! events/s, with the serialisation 573 k (the target is not met with
//! it). Branch `render`, callgrind instructions per access (with a quarter
//! of a connection) before it: 21,243 with the serialisation (11,451 of
//! them the text), 9,095 without.
//! 2026-12-03, eighth session (records with parts serialise as structs,
//! `model::flat`; the time text cached per second; one-pass path
//! cleaning): 15,290 -> 13,119 instructions per access with the
//! serialisation, the text 6,877 -> ~5,250 (docs/design.md, "Records
//! without the flattening layers").
//!
//! 2026-12-03, ninth session (fewer copies, moves and UTF-8 validations):
//! 13,095 -> 9,940 instructions per access with the serialisation
//! (docs/design.md, "The chain a quarter shorter"); wall-clock with the
//! serialisation 600 k-1.02 M events/s on the noisy host.
//!
//! 2026-12-03, tenth session: 9,945 -> 9,177 instructions per access with
//! the serialisation, but no faster in wall-clock (docs/design.md, "Fewer
//! instructions, not fewer cycles", which also gives the way to compare
//! two builds on this host: both at once, each pinned to a core).
//!
//! `cargo bench -p nhi-observer --bench pipeline`, or `cargo xtask bench pipeline`.
use std::{
    collections::HashMap,
    hint::black_box,
    time::{Duration, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nhi_observer::{
    classify::watch::{InodeEntry, WatchList},
    config::{Config, Overrides},
    correlate::{self, Access, Connection, Correlator, CorrelatorConfig, Destination, Subject},
    decode::{self, Event},
    model::{
        Consumer, Credential, Source, Stored,
        records::{AccessSource, CredentialAccess, Identity},
    },
    identity::table::ProcKey,
};
use observer_common::{EventKind, FileOpenEvent, INODE_FILE, MatchKind, OpenSyscall, event_flags};

// The agent's allocator and its settings (observer/src/alloc.rs), so the
// chain costs what it costs in the agent.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 4096;
const PROCESSES: u32 = 512;
const CREDENTIALS: u64 = 1000;
const DEV: u64 = observer_common::kernel_dev(254, 1) as u64;

fn put(buf: &mut [u8], s: &[u8]) {
    buf[..s.len()].copy_from_slice(s);
}

/// One raw `FileOpenEvent` as the kernel writes it into the ring.
fn raw_open(i: usize, rule_id: u32) -> Vec<u8> {
    // SAFETY: integer-only repr(C) ABI type; all zeroes is a valid value.
    let mut ev: FileOpenEvent = unsafe { std::mem::zeroed() };
    let tgid = 10_000 + (i as u32 % PROCESSES);
    ev.header.kind = EventKind::FileOpen as u32;
    ev.header.size = size_of::<FileOpenEvent>() as u32;
    ev.header.boot_ns = 1_000_000_000 + i as u64 * 1_000;
    ev.task.tgid = tgid;
    ev.task.pid = tgid;
    ev.task.ppid = 1;
    ev.task.start_boot_ns = u64::from(tgid) * 1_000;
    put(&mut ev.task.comm, b"aws\0");
    ev.syscall = OpenSyscall::OpenAt as u32;
    ev.match_kind = MatchKind::Inode as u32;
    ev.rule_id = rule_id;
    ev.ret = 3;
    ev.dev = DEV;
    ev.ino = 1_000 + (i as u64 % CREDENTIALS);
    ev.dedup_total = 1;
    let user = i as u64 % CREDENTIALS;
    put(&mut ev.path, format!("/home/u{user}/.aws/credentials\0").as_bytes());
    let walk = format!("credentials\0.aws\0u{user}\0home\0");
    put(&mut ev.resolved, walk.as_bytes());
    ev.resolved_len = walk.len() as u16;
    let exe = b"aws\0bin\0usr\0";
    put(&mut ev.exe, exe);
    ev.exe_len = exe.len() as u16;
    ev.flags = event_flags::RESOLVED_VALID | event_flags::EXE_VALID;
    // SAFETY: the bytes of a plain-old-data value.
    unsafe { std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<FileOpenEvent>()) }.to_vec()
}

struct Chain {
    watch: WatchList,
    /// The reader's cache: the identity each credential file holds.
    ids: HashMap<u64, Credential>,
    correlator: Correlator,
    heads: correlate::record::Heads,
    /// The host's name, borrowed by every record as the agent's is.
    host: &'static str,
}

impl Chain {
    fn new() -> Chain {
        let cfg = Config::resolve(Overrides::default()).expect("built-in config");
        let rule = cfg.catalog.rules.iter().find(|r| r.name == "aws-shared-credentials").expect("aws rule").id;
        let entries: Vec<InodeEntry> = (0..CREDENTIALS)
            .map(|n| InodeEntry::new(DEV as u32, 1_000 + n, rule, INODE_FILE, format!("/home/u{n}/.aws/credentials").into()))
            .collect();
        let ids = (0..CREDENTIALS)
            .map(|n| (1_000 + n, Credential { id: format!("AKIABENCH{n:011}"), kind: "aws.access_key".into() }))
            .collect();
        Chain { watch: WatchList::new(cfg.catalog, &entries), ids, correlator: Correlator::new(CorrelatorConfig::default()),
            heads: correlate::record::Heads::new(std::num::NonZeroUsize::new(4096).unwrap()),
            host: "bench",
        }
    }

    /// decode + classify: the record an open becomes, the credential it
    /// names and its consumer (here only what the kernel event carries).
    fn classify(&self, bytes: &[u8]) -> Option<(CredentialAccess, &Credential, Consumer, ProcKey, u64)> {
        classify(&self.watch, &self.ids, self.host, bytes)
    }

    /// decode + classify + correlate, with a connection every fourth open.
    fn run(&mut self, i: usize, bytes: &[u8]) {
        self.run_with(i, bytes, |_| {});
    }

    /// [`Chain::run`], handing each access record to `then` (the store's
    /// serialisation, in the last benchmark).
    fn run_with(&mut self, i: usize, bytes: &[u8], then: impl FnOnce(CredentialAccess)) {
        let Some((r, credential, consumer, process, boot_ns)) = classify(&self.watch, &self.ids, self.host, bytes) else { return };
        let subject = Subject { host: "bench", credential, source: Source::File, consumer: &consumer };
        if let Some(head) = self.heads.get(&subject) {
            self.correlator.on_access(Access { head, process, boot_ns, wall: r.time, count: 1 });
        }
        if i % 4 == 3 {
            self.correlator.on_connection(&Connection {
                process,
                ancestors: &[],
                boot_ns: boot_ns + 500,
                wall: r.time,
                destination: Destination { address: "sts.amazonaws.com".into(), port: 443 },
            });
        }
        if self.correlator.full() {
            let mut out = Vec::new();
            self.correlator.drain(&mut out);
            black_box(out);
        }
        then(r);
    }
}

/// decode + classify: the record an open becomes, the credential it names
/// and its consumer (here only what the kernel event carries).
fn classify<'a>(
    watch: &WatchList,
    ids: &'a HashMap<u64, Credential>,
    host: &'static str,
    bytes: &[u8],
) -> Option<(CredentialAccess, &'a Credential, Consumer, ProcKey, u64)> {
    let event = decode::decode(bytes).ok()?;
    let Event::FileOpen(ev) = &event else { return None };
    let (rule_id, _) = watch.confirm(ev)?;
    let rule = watch.rule(rule_id)?;
    let mut access = nhi_observer::model::file::file_access(ev, Some((rule.name, rule.kind)));
    // As the agent's `Identity::typed_consumer` makes it: the executable's
    // text copied from the record's process (the same walk).
    let consumer = Consumer {
        executable_path: access.process.executable_path.clone(),
        user_id: Some(ev.task.uid),
        ..Consumer::default()
    };
    let credential = ids.get(&ev.ino)?;
    access.identity = Identity { id: Some(credential.id.clone()), ..Identity::default() };
    access.count = Some(1);
    let r = CredentialAccess {
        time: SystemTime::UNIX_EPOCH + Duration::from_nanos(ev.boot_ns),
        host_name: host.into(),
        source: AccessSource::File(access),
        record_id: None,
    };
    Some((r, credential, consumer, ProcKey { tgid: ev.task.tgid, start_boot_ns: ev.task.start_boot_ns }, ev.boot_ns))
}

fn bench(c: &mut Criterion) {
    nhi_observer::alloc::tune();
    let chain = Chain::new();
    let rule = chain.watch.catalog().rules.iter().find(|r| r.name == "aws-shared-credentials").map(|r| r.id).unwrap_or(0);
    let stream: Vec<Vec<u8>> = (0..EVENTS).map(|i| raw_open(i, rule)).collect();
    assert!(chain.classify(&stream[0]).is_some(), "the stream does not classify");
    // Events per iteration: the opens, plus the connections.
    let events = (EVENTS + EVENTS / 4) as u64;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(events));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for bytes in &stream {
                black_box(decode::decode(bytes).ok());
            }
        });
    });
    g.bench_function("decode+classify", |b| {
        b.iter(|| {
            for bytes in &stream {
                black_box(chain.classify(bytes));
            }
        });
    });
    let mut chain = Chain::new();
    g.bench_function("decode+classify+correlate", |b| {
        b.iter(|| {
            for (i, bytes) in stream.iter().enumerate() {
                chain.run(i, bytes);
            }
        });
    });
    // The one rendering of each access record: the JSON text the store
    // keeps (and JSON lines and OTLP are made from).
    let mut chain = Chain::new();
    let mut n = 0i64;
    g.bench_function("decode+classify+correlate+serialise", |b| {
        b.iter(|| {
            for (i, bytes) in stream.iter().enumerate() {
                chain.run_with(i, bytes, |mut r| {
                    n += 1;
                    black_box(r.to_json(nhi_observer::store::record_id("bench", n)));
                });
            }
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
