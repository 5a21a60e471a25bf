//! What the test suite needs besides Rust, installed idempotently (fast
//! when present): the Debian tools the end-to-end tests run as real peers
//! (curl, openssl, iproute2, Python with pip), the Python QUIC peer
//! (aioquic, from PyPI) and cargo-fuzz.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::setup::{output, status, which};

/// (program on PATH, Debian package that provides it)
const DEBIAN_TOOLS: &[(&str, &str)] =
    &[("curl", "curl"), ("openssl", "openssl"), ("ip", "iproute2"), ("python3", "python3")];
const AIOQUIC: &str = "aioquic>=1.2,<2";
const CARGO_FUZZ_VERSION: &str = "0.13";

pub fn ensure() -> anyhow::Result<()> {
    ensure_debian()?;
    ensure_aioquic()?;
    ensure_cargo_fuzz()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = if is_root() { Command::new("apt-get") } else { Command::new("sudo") };
    if !is_root() {
        cmd.arg("apt-get");
    }
    status(cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_debian() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = DEBIAN_TOOLS.iter().filter(|(bin, _)| which(bin).is_err()).map(|(_, pkg)| *pkg).collect();
    if which("python3").is_ok() && output("python3", &["-m", "pip", "--version"]).is_err() {
        missing.push("python3-pip");
    }
    if missing.is_empty() {
        return Ok(());
    }
    which("apt-get").with_context(|| format!("the tests need {missing:?}; install them (no apt-get here)"))?;
    eprintln!("setup: installing {} (test peers)", missing.join(" "));
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args).with_context(|| format!("cannot install {missing:?} with apt-get"))
}

fn ensure_aioquic() -> anyhow::Result<()> {
    if output("python3", &["-c", "import aioquic"]).is_ok() {
        return Ok(());
    }
    eprintln!("setup: installing {AIOQUIC} from PyPI (QUIC test peer)");
    let plain = status(Command::new("python3").args(["-m", "pip", "install", "--quiet", AIOQUIC]));
    if plain.is_err() {
        // Debian's own python3 refuses pip installs (PEP 668) unless told.
        status(Command::new("python3").args(["-m", "pip", "install", "--quiet", "--break-system-packages", AIOQUIC]))
            .context("cannot install aioquic with pip; check access to PyPI")?;
    }
    if output("python3", &["-c", "import aioquic"]).is_err() {
        bail!("aioquic was installed but `python3 -c 'import aioquic'` still fails");
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if output("cargo", &["fuzz", "--version"]).is_ok_and(|v| v.contains(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}"))) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (a few minutes, once)");
    status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked", "--version", &format!("~{CARGO_FUZZ_VERSION}")]))
        .context("cannot install cargo-fuzz; check access to crates.io")
}
