//! Fault injection with real parts: the real agent as root with its real
//! probes, real SQLite files, real OTLP receivers on loopback, `kill -9`,
//! damaged database files, a second agent on the same state directory.
//! Each test asserts by record id (`nhi.record.id`) where records are
//! concerned: what the agent emitted anywhere is in its database, and what
//! it did not deliver is counted under a named reason.
mod common;

use std::{collections::BTreeSet, path::Path, time::Duration};

use common::{
    otlp::{self, Protocol, Receiver},
    *,
};
use nix::sys::signal::Signal;

/// Record ids in a JSON lines file (records that carry one: all but the
/// agent's own stats).
fn jsonl_record_ids(path: &Path) -> BTreeSet<String> {
    read_jsonl(path).iter().filter_map(|r| str_attr(r, "nhi.record.id").map(str::to_owned)).collect()
}

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

/// Guards "JSON lines only after the store commit": before, the 64 KiB
/// JSON-lines buffer flushed on its own ahead of the commit, and a
/// `kill -9` left records in JSON lines that no database or OTLP receiver
/// ever had.
#[test]
fn kill_9_under_load_leaves_no_json_line_the_database_lacks() {
    if !bpf_available("kill_9_under_load_leaves_no_json_line_the_database_lacks") {
        return;
    }
    let _serial = serial();
    let (home, cred) = aws_home("AKIAFAULTKILL9000001");
    let args = config_args(home.path(), "dedup_interval_ms = 0\n[usage]\nflush_interval_secs = 1\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut in_jsonl = BTreeSet::new();
    let mut state = None;
    // Three kills, at different moments of the commit cycle.
    for pause_ms in [3000, 3130, 3270] {
        let agent = Agent::start_env(&args, "info", &[], state.take());
        let load = open_loop(&cred);
        std::thread::sleep(Duration::from_millis(pause_ms));
        let dir = agent.kill9();
        stop_loop(load);
        let jsonl = dir.path().join("out.jsonl");
        in_jsonl = jsonl_record_ids(&jsonl);
        let in_db = db_record_ids(dir.path());
        assert!(in_jsonl.len() > 300, "only {} records in JSON lines under load", in_jsonl.len());
        let missing: Vec<_> = in_jsonl.difference(&in_db).collect();
        assert!(missing.is_empty(), "{} records in JSON lines are not in the database, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
        state = Some(dir);
    }
    assert!(!in_jsonl.is_empty());
}

/// Guards delivery past a record the collector refuses for good: before,
/// the batch shrank to that record and it was retried every 30 s forever,
/// holding back every record after it.
fn refused_record_is_set_aside_and_delivery_goes_on(protocol: Protocol, bad: &str, good: &str) {
    let _serial = serial();
    let (bad_home, bad_cred) = aws_home(bad);
    let (_good_home, good_cred) = aws_home(good);
    let receiver = Receiver::start(protocol, 0);
    receiver.refuse(bad);
    let args = config_args(bad_home.path(), "[usage]\nflush_interval_secs = 1\n[otlp]\nmax_backoff_secs = 2\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::start_env(&args, "info", &otlp::otel_env(&receiver, false), None);
    let cat = which("cat");
    let read = |p: &Path| assert!(std::process::Command::new(&cat).arg(p).stdout(std::process::Stdio::null()).status().unwrap().success());
    read(&good_cred);
    read(&bad_cred);
    read(&good_cred);
    agent.wait_for_log("refused a record for good", Duration::from_secs(30));
    // After the refusal: the next good record still arrives.
    read(&bad_cred);
    read(&good_cred);
    let has = |logs: &[otlp::LogView], key: &str, n: usize| {
        logs.iter().filter(|l| l.event_name == "nhi.credential.access" && l.str("nhi.id") == Some(key)).count() >= n
    };
    let logs = receiver.wait_logs(Duration::from_secs(30), |logs| has(logs, good, 3));
    assert!(has(&logs, good, 3), "good records held back behind the refused one: {} received", logs.len());
    let rejected_metric = || {
        receiver
            .metric("nhi.export.rejected")
            .iter()
            .filter(|(a, _)| a.get("nhi.export.reason").and_then(|v| v.as_str()).is_some_and(|r| r == "grpc_invalid_argument" || r == "http_400"))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rejected_metric() < 2.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rejected_metric() >= 2.0, "nhi.export.rejected by reason: {:?}", receiver.metric("nhi.export.rejected"));
    // Everything stored is delivered by now, except what was refused.
    std::thread::sleep(Duration::from_secs(2));
    let (status, _records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let received: BTreeSet<String> =
        receiver.logs().iter().filter_map(|l| l.str("nhi.record.id").map(str::to_owned)).collect();
    let db = open_db(state.path());
    let rejected: Vec<(String, String)> = db
        .prepare("SELECT body, reason FROM rejected")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rejected_ids = BTreeSet::new();
    for (body, reason) in &rejected {
        assert!(body.contains(bad), "a record without the refused marker was set aside: {body}");
        assert!(reason == "grpc_invalid_argument" || reason == "http_400", "reason {reason}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        rejected_ids.insert(v["nhi.record.id"].as_str().unwrap().to_owned());
    }
    assert!(rejected_ids.len() >= 2, "both reads of the refused credential set aside: {rejected:?}");
    for id in &rejected_ids {
        let logged = stderr.iter().filter(|l| l.contains("refused a record for good") && l.contains(&format!("\"record_id\":\"{id}\""))).count();
        assert_eq!(logged, 1, "record {id} logged {logged} times");
    }
    assert!(received.is_disjoint(&rejected_ids), "a refused record was also received");
    // Every stored record either reached the receiver or is set aside.
    let stored = db_record_ids(state.path());
    let unaccounted: Vec<_> = stored.iter().filter(|id| !received.contains(*id) && !rejected_ids.contains(*id)).collect();
    assert!(unaccounted.is_empty(), "{} stored records neither delivered nor set aside: {unaccounted:?}", unaccounted.len());
}

#[test]
fn grpc_invalid_argument_sets_the_record_aside_and_delivery_goes_on() {
    if !bpf_available("grpc_invalid_argument_sets_the_record_aside_and_delivery_goes_on") {
        return;
    }
    refused_record_is_set_aside_and_delivery_goes_on(Protocol::Grpc, "AKIAFAULTREJECTGRPC1", "AKIAFAULTGOODGRPC001");
}

#[test]
fn http_400_sets_the_record_aside_and_delivery_goes_on() {
    if !bpf_available("http_400_sets_the_record_aside_and_delivery_goes_on") {
        return;
    }
    refused_record_is_set_aside_and_delivery_goes_on(Protocol::HttpProtobuf, "AKIAFAULTREJECTHTTP1", "AKIAFAULTGOODHTTP001");
}

/// Starts an agent under load, stops it, damages its database with
/// `damage`, starts again: the damage is reported, the file kept aside,
/// and new records flow into a new database.
fn damaged_database_is_set_aside_and_records_flow(key: &str, damage: impl Fn(&Path)) {
    let _serial = serial();
    let (home, cred) = aws_home(key);
    let args = config_args(home.path(), "dedup_interval_ms = 0\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_env(&args, "info", &[], None);
    let load = open_loop(&cred);
    std::thread::sleep(Duration::from_secs(3));
    stop_loop(load);
    let (status, _, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let db = state.path().join("nhi-observer.db");
    let before = db_record_ids(state.path());
    assert!(before.len() > 300, "a database of some size: {} records", before.len());
    damage(&db);
    let mut agent = Agent::start_env(&args, "info", &[], Some(state));
    agent.wait_for_log("the database is damaged", Duration::from_secs(5));
    assert!(agent.log_lines().iter().any(|l| l.contains("the database is damaged") && l.contains("ERROR")));
    let cat = which("cat");
    assert!(std::process::Command::new(&cat).arg(&cred).stdout(std::process::Stdio::null()).status().unwrap().success());
    let is_cat_read = |r: &serde_json::Value| {
        str_attr(r, "nhi.id") == Some(key) && str_attr(r, "process.executable.path") == cat.to_str()
    };
    let records = agent.wait_for_record(Duration::from_secs(20), is_cat_read);
    let id = records.iter().rfind(|r| is_cat_read(r)).and_then(|r| str_attr(r, "nhi.record.id")).expect("a record after the restart").to_owned();
    let (status, _, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let after = db_record_ids(state.path());
    assert!(after.contains(&id), "the new record {id} is in the new database");
    assert!(after.is_disjoint(&before), "the new database starts empty");
    let kept: Vec<_> = files_under(state.path())
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("nhi-observer.db.damaged-") && !n.ends_with("-wal") && !n.ends_with("-shm")))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged database is kept aside once: {kept:?}");
    let gap: String = open_db(state.path()).query_row("SELECT detail FROM gaps WHERE kind = 'database_replaced'", [], |r| r.get(0)).unwrap();
    assert!(gap.contains("damaged-"), "the gap names where the old database went: {gap}");
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Guards the integrity check: 8 KiB of random bytes in the middle of the
/// database went unnoticed and stopped OTLP delivery for good.
#[test]
fn random_bytes_mid_database_are_noticed_at_start() {
    if !bpf_available("random_bytes_mid_database_are_noticed_at_start") {
        return;
    }
    damaged_database_is_set_aside_and_records_flow("AKIAFAULTDAMAGEMID01", |db| {
        let mut junk = vec![0u8; 8192];
        getrandom_fill(&mut junk);
        let size = std::fs::metadata(db).unwrap().len();
        overwrite(db, size / 2 / 4096 * 4096, &junk);
    });
}

/// Guards "file is not a database": an overwritten header made the agent
/// exit 1 at every start.
#[test]
fn an_overwritten_database_header_is_noticed_at_start() {
    if !bpf_available("an_overwritten_database_header_is_noticed_at_start") {
        return;
    }
    damaged_database_is_set_aside_and_records_flow("AKIAFAULTDAMAGEHEAD1", |db| overwrite(db, 0, &[0x5a; 100]));
}

/// Random bytes from the kernel (no extra dependency for the tests).
fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(buf).unwrap();
}
