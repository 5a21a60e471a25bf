//! Harness for end-to-end tests: start the real agent binary as root, wait
//! until its probes are attached, stop it with a signal, read what it wrote.
//!
//! Under `CI=true` a test that cannot load BPF fails; elsewhere it is
//! reported on stderr and returns early, so `cargo test` works as non-root.
#![allow(dead_code)]

pub mod deploy;
pub mod otlp;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// Peers and namespaces for the network-sensor tests.
pub mod net;

/// One agent at a time per test binary: each sees the whole host, and some
/// tests assert on what the agent loads and unloads.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this test can load BPF. Panics under CI=true when it cannot.
pub fn bpf_available(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if root {
        return true;
    }
    let why = "not running as root: cannot load BPF programs";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: {why} (CI=true requires the probe tests to run)");
    }
    eprintln!("{test}: NOT RUN: {why}. Run as root (cargo xtask test does) to run it.");
    false
}

/// How the agent binary is started: directly, or through a wrapper
/// (`setpriv`, `chroot`) that then executes it.
#[derive(Clone)]
pub struct Launch {
    /// The program executed first (the agent itself, or a wrapper).
    pub program: PathBuf,
    /// Its arguments before the agent's `run ...` (ending with the agent's
    /// path when `program` is a wrapper).
    pub pre_args: Vec<std::ffi::OsString>,
    /// The state directory as the agent sees it, when the wrapper changes
    /// the root (the test still reads the host side).
    pub state_dir_arg: Option<PathBuf>,
    /// Runs in the child between fork and exec (a seccomp filter built
    /// beforehand: no allocation there).
    pub pre_exec: Option<std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>>,
}

impl Launch {
    /// The test's own build of the agent, started directly.
    pub fn direct() -> Launch {
        Launch { program: agent_binary(), pre_args: Vec::new(), state_dir_arg: None, pre_exec: None }
    }
}

/// The agent binary cargo built for this test.
pub fn agent_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nhi-observer"))
}

pub struct Agent {
    child: Child,
    pub jsonl: PathBuf,
    pub state_dir: tempfile::TempDir,
    stderr_lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
}

impl Agent {
    /// Starts `nhi-observer run` writing JSON lines to a file, and waits
    /// until it reports its probes attached.
    pub fn start(extra_args: &[&str]) -> Agent {
        Self::start_with_log(extra_args, "info")
    }

    /// As [`Agent::start`], with the `NHI_OBSERVER_LOG` filter given.
    pub fn start_with_log(extra_args: &[&str], log: &str) -> Agent {
        Self::start_env(extra_args, log, &[], None)
    }

    /// As [`Agent::start_with_log`], with extra environment variables (the
    /// `OTEL_*` ones), in `state_dir` when given (a restart: JSON lines are
    /// appended to the same file).
    pub fn start_env(extra_args: &[&str], log: &str, env: &[(String, String)], state_dir: Option<tempfile::TempDir>) -> Agent {
        Self::start_launch(&Launch::direct(), extra_args, log, env, state_dir)
    }

    /// As [`Agent::start_env`], started through `launch` (a sandbox: a
    /// capability bounding set, a chroot into an image).
    pub fn start_launch(
        launch: &Launch,
        extra_args: &[&str],
        log: &str,
        env: &[(String, String)],
        state_dir: Option<tempfile::TempDir>,
    ) -> Agent {
        let state_dir = state_dir.unwrap_or_else(|| tempfile::tempdir().expect("state dir"));
        let jsonl = state_dir.path().join("out.jsonl");
        // The state directory as the agent sees it.
        let agent_state = launch.state_dir_arg.clone().unwrap_or_else(|| state_dir.path().to_owned());
        // Kept in the state dir, so tests can search everything the agent wrote.
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.path().join("agent.stdout"))
            .expect("stdout file");
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.pre_args);
        // The test's configuration only: OTEL_* and MIMALLOC_* variables set
        // on the machine running the tests must not reach the agent.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("OTEL_") || k.starts_with("MIMALLOC_")) {
                cmd.env_remove(&k);
            }
        }
        if let Some(hook) = launch.pre_exec.clone() {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: the hook runs between fork and exec; the ones tests
            // pass only make system calls (prctl, seccomp), no allocation.
            unsafe { cmd.pre_exec(move || hook()) };
        }
        let mut child = cmd
            .arg("run")
            .arg("--state-dir")
            .arg(&agent_state)
            .arg("--jsonl")
            .arg(agent_state.join("out.jsonl"))
            .args(extra_args)
            .env("NHI_OBSERVER_LOG", log)
            .env("NHI_OBSERVER_LOG_FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nhi-observer");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent { child, jsonl, state_dir, stderr_lines: rx, stderr: Vec::new() };
        agent.wait_for_log("probes attached", Duration::from_secs(60));
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log message containing `needle`; panics with the log so
    /// far if it does not come.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr.iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_stderr(Duration::from_millis(200));
                panic!("agent exited ({status}) before `{needle}`; stderr:\n{}", self.stderr.join("\n"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no `{needle}` from the agent in {timeout:?}; stderr:\n{}", self.stderr.join("\n"));
            if let Ok(line) = self.stderr_lines.recv_timeout(left.min(Duration::from_millis(100))) {
                self.stderr.push(line);
            }
        }
    }

    /// Waits until `needle` has been logged `n` times.
    pub fn wait_for_log_count(&mut self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.stderr.iter().filter(|l| l.contains(needle)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "`{needle}` not logged {n} times in {timeout:?}; stderr:\n{}", self.stderr.join("\n"));
            if let Ok(line) = self.stderr_lines.recv_timeout(left.min(Duration::from_millis(100))) {
                self.stderr.push(line);
            }
        }
    }

    fn drain_stderr(&mut self, wait: Duration) {
        while let Ok(line) = self.stderr_lines.recv_timeout(wait) {
            self.stderr.push(line);
        }
    }

    /// Records written so far.
    pub fn records(&self) -> Vec<Value> {
        read_jsonl(&self.jsonl)
    }

    /// Polls the output until `pred` holds for some record (the agent
    /// writes as events arrive) and returns the records seen.
    pub fn wait_for_record(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records();
            if records.iter().any(&pred) || Instant::now() > deadline {
                return records;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`Agent::stop`], and hands over the state directory (which
    /// `stop` deletes) so a test can inspect every file the agent left.
    pub fn stop_keeping_state(mut self, signal: Signal) -> (ExitStatus, Vec<Value>, Vec<String>, tempfile::TempDir) {
        let state = std::mem::replace(&mut self.state_dir, tempfile::tempdir().expect("temp dir"));
        let (status, records, stderr) = self.stop(signal);
        (status, records, stderr, state)
    }

    /// `kill -9`: no clean stop, no flush. Returns the state directory for
    /// a restart.
    pub fn kill9(mut self) -> tempfile::TempDir {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).expect("SIGKILL agent");
        let _ = self.child.wait();
        std::mem::replace(&mut self.state_dir, tempfile::tempdir().expect("temp dir"))
    }

    /// The agent's database, read-only (what it has committed).
    pub fn db(&self) -> rusqlite::Connection {
        open_db(self.state_dir.path())
    }

    /// Sends `signal` and waits for the agent to exit.
    pub fn stop(mut self, signal: Signal) -> (ExitStatus, Vec<Value>, Vec<String>) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal agent");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "agent did not stop within 30 s of {signal}");
            thread::sleep(Duration::from_millis(20));
        };
        self.drain_stderr(Duration::from_millis(200));
        let records = self.records();
        (status, records, std::mem::take(&mut self.stderr))
    }
}

/// The agent binary, without the machine's `OTEL_*` and `MIMALLOC_*`
/// variables (the test's configuration only).
pub fn agent_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nhi-observer"));
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("OTEL_") || k.starts_with("MIMALLOC_")) {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// Runs the agent binary with `args` to its end (at most `timeout`, then
/// it is killed and the test fails): its exit status and standard error.
pub fn run_agent_to_end(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (ExitStatus, String) {
    let mut child = agent_command()
        .args(args)
        .env("NHI_OBSERVER_LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nhi-observer");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nhi-observer {args:?} still running after {timeout:?}; stderr:\n{}", reader.join().unwrap_or_default());
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A state directory's database, read-only.
pub fn open_db(state_dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        state_dir.join("nhi-observer.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the agent's database");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// Every record id committed to a state directory's database.
pub fn db_record_ids(state_dir: &Path) -> std::collections::BTreeSet<String> {
    let c = open_db(state_dir);
    let mut stmt = c.prepare("SELECT body FROM records").unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|b| {
        let v: Value = serde_json::from_str(&b.unwrap()).unwrap();
        v["nhi.record.id"].as_str().unwrap().to_owned()
    })
    .collect()
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    // A line cut by `kill -9` mid-write is not a record.
    if !text.is_empty() && !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(keep);
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A temporary home directory under /home, where the kernel filter's `~`
/// applies (it matches `/root/...` and `/home/<user>/...`).
pub fn temp_home() -> tempfile::TempDir {
    std::fs::create_dir_all("/home").expect("/home");
    tempfile::Builder::new().prefix("nhi-e2e-").tempdir_in("/home").expect("temp home")
}

/// A temporary home with an AWS shared credentials file holding `key_id`
/// (the secret is a fixed non-secret string the tests can look for).
pub fn aws_home(key_id: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let home = temp_home();
    let cred = home.path().join(".aws/credentials");
    std::fs::create_dir_all(cred.parent().expect("parent")).expect("~/.aws");
    std::fs::write(&cred, format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = e2e-not-a-secret\n"))
        .expect("credentials file");
    (home, cred)
}

/// The canonical path of a program on PATH.
pub fn which(program: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| panic!("{program} not found on PATH"))
}

/// Files in a directory tree, recursively (for searching every output).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

pub fn str_attr<'a>(r: &'a Value, key: &str) -> Option<&'a str> {
    r.get(key).and_then(Value::as_str)
}

pub fn int_attr(r: &Value, key: &str) -> Option<i64> {
    r.get(key).and_then(Value::as_i64)
}

/// Writes `toml` as a config file in `dir` and returns the flags that use it.
pub fn config_args(dir: &Path, toml: &str) -> Vec<String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    vec!["--config".into(), path.to_string_lossy().into_owned()]
}

/// Runs a Python script (python3 from PATH) with `args`; returns its pid
/// and output. Python's `os`/`ctypes` reach every open-family syscall.
/// Isolated and without `site` (`-I -S`): no site-packages start-up files,
/// so the process opens only what the script opens.
pub fn python(script: &str, args: &[&str]) -> (u32, std::process::Output) {
    let child = Command::new("python3")
        .args(["-I", "-S", "-c"])
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    (pid, out)
}

/// The interpreter the kernel sees run (not a pyenv shim or a symlink).
pub fn python_exe() -> String {
    let (_, out) = python("import os, sys; print(os.path.realpath(sys.executable))", &[]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Records of one event name.
pub fn named<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| str_attr(r, "event.name") == Some(name)).collect()
}

/// The agent's final `nhi.agent.stats` record (written at shutdown).
pub fn final_stats(records: &[Value]) -> &Value {
    named(records, "nhi.agent.stats").pop().expect("no nhi.agent.stats record")
}

/// Sum of `nhi.access.count` over records matching `pred`.
pub fn access_count(records: &[Value], pred: impl Fn(&Value) -> bool) -> i64 {
    named(records, "nhi.credential.access")
        .into_iter()
        .filter(|r| pred(r))
        .map(|r| int_attr(r, "nhi.access.count").unwrap_or(0))
        .sum()
}

impl Agent {
    /// Stops the agent's threads (SIGSTOP). The probes keep running and the
    /// kernel ring buffer keeps what they send, so whatever the test does
    /// meanwhile is processed only after [`Agent::resume`], when /proc and
    /// the cgroup tree no longer show short-lived processes.
    pub fn pause(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGSTOP).expect("SIGSTOP agent");
    }

    pub fn resume(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT).expect("SIGCONT agent");
    }

    /// Log lines so far, after draining what the agent has written.
    pub fn log_lines(&mut self) -> &[String] {
        self.drain_stderr(Duration::from_millis(50));
        &self.stderr
    }
}

/// The cgroup v2 mount point, from /proc/self/mountinfo (never hard-coded:
/// hybrid hosts mount it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .expect("no cgroup2 mount on this host")
}

/// A real cgroup v2 directory (and its missing parents) under a unique test
/// root, removed on drop after its processes are moved back to the root.
pub struct TestCgroup {
    pub dir: PathBuf,
    /// Path from the cgroup2 root, as the agent reports it (`/a/b`).
    pub path: String,
    created: Vec<PathBuf>,
    /// The unique test root: emptied parents up to it go with the last
    /// cgroup under it, whatever the drop order.
    top: PathBuf,
}

impl TestCgroup {
    /// `rel` is the path below the test root, e.g.
    /// `system.slice/docker-<id>.scope`.
    pub fn new(root: &str, rel: &str) -> TestCgroup {
        let mount = cgroup2_mount();
        let path = format!("/{root}/{rel}");
        let mut created = Vec::new();
        let mut dir = mount.clone();
        for c in path.trim_start_matches('/').split('/') {
            dir.push(c);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        let top = mount.join(root);
        TestCgroup { dir, path, created, top }
    }

    /// Moves a running process into this cgroup.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.dir.display()));
    }

    /// An fd on the directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn open(&self) -> std::fs::File {
        std::fs::File::open(&self.dir).expect("open cgroup dir")
    }

    /// The cgroup id the kernel reports (the directory's inode).
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&self.dir).expect("cgroup dir").ino()
    }

    /// Removes the directories now (processes still inside are moved out).
    pub fn remove(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        let root_procs = cgroup2_mount().join("cgroup.procs");
        for dir in self.created.iter().rev() {
            if let Ok(pids) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in pids.lines() {
                    let _ = std::fs::write(&root_procs, pid);
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        self.created.clear();
        // Parents other cgroups of this test created, once they are empty.
        let mut dir = self.dir.parent().map(Path::to_path_buf);
        while let Some(d) = dir.filter(|d| d.starts_with(&self.top)) {
            match std::fs::remove_dir(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => break,
                _ => {}
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A link named `name` to `target` in `dir`, which every user may then
/// enter: a process run through it is named `name` (15 bytes at most are
/// what the kernel keeps of a process's name), unlike its executable.
pub fn renamed_link(dir: &Path, name: &str, target: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod link dir");
    let link = dir.join(name);
    std::os::unix::fs::symlink(target, &link).expect("symlink");
    link
}

/// Starts `sh -c "read _; <script>"` as uid 65534 / gid 65533, with only
/// `PATH` and `env` in its environment, moves it into `cg`, then lets it
/// go on: everything after `read` runs inside the cgroup.
pub fn nobody_shell_in(cg: &TestCgroup, script: &str, env: &[(&str, &str)]) -> Child {
    use std::{io::Write as _, os::unix::process::CommandExt as _};
    let mut sh = Command::new(which("sh"));
    sh.arg("-c")
        .arg(format!("read _; {script}"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .uid(65534)
        .gid(65533)
        .stdin(Stdio::piped());
    let mut sh = sh.spawn().expect("spawn sh");
    cg.add(sh.id());
    writeln!(sh.stdin.as_mut().expect("stdin")).expect("release sh");
    sh
}

/// A name no other test run on this host uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// 64 hex digits derived from `seed`: a container id.
pub fn container_id(seed: &str) -> String {
    use std::hash::{Hash as _, Hasher as _};
    (0..4)
        .map(|i| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (seed, i).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// A pod uid (UUID form) derived from `seed`.
pub fn pod_uid(seed: &str) -> String {
    let hex = container_id(seed);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Runs `argv` (an absolute path first) inside `cgroup` from its first
/// instruction (`clone3(CLONE_INTO_CGROUP)`), with exactly environment
/// `env`, and, with `pid`, as exactly that pid (`set_tid`). Waits for it to
/// exit and returns its pid; `None` when `pid` was taken meanwhile.
pub fn run_in_cgroup(cgroup: &TestCgroup, argv: &[&str], env: &[&str], pid: Option<u32>) -> Option<u32> {
    use std::{ffi::CString, os::fd::AsRawFd as _};

    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let cg = cgroup.open();
    let cargv: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let cenv: Vec<CString> = env.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = cargv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let tid: [libc::pid_t; 1] = [pid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if pid.is_some() { tid.as_ptr() as u64 } else { 0 },
        set_tid_size: u64::from(pid.is_some()),
        cgroup: cg.as_raw_fd() as u64,
    };
    // SAFETY: clone3 like fork; the child only calls execve and _exit with
    // pointers prepared before the call.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
    if ret == 0 {
        // SAFETY: in the child: replace the image, or leave at once.
        unsafe {
            libc::execve(argv_ptrs[0], argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        assert!(pid.is_some() && err.raw_os_error() == Some(libc::EEXIST), "clone3 failed: {err}");
        return None;
    }
    if let Some(want) = pid {
        assert_eq!(ret as u32, want, "clone3 gave another pid");
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(ret as libc::pid_t, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{argv:?} failed: status {status:#x}");
    Some(ret as u32)
}

/// Records of one event name for one pid.
pub fn records_of<'a>(records: &'a [Value], pid: u32, source: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| int_attr(r, "process.pid") == Some(i64::from(pid)) && str_attr(r, "nhi.source") == Some(source))
        .collect()
}

/// Load: a Python process opening `cred` 20 times every 20 ms until
/// [`stop_loop`] (with `dedup_interval_ms = 0`, a record per open).
pub fn open_loop(cred: &Path) -> Child {
    let script = "import os, sys, time\n\
                  p = sys.argv[1]\n\
                  while True:\n\
                  \x20   for _ in range(20):\n\
                  \x20       os.close(os.open(p, os.O_RDONLY))\n\
                  \x20   time.sleep(0.02)\n";
    Command::new("python3").args(["-I", "-S", "-c", script]).arg(cred).spawn().expect("python3")
}

pub fn stop_loop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// A temporary config file for the agent.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut f = tempfile::NamedTempFile::new().expect("config file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}
