//! Golden outputs: a fixed stream of kernel events and stored usages,
//! rendered as the JSON lines and OTLP log records the agent emits, compared
//! with `tests/golden/records.json`. A change to a name, a type or a value in
//! either output fails here; a deliberate one is made by regenerating the
//! file (`NHI_UPDATE_GOLDEN=1 cargo test -p nhi-observer --lib golden`) and
//! listing the change in the README's changelog.
use std::time::{Duration, SystemTime};

use observer_common::{EventKind, FileOpenEvent, MatchKind, OpenSyscall, event_flags};
use opentelemetry::logs::{AnyValue, LoggerProvider as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use serde_json::{Value as Json, json};

use crate::{
    correlate::Confidence,
    decode,
    model::{
        Emit,
        records::{AccessSource, CredentialAccess},
    },
    store::{DestinationRow, UsageRow, usage_record},
};

const T0: u64 = 1_764_000_000;

fn put(buf: &mut [u8], s: &[u8]) {
    buf[..s.len()].copy_from_slice(s);
}

/// A raw file-open event as the kernel writes it into the ring.
fn raw_open(
    path: &str,
    walk: &[u8],
    ret: i64,
    flags: u32,
    mode: u32,
    match_kind: MatchKind,
) -> Vec<u8> {
    // SAFETY: integer-only repr(C) ABI type; all zeroes is a valid value.
    let mut ev: FileOpenEvent = unsafe { std::mem::zeroed() };
    ev.header.kind = EventKind::FileOpen as u32;
    ev.header.size = size_of::<FileOpenEvent>() as u32;
    ev.header.boot_ns = 5_000_000_000;
    ev.task.tgid = 4242;
    ev.task.pid = 4243;
    ev.task.ppid = 1;
    ev.task.uid = 1000;
    put(&mut ev.task.comm, b"aws\0");
    ev.syscall = OpenSyscall::OpenAt as u32;
    ev.match_kind = match_kind as u32;
    ev.rule_id = 1;
    ev.ret = ret;
    ev.open_flags = flags;
    ev.mode = mode;
    if ret >= 0 {
        ev.dev = u64::from(observer_common::kernel_dev(254, 1));
        ev.ino = 1_234_567;
    }
    ev.dedup_total = 1;
    put(&mut ev.path, format!("{path}\0").as_bytes());
    put(&mut ev.resolved, walk);
    ev.resolved_len = walk.len() as u16;
    let exe = b"aws\0bin\0usr\0";
    put(&mut ev.exe, exe);
    ev.exe_len = exe.len() as u16;
    ev.flags = event_flags::RESOLVED_VALID | event_flags::EXE_VALID;
    if ret < 0 && !path.starts_with('/') {
        ev.flags |= event_flags::RESOLVED_IS_BASE;
    }
    // SAFETY: the bytes of a plain-old-data value.
    unsafe { std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<FileOpenEvent>()) }
        .to_vec()
}

/// A file open's typed access record, as the pipeline builds it (no
/// workload: the fixture's process is unknown to the identity stage).
fn file_access(bytes: &[u8]) -> CredentialAccess {
    let decode::Event::FileOpen(ev) = decode::decode(bytes).expect("the fixture decodes") else {
        panic!("a file open")
    };
    let mut access = crate::model::file::file_access(&ev, Some(("aws-shared-credentials", "aws.access_key")));
    access.count = Some(3);
    CredentialAccess {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
        host_name: "golden-host".into(),
        source: AccessSource::File(access),
        record_id: None,
    }
}

/// The stream: a read found by inode, a failed relative open, a create.
fn records() -> Vec<(&'static str, Emit)> {
    let mut read = file_access(&raw_open(
        "/home/a/.aws/credentials",
        b"credentials\0.aws\0a\0home\0",
        3,
        0,
        0,
        MatchKind::Inode,
    ));
    if let AccessSource::File(f) = &mut read.source {
        f.identity.id = Some("AKIAGOLDEN0000000001".into());
    }
    let failed = file_access(&raw_open(
        "credentials",
        b".aws\0a\0home\0",
        -2,
        0,
        0,
        MatchKind::Name,
    ));
    let created = file_access(&raw_open(
        "/home/a/.aws/credentials",
        b"credentials\0.aws\0a\0home\0",
        4,
        0o1 | 0o100 | 0o1000,
        0o600,
        MatchKind::Path,
    ));
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    let dest = |h: &str, c| DestinationRow {
        server_address: h.into(),
        server_port: 443,
        confidence: c,
        first_seen: t,
        last_seen: t + Duration::from_secs(60),
        connections: 2,
    };
    let usage = usage_record(&UsageRow {
        id: 7,
        usage_key: "golden-usage".into(),
        nhi_id: "AKIAGOLDEN0000000001".into(),
        kind: "aws.access_key".into(),
        source: "file".into(),
        host: "golden-host".into(),
        consumer: crate::model::Consumer {
            executable_path: Some("/usr/bin/aws".into()),
            user_id: Some(1000),
            ..Default::default()
        },
        first_seen: t,
        last_seen: t + Duration::from_secs(60),
        accesses: 5,
        connections: 4,
        destinations: vec![
            dest("sts.amazonaws.com", Confidence::Direct),
            dest("s3.amazonaws.com", Confidence::Inferred),
        ],
    });
    let mut out = vec![
        ("file_read_by_inode", read.clone().into()),
        ("file_failed_relative_open", failed.into()),
        ("file_create", created.into()),
        ("usage", usage.into()),
    ];
    out.extend(more_records(&read));
    out.extend(agent_records());
    out
}

fn task() -> decode::Task {
    decode::Task {
        tgid: 4242,
        pid: 4243,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        cgroup_id: 0,
        start_boot_ns: 1,
        comm: "aws".into(),
    }
}

fn exe() -> decode::WalkedPath {
    decode::WalkedPath { path: "/usr/bin/aws".into(), complete: true }
}

fn socket() -> crate::net::flows::Socket {
    crate::net::flows::Socket { cookie: 812, task: task(), exe: Some(exe()), family: observer_common::AF_INET }
}

/// The other event names, each from the builder the agent uses: a
/// rotation, an environment and a metadata-service access, a TLS and a
/// QUIC connection, a finding, coverage and the agent's counters.
fn more_records(read: &CredentialAccess) -> Vec<(&'static str, Emit)> {
    use crate::{
        findings::{Finding, FindingType, Severity, State, UnusedEvidence, Workload},
        net::{flows::{ConnTransport, Connection, ImdsRequest, Payload}, imds::Call, record, tls::ClientHello},
    };
    use observer_creds::{Identity, Parsed};
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    let before = Parsed { identities: vec![Identity::new("aws.access_key", "AKIAGOLDEN0000000001")], unparsed: None };
    let after = Parsed { identities: vec![Identity::new("aws.access_key", "AKIAGOLDEN0000000002")], unparsed: None };
    let rotation = crate::model::file::rotation(read, &before, &after).expect("a file access");
    let exec = decode::ProcessExec {
        boot_ns: 1,
        task: task(),
        filename: "/usr/bin/aws".into(),
        exe: Some(exe()),
        tty: None,
        args: crate::secret::Secret::new(Vec::new()),
        args_truncated: false,
        env: crate::secret::Secret::new(Vec::new()),
        env_truncated: false,
    };
    let env_cred = crate::identity::env::EnvCredential {
        name: "AWS_ACCESS_KEY_ID".into(),
        kind: "aws.access_key",
        value: crate::secret::Secret::new(b"AKIAGOLDEN0000000001".to_vec()),
    };
    let cred = crate::model::Credential { id: "AKIAGOLDEN0000000001".into(), kind: "aws.access_key".into() };
    let env = crate::identity::env::record(&exec, &env_cred, "aws.access_key", Some(&cred), "golden-host", t);
    let imds = record::imds_request(
        &ImdsRequest {
            socket: socket(),
            boot_ns: 1,
            peer: "169.254.169.254:80".parse().expect("address"),
            method: "GET".into(),
            path: "/latest/meta-data/iam/security-credentials/app-role".into(),
            host: Some("169.254.169.254".into()),
            call: Call { provider: "aws", operation: "credentials", kind: Some("aws.iam_role"), id: Some("app-role".into()) },
        },
        "golden-host",
        t,
    );
    let conn = |transport, payload, hello: Option<ClientHello>, quic_version| Connection {
        socket: socket(),
        boot_ns: 1,
        peer: "192.0.2.10:443".parse().expect("address"),
        transport,
        payload,
        hello,
        quic_version,
        http: None,
        error: None,
    };
    let hello = ClientHello {
        server_name: Some("sts.amazonaws.com".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        versions: vec![0x0304, 0x0303],
        grease: true,
        ..ClientHello::default()
    };
    let tls = conn(ConnTransport::Tcp, Payload::Tls, Some(hello.clone()), None);
    let tls = record::connection(&tls, "golden-host", t);
    let quic = conn(ConnTransport::Quic, Payload::Quic, Some(hello), Some(1));
    let quic = record::connection(&quic, "golden-host", t);
    let none = conn(ConnTransport::Tcp, Payload::None, None, None);
    let none = record::connection(&none, "golden-host", t);
    let finding = crate::findings::render::record(
        &Finding {
            id: "1221bdc6131d667f254005c5".into(),
            kind: FindingType::Unused,
            state: State::Open,
            severity: Severity::Low,
            reason: "no use in the last 90d".into(),
            nhi_id: "AKIAGOLDEN0000000001".into(),
            nhi_kind: "aws.access_key".into(),
            subject: "/home/a/.aws/credentials".into(),
            first_seen: t,
            last_seen: t + Duration::from_secs(60),
            count: 0,
            record_ids: vec!["golden-1".into(), "golden-2".into()],
            workload: Some(Workload {
                executable: Some("/usr/bin/aws".into()),
                user_id: Some(1000),
                interactive: true,
                ..Workload::default()
            }),
            server_address: None,
            file_path: Some("/home/a/.aws/credentials".into()),
            unused: Some(UnusedEvidence {
                evaluated_at: t + Duration::from_secs(120),
                window: Duration::from_secs(7_776_000),
                tracked_since: Some(t),
                coverage_percent: 99.46,
                events_lost: 2,
            }),
        },
        "golden-host",
        t + Duration::from_secs(120),
    );
    vec![
        ("rotation", rotation.into()),
        ("env_access", env.into()),
        ("imds_access", imds.into()),
        ("connection_tls", tls.into()),
        ("connection_quic", quic.into()),
        ("connection_no_payload", none.into()),
        ("finding_unused", finding.into()),
    ]
}

/// Coverage and the agent's counters: their builders read the store and
/// the running pipeline, so the typed records are rendered here as those
/// builders render them.
fn agent_records() -> Vec<(&'static str, Emit)> {
    use crate::model::records::{AgentStats, Coverage};
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    let coverage = Emit::from(Coverage {
        time: t + Duration::from_secs(300),
        host_name: "golden-host".into(),
        start: crate::model::rfc3339(t),
        end: crate::model::rfc3339(t + Duration::from_secs(300)),
        tracked_since: crate::model::rfc3339(t),
        sensors: vec!["file".into(), "process".into()],
        events_lost: 3,
        events_lost_by_kind: vec!["file=2".into(), "network=1".into()],
        decode_errors: 0,
        state: "degraded".into(),
        record_id: None,
    });
    let stats = Emit::from(AgentStats {
        time: Some(t),
        host_name: "golden-host".into(),
        file_events_emitted: 10,
        file_events_lost: 1,
        events_received: 12,
        records_written: 9,
        dedup_keys: 4,
        usage_destinations_dropped: u64::MAX,
        ..AgentStats::default()
    });
    vec![("coverage", coverage), ("agent_stats", stats)]
}

fn any_json(v: &AnyValue) -> Json {
    match v {
        AnyValue::String(s) => json!({ "string": s.as_str() }),
        AnyValue::Int(i) => json!({ "int": i }),
        AnyValue::Double(d) => json!({ "double": d }),
        AnyValue::Boolean(b) => json!({ "bool": b }),
        AnyValue::ListAny(l) => Json::Array(l.iter().map(any_json).collect()),
        other => json!({ "other": format!("{other:?}") }),
    }
}

/// Each record as JSON lines write it and as an OTLP log record.
fn render() -> Json {
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("golden");
    let cases: Vec<Json> = records()
        .into_iter()
        .map(|(name, r)| {
            // The line JSON lines write: the store's one serialisation of
            // the typed record, the same text as its rendered attributes.
            let line = r.json().expect("a record serialises");
            assert_eq!(line, serde_json::to_string(&r.rendered()).expect("JSON"), "{name}");
            let log = super::otlp::logs::to_log_record(&logger, 1, &line)
                .expect("a JSON line is a log record");
            let mut attributes = serde_json::Map::new();
            for (k, v) in log.attributes_iter() {
                attributes.insert(k.to_string(), any_json(v));
            }
            json!({
                "case": name,
                "jsonl": serde_json::from_str::<Json>(&line).expect("JSON"),
                "otlp": {
                    "event_name": log.event_name(),
                    "body": log.body().map(any_json),
                    "attributes": attributes,
                },
            })
        })
        .collect();
    Json::Array(cases)
}

#[test]
fn golden_jsonl_and_otlp_records() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/records.json");
    let got = serde_json::to_string_pretty(&render()).expect("JSON") + "\n";
    if std::env::var_os("NHI_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(&path, &got).expect("write golden file");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "JSON lines or OTLP output changed against {}; if deliberate, regenerate with NHI_UPDATE_GOLDEN=1 and list the change in the README changelog.\ngot:\n{got}",
        path.display()
    );
}
