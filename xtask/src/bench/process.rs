//! `bench`: whole-system overhead of the agent on process creation.
//!
//! Runs a workload without the agent, with the agent (release build, real
//! probes, JSON lines to /dev/null), and without it again, in one
//! invocation, and prints each run's time per iteration and the ratio to
//! the mean of the two baselines. Workloads: fork+exec+wait of `/bin/true`
//! (every exec is copied and decoded: argv, environment, executable, tty),
//! and the same with credential variables in the environment (each one
//! becomes a record). Numbers are only comparable on a quiet machine.
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

pub fn bench(bin: &Path, iterations: u32) -> anyhow::Result<()> {
    let iterations = iterations.max(1);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iterations);
    let state = std::env::temp_dir().join(format!("nhi-bench-{}", std::process::id()));
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
        let with = run_workload(w, iterations)?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGINT) };
        agent.wait().context("waiting for the agent")?;
        let _ = drain.join();
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
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
