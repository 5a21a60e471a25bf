//! End-to-end, real probes: credential paths the standard spellings miss
//! (issue 14): homes outside /root and /home, and credential paths that
//! are symlinks to FIFOs or are re-pointed after the agent started.
mod common;

use std::{fs, path::Path, process::Command, time::Duration};

use common::*;
use nix::sys::signal::Signal;

fn write_aws(cred: &Path, key_id: &str) {
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(cred, format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = e2e-not-a-secret\n")).unwrap();
}

fn access_at<'a>(records: &'a [serde_json::Value], path: &Path) -> Vec<&'a serde_json::Value> {
    let path = path.to_str().unwrap();
    records
        .iter()
        .filter(|r| str_attr(r, "event.name") == Some("nhi.credential.access") && str_attr(r, "file.path") == Some(path))
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
    let svc = tempfile::Builder::new().prefix("nhi-e2e-svc-").tempdir_in("/var/lib").unwrap();
    let svc_cred = svc.path().join(".aws/credentials");
    write_aws(&svc_cred, "AKIAE2ESERVICEHOMEAA");
    let svc_missing = svc.path().join(".kube/config");
    let ci_home = tempfile::Builder::new().prefix("nhi-e2e-ci-home-").tempdir().unwrap();
    let ci_cred = ci_home.path().join(".aws/credentials");
    write_aws(&ci_cred, "AKIAE2ETEMPHOMEAAAAA");

    let cat = which("cat");
    assert!(Command::new(&cat).arg(&svc_cred).output().unwrap().status.success());
    assert!(!Command::new(&cat).arg(&svc_missing).output().unwrap().status.success());
    let sh = Command::new("sh")
        .args(["-c", "cat \"$HOME/.aws/credentials\""])
        .env("HOME", ci_home.path())
        .output()
        .unwrap();
    assert!(sh.status.success());
    let ci_str = ci_cred.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(ci_str.as_str()));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));

    for (cred, key) in [(&svc_cred, "AKIAE2ESERVICEHOMEAA"), (&ci_cred, "AKIAE2ETEMPHOMEAAAAA")] {
        // The reads by `cat` (the test's own write is a record too).
        let reads: Vec<_> =
            access_at(&records, cred).into_iter().filter(|r| str_attr(r, "process.executable.path") == cat.to_str()).collect();
        assert!(!reads.is_empty(), "no read record for {}", cred.display());
        for r in reads {
            assert_eq!(str_attr(r, "nhi.id"), Some(key), "{r:#}");
            assert_eq!(str_attr(r, "nhi.rule"), Some("aws-shared-credentials"), "{r:#}");
            assert_eq!(str_attr(r, "nhi.file.access"), Some("read"), "{r:#}");
        }
    }
    let failed = access_at(&records, &svc_missing);
    assert_eq!(failed.len(), 1, "the failed open of {}: {failed:#?}", svc_missing.display());
    assert_eq!(str_attr(failed[0], "error.type"), Some("ENOENT"));
    assert_eq!(str_attr(failed[0], "nhi.kind"), Some("kubernetes.kubeconfig"));
}
