//! The peer in the overhead benchmarks: what a user would run instead of
//! the agent to see credential files opened. A bpftrace script on the
//! openat and openat2 syscall tracepoints that copies the path and compares
//! it against the same credential paths as the agent's built-in catalog
//! (`observer/src/classify/builtin.toml`, read at compile time), and prints
//! the process and path of every match.
//!
//! The script is generated from the catalog so the two watch the same
//! paths, as a user would write them with bpftrace's string functions
//! (it has no glob on strings): whole paths as keys of a map looked up with
//! the copied path, directory and `prefix*` patterns by `strncmp`, a home
//! pattern (`~/x`) spelled out under `/root` and every directory of
//! `/home`. File-name and `*suffix` patterns (`.netrc`, `*.pem`) are left
//! out: bpftrace 0.17 (Debian 12) has only `strcontains` for them, and a
//! probe with even one `strcontains` exceeds the 512-byte BPF stack there
//! (as does a chain of `==` on string literals, hence the map; the
//! `strncmp`s are split over several probes, each copying the path again).
//! The peer so does less matching than the agent, which favours the peer.
//! Exclusions are not applied, and `kernel = false` entries are left out
//! as the agent leaves them out of its kernel filter.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use super::Background;

const CATALOG: &str = include_str!("../../../observer/src/classify/builtin.toml");

/// Printed by the script's BEGIN probe, which bpftrace fires only once
/// every other probe is attached.
const READY: &str = "nhi-peer: attached";

/// bpftrace 0.17 (Debian 12) copies 64 bytes with `str()` and refuses
/// string literals over 64 bytes with the NUL: a longer path is compared by
/// its first 63 bytes.
const MAX_LITERAL: usize = 63;

/// Bytes of `strncmp` literals per probe that fit bpftrace 0.17's use of
/// the BPF stack (found by trying); a literal over half of it gets a probe
/// of its own.
const PROBE_BYTES: usize = 96;

/// How the script matches one path.
#[derive(Debug, PartialEq, Eq)]
enum Match {
    /// The whole path: a key of the script's `@cred` map.
    Exact(String),
    /// A prefix: `strncmp`.
    Prefix(String),
}

/// One catalog pattern as what the script compares; `homes` are the home
/// directories a `~/x` pattern is spelled out under. File-name and
/// `*suffix` patterns give nothing (see the module's documentation).
fn matches(pattern: &str, homes: &[String]) -> Vec<Match> {
    if !pattern.starts_with('/') && !pattern.starts_with("~/") {
        return Vec::new();
    }
    // An absolute path (one per home for `~/x`), and its /run <-> /var/run
    // twin as the agent has.
    let mut paths = match pattern.strip_prefix("~/") {
        Some(rest) => homes.iter().map(|h| format!("{h}/{rest}")).collect(),
        None => vec![pattern.to_owned()],
    };
    if let Some(rest) = pattern.strip_prefix("/var/run/") {
        paths.push(format!("/run/{rest}"));
    } else if let Some(rest) = pattern.strip_prefix("/run/") {
        paths.push(format!("/var/run/{rest}"));
    }
    let prefix = |p: &str| Match::Prefix(p[..p.len().min(MAX_LITERAL)].to_owned());
    paths
        .iter()
        .map(|p| match p.strip_suffix('*') {
            Some(head) => prefix(head),
            None if p.ends_with('/') || p.len() > MAX_LITERAL => prefix(p),
            None => Match::Exact(p.clone()),
        })
        .collect()
}

/// `/root` and the directories under `/home` (but the end-to-end tests'
/// transient `nhi-e2e-*` users): where a user's script spells out `~/x`
/// (bpftrace has no glob on strings).
fn homes() -> Vec<String> {
    let mut out = vec!["/root".to_owned()];
    if let Ok(rd) = std::fs::read_dir("/home") {
        let mut users: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| {
                e.path().is_dir() && !e.file_name().to_string_lossy().starts_with("nhi-e2e-")
            })
            .map(|e| e.path().display().to_string())
            .collect();
        users.sort();
        out.extend(users);
    }
    out
}

/// The kernel-filtered path patterns of the built-in catalog.
fn catalog_patterns() -> anyhow::Result<Vec<String>> {
    let doc: toml::Table = toml::from_str(CATALOG).context("parsing the built-in catalog")?;
    let mut out = Vec::new();
    for w in doc
        .get("watch")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
    {
        if w.get("kernel").and_then(|k| k.as_bool()) == Some(false) {
            continue;
        }
        let one = w.get("path").and_then(|p| p.as_str()).map(str::to_owned);
        let many = w
            .get("paths")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned));
        out.extend(one.into_iter().chain(many));
    }
    if out.is_empty() {
        bail!("no watched paths in the built-in catalog");
    }
    Ok(out)
}

/// The bpftrace script.
pub fn script() -> anyhow::Result<String> {
    let homes = homes();
    let all: Vec<Match> = catalog_patterns()?
        .iter()
        .flat_map(|p| matches(p, &homes))
        .collect();
    let lit = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::from(
        "// Generated by `cargo xtask bench` from observer/src/classify/builtin.toml.\nBEGIN\n{\n",
    );
    let mut prefixes = Vec::new();
    for m in &all {
        match m {
            Match::Exact(p) => s.push_str(&format!("  @cred[{}] = 1;\n", lit(p))),
            Match::Prefix(p) => prefixes.push(p.as_str()),
        }
    }
    s.push_str(&format!("  printf(\"{READY}\\n\");\n}}\n"));
    // bpftrace 0.17 runs out of the 512-byte BPF stack with a few
    // `strncmp`s in one probe (sooner with long literals): the comparisons
    // are split over probes, each copying the path again, as a user must.
    let mut probes: Vec<Vec<String>> = vec![vec!["@cred[$p]".to_owned()]];
    let mut bytes = 0;
    for p in prefixes {
        if p.len() > PROBE_BYTES / 2 || bytes + p.len() > PROBE_BYTES {
            probes.push(Vec::new());
            bytes = 0;
        }
        bytes += p.len();
        probes.last_mut().expect("one probe").push(format!(
            "strncmp($p, {}, {}) == 0",
            lit(p),
            p.len()
        ));
    }
    for conds in probes.iter().filter(|c| !c.is_empty()) {
        s.push_str(
            "\ntracepoint:syscalls:sys_enter_openat,\ntracepoint:syscalls:sys_enter_openat2\n{\n",
        );
        s.push_str("  $p = str(args->filename);\n  if (");
        s.push_str(&conds.join(" ||\n      "));
        s.push_str(") {\n    printf(\"%d %s %s\\n\", pid, comm, $p);\n  }\n}\n");
    }
    s.push_str("\nEND { clear(@cred); }\n");
    Ok(s)
}

/// Installs bpftrace (Debian package) when missing, and mounts tracefs when
/// it is not (the syscall tracepoints live there). Idempotent.
pub fn ensure() -> anyhow::Result<()> {
    crate::setup::ensure_tools(&[("bpftrace", "bpftrace")], &[], "the peer benchmark")?;
    if !Path::new("/sys/kernel/tracing/events/syscalls").is_dir() {
        crate::setup::status(Command::new("mount").args([
            "-t",
            "tracefs",
            "nodev",
            "/sys/kernel/tracing",
        ]))
        .context("mounting tracefs (bpftrace needs the syscall tracepoints)")?;
    }
    Ok(())
}

/// Writes the script into `dir` and starts bpftrace on it; returns once
/// every probe is attached. [`Background::stop`] ends it (SIGTERM) and
/// waits for it to exit.
pub fn start(dir: &Path) -> anyhow::Result<Background> {
    let path = dir.join("nhi-peer.bt");
    std::fs::write(&path, script()?).with_context(|| format!("writing {}", path.display()))?;
    let bg = Background::start(
        {
            let mut c = Command::new("bpftrace");
            c.arg(&path);
            c
        },
        READY,
    )?;
    // Its programs are loaded and held: BEGIN and the tracepoints' probes.
    let progs = prog_fds(bg.child_id());
    if progs < 2 {
        bail!("bpftrace reported ready but holds {progs} BPF programs");
    }
    Ok(bg)
}

/// How many BPF program fds `pid` holds.
fn prog_fds(pid: u32) -> usize {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|i| i.lines().any(|l| l.starts_with("prog_id:")))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_spell_out_patterns() {
        let homes = ["/root".to_owned(), "/home/bob".to_owned()];
        let m = |p| matches(p, &homes);
        let ex = |p: &str| Match::Exact(p.to_owned());
        let pre = |p: &str| Match::Prefix(p.to_owned());
        assert_eq!(
            m("~/.aws/credentials"),
            [
                ex("/root/.aws/credentials"),
                ex("/home/bob/.aws/credentials")
            ]
        );
        assert_eq!(
            m("~/.ssh/id_*"),
            [pre("/root/.ssh/id_"), pre("/home/bob/.ssh/id_")]
        );
        assert_eq!(m("*.pem"), []);
        assert_eq!(m(".netrc"), []);
        assert_eq!(m("/etc/kubernetes/pki/"), [pre("/etc/kubernetes/pki/")]);
        assert_eq!(
            m("/var/run/secrets/x/token"),
            [ex("/var/run/secrets/x/token"), ex("/run/secrets/x/token")]
        );
        assert_eq!(
            m("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")[0],
            pre("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-")
        );
    }

    #[test]
    fn script_has_the_catalog_paths() {
        let s = script().unwrap();
        for p in [
            "@cred[\"/root/.aws/credentials\"] = 1;",
            "@cred[\"/var/lib/kubelet/config.json\"] = 1;",
            "strncmp($p, \"/etc/ssh/ssh_host_\", 18) == 0",
        ] {
            assert!(s.contains(p), "{p} missing from\n{s}");
        }
    }
}
