//! Secret hygiene: known secrets planted in every supported format (the
//! fixture corpus of `observer-creds`, synthetic secrets only) are read by
//! `nhi-observer scan` and by the running agent, and then searched for in
//! everything they produced: scan's stdout and stderr (table and JSON), the
//! agent's stdout, JSON lines and logs (at debug level), every file in
//! both state directories (the agent's SQLite database and its WAL among
//! them), and every OTLP request the agent sent to an in-process receiver
//! (logs and metrics, decompressed), and the evidence report the state
//! directory gives in every format (JSON, Markdown, HTML). Zero hits. The same run checks that the
//! identities did come out, so the test cannot pass by reading nothing.
mod common;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use common::*;
use nix::sys::signal::Signal;
use observer_creds::{Keyed, Secret};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../observer-creds/tests")
}

struct Case {
    file: String,
    /// Expected ids of credentials (public material is not reported);
    /// keyed ones resolved per key.
    ids: Vec<Value>,
    secrets: Vec<String>,
    /// Whether a read is a credential access (a record): it holds a
    /// credential, or could not be parsed at its (exact) credential path.
    reported: bool,
}

/// Kinds of public material: counted, not reported (issue 14).
const PUBLIC: &[&str] = &["x509.certificate", "x509.ca_certificate", "ssh.public_key", "spiffe.x509_svid"];

fn cases_of(index: &str) -> Vec<Case> {
    let text = fs::read_to_string(corpus_dir().join(index)).unwrap();
    let v: Vec<Value> = serde_json::from_str(&text).unwrap();
    v.iter()
        .map(|c| {
            let ids: Vec<Value> = c
                .get("identities")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|i| !PUBLIC.contains(&i["kind"].as_str().unwrap())).map(|i| i["id"].clone()).collect())
                .unwrap_or_default();
            let unparsed = c.get("unparsed").and_then(Value::as_str);
            let reported = !ids.is_empty() || unparsed.is_some_and(|u| u != "empty" && u != "no_credential");
            Case {
                file: c["file"].as_str().unwrap().to_owned(),
                ids,
                secrets: c["secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                reported,
            }
        })
        .collect()
}

fn cases() -> Vec<Case> {
    cases_of("corpus.json")
}

fn resolve(id: &Value, keyed: &Keyed) -> String {
    if let Some(s) = id.as_str() {
        return s.to_owned();
    }
    if let Some([k, s]) = id.get("keyed").and_then(Value::as_array).map(Vec::as_slice) {
        return keyed.id(k.as_str().unwrap(), s.as_str().unwrap().as_bytes());
    }
    let [k, b] = id["keyed_bytes"].as_array().unwrap().as_slice() else { panic!("{id}") };
    keyed.id(k.as_str().unwrap(), &STANDARD.decode(b.as_str().unwrap()).unwrap())
}

fn key_of(state_dir: &Path) -> Keyed {
    Keyed::new(Secret::new(fs::read(state_dir.join("fingerprint.key")).unwrap()))
}

/// Every (secret, place) where a planted secret shows up.
fn hits(secrets: &BTreeSet<String>, outputs: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (place, bytes) in outputs {
        for s in secrets {
            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                found.push(format!("{s:?} in {place}"));
            }
        }
    }
    found
}

#[test]
fn no_planted_secret_reaches_any_output_of_scan_or_agent() {
    if !bpf_available("no_planted_secret_reaches_any_output_of_scan_or_agent") {
        return;
    }
    let _serial = serial();
    let cases = cases();
    let home = temp_home();
    let root = home.path().join("corpus");
    // Plant every fixture, and a catalog entry for each with its format.
    let mut config = String::from("# every corpus file, exact path, its format\n");
    for (i, c) in cases.iter().enumerate() {
        let dst = root.join(&c.file);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(corpus_dir().join("corpus").join(&c.file), &dst).unwrap();
        let v: Vec<Value> = serde_json::from_str(&fs::read_to_string(corpus_dir().join("corpus.json")).unwrap()).unwrap();
        let kind = v[i]["kind"].as_str().filter(|k| !k.is_empty()).unwrap_or("unknown");
        config.push_str(&format!(
            "[[watch]]\nname = \"corpus-{i}\"\nkind = \"{kind}\"\npath = \"~/corpus/{}\"\nformat = \"{}\"\n",
            c.file,
            v[i]["format"].as_str().unwrap()
        ));
    }
    let cfg = home.path().join("nhi-observer.toml");
    fs::write(&cfg, &config).unwrap();
    // The content detector's fixtures too, at no catalog path: scan finds
    // them by content (issue 14).
    let content = cases_of("content.json");
    for c in &content {
        let dst = root.join("found-by-content").join(&c.file);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(corpus_dir().join("content").join(&c.file), &dst).unwrap();
    }
    let secrets: BTreeSet<String> =
        cases.iter().chain(&content).flat_map(|c| c.secrets.iter().cloned()).filter(|s| s.len() >= 8).collect();
    assert!(secrets.len() >= 60, "the corpus plants {} secrets", secrets.len());

    // 1. scan, as a table and as JSON.
    let scan_state = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_nhi-observer");
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut scan_json = Value::Null;
    for json in [false, true] {
        let mut cmd = Command::new(bin);
        cmd.args(["scan", "--config", cfg.to_str().unwrap(), "--state-dir", scan_state.path().to_str().unwrap()]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg(&root).env("NHI_OBSERVER_LOG", "debug").output().unwrap();
        assert!(out.status.success(), "scan failed: {}", String::from_utf8_lossy(&out.stderr));
        if json {
            scan_json = serde_json::from_slice(&out.stdout).unwrap();
        }
        outputs.push((format!("scan stdout (json={json})"), out.stdout));
        outputs.push((format!("scan stderr (json={json})"), out.stderr));
    }
    let scan_key = key_of(scan_state.path());
    let scan_ids: BTreeSet<String> = scan_json["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["identities"].as_array().unwrap().iter().map(|i| i["nhi.id"].as_str().unwrap().to_owned()))
        .collect();
    for c in cases.iter().chain(&content) {
        for id in &c.ids {
            let want = resolve(id, &scan_key);
            assert!(scan_ids.contains(&want), "scan did not report {want} for {}", c.file);
        }
    }

    // 2. the agent, with debug logs and OTLP export, reading every file.
    let receiver = otlp::Receiver::start(otlp::Protocol::Grpc, 0);
    let agent = Agent::start_env(&["--config", cfg.to_str().unwrap()], "debug", &otlp::otel_env(&receiver, true), None);
    let files: Vec<PathBuf> = cases.iter().map(|c| root.join(&c.file)).collect();
    let out = Command::new(which("cat")).args(&files).output().unwrap();
    assert!(!out.stdout.is_empty());
    let wanted: BTreeSet<String> =
        cases.iter().filter(|c| c.reported).map(|c| root.join(&c.file).to_str().unwrap().to_owned()).collect();
    let seen = |records: &[Value]| -> BTreeSet<String> {
        records.iter().filter_map(|r| str_attr(r, "file.path")).filter(|p| wanted.contains(*p)).map(str::to_owned).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen(&agent.records()).len() < wanted.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    let state_dir = state.path().to_owned();
    assert!(status.success(), "agent: {}", stderr.join("\n"));
    let got = seen(&records);
    let missing: Vec<_> = wanted.difference(&got).collect();
    assert!(missing.is_empty(), "no record for {missing:#?}");
    let agent_key = key_of(&state_dir);
    let agent_ids: BTreeSet<&str> = records.iter().filter_map(|r| str_attr(r, "nhi.id")).collect();
    for c in &cases {
        for id in &c.ids {
            let want = resolve(id, &agent_key);
            assert!(agent_ids.contains(want.as_str()), "the agent did not emit {want} for {}", c.file);
        }
    }
    assert!(stderr.iter().any(|l| l.contains("DEBUG")), "debug logging was not on");
    outputs.push(("agent stderr (logs)".into(), stderr.join("\n").into_bytes()));
    for f in files_under(&state_dir).into_iter().chain(files_under(scan_state.path())) {
        outputs.push((f.display().to_string(), fs::read(&f).unwrap()));
    }
    assert!(outputs.iter().any(|(p, b)| p.ends_with("out.jsonl") && !b.is_empty()));
    assert!(outputs.iter().any(|(p, _)| p.ends_with("agent.stdout")));
    assert!(outputs.iter().any(|(p, b)| p.ends_with("nhi-observer.db") && !b.is_empty()), "no database");
    // The evidence report, in every format, from the agent's state.
    let report_dir = tempfile::tempdir().unwrap();
    for format in ["json", "markdown", "html"] {
        let path = report_dir.path().join(format!("report.{format}"));
        let out = Command::new(bin)
            .args(["report", "--state-dir", state_dir.to_str().unwrap(), "--window", "1h", "--format", format, "--out"])
            .arg(&path)
            .env("NHI_OBSERVER_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = fs::read_to_string(&path).unwrap();
        // It did read the credentials, so the search below means something.
        let named = agent_ids.iter().filter(|id| text.contains(**id)).count();
        assert!(named >= agent_ids.len() / 2, "the {format} report names {named} of {} credentials", agent_ids.len());
        outputs.push((format!("report ({format})"), text.into_bytes()));
        outputs.push((format!("report stderr ({format})"), out.stderr));
    }
    // Everything exported over OTLP: the records (ids included) arrived...
    let exported = receiver.wait_logs(Duration::from_secs(10), |logs| {
        agent_ids.iter().all(|id| logs.iter().any(|l| l.str("nhi.id") == Some(*id)))
            && logs.iter().any(|l| l.event_name == "nhi.finding")
    });
    for id in &agent_ids {
        assert!(exported.iter().any(|l| l.str("nhi.id") == Some(*id)), "{id} was not exported over OTLP");
    }
    assert!(exported.iter().any(|l| l.event_name == "nhi.finding"), "no finding was exported over OTLP");
    assert!(exported.iter().any(|l| l.event_name == "nhi.coverage"), "no coverage record was exported over OTLP");
    // ...and no request carried a secret.
    let got = receiver.got.lock().unwrap();
    assert!(!got.metrics.is_empty(), "no metrics exported");
    for (i, raw) in got.raw.iter().enumerate() {
        outputs.push((format!("OTLP request {i}"), raw.clone()));
    }
    drop(got);

    let found = hits(&secrets, &outputs);
    assert!(found.is_empty(), "{} planted secrets leaked:\n{}", found.len(), found.join("\n"));
}
