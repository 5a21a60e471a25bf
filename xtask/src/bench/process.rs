//! `bench`: whole-system overhead of the agent on process creation.
//!
//! Runs a workload without the agent, with the agent (release build, real
//! probes, JSON lines to /dev/null) and with the peer (a bpftrace script
//! on the openat tracepoints watching the same credential paths, what a
//! user would run instead: `peer.rs`; every exec opens the loader's cache
//! and libraries), in rounds whose order rotates, each setup given two
//! seconds to settle after it starts, and prints each round's time per
//! iteration and ratios over that round's no-agent run, then the medians
//! of the rounds' ratios. Workloads: fork+exec+wait of `/bin/true`
//! (every exec is copied and decoded: argv, environment, executable, tty),
//! and the same with credential variables in the environment (each one
//! becomes a record). `/bin/true` gets this process's environment without
//! the library directories `cargo xtask` adds to `LD_LIBRARY_PATH`, so it
//! execs as it would on the host (see [`host_library_path`]). Numbers are
//! only comparable on a quiet machine.
//! With the agent running, a second pass with the kernel's BPF statistics
//! on gives each process program's run time per process, against its
//! target: CPU time of the programs, meaningful on a busy machine too.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

struct Workload {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const WORKLOADS: &[Workload] = &[
    Workload { name: "exec /bin/true", env: &[] },
    Workload {
        name: "exec /bin/true, 3 credential variables",
        env: &[
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "bench/not/a/real/secret/EXAMPLEKEY0000000"),
            ("GITHUB_TOKEN", "ghp_bench0000000000000000000000000000000"),
        ],
    },
];

/// The process sensor's programs and their cost targets, in ns of BPF run
/// time per process created (issue 17).
const PROGRAM_TARGETS: &[(&str, f64)] = &[("proc_fork", 2000.0), ("proc_exec", 2000.0), ("proc_exit", 1000.0)];

fn run_workload(w: &Workload, iterations: u32) -> anyhow::Result<Duration> {
    let library_path = host_library_path();
    let start = Instant::now();
    for _ in 0..iterations {
        let mut cmd = Command::new("/bin/true");
        match &library_path {
            Some(p) => cmd.env("LD_LIBRARY_PATH", p),
            None => cmd.env_remove("LD_LIBRARY_PATH"),
        };
        let st = cmd.envs(w.env.iter().copied()).status().context("running /bin/true")?;
        if !st.success() {
            bail!("/bin/true failed: {st}");
        }
    }
    Ok(start.elapsed())
}

/// `LD_LIBRARY_PATH` without what `cargo run` (`cargo xtask`) puts in
/// front of it for its own binaries: the workspace's `target` directories
/// and the toolchain's. With them every exec of `/bin/true` first looks
/// for `libc.so.6` in each of those directories and their `glibc-hwcaps`
/// and `tls` subdirectories, about 57 failed `openat` and as many `stat`
/// calls per process that a host's `/bin/true` never makes (and every
/// failed open runs the file sensor's costliest path, the requested
/// string read from the process's memory). `None`: unset.
fn host_library_path() -> Option<String> {
    let value = std::env::var("LD_LIBRARY_PATH").ok()?;
    let rustup = std::env::var_os("RUSTUP_HOME").map(std::path::PathBuf::from);
    without_cargo_dirs(&value, &crate::tasks::workspace_root().join("target"), rustup.as_deref())
}

/// `value` (a `:`-separated list) without the directories under `target`
/// or a rustup toolchain (`rustup`'s, or any `.rustup/toolchains`); `None`
/// when nothing is left.
fn without_cargo_dirs(value: &str, target: &Path, rustup: Option<&Path>) -> Option<String> {
    let toolchain = |d: &str| {
        rustup.is_some_and(|r| Path::new(d).starts_with(r.join("toolchains"))) || d.contains("/.rustup/toolchains/")
    };
    let kept: Vec<&str> =
        value.split(':').filter(|d| !d.is_empty() && !Path::new(d).starts_with(target) && !toolchain(d)).collect();
    (!kept.is_empty()).then(|| kept.join(":"))
}

/// What one workload of `bench process` measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub workload: &'static str,
    /// With the agent, and with the peer (bpftrace), over no agent.
    pub agent_ratio: f64,
    pub peer_ratio: f64,
    /// (program, target ns, BPF ns per run) of the process programs.
    pub programs: Vec<(&'static str, f64, f64)>,
}

/// A setup of one round.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    None,
    Agent,
    Peer,
}

/// What one agent session measured besides wall-clock time.
struct AgentPass {
    /// The agent's own CPU per iteration (its threads), in us.
    cpu_us: f64,
    /// All its programs' BPF time per iteration, in ns.
    total_ns: f64,
    /// (program, target ns, BPF ns per run, runs per iteration).
    costs: Vec<(&'static str, f64, f64, f64)>,
}

/// Starts the agent, waits for its probes and for its start to settle.
fn start_agent(bin: &Path, state: &Path) -> anyhow::Result<(std::process::Child, std::thread::JoinHandle<usize>)> {
    let mut agent = Command::new(bin)
        .args(["run", "--jsonl", "/dev/null", "--state-dir"])
        .arg(state)
        .env("NHI_OBSERVER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = agent.stderr.take().context("agent stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let attached = lines.by_ref().map_while(Result::ok).any(|l| l.contains("probes attached"));
    if !attached {
        let _ = agent.kill();
        bail!("the agent did not attach its probes (root needed)");
    }
    // Keep draining its log so it never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    // Its start (the scan of running processes and of the credential
    // files, the store's opening) runs right after the probes attach: let
    // it finish, so that the workload is measured against the agent's
    // steady cost, as the other setups are.
    std::thread::sleep(SETTLE);
    Ok((agent, drain))
}

/// How long a setup is left to settle after it started.
const SETTLE: Duration = Duration::from_secs(2);

/// The agent's CPU and BPF figures for `w`, in passes of its own.
fn agent_pass(agent: &std::process::Child, w: &Workload, iterations: u32, cpu_us: f64) -> anyhow::Result<AgentPass> {
    // Kernel program cost per process, in a pass of its own (the
    // statistics add two clock reads to every program run, so they are
    // never on while wall-clock time is measured).
    let _stats = super::BpfStats::enable();
    let before = super::prog_stats_by_name(agent.id());
    run_workload(w, iterations)?;
    let after = super::prog_stats_by_name(agent.id());
    // All the agent's programs (the file sensor's runs on every syscall
    // exit of the loop too), per iteration.
    let t = |m: &std::collections::BTreeMap<String, (u64, u64)>| m.values().map(|v| v.0).sum::<u64>();
    let total_ns = (t(&after) - t(&before)) as f64 / f64::from(iterations);
    // Where that goes, program by program.
    let mut each = after
        .iter()
        .map(|(name, &(t1, c1))| {
            let (t0, c0) = before.get(name).copied().unwrap_or_default();
            (name.clone(), (t1 - t0) as f64 / f64::from(iterations), (c1 - c0) as f64 / f64::from(iterations))
        })
        .filter(|e| e.1 > 0.0)
        .collect::<Vec<_>>();
    each.sort_by(|a, b| b.1.total_cmp(&a.1));
    let list = each.iter().map(|(n, ns, runs)| format!("{n} {:.2} us ({runs:.1} runs)", ns / 1e3)).collect::<Vec<_>>();
    println!("  BPF time per iteration by program: {}", list.join(", "));
    let costs = PROGRAM_TARGETS
        .iter()
        .map(|&(name, target)| {
            let (t0, c0) = before.get(name).copied().unwrap_or_default();
            let (t1, c1) = after.get(name).copied().unwrap_or_default();
            // Per run: every process created runs each program once; the
            // programs also run for other processes on the machine, which
            // the run count includes.
            let runs = (c1 - c0).max(1) as f64;
            (name, target, (t1 - t0) as f64 / runs, runs / f64::from(iterations))
        })
        .collect();
    Ok(AgentPass { cpu_us, total_ns, costs })
}

/// `rounds` rounds per workload; each round runs the workload with no
/// agent, with the agent and with the peer, in an order that rotates from
/// round to round, and the ratios are the medians of each round's ratio
/// over that round's no-agent run (one before/with/after pass swung by
/// more than the 5% target between runs on this VM).
pub fn bench(bin: &Path, iterations: u32, rounds: usize) -> anyhow::Result<Vec<Figures>> {
    let iterations = iterations.max(1);
    let rounds = rounds.max(1);
    let mut figures = Vec::new();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iterations);
    let state = std::env::temp_dir().join(format!("nhi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&state)?;
    super::peer::ensure()?;
    const SETUPS: [Setup; 3] = [Setup::None, Setup::Agent, Setup::Peer];
    for w in WORKLOADS {
        // Warm caches so the first run is not penalised.
        run_workload(w, iterations / 10 + 1)?;
        let (mut agent_ratios, mut peer_ratios) = (Vec::new(), Vec::new());
        let (mut cpus, mut peer_bpf) = (Vec::new(), Vec::new());
        let mut passes: Vec<AgentPass> = Vec::new();
        for round in 0..rounds {
            let mut us = [f64::NAN; 3];
            for k in 0..SETUPS.len() {
                let i = (round + k) % SETUPS.len();
                match SETUPS[i] {
                    Setup::None => us[i] = per(run_workload(w, iterations)?),
                    Setup::Agent => {
                        let (mut agent, drain) = start_agent(bin, &state)?;
                        let cpu0 = super::cpu_ns(agent.id());
                        us[i] = per(run_workload(w, iterations)?);
                        // The agent's own CPU (user space and the syscalls it
                        // makes, all threads) while the workload ran, per
                        // iteration: on 2 CPUs it competes with the workload,
                        // beyond the BPF time the workload's own syscalls
                        // pay. Read just after the run: records still in the
                        // ring or the pipeline count only partly.
                        let cpu_us = (super::cpu_ns(agent.id()).saturating_sub(cpu0)) as f64 / 1e3 / f64::from(iterations);
                        let pass = agent_pass(&agent, w, iterations, cpu_us);
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGINT) };
                        agent.wait().context("waiting for the agent")?;
                        let _ = drain.join();
                        passes.push(pass?);
                    }
                    Setup::Peer => {
                        let peer = super::peer::start(&state)?;
                        std::thread::sleep(SETTLE);
                        us[i] = per(run_workload(w, iterations)?);
                        // The peer's BPF time per process, in a pass of its
                        // own as above.
                        {
                            let _stats = super::BpfStats::enable();
                            let (t0, _) = peer.prog_stats();
                            run_workload(w, iterations)?;
                            let (t1, _) = peer.prog_stats();
                            peer_bpf.push((t1 - t0) as f64 / f64::from(iterations));
                        }
                        peer.stop().context("stopping the peer (bpftrace)")?;
                    }
                }
            }
            let [none, with, with_peer] = us;
            println!(
                "{:<42} round {}: no agent {none:>8.1} us/iter, agent {with:>8.1} ({:.3}), peer {with_peer:>8.1} ({:.3})",
                w.name,
                round + 1,
                with / none,
                with_peer / none
            );
            agent_ratios.push(with / none);
            peer_ratios.push(with_peer / none);
            cpus.push(passes.last().map_or(f64::NAN, |p| p.cpu_us));
        }
        let (ra, rp) = (super::median(&mut agent_ratios), super::median(&mut peer_ratios));
        println!(
            "{:<42} medians of {rounds} rounds: agent {ra:.3}, peer (bpftrace) {rp:.3}: agent {}",
            w.name,
            if ra < rp { "cheaper than the peer" } else { "NOT cheaper than the peer" }
        );
        println!(
            "  agent CPU per iteration (its threads, from /proc schedstat, during the wall-clock run, median): {:.2} us",
            super::median(&mut cpus)
        );
        let mut totals = passes.iter().map(|p| p.total_ns).collect::<Vec<_>>();
        println!(
            "  BPF time per iteration (kernel BPF stats, separate passes, all programs of each, machine-wide: other processes' syscalls count too; medians): agent {:.2} us, peer {:.2} us",
            super::median(&mut totals) / 1e3,
            super::median(&mut peer_bpf) / 1e3
        );
        // Each program's figures: the median over the rounds.
        let costs = PROGRAM_TARGETS
            .iter()
            .enumerate()
            .map(|(j, &(name, target))| {
                let mut ns = passes.iter().map(|p| p.costs[j].2).collect::<Vec<_>>();
                let mut runs = passes.iter().map(|p| p.costs[j].3).collect::<Vec<_>>();
                (name, target, super::median(&mut ns), super::median(&mut runs))
            })
            .collect::<Vec<_>>();
        figures.push(Figures {
            workload: w.name,
            agent_ratio: ra,
            peer_ratio: rp,
            programs: costs.iter().map(|&(name, target, ns, _)| (name, target, ns)).collect(),
        });
        for (name, target, ns, runs) in costs {
            let verdict = if ns <= target { "ok" } else { "OVER" };
            println!(
                "  {name:<10} {:>7.2} us of BPF time per run (one run per process; {runs:.2} runs per iteration; median of {rounds})  target <= {:.1} us  {verdict}",
                ns / 1e3,
                target / 1e3
            );
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_library_dirs_are_left_out() {
        let target = Path::new("/src/ws/target");
        let cargo = "/src/ws/target/release/build/aws-lc-sys-1/out:/src/ws/target/release:/src/ws/target/release/deps:\
                     /root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/x86_64-unknown-linux-gnu/lib:\
                     /opt/rust/toolchains/nightly/lib";
        assert_eq!(without_cargo_dirs(cargo, target, Some(Path::new("/opt/rust"))), None);
        let mixed = format!("{cargo}:/opt/vendor/lib::/usr/local/lib");
        assert_eq!(
            without_cargo_dirs(&mixed, target, Some(Path::new("/opt/rust"))).as_deref(),
            Some("/opt/vendor/lib:/usr/local/lib")
        );
        // A directory that only starts with the same letters stays.
        assert_eq!(without_cargo_dirs("/src/ws/target2/lib", target, None).as_deref(), Some("/src/ws/target2/lib"));
    }
}
