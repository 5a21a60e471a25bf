//! `bench memory`: the agent's resident memory with 10,000 live processes
//! and 1,000 credentials in use, against its own idle memory in the same
//! run (targets: steady RSS at most 48 MiB; peak RSS during start, the
//! at-rest scan included, at most 64 MiB).
//!
//! Steps: 1,000 AWS credential files (distinct key ids) under a watched
//! directory; the release agent started with a config that watches it
//! (JSON lines to /dev/null, its own state directory: store and usage on,
//! the at-rest scan at start as by default, over this host's homes, /etc
//! and the other default roots); the start's peak RSS (VmHWM) once the scan
//! is done; idle RSS then; then 10,000 processes forked and kept alive
//! (each is a process-table entry), 10 readers that each read every
//! credential file (10,000 de-dup keys, 1,000 identities, 10,000 usage
//! deltas), and a settle time past the usage flush; RSS and peak RSS
//! (VmHWM) then, and RSS again 30 s later (steady state, after the agent's
//! periodic heap trim). Children are killed and the agent stopped cleanly.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::Background;

const PROCESSES: usize = 10_000;
const CREDENTIALS: usize = 1_000;
const READERS: usize = 10;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Forks `n` children that sleep until killed.
fn fork_sleepers(n: usize) -> anyhow::Result<Vec<libc::pid_t>> {
    let mut pids = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: the child only calls async-signal-safe functions (pause,
        // _exit) before it is killed.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => loop {
                // SAFETY: see above.
                unsafe { libc::pause() };
            },
            p if p < 0 => {
                kill_all(&pids);
                bail!("fork failed after {} children: {}", pids.len(), std::io::Error::last_os_error());
            }
            p => pids.push(p),
        }
    }
    Ok(pids)
}

fn kill_all(pids: &[libc::pid_t]) {
    for &p in pids {
        // SAFETY: our own children.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for &p in pids {
        let mut st = 0;
        // SAFETY: reaping our own children.
        unsafe { libc::waitpid(p, &mut st, 0) };
    }
}

fn write_credentials(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..CREDENTIALS)
        .map(|i| {
            let p = dir.join(format!("cred-{i:04}.ini"));
            std::fs::write(
                &p,
                format!("[default]\naws_access_key_id = AKIAMEMBENCH{i:08}\naws_secret_access_key = bench-not-a-secret-{i}\n"),
            )?;
            Ok(p)
        })
        .collect()
}

pub fn bench(bin: &Path) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("nhi-bench-memory-{}", std::process::id()));
    let creds_dir = root.join("creds");
    let files = write_credentials(&creds_dir)?;
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[usage]\nflush_interval_secs = 2\n[[watch]]\nname = \"bench-memory\"\nkind = \"aws.access_key\"\npaths = [\"{}/\"]\nformat = \"aws-ini\"\n",
            creds_dir.display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--jsonl", "/dev/null", "--state-dir"])
        .arg(root.join("state"))
        .arg("--config")
        .arg(&config)
        .env("NHI_OBSERVER_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    let agent = Background::start(cmd, "at-rest scan done")?;
    let pid = agent.child_id();
    let start_peak = status_kib(pid, "VmHWM:");
    std::thread::sleep(Duration::from_secs(3));
    let idle = status_kib(pid, "VmRSS:");
    let started = Instant::now();
    let sleepers = fork_sleepers(PROCESSES).context("forking the live processes")?;
    for _ in 0..READERS {
        let st = Command::new("cat").args(&files).stdout(Stdio::null()).status().context("cat")?;
        if !st.success() {
            kill_all(&sleepers);
            bail!("cat failed");
        }
    }
    // Past a usage flush and a de-dup sweep.
    std::thread::sleep(Duration::from_secs(6));
    let loaded = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    let load_s = started.elapsed().as_secs_f64();
    // Steady state: past the agent's periodic heap trim (30 s).
    std::thread::sleep(Duration::from_secs(32));
    let steady = status_kib(pid, "VmRSS:");
    kill_all(&sleepers);
    agent.stop()?;
    let db = root.join("state/nhi-observer.db");
    let db_size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let met = |v: u64, target_mib: u64| if v <= target_mib * 1024 { "met" } else { "NOT met" };
    println!(
        "agent RSS: start peak (VmHWM once the at-rest scan is done) {:.1} MiB; idle {:.1} MiB; with {PROCESSES} live processes and {CREDENTIALS} credentials read by {READERS} readers: {:.1} MiB right after the load (peak VmHWM {:.1} MiB), {:.1} MiB steady (30 s later), ratio {:.2} to idle",
        mib(start_peak),
        mib(idle),
        mib(loaded),
        mib(peak),
        mib(steady),
        steady as f64 / idle.max(1) as f64,
    );
    println!(
        "targets: steady <= 48 MiB: {:.1} MiB, {}; start peak <= 64 MiB: {:.1} MiB, {}",
        mib(steady),
        met(steady, 48),
        mib(start_peak),
        met(start_peak, 64)
    );
    println!("(load phase {load_s:.1} s; database {:.1} MiB after the run)", db_size as f64 / (1024.0 * 1024.0));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
