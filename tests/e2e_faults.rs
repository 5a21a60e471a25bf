//! Fault injection with real parts: the real agent as root with its real
//! probes, real SQLite files, real OTLP receivers on loopback, `kill -9`,
//! damaged database files, a second agent on the same state directory.
//! Each test asserts by record id (`nhi.record.id`) where records are
//! concerned: what the agent emitted anywhere is in its database, and what
//! it did not deliver is counted under a named reason.
mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Guards the state-directory lock: a second agent on the same directory
/// would record every event twice and mark the first one's run unclean.
#[test]
fn a_second_agent_on_the_same_state_dir_is_refused_naming_the_first() {
    if !bpf_available("a_second_agent_on_the_same_state_dir_is_refused_naming_the_first") {
        return;
    }
    let _serial = serial();
    let first = Agent::start(&[]);
    let dir = first.state_dir.path().to_owned();
    let other_jsonl = tempfile::tempdir().unwrap();
    let jsonl = other_jsonl.path().join("second.jsonl");
    let (status, stderr) = run_agent_to_end(
        &["run", "--state-dir", dir.to_str().unwrap(), "--jsonl", jsonl.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(75), "second agent: {status}; stderr:\n{stderr}");
    let pid = first.pid().to_string();
    assert!(
        stderr.lines().any(|l| l.contains("another nhi-observer") && l.contains(&format!("pid {pid}")) && l.contains("ERROR")),
        "the refusal names the first agent's pid {pid}: {stderr}"
    );
    assert!(!jsonl.exists(), "the second agent created its JSON lines output before refusing");
    let runs: i64 = first.db().query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 1, "the second agent wrote a run into the first one's database");
    let (status, _, stderr, state) = first.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "first agent: {status}; {stderr:?}");
    let clean: i64 = open_db(state.path()).query_row("SELECT clean FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(clean, 1, "the first agent's run ends clean");
}
