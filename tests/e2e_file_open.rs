//! End-to-end: the real agent, real probes, real processes opening files.
mod common;

use std::{fs, process::Command, time::Duration};

use common::*;
use nix::sys::signal::Signal;

/// The foundation slice: a child reads a planted credential and a plain file;
/// exactly the credential access is emitted, with the child's pid and
/// executable, and the agent stops cleanly on SIGTERM.
#[test]
fn credential_read_is_emitted_with_pid_and_executable() {
    if !bpf_available("credential_read_is_emitted_with_pid_and_executable") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".aws/credentials");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(&cred, "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n").unwrap();
    let plain = home.path().join("notes.txt");
    fs::write(&plain, "nothing secret\n").unwrap();

    let agent = Agent::start(&[]);
    let cat = which("cat");
    let child = Command::new(&cat).arg(&cred).arg(&plain).env("HOME", home.path()).output().unwrap();
    assert!(child.status.success());
    // `output()` reaps the child, so find its pid from the records: there must
    // be exactly one record under our temporary home, from `cat`.
    // Records of files under our temporary home opened by `cat` (another
    // agent on a shared host may read them too: its own records don't
    // concern this test).
    let home_str = home.path().to_str().unwrap().to_owned();
    let cat_str = cat.to_str().unwrap().to_owned();
    let ours = |r: &serde_json::Value| {
        str_attr(r, "file.path").is_some_and(|p| p.starts_with(&home_str))
            && str_attr(r, "process.executable.path") == Some(cat_str.as_str())
    };
    agent.wait_for_record(Duration::from_secs(5), ours);
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));

    let mine: Vec<_> = records.iter().filter(|r| ours(r)).collect();
    assert_eq!(mine.len(), 1, "exactly the credential access, got {mine:#?}");
    let r = mine[0];
    assert_eq!(str_attr(r, "event.name"), Some("nhi.credential.access"));
    assert_eq!(str_attr(r, "file.path"), cred.to_str());
    assert_eq!(str_attr(r, "nhi.rule"), Some("aws-shared-credentials"));
    assert_eq!(str_attr(r, "process.executable.path"), cat.to_str());
    assert_eq!(str_attr(r, "process.command"), Some("cat"));
    assert_eq!(int_attr(r, "process.user.id"), Some(0));
    assert!(int_attr(r, "nhi.open.result").is_some_and(|fd| fd >= 0), "{r:#}");
    assert!(int_attr(r, "process.pid").is_some_and(|p| p > 0));
    assert_eq!(int_attr(r, "process.pid"), int_attr(r, "thread.id"), "single-threaded cat");
    assert!(str_attr(r, "time").is_some_and(|t| t.ends_with('Z')));
    assert!(!records.iter().any(|r| str_attr(r, "file.path") == plain.to_str()), "plain file must not be reported");
}

/// The pid in a record is the process that opened the file: a child we
/// spawn and keep alive until its record is checked.
#[test]
fn record_names_the_live_child_pid() {
    if !bpf_available("record_names_the_live_child_pid") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let key = home.path().join(".ssh/id_ed25519");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nsynthetic\n").unwrap();

    let agent = Agent::start(&[]);
    let sh = which("sh");
    // sh opens the key itself (redirection), then waits on stdin, so its pid
    // is known and alive while we check.
    let mut child = Command::new(&sh)
        .arg("-c")
        .arg(format!("exec 3<'{}'; read _", key.display()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    let records = agent.wait_for_record(Duration::from_secs(5), |r| int_attr(r, "process.pid") == Some(pid));
    drop(child.stdin.take());
    child.wait().unwrap();
    let (status, _, _) = agent.stop(Signal::SIGINT);
    assert!(status.success());
    let r = records
        .iter()
        .find(|r| int_attr(r, "process.pid") == Some(pid))
        .unwrap_or_else(|| panic!("no record for pid {pid} in {records:#?}"));
    assert_eq!(str_attr(r, "file.path"), key.to_str());
    assert_eq!(str_attr(r, "nhi.kind"), Some("ssh.private_key"));
    assert_eq!(str_attr(r, "process.executable.path"), sh.to_str());
    assert_eq!(int_attr(r, "process.parent_pid"), Some(i64::from(std::process::id())));
}

/// A failed open of a credential path is reported too, with its errno.
#[test]
fn failed_open_is_reported_with_errno() {
    if !bpf_available("failed_open_is_reported_with_errno") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let missing = home.path().join(".kube/config");
    let agent = Agent::start(&[]);
    let out = Command::new(which("cat")).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    let path = missing.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(5), |r| str_attr(r, "file.path") == Some(path.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let r = records.iter().find(|r| str_attr(r, "file.path") == Some(path.as_str())).expect("record for the failed open");
    assert_eq!(int_attr(r, "nhi.open.result"), Some(-2));
    assert_eq!(str_attr(r, "error.type"), Some("ENOENT"));
    assert_eq!(str_attr(r, "nhi.kind"), Some("kubernetes.kubeconfig"));
}

/// Stopping detaches the probes: no program the agent loaded is still in
/// the kernel after it exits, and what it saw just before is on disk.
#[test]
fn sigint_detaches_probes_and_flushes_output() {
    if !bpf_available("sigint_detaches_probes_and_flushes_output") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".aws/config");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    // A credential: reads of files that hold none are not records (issue 14).
    fs::write(&cred, "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/e2e-sigint\n").unwrap();
    let agent = Agent::start(&[]);
    let during = agent_program_ids(agent.pid());
    assert!(!during.is_empty(), "the agent holds no BPF programs?");
    fs::read(&cred).unwrap();
    // Signal at once: the record must still reach the file (final drain + flush).
    let (status, records, stderr) = agent.stop(Signal::SIGINT);
    assert!(status.success(), "exit {status}: {}", stderr.join("\n"));
    assert!(stderr.iter().any(|l| l.contains("probes detached")), "{stderr:#?}");
    assert!(
        records.iter().any(|r| str_attr(r, "file.path") == cred.to_str()
            && int_attr(r, "process.pid") == Some(i64::from(std::process::id()))),
        "the read right before SIGINT was lost: {records:#?}"
    );
    // The kernel frees a program after an RCU grace period once the last fd
    // closes, so give it a moment before calling it a leak.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let leaked = loop {
        let after = loaded_program_ids();
        let leaked: Vec<_> = during.iter().filter(|id| after.contains(id)).copied().collect();
        if leaked.is_empty() || std::time::Instant::now() > deadline {
            break leaked;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(leaked.is_empty(), "programs still loaded 10 s after exit: {leaked:?}");
}

fn loaded_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect()
}

/// Ids of the BPF programs a process holds, from its fds' fdinfo
/// (`prog_id:` lines): precise even when other agents run on the host.
fn agent_program_ids(pid: u32) -> Vec<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok())))
        .collect()
}
