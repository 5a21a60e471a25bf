//! End-to-end: the agent reads a credential file after the kernel reports
//! its open and emits one record per identity; rotation; files inside
//! another mount namespace; unparsed files.
mod common;

use std::{fs, process::Command, time::Duration};

use common::*;
use nix::sys::signal::Signal;

/// Records of the test's own `cat` reads: another agent on the host (its
/// scan or rescan) may read the same file, and that is an access of its
/// own.
fn by_cat(r: &serde_json::Value) -> bool {
    str_attr(r, "process.executable.path").is_some_and(|p| p.ends_with("/cat"))
}

/// Three profiles in one credentials file: three records, each with its
/// key id as `nhi.id`, all naming the reading process.
#[test]
fn one_record_per_identity_with_its_nhi_id() {
    if !bpf_available("one_record_per_identity_with_its_nhi_id") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".aws/credentials");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(
        &cred,
        "[default]\naws_access_key_id = AKIAE2EAAAAAAAAAAAAA\naws_secret_access_key = e2e-secret-1\n\
         [prod]\naws_access_key_id = AKIAE2EBBBBBBBBBBBBB\naws_secret_access_key = e2e-secret-2\n\
         [profile ci]\nrole_arn = arn:aws:iam::123456789012:role/ci\nsource_profile = default\n",
    )
    .unwrap();
    let agent = Agent::start(&[]);
    let agent_pid = i64::from(agent.pid());
    let out = Command::new(which("cat")).arg(&cred).output().unwrap();
    assert!(out.status.success());
    let path = cred.to_str().unwrap().to_owned();
    // Accesses only: findings about the file (`nhi.finding`) name it too.
    let ours = |r: &serde_json::Value| {
        str_attr(r, "file.path") == Some(path.as_str())
            && str_attr(r, "event.name") == Some("nhi.credential.access")
            && by_cat(r)
    };
    agent.wait_for_record(Duration::from_secs(10), |r| ours(r) && str_attr(r, "nhi.id") == Some("arn:aws:iam::123456789012:role/ci"));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let mine: Vec<_> = records.iter().filter(|r| ours(r)).collect();
    let mut ids: Vec<_> = mine.iter().filter_map(|r| str_attr(r, "nhi.id")).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["AKIAE2EAAAAAAAAAAAAA", "AKIAE2EBBBBBBBBBBBBB", "arn:aws:iam::123456789012:role/ci"], "{mine:#?}");
    let pids: std::collections::BTreeSet<_> = mine.iter().filter_map(|r| int_attr(r, "process.pid")).collect();
    assert_eq!(pids.len(), 1, "one access, one process: {mine:#?}");
    // The agent reads the file after cat did; its own read is not an access.
    assert!(!records.iter().any(|r| int_attr(r, "process.pid") == Some(agent_pid)), "the agent's own read was reported");
    let role = mine.iter().find(|r| str_attr(r, "nhi.id") == Some("arn:aws:iam::123456789012:role/ci")).unwrap();
    assert_eq!(str_attr(role, "nhi.kind"), Some("aws.role"));
    assert_eq!(str_attr(role, "nhi.aws.profile"), Some("ci"));
    assert_eq!(str_attr(role, "nhi.rule"), Some("aws-shared-credentials"));
    assert_eq!(str_attr(role, "nhi.format"), Some("aws-ini"));
    assert!(!records.iter().any(|r| r.to_string().contains("e2e-secret")), "a secret reached the output");
}

/// A rewritten credential file is read again and the change is an event:
/// `nhi.credential.rotation` with the ids before and after.
#[test]
fn rotation_of_a_known_file_is_an_event() {
    if !bpf_available("rotation_of_a_known_file_is_an_event") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let token = home.path().join(".vault-token");
    fs::write(&token, "hvs.E2EROTATIONBEFORE0000001\n").unwrap();
    let agent = Agent::start(&["--config", &write_config(&home, "scan_at_start = false\n")]);
    let path = token.to_str().unwrap().to_owned();
    let cat = which("cat");
    Command::new(&cat).arg(&token).output().unwrap();
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(path.as_str()) && str_attr(r, "nhi.id").is_some());
    // Rewrite by rename, the way credential tools do.
    let tmp = home.path().join(".vault-token.new");
    fs::write(&tmp, "hvs.E2EROTATIONAFTER00000002\n").unwrap();
    fs::rename(&tmp, &token).unwrap();
    Command::new(&cat).arg(&token).output().unwrap();
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "event.name") == Some("nhi.credential.rotation"));
    // An unchanged third read is no rotation.
    Command::new(&cat).arg(&token).output().unwrap();
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let mine: Vec<_> = records.iter().filter(|r| str_attr(r, "file.path") == Some(path.as_str()) && by_cat(r)).collect();
    let access: Vec<_> = mine.iter().filter(|r| str_attr(r, "event.name") == Some("nhi.credential.access")).collect();
    let rotations: Vec<_> = mine.iter().filter(|r| str_attr(r, "event.name") == Some("nhi.credential.rotation")).collect();
    assert_eq!(access.len(), 3, "{mine:#?}");
    assert_eq!(rotations.len(), 1, "{mine:#?}");
    let (before, after) = (str_attr(access[0], "nhi.id").unwrap(), str_attr(access[1], "nhi.id").unwrap());
    assert!(before.starts_with("vault.service_token:hmac-sha256:") && before != after);
    assert_eq!(str_attr(rotations[0], "nhi.rotation.previous_ids"), Some(before));
    assert_eq!(str_attr(rotations[0], "nhi.rotation.current_ids"), Some(after));
    assert_eq!(rotations[0].get("nhi.rotation.identity_changed"), Some(&serde_json::Value::Bool(true)));
    assert_eq!(str_attr(access[2], "nhi.id"), Some(after));
}

/// A process in another mount namespace reads its own copy of a
/// credential path: the agent reads that copy (through /proc/<pid>/root),
/// not the host's file at the same path.
#[test]
fn file_in_another_mount_namespace_is_read_where_the_process_sees_it() {
    if !bpf_available("file_in_another_mount_namespace_is_read_where_the_process_sees_it") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let kube = home.path().join(".kube");
    fs::create_dir_all(&kube).unwrap();
    let host_cfg = "apiVersion: v1\nusers:\n- name: host\n  user: {username: host-user}\n";
    fs::write(kube.join("config"), host_cfg).unwrap();
    let agent = Agent::start(&["--config", &write_config(&home, "scan_at_start = false\n")]);
    // In a private mount namespace: a tmpfs over ~/.kube with another
    // kubeconfig, opened by sh itself (so its pid is the opener), which
    // then stays alive while the agent reads.
    let script = format!(
        "mount -t tmpfs none '{k}' && printf 'apiVersion: v1\\nusers:\\n- name: pod\\n  user: {{username: ns-user}}\\n' > '{k}/config' && exec 3< '{k}/config' && sleep 3",
        k = kube.display()
    );
    let mut child = Command::new(which("unshare")).args(["--mount", "--propagation", "private", "sh", "-c", &script]).spawn().unwrap();
    let path = kube.join("config").to_str().unwrap().to_owned();
    let records =
        agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(path.as_str()) && str_attr(r, "nhi.id").is_some());
    assert!(child.wait().unwrap().success());
    let (status, _, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let r = records
        .iter()
        .find(|r| str_attr(r, "file.path") == Some(path.as_str()) && str_attr(r, "nhi.id").is_some())
        .unwrap_or_else(|| panic!("no identity record for {path}: {records:#?}"));
    assert_eq!(str_attr(r, "nhi.id"), Some("ns-user"));
    assert_eq!(str_attr(r, "nhi.kind"), Some("kubernetes.basic_auth"));
    assert_eq!(str_attr(r, "process.command"), Some("sh"));
    // The host's file at the same path was left alone.
    assert_eq!(fs::read_to_string(kube.join("config")).unwrap(), host_cfg);
}

/// A credential file that does not parse still yields its access record,
/// once, with the reason and no identity.
#[test]
fn unparsed_file_yields_a_file_level_record_with_the_reason() {
    if !bpf_available("unparsed_file_yields_a_file_level_record_with_the_reason") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let kube = home.path().join(".kube/config");
    fs::create_dir_all(kube.parent().unwrap()).unwrap();
    fs::write(&kube, "users:\n- name: x\n  user: {token: e2e-unterminated\n").unwrap();
    let agent = Agent::start(&["--config", &write_config(&home, "scan_at_start = false\n")]);
    Command::new(which("cat")).arg(&kube).output().unwrap();
    let path = kube.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(path.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let mine: Vec<_> = records.iter().filter(|r| str_attr(r, "file.path") == Some(path.as_str()) && by_cat(r)).collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(str_attr(mine[0], "nhi.unparsed.reason"), Some("malformed"));
    assert_eq!(str_attr(mine[0], "nhi.kind"), Some("kubernetes.kubeconfig"));
    assert!(mine[0].get("nhi.id").is_none());
    assert!(!mine[0].to_string().contains("e2e-unterminated"));
}

/// Writes a config file into the temp home and returns its path.
fn write_config(home: &tempfile::TempDir, text: &str) -> String {
    let p = home.path().join("nhi-observer.toml");
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}
