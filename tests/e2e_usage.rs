//! Usage records end to end: real probes, a credential file read by a real
//! program, then real TLS connections (Python's ssl, curl) to a local TLS
//! server with a server name; the agent's `nhi.usage` records (JSON lines)
//! and its database must tie them together:
//! - the same process reading the credential and connecting within seconds
//!   is one usage, `direct`, with the SNI as destination; its count is the
//!   sum of the accesses' `nhi.access.count` (de-dup folds included);
//! - a child of the reader connecting is `inferred`; an unrelated process
//!   connecting is not linked at all;
//! - the database's usage and destination rows say the same.
mod common;

use std::{
    path::PathBuf,
    process::Command,
    time::Duration,
};

use common::{net::*, *};
use nix::sys::signal::Signal;
use serde_json::Value;

fn curl_args(name: &str, port: u16) -> Vec<String> {
    vec![
        which("curl").to_string_lossy().into_owned(),
        "-sS".into(),
        "-k".into(),
        "--resolve".into(),
        format!("{name}:{port}:127.0.0.1"),
        format!("https://{name}:{port}/"),
    ]
}


/// The last `nhi.usage` record of a credential by Python (records are
/// cumulative). Filtered by consumer: another agent on the host (another
/// test run) may read the file too, which is a usage of its own.
fn last_usage<'a>(records: &'a [Value], key_id: &str) -> &'a Value {
    let exe = python_exe();
    named(records, "nhi.usage")
        .into_iter()
        .rfind(|r| str_attr(r, "nhi.id") == Some(key_id) && str_attr(r, "process.executable.path") == Some(exe.as_str()))
        .unwrap_or_else(|| panic!("no nhi.usage record for {key_id}"))
}

fn destinations(r: &Value) -> Vec<(String, String)> {
    let d = list_attr(r, "nhi.usage.destinations");
    let c = list_attr(r, "nhi.usage.destination_confidences");
    assert_eq!(d.len(), c.len(), "{r:#}");
    d.into_iter().zip(c).collect()
}


const CONFIG: &str = "[usage]\nflush_interval_secs = 1\n";

/// A home holding `key_id`, a TLS server on loopback, the agent watching.
struct Setup {
    cred: PathBuf,
    port: u16,
    agent: Agent,
    _home: tempfile::TempDir,
    _server: TlsServer,
}

fn setup(key_id: &str) -> Setup {
    let (home, cred) = aws_home(key_id);
    let server = TlsServer::start(&Certs::new(), "127.0.0.1:0".parse().unwrap(), None);
    let port = server.addr.port();
    let args = config_args(home.path(), CONFIG);
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    Setup { cred, port, agent, _home: home, _server: server }
}

#[test]
fn read_then_tls_connect_is_one_direct_usage_counting_every_access() {
    if !bpf_available("read_then_tls_connect_is_one_direct_usage_counting_every_access") {
        return;
    }
    let _serial = serial();
    let key_id = "AKIAUSAGEDIRECT00001";
    let Setup { cred, port, agent, _home, _server } = setup(key_id);
    // Two runs of one program: one workload, one usage. The first reads the
    // file 5 times in a row (folded by de-dup into counts).
    let p1 = read_then_connect(&cred, 5, port, "sts.usage.nhi.test", &[]);
    let p2 = read_then_connect(&cred, 1, port, "sts.usage.nhi.test", &[]);
    agent.wait_for_record(Duration::from_secs(20), |r| {
        str_attr(r, "event.name") == Some("nhi.usage")
            && str_attr(r, "nhi.id") == Some(key_id)
            && int_attr(r, "nhi.usage.connections") == Some(2)
    });
    let (status, records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    for pid in [p1, p2] {
        let conns = connections_of(&records, pid);
        assert!(conns.iter().any(|c| str_attr(c, "server.address") == Some("sts.usage.nhi.test")), "no connection record for {pid}");
    }
    let exe = python_exe();
    let accesses = access_count(&records, |r| {
        str_attr(r, "nhi.id") == Some(key_id) && str_attr(r, "process.executable.path") == Some(exe.as_str())
    });
    assert_eq!(accesses, 6, "every open, folded or not");
    let u = last_usage(&records, key_id);
    assert_eq!(int_attr(u, "nhi.usage.count"), Some(accesses), "usage counts add nhi.access.count: {u:#}");
    assert_eq!(int_attr(u, "nhi.usage.connections"), Some(2), "{u:#}");
    assert_eq!(str_attr(u, "nhi.usage.confidence"), Some("direct"));
    assert_eq!(destinations(u), [(format!("sts.usage.nhi.test:{port}"), "direct".to_owned())]);
    assert_eq!(str_attr(u, "server.address"), Some("sts.usage.nhi.test"));
    assert_eq!(int_attr(u, "server.port"), Some(i64::from(port)));
    assert_eq!(str_attr(u, "nhi.kind"), Some("aws.access_key"));
    assert_eq!(str_attr(u, "nhi.source"), Some("file"));
    assert_eq!(str_attr(u, "process.executable.path"), Some(python_exe().as_str()));
    assert!(u.get("process.pid").is_none(), "the consumer is the workload, not a pid: {u:#}");
    assert!(str_attr(u, "host.name").is_some() && str_attr(u, "nhi.usage.first_seen").is_some());
    let usages: Vec<&Value> = named(&records, "nhi.usage")
        .into_iter()
        .filter(|r| str_attr(r, "nhi.id") == Some(key_id) && str_attr(r, "process.executable.path") == Some(exe.as_str()))
        .collect();
    assert!(usages.iter().all(|r| str_attr(r, "nhi.usage.id") == str_attr(u, "nhi.usage.id")), "one usage across versions");

    // The database holds the same.
    let db = open_db(state.path());
    let (accesses_db, connections_db): (i64, i64) = db
        .query_row(
            "SELECT accesses, connections FROM usage WHERE nhi_id = ?1 AND json_extract(consumer, '$.\"process.executable.path\"') = ?2",
            [key_id, exe.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((accesses_db, connections_db), (6, 2));
    let dest: (String, i64, String, i64) = db
        .query_row(
            "SELECT server_address, server_port, confidence, d.connections FROM usage_destinations d JOIN usage u ON u.id = d.usage_id WHERE u.nhi_id = ?1 AND json_extract(u.consumer, '$.\"process.executable.path\"') = ?2",
            [key_id, exe.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(dest, ("sts.usage.nhi.test".to_owned(), i64::from(port), "direct".to_owned(), 2));
    let clean: i64 = db.query_row("SELECT clean FROM runs ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(clean, 1);
}

#[test]
fn child_connection_is_inferred_and_strangers_are_not_linked() {
    if !bpf_available("child_connection_is_inferred_and_strangers_are_not_linked") {
        return;
    }
    let _serial = serial();
    let key_id = "AKIAUSAGEINFERRED001";
    let Setup { cred, port, agent, _home, _server } = setup(key_id);
    // Python reads the key, makes no connection itself, runs curl.
    read_then_connect(&cred, 1, port, "-", &curl_args("child.usage.nhi.test", port));
    // A process that never read it (nor did its ancestors) connects too.
    let out = Command::new(which("curl")).args(&curl_args("stranger.usage.nhi.test", port)[1..]).output().unwrap();
    assert!(out.status.success());
    agent.wait_for_record(Duration::from_secs(20), |r| {
        str_attr(r, "event.name") == Some("nhi.usage") && str_attr(r, "nhi.id") == Some(key_id) && int_attr(r, "nhi.usage.connections") == Some(1)
    });
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    assert!(
        named(&records, "nhi.connection").iter().any(|c| str_attr(c, "server.address") == Some("stranger.usage.nhi.test")),
        "the stranger's connection was seen"
    );
    let u = last_usage(&records, key_id);
    assert_eq!(destinations(u), [(format!("child.usage.nhi.test:{port}"), "inferred".to_owned())], "{u:#}");
    assert_eq!(str_attr(u, "nhi.usage.confidence"), Some("inferred"));
    assert_eq!(int_attr(u, "nhi.usage.connections"), Some(1));
    assert_eq!(int_attr(u, "nhi.usage.count"), Some(1));
    // The consumer is the reader (python), not curl.
    assert_eq!(str_attr(u, "process.executable.path"), Some(python_exe().as_str()));
    let stats = final_stats(&records);
    assert!(int_attr(stats, "nhi.agent.connections.unlinked").is_some_and(|n| n >= 1), "{stats:#}");
}
