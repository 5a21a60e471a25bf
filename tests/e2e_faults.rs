//! Fault injection with real parts: the real agent as root with its real
//! probes, real SQLite files, real OTLP receivers on loopback, `kill -9`,
//! damaged database files, a second agent on the same state directory.
//! Each test asserts by record id (`nhi.record.id`) where records are
//! concerned: what the agent emitted anywhere is in its database, and what
//! it did not deliver is counted under a named reason.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

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
        // Under way (a busy host can make the agent lag at first).
        agent.wait_for_record(Duration::from_secs(30), |r| str_attr(r, "nhi.id") == Some("AKIAFAULTKILL9000001"));
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

/// Per consumer (executable, uid): the accesses of `key` in the committed
/// access records (their `nhi.access.count`), and in the `usage` totals.
fn committed_accesses_and_usage_totals(state_dir: &Path, key: &str) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let db = open_db(state_dir);
    let consumer = |v: &serde_json::Value| format!("{}|{}", v["process.executable.path"], v["process.user.id"]);
    let mut accesses = BTreeMap::new();
    let mut stmt = db.prepare("SELECT body FROM records WHERE event_name = 'nhi.credential.access' AND nhi_id = ?1").unwrap();
    for body in stmt.query_map([key], |r| r.get::<_, String>(0)).unwrap() {
        let v: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
        *accesses.entry(consumer(&v)).or_insert(0) += v["nhi.access.count"].as_i64().unwrap_or(1);
    }
    let mut totals = BTreeMap::new();
    let mut stmt = db.prepare("SELECT consumer, accesses FROM usage WHERE nhi_id = ?1").unwrap();
    for row in stmt.query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
        let (c, n) = row.unwrap();
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        *totals.entry(consumer(&v)).or_insert(0) += n;
    }
    (accesses, totals)
}

/// Guards the usage totals after a crash: usage deltas wait in memory up to
/// `flush_interval_secs`, so after `kill -9` under load the committed
/// access records outnumbered the `usage` totals, for good. The restart
/// recounts them from the committed records.
#[test]
fn kill_9_under_load_then_restart_usage_totals_equal_the_committed_accesses() {
    if !bpf_available("kill_9_under_load_then_restart_usage_totals_equal_the_committed_accesses") {
        return;
    }
    let _serial = serial();
    let key = "AKIAFAULTRECOUNT0001";
    let (home, cred) = aws_home(key);
    let args = config_args(home.path(), "dedup_interval_ms = 0\n[usage]\nflush_interval_secs = 2\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_env(&args, "info", &[], None);
    let load = open_loop(&cred);
    agent.wait_for_record(Duration::from_secs(30), |r| str_attr(r, "nhi.id") == Some(key));
    // A flush or two done, the next one's accesses in memory.
    std::thread::sleep(Duration::from_millis(3300));
    let state = agent.kill9();
    stop_loop(load);
    // The load's consumer only: other agents on this host (their scans)
    // read the credential too, after the crash as well.
    let python = |m: BTreeMap<String, i64>| -> BTreeMap<String, i64> { m.into_iter().filter(|(c, _)| c.contains("python")).collect() };
    let (committed, totals) = committed_accesses_and_usage_totals(state.path(), key);
    let (committed, totals) = (python(committed), python(totals));
    let sum = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
    assert!(sum(&committed) > 100, "load committed: {committed:?}");
    assert!(sum(&totals) < sum(&committed), "the crash left accesses out of the totals (the case under test): {totals:?} < {committed:?}");

    let mut agent = Agent::start_env(&args, "info", &[], Some(state));
    agent.wait_for_log("usage totals recounted", Duration::from_secs(30));
    let is_load_usage = |r: &serde_json::Value| {
        str_attr(r, "event.name") == Some("nhi.usage")
            && str_attr(r, "nhi.id") == Some(key)
            && str_attr(r, "process.executable.path").is_some_and(|p| p.contains("python"))
    };
    let total = sum(&committed);
    agent.wait_for_record(Duration::from_secs(20), |r| is_load_usage(r) && int_attr(r, "nhi.usage.count") == Some(total));
    let (status, records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let (all_committed, all_totals) = committed_accesses_and_usage_totals(state.path(), key);
    assert_eq!(all_totals, all_committed, "usage totals per consumer equal the committed accesses (the load's and any other's)");
    let (committed_after, totals_after) = (python(all_committed), python(all_totals));
    assert_eq!(committed_after, committed, "no access by the load after the crash");
    assert_eq!(totals_after, committed_after);
    let last = records.iter().filter(|r| is_load_usage(r)).filter_map(|r| int_attr(r, "nhi.usage.count")).next_back();
    assert_eq!(last, Some(total), "the last nhi.usage record of the load says the recounted total");
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

/// A small tmpfs mounted on a fresh temporary directory (root only),
/// unmounted on drop.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        nix::mount::mount(Some("tmpfs"), &path, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(format!("size={size},mode=0700").as_str()))
            .unwrap_or_else(|e| panic!("mount a {size} tmpfs on {}: {e}", path.display()));
        SmallDisk { dir: Some(dir), path }
    }

    /// Fills what is left with a ballast file, but for `leave` bytes.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        let st = nix::sys::statvfs::statvfs(&self.path).unwrap();
        let free = st.blocks_available() * st.fragment_size();
        let ballast = self.path.join(format!("ballast-{free}"));
        // The agent writes meanwhile (other tests' agents' loads are real
        // accesses too): a ballast cut short by a full disk is still full.
        match std::fs::write(&ballast, vec![0u8; free.saturating_sub(leave) as usize]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {}
            Err(e) => panic!("ballast {}: {e}", ballast.display()),
        }
        ballast
    }

    /// The state directory for an agent (kept: the tmpfs is the disk).
    fn state(&mut self) -> tempfile::TempDir {
        self.dir.take().expect("state dir taken once")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A field of the agent's last "stopped" log line (JSON log format).
fn stop_field(stderr: &[String], field: &str) -> serde_json::Value {
    let line = stderr.iter().rfind(|l| l.contains("stopped; probes detached")).expect("no stop line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["fields"][field].clone()
}

/// Guards the full state disk: the database used to stop while JSON lines
/// went on, records were counted stored that were not, the WAL refilled the
/// disk, the second outage and the recovery went unlogged, and a restart
/// on the full disk exited 1 (the host unwatched).
#[test]
fn a_full_state_disk_loses_nothing_silently_and_recovers() {
    if !bpf_available("a_full_state_disk_loses_nothing_silently_and_recovers") {
        return;
    }
    let _serial = serial();
    // The state disk: its empty database and WAL take about 1 MiB (16 KiB
    // pages, a WAL kept at 512 KiB), the rest is what fills.
    let mut disk = SmallDisk::mount("4m");
    // JSON lines on a small disk of their own (the agent follows the link).
    let mut out_disk = SmallDisk::mount("1m");
    let out_dir = out_disk.state();
    let state = disk.state();
    std::os::unix::fs::symlink(out_dir.path().join("out.jsonl"), state.path().join("out.jsonl")).unwrap();
    let (home, cred) = aws_home("AKIAFAULTFULLDISK001");
    let args = config_args(home.path(), "dedup_interval_ms = 0\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::start_env(&args, "info", &[], Some(state));
    let cat = which("cat");
    let read = || assert!(std::process::Command::new(&cat).arg(&cred).stdout(std::process::Stdio::null()).status().unwrap().success());
    // The state disk: room for a few hundred records, then load until full.
    let ballast = disk.fill(256 * 1024);
    let load = open_loop(&cred);
    agent.wait_for_log("store write failed", Duration::from_secs(30));
    // A few more while it cannot write (all must fit once space returns).
    std::thread::sleep(Duration::from_millis(300));
    stop_loop(load);
    std::thread::sleep(Duration::from_millis(1500));
    // Space comes back: the waiting records are stored.
    std::fs::remove_file(&ballast).unwrap();
    agent.wait_for_log("store writes again", Duration::from_secs(20));
    // The JSON lines disk fills: the agent goes on, counting lines.
    let out_ballast = out_disk.fill(0);
    for _ in 0..5 {
        read();
    }
    agent.wait_for_log("JSON lines output cannot be written", Duration::from_secs(20));
    std::fs::remove_file(&out_ballast).unwrap();
    read();
    agent.wait_for_log("JSON lines output writable again", Duration::from_secs(20));
    let (status, _, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    assert!(stderr.iter().any(|l| l.contains("JSON lines output writable again")), "JSON lines recovery logged");
    let in_db = db_record_ids(state.path());
    let in_jsonl = jsonl_record_ids(&out_dir.path().join("out.jsonl"));
    assert!(in_jsonl.is_subset(&in_db), "JSON lines hold records the database lacks");
    // Record ids are handed out in sequence: any hole is a lost record.
    let mut seq: Vec<u64> = in_db.iter().map(|id| id.rsplit('-').next().unwrap().parse().unwrap()).collect();
    seq.sort_unstable();
    let holes = (seq[seq.len() - 1] - seq[0] + 1) - seq.len() as u64;
    let drops = stop_field(&stderr, "store_drops");
    assert_eq!(holes, 0, "records missing from the database; drops counted: {drops}");
    assert_eq!(drops.as_str(), Some("{}"), "no drop within the retry queue's bound");
    // Every line not written is counted, exactly.
    let lost = stop_field(&stderr, "jsonl_lines_lost").as_u64().unwrap();
    assert!(lost > 0, "the output was full for a while");
    assert_eq!(lost, (in_db.len() - in_jsonl.len()) as u64, "JSON lines not written, counted exactly");
    let db = open_db(state.path());
    let gaps: i64 = db.query_row("SELECT count(*) FROM gaps WHERE kind = 'store_unwritable'", [], |r| r.get(0)).unwrap();
    assert!(gaps >= 1, "the unwritable interval is kept");
    let wal = std::fs::metadata(state.path().join("nhi-observer.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 1024 * 1024, "the WAL stays bounded: {wal} bytes");
    drop(db);

    // A restart on a full disk runs (degraded) instead of exiting.
    let ballast = disk.fill(0);
    let mut agent = Agent::start_env(&args, "info", &[], Some(state));
    agent.wait_for_log("cannot be written at start: running degraded", Duration::from_secs(10));
    read();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(&ballast).unwrap();
    agent.wait_for_log("store writes again", Duration::from_secs(20));
    let (status, records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let runs: i64 = open_db(state.path()).query_row("SELECT count(*) FROM runs WHERE clean = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 2, "the degraded run is recorded once it could be");
    let after = db_record_ids(state.path());
    assert!(records.iter().filter_map(|r| str_attr(r, "nhi.record.id")).all(|id| after.contains(id)));
    drop(state);
    drop(out_dir);
}

/// Guards the stop while the collector fails: SIGINT took over 5 s (the
/// exporter retried until its deadline, and an export in flight to a
/// collector that never answers held it up to its timeout).
#[test]
fn sigint_while_the_collector_does_not_answer_stops_within_2_s() {
    if !bpf_available("sigint_while_the_collector_does_not_answer_stops_within_2_s") {
        return;
    }
    let _serial = serial();
    // A collector that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let (home, cred) = aws_home("AKIAFAULTSIGINT00001");
    let env: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let args = config_args(home.path(), "[usage]\nflush_interval_secs = 1\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_env(&args, "info", &env, None);
    let cat = which("cat");
    assert!(std::process::Command::new(&cat).arg(&cred).stdout(std::process::Stdio::null()).status().unwrap().success());
    let is_cat = |r: &serde_json::Value| str_attr(r, "process.executable.path") == cat.to_str();
    agent.wait_for_record(Duration::from_secs(10), is_cat);
    // An export is in flight to the silent collector by now.
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    let (status, _, stderr) = agent.stop(Signal::SIGINT);
    let took = asked.elapsed();
    assert!(status.success(), "{}", stderr.join("\n"));
    assert!(took < Duration::from_secs(2), "SIGINT took {took:?} with a collector that does not answer");
}

/// Guards the non-root start: it said only "failed to create map FLOWS",
/// after creating the database and the key.
#[test]
fn run_without_capabilities_names_them_points_to_check_and_creates_nothing() {
    if !bpf_available("run_without_capabilities_names_them_points_to_check_and_creates_nothing") {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let state = parent.path().join("state");
    let setpriv = which("setpriv");
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_nhi-observer"))
        .args(["run", "--state-dir", state.to_str().unwrap(), "--jsonl", "-"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CAP_BPF") && stderr.contains("nhi-observer check"), "{stderr}");
    assert!(!state.exists(), "the state directory was created before the refusal");
}

/// Guards `check --config/--state-dir`: check could not validate them.
#[test]
fn check_validates_the_config_and_the_state_dir() {
    if !bpf_available("check_validates_the_config_and_the_state_dir") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[watch]]\nname = \"all\"\npath = \"/\"\n").unwrap();
    let (status, stderr) = run_agent_to_end(&["check", "--config", bad.to_str().unwrap()], &[], Duration::from_secs(60));
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("names every file"), "{stderr}");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let (status, stderr) = run_agent_to_end(&["check", "--state-dir", file.to_str().unwrap()], &[], Duration::from_secs(60));
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "the path is named: {stderr}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "dedup_interval_ms = 0\n").unwrap();
    let out = common::agent_command()
        .args(["check", "--config", good.to_str().unwrap(), "--state-dir", dir.path().join("new").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.contains("config") && l.contains("good.toml: valid")), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("state dir") && l.contains("will be created")), "{stdout}");
}

/// Guards the log on a file or pipe: ANSI colour codes went to stderr
/// even when it was not a terminal.
#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "no_such_key = 1\n").unwrap();
    let out = common::agent_command()
        .args(["check", "--config", bad.to_str().unwrap()])
        .env("NHI_OBSERVER_LOG_FORMAT", "text")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("ERROR") && !stderr.contains('\u{1b}'), "{stderr:?}");
}

/// Guards "OS errors are printed twice": an error whose message already
/// says its OS cause was printed with that cause again (and a database
/// path that is a directory, three times). The OS error text must appear
/// once, with the path.
#[test]
fn a_failing_start_says_its_os_error_once_with_the_path() {
    if !bpf_available("a_failing_start_says_its_os_error_once_with_the_path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The database path is a directory.
    let db_dir = root.join("db-is-dir");
    std::fs::create_dir_all(db_dir.join("nhi-observer.db")).unwrap();
    // The lock file is a directory.
    let lock_dir = root.join("lock-is-dir");
    std::fs::create_dir_all(lock_dir.join("nhi-observer.lock")).unwrap();
    // The configured fingerprint key does not exist.
    let key_state = root.join("no-key");
    let no_key = root.join("missing.key");
    let key_config = root.join("key.toml");
    std::fs::write(&key_config, format!("fingerprint_key_file = {:?}\n", no_key.to_str().unwrap())).unwrap();
    // JSON lines in a directory that cannot be written to: a read-only
    // tmpfs (root writes anywhere else).
    let jsonl_state = root.join("jsonl");
    let ro = root.join("ro");
    std::fs::create_dir(&ro).unwrap();
    nix::mount::mount(Some("tmpfs"), &ro, Some("tmpfs"), nix::mount::MsFlags::MS_RDONLY, Some("size=64k")).unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(&ro);
    let jsonl = ro.join("out.jsonl");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, String, String)> = vec![
        (vec!["--state-dir".into(), s(&db_dir), "--jsonl".into(), "-".into()], s(&db_dir.join("nhi-observer.db")), std::io::Error::from_raw_os_error(21).to_string()),
        (vec!["--state-dir".into(), s(&lock_dir), "--jsonl".into(), "-".into()], s(&lock_dir.join("nhi-observer.lock")), std::io::Error::from_raw_os_error(21).to_string()),
        (vec!["--config".into(), s(&key_config), "--state-dir".into(), s(&key_state), "--jsonl".into(), "-".into()], s(&no_key), std::io::Error::from_raw_os_error(2).to_string()),
        (vec!["--state-dir".into(), s(&jsonl_state), "--jsonl".into(), s(&jsonl)], s(&jsonl), std::io::Error::from_raw_os_error(30).to_string()),
    ];
    for (args, path, os_error) in cases {
        let mut argv = vec!["run"];
        argv.extend(args.iter().map(String::as_str));
        let (status, stderr) = run_agent_to_end(&argv, &[], Duration::from_secs(60));
        assert!(!status.success(), "{argv:?} started: {stderr}");
        let line = stderr.lines().find(|l| l.contains("ERROR") && l.contains(&os_error)).unwrap_or_else(|| panic!("{argv:?}: no ERROR with {os_error:?}: {stderr}"));
        assert_eq!(stderr.matches(&os_error).count(), 1, "{argv:?}: the OS error once: {stderr}");
        assert!(line.contains(&path), "{argv:?}: the path {path} named: {line}");
        assert!(!line.contains("File(\""), "{argv:?}: a path, not a debug form: {line}");
    }
}

/// Guards a delivery cursor that cannot be saved: each retry read the
/// batch again from the saved cursor and resent it, forever. The cursor
/// write fails here in SQLite itself (a trigger refuses every update of
/// `cursors`, as a read-only or failing database would); delivery must go
/// on and the receiver get every stored record exactly once.
#[test]
fn a_cursor_that_cannot_be_saved_resends_no_record() {
    if !bpf_available("a_cursor_that_cannot_be_saved_resends_no_record") {
        return;
    }
    let _serial = serial();
    let (home, cred) = aws_home("AKIAFAULTCURSOR00001");
    let receiver = Receiver::start(Protocol::HttpProtobuf, 0);
    let env = otlp::otel_env(&receiver, false);
    let args = config_args(home.path(), "dedup_interval_ms = 0\n[usage]\nflush_interval_secs = 1\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A first run makes the database and its cursor.
    let mut agent = Agent::start_env(&args, "info", &env, None);
    agent.wait_for_log("probes attached", Duration::from_secs(30));
    let (status, _, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let db = rusqlite::Connection::open(state.path().join("nhi-observer.db")).unwrap();
    db.execute_batch("CREATE TRIGGER cursor_write_fails BEFORE UPDATE ON cursors BEGIN SELECT RAISE(ABORT, 'cursor write refused by the test'); END;")
        .unwrap();
    let saved: i64 = db.query_row("SELECT last_id FROM cursors WHERE name = 'otlp.logs'", [], |r| r.get(0)).unwrap();
    drop(db);

    let mut agent = Agent::start_env(&args, "info", &env, Some(state));
    let load = open_loop(&cred);
    agent.wait_for_log("cannot save the OTLP delivery cursor", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    stop_loop(load);
    std::thread::sleep(Duration::from_secs(2));
    let (status, _, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let db = open_db(state.path());
    let after: i64 = db.query_row("SELECT last_id FROM cursors WHERE name = 'otlp.logs'", [], |r| r.get(0)).unwrap();
    assert_eq!(after, saved, "the cursor was never saved in the second run (the fault under test)");
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for l in receiver.logs() {
        if let Some(id) = l.str("nhi.record.id") {
            *received.entry(id.to_owned()).or_default() += 1;
        }
    }
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} records delivered more than once, e.g. {:?}", twice.len(), &twice[..twice.len().min(5)]);
    let stored = db_record_ids(state.path());
    assert!(stored.len() > 300, "load: {} records", stored.len());
    let missing: Vec<_> = stored.iter().filter(|id| !received.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} stored records never delivered, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
}
