//! End-to-end, real probes: credential paths the standard spellings miss
//! (issue 14): homes outside /root and /home, and credential paths that
//! are symlinks to FIFOs or are re-pointed after the agent started.
mod common;

use std::{fs, path::Path, process::Command, time::Duration};

use common::*;
use nix::sys::signal::Signal;

fn write_aws(cred: &Path, key_id: &str) {
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(
        cred,
        format!(
            "[default]\naws_access_key_id = {key_id}\naws_secret_access_key = e2e-not-a-secret\n"
        ),
    )
    .unwrap();
}

fn access_at<'a>(records: &'a [serde_json::Value], path: &Path) -> Vec<&'a serde_json::Value> {
    let path = path.to_str().unwrap();
    records
        .iter()
        .filter(|r| {
            str_attr(r, "event.name") == Some("nhi.credential.access")
                && str_attr(r, "file.path") == Some(path)
        })
        .collect()
}

/// Issue 14 item 1: a credential created after start in a service user's
/// home (`/var/lib/<svc>`) or under a temporary HOME is seen at its first
/// open, failed opens included; home-relative rules match as path
/// suffixes wherever the home sits.
#[test]
fn credentials_in_homes_outside_home_are_seen_at_first_open() {
    if !bpf_available("credentials_in_homes_outside_home_are_seen_at_first_open") {
        return;
    }
    let _serial = serial();
    let agent = Agent::start(&[]);
    // Created after the agent started: no start scan knows them.
    let svc = tempfile::Builder::new()
        .prefix("nhi-e2e-svc-")
        .tempdir_in("/var/lib")
        .unwrap();
    let svc_cred = svc.path().join(".aws/credentials");
    write_aws(&svc_cred, "AKIAE2ESERVICEHOMEAA");
    let svc_missing = svc.path().join(".kube/config");
    let ci_home = tempfile::Builder::new()
        .prefix("nhi-e2e-ci-home-")
        .tempdir()
        .unwrap();
    let ci_cred = ci_home.path().join(".aws/credentials");
    write_aws(&ci_cred, "AKIAE2ETEMPHOMEAAAAA");

    let cat = which("cat");
    assert!(
        Command::new(&cat)
            .arg(&svc_cred)
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        !Command::new(&cat)
            .arg(&svc_missing)
            .output()
            .unwrap()
            .status
            .success()
    );
    let sh = Command::new("sh")
        .args(["-c", "cat \"$HOME/.aws/credentials\""])
        .env("HOME", ci_home.path())
        .output()
        .unwrap();
    assert!(sh.status.success());
    let ci_str = ci_cred.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        str_attr(r, "file.path") == Some(ci_str.as_str())
    });
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "agent exit {status}; stderr:\n{}",
        stderr.join("\n")
    );

    for (cred, key) in [
        (&svc_cred, "AKIAE2ESERVICEHOMEAA"),
        (&ci_cred, "AKIAE2ETEMPHOMEAAAAA"),
    ] {
        // The reads by `cat` (the test's own write is a record too).
        let reads: Vec<_> = access_at(&records, cred)
            .into_iter()
            .filter(|r| str_attr(r, "process.executable.path") == cat.to_str())
            .collect();
        assert!(!reads.is_empty(), "no read record for {}", cred.display());
        for r in reads {
            assert_eq!(str_attr(r, "nhi.id"), Some(key), "{r:#}");
            assert_eq!(
                str_attr(r, "nhi.rule"),
                Some("aws-shared-credentials"),
                "{r:#}"
            );
            assert_eq!(str_attr(r, "nhi.file.access"), Some("read"), "{r:#}");
        }
    }
    let failed = access_at(&records, &svc_missing);
    assert_eq!(
        failed.len(),
        1,
        "the failed open of {}: {failed:#?}",
        svc_missing.display()
    );
    assert_eq!(str_attr(failed[0], "error.type"), Some("ENOENT"));
    assert_eq!(
        str_attr(failed[0], "nhi.kind"),
        Some("kubernetes.kubeconfig")
    );
}

/// Runs `sh -c "exec 3<>PATH; read _"`: opens PATH read-write (a FIFO so
/// opened does not wait for a peer) and holds it until stdin closes.
fn hold_open(path: &Path) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<>'{}'; read _", path.display()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Issue 14 item 6: a credential path that is a symlink to a FIFO is an
/// access, unparsed with its reason, and the agent does not block on the
/// FIFO; the same FIFO opened by its own name is no credential access.
#[test]
fn credential_path_symlinked_to_a_fifo_is_reported_unparsed() {
    if !bpf_available("credential_path_symlinked_to_a_fifo_is_reported_unparsed") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let aws = home.path().join(".aws");
    fs::create_dir_all(&aws).unwrap();
    let fifo = home.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cred = aws.join("credentials");
    std::os::unix::fs::symlink(&fifo, &cred).unwrap();

    let agent = Agent::start(&[]);
    let mut via_link = hold_open(&cred);
    let pid = i64::from(via_link.id());
    agent.wait_for_record(Duration::from_secs(10), |r| {
        int_attr(r, "process.pid") == Some(pid)
    });
    let mut direct = hold_open(&fifo);
    let direct_pid = i64::from(direct.id());
    // A marker after the direct open, from the same kind of process: once
    // its record is in, the direct open's would be too.
    let missing = home.path().join(".kube/config");
    let marker = Command::new(which("cat")).arg(&missing).output().unwrap();
    assert!(!marker.status.success());
    let missing_str = missing.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        str_attr(r, "file.path") == Some(missing_str.as_str())
    });
    for child in [&mut via_link, &mut direct] {
        drop(child.stdin.take());
        child.wait().unwrap();
    }
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "agent exit {status}; stderr:\n{}",
        stderr.join("\n")
    );

    let mine: Vec<_> = records
        .iter()
        .filter(|r| int_attr(r, "process.pid") == Some(pid))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let r = mine[0];
    assert_eq!(str_attr(r, "event.name"), Some("nhi.credential.access"));
    assert_eq!(str_attr(r, "file.path"), fifo.to_str(), "{r:#}");
    assert_eq!(
        str_attr(r, "nhi.file.requested_path"),
        cred.to_str(),
        "{r:#}"
    );
    assert_eq!(
        str_attr(r, "nhi.rule"),
        Some("aws-shared-credentials"),
        "{r:#}"
    );
    assert_eq!(
        str_attr(r, "nhi.unparsed.reason"),
        Some("unreadable"),
        "{r:#}"
    );
    assert_eq!(
        str_attr(r, "nhi.unparsed.detail"),
        Some("not a regular file: a FIFO"),
        "{r:#}"
    );
    assert!(r.get("nhi.id").is_none(), "{r:#}");
    assert!(
        !records
            .iter()
            .any(|r| int_attr(r, "process.pid") == Some(direct_pid)),
        "the FIFO opened by its own name was reported"
    );
}

/// Issue 14 item 6: a credential path re-pointed after the agent started
/// (the symlink `~/.aws/credentials` switched to another file whose own
/// name no rule knows) is recognised at the next open, not at the next
/// rescan: the agent watches the rules' directories and reloads its watch
/// list when such a name changes.
#[test]
fn credential_symlink_repointed_after_start_is_recognised() {
    if !bpf_available("credential_symlink_repointed_after_start_is_recognised") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let store = home.path().join("store");
    let first = store.join("first.ini");
    let second = store.join("second.ini");
    write_aws(&first, "AKIAE2ELINKFIRSTAAAA");
    write_aws(&second, "AKIAE2ELINKSECONDAAA");
    let aws = home.path().join(".aws");
    fs::create_dir_all(&aws).unwrap();
    let cred = aws.join("credentials");
    std::os::unix::fs::symlink(&first, &cred).unwrap();

    let mut agent = Agent::start(&[]);
    // `ln -sfn` as tools do it: a new link renamed over the old one.
    let tmp = aws.join(".credentials.new");
    std::os::unix::fs::symlink(&second, &tmp).unwrap();
    fs::rename(&tmp, &cred).unwrap();
    agent.wait_for_log_count("a credential path changed", 1, Duration::from_secs(10));
    let cat = which("cat");
    let out = Command::new(&cat).arg(&cred).output().unwrap();
    assert!(out.status.success());
    let second_str = second.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        str_attr(r, "file.path") == Some(second_str.as_str())
    });
    // And again (the directory watch outlives a reload). One atomic change,
    // so exactly one reload follows it.
    let third = store.join("third.ini");
    write_aws(&third, "AKIAE2ELINKTHIRDAAAA");
    std::os::unix::fs::symlink(&third, &tmp).unwrap();
    fs::rename(&tmp, &cred).unwrap();
    agent.wait_for_log_count("a credential path changed", 2, Duration::from_secs(10));
    assert!(
        Command::new(&cat)
            .arg(&cred)
            .output()
            .unwrap()
            .status
            .success()
    );
    let third_str = third.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| {
        str_attr(r, "file.path") == Some(third_str.as_str())
    });
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "agent exit {status}; stderr:\n{}",
        stderr.join("\n")
    );

    let reads: Vec<_> = access_at(&records, &second)
        .into_iter()
        .filter(|r| str_attr(r, "process.executable.path") == cat.to_str())
        .collect();
    assert_eq!(reads.len(), 1, "{reads:#?}");
    let r = reads[0];
    assert_eq!(str_attr(r, "nhi.id"), Some("AKIAE2ELINKSECONDAAA"), "{r:#}");
    assert_eq!(
        str_attr(r, "nhi.file.requested_path"),
        cred.to_str(),
        "{r:#}"
    );
    assert_eq!(
        str_attr(r, "nhi.rule"),
        Some("aws-shared-credentials"),
        "{r:#}"
    );
    assert_eq!(
        str_attr(r, "nhi.match"),
        Some("inode"),
        "the kernel knew the new target: {r:#}"
    );
    let third_reads: Vec<_> = access_at(&records, &third)
        .into_iter()
        .filter(|r| str_attr(r, "process.executable.path") == cat.to_str())
        .collect();
    assert_eq!(third_reads.len(), 1, "{third_reads:#?}");
    assert_eq!(
        str_attr(third_reads[0], "nhi.id"),
        Some("AKIAE2ELINKTHIRDAAAA")
    );
}
