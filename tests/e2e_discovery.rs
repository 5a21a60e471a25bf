//! Discovery beyond the standard paths (issue 14), end to end with the real
//! agent binary and, for the agent, the real probes:
//! - `scan` finds credentials by content anywhere, in files named on the
//!   command line too, reports odd names escaped and a catalog path that
//!   is a symlink to a FIFO, and counts public material;
//! - the agent's start scan puts what it found by content on the kernel's
//!   inode watch list: a later read is a credential access;
//! - reading thousands of files of /usr/share and /usr/lib and compiling a
//!   program yields no credential record (public material is counted);
//! - a token in the environment gets its kind and keyed id (the same as in
//!   a file) and becomes a usage of the process's later TLS connection,
//!   with the token in no output;
//! - files named by credential variables (`GOOGLE_APPLICATION_CREDENTIALS`,
//!   relative to the process's cwd; `KUBECONFIG` lists) are watched from
//!   exec: the process's read is a credential access.
mod common;

use std::{
    fs,
    os::unix::ffi::OsStrExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{net::*, *};
use nix::sys::signal::Signal;
use observer_creds::{Keyed, Secret};
use serde_json::Value;

const KEY: &str = include_str!("../observer-creds/tests/corpus/tls/pkcs8-rsa.key");
const KEY_ID: &str = "spki-sha256:203352514f67d2ddbc1fdff445cb590bbdb6e50925729d5189b815f3838973cc";
const CERT: &str = include_str!("../observer-creds/tests/corpus/tls/server.crt");
const GCP_SA: &str = include_str!("../observer-creds/tests/corpus/gcp/service-account.json");
const GCP_SA_ID: &str = "deployer@synthetic-project.iam.gserviceaccount.com/0123456789abcdef0123456789abcdef01234567";
const KUBECONFIG: &str = include_str!("../observer-creds/tests/corpus/kube/config");

fn key_of(state_dir: &Path) -> Keyed {
    Keyed::new(Secret::new(fs::read(state_dir.join("fingerprint.key")).unwrap()))
}

/// `nhi-observer scan --json` over `roots` with `state_dir`'s key.
fn scan_json(state_dir: &Path, roots: &[&Path]) -> (Value, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_nhi-observer"))
        .args(["scan", "--json", "--state-dir"])
        .arg(state_dir)
        .args(roots)
        .output()
        .unwrap();
    assert!(out.status.success(), "scan failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    (serde_json::from_slice(&out.stdout).unwrap(), all)
}

fn ids_of(file: &Value) -> Vec<(String, String)> {
    file["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["nhi.kind"].as_str().unwrap().to_owned(), i["nhi.id"].as_str().unwrap().to_owned()))
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Issue 14, items 4 and 6: content discovery in `scan`, a file named on
/// the command line, a non-UTF-8 name escaped, a symlink to a FIFO at a
/// catalog path reported unparsed, public material counted, no secret out.
#[test]
fn scan_finds_credentials_by_content_outside_the_catalog() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let srv = root.path().join("srv");
    let conf = srv.join("app/conf");
    fs::create_dir_all(&conf).unwrap();
    fs::write(conf.join("settings.yaml"), "database:\n  password: E2E-SCAN-DBPASS-7731x\n").unwrap();
    fs::write(conf.join("notes.txt"), format!("bastion key:\n{KEY}")).unwrap();
    fs::write(conf.join("server.crt"), CERT).unwrap();
    let odd = conf.join(std::ffi::OsStr::from_bytes(b"caf\xe9.conf"));
    fs::write(&odd, "API_TOKEN=glpat-E2ESCAN0odd0123456789\n").unwrap();
    let fifo = conf.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink(&fifo, conf.join(".pgpass")).unwrap();
    // Outside the walked directory, named on the command line.
    let named = root.path().join("aws-backup.txt");
    fs::write(&named, "[default]\naws_access_key_id = AKIAE2ESCANNAMED0001\naws_secret_access_key = E2E-SCAN-AWS-SECRET-0001\n")
        .unwrap();
    let (report, raw) = scan_json(state.path(), &[&srv, &named]);
    let files = report["files"].as_array().unwrap();
    let by_path = |p: &str| files.iter().find(|f| f["path"] == p).unwrap_or_else(|| panic!("{p} not found: {report:#}"));
    let yaml = by_path(conf.join("settings.yaml").to_str().unwrap());
    assert_eq!(yaml["nhi.rule"], "content");
    let keyed = key_of(state.path());
    assert_eq!(ids_of(yaml), [("secret.value".to_owned(), keyed.id("secret.value", b"E2E-SCAN-DBPASS-7731x"))]);
    assert_eq!(ids_of(by_path(conf.join("notes.txt").to_str().unwrap())), [("tls.private_key".to_owned(), KEY_ID.to_owned())]);
    let aws = by_path(named.to_str().unwrap());
    assert_eq!(ids_of(aws)[0].1, "AKIAE2ESCANNAMED0001");
    assert!(aws["file.inode"].is_string(), "{aws:#}");
    let escaped = format!("{}/caf\\xe9.conf", conf.display());
    let odd_file = by_path(&escaped);
    assert_eq!(odd_file["nhi.file.path_escaped"], true);
    assert_eq!(ids_of(odd_file)[0].0, "gitlab.pat");
    let link = by_path(conf.join(".pgpass").to_str().unwrap());
    assert_eq!((link["nhi.rule"].as_str(), link["nhi.unparsed.reason"].as_str()), (Some("pgpass"), Some("unreadable")));
    assert!(link["nhi.unparsed.detail"].as_str().unwrap().contains("FIFO"), "{link:#}");
    assert_eq!(report["skipped"]["public_material"], 1, "{report:#}");
    assert_eq!(files.len(), 5, "{report:#}");
    for secret in ["E2E-SCAN-DBPASS-7731x", "glpat-E2ESCAN0odd0123456789", "E2E-SCAN-AWS-SECRET-0001", "MIIEvQIBADANBgkqhkiG9w0BAQEF"] {
        assert!(!contains(&raw, secret), "{secret} in the scan's output");
    }
}

/// Issue 14, item 4: what the agent's start scan finds by content joins
/// the kernel's inode watch list; a later read is a credential access,
/// caught by inode, with the identity.
#[test]
fn start_scan_watches_files_found_by_content() {
    if !bpf_available("start_scan_watches_files_found_by_content") {
        return;
    }
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("deploy/backup-of-creds.txt");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "[ci]\naws_access_key_id = AKIAE2ESTARTSCAN0001\naws_secret_access_key = E2E-START-SCAN-SECRET-01\n")
        .unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let args = config_args(cfg.path(), &format!("scan_roots = [{:?}]\n", root.path()));
    let mut agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    agent.wait_for_log("at-rest scan done", Duration::from_secs(60));
    // The scan thread hands its inodes to the main loop: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new(which("cat")).arg(&file).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let path = file.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(path.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let r = records
        .iter()
        .find(|r| str_attr(r, "file.path") == Some(path.as_str()) && str_attr(r, "process.command") == Some("cat"))
        .unwrap_or_else(|| panic!("no record of {path}: {records:#?}"));
    assert_eq!(str_attr(r, "nhi.rule"), Some("content"));
    assert_eq!(str_attr(r, "nhi.format"), Some("content"));
    assert_eq!(str_attr(r, "nhi.match"), Some("inode"));
    assert_eq!(str_attr(r, "nhi.id"), Some("AKIAE2ESTARTSCAN0001"));
    assert_eq!(str_attr(r, "nhi.detector"), Some("aws-credentials"));
}

/// Reads every file of /usr/share and /usr/lib that a catalog name or
/// suffix matches (certificates, example and test keys, docs), then
/// others up to 20,000, then compiles a program with gcc, then reads one
/// real credential (the control).
const PACKAGE_TREE_WORKLOAD: &str = r##"
import os, subprocess, sys
work, control = sys.argv[1], sys.argv[2]
suffixes = (".pem", ".key", ".crt", ".cer", ".p12", ".pfx", ".kubeconfig")
names = {"token", "auth.json", ".netrc", ".env", ".npmrc", ".pypirc", ".pgpass", "service-account.json", "jwt_svid.token"}
picked, rest = [], []
for top in ("/usr/share", "/usr/lib"):
    for d, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            (picked if f.endswith(suffixes) or f in names else rest).append(p)
paths = picked + rest[:max(0, 20000 - len(picked))]
read = 0
for p in paths:
    try:
        with open(p, "rb") as fh:
            fh.read(4096)
        read += 1
    except OSError:
        pass
src = os.path.join(work, "hello.c")
with open(src, "w") as fh:
    fh.write("#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n")
subprocess.run(["gcc", "-O1", "-o", os.path.join(work, "hello"), src], check=True)
subprocess.run([os.path.join(work, "hello")], check=True, stdout=subprocess.DEVNULL)
with open(control, "rb") as fh:
    fh.read()
print(read, len(picked))
"##;

/// Issue 14, item 7: public material, examples and test fixtures of
/// package trees are not credential accesses; a real credential read by
/// the same workload is.
#[test]
fn package_trees_and_a_compile_yield_no_credential_record() {
    if !bpf_available("package_trees_and_a_compile_yield_no_credential_record") {
        return;
    }
    which("gcc");
    let _serial = serial();
    let work = tempfile::tempdir().unwrap();
    let control = work.path().join("e2e-noise-control.key");
    fs::write(&control, KEY).unwrap();
    let agent = Agent::start(&["--config", config_file("scan_at_start = false\n").path().to_str().unwrap()]);
    let (pid, out) = python(PACKAGE_TREE_WORKLOAD, &[work.path().to_str().unwrap(), control.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&out.stdout);
    let mut counts = printed.split_whitespace().map(|n| n.parse::<usize>().unwrap());
    let (read, picked) = (counts.next().unwrap(), counts.next().unwrap());
    assert!(read >= 20_000, "the workload read only {read} files");
    assert!(picked >= 20, "too few catalog-named files under /usr to be a test: {picked}");
    let control_path = control.to_str().unwrap().to_owned();
    agent.wait_for_record(Duration::from_secs(20), |r| str_attr(r, "file.path") == Some(control_path.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let ours = |r: &&Value| {
        int_attr(r, "process.pid") == Some(i64::from(pid))
            || r["nhi.process.ancestors"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with(&format!("{pid} ")))))
    };
    let mine: Vec<&Value> = named(&records, "nhi.credential.access").into_iter().filter(ours).collect();
    let others: Vec<_> = mine.iter().filter(|r| str_attr(r, "file.path") != Some(control_path.as_str())).collect();
    assert!(others.is_empty(), "{} credential records from package trees and gcc: {others:#?}", others.len());
    assert_eq!(mine.len(), 1, "the control credential must be reported once: {mine:#?}");
    assert_eq!(str_attr(mine[0], "nhi.id"), Some(KEY_ID));
    // Seen by the kernel, left out by the agent: counted.
    let stats = final_stats(&records);
    assert!(int_attr(stats, "nhi.agent.candidates.rejected").is_some_and(|n| n > 0), "{stats:#}");
}

/// Connects with TLS (SNI `argv[2]`) to 127.0.0.1:`argv[1]` and gets a
/// response.
const CONNECT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t = ctx.wrap_socket(s, server_hostname=sys.argv[2])
t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
assert t.recv(100).startswith(b"HTTP/1.1 200"), "bad response"
t.close()
"#;

/// Issue 14, item 3: an environment token's kind comes from its prefix,
/// its id is the keyed fingerprint the same token has in a file, and the
/// process's later TLS connection makes it a usage; the token is in no
/// output of the agent or of scan.
#[test]
fn env_token_has_the_file_id_and_becomes_a_usage() {
    if !bpf_available("env_token_has_the_file_id_and_becomes_a_usage") {
        return;
    }
    let _serial = serial();
    const TOKEN: &str = "ghp_E2eEnvT0kenUsage00000000000000000001";
    let server = TlsServer::start(&Certs::new(), "127.0.0.1:0".parse().unwrap(), None);
    let cfg = tempfile::tempdir().unwrap();
    let args = config_args(cfg.path(), "scan_at_start = false\n[usage]\nflush_interval_secs = 1\n");
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let sni = "api.github.nhi.test";
    let child = Command::new("python3")
        .args(["-I", "-S", "-c", CONNECT])
        .arg(server.addr.port().to_string())
        .arg(sni)
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(child.status.success(), "{}", String::from_utf8_lossy(&child.stderr));
    let want = key_of(agent.state_dir.path()).id("github.pat", TOKEN.as_bytes());
    // Usage is flushed every second: the first record may come before the
    // connection is linked, so wait for the one that names a destination.
    agent.wait_for_record(Duration::from_secs(20), |r| {
        str_attr(r, "event.name") == Some("nhi.usage")
            && str_attr(r, "nhi.id") == Some(want.as_str())
            && str_attr(r, "nhi.usage.confidence").is_some()
    });
    let (status, records, stderr, state) = agent.stop_keeping_state(Signal::SIGTERM);
    assert!(status.success());
    let access = named(&records, "nhi.credential.access")
        .into_iter()
        .find(|r| str_attr(r, "nhi.source") == Some("env") && str_attr(r, "nhi.id") == Some(want.as_str()))
        .unwrap_or_else(|| panic!("no env access with {want}"));
    assert_eq!(str_attr(access, "nhi.kind"), Some("github.pat"));
    assert_eq!(str_attr(access, "nhi.env.name"), Some("GITHUB_TOKEN"));
    let usage = named(&records, "nhi.usage")
        .into_iter()
        .rfind(|r| str_attr(r, "nhi.id") == Some(want.as_str()) && str_attr(r, "nhi.usage.confidence").is_some())
        .unwrap_or_else(|| panic!("no nhi.usage of {want} with a destination"));
    assert_eq!(str_attr(usage, "nhi.source"), Some("env"));
    assert_eq!(str_attr(usage, "nhi.usage.confidence"), Some("direct"));
    assert_eq!(str_attr(usage, "server.address"), Some(sni));
    // The same token in a file: the same id (scan with the agent's key).
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ci.sh"), format!("export GITHUB_TOKEN={TOKEN}\n")).unwrap();
    let (report, scan_out) = scan_json(state.path(), &[dir.path()]);
    let file_ids = ids_of(&report["files"][0]);
    assert!(file_ids.contains(&("github.pat".to_owned(), want.clone())), "{report:#}");
    // Nowhere: JSON lines, database, agent stdout, logs, scan output.
    let mut outputs: Vec<(String, Vec<u8>)> =
        common::files_under(state.path()).into_iter().map(|p| (p.display().to_string(), fs::read(&p).unwrap_or_default())).collect();
    outputs.push(("agent stderr".into(), stderr.join("\n").into_bytes()));
    outputs.push(("scan output".into(), scan_out));
    for (place, bytes) in outputs {
        assert!(!contains(&bytes, TOKEN), "the token is in {place}");
    }
}

/// Issue 14, item 2: a file named by `GOOGLE_APPLICATION_CREDENTIALS`
/// (relative to the process's cwd) and one in a `KUBECONFIG` list, at
/// paths no catalog rule names, are watched from exec: the process's read
/// is a credential access, with the file's identity.
#[test]
fn files_named_by_the_environment_are_watched_from_exec() {
    if !bpf_available("files_named_by_the_environment_are_watched_from_exec") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("keys/sa.json");
    fs::create_dir_all(sa.parent().unwrap()).unwrap();
    fs::write(&sa, GCP_SA).unwrap();
    let kube = dir.path().join("clusters/prod.yaml");
    fs::create_dir_all(kube.parent().unwrap()).unwrap();
    fs::write(&kube, KUBECONFIG).unwrap();
    let agent = Agent::start(&["--config", config_file("scan_at_start = false\n").path().to_str().unwrap()]);
    // Like a real client, the process starts before it reads its key: the
    // agent watches the file from the moment it handles the exec.
    let reader = "import os, sys, time\ntime.sleep(1.0)\nfor v in sys.argv[1:]:\n    with open(os.environ[v].split(':')[0], 'rb') as f: f.read()\n";
    let run = |var: &str, value: &str| {
        let child = Command::new("python3")
            .args(["-I", "-S", "-c", reader, var])
            .env(var, value)
            .current_dir(dir.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        pid
    };
    let pids = [run("GOOGLE_APPLICATION_CREDENTIALS", "keys/sa.json"), run("KUBECONFIG", &format!("{}:/nonexistent/kubeconfig", kube.display()))];
    let (sa_path, kube_path) = (sa.to_str().unwrap().to_owned(), kube.to_str().unwrap().to_owned());
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(kube_path.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let of = |p: &str| -> Vec<&Value> {
        named(&records, "nhi.credential.access")
            .into_iter()
            .filter(|r| str_attr(r, "file.path") == Some(p) && int_attr(r, "process.pid").is_some_and(|x| pids.contains(&x)))
            .collect()
    };
    let sa_recs = of(&sa_path);
    assert_eq!(sa_recs.len(), 1, "{sa_recs:#?}");
    assert_eq!(str_attr(sa_recs[0], "nhi.rule"), Some("gcp-service-account-key"));
    assert_eq!(str_attr(sa_recs[0], "nhi.id"), Some(GCP_SA_ID));
    assert_eq!(str_attr(sa_recs[0], "nhi.match"), Some("inode"));
    let kube_recs = of(&kube_path);
    assert!(kube_recs.iter().all(|r| str_attr(r, "nhi.rule") == Some("kubeconfig")), "{kube_recs:#?}");
    let kube_ids: std::collections::BTreeSet<_> = kube_recs.iter().filter_map(|r| str_attr(r, "nhi.id")).collect();
    assert!(kube_ids.contains("payments/api"), "{kube_recs:#?}");
}

/// Issue 14, item 6: a credential under a directory whose name is not
/// UTF-8 is read and reported with the path's bytes escaped; a FIFO at a
/// credential path is reported unparsed, with the reason, never read (a
/// symlink to one is not: the kernel matches the resolved name, see the
/// design notes).
#[test]
fn odd_names_and_special_files_are_reported() {
    if !bpf_available("odd_names_and_special_files_are_reported") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let odd_dir = home.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    fs::create_dir_all(&odd_dir).unwrap();
    const TOKEN: &str = "ghp_E2eOddName0000000000000000000000001";
    let env = odd_dir.join(".env");
    fs::write(&env, format!("GITHUB_TOKEN={TOKEN}\n")).unwrap();
    let link = home.path().join(".aws/credentials");
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&link, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let agent = Agent::start(&["--config", config_file("scan_at_start = false\n").path().to_str().unwrap()]);
    let script = "import os, sys\nos.close(os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK))\nwith open(sys.argv[2], 'rb') as f: f.read()\n";
    let child = Command::new("python3").args(["-I", "-S", "-c", script]).arg(&link).arg(&env).spawn().unwrap();
    let pid = i64::from(child.id());
    assert!(child.wait_with_output().unwrap().status.success());
    let escaped = format!("{}/caf\\xe9/.env", home.path().display());
    agent.wait_for_record(Duration::from_secs(10), |r| str_attr(r, "file.path") == Some(escaped.as_str()));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let mine: Vec<&Value> = records.iter().filter(|r| int_attr(r, "process.pid") == Some(pid)).collect();
    let odd = mine.iter().find(|r| str_attr(r, "file.path") == Some(escaped.as_str())).unwrap_or_else(|| panic!("{mine:#?}"));
    assert_eq!(odd["nhi.file.path_escaped"], true);
    assert_eq!(str_attr(odd, "nhi.kind"), Some("github.pat"));
    assert!(str_attr(odd, "nhi.id").is_some_and(|i| i.starts_with("github.pat:hmac-sha256:")));
    let special = mine
        .iter()
        .find(|r| str_attr(r, "nhi.rule") == Some("aws-shared-credentials"))
        .unwrap_or_else(|| panic!("no record of the FIFO credential path: {mine:#?}"));
    assert_eq!(str_attr(special, "nhi.unparsed.reason"), Some("unreadable"));
    assert!(!serde_json::to_string(&records).unwrap().contains(TOKEN));
}
