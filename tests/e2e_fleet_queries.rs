//! The fleet queries (deploy/queries/*.sql) on a real ClickHouse engine
//! (chdb, embedded) with the clickhouse exporter's `otel_logs` table
//! (deploy/queries/otel_logs.sql), filled with what two real agents sent
//! to a test OTLP receiver: each agent plays one host (its
//! `OTEL_RESOURCE_ATTRIBUTES` names it, as the DaemonSet does with the
//! node name), the same credential is read on both by a process that then
//! opens TLS connections, a new destination appearing only on the second
//! host. Rows are made from the OTLP log records as the exporter makes
//! them: attributes into Map(String, String) (strings as they are, numbers
//! and booleans as text, arrays as JSON), the event name into EventName,
//! resource attributes into ResourceAttributes, service.name into
//! ServiceName. Each query is asserted on the answers the test knows.
//!
//! `unused_fleet` is asserted on the agents' own `nhi.coverage` records:
//! over host B's inner window B's own credential is `unused`, A's (whose
//! agent had stopped) `not_watched`. `shadow_fleet` on the agents' own
//! `nhi.finding` records (an inventory that declares another key, findings
//! evaluated every second): the shared credential is shadow on both hosts.
//! The verdict `too_new`, coverage gaps and a resolved shadow finding are
//! asserted on records written by hand to the agreed contract
//! (`findings_queries_on_contract_records`).
mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime},
};

use common::{
    deploy::{run_ok, venv_available, venv_bin},
    net::{Certs, TlsServer},
    otlp::{LogView, Protocol, Receiver, otel_env},
    *,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A process that reads the credentials file, then opens a TLS connection
/// to the loopback server for each server name given.
const READ_THEN_CONNECT: &str = r#"
import socket, ssl, sys
with open(sys.argv[1]) as f:
    f.read()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for name in sys.argv[3:]:
    with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            t.recv(64)
"#;

/// One host: an agent exporting to `rx` as `host`. A process reads `own`
/// (a credential only this host has) and nothing else; a second later
/// (the host's inner window starts) another reads `cred` and connects to
/// `names`. Waits until that usage record, with every destination, is
/// delivered; stops the agent and waits for its closing `nhi.coverage`.
/// Returns the inner window.
fn run_host(
    rx: &Receiver,
    host: &str,
    own: &std::path::Path,
    (cred, key_id): (&std::path::Path, &str),
    port: u16,
    names: &[&str],
) -> (SystemTime, SystemTime) {
    let dir = tempfile::tempdir().expect("config dir");
    let config = config_args(dir.path(), "[usage]\nflush_interval_secs = 1\n[findings]\ninterval = \"1s\"\n");
    // An inventory that declares another key: every credential the test
    // uses is then shadow (used, never declared).
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, "credentials:\n  - id: AKIAIOSFODNN7EXAMPLE\n").expect("inventory");
    let mut env = otel_env(rx, false);
    env.push(("OTEL_RESOURCE_ATTRIBUTES".into(), format!("host.name={host}")));
    let mut args: Vec<&str> = config.iter().map(String::as_str).collect();
    args.extend(["--inventory", inventory.to_str().expect("path")]);
    let agent = Agent::start_env(&args, "info", &env, None);
    python("import sys\nwith open(sys.argv[1]) as f:\n    f.read()\n", &[own.to_str().expect("path")]);
    std::thread::sleep(Duration::from_secs(1));
    let inner_start = SystemTime::now();
    std::thread::sleep(Duration::from_millis(100));
    let port_s = port.to_string();
    let mut pargs = vec![cred.to_str().expect("path"), port_s.as_str()];
    pargs.extend(names);
    python(READ_THEN_CONNECT, &pargs);
    let done = |logs: &[LogView]| {
        logs.iter().any(|l| {
            l.event_name == "nhi.usage"
                && l.resource.get("host.name").and_then(Value::as_str) == Some(host)
                && l.str("nhi.id") == Some(key_id)
                && names.iter().all(|n| {
                    l.attributes
                        .get("nhi.usage.destinations")
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|x| x.as_str() == Some(&format!("{n}:{port}"))))
                })
        })
    };
    let logs = rx.wait_logs(Duration::from_secs(30), done);
    assert!(done(&logs), "{host}: no nhi.usage of {key_id} with {names:?} delivered");
    let shadow = |logs: &[LogView]| {
        logs.iter().any(|l| {
            l.event_name == "nhi.finding"
                && l.resource.get("host.name").and_then(Value::as_str) == Some(host)
                && l.str("nhi.finding.type") == Some("shadow")
                && l.str("nhi.id") == Some(key_id)
        })
    };
    assert!(shadow(&rx.wait_logs(Duration::from_secs(30), shadow)), "{host}: no shadow finding for {key_id} delivered");
    let inner_end = SystemTime::now();
    std::thread::sleep(Duration::from_millis(100));
    let (status, _, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let coverage = |logs: &[LogView]| {
        logs.iter().any(|l| l.event_name == "nhi.coverage" && l.resource.get("host.name").and_then(Value::as_str) == Some(host))
    };
    assert!(coverage(&rx.wait_logs(Duration::from_secs(15), coverage)), "{host}: no nhi.coverage delivered");
    (inner_start, inner_end)
}

/// An attribute as the clickhouse exporter writes it into a
/// Map(String, String) (pcommon `Value.AsString`).
fn as_map_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

fn map(attrs: &std::collections::BTreeMap<String, Value>) -> Value {
    Value::Object(attrs.iter().map(|(k, v)| (k.clone(), Value::String(as_map_string(v)))).collect())
}

/// A DateTime64(9) literal, UTC.
fn ch_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    ch_time_nanos(u64::try_from(d.as_nanos()).expect("nanos"))
}

fn ch_time_nanos(nanos: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).expect("time");
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// The exporter's row for one OTLP log record.
fn row(l: &LogView) -> Value {
    json!({
        "Timestamp": ch_time_nanos(l.time_unix_nano),
        "ServiceName": l.resource.get("service.name").map(as_map_string).unwrap_or_default(),
        "ResourceAttributes": map(&l.resource),
        "ScopeName": l.scope,
        "ScopeVersion": "",
        "LogAttributes": map(&l.attributes),
        "EventName": l.event_name,
        "SeverityText": "",
        "SeverityNumber": 0,
        "Body": "",
    })
}

fn queries(rows: &[Value], specs: &Value) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows_file = dir.path().join("rows.jsonl");
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&rows_file, text).expect("rows");
    let out = run_ok(
        Command::new(venv_bin("python"))
            .arg(repo().join("tests/deploy/chdb_queries.py"))
            .arg(repo().join("deploy/queries/otel_logs.sql"))
            .arg(&rows_file)
            .arg(specs.to_string())
            .env("TZ", "UTC"),
    );
    serde_json::from_str(&out).expect("query results JSON")
}

fn spec(name: &str, file: &str, params: Value) -> Value {
    json!({ "name": name, "file": repo().join("deploy/queries").join(file), "params": params })
}

fn rows_of<'a>(results: &'a Value, name: &str, key_id: &str) -> Vec<&'a Value> {
    results[name].as_array().unwrap_or_else(|| panic!("no result {name}")).iter().filter(|r| r["nhi_id"] == key_id).collect()
}

#[test]
fn fleet_queries_answer_from_what_real_agents_exported() {
    let test = "fleet_queries_answer_from_what_real_agents_exported";
    if !bpf_available(test) || !venv_available(test, "python") {
        return;
    }
    let _serial = serial();
    let u = unique("fleet");
    let digits: String = u.bytes().filter(u8::is_ascii_digit).take(16).map(char::from).collect();
    let key_id = format!("AKIA{digits:0>16}");
    let (home, cred) = aws_home(&key_id);
    // A credential only host A holds (its file exists while A runs), one
    // only host B holds (made after A stopped: both "hosts" are this
    // machine, and an agent's start-up scan finds every credential file).
    let (key_a, key_b) = (format!("AKIAA{digits:0>15}"), format!("AKIAB{digits:0>15}"));
    let (home_a, cred_a) = aws_home(&key_a);
    let certs = Certs::new();
    let server = TlsServer::start(&certs, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), None);
    let tag = u.replace('-', "");
    let (s1, s2) = (format!("old-{tag}.nhi.test"), format!("new-{tag}.nhi.test"));
    let (host_a, host_b) = (format!("fleet-a-{tag}"), format!("fleet-b-{tag}"));
    let rx = Receiver::start(Protocol::HttpProtobuf, 0);

    let before = SystemTime::now();
    run_host(&rx, &host_a, &cred_a, (&cred, &key_id), server.addr.port(), &[&s1]);
    drop(home_a);
    let (home_b, cred_b) = aws_home(&key_b);
    // The window starts between the two hosts' uses.
    std::thread::sleep(Duration::from_millis(50));
    let window_start = SystemTime::now();
    std::thread::sleep(Duration::from_millis(50));
    let (inner_start, inner_end) = run_host(&rx, &host_b, &cred_b, (&cred, &key_id), server.addr.port(), &[&s1, &s2]);
    let window_end = SystemTime::now() + Duration::from_secs(60);
    drop((home, home_b));

    let logs = rx.logs();
    let rows: Vec<Value> = logs.iter().map(row).collect();
    let (all_from, win_from, to) = (ch_time(before - Duration::from_secs(1)), ch_time(window_start), ch_time(window_end));
    let specs = json!([
        spec("last_use", "last_use_per_host.sql", json!({})),
        spec("sprawl_all", "sprawl.sql", json!({"window_start": all_from, "window_end": to, "min_hosts": 2, "min_workloads": 1000})),
        // (Other agents on the machine read the file too: more workloads than
        // the test makes, so the bar here is the host count.)
        spec("sprawl_window", "sprawl.sql", json!({"window_start": win_from, "window_end": to, "min_hosts": 2, "min_workloads": 1000})),
        spec("new_dest_window", "new_destinations.sql", json!({"window_start": win_from, "window_end": to})),
        spec("new_dest_all", "new_destinations.sql", json!({"window_start": all_from, "window_end": to})),
        spec("shadow", "shadow_fleet.sql", json!({})),
        spec("unused", "unused_fleet.sql", json!({"window_start": all_from, "window_end": to})),
        // Host B's inner window: B watched all of it, A none of it.
        spec("unused_b", "unused_fleet.sql", json!({"window_start": ch_time(inner_start), "window_end": ch_time(inner_end)})),
    ]);
    let r = queries(&rows, &specs);
    assert_eq!(r["_rows"].as_u64(), Some(rows.len() as u64), "every row loaded");

    // Last use per host: both hosts, host B's inside the window, A's before.
    let last = rows_of(&r, "last_use", &key_id);
    let hosts: Vec<&str> = last.iter().map(|x| x["host"].as_str().expect("host")).collect();
    assert_eq!(hosts, [host_a.as_str(), host_b.as_str()], "{last:#?}");
    let when = |x: &Value| x["last_use"].as_str().expect("last_use").to_owned();
    assert!(when(last[0]) < win_from && when(last[1]) > win_from, "{last:#?} around {win_from}");
    // (Other agents on this machine read the file too: their reads are
    // uses by another workload, so the last workload is not asserted.)
    let python = run_ok(Command::new("python3").args(["-I", "-S", "-c", "import os, sys; print(os.path.realpath(sys.executable))"]));
    let workload = format!("exe:{} uid:0", python.trim());

    // Sprawl: two hosts over both runs; one inside the window (below the bar).
    let sprawl = rows_of(&r, "sprawl_all", &key_id);
    assert_eq!(sprawl.len(), 1, "{:#?}", r["sprawl_all"]);
    assert_eq!(sprawl[0]["hosts"], 2);
    assert_eq!(sprawl[0]["host_list"], json!([host_a, host_b]));
    let workloads = sprawl[0]["workload_list"].as_array().expect("workload_list");
    assert!(workloads.iter().any(|w| w == workload.as_str()), "{workload} not in {workloads:?}");
    assert!(rows_of(&r, "sprawl_window", &key_id).is_empty(), "{:#?}", r["sprawl_window"]);

    // New destinations: only the second host's new server inside the
    // window; both over the whole run.
    let port = server.addr.port();
    // (Only the test's own servers: other agents on this machine that read
    // the file and then export to their own receivers add destinations.)
    let dests = |name: &str| -> Vec<String> {
        rows_of(&r, name, &key_id)
            .iter()
            .map(|x| x["destination"].as_str().expect("destination").to_owned())
            .filter(|d| d.contains(".nhi.test:"))
            .collect()
    };
    assert_eq!(dests("new_dest_window"), [format!("{s2}:{port}")], "{:#?}", r["new_dest_window"]);
    let mut all = dests("new_dest_all");
    all.sort();
    let mut want = vec![format!("{s1}:{port}"), format!("{s2}:{port}")];
    want.sort();
    assert_eq!(all, want);
    let new_row = *rows_of(&r, "new_dest_window", &key_id)
        .iter()
        .find(|x| x["destination"].as_str().is_some_and(|d| d.starts_with(&s2)))
        .expect("the new destination");
    assert_eq!(new_row["first_host"], host_b.as_str());

    // Unused, from the agents' own nhi.coverage records: over B's inner
    // window, B's own credential (read just before it) is unused - B was
    // watched throughout; A's is not watched (A's agent had stopped), never
    // unused; the shared one was used in it.
    let verdict = |name: &str, id: &str| rows_of(&r, name, id).first().map(|x| x["verdict"].as_str().unwrap_or("").to_owned());
    assert_eq!(verdict("unused_b", &key_b).as_deref(), Some("unused"), "{:#?}", r["unused_b"]);
    let b = rows_of(&r, "unused_b", &key_b)[0];
    assert_eq!((b["hosts_known"].as_u64(), b["hosts_watched"].as_u64()), (Some(1), Some(1)));
    assert_eq!(verdict("unused_b", &key_a).as_deref(), Some("not_watched"), "{:#?}", r["unused_b"]);
    assert_eq!(rows_of(&r, "unused_b", &key_a)[0]["hosts_not_watched"], json!([host_a]));
    assert!(rows_of(&r, "unused_b", &key_id).is_empty(), "used in the window, not a candidate");
    // Over the whole run no host was watched throughout (the agents ran
    // seconds each): nothing is unused.
    let unused = r["unused"].as_array().expect("unused");
    assert!(unused.iter().all(|x| x["verdict"] != "unused"), "unused without full coverage: {unused:#?}");
    // Shadow: the shared credential, never declared, open on both hosts.
    let shadow = rows_of(&r, "shadow", &key_id);
    assert_eq!(shadow.len(), 1, "{:#?}", r["shadow"]);
    assert_eq!(shadow[0]["hosts"].as_u64(), Some(2));
    assert_eq!(shadow[0]["host_list"], json!([host_a, host_b]));
}

/// A row as the exporter would write an agent's record of the findings
/// contract (`nhi.finding`, `nhi.coverage`; helpers' brief), on `host`.
fn contract_row(time: &str, host: &str, event: &str, attrs: &[(&str, &str)]) -> Value {
    let attrs: serde_json::Map<String, Value> = attrs.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    json!({
        "Timestamp": time,
        "ServiceName": "nhi-observer",
        "ResourceAttributes": { "host.name": host, "service.name": "nhi-observer" },
        "ScopeName": "nhi-observer",
        "ScopeVersion": "",
        "LogAttributes": attrs,
        "EventName": event,
        "SeverityText": "",
        "SeverityNumber": 0,
        "Body": "",
    })
}

/// The queries that wait for the findings records, on records written by
/// hand to the agreed contract (the agent does not emit them yet), with
/// known answers: "not watched" is not "unused", a credential newer than
/// the window is too new, a resolved shadow finding is not listed.
#[test]
fn findings_queries_on_contract_records() {
    if !venv_available("findings_queries_on_contract_records", "python") {
        return;
    }
    let cov = |host: &str, s: &str, e: &str, lost: &str| {
        contract_row(e, host, "nhi.coverage", &[
            ("nhi.coverage.start", s),
            ("nhi.coverage.end", e),
            ("nhi.coverage.tracked_since", "2026-10-01T00:00:00Z"),
            ("nhi.coverage.events_lost", lost),
            ("nhi.agent.state", "up"),
        ])
    };
    let access = |time: &str, host: &str, id: &str| {
        contract_row(time, host, "nhi.credential.access", &[
            ("nhi.id", id),
            ("nhi.kind", "aws.access_key"),
            ("process.executable.path", "/usr/bin/app"),
            ("process.user.id", "0"),
        ])
    };
    let finding = |time: &str, host: &str, id: &str, ty: &str, state: &str, exe: &str| {
        contract_row(time, host, "nhi.finding", &[
            ("nhi.finding.id", &format!("{ty}-{id}-{exe}")),
            ("nhi.finding.type", ty),
            ("nhi.finding.state", state),
            ("nhi.finding.severity", "medium"),
            ("nhi.finding.reason", "contract fixture"),
            ("nhi.id", id),
            ("nhi.kind", "aws.access_key"),
            ("nhi.finding.first_seen", "2026-11-02T00:00:00Z"),
            ("nhi.finding.last_seen", "2026-11-03T00:00:00Z"),
            ("nhi.finding.count", "4"),
            ("process.executable.path", exe),
            ("process.user.id", "0"),
        ])
    };
    let rows = vec![
        // h1 and h3 watched the whole window (h1 twice the same interval:
        // a record delivered again); h2 only its first three days.
        cov("h1", "2026-10-31T00:00:00Z", "2026-11-04T00:00:00Z", "3"),
        cov("h1", "2026-10-31T00:00:00Z", "2026-11-04T00:00:00Z", "3"),
        cov("h1", "2026-11-04T00:00:00Z", "2026-11-09T00:00:00Z", "0"),
        cov("h2", "2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z", "0"),
        cov("h3", "2026-10-20T00:00:00Z", "2026-11-10T00:00:00Z", "1"),
        // Seen before the window, not used in it.
        access("2026-10-25 00:00:00", "h1", "AKIAUNUSEDEVERYWHERE"),
        access("2026-10-26 00:00:00", "h3", "AKIAUNUSEDEVERYWHERE"),
        access("2026-10-25 00:00:00", "h1", "AKIANOTWATCHEDONH2XX"),
        access("2026-10-25 00:00:00", "h2", "AKIANOTWATCHEDONH2XX"),
        // Used in the window: not a candidate.
        access("2026-10-25 00:00:00", "h1", "AKIAUSEDINTHEWINDOWX"),
        access("2026-11-05 00:00:00", "h3", "AKIAUSEDINTHEWINDOWX"),
        // First known inside the window (an `unused` finding names it).
        finding("2026-11-02 00:00:00", "h3", "AKIANEWERTHANWINDOWX", "unused", "open", "/usr/bin/app"),
        // Shadow: resolved on h1; open on h2 and h3 for another key.
        finding("2026-11-02 00:00:00", "h1", "AKIASHADOWRESOLVEDXX", "shadow", "open", "/usr/bin/a"),
        finding("2026-11-03 00:00:00", "h1", "AKIASHADOWRESOLVEDXX", "shadow", "resolved", "/usr/bin/a"),
        finding("2026-11-02 00:00:00", "h2", "AKIASHADOWOPENXXXXXX", "shadow", "open", "/usr/bin/b"),
        finding("2026-11-02 00:00:00", "h3", "AKIASHADOWOPENXXXXXX", "shadow", "open", "/usr/bin/c"),
    ];
    let window = json!({"window_start": "2026-11-01 00:00:00", "window_end": "2026-11-08 00:00:00"});
    let r = queries(&rows, &json!([spec("unused", "unused_fleet.sql", window), spec("shadow", "shadow_fleet.sql", json!({}))]));
    let verdicts: Vec<(String, String)> = r["unused"]
        .as_array()
        .expect("unused")
        .iter()
        .map(|x| (x["nhi_id"].as_str().expect("id").to_owned(), x["verdict"].as_str().expect("verdict").to_owned()))
        .collect();
    let want: Vec<(String, String)> = [
        ("AKIANOTWATCHEDONH2XX", "not_watched"),
        ("AKIASHADOWOPENXXXXXX", "too_new"),
        ("AKIASHADOWRESOLVEDXX", "too_new"),
        ("AKIANEWERTHANWINDOWX", "too_new"),
        ("AKIAUNUSEDEVERYWHERE", "unused"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    let mut got_sorted = verdicts.clone();
    got_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted, "{:#?}", r["unused"]);
    let row = |id: &str| r["unused"].as_array().unwrap().iter().find(|x| x["nhi_id"] == id).unwrap().clone();
    let unused = row("AKIAUNUSEDEVERYWHERE");
    assert_eq!((unused["hosts_known"].as_u64(), unused["hosts_watched"].as_u64()), (Some(2), Some(2)));
    assert_eq!(unused["events_lost"].as_u64(), Some(4), "h1's 3 (counted once) and h3's 1");
    let gap = row("AKIANOTWATCHEDONH2XX");
    assert_eq!(gap["hosts_not_watched"], json!(["h2"]));

    let shadow = r["shadow"].as_array().expect("shadow");
    assert_eq!(shadow.len(), 1, "{shadow:#?}");
    assert_eq!(shadow[0]["nhi_id"], "AKIASHADOWOPENXXXXXX");
    assert_eq!(shadow[0]["hosts"].as_u64(), Some(2));
    assert_eq!(shadow[0]["host_list"], json!(["h2", "h3"]));
    assert_eq!(shadow[0]["workloads"], json!(["exe:/usr/bin/b uid:0", "exe:/usr/bin/c uid:0"]));
    assert_eq!(shadow[0]["uses"].as_u64(), Some(8));
}
