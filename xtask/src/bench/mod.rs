//! `cargo xtask bench <name>`: whole-system overhead benchmarks. Each runs a
//! workload without the agent (baseline), with the floor program, and with
//! the agent, interleaved in one invocation, and prints medians and ratios
//! against the baseline of the same run (never absolute timings).
use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

pub mod files;
pub mod idle;
pub mod memory;
pub mod peer;
pub mod process;
pub mod scan;
pub mod tls;

/// A helper process (agent or floor program) that runs during a measurement.
pub struct Background {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Background {
    /// Spawns `cmd` and waits for a line containing `ready` on its stdout or
    /// stderr.
    pub fn start(mut cmd: Command, ready: &str) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if line.contains(ready) => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    bail!("{cmd:?} did not report `{ready}`; output:\n{}", seen.join("\n"));
                }
            }
        }
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    /// Closes stdin (the floor program exits on that), then sends SIGTERM
    /// (the agent's clean shutdown) if it is still running.
    /// Run time and run count of the BPF programs this process holds
    /// (kernel BPF statistics, from its fds' fdinfo).
    pub fn prog_stats(&self) -> (u64, u64) {
        prog_stats(self.child.id())
    }

    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.child.try_wait()?.is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if self.child.try_wait()?.is_none() {
            // SAFETY: plain kill(2) on our own, still running, child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(anyhow!("background process exited with {status}"));
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of `run_time_ns` and `run_cnt` over the BPF programs `pid` holds.
pub fn prog_stats(pid: u32) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (0, 0) };
    let mut total = (0, 0);
    for e in rd.filter_map(Result::ok) {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        if !info.contains("prog_id:") {
            continue;
        }
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok())).unwrap_or(0)
        };
        total.0 += field("run_time_ns:");
        total.1 += field("run_cnt:");
    }
    total
}

/// Turns on the kernel's BPF run-time statistics for as long as it lives.
pub struct BpfStats(Option<String>);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> Self {
        let old = std::fs::read_to_string(BPF_STATS).ok();
        if old.as_deref().map(str::trim) == Some("1") {
            eprintln!("bench: kernel.bpf_stats_enabled was already 1: wall-clock figures include its cost");
        }
        if std::fs::write(BPF_STATS, "1").is_err() {
            eprintln!("bench: cannot enable {BPF_STATS}; program costs will read 0");
        }
        Self(old)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(BPF_STATS, old.trim());
        }
    }
}

pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

pub fn run(name: &str, rounds: usize, iterations: u32) -> anyhow::Result<()> {
    match name {
        "files" => files::run(rounds),
        "process" => crate::tasks::bench_process(iterations),
        "tls" => tls::run(&tls::Args::with_rounds(rounds)),
        "pipeline" => pipeline(),
        "memory" => crate::tasks::bench_memory(),
        "scan" => crate::tasks::bench_scan(rounds),
        "idle" => crate::tasks::bench_idle(),
        other => bail!("unknown benchmark `{other}`; available: files, process, tls, pipeline, memory, scan, idle"),
    }
}

/// `pipeline`: the criterion benchmark of decode + classify + correlate
/// (observer/benches/pipeline.rs), on one core.
fn pipeline() -> anyhow::Result<()> {
    let root = crate::tasks::workspace_root();
    let st = Command::new("cargo")
        .current_dir(&root)
        .args(["bench", "-p", "nhi-observer", "--bench", "pipeline"])
        .status()
        .context("running cargo bench")?;
    if !st.success() {
        bail!("cargo bench failed: {st}");
    }
    Ok(())
}

/// Run time and run count of each BPF program `pid` holds, by program name
/// (kernel BPF statistics: counted only while [`BpfStats`] is on).
pub fn prog_stats_by_name(pid: u32) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut ids = std::collections::BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
        for e in rd.filter_map(Result::ok) {
            let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
            if let Some(id) = info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse::<u32>().ok())) {
                ids.insert(id);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for info in aya::programs::loaded_programs().filter_map(Result::ok) {
        if !ids.contains(&info.id()) {
            continue;
        }
        let name = info.name_as_str().unwrap_or("?").to_string();
        let e = out.entry(name).or_insert((0, 0));
        e.0 += info.run_time().as_nanos() as u64;
        e.1 += info.run_count();
    }
    out
}
