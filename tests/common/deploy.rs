//! Deployment tests' shared parts: tools they need (failing under CI=true
//! when missing), and one workload that every sandboxed agent must still
//! see: a credential-file read and a credential variable at exec by a
//! process in a container's cgroup, and a TLS connection's server name.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::{
    Agent, TestCgroup, aws_home, container_id, int_attr,
    net::{Certs, HelloWrite, TlsServer, connections_of, rustls_client},
    records_of, run_in_cgroup, str_attr, unique, which,
};

/// Whether every tool is on PATH. Panics under CI=true when one is not
/// (`cargo xtask test` installs them); elsewhere says so and returns false.
pub fn tools_available(test: &str, tools: &[&str]) -> bool {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> =
        tools.iter().copied().filter(|t| !std::env::split_paths(&paths).any(|d| d.join(t).is_file())).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} not installed (cargo xtask test installs them)", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: {why}");
    }
    eprintln!("{test}: NOT RUN: {why}");
    false
}

/// Where the deployment tests keep what is slow to make (the debootstrap
/// base image, the Python tools' virtual environment), outside the repo and
/// reused between runs. `NHI_TEST_CACHE` overrides.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NHI_TEST_CACHE").map_or_else(|| PathBuf::from("/var/cache/nhi-observer-test"), PathBuf::from)
}

/// A program of the deployment tests' Python environment (made by
/// `cargo xtask test`: kubernetes-validate, checkov, chdb).
pub fn venv_bin(name: &str) -> PathBuf {
    cache_dir().join("venv/bin").join(name)
}

/// Whether the Python environment has `bin`; panics under CI=true if not.
pub fn venv_available(test: &str, bin: &str) -> bool {
    if venv_bin(bin).is_file() {
        return true;
    }
    let why = format!("{} missing (cargo xtask test makes it)", venv_bin(bin).display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: {why}");
    }
    eprintln!("{test}: NOT RUN: {why}");
    false
}

/// Runs a command, panics with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The workload's user (nobody): not the agent's.
pub const USER: u32 = 65534;

/// What the workload did, to find in the records.
pub struct Seen {
    pub key_id: String,
    pub env_key_id: String,
    pub server_name: String,
    pub container_id: String,
    pub reader_pid: u32,
    pub records: Vec<Value>,
}

/// With `agent` running: a process in a docker-named cgroup (container
/// identity from the cgroup name) started with an AWS key in its
/// environment reads an AWS credentials file (as user nobody, in a shell
/// that lives on for two seconds), and this test process makes a
/// TLS connection to a loopback server with a unique server name. Stops the
/// agent (SIGTERM, must exit 0) and asserts it reported all three.
pub fn exercise(agent: Agent, tag: &str) -> Seen {
    let u = unique(tag);
    let digits: String = u.bytes().filter(u8::is_ascii_digit).take(10).map(char::from).collect();
    let key_id = format!("AKIA{:0>16}", &digits[..digits.len().min(16)]);
    let env_key_id = format!("AKIAENV{:0>13}", &digits[..digits.len().min(13)]);
    let (home, cred) = aws_home(&key_id);
    // Another user's file in another user's home (0700, 0600), read by that
    // user's process: the agent reads it only with CAP_DAC_READ_SEARCH,
    // through /proc/<pid>/root only with CAP_SYS_PTRACE.
    run_ok(Command::new("chown").args(["-R", &format!("{USER}:{USER}")]).arg(home.path()));
    run_ok(Command::new("chmod").arg("0600").arg(&cred));
    let cid = container_id(&u);
    let cgroup = TestCgroup::new(&format!("nhi-e2e-{u}"), &format!("system.slice/docker-{cid}.scope"));
    let sh = which("sh");
    let env = [format!("AWS_ACCESS_KEY_ID={env_key_id}"), "AWS_SECRET_ACCESS_KEY=deploy-e2e-not-a-secret".to_owned()];
    let env_refs: Vec<&str> = env.iter().map(String::as_str).collect();
    let setpriv = which("setpriv");
    let (uid, gid) = (format!("--reuid={USER}"), format!("--regid={USER}"));
    // The shell opens the file itself (a redirection) and lives on for two
    // seconds: a containerised agent reads it through /proc/<pid>/root of
    // the live process (after exit it falls back to /proc/1/root, which the
    // test machines' PID 1 does not allow).
    let script = "read -r _ < \"$0\"; sleep 2";
    let argv = [
        setpriv.to_str().expect("setpriv"),
        &uid,
        &gid,
        "--clear-groups",
        sh.to_str().expect("sh"),
        "-c",
        script,
        cred.to_str().expect("cred"),
    ];
    let reader_pid = run_in_cgroup(&cgroup, &argv, &env_refs, None).expect("the reader ran");

    let certs = Certs::new();
    let server = TlsServer::start(&certs, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), None);
    let server_name = format!("{}.nhi.test", u.replace('-', ""));
    rustls_client(&certs, server.addr, &server_name, &["http/1.1"], HelloWrite::Whole, None).expect("TLS handshake");
    let me = std::process::id();
    let want = |records: &[Value]| {
        let file = records_of(records, reader_pid, "file").iter().any(|r| str_attr(r, "nhi.id") == Some(key_id.as_str()));
        let env = records_of(records, reader_pid, "env").iter().any(|r| str_attr(r, "nhi.id") == Some(env_key_id.as_str()));
        let tls = connections_of(records, me).iter().any(|r| str_attr(r, "server.address") == Some(server_name.as_str()));
        file && env && tls
    };
    agent.wait_for_record(Duration::from_secs(20), |_| want(&agent.records()));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "agent exit {status}; stderr:\n{}", stderr.join("\n"));
    let file = records_of(&records, reader_pid, "file");
    let r = file
        .iter()
        .find(|r| str_attr(r, "nhi.id") == Some(key_id.as_str()))
        .unwrap_or_else(|| panic!("no credential-file record of pid {reader_pid} with {key_id}: {file:#?}\nstderr:\n{}", stderr.join("\n")));
    assert_eq!(str_attr(r, "file.path"), cred.to_str());
    assert_eq!(str_attr(r, "nhi.kind"), Some("aws.access_key"));
    assert_eq!(str_attr(r, "process.executable.path"), sh.to_str());
    assert_eq!(int_attr(r, "process.user.id"), Some(i64::from(USER)));
    assert_eq!(str_attr(r, "container.id"), Some(cid.as_str()), "workload identity from the cgroup: {r:#}");
    assert_eq!(str_attr(r, "container.runtime"), Some("docker"));
    let envs = records_of(&records, reader_pid, "env");
    let e = envs
        .iter()
        .find(|r| str_attr(r, "nhi.env.name") == Some("AWS_ACCESS_KEY_ID"))
        .unwrap_or_else(|| panic!("no exec-environment record of pid {reader_pid}: {envs:#?}"));
    assert_eq!(str_attr(e, "nhi.id"), Some(env_key_id.as_str()));
    assert_eq!(str_attr(e, "container.id"), Some(cid.as_str()));
    let conns = connections_of(&records, me);
    let c = conns
        .iter()
        .find(|r| str_attr(r, "server.address") == Some(server_name.as_str()))
        .unwrap_or_else(|| panic!("no nhi.connection with server name {server_name}: {conns:#?}"));
    assert_eq!(str_attr(c, "nhi.server_name.source"), Some("tls.sni"));
    assert_eq!(int_attr(c, "server.port"), Some(i64::from(server.addr.port())));
    drop(home);
    Seen { key_id, env_key_id, server_name, container_id: cid, reader_pid, records }
}
