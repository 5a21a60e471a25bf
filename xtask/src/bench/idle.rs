//! `bench idle`: what the agent costs with no workload (issue 17 targets:
//! at most 0.5% of one CPU and 20 wake-ups per second).
//!
//! Starts the agent (release build, real probes, JSON lines to /dev/null),
//! lets it settle, then reads from /proc over a window (60 s by default):
//! CPU time (utime + stime of the process) as a share of one CPU, and
//! wake-ups as the voluntary + involuntary context switches of all its
//! threads. The agent sees the whole host: anything else running (builds,
//! other agents' tests) makes events it must handle, so the figures are
//! only those of an idle agent on an idle machine.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::Background;

const CPU_TARGET_PCT: f64 = 0.5;
const WAKEUPS_TARGET: f64 = 20.0;

/// CPU time of `pid` in clock ticks (utime + stime).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the agent's stat")?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(14) + get(15))
}

/// What `bench idle` measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// CPU time as a share of one CPU, in percent.
    pub cpu_pct: f64,
    pub wakeups_per_s: f64,
}

pub const TARGETS: Figures = Figures { cpu_pct: CPU_TARGET_PCT, wakeups_per_s: WAKEUPS_TARGET };

pub fn bench(bin: &Path, window: Duration) -> anyhow::Result<Figures> {
    let state = std::env::temp_dir().join(format!("nhi-bench-idle-{}", std::process::id()));
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--jsonl", "/dev/null", "--state-dir"])
        .arg(&state)
        .env("NHI_OBSERVER_LOG", "info");
    let agent = Background::start(cmd, "probes attached")?;
    let pid = agent.child_id();
    // Start-up work (scans, first flushes) is not idle.
    std::thread::sleep(Duration::from_secs(10));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (t0, s0, start) = (cpu_ticks(pid)?, super::switches(pid)?, Instant::now());
    std::thread::sleep(window);
    let (t1, s1, secs) = (
        cpu_ticks(pid)?,
        super::switches(pid)?,
        start.elapsed().as_secs_f64(),
    );
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    agent.stop()?;
    let _ = std::fs::remove_dir_all(&state);
    let cpu_pct = (t1 - t0) as f64 / hz / secs * 100.0;
    let wakeups = (s1 - s0) as f64 / secs;
    let verdict = |ok: bool| if ok { "ok" } else { "OVER" };
    println!("idle agent over {secs:.0} s ({threads} threads):");
    println!(
        "  CPU          {cpu_pct:>6.2}% of one CPU   target <= {CPU_TARGET_PCT}%  {}",
        verdict(cpu_pct <= CPU_TARGET_PCT)
    );
    println!(
        "  wake-ups     {wakeups:>6.1} per second     target <= {WAKEUPS_TARGET}  {}",
        verdict(wakeups <= WAKEUPS_TARGET)
    );
    Ok(Figures { cpu_pct, wakeups_per_s: wakeups })
}
