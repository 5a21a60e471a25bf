//! End-to-end: workload identity on the records of the real agent, with the
//! real probes, real cgroup v2 directories named as systemd, docker,
//! containerd, cri-o, podman and the kubelet name them, a service-account
//! token in a pod's own mount namespace, short-lived processes, pid reuse,
//! environment credentials and a terminal.
mod common;

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A credential file under a temporary home, and its path.
fn planted_credential() -> (tempfile::TempDir, String) {
    let home = temp_home();
    let cred = home.path().join(".aws/credentials");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(&cred, "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n").unwrap();
    let path = cred.to_str().unwrap().to_owned();
    (home, path)
}

/// A shell that waits for a line, opens `path` itself (so the record's pid
/// is the shell's), then waits until its stdin closes.
fn shell_opening(path: &str) -> std::process::Child {
    Command::new(which("sh"))
        .arg("-c")
        .arg(format!("read _; exec 3<'{path}'; read _"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap()
}

fn strs(r: &Value, key: &str) -> Vec<String> {
    r.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

struct Layout {
    rel: String,
    unit: Option<String>,
    container: Option<String>,
    runtime: Option<&'static str>,
    pod: Option<String>,
}

/// Every cgroup naming scheme we read, with a live process moved into each:
/// the record of its credential open names the unit, container, runtime and
/// pod, and the cgroup path.
#[test]
fn cgroup_names_become_unit_container_and_pod() {
    if !bpf_available("cgroup_names_become_unit_container_and_pod") {
        return;
    }
    let _serial = serial();
    let (_home, cred) = planted_credential();
    let root = unique("nhi-e2e-cg");
    let id = |n: u32| container_id(&format!("{root}/{n}"));
    let pod = |n: u32| pod_uid(&format!("{root}/{n}"));
    let layout = |rel: String, unit: Option<&str>, c: Option<String>, rt: Option<&'static str>, pod: Option<String>| {
        Layout { rel, unit: unit.map(str::to_owned), container: c, runtime: rt, pod }
    };
    let layouts = vec![
        layout("system.slice/nhi-e2e-app.service".into(), Some("nhi-e2e-app.service"), None, None, None),
        layout(format!("system.slice/docker-{}.scope", id(1)), None, Some(id(1)), Some("docker"), None),
        layout(format!("docker/{}", id(2)), None, Some(id(2)), Some("docker"), None),
        layout(
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
                pod(3).replace('-', "_"),
                id(3)
            ),
            None,
            Some(id(3)),
            Some("containerd"),
            Some(pod(3)),
        ),
        layout(
            format!("kubepods.slice/kubepods-pod{}.slice/crio-{}.scope", pod(4).replace('-', "_"), id(4)),
            None,
            Some(id(4)),
            Some("cri-o"),
            Some(pod(4)),
        ),
        layout(format!("machine.slice/libpod-{}.scope", id(5)), None, Some(id(5)), Some("podman"), None),
        layout(format!("kubepods/burstable/pod{}/{}", pod(6), id(6)), None, Some(id(6)), None, Some(pod(6))),
    ];

    let agent = Agent::start(&[]);
    let mut running = Vec::new();
    for l in &layouts {
        let cg = TestCgroup::new(&root, &l.rel);
        let mut sh = shell_opening(&cred);
        cg.add(sh.id());
        writeln!(sh.stdin.as_mut().unwrap()).unwrap();
        running.push((cg, sh));
    }
    let pids: Vec<i64> = running.iter().map(|(_, sh)| i64::from(sh.id())).collect();
    agent.wait_for_record(Duration::from_secs(10), |_| {
        let records = agent.records();
        pids.iter().all(|p| records.iter().any(|r| int_attr(r, "process.pid") == Some(*p)))
    });
    for (_, sh) in &mut running {
        drop(sh.stdin.take());
        sh.wait().unwrap();
    }
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    for ((cg, sh), l) in running.iter().zip(&layouts) {
        let mine = records_of(&records, sh.id(), "file");
        assert_eq!(mine.len(), 1, "{}: {mine:#?}", l.rel);
        let r = mine[0];
        assert_eq!(str_attr(r, "file.path"), Some(cred.as_str()));
        assert_eq!(str_attr(r, "nhi.cgroup.path"), Some(cg.path.as_str()), "{r:#}");
        assert_eq!(str_attr(r, "nhi.systemd.unit"), l.unit.as_deref(), "{}: {r:#}", l.rel);
        assert_eq!(str_attr(r, "container.id"), l.container.as_deref(), "{}: {r:#}", l.rel);
        assert_eq!(str_attr(r, "container.runtime"), l.runtime, "{}: {r:#}", l.rel);
        assert_eq!(str_attr(r, "k8s.pod.uid"), l.pod.as_deref(), "{}: {r:#}", l.rel);
        assert_eq!(str_attr(r, "process.user.name"), Some("root"));
        assert_eq!(r.get("process.interactive"), Some(&Value::Bool(false)), "no terminal: {r:#}");
        assert!(str_attr(r, "process.creation.time").is_some_and(|t| t.ends_with('Z')));
        let ancestors = strs(r, "nhi.process.ancestors");
        assert!(
            ancestors.first().is_some_and(|a| a.starts_with(&format!("{} ", std::process::id()))),
            "the test process is the parent: {ancestors:?}"
        );
    }
}

/// A fabricated service-account token mounted at the in-pod path inside
/// the pod's own mount namespace (invisible from the host): records of the
/// pod's processes carry the token's namespace, pod and service account,
/// including a short-lived child that is gone when the agent looks.
#[test]
fn service_account_token_in_a_pod_mount_namespace() {
    if !bpf_available("service_account_token_in_a_pod_mount_namespace") {
        return;
    }
    let _serial = serial();
    let root = unique("nhi-e2e-sa");
    let pod = pod_uid(&root);
    let cid = container_id(&root);
    let sa_uid = pod_uid(&format!("{root}/sa"));
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": 4_102_444_800_i64,
        "iat": 1_700_000_000,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": "payments",
            "node": {"name": "node-e2e", "uid": "00000000-0000-4000-8000-000000000000"},
            "pod": {"name": "api-7d9f6", "uid": pod},
            "serviceaccount": {"name": "api", "uid": sa_uid},
            "warnafter": 1_700_003_607
        },
        "sub": "system:serviceaccount:payments:api"
    });
    let token = fake_jwt(&claims);
    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), &token).unwrap();
    let cg = TestCgroup::new(
        &root,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{cid}.scope",
            pod.replace('-', "_")
        ),
    );
    const DIR: &str = "/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p {DIR} && cp '{}' {DIR}/token && echo ready && read _ && \
         exec 3</var/run/secrets/kubernetes.io/serviceaccount/token && cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null && \
         echo done && read _",
        src.path().display()
    );

    let agent = Agent::start(&[]);
    let mut sh = Command::new(which("unshare"))
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add(sh.id());
    let mut out = BufReader::new(sh.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the namespace setup failed");
    assert!(!Path::new("/run/secrets/kubernetes.io/serviceaccount/token").exists(), "the token leaked to the host");
    writeln!(sh.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    let pid = i64::from(sh.id());
    agent.wait_for_record(Duration::from_secs(10), |r| {
        int_attr(r, "process.parent_pid") == Some(pid) && str_attr(r, "nhi.k8s.service_account").is_some()
    });
    drop(sh.stdin.take());
    sh.wait().unwrap();
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    let token_opens: Vec<_> = records
        .iter()
        .filter(|r| str_attr(r, "nhi.file.requested_path") == Some("/var/run/secrets/kubernetes.io/serviceaccount/token"))
        .filter(|r| int_attr(r, "process.pid") == Some(pid) || int_attr(r, "process.parent_pid") == Some(pid))
        .collect();
    assert_eq!(token_opens.len(), 2, "the shell's and cat's opens: {token_opens:#?}");
    for r in token_opens {
        assert_eq!(str_attr(r, "k8s.namespace.name"), Some("payments"), "{r:#}");
        assert_eq!(str_attr(r, "k8s.pod.name"), Some("api-7d9f6"));
        assert_eq!(str_attr(r, "k8s.pod.uid"), Some(pod.as_str()));
        assert_eq!(str_attr(r, "nhi.k8s.service_account"), Some("payments/api"));
        assert_eq!(str_attr(r, "nhi.k8s.service_account.uid"), Some(sa_uid.as_str()));
        assert_eq!(str_attr(r, "k8s.node.name"), Some("node-e2e"));
        assert_eq!(str_attr(r, "nhi.k8s.token.issuer"), Some("https://kubernetes.default.svc.cluster.local"));
        assert_eq!(str_attr(r, "nhi.k8s.token.expires"), Some("2100-01-01T00:00:00Z"));
        assert_eq!(str_attr(r, "container.id"), Some(cid.as_str()));
        assert_eq!(str_attr(r, "container.runtime"), Some("containerd"));
    }
    assert!(!serde_json::to_string(&records).unwrap().contains(&token), "the token must never be emitted");
    assert!(!stderr.join("\n").contains(&token));
}

/// An unsigned JWT with these claims (what a projected token looks like).
fn fake_jwt(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!("{}.{}.{}", b64(br#"{"alg":"RS256","kid":"e2e"}"#), b64(claims.to_string().as_bytes()), b64(b"not-a-signature"))
}

/// A process that execs, reads a credential and exits within milliseconds,
/// in a cgroup that is removed right after, all while the agent is stopped:
/// when the agent looks, neither /proc nor the cgroup tree knows them, and
/// the records still carry the executable, arguments, parent, user,
/// container and environment credentials captured by the kernel.
#[test]
fn short_lived_process_keeps_its_identity() {
    if !bpf_available("short_lived_process_keeps_its_identity") {
        return;
    }
    let _serial = serial();
    let (_home, cred) = planted_credential();
    let root = unique("nhi-e2e-short");
    let cid = container_id(&root);
    let agent = Agent::start(&["--capture-args"]);
    let cg = TestCgroup::new(&root, &format!("system.slice/docker-{cid}.scope"));
    let cgroup_path = cg.path.clone();
    let cat = which("cat");
    agent.pause();
    let started = Instant::now();
    let pid = run_in_cgroup(
        &cg,
        &[cat.to_str().unwrap(), &cred],
        &["AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY=short/lived/SECRET/value/EXAMPLEKEY00"],
        None,
    )
    .unwrap();
    let lifetime = started.elapsed();
    cg.remove();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the process must be gone");
    assert!(!cgroup2_mount().join(cgroup_path.trim_start_matches('/')).exists(), "the cgroup must be gone");
    agent.resume();
    let have_all = |records: &[Value]| records_of(records, pid, "file").len() == 1 && records_of(records, pid, "env").len() == 2;
    agent.wait_for_record(Duration::from_secs(10), |_| have_all(&agent.records()));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    assert!(have_all(&records), "process lived {lifetime:?}; records: {records:#?}");

    let mut all = records_of(&records, pid, "file");
    all.extend(records_of(&records, pid, "env"));
    for r in all {
        assert_eq!(str_attr(r, "process.executable.path"), cat.to_str(), "{r:#}");
        assert_eq!(strs(r, "process.command_args"), [cat.to_str().unwrap(), cred.as_str()]);
        assert_eq!(int_attr(r, "process.parent_pid"), Some(i64::from(std::process::id())));
        assert_eq!(str_attr(r, "process.user.name"), Some("root"));
        assert_eq!(str_attr(r, "container.id"), Some(cid.as_str()), "{r:#}");
        assert_eq!(str_attr(r, "container.runtime"), Some("docker"));
        assert_eq!(str_attr(r, "nhi.cgroup.path"), Some(cgroup_path.as_str()));
        assert!(strs(r, "nhi.process.ancestors")[0].starts_with(&format!("{} ", std::process::id())));
    }
    let env = records_of(&records, pid, "env");
    assert!(env.iter().all(|r| str_attr(r, "nhi.id") == Some("AKIAIOSFODNN7EXAMPLE")), "{env:#?}");
    assert!(!serde_json::to_string(&records).unwrap().contains("short/lived/SECRET"));
}

/// The exec record's identity of the new process, which the exec and fork
/// programs load from the tracepoints' typed task (not through the
/// identity helpers): pid, parent, uid and gid (not root's, and not equal
/// to each other), cgroup (the test's own) and the kernel's name of the
/// process, which after exec is the name it was run by (a link named
/// unlike its target), not the executable's.
#[test]
fn exec_records_carry_the_new_process_task_fields() {
    if !bpf_available("exec_records_carry_the_new_process_task_fields") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let link = renamed_link(dir.path(), "nhi-e2e-renamed", &which("sleep"));
    let root = unique("nhi-e2e-task");
    let cg = TestCgroup::new(&root, "system.slice/nhi-e2e-task.service");
    let agent = Agent::start(&[]);
    let script = format!("exec '{}' 0.2", link.display());
    let mut sh = nobody_shell_in(&cg, &script, &[("GITHUB_TOKEN", "ghp_e2eTaskFields0000000000000000000000")]);
    let pid = sh.id();
    // Both execs' records (see below).
    agent.wait_for_record(Duration::from_secs(10), |_| records_of(&agent.records(), pid, "env").len() >= 2);
    sh.wait().unwrap();
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    // Two execs of one pid, each with the variable: `sh`, before it was
    // moved into the cgroup, then the link.
    let sleep = which("sleep").canonicalize().unwrap();
    let env = records_of(&records, pid, "env");
    let (linked, first): (Vec<&Value>, Vec<&Value>) =
        env.iter().partition(|r| str_attr(r, "process.executable.path") == sleep.to_str());
    assert_eq!((linked.len(), first.len()), (1, 1), "{env:#?}");
    let sh_name = which("sh").file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(str_attr(first[0], "process.command"), Some(sh_name.as_str()), "{:#}", first[0]);
    assert_ne!(str_attr(first[0], "nhi.cgroup.path"), Some(cg.path.as_str()), "{:#}", first[0]);
    let r = linked[0];
    assert_eq!(str_attr(r, "nhi.env.name"), Some("GITHUB_TOKEN"));
    assert_eq!(int_attr(r, "process.pid"), Some(i64::from(pid)));
    assert_eq!(int_attr(r, "process.parent_pid"), Some(i64::from(std::process::id())));
    assert_eq!(int_attr(r, "process.user.id"), Some(65534), "{r:#}");
    assert_eq!(int_attr(r, "nhi.process.group.id"), Some(65533), "{r:#}");
    assert_eq!(str_attr(r, "process.command"), Some("nhi-e2e-renamed"), "{r:#}");
    assert_eq!(str_attr(r, "nhi.cgroup.path"), Some(cg.path.as_str()), "{r:#}");
    assert_eq!(str_attr(r, "nhi.systemd.unit"), Some("nhi-e2e-task.service"), "{r:#}");
}

/// A pid reused by a second process, both seen only after they are gone:
/// two records, each with its own program, arguments, cgroup and start
/// time; nothing of the first process leaks onto the second.
#[test]
fn pid_reuse_keeps_processes_apart() {
    if !bpf_available("pid_reuse_keeps_processes_apart") {
        return;
    }
    let _serial = serial();
    let (_home, cred) = planted_credential();
    let root = unique("nhi-e2e-reuse");
    let cid = container_id(&root);
    let agent = Agent::start(&["--capture-args"]);
    let first_cg = TestCgroup::new(&root, &format!("system.slice/docker-{cid}.scope"));
    let second_cg = TestCgroup::new(&root, "system.slice/nhi-e2e-reuse.service");
    let (cat, head) = (which("cat"), which("head"));
    agent.pause();
    let pid = run_in_cgroup(&first_cg, &[cat.to_str().unwrap(), &cred], &[], None).unwrap();
    let reused = run_in_cgroup(&second_cg, &[head.to_str().unwrap(), "-c", "1", &cred], &[], Some(pid));
    agent.resume();
    assert!(reused.is_some(), "pid {pid} was taken by another process before the test could reuse it");
    agent.wait_for_record(Duration::from_secs(10), |_| records_of(&agent.records(), pid, "file").len() >= 2);
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    let mine = records_of(&records, pid, "file");
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let (a, b) = (mine[0], mine[1]);
    assert_eq!(str_attr(a, "process.executable.path"), cat.to_str());
    assert_eq!(strs(a, "process.command_args"), [cat.to_str().unwrap(), cred.as_str()]);
    assert_eq!(str_attr(a, "container.id"), Some(cid.as_str()));
    assert_eq!(str_attr(b, "process.executable.path"), head.to_str());
    assert_eq!(strs(b, "process.command_args"), [head.to_str().unwrap(), "-c", "1", cred.as_str()]);
    assert_eq!(str_attr(b, "container.id"), None, "the first process's container leaked: {b:#}");
    assert_eq!(str_attr(b, "nhi.systemd.unit"), Some("nhi-e2e-reuse.service"));
    let (ta, tb) = (str_attr(a, "process.creation.time").unwrap(), str_attr(b, "process.creation.time").unwrap());
    assert!(ta < tb, "two processes, two start times: {ta} {tb}");
}

/// Credential variables in a new process's environment are reported by
/// name and kind (and AWS key id), never with their values; a variable past
/// the 16 KiB the kernel copies is still found while the process runs.
#[test]
fn environment_credentials_are_reported_without_values() {
    if !bpf_available("environment_credentials_are_reported_without_values") {
        return;
    }
    let _serial = serial();
    let secrets = [
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "aws.access_key"),
        ("AWS_SECRET_ACCESS_KEY", "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", "aws.access_key"),
        ("AWS_SESSION_TOKEN", "e2eSessionTokenValueIQoJb3JpZ2luX2Vj", "aws.session_token"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/e2e/gcp-key.json", "gcp.service_account_key"),
        // A known prefix names the kind (issue 14): the value's, not the name's.
        ("GITHUB_TOKEN", "ghp_e2eSecretGithubToken000000000000000", "github.pat"),
        ("VAULT_TOKEN", "hvs.e2eSecretVaultToken", "vault.service_token"),
        ("PAYMENTS_API_KEY", "e2e-secret-payments-api-key", "generic.api_key"),
        ("SESSION_SECRET", "e2e-secret-session-secret", "generic.secret"),
        ("DB_PASSWORD", "e2e-secret-db-password", "generic.password"),
        ("SLACK_BOT_TOKEN", "xoxb-e2e-secret-slack", "slack.bot_token"),
    ];
    let agent = Agent::start(&[]);
    let mut short = Command::new("/bin/true");
    short.env_clear().env("PATH", "/usr/bin:/bin").env("HOME", "/nonexistent");
    for (name, value, _) in &secrets {
        short.env(name, value);
    }
    let mut child = short.spawn().unwrap();
    let short_pid = child.id();
    child.wait().unwrap();

    // Past the kernel's 16 KiB copy: std sorts the environment by name, so
    // ZZ_LATE_TOKEN comes after 20 KiB of padding.
    let mut long = Command::new(which("sh"));
    long.args(["-c", "read _"]).env_clear().stdin(Stdio::piped());
    for i in 0..20 {
        long.env(format!("NHI_PAD_{i:02}"), "p".repeat(1000));
    }
    long.env("ZZ_LATE_TOKEN", "e2e-secret-late-token");
    let mut long = long.spawn().unwrap();
    let long_pid = long.id();
    agent.wait_for_record(Duration::from_secs(10), |_| {
        let r = agent.records();
        records_of(&r, short_pid, "env").len() == secrets.len() && !records_of(&r, long_pid, "env").is_empty()
    });
    drop(long.stdin.take());
    long.wait().unwrap();
    let keyed = observer_creds::Keyed::new(observer_creds::Secret::new(std::fs::read(agent.state_dir.path().join("fingerprint.key")).unwrap()));
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));

    let got = records_of(&records, short_pid, "env");
    assert_eq!(got.len(), secrets.len(), "{got:#?}");
    for (name, value, kind) in &secrets {
        let r = got
            .iter()
            .find(|r| str_attr(r, "nhi.env.name") == Some(name))
            .unwrap_or_else(|| panic!("no record for {name}: {got:#?}"));
        assert_eq!(str_attr(r, "event.name"), Some("nhi.credential.access"));
        assert_eq!(str_attr(r, "nhi.kind"), Some(*kind), "{name}");
        assert_eq!(str_attr(r, "process.executable.path"), Some("/usr/bin/true"));
        // Ids (issue 14): AWS by the key id; a path none; every other value
        // its keyed fingerprint, under its prefix's kind or `secret.value`,
        // as the same value has in a file.
        let want_id = match *name {
            n if n.starts_with("AWS_") => Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
            "GOOGLE_APPLICATION_CREDENTIALS" => None,
            _ => observer_creds::tokens::identity(value.as_bytes(), "secret.value", &keyed).map(|i| i.id),
        };
        assert_eq!(str_attr(r, "nhi.id"), want_id.as_deref(), "{name}");
    }
    let late = records_of(&records, long_pid, "env");
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(str_attr(late[0], "nhi.env.name"), Some("ZZ_LATE_TOKEN"));

    let out = serde_json::to_string(&records).unwrap();
    let logs = stderr.join("\n");
    for (name, value, _) in secrets.iter().skip(1).chain([("ZZ_LATE_TOKEN", "e2e-secret-late-token", "")].iter()) {
        assert!(!out.contains(value), "value of {name} emitted");
        assert!(!logs.contains(value), "value of {name} logged");
    }
}

/// A credential read from a terminal session (a person at a keyboard) is
/// marked interactive, with the terminal's name.
#[test]
fn terminal_use_is_marked_interactive() {
    if !bpf_available("terminal_use_is_marked_interactive") {
        return;
    }
    let _serial = serial();
    let (_home, cred) = planted_credential();
    let agent = Agent::start(&[]);
    let out = Command::new(which("script"))
        .args(["-q", "-e", "-c", &format!("exec cat '{cred}'"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "script: {}", String::from_utf8_lossy(&out.stderr));
    // The read by `cat` (another agent on the host, rescanning, may read
    // the file too: that is an access of its own).
    let ours = |r: &Value| {
        str_attr(r, "file.path") == Some(cred.as_str())
            && str_attr(r, "process.executable.path").is_some_and(|p| p.ends_with("/cat"))
    };
    agent.wait_for_record(Duration::from_secs(10), ours);
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let r = records.iter().find(|r| ours(r)).expect("record of the terminal read");
    assert_eq!(r.get("process.interactive"), Some(&Value::Bool(true)), "{r:#}");
    assert!(str_attr(r, "nhi.process.tty").is_some_and(|t| t.starts_with("pts/")), "{r:#}");
}

/// The process table never holds more than its capacity, however many
/// processes come and go, and the agent reports its size periodically.
#[test]
fn process_table_stays_within_capacity_and_reports_its_size() {
    if !bpf_available("process_table_stays_within_capacity_and_reports_its_size") {
        return;
    }
    let _serial = serial();
    let config = config_file("stats_interval_secs = 1\n[process]\ntable_capacity = 64\nreconcile_interval_secs = 1\n");
    let mut agent = Agent::start(&["--config", config.path().to_str().unwrap()]);
    for _ in 0..300 {
        Command::new("/bin/true").status().unwrap();
    }
    let started = Instant::now();
    let stats = loop {
        let lines: Vec<Value> = agent
            .log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "identity stats")
            .collect();
        // A line written after the burst has gone through the pipeline.
        if let Some(last) = lines.last().filter(|l| l["fields"]["evicted"].as_u64().unwrap_or(0) >= 300) {
            break last.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no identity stats after the burst: {lines:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, _, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let f = &stats["fields"];
    assert!(f["process_table"].as_u64().is_some_and(|n| n > 0 && n <= 64), "{stats:#}");
    assert_eq!(f["capacity"].as_u64(), Some(64));
    let stopped = stderr.iter().find(|l| l.contains("probes detached")).expect("stop line");
    let stopped: Value = serde_json::from_str(stopped).unwrap();
    assert!(stopped["fields"]["process_table"].as_u64().is_some_and(|n| n <= 64), "{stopped:#}");
}

/// The executable's path comes from the exec record's dentry walk, also
/// for names too long for a dentry's inline name (40 bytes; the walk reads
/// those with a helper, shorter ones with plain loads), and for a process
/// gone before the agent could look at /proc.
#[test]
fn long_executable_names_are_walked_in_full() {
    if !bpf_available("long_executable_names_are_walked_in_full") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let long_dir = dir.path().join(format!("{}-a-directory-name-longer-than-forty-bytes", unique("nhi-e2e")));
    std::fs::create_dir_all(&long_dir).unwrap();
    let exe = long_dir.join("true-with-a-file-name-that-is-well-over-forty-bytes-long");
    std::fs::copy("/usr/bin/true", &exe).unwrap();
    let agent = Agent::start(&[]);
    let mut cmd = Command::new(&exe);
    cmd.env_clear().env("PATH", "/usr/bin:/bin").env("VAULT_TOKEN", "hvs.e2eLongExeNameToken");
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    // Both execs' records (see below).
    agent.wait_for_record(Duration::from_secs(10), |_| records_of(&agent.records(), pid, "env").len() >= 2);
    let (status, records, stderr) = agent.stop(Signal::SIGTERM);
    assert!(status.success(), "{}", stderr.join("\n"));
    let got = records_of(&records, pid, "env");
    assert_eq!(got.len(), 1, "{got:#?}");
    // The temporary directory may sit behind a symlink; the kernel names
    // the file by its real path.
    let real = std::fs::canonicalize(&exe).unwrap();
    assert_eq!(str_attr(got[0], "process.executable.path"), real.to_str(), "{:#}", got[0]);
}
