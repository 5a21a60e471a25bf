//! `run`, `test` and `bench`.
use std::{os::unix::process::CommandExt as _, path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::setup::{self, status};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::ensure()?;
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
    let bin = root.join("target/release/nhi-observer");
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else {
        eprintln!("xtask: the agent loads eBPF programs: running it with sudo");
        let mut c = Command::new("sudo");
        c.arg("-E").arg(&bin);
        c
    };
    cmd.arg("run").args(args);
    // Replace xtask so signals (Ctrl-C) go straight to the agent.
    Err(cmd.exec()).with_context(|| format!("starting {}", bin.display()))
}

pub fn test(lint: bool, args: &[String]) -> anyhow::Result<()> {
    setup::ensure()?;
    setup::ensure_test_tools()?;
    crate::test_tools::ensure()?;
    crate::test_tools::ensure_deploy_venv()?;
    let root = workspace_root();
    if lint {
        // Host crates (the workspace's default members)...
        status(Command::new("cargo").current_dir(&root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))
            .context("clippy found problems in the agent crates")?;
        // ...and the kernel programs, for the target they are built for.
        status(
            Command::new("cargo")
                .current_dir(root.join("observer-ebpf"))
                .args(["+nightly", "clippy", "--target", "bpfel-unknown-none", "-Z", "build-std=core", "--bins"])
                .args(["--", "-D", "warnings"])
                .env("CARGO_ENCODED_RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH)),
        )
        .context("clippy found problems in the eBPF programs")?;
    }
    // The field tables in the docs are generated from the records' schema:
    // fail on drift before the long test run.
    crate::docs::check().context("the docs' field tables drift from the code")?;
    // Default members: the eBPF crate only builds for the BPF target (the
    // agent's build script builds it).
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).arg("test").args(args);
    if !is_root() {
        // Test binaries that load probes need root; build as the user, run
        // the binaries through sudo.
        eprintln!("xtask: running test binaries with sudo (probe tests need root)");
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E")
            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    status(&mut cmd).context("tests failed")
}

pub fn bench_process(iterations: u32, rounds: usize, agent: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!("the benchmark loads the agent's probes: run it as root");
    }
    setup::ensure()?;
    let bin = match agent {
        Some(bin) => bin,
        None => {
            let root = workspace_root();
            status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
            root.join("target/release/nhi-observer")
        }
    };
    crate::bench::process::bench(&bin, iterations, rounds).map(|_| ())
}

/// `bench scan`: content discovery against detect-secrets and ripgrep
/// (no probes: needs no root).
pub fn bench_scan(rounds: usize) -> anyhow::Result<()> {
    // ripgrep (Debian) with the test tools; detect-secrets (PyPI) by the
    // benchmark itself.
    setup::ensure_test_tools()?;
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
    crate::bench::scan::run(&root.join("target/release/nhi-observer"), rounds)
}

pub fn bench_memory() -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!("the benchmark loads the agent's probes: run it as root");
    }
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
    crate::bench::memory::bench(&root.join("target/release/nhi-observer"))
}

/// `bench idle`: the agent's CPU and wake-ups with no workload, over 60 s.
pub fn bench_idle() -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!("the benchmark loads the agent's probes: run it as root");
    }
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args(["build", "--release", "--package", "nhi-observer"]))?;
    crate::bench::idle::bench(&root.join("target/release/nhi-observer"), std::time::Duration::from_secs(60)).map(|_| ())
}
