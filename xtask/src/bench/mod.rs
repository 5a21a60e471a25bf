//! `cargo xtask bench <name>`: whole-system overhead benchmarks. Each runs a
//! workload without the agent (baseline), with the floor program, and with
//! the agent, interleaved in one invocation, and prints medians and ratios
//! against the baseline of the same run (never absolute timings).
use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt as _,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

pub mod burst;
pub mod files;
pub mod idle;
pub mod memory;
mod pair;
pub mod peer;
pub mod process;
pub mod scan;
pub mod targets;
pub mod tls;

/// A helper process (agent or floor program) that runs during a measurement.
pub struct Background {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Background {
    /// Spawns `cmd` and waits for a line containing `ready` on its stdout or
    /// stderr. The child starts with SIGINT and SIGTERM at their defaults:
    /// a benchmark started as a background job of a shell (`cmd &`, CI)
    /// inherits SIGINT ignored, and a shell child cannot trap a signal
    /// ignored on entry, so [`Background::stop`] could not end it.
    pub fn start(mut cmd: Command, ready: &str) -> anyhow::Result<Self> {
        // SAFETY: only sigaction(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for signal in [libc::SIGINT, libc::SIGTERM] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
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

    /// Run time and run count of the BPF programs this process holds
    /// (kernel BPF statistics, from its fds' fdinfo).
    pub fn prog_stats(&self) -> (u64, u64) {
        prog_stats(self.child.id())
    }

    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (the floor program exits on that), then, while it is
    /// still running, sends SIGTERM (the agent's clean shutdown), then
    /// SIGINT (bpftrace's Ctrl-C: bpftrace 0.17 once caught a SIGTERM
    /// here and went on running), each given [`STOP_WAIT`]; a process
    /// that outlives both is killed and reported as an error, never
    /// waited for without end.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop_waiting(STOP_WAIT)
    }

    fn stop_waiting(mut self, wait: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let mut exited = self.wait_for(Duration::from_secs(2))?;
        for signal in [libc::SIGTERM, libc::SIGINT] {
            if exited.is_some() {
                break;
            }
            // SAFETY: plain kill(2) on our own, still running, child.
            unsafe { libc::kill(self.child.id() as i32, signal) };
            exited = self.wait_for(wait)?;
        }
        let Some(status) = exited else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            bail!(
                "background process {} did not exit on SIGTERM or SIGINT within {} s each; killed",
                self.child.id(),
                wait.as_secs_f64()
            );
        };
        if !status.success() {
            return Err(anyhow!("background process exited with {status}"));
        }
        Ok(())
    }
}

impl Background {
    /// The exit status, if the process exits within `limit`.
    fn wait_for(&mut self, limit: Duration) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long [`Background::stop`] waits after each signal.
const STOP_WAIT: Duration = Duration::from_secs(10);

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

pub fn run(
    name: &str,
    rounds: usize,
    iterations: u32,
    quick: bool,
    agent: Option<std::path::PathBuf>,
    base: Option<&str>,
) -> anyhow::Result<()> {
    if base.is_some() && name != "pipeline" {
        bail!("--base compares builds of `pipeline` only");
    }
    match name {
        "files" => files::run(rounds, agent).map(|_| ()),
        "process" => crate::tasks::bench_process(iterations, rounds, agent),
        "tls" => tls::run(&tls::Args { agent, ..tls::Args::with_rounds(rounds) }),
        "pipeline" => match base {
            Some(rev) => pair::run(rev, rounds),
            None => pipeline(),
        },
        "memory" => crate::tasks::bench_memory(),
        "scan" => crate::tasks::bench_scan(rounds),
        "idle" => crate::tasks::bench_idle(),
        "targets" | "all" => targets::run(quick),
        "burst" => {
            let f = burst::measure(&release_agent()?, &burst::Args { rate: 100_000, seconds: 5 })?;
            if f.lost() > 0 || f.over() > 0 || !f.small_ring_exact() || !f.storm_complete() {
                bail!(
                    "burst: {} opens unaccounted and {} counted twice at the default ring; small ring exact: {}; connection storm: {} of {} recorded, {} lost",
                    f.lost(),
                    f.over(),
                    f.small_ring_exact(),
                    f.storm_records,
                    f.storm_connections,
                    f.storm_lost
                );
            }
            Ok(())
        }
        other => bail!("unknown benchmark `{other}`; available: targets (or all), files, process, tls, pipeline, memory, scan, idle, burst"),
    }
}

/// Builds the release agent; its path. The benchmarks that load probes
/// need root.
pub fn release_agent() -> anyhow::Result<std::path::PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads the agent's probes: run it as root");
    }
    let root = crate::tasks::workspace_root();
    crate::setup::status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
    Ok(root.join("target/release/nhi-observer"))
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

/// Clock ticks per second (`/proc` CPU times are in these).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// CPU clock ticks (utime + stime) of each thread of `pid`, summed by
/// thread name.
pub fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for e in rd.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map(|(_, n)| n.to_owned()).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime: fields 14 and 15; `rest` starts at field 3.
        let t = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_default() += t;
    }
    out
}

/// CPU time of every thread of `pid` so far, in ns (the first field of
/// each thread's `/proc/<pid>/task/<tid>/schedstat`: nanosecond resolution,
/// unlike the clock ticks of `stat`). Threads that exited are not counted.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    rd.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Voluntary + involuntary context switches of every thread of `pid`.
pub fn switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in
        std::fs::read_dir(format!("/proc/{pid}/task")).context("listing the agent's threads")?
    {
        let Ok(status) = std::fs::read_to_string(e?.path().join("status")) else {
            continue;
        };
        for l in status.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// The agent under test (release build, real probes), writing JSON lines
/// to a file in its state directory.
pub struct JsonAgent {
    child: Child,
    jsonl: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl JsonAgent {
    /// Starts `bin run` with its state in `state` and `args` after it;
    /// returns once its probes are attached.
    pub fn start(bin: &std::path::Path, state: &std::path::Path, args: &[&str]) -> anyhow::Result<Self> {
        let jsonl = state.join("out.jsonl");
        let log = state.join("agent.log");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root { Command::new(bin) } else { Command::new("sudo") };
        if !root {
            cmd.arg("-E").arg(bin);
        }
        cmd.arg("run").arg("--state-dir").arg(state).arg("--jsonl").arg(&jsonl).args(args);
        cmd.env("NHI_OBSERVER_LOG", "info").env("NHI_OBSERVER_LOG_FORMAT", "json");
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let agent = Self { child, jsonl, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !agent.log_text().contains("probes attached") {
            if Instant::now() > deadline {
                bail!("the agent did not attach its probes in 60 s:\n{}", agent.log_text());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every record written so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Polls `count` until it reaches `want` or stays unchanged for 5 s;
    /// returns the last count.
    pub fn wait_for(&self, want: u64, count: impl Fn() -> u64) -> u64 {
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let n = count();
            if n >= want {
                return n;
            }
            if n != last {
                (last, since) = (n, Instant::now());
            } else if since.elapsed() > Duration::from_secs(5) {
                return n;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the agent (SIGINT, its clean shutdown); returns its last
    /// `nhi.agent.stats` record (written at stop: the kernel's loss
    /// counters among them).
    pub fn stop(mut self) -> anyhow::Result<serde_json::Value> {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait()?;
        if !st.success() {
            bail!("the agent exited with {st}:\n{}", self.log_text());
        }
        self.records()
            .into_iter()
            .rev()
            .find(|r| r["event.name"] == "nhi.agent.stats")
            .ok_or_else(|| anyhow!("no nhi.agent.stats record from the agent"))
    }
}

impl Drop for JsonAgent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Background {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Background::start(cmd, "ready").unwrap()
    }

    #[test]
    fn stop_falls_back_to_sigint_when_sigterm_is_caught() {
        // Like bpftrace that once went on after a SIGTERM: ignores TERM,
        // exits cleanly on INT.
        let bg = shell("trap '' TERM; trap 'exit 0' INT; echo ready; while :; do sleep 0.05; done");
        bg.stop_waiting(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn stop_kills_what_outlives_both_signals_and_says_so() {
        let bg = shell("trap '' TERM INT; echo ready; while :; do sleep 0.05; done");
        let pid = bg.child_id();
        let err = bg.stop_waiting(Duration::from_millis(300)).unwrap_err().to_string();
        assert!(err.contains("did not exit on SIGTERM or SIGINT") && err.contains("killed"), "{err}");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still there");
    }
}
