//! Harness for end-to-end tests: start the real agent binary as root, wait
//! until its probes are attached, stop it with a signal, read what it wrote.
//!
//! Under `CI=true` a test that cannot load BPF fails; elsewhere it is
//! reported on stderr and returns early, so `cargo test` works as non-root.
#![allow(dead_code)]

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
        let state_dir = tempfile::tempdir().expect("state dir");
        let jsonl = state_dir.path().join("out.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nhi-observer"))
            .arg("run")
            .arg("--state-dir")
            .arg(state_dir.path())
            .arg("--jsonl")
            .arg(&jsonl)
            .args(extra_args)
            .env("NHI_OBSERVER_LOG", "info")
            .env("NHI_OBSERVER_LOG_FORMAT", "json")
            .stdout(Stdio::null())
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

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
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

/// The canonical path of a program on PATH.
pub fn which(program: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| panic!("{program} not found on PATH"))
}

pub fn str_attr<'a>(r: &'a Value, key: &str) -> Option<&'a str> {
    r.get(key).and_then(Value::as_str)
}

pub fn int_attr(r: &Value, key: &str) -> Option<i64> {
    r.get(key).and_then(Value::as_i64)
}
