//! `bench scan`: at-rest discovery by content, side by side in one run with
//! detect-secrets (PyPI) and ripgrep (Debian), on the same inputs.
//!
//! - Recall on the fixture corpus (`observer-creds/tests/corpus` and
//!   `tests/content`): of the files that hold a credential (their expected
//!   identities name one that is not public material), the share each tool
//!   flags. `nhi-observer scan` is the product as shipped (catalog and
//!   content); `detect-secrets scan --all-files` with its default plugins.
//! - Wall time on a generated tree (source-like text, binaries, and a
//!   credential fixture planted in one file of a hundred, at names no
//!   catalog rule knows): `nhi-observer scan` against `rg` searching the
//!   same tree for the same token prefixes and key headers (`-F`, no
//!   ignore files, hidden files included), interleaved rounds, medians
//!   and the ratio; detect-secrets once on a tenth of the tree, scaled,
//!   for scale.
//!
//! Prints a table; figures are only comparable within one run.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use super::median;

/// Files in the generated tree.
const TREE_FILES: usize = 20_000;

/// Token prefixes and key headers rg searches for: the literals the
/// content detector starts from (observer-creds `tokens::PREFIXES` and the
/// PEM/OpenSSH headers).
const LITERALS: &[&str] = &[
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "AKIA",
    "ASIA",
    "github_pat_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "sk_live_",
    "npm_",
    "pypi-",
    "hvs.",
    "sk-ant-",
    "AIza",
    "ya29.",
    "eyJ",
    "\"private_key\"",
];

pub fn run(bin: &Path, rounds: usize) -> anyhow::Result<()> {
    let root = crate::tasks::workspace_root();
    let rg = crate::setup::which("rg").context("ripgrep (Debian `ripgrep`) is needed")?;
    let ds = detect_secrets()?;
    let work = std::env::temp_dir().join(format!("nhi-bench-scan-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let state = work.join("state");
    fs::create_dir_all(&state)?;

    // Recall on the fixture corpus.
    let creds = root.join("observer-creds/tests");
    let corpus = work.join("corpus");
    copy_tree(&creds.join("corpus"), &corpus.join("corpus"))?;
    copy_tree(&creds.join("content"), &corpus.join("content"))?;
    let truth = truth(&creds)?;
    let ours = observer_files(bin, &state, &corpus)?;
    let theirs = detect_secrets_files(&ds, &corpus)?;
    let recall = |found: &BTreeSet<String>| truth.iter().filter(|t| found.contains(*t)).count();
    let (r_ours, r_ds) = (recall(&ours), recall(&theirs));
    let missed_ours: Vec<_> = truth.iter().filter(|t| !ours.contains(*t)).collect();
    let missed_ds: Vec<_> = truth.iter().filter(|t| !theirs.contains(*t)).collect();

    // Wall time on a generated tree.
    let tree = work.join("tree");
    let planted = generate(&tree, &creds)?;
    let mut t_ours = Vec::new();
    let mut t_rg = Vec::new();
    let mut found_ours = 0;
    let mut found_rg = 0;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let files = observer_files(bin, &state, &tree)?;
        t_ours.push(start.elapsed().as_secs_f64());
        found_ours = planted.iter().filter(|p| files.contains(*p)).count();
        let start = Instant::now();
        let files = rg_files(&rg, &tree)?;
        t_rg.push(start.elapsed().as_secs_f64());
        found_rg = planted.iter().filter(|p| files.contains(*p)).count();
    }
    // detect-secrets is two orders of magnitude slower: one run on a tenth
    // of the tree (every tenth of its 400 packages), scaled to the whole.
    let subset: Vec<String> = (0..40).map(|i| format!("pkg{:03}", i * 10 + 2)).collect();
    let start = Instant::now();
    let ds_tree = detect_secrets_files_in(&ds, &tree, &subset)?;
    let t_ds = start.elapsed().as_secs_f64() * 10.0;
    let in_subset: Vec<&String> = planted.iter().filter(|p| subset.iter().any(|s| p.starts_with(&format!("{s}/")))).collect();
    let found_ds = in_subset.iter().filter(|p| ds_tree.contains(**p)).count();
    let (m_ours, m_rg) = (median(&mut t_ours), median(&mut t_rg));

    println!("\nbench scan: fixture corpus ({} files holding a credential)", truth.len());
    println!("| tool | files flagged that hold a credential | recall |");
    println!("|---|---|---|");
    println!("| nhi-observer scan | {r_ours} | {:.1}% |", 100.0 * r_ours as f64 / truth.len() as f64);
    println!("| detect-secrets {} | {r_ds} | {:.1}% |", ds_version(&ds), 100.0 * r_ds as f64 / truth.len() as f64);
    println!("missed by nhi-observer: {missed_ours:?}");
    println!("missed by detect-secrets: {missed_ds:?}");
    println!("\nbench scan: generated tree ({TREE_FILES} files, {} with a planted credential), {} rounds", planted.len(), rounds.max(1));
    println!("| tool | median wall time | vs rg | planted files found |");
    println!("|---|---|---|---|");
    println!("| nhi-observer scan (content + catalog) | {m_ours:.3} s | {:.2}x | {found_ours} |", m_ours / m_rg);
    println!("| rg -F (prefixes and key headers) | {m_rg:.3} s | 1.00x | {found_rg} |");
    println!(
        "| detect-secrets (one run on a tenth, x10) | {t_ds:.1} s | {:.0}x | {found_ds} of the {} in that tenth |",
        t_ds / m_rg,
        in_subset.len()
    );
    if r_ours < r_ds {
        eprintln!("bench scan: recall below detect-secrets' on the fixture corpus");
    }
    if std::env::var_os("NHI_BENCH_KEEP").is_some() {
        eprintln!("bench scan: inputs kept in {}", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Relative paths of the fixtures that hold a credential.
fn truth(creds: &Path) -> anyhow::Result<BTreeSet<String>> {
    const PUBLIC: &[&str] = &["x509.certificate", "x509.ca_certificate", "ssh.public_key", "spiffe.x509_svid"];
    let mut out = BTreeSet::new();
    for (index, dir) in [("corpus.json", "corpus"), ("content.json", "content")] {
        let text = fs::read_to_string(creds.join(index))?;
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        for c in cases {
            let file = c["file"].as_str().unwrap_or_default();
            let ids = c["identities"].as_array().cloned().unwrap_or_default();
            let holds = ids.iter().any(|i| !PUBLIC.contains(&i["kind"].as_str().unwrap_or_default())) || c.get("same_as").is_some();
            if holds {
                out.insert(format!("{dir}/{file}"));
            }
        }
    }
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

/// Files `nhi-observer scan --json` lists, relative to `dir`.
fn observer_files(bin: &Path, state: &Path, dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let out = Command::new(bin).args(["scan", "--json", "--state-dir"]).arg(state).arg(dir).stderr(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("nhi-observer scan failed: {}", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("scan --json output")?;
    let prefix = format!("{}/", dir.display());
    Ok(v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["path"].as_str()?.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

fn rg_files(rg: &Path, dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut cmd = Command::new(rg);
    cmd.args(["--no-ignore", "--hidden", "-l", "-F"]);
    for l in LITERALS {
        cmd.arg("-e").arg(l);
    }
    let out = cmd.arg(".").current_dir(dir).output()?;
    // 1: no match; 2: an error (unreadable entries), matches still listed.
    if out.status.code() == Some(2) && out.stdout.is_empty() {
        bail!("rg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").to_owned()).collect())
}

fn detect_secrets_files(ds: &Path, dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    detect_secrets_files_in(ds, dir, &[".".to_owned()])
}

fn detect_secrets_files_in(ds: &Path, dir: &Path, paths: &[String]) -> anyhow::Result<BTreeSet<String>> {
    let out = Command::new(ds).args(["scan", "--all-files"]).args(paths).current_dir(dir).stderr(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("detect-secrets failed: {}", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("detect-secrets output")?;
    Ok(v["results"].as_object().into_iter().flatten().map(|(k, _)| k.trim_start_matches("./").to_owned()).collect())
}

/// detect-secrets from PyPI, installed when missing (pip; Debian's own
/// python3 needs `--break-system-packages`).
fn detect_secrets() -> anyhow::Result<PathBuf> {
    if let Ok(p) = crate::setup::which("detect-secrets") {
        return Ok(p);
    }
    eprintln!("bench: installing detect-secrets from PyPI");
    let pip = |extra: &[&str]| {
        Command::new("python3").args(["-m", "pip", "install", "--quiet"]).args(extra).arg("detect-secrets==1.5.0").status()
    };
    if !pip(&[]).is_ok_and(|s| s.success()) && !pip(&["--break-system-packages"]).is_ok_and(|s| s.success()) {
        bail!("cannot install detect-secrets with pip; check access to PyPI");
    }
    crate::setup::which("detect-secrets").context("detect-secrets installed but not on PATH")
}

fn ds_version(ds: &Path) -> String {
    Command::new(ds)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A small deterministic generator: the same tree every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes the tree; returns the relative paths of the planted files.
fn generate(tree: &Path, creds: &Path) -> anyhow::Result<Vec<String>> {
    let mut fixtures = Vec::new();
    for f in truth(creds)? {
        let (dir, rel) = f.split_once('/').unwrap_or(("", &f));
        let bytes = fs::read(creds.join(dir).join(rel))?;
        // Text fixtures only: binaries (DER, PKCS#12) are not searched by
        // content by either tool.
        if !bytes.contains(&0) {
            fixtures.push(bytes);
        }
    }
    let words = [
        "let", "token", "value", "parse", "buffer", "password", "reader", "config", "session", "client", "request", "secret",
        "handler", "return", "match", "result", "error", "stream", "index", "cache",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut planted = Vec::new();
    for i in 0..TREE_FILES {
        let dir = format!("pkg{:03}/src/mod{:02}", i % 400, (i / 400) % 50);
        fs::create_dir_all(tree.join(&dir))?;
        let kind = i % 100;
        let (name, bytes) = if kind == 42 {
            let f = &fixtures[(rng.next() as usize) % fixtures.len()];
            let name = format!("{dir}/notes_{i}.txt");
            planted.push(name.clone());
            let mut b = b"# copied from elsewhere\n".to_vec();
            b.extend_from_slice(f);
            (name, b)
        } else if kind == 7 {
            let mut b = vec![0u8; 4096];
            for x in b.iter_mut() {
                *x = rng.next() as u8;
            }
            b[0] = 0;
            (format!("{dir}/blob_{i}.bin"), b)
        } else {
            let mut s = String::with_capacity(4096);
            let lines = 40 + (rng.next() % 80) as usize;
            for l in 0..lines {
                let a = words[(rng.next() % words.len() as u64) as usize];
                let b = words[(rng.next() % words.len() as u64) as usize];
                match l % 4 {
                    0 => s.push_str(&format!("    let {a}_{l} = {b}(input, {l});\n")),
                    1 => s.push_str(&format!("    // {a} the {b} before the next {a}\n")),
                    2 => s.push_str(&format!("    {a}.{b}_{l}().map_err(Error::{b})?;\n")),
                    _ => s.push_str(&format!("fn {a}_{b}_{i}_{l}(x: u64) -> u64 {{ x.wrapping_mul({}) }}\n", rng.next() % 1000)),
                }
            }
            (format!("{dir}/file_{i}.rs"), s.into_bytes())
        };
        fs::write(tree.join(&name), bytes)?;
    }
    Ok(planted)
}
