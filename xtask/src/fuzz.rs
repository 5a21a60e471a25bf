//! A short run of every fuzz target in fuzz/ (cargo fuzz, nightly), as part
//! of `cargo xtask test`: a regression net, not a fuzzing campaign. Each
//! target starts from its committed seeds (fuzz/seeds/<target>) and a
//! working corpus in fuzz/corpus/<target> (not committed). A crash fails
//! the run; its input lands in fuzz/artifacts/<target>.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::setup::status;

/// Seconds per target; `NHI_FUZZ_SECONDS` overrides.
const DEFAULT_SECONDS: u32 = 15;

pub fn smoke(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("fuzz");
    let seconds = std::env::var("NHI_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SECONDS);
    let list = Command::new("cargo")
        .current_dir(&dir)
        .args(["+nightly", "fuzz", "list"])
        .output()
        .context("running cargo fuzz list")?;
    if !list.status.success() {
        bail!("cargo fuzz list: {}", String::from_utf8_lossy(&list.stderr).trim());
    }
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    for target in &targets {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&dir).args(["+nightly", "fuzz", "run", "-O", target]).arg(&corpus);
        let seeds = dir.join("seeds").join(target);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--").arg(format!("-max_total_time={seconds}"));
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        status(&mut cmd).with_context(|| format!("fuzz target {target} failed (input in fuzz/artifacts/{target})"))?;
    }
    Ok(())
}
