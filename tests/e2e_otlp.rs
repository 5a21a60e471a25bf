//! OTLP export end to end: the real agent, real probes, credential files
//! read by real programs, and in-process OTLP receivers (gRPC on tonic,
//! HTTP/protobuf on hyper) on loopback. What must hold:
//! - configured by the standard `OTEL_*` variables alone (no config file):
//!   endpoint, protocol, headers, compression, resource attributes,
//!   service name; EventName and attributes as in the data contract (README, docs/design.md); metrics;
//! - gzip on and off, for both protocols;
//! - a receiver down for 30 s while the agent is under load loses nothing:
//!   every record the agent committed arrives once it is back;
//! - `kill -9` under load, then a restart on the same state directory:
//!   every committed record arrives, duplicates are few and share a
//!   `nhi.record.id`.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{otlp::*, *};
use nix::sys::signal::Signal;

fn cat(path: &Path) {
    let st = Command::new(which("cat")).arg(path).stdout(Stdio::null()).status().unwrap();
    assert!(st.success());
}

fn env_with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// Access records of `key_id` and the `nhi.usage` record for it, as
/// received; panics with what came when they do not.
fn received_access_and_usage(r: &Receiver, key_id: &str, timeout: Duration) -> (LogView, LogView) {
    let logs = r.wait_logs(timeout, |logs| {
        let cat = which("cat");
        logs.iter().any(|l| l.event_name == "nhi.credential.access" && l.str("nhi.id") == Some(key_id))
            && logs.iter().any(|l| {
                l.event_name == "nhi.usage" && l.str("nhi.id") == Some(key_id) && l.str("process.executable.path") == cat.to_str()
            })
    });
    let access = logs
        .iter()
        .find(|l| {
            l.event_name == "nhi.credential.access"
                && l.str("nhi.id") == Some(key_id)
                && l.str("process.executable.path") == which("cat").to_str()
        })
        .unwrap_or_else(|| panic!("no access record for {key_id}; got {} logs: {:#?}", logs.len(), logs.iter().map(|l| &l.event_name).collect::<Vec<_>>()))
        .clone();
    // By consumer: another agent on the host (another test run) may read
    // the file too, which is a usage of its own.
    let cat = which("cat");
    let usage = logs
        .iter()
        .rfind(|l| {
            l.event_name == "nhi.usage" && l.str("nhi.id") == Some(key_id) && l.str("process.executable.path") == cat.to_str()
        })
        .unwrap_or_else(|| panic!("no nhi.usage record for {key_id}"))
        .clone();
    (access, usage)
}

/// Configured by `OTEL_*` alone: attributes, resource, headers, gzip,
/// metrics, for one protocol.
fn export_from_otel_variables(protocol: Protocol, gzip: bool) {
    let _serial = serial();
    let key_id = match (protocol, gzip) {
        (Protocol::Grpc, true) => "AKIAOTLPGRPCGZIP0001",
        (Protocol::Grpc, false) => "AKIAOTLPGRPCPLAIN001",
        (Protocol::HttpProtobuf, true) => "AKIAOTLPHTTPGZIP0001",
        (Protocol::HttpProtobuf, false) => "AKIAOTLPHTTPPLAIN001",
    };
    let (_home, cred) = aws_home(key_id);
    let receiver = Receiver::start(protocol, 0);
    let env = env_with(
        otel_env(&receiver, gzip),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-nhi-tenant=e2e,authorization=Bearer%20otlp-header-value"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=e2e,k8s.cluster.name=test-cluster,host.name=e2e-node-7",
            ),
            ("OTEL_SERVICE_NAME", "nhi-observer-e2e"),
        ],
    );
    let agent = Agent::start_env(&[], "info", &env, None);
    cat(&cred);
    cat(&cred);
    // The usage record comes at the usage flush (10 s by default) or at the
    // stop; the access record at the next commit.
    let logs = receiver.wait_logs(Duration::from_secs(20), |logs| {
        logs.iter().any(|l| l.event_name == "nhi.credential.access" && l.str("nhi.id") == Some(key_id))
    });
    assert!(
        logs.iter().any(|l| l.str("nhi.id") == Some(key_id)),
        "nothing for {key_id} before the stop: export is not prompt"
    );
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent failed: {}", stderr.join("\n"));
    let (access, usage) = received_access_and_usage(&receiver, key_id, Duration::from_secs(10));

    // Attributes as in the data contract, typed.
    assert_eq!(access.str("nhi.source"), Some("file"));
    assert_eq!(access.str("nhi.kind"), Some("aws.access_key"));
    assert_eq!(access.str("file.path"), Some(cred.to_str().unwrap()));
    assert_eq!(access.str("process.executable.path"), Some(which("cat").to_str().unwrap()));
    assert!(access.int("process.pid").is_some_and(|p| p > 0));
    assert!(access.int("nhi.access.count").is_some_and(|c| c >= 1));
    assert!(access.str("nhi.record.id").is_some());
    assert!(access.time_unix_nano > 0);
    assert_eq!(access.scope, "nhi-observer");
    assert_eq!(access.scope_version, env!("CARGO_PKG_VERSION"));
    // Regression (issue 12): host identity is the resource's only; each
    // record repeating `host.name` contradicted OTEL_RESOURCE_ATTRIBUTES.
    assert!(!access.attributes.contains_key("host.name"), "host.name on a log record: {access:#?}");
    assert!(!usage.attributes.contains_key("host.name"), "host.name on a log record: {usage:#?}");
    // The body is a short summary naming the event and credential, not the
    // event name alone.
    let body = access.body.as_deref().unwrap_or_default();
    assert!(body.starts_with("nhi.credential.access ") && body.contains(key_id), "body: {body:?}");
    assert_eq!(usage.int("nhi.usage.count"), Some(2), "usage counts both cats: {usage:#?}");
    assert_eq!(usage.str("process.executable.path"), Some(which("cat").to_str().unwrap()));
    assert!(usage.str("nhi.usage.id").is_some() && usage.str("nhi.usage.first_seen").is_some());
    // The same records as JSON lines, same ids.
    let jsonl_ids: BTreeSet<&str> = records.iter().filter_map(|r| str_attr(r, "nhi.record.id")).collect();
    assert!(jsonl_ids.contains(access.str("nhi.record.id").unwrap()));

    // Resource: from the variables, plus the agent's own.
    let res = &access.resource;
    assert_eq!(res.get("service.name").and_then(|v| v.as_str()), Some("nhi-observer-e2e"));
    assert_eq!(res.get("deployment.environment.name").and_then(|v| v.as_str()), Some("e2e"));
    assert_eq!(res.get("k8s.cluster.name").and_then(|v| v.as_str()), Some("test-cluster"));
    assert_eq!(res.get("host.name").and_then(|v| v.as_str()), Some("e2e-node-7"), "OTEL_RESOURCE_ATTRIBUTES wins");
    assert!(res.get("service.instance.id").and_then(|v| v.as_str()).is_some());

    let got = receiver.got.lock().unwrap();
    // Headers from OTEL_EXPORTER_OTLP_HEADERS (URL-decoded) on every request.
    assert!(got.headers.iter().all(|h| h.get("x-nhi-tenant").map(String::as_str) == Some("e2e")), "{:?}", got.headers);
    assert!(got.headers.iter().all(|h| h.get("authorization").map(String::as_str) == Some("Bearer otlp-header-value")));
    if gzip {
        assert_eq!(got.gzip, got.requests, "every request gzip-compressed");
    } else {
        assert_eq!(got.gzip, 0, "no request compressed");
    }
    assert!(!got.metrics.is_empty(), "no metrics export");
    drop(got);
    let scopes = receiver.metric_scopes();
    assert_eq!(
        scopes,
        [("nhi-observer".to_owned(), env!("CARGO_PKG_VERSION").to_owned())].into_iter().collect(),
        "metrics scope with its version"
    );
    // Metrics: accesses by source, at least the two cats.
    let accesses = receiver.metric("nhi.credential.accesses");
    let file = accesses.iter().find(|(a, _)| a.get("nhi.source").and_then(|v| v.as_str()) == Some("file"));
    assert!(file.is_some_and(|(_, v)| *v >= 2.0), "nhi.credential.accesses: {accesses:?}");
    for name in ["nhi.agent.drops", "nhi.store.size", "nhi.export.failures", "nhi.export.backlog", "nhi.connections"] {
        assert!(!receiver.metric(name).is_empty(), "metric {name} missing");
    }
}

#[test]
fn grpc_gzip_configured_by_otel_variables_only() {
    if bpf_available("grpc_gzip_configured_by_otel_variables_only") {
        export_from_otel_variables(Protocol::Grpc, true);
    }
}

#[test]
fn grpc_without_compression() {
    if bpf_available("grpc_without_compression") {
        export_from_otel_variables(Protocol::Grpc, false);
    }
}

#[test]
fn http_protobuf_gzip_configured_by_otel_variables_only() {
    if bpf_available("http_protobuf_gzip_configured_by_otel_variables_only") {
        export_from_otel_variables(Protocol::HttpProtobuf, true);
    }
}

#[test]
fn http_protobuf_without_compression() {
    if bpf_available("http_protobuf_without_compression") {
        export_from_otel_variables(Protocol::HttpProtobuf, false);
    }
}

/// De-dup off (each open of the load is a record), usage every second.
const DELIVERY_CONFIG: &str = "dedup_interval_ms = 0\n[usage]\nflush_interval_secs = 1\n[otlp]\nmax_backoff_secs = 2\n";

/// Every committed record id arrived (waits up to `timeout` for it);
/// returns the number of duplicates received.
fn assert_all_delivered(receiver: &Receiver, committed: &BTreeSet<String>, timeout: Duration) -> usize {
    let ids = |logs: &[LogView]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in logs {
            if let Some(id) = l.str("nhi.record.id") {
                *m.entry(id.to_owned()).or_default() += 1;
            }
        }
        m
    };
    let logs = receiver.wait_logs(timeout, |logs| {
        let got = ids(logs);
        committed.iter().all(|id| got.contains_key(id))
    });
    let got = ids(&logs);
    let missing: Vec<&String> = committed.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {} committed records never arrived, e.g. {:?}", missing.len(), committed.len(), &missing[..missing.len().min(5)]);
    got.values().map(|n| n - 1).sum()
}

#[test]
fn receiver_down_30s_under_load_loses_nothing() {
    if !bpf_available("receiver_down_30s_under_load_loses_nothing") {
        return;
    }
    let _serial = serial();
    let (home, cred) = aws_home("AKIAOTLPOUTAGE000001");
    let mut receiver = Receiver::start(Protocol::Grpc, 0);
    let args = config_args(home.path(), DELIVERY_CONFIG);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_env(&args, "info", &otel_env(&receiver, true), None);
    let load = open_loop(&cred);
    receiver.wait_logs(Duration::from_secs(20), |l| l.iter().any(|l| l.str("nhi.id") == Some("AKIAOTLPOUTAGE000001")));
    receiver.down();
    let outage = Instant::now();
    let during = |agent: &Agent| db_record_ids(agent.state_dir.path()).len();
    let before = during(&agent);
    std::thread::sleep(Duration::from_secs(30));
    let after = during(&agent);
    assert!(after > before + 1000, "the load made {} records during the outage: not a load", after - before);
    receiver.up();
    eprintln!("receiver back after {:?}; {} records committed", outage.elapsed(), after);
    std::thread::sleep(Duration::from_secs(3));
    stop_loop(load);
    // The sink commits within 200 ms; then the same agent, still running,
    // must catch up on everything: the outage delayed delivery, nothing more.
    std::thread::sleep(Duration::from_secs(1));
    let committed = db_record_ids(agent.state_dir.path());
    assert!(committed.len() >= after, "records disappeared from the store");
    let dups = assert_all_delivered(&receiver, &committed, Duration::from_secs(90));
    eprintln!("all {} committed records delivered {:?} after the receiver came back", committed.len(), outage.elapsed());
    // The metrics tell the same story: failed log exports during the
    // outage, and at least every delivered record counted as exported.
    let logs_failures = || {
        receiver
            .metric("nhi.export.failures")
            .iter()
            .filter(|(a, _)| a.get("nhi.export.signal").and_then(|v| v.as_str()) == Some("logs"))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let exported = || receiver.metric("nhi.export.records").iter().map(|(_, v)| *v).sum::<f64>();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (logs_failures() < 1.0 || exported() < committed.len() as f64) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(logs_failures() >= 1.0, "nhi.export.failures (logs) never rose: {:?}", receiver.metric("nhi.export.failures"));
    assert!(exported() >= committed.len() as f64, "nhi.export.records {} < {} delivered", exported(), committed.len());
    let (status, _records, stderr, _state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    assert!(dups <= 4 * 512, "{dups} duplicates: more than a few batches");
    assert!(stderr.iter().any(|l| l.contains("OTLP log export failed")), "the outage was not noticed");
}

#[test]
fn kill_9_under_load_then_restart_delivers_every_committed_record() {
    if !bpf_available("kill_9_under_load_then_restart_delivers_every_committed_record") {
        return;
    }
    let _serial = serial();
    let (home, cred) = aws_home("AKIAOTLPKILL90000001");
    let receiver = Receiver::start(Protocol::HttpProtobuf, 0);
    let args = config_args(home.path(), DELIVERY_CONFIG);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_env(&args, "info", &otel_env(&receiver, false), None);
    let load = open_loop(&cred);
    std::thread::sleep(Duration::from_secs(6));
    let state = agent.kill9();
    stop_loop(load);
    let committed_first = db_record_ids(state.path());
    assert!(committed_first.len() > 500, "only {} records committed under load", committed_first.len());
    let db = open_db(state.path());
    let unclean: i64 = db.query_row("SELECT count(*) FROM runs WHERE clean = 0 AND stopped_ns IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(unclean, 1, "the killed run is open until the restart closes it");
    drop(db);
    let agent = Agent::start_env(&args, "info", &otel_env(&receiver, false), Some(state));
    cat(&cred);
    std::thread::sleep(Duration::from_secs(2));
    let (status, _records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let committed = db_record_ids(state.path());
    assert!(committed.is_superset(&committed_first), "records committed before the kill are gone from the database");
    // What the stop could not deliver in time goes on the next start.
    let agent = Agent::start_env(&args, "info", &otel_env(&receiver, false), Some(state));
    let dups = assert_all_delivered(&receiver, &committed, Duration::from_secs(90));
    let (_, _, _, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(dups <= 4 * 512, "{dups} duplicates after a kill: more than a few batches");
    let db = open_db(state.path());
    let runs: Vec<(i64, Option<i64>)> = db
        .prepare("SELECT clean, stopped_ns FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].0, 0, "the killed run is marked unclean");
    assert!(runs[0].1.is_some(), "and ends at its last commit");
    assert!(runs[1..].iter().all(|r| r.0 == 1));
}
