//! End-to-end: credential files opened only through io_uring
//! (observer-ebpf/src/probes/iouring.rs). The client, tests/iouring/
//! uring_open.c, opens and reads through io_uring alone (liburing), so the
//! syscall hook never sees these opens; each record must come from the
//! io_uring programs, with the client's pid and the file's identity.
mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use common::*;
use nix::sys::signal::Signal;

/// The io_uring client, compiled once per test binary with gcc and
/// liburing (`cargo xtask setup` installs both). Missing tools fail the
/// test under CI=true; elsewhere it is reported and the test returns.
fn uring_client(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nhi-e2e-iouring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = dir.join("uring_open");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/iouring/uring_open.c");
        let res = Command::new("gcc")
            .arg("-O1")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .arg("-luring")
            .output();
        match res {
            Ok(o) if o.status.success() => Ok(out),
            Ok(o) => Err(format!(
                "gcc failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!("cannot run gcc: {e}")),
        }
    });
    match built {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            let why = format!(
                "the io_uring client does not build (needs gcc and liburing-dev: cargo xtask setup): {why}"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{test}: {why}");
            }
            eprintln!("{test}: NOT RUN: {why}");
            None
        }
    }
}

/// Runs the client; returns its pid and what it printed (`open=.. read=..`).
fn uring_open(client: &Path, mode: &str, path: &Path) -> (i64, String) {
    let child = Command::new(client).arg(mode).arg(path).output_with_pid();
    assert!(
        child.1.status.success(),
        "uring_open {mode}: {}",
        String::from_utf8_lossy(&child.1.stderr)
    );
    (
        child.0,
        String::from_utf8_lossy(&child.1.stdout).trim().to_owned(),
    )
}

trait OutputWithPid {
    fn output_with_pid(&mut self) -> (i64, std::process::Output);
}

impl OutputWithPid for Command {
    fn output_with_pid(&mut self) -> (i64, std::process::Output) {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn uring_open");
        let pid = i64::from(child.id());
        (pid, child.wait_with_output().expect("uring_open output"))
    }
}

fn access_of<'a>(
    records: &'a [serde_json::Value],
    pid: i64,
    path: &str,
) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| {
            str_attr(r, "event.name") == Some("nhi.credential.access")
                && int_attr(r, "process.pid") == Some(pid)
                && str_attr(r, "file.path") == Some(path)
        })
        .collect()
}

/// A credential opened and read only through io_uring is an access record
/// like a syscall open: same path, pid and nhi.id; whether the open ran in
/// the submitting task (inline), in an io-wq worker thread (IOSQE_ASYNC)
/// or as IORING_OP_OPENAT2. A plain file opened the same way is no record.
#[test]
fn credential_opened_only_through_io_uring_is_reported() {
    let test = "credential_opened_only_through_io_uring_is_reported";
    if !bpf_available(test) {
        return;
    }
    let Some(client) = uring_client(test) else {
        return;
    };
    let _serial = serial();
    let key_id = "AKIAE2EIOURINGAAAAAA";
    let (home, cred) = aws_home(key_id);
    let plain = home.path().join("notes.txt");
    std::fs::write(&plain, "nothing secret\n").unwrap();
    let path = cred.to_str().unwrap().to_owned();

    let agent = Agent::start(&[]);
    let mut runs = Vec::new();
    for (mode, syscall) in [
        ("inline", "io_uring.openat"),
        ("async", "io_uring.openat"),
        ("openat2", "io_uring.openat2"),
    ] {
        let (pid, out) = uring_open(&client, mode, &cred);
        assert!(
            out.starts_with("open=") && !out.starts_with("open=-"),
            "{mode}: {out}"
        );
        assert!(
            !out.ends_with("read=-9") && !out.contains("read=-"),
            "{mode}: the read failed: {out}"
        );
        agent.wait_for_record(Duration::from_secs(10), |r| {
            access_of(std::slice::from_ref(r), pid, &path).len() == 1
                && str_attr(r, "nhi.id") == Some(key_id)
        });
        runs.push((mode, syscall, pid));
    }
    let (plain_pid, out) = uring_open(&client, "inline", &plain);
    assert!(!out.starts_with("open=-"), "{out}");
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "agent exit {status}; stderr:\n{}",
        stderr.join("\n")
    );

    for (mode, syscall, pid) in runs {
        let mine = access_of(&records, pid, &path);
        assert!(!mine.is_empty(), "{mode}: no access record for pid {pid}");
        for r in &mine {
            assert_eq!(str_attr(r, "nhi.id"), Some(key_id), "{mode}: {r:#}");
            assert_eq!(
                str_attr(r, "nhi.kind"),
                Some("aws.access_key"),
                "{mode}: {r:#}"
            );
            assert_eq!(
                str_attr(r, "nhi.rule"),
                Some("aws-shared-credentials"),
                "{mode}: {r:#}"
            );
            assert_eq!(
                str_attr(r, "nhi.open.syscall"),
                Some(syscall),
                "{mode}: {r:#}"
            );
            assert!(
                int_attr(r, "nhi.open.result").is_some_and(|fd| fd >= 0),
                "{mode}: {r:#}"
            );
            assert!(
                str_attr(r, "file.inode").is_some(),
                "{mode}: the opened file itself was matched: {r:#}"
            );
            assert_eq!(
                str_attr(r, "process.executable.path"),
                client.to_str(),
                "{mode}: {r:#}"
            );
            assert!(r.get("nhi.open.fixed_file").is_none(), "{mode}: {r:#}");
        }
    }
    let plain_str = plain.to_str().unwrap();
    assert!(
        !records
            .iter()
            .any(|r| str_attr(r, "file.path") == Some(plain_str)),
        "a plain file opened through io_uring was reported"
    );
    assert!(
        !records
            .iter()
            .any(|r| int_attr(r, "process.pid") == Some(plain_pid)
                && str_attr(r, "event.name") == Some("nhi.credential.access")),
        "the plain-file client made an access record"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.to_string().contains("e2e-not-a-secret")),
        "a secret reached the output"
    );
}

/// io_uring opens without a descriptor: a failed open of a credential path
/// is reported with its errno (matched on the kernel's copy of the path);
/// an open into a fixed-file slot is reported, flagged `fixed_file`, on its
/// path (no descriptor, so no inode to check).
#[test]
fn failed_and_fixed_slot_io_uring_opens_are_reported() {
    let test = "failed_and_fixed_slot_io_uring_opens_are_reported";
    if !bpf_available(test) {
        return;
    }
    let Some(client) = uring_client(test) else {
        return;
    };
    let _serial = serial();
    let key_id = "AKIAE2EIOURINGBBBBBB";
    let (home, cred) = aws_home(key_id);
    let missing = home.path().join(".kube/config");
    let agent = Agent::start(&[]);
    let (failed_pid, out) = uring_open(&client, "inline", &missing);
    assert_eq!(out, "open=-2 read=-9");
    let missing_str = missing.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        !access_of(std::slice::from_ref(r), failed_pid, &missing_str).is_empty()
    });
    // No descriptor, so no inode: the agent reads the path in the client's
    // mount namespace, which it can only while the client lives.
    let mut held = Command::new(&client)
        .args(["fixed", cred.to_str().unwrap()])
        .env("URING_HOLD", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("uring_open fixed");
    let fixed_pid = i64::from(held.id());
    let path = cred.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        !access_of(std::slice::from_ref(r), fixed_pid, &path).is_empty()
            && str_attr(r, "nhi.id") == Some(key_id)
    });
    drop(held.stdin.take());
    let out = held.wait_with_output().expect("uring_open fixed");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("open=0 read="),
        "{out:?}"
    );
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "agent exit {status}; stderr:\n{}",
        stderr.join("\n")
    );

    let failed = access_of(&records, failed_pid, &missing_str);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(int_attr(failed[0], "nhi.open.result"), Some(-2));
    assert_eq!(str_attr(failed[0], "error.type"), Some("ENOENT"));
    assert_eq!(
        str_attr(failed[0], "nhi.kind"),
        Some("kubernetes.kubeconfig")
    );
    assert_eq!(
        str_attr(failed[0], "nhi.open.syscall"),
        Some("io_uring.openat")
    );

    let fixed = access_of(&records, fixed_pid, &path);
    assert!(!fixed.is_empty());
    for r in fixed {
        assert_eq!(
            r.get("nhi.open.fixed_file"),
            Some(&serde_json::Value::Bool(true)),
            "{r:#}"
        );
        assert_eq!(str_attr(r, "nhi.id"), Some(key_id), "{r:#}");
        assert_eq!(
            str_attr(r, "nhi.open.syscall"),
            Some("io_uring.openat"),
            "{r:#}"
        );
        assert_eq!(int_attr(r, "nhi.open.result"), Some(0), "{r:#}");
    }
}
