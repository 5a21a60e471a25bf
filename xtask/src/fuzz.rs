//! Fuzz targets (`fuzz/`, cargo fuzz): build all, run each for a while,
//! seeded with the fixture corpus of the format it parses.
//!
//! Targets are listed by `cargo fuzz list`, so new ones (net_* from the
//! network sensor) run without changes here; `creds_<format>` targets get
//! the corpus files of their format as seeds.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::setup::{self, output, status};

/// Seconds per target in `cargo xtask test`: a smoke run, not a campaign.
pub const SMOKE_SECONDS: u32 = 8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

pub fn run(seconds: u32, filter: Option<&str>) -> anyhow::Result<()> {
    setup::ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    let seconds = std::env::var("NHI_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(seconds);
    eprintln!("xtask: building the fuzz targets (nightly, sanitizers)");
    status(Command::new("cargo").current_dir(&fuzz_dir).args(["+nightly", "fuzz", "build"]))
        .context("building the fuzz targets")?;
    let list = output("cargo", &["+nightly", "fuzz", "list", "--fuzz-dir", &fuzz_dir.to_string_lossy()])?;
    let targets: Vec<&str> = list.lines().map(str::trim).filter(|t| !t.is_empty() && filter.is_none_or(|f| t.contains(f))).collect();
    if targets.is_empty() {
        bail!("no fuzz targets found in {}", fuzz_dir.display());
    }
    let seeds = seeds_by_format()?;
    for t in &targets {
        let corpus = fuzz_dir.join("corpus").join(t);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seed_dir = fuzz_dir.join("corpus").join(format!("{t}.seeds"));
        let _ = fs::remove_dir_all(&seed_dir);
        fs::create_dir_all(&seed_dir)?;
        let format = t.strip_prefix("creds_").map(|f| f.replace('_', "-"));
        let files: Vec<&PathBuf> = match format.as_deref() {
            Some("auto" | "content") => seeds.iter().map(|(_, p)| p).collect(),
            Some(f) => seeds.iter().filter(|(sf, _)| sf == f).map(|(_, p)| p).collect(),
            None => Vec::new(),
        };
        for (i, f) in files.iter().enumerate() {
            fs::copy(f, seed_dir.join(format!("seed-{i}")))?;
        }
        // Committed seeds of their own (net_*: real ClientHellos, the RFC
        // 9001 Initial packet, metadata requests).
        if let Ok(own) = fs::read_dir(fuzz_dir.join("seeds").join(t)) {
            for e in own.filter_map(Result::ok) {
                fs::copy(e.path(), seed_dir.join(e.file_name()))?;
            }
        }
        eprintln!("xtask: fuzzing {t} for {seconds} s ({} seeds)", files.len());
        status(
            Command::new("cargo")
                .current_dir(&fuzz_dir)
                .args(["+nightly", "fuzz", "run", t])
                .arg(&corpus)
                .arg(&seed_dir)
                .args(["--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=2048", "-max_len=65536"]),
        )
        .with_context(|| format!("fuzz target {t} failed; the reproducer is under fuzz/artifacts/{t}/"))?;
    }
    eprintln!("xtask: {} fuzz targets ran {seconds} s each without a failure", targets.len());
    Ok(())
}

/// (format, file) for every fixture of the credential corpus.
fn seeds_by_format() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let dir = root().join("observer-creds/tests");
    let text = fs::read_to_string(dir.join("corpus.json")).context("reading the fixture corpus index")?;
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).context("parsing corpus.json")?;
    Ok(cases
        .iter()
        .filter_map(|c| Some((c["format"].as_str()?.to_owned(), dir.join("corpus").join(c["file"].as_str()?))))
        .filter(|(_, p)| Path::new(p).is_file())
        .collect())
}
