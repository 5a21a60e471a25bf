//! Python test peers the network-sensor tests run, installed idempotently
//! (instant when present): pip (Debian's `python3-pip`) and aioquic from
//! PyPI (the QUIC client and server of tests/net/quic_peer.py). The Debian
//! tools themselves are in `setup::ensure_test_tools`.
//!
//! The deployment tests' Python tools (kubernetes-validate, checkov, chdb)
//! go into a virtual environment of their own under the test cache
//! (`/var/cache/nhi-observer-test/venv`, or `$NHI_TEST_CACHE/venv`), so
//! checkov's many pinned dependencies never meet the system's packages.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::setup::{output, status};

const AIOQUIC: &str = "aioquic>=1.2,<2";

/// PyPI packages of the deployment tests, and a module each to import as
/// the check that it is installed.
const DEPLOY_PACKAGES: &[(&str, &str)] =
    &[("kubernetes-validate>=1.30,<2", "kubernetes_validate"), ("checkov>=3.2,<4", "checkov"), ("chdb>=3,<5", "chdb")];

fn test_cache() -> std::path::PathBuf {
    std::env::var_os("NHI_TEST_CACHE")
        .map_or_else(|| std::path::PathBuf::from("/var/cache/nhi-observer-test"), std::path::PathBuf::from)
}

/// The deployment tests' virtual environment (about 90 s to make, once).
pub fn ensure_deploy_venv() -> anyhow::Result<()> {
    let venv = test_cache().join("venv");
    let python = venv.join("bin/python");
    let py = python.to_string_lossy().into_owned();
    let imports = DEPLOY_PACKAGES.iter().map(|(_, m)| format!("import {m}")).collect::<Vec<_>>().join("; ");
    if output(&py, &["-c", &imports]).is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(test_cache()).with_context(|| format!("creating {}", test_cache().display()))?;
    if !python.exists() {
        eprintln!("setup: making {} for the deployment tests", venv.display());
        let made = status(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        if made.is_err() {
            // Debian's python3 needs python3-venv for that.
            let mut c = apt_command();
            status(c.args(["install", "-y", "-q", "--no-install-recommends", "python3-venv"]))
                .context("cannot install python3-venv")?;
            status(Command::new("python3").arg("-m").arg("venv").arg(&venv))
                .context("cannot make the deployment tests' virtual environment")?;
        }
    }
    eprintln!("setup: installing kubernetes-validate, checkov and chdb from PyPI (a minute or two, once)");
    status(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(DEPLOY_PACKAGES.iter().map(|(p, _)| *p)))
        .context("cannot install the deployment tests' Python tools; check access to PyPI")?;
    if output(&py, &["-c", &imports]).is_err() {
        bail!("the deployment tests' Python tools were installed but do not import");
    }
    Ok(())
}

fn apt_command() -> Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
    if !root {
        c.arg("apt-get");
    }
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

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
