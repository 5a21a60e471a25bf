//! Python test peers the network-sensor tests run, installed idempotently
//! (instant when present): pip (Debian's `python3-pip`) and aioquic from
//! PyPI (the QUIC client and server of tests/net/quic_peer.py). The Debian
//! tools themselves are in `setup::ensure_test_tools`.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::setup::{output, status};

const AIOQUIC: &str = "aioquic>=1.2,<2";

pub fn ensure() -> anyhow::Result<()> {
    if output("python3", &["-c", "import aioquic"]).is_ok() {
        return Ok(());
    }
    if output("python3", &["-m", "pip", "--version"]).is_err() {
        eprintln!("setup: installing python3-pip (to install aioquic)");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() == 0 };
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        status(c.args(["install", "-y", "-q", "--no-install-recommends", "python3-pip"]).env("DEBIAN_FRONTEND", "noninteractive"))
            .context("cannot install python3-pip")?;
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
