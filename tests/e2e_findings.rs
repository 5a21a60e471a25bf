//! Findings and the evidence report end to end: the real agent with its
//! probes, an inventory declaring some of the credentials planted in a
//! directory of the test's own (watched through the config, so other
//! agents on the host neither scan nor watch it), real programs using them
//! (Python reading and making TLS connections to a loopback server with a
//! server name, `cat` and `sh` under a pseudo-terminal), a window of
//! seconds. The agent's `nhi.finding` records must show every finding type
//! once when it opens (and once when it resolves), `nhi.coverage` records
//! must frame the run, a restart must not re-open what is open, and
//! `nhi-observer report` must say the same in JSON, Markdown and HTML
//! (checked in headless Chromium), also while the agent runs.
mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{net::*, *};
use nix::sys::signal::Signal;
use serde_json::Value;

const DECLARED: &str = "AKIAFINDDECLARED0001";
const UNUSED: &str = "AKIAFINDUNUSED000001";
const NEVER: &str = "AKIAFINDNEVERUSED001";
const SHADOW: &str = "AKIAFINDSHADOW000001";
const CREATED: &str = "AKIAFINDCREATED00001";
/// A JWT (`alg: none`, synthetic) that expired in 2001: `iss#sub`.
const EXPIRED_JWT: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2UyZS5uaGkudGVzdCIsInN1YiI6ImZpbmRpbmdzLWV4cGlyZWQiLCJleHAiOjEwMDAwMDAwMDB9.c2ln";
const EXPIRED: &str = "https://e2e.nhi.test#findings-expired";

/// Runs argv[1:] with a new pseudo-terminal as its controlling terminal
/// (a person at a shell, as far as the kernel can tell).
const IN_A_TERMINAL: &str = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
while True:
    try:
        if not os.read(fd, 1024):
            break
    except OSError:
        break
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;


fn aws_file(path: &Path, key_id: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = findings-not-a-secret\n")).unwrap();
}

/// Reads a file once, then (unless the server name is `-`) makes one TLS
/// connection with that server name to 127.0.0.1:port.
fn read_then_connect(path: &Path, port: u16, sni: &str) {
    common::net::read_then_connect(path, 1, port, sni, &[]);
}

fn in_a_terminal(argv: &[&str]) {
    python(IN_A_TERMINAL, argv);
}

fn findings<'a>(records: &'a [Value], nhi_id: &str, kind: &str) -> Vec<&'a Value> {
    named(records, "nhi.finding")
        .into_iter()
        .filter(|r| str_attr(r, "nhi.id") == Some(nhi_id) && str_attr(r, "nhi.finding.type") == Some(kind))
        .collect()
}

fn has(records: &[Value], nhi_id: &str, kind: &str, state: &str, pred: impl Fn(&Value) -> bool) -> bool {
    findings(records, nhi_id, kind).iter().any(|r| str_attr(r, "nhi.finding.state") == Some(state) && pred(r))
}

/// `nhi-observer report` with `args`; returns stdout (or the --out file's
/// text is read by the caller).
fn report(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nhi-observer")).arg("report").args(args).output().expect("report");
    assert!(out.status.success(), "report {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn credential<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["nhi.id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the report: {report:#}"))
}

/// Chromium's DOM of a local HTML file, or `None` when Chromium is not
/// installed outside CI (under CI=true that is a failure).
fn chromium_dom(html: &Path) -> Option<String> {
    let Some(chromium) = ["chromium", "chromium-browser"].iter().find_map(|p| {
        let paths = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&paths).map(|d| d.join(p)).find(|p| p.is_file())
    }) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "chromium is not installed (cargo xtask setup installs it)"
        );
        eprintln!("chromium not installed: the HTML DOM check did NOT run");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Plant {
    base: tempfile::TempDir,
    d: PathBuf,
    u: PathBuf,
    s1: PathBuf,
    s2: PathBuf,
    c: PathBuf,
}

/// The credential files, in a directory outside every default scan root.
fn plant() -> Plant {
    let base = tempfile::Builder::new().prefix("findings-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let p = |s: &str| base.path().join("aws").join(s).join("credentials");
    let v = p("v");
    let plant = Plant { d: p("d"), u: p("u"), s1: p("s1"), s2: p("s2"), c: p("c"), base };
    aws_file(&plant.d, DECLARED);
    aws_file(&plant.u, UNUSED);
    aws_file(&v, NEVER);
    aws_file(&plant.s1, SHADOW);
    aws_file(&plant.s2, SHADOW);
    std::fs::create_dir_all(plant.c.parent().unwrap()).unwrap();
    let tok = plant.base.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::write(tok.join("token.jwt"), EXPIRED_JWT).unwrap();
    // Owned by another user than the one who will use it.
    nix::unistd::chown(&plant.d, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(plant.s2.parent().unwrap(), std::fs::Permissions::from_mode(0o777)).unwrap();
    plant
}

fn config(base: &Path) -> String {
    format!(
        "scan_roots = [\"{0}\"]\n[[watch]]\nname = \"findings-e2e\"\nkind = \"aws.access_key\"\npath = \"{0}/aws/\"\nformat = \"aws-ini\"\n\
         [[watch]]\nname = \"findings-e2e-token\"\nkind = \"app.jwt\"\npath = \"{0}/tok/\"\nformat = \"jwt\"\n\
         [usage]\nflush_interval_secs = 1\n\
         [findings]\ninterval = \"1s\"\nunused_window = \"6s\"\nlearning_period = \"1h\"\ncoverage_interval = \"2s\"\n",
        base.display()
    )
}

fn inventory(dir: &Path, python: &str) -> PathBuf {
    let path = dir.join("inventory.yaml");
    std::fs::write(
        &path,
        format!(
            "credentials:\n\
             - id: {DECLARED}\n  owner: team-e2e\n  consumers:\n    - executable: {python}\n  destinations: [\"*.allowed.nhi.test\"]\n\
             - id: {UNUSED}\n\
             - id: {NEVER}\n\
             - kind: aws.access_key\n  path: /nonexistent/*/credentials\n"
        ),
    )
    .unwrap();
    path
}

/// Polls the agent's output until every check holds; panics naming the
/// ones that did not.
type Check<'a> = (&'a str, &'a dyn Fn(&[Value]) -> bool);

fn wait_all(agent: &Agent, timeout: Duration, checks: &[Check<'_>]) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = agent.records();
        let missing: Vec<&str> = checks.iter().filter(|(_, f)| !f(&records)).map(|(n, _)| *n).collect();
        if missing.is_empty() {
            return records;
        }
        assert!(Instant::now() < deadline, "not seen within {timeout:?}: {missing:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn findings_open_once_resolve_on_use_survive_a_restart_and_match_the_report() {
    if !bpf_available("findings_open_once_resolve_on_use_survive_a_restart_and_match_the_report") {
        return;
    }
    let _serial = serial();
    let plant = plant();
    let py = python_exe();
    let inv = inventory(plant.base.path(), &py);
    let server = TlsServer::start(&Certs::new(), "127.0.0.1:0".parse().unwrap(), None);
    let port = server.addr.port();
    let mut args = config_args(plant.base.path(), &config(plant.base.path()));
    args.extend(["--inventory".to_owned(), inv.to_string_lossy().into_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Agent::start(&args);
    agent.wait_for_log("at-rest scan done", Duration::from_secs(60));
    // The scan's credentials are facts once an evaluation has read them.
    wait_all(&agent, Duration::from_secs(20), &[("hygiene of the unused key", &|r| {
        has(r, UNUSED, "hygiene", "open", |_| true)
    })]);
    let state = agent.state_dir.path().to_owned();
    let state_arg = state.to_str().unwrap();
    let inv_arg = inv.to_str().unwrap();
    // The report reads the database while the agent runs: known for
    // seconds, the never-used key is too new to judge in a 1 h window.
    let running: Value =
        serde_json::from_str(&report(&["--state-dir", state_arg, "--inventory", inv_arg, "--window", "1h", "--format", "json"]))
            .unwrap();
    assert_eq!(credential(&running, UNUSED)["nhi.credential.status"], "too_new", "{running:#}");
    assert!(credential(&running, UNUSED)["nhi.signoff"].is_null());

    // The workloads.
    read_then_connect(&plant.d, port, "api.allowed.nhi.test");
    read_then_connect(&plant.d, port, "evil.nhi.test");
    in_a_terminal(&["/bin/cat", plant.d.to_str().unwrap()]);
    read_then_connect(&plant.s1, port, "-");
    let create = format!(
        "printf '[default]\\naws_access_key_id = {CREATED}\\naws_secret_access_key = findings-not-a-secret\\n' > {}",
        plant.c.display()
    );
    in_a_terminal(&["/bin/sh", "-c", &create]);
    read_then_connect(&plant.c, port, "-");
    let cat = which("cat").to_string_lossy().into_owned();
    let sh = which("sh").to_string_lossy().into_owned();
    let from_cat = |r: &Value| str_attr(r, "process.executable.path") == Some(cat.as_str());
    let records = wait_all(
        &agent,
        Duration::from_secs(40),
        &[
            ("unexpected_destination", &|r| {
                has(r, DECLARED, "unexpected_destination", "open", |f| str_attr(f, "server.address") == Some("evil.nhi.test"))
            }),
            ("unexpected_consumer", &|r| has(r, DECLARED, "unexpected_consumer", "open", from_cat)),
            ("human_use", &|r| has(r, DECLARED, "human_use", "open", from_cat)),
            ("reuse of workloads", &|r| has(r, DECLARED, "reuse", "open", |_| true)),
            ("shadow", &|r| has(r, SHADOW, "shadow", "open", |_| true)),
            ("reuse of files", &|r| {
                has(r, SHADOW, "reuse", "open", |f| str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("stored in 2 files")))
            }),
            ("world-writable directory", &|r| {
                has(r, SHADOW, "hygiene", "open", |f| {
                    str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("world-writable directory"))
                })
            }),
            ("created", &|r| {
                has(r, CREATED, "created", "open", |f| {
                    str_attr(f, "file.path") == plant.c.to_str()
                        && str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("from terminal"))
                })
            }),
            ("unused", &|r| has(r, UNUSED, "unused", "open", |_| true)),
        ],
    );
    // The finding records' shape.
    let dest = findings(&records, DECLARED, "unexpected_destination")[0];
    assert_eq!(str_attr(dest, "nhi.kind"), Some("aws.access_key"));
    assert_eq!(str_attr(dest, "process.executable.path"), Some(py.as_str()));
    assert!(str_attr(dest, "nhi.finding.id").is_some_and(|s| s.len() == 24));
    assert!(!list_attr(dest, "nhi.finding.record_ids").is_empty(), "{dest:#}");
    assert!(findings(&records, DECLARED, "unexpected_destination")
        .iter()
        .all(|f| str_attr(f, "server.address") != Some("api.allowed.nhi.test")), "a declared destination is expected");
    assert!(!has(&records, DECLARED, "unexpected_consumer", "open", |f| str_attr(f, "process.executable.path") == Some(py.as_str())),
        "the declared consumer is expected");
    let human = findings(&records, DECLARED, "human_use").into_iter().find(|f| from_cat(f)).unwrap();
    assert_eq!(human.get("process.interactive"), Some(&Value::Bool(true)));
    let created = findings(&records, CREATED, "created")[0];
    assert_eq!(str_attr(created, "process.executable.path"), Some(sh.as_str()), "{created:#}");
    assert_eq!(list_attr(created, "nhi.finding.record_ids").len(), 1);
    assert!(has(&records, DECLARED, "hygiene", "open", |f| str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("long-lived"))));
    assert!(has(&records, DECLARED, "hygiene", "open", |f| {
        str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("is owned by uid 1000 but used by uid 0"))
    }));
    assert!(has(&records, EXPIRED, "hygiene", "open", |f| {
        str_attr(f, "nhi.finding.reason").is_some_and(|s| s.starts_with("expired at 2001-09-09T01:46:40Z"))
            && str_attr(f, "nhi.finding.severity") == Some("medium")
    }));
    assert!(has(&records, EXPIRED, "shadow", "open", |f| str_attr(f, "nhi.finding.severity") == Some("low")), "present at rest, undeclared");
    assert!(has(&records, DECLARED, "hygiene", "open", |f| str_attr(f, "nhi.finding.severity") == Some("high")
        && str_attr(f, "nhi.finding.reason").is_some_and(|s| s.contains("readable by all users"))));
    let unused = findings(&records, UNUSED, "unused")[0];
    assert_eq!(int_attr(unused, "nhi.finding.window_seconds"), Some(6));
    for k in ["nhi.finding.evaluated_at", "nhi.coverage.tracked_since", "nhi.coverage.percent"] {
        assert!(str_attr(unused, k).is_some(), "{k} missing: {unused:#}");
    }
    assert!(int_attr(unused, "nhi.coverage.events_lost").is_some());
    assert!(findings(&records, NEVER, "unused").len() == 1, "declared, never used: unused once");
    assert!(findings(&records, DECLARED, "shadow").is_empty(), "declared: never shadow");

    // A later use resolves `unused`.
    read_then_connect(&plant.u, port, "-");
    wait_all(&agent, Duration::from_secs(20), &[("unused resolved", &|r| has(r, UNUSED, "unused", "resolved", |_| true))]);
    let (status, records, stderr, state_dir) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    // Emitted on transitions only: per finding, consecutive records differ
    // in state, severity or reason.
    let mut last: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut per_id = 0;
    for f in named(&records, "nhi.finding") {
        let id = str_attr(f, "nhi.finding.id").unwrap().to_owned();
        let now = (
            str_attr(f, "nhi.finding.state").unwrap().to_owned(),
            str_attr(f, "nhi.finding.severity").unwrap().to_owned(),
            str_attr(f, "nhi.finding.reason").unwrap().to_owned(),
        );
        assert_ne!(last.get(&id), Some(&now), "finding {id} emitted twice unchanged: {f:#}");
        last.insert(id, now);
        per_id += 1;
    }
    assert!(per_id >= 10);
    let unused_states: Vec<&str> =
        findings(&records, UNUSED, "unused").iter().map(|r| str_attr(r, "nhi.finding.state").unwrap()).collect();
    assert_eq!(unused_states, ["open", "resolved"]);

    // Coverage records frame the run.
    let coverage = named(&records, "nhi.coverage");
    assert!(coverage.len() >= 3, "start, periodic, stop: {}", coverage.len());
    for c in &coverage {
        for k in ["nhi.coverage.start", "nhi.coverage.end", "nhi.coverage.tracked_since", "nhi.agent.state"] {
            assert!(str_attr(c, k).is_some(), "{k} missing: {c:#}");
        }
        assert!(int_attr(c, "nhi.coverage.events_lost").is_some() && int_attr(c, "nhi.coverage.decode_errors").is_some());
        assert!(list_attr(c, "nhi.coverage.sensors").contains(&"file".to_owned()));
    }
    assert_eq!(str_attr(coverage.last().unwrap(), "nhi.agent.state"), Some("stopping"));
    assert!(coverage.windows(2).all(|w| str_attr(w[0], "nhi.coverage.end") == str_attr(w[1], "nhi.coverage.start")), "contiguous");

    // The findings' state is in the store: a restart does not re-open them.
    let before = records.len();
    let shadow_id = str_attr(findings(&records, SHADOW, "shadow")[0], "nhi.finding.id").unwrap().to_owned();
    let human_id = str_attr(human, "nhi.finding.id").unwrap().to_owned();
    let agent = Agent::start_env(&args, "info", &[], Some(state_dir));
    let later = agent.wait_for_record(Duration::from_secs(20), |r| {
        str_attr(r, "event.name") == Some("nhi.coverage") && str_attr(r, "nhi.agent.state") != Some("stopping")
            && str_attr(r, "nhi.coverage.start") != str_attr(r, "nhi.coverage.end")
            && str_attr(r, "time").is_some_and(|t| t > str_attr(coverage.last().unwrap(), "time").unwrap())
    });
    assert!(later.len() > before);
    // While it runs: the reports, with a window of seconds (the never-used
    // key is unused, with a sign-off statement).
    let state = agent.state_dir.path().to_owned();
    let state_arg = state.to_str().unwrap();
    let out = plant.base.path();
    let short = ["--state-dir", state_arg, "--inventory", inv_arg, "--window", "5s"];
    let json_path = out.join("report.json");
    let md_path = out.join("report.md");
    let html_path = out.join("report.html");
    for (format, path) in [("json", &json_path), ("markdown", &md_path), ("html", &html_path)] {
        let mut a = short.to_vec();
        a.extend(["--format", format, "--out", path.to_str().unwrap()]);
        report(&a);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (status, records, stderr, _state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    for f in named(&records[before..], "nhi.finding") {
        let id = str_attr(f, "nhi.finding.id").unwrap();
        assert!(id != shadow_id && id != human_id, "re-emitted after the restart: {f:#}");
    }

    let short: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let never = credential(&short, NEVER);
    assert_eq!(never["nhi.credential.status"], "unused", "{short:#}");
    let signoff = never["nhi.signoff"].as_str().unwrap();
    assert!(signoff.starts_with(&format!("No use of {NEVER} observed on host ")), "{signoff}");
    assert!(signoff.contains("; coverage ") && signoff.ends_with(" events lost."), "{signoff}");
    assert!(short["blind_spots"].as_array().is_some_and(|b| !b.is_empty()));
    assert!(short["coverage"].as_array().is_some_and(|c| c.iter().any(|s| s["nhi.coverage.watched"] == true)));
    assert!(short["findings"].as_array().unwrap().iter().any(|f| f["nhi.finding.type"] == "unused" && f["nhi.id"] == NEVER));

    // After the stop, a wide window: statuses and the per-credential story.
    let wide: Value =
        serde_json::from_str(&report(&["--state-dir", state_arg, "--inventory", inv_arg, "--window", "1h", "--format", "json"]))
            .unwrap();
    let d = credential(&wide, DECLARED);
    assert_eq!(d["nhi.credential.status"], "in_use");
    assert_eq!(d["nhi.inventory.owner"], "team-e2e");
    assert_eq!(d["file.path"], serde_json::json!([plant.d.to_str().unwrap()]));
    assert!(d["nhi.usage.destinations"].as_array().unwrap().iter().any(|s| s == "evil.nhi.test"));
    assert!(d["consumers"].as_array().unwrap().iter().any(|c| c["process.executable.path"] == cat.as_str()));
    assert!(d["nhi.usage.count"].as_u64().unwrap() >= 3);
    assert_eq!(credential(&wide, SHADOW)["nhi.credential.status"], "shadow");
    assert_eq!(credential(&wide, UNUSED)["nhi.credential.status"], "in_use");
    // Nothing in this test opens the never-used key's file after the agent's
    // own scan; if something else on the host did, the message names it.
    let never = credential(&wide, NEVER);
    assert_eq!(never["nhi.credential.status"], "too_new", "a use of the never-used key, by whom: {never:#}");
    let c = credential(&wide, CREATED);
    assert!(c["nhi.created_by"][0].as_str().is_some_and(|s| s.contains(&sh) && s.contains("from terminal")), "{c:#}");
    assert_eq!(wide["nhi.inventory.not_found"], serde_json::json!(["aws.access_key at /nonexistent/*/credentials"]));

    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.contains("## Credentials") && md.contains(DECLARED) && md.contains("### Sign-off"), "{md}");
    assert!(md.contains(&format!("No use of {NEVER} observed on host")));
    let html = std::fs::read_to_string(&html_path).unwrap();
    for external in ["<script", "<link", "<img", "<iframe", " src=", " href=", "url("] {
        assert!(!html.contains(external), "self-contained: {external} in the HTML");
    }
    if let Some(dom) = chromium_dom(&html_path) {
        for id in [DECLARED, UNUSED, NEVER, SHADOW, CREATED] {
            assert!(dom.contains(&format!("<tr class=\"credential\" data-nhi-id=\"{id}\"")), "{id} has no row in the DOM");
        }
        assert!(dom.contains(&format!("data-nhi-id=\"{NEVER}\" data-status=\"unused\"")));
        assert!(dom.contains("id=\"coverage-timeline\""));
        assert!(dom.contains("class=\"signoff\""));
    }
    drop(server);
}

#[test]
fn an_invalid_inventory_is_refused_with_its_line_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, "credentials:\n  - id: AKIAEXAMPLE\n    onwer: typo\n").unwrap();
    for sub in [&["run", "--jsonl", "-"][..], &["report"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_nhi-observer"))
            .args(sub)
            .arg("--state-dir")
            .arg(dir.path())
            .arg("--inventory")
            .arg(&inv)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{sub:?}: {stderr}");
        assert!(stderr.contains("line 3") && stderr.contains("unknown field `onwer`"), "{sub:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nhi-observer"))
        .args(["report", "--window", "90x", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "a bad window is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--window"));
}

/// Without an inventory, a credential's first consumers are its baseline:
/// a workload first seen after the learning period is unexpected, and
/// nothing is `shadow`.
#[test]
fn without_an_inventory_a_consumer_after_the_learning_period_is_unexpected() {
    if !bpf_available("without_an_inventory_a_consumer_after_the_learning_period_is_unexpected") {
        return;
    }
    let _serial = serial();
    let base = tempfile::Builder::new().prefix("learning-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    const KEY: &str = "AKIAFINDLEARNING0001";
    let cred = base.path().join("aws").join("l").join("credentials");
    aws_file(&cred, KEY);
    let cfg = config(base.path()).replace("learning_period = \"1h\"", "learning_period = \"3s\"");
    let args = config_args(base.path(), &cfg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(&args);
    let py = python_exe();
    read_then_connect(&cred, 0, "-");
    agent.wait_for_record(Duration::from_secs(20), |r| {
        str_attr(r, "event.name") == Some("nhi.usage") && str_attr(r, "nhi.id") == Some(KEY)
    });
    std::thread::sleep(Duration::from_secs(4));
    let cat = which("cat").to_string_lossy().into_owned();
    let out = Command::new(&cat).arg(&cred).output().unwrap();
    assert!(out.status.success());
    let records = wait_all(&agent, Duration::from_secs(20), &[("learned", &|r| {
        has(r, KEY, "unexpected_consumer", "open", |f| str_attr(f, "process.executable.path") == Some(cat.as_str()))
    })]);
    let (status, records_at_stop, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let f = findings(&records, KEY, "unexpected_consumer");
    assert!(f.iter().all(|f| str_attr(f, "process.executable.path") != Some(py.as_str())), "the first consumer is the baseline");
    assert!(str_attr(f[0], "nhi.finding.reason").is_some_and(|s| s.contains("after the 3s learning period")), "{:#}", f[0]);
    assert!(findings(&records_at_stop, KEY, "shadow").is_empty(), "no inventory: nothing is shadow");
}
