//! `bench`: whole-system overhead of the agent on process creation.
//!
//! Runs a workload without the agent, with the agent (release build, real
//! probes, JSON lines to /dev/null), with the peer (a bpftrace script on
//! the openat tracepoints watching the same credential paths, what a user
//! would run instead: `peer.rs`; every exec opens the loader's cache and
//! libraries), and without either again, in one invocation, and prints
//! each run's time per iteration and the ratio to the mean of the two
//! baselines. Workloads: fork+exec+wait of `/bin/true`
//! (every exec is copied and decoded: argv, environment, executable, tty),
//! and the same with credential variables in the environment (each one
//! becomes a record). Numbers are only comparable on a quiet machine.
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
    let start = Instant::now();
    for _ in 0..iterations {
        let st = Command::new("/bin/true").envs(w.env.iter().copied()).status().context("running /bin/true")?;
        if !st.success() {
            bail!("/bin/true failed: {st}");
        }
    }
    Ok(start.elapsed())
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

pub fn bench(bin: &Path, iterations: u32) -> anyhow::Result<Vec<Figures>> {
    let iterations = iterations.max(1);
    let mut figures = Vec::new();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iterations);
    let state = std::env::temp_dir().join(format!("nhi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&state)?;
    super::peer::ensure()?;
    for w in WORKLOADS {
        // Warm caches so the first baseline is not penalised.
        run_workload(w, iterations / 10 + 1)?;
        let before = run_workload(w, iterations)?;
        let mut agent = Command::new(bin)
            .args(["run", "--jsonl", "/dev/null", "--state-dir"])
            .arg(&state)
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
        let cpu0 = super::cpu_ns(agent.id());
        let with = run_workload(w, iterations)?;
        // The agent's own CPU (user space and the syscalls it makes, all
        // threads) while the workload ran, per iteration: on 2 CPUs it
        // competes with the workload, beyond the BPF time the workload's
        // own syscalls pay. Read just after the run: records still in the
        // ring or the pipeline count only partly.
        let agent_cpu_us = (super::cpu_ns(agent.id()).saturating_sub(cpu0)) as f64 / 1e3 / f64::from(iterations);
        // Kernel program cost per process, in a pass of its own (the
        // statistics add two clock reads to every program run, so they are
        // never on while wall-clock time is measured).
        let agent_total_ns: f64;
        let costs = {
            let _stats = super::BpfStats::enable();
            let before = super::prog_stats_by_name(agent.id());
            run_workload(w, iterations)?;
            let after = super::prog_stats_by_name(agent.id());
            // All the agent's programs (the file sensor's runs on every
            // syscall exit of the loop too), per iteration.
            let t = |m: &std::collections::BTreeMap<String, (u64, u64)>| m.values().map(|v| v.0).sum::<u64>();
            agent_total_ns = (t(&after) - t(&before)) as f64 / f64::from(iterations);
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
            PROGRAM_TARGETS
                .iter()
                .map(|&(name, target)| {
                    let (t0, c0) = before.get(name).copied().unwrap_or_default();
                    let (t1, c1) = after.get(name).copied().unwrap_or_default();
                    // Per run: every process created runs each program
                    // once; the programs also run for other processes on
                    // the machine, which the run count includes.
                    let runs = (c1 - c0).max(1) as f64;
                    (name, target, (t1 - t0) as f64 / runs, runs / f64::from(iterations))
                })
                .collect::<Vec<_>>()
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGINT) };
        agent.wait().context("waiting for the agent")?;
        let _ = drain.join();
        let peer = super::peer::start(&state)?;
        let with_peer = run_workload(w, iterations)?;
        // The peer's BPF time per process, in a pass of its own as above.
        let peer_ns = {
            let _stats = super::BpfStats::enable();
            let (t0, _) = peer.prog_stats();
            run_workload(w, iterations)?;
            let (t1, _) = peer.prog_stats();
            (t1 - t0) as f64 / f64::from(iterations)
        };
        peer.stop().context("stopping the peer (bpftrace)")?;
        let after = run_workload(w, iterations)?;
        let base = (per(before) + per(after)) / 2.0;
        println!(
            "{:<42} baseline {:>8.1} us/iter (before {:.1}, after {:.1})  with agent {:>8.1} us/iter  ratio {:.3}",
            w.name,
            base,
            per(before),
            per(after),
            per(with),
            per(with) / base
        );
        let (ra, rp) = (per(with) / base, per(with_peer) / base);
        println!(
            "{:<42} with peer (bpftrace) {:>8.1} us/iter  ratio {rp:.3}; agent {ra:.3} vs peer {rp:.3}: agent {}",
            "",
            per(with_peer),
            if ra < rp { "cheaper than the peer" } else { "NOT cheaper than the peer" }
        );
        println!(
            "  agent CPU per iteration (its threads, from /proc schedstat, during the wall-clock run): {agent_cpu_us:.2} us; wall-clock added by the agent {:.2} us",
            per(with) - base
        );
        println!(
            "  BPF time per iteration (kernel BPF stats, separate passes, all programs of each, machine-wide: other processes' syscalls count too): agent {:.2} us, peer {:.2} us",
            agent_total_ns / 1e3,
            peer_ns / 1e3
        );
        figures.push(Figures {
            workload: w.name,
            agent_ratio: ra,
            peer_ratio: rp,
            programs: costs.iter().map(|&(name, target, ns, _)| (name, target, ns)).collect(),
        });
        for (name, target, ns, runs) in costs {
            let verdict = if ns <= target { "ok" } else { "OVER" };
            println!(
                "  {name:<10} {:>7.2} us of BPF time per run (one run per process; {runs:.2} runs per iteration)  target <= {:.1} us  {verdict}",
                ns / 1e3,
                target / 1e3
            );
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(figures)
}
