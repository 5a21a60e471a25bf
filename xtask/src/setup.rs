//! Toolchain setup for the eBPF build, idempotent.
//!
//! bpf-linker must use the same LLVM as the nightly rustc that compiles the
//! programs. We build it against rustc's own `libLLVM.so` from the nightly
//! sysroot: a prefix directory holds `lib/libLLVM.so` (what llvm-sys links)
//! and `lib/<soname>` (what the binary loads at run time, via its RUNPATH),
//! both symlinks into the sysroot. The prefix lives under `$CARGO_HOME`, so
//! it outlives `cargo clean` and reboots.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};

const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13";

pub fn ensure() -> anyhow::Result<()> {
    which("rustup").context(
        "rustup is not on PATH: install Rust with rustup (https://rustup.rs) so the nightly toolchain can be managed",
    )?;
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    Ok(())
}

/// cargo-fuzz, for the fuzz targets' short runs in `cargo xtask test`.
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if output("cargo", &["fuzz", "--version"]).is_ok() {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz from crates.io (a few minutes, once)");
    status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("cannot install cargo-fuzz; it needs network access to crates.io")
}

fn ensure_nightly() -> anyhow::Result<()> {
    if output("rustc", &[&format!("+{NIGHTLY}"), "--version"]).is_ok() {
        return Ok(());
    }
    eprintln!("setup: installing the {NIGHTLY} toolchain (eBPF programs need -Z build-std)");
    status(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
        .context("cannot install the nightly toolchain; check network access to static.rust-lang.org")
}

fn sysroot() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(output("rustc", &[&format!("+{NIGHTLY}"), "--print", "sysroot"])?.trim()))
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let src = sysroot()?.join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        return Ok(());
    }
    eprintln!("setup: adding the rust-src component to {NIGHTLY}");
    status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        .context("cannot add rust-src to the nightly toolchain; check network access to static.rust-lang.org")
}

fn bpf_linker_ok() -> bool {
    output("bpf-linker", &["--version"]).is_ok_and(|v| v.trim().starts_with(&format!("bpf-linker {BPF_LINKER_VERSION}")))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    let sysroot = sysroot()?;
    let llvm_lib = find_libllvm(&sysroot.join("lib"))?;
    let soname = llvm_lib.file_name().ok_or_else(|| anyhow!("bad libLLVM path"))?.to_owned();
    let major = llvm_major()?;
    let prefix = cargo_home()?.join("nhi-observer-llvm").join(&soname);
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in [Path::new("libLLVM.so"), Path::new(&soname)] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm_lib, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), llvm_lib.display()))?;
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against rustc's LLVM {major} ({}); about a minute",
        llvm_lib.display()
    );
    let feature = format!("llvm-{major}");
    status(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", &format!("~{BPF_LINKER_VERSION}"), "--force"])
            .args(["--no-default-features", "--features", &feature])
            .env("LLVM_PREFIX", &prefix),
    )
    .with_context(|| {
        format!(
            "cannot build bpf-linker with feature {feature}; it needs network access to crates.io and a \
             bpf-linker release that supports LLVM {major}"
        )
    })?;
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker was installed but does not run; is {} on PATH, and does {} exist?",
            cargo_home()?.join("bin").display(),
            lib.join(&soname).display()
        );
    }
    Ok(())
}

fn find_libllvm(dir: &Path) -> anyhow::Result<PathBuf> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libLLVM.so.") || n.starts_with("libLLVM-"))
        })
        .ok_or_else(|| anyhow!("no libLLVM shared library in {}; is the nightly toolchain complete?", dir.display()))
}

fn llvm_major() -> anyhow::Result<u32> {
    let vv = output("rustc", &[&format!("+{NIGHTLY}"), "-vV"])?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(|| anyhow!("cannot read the LLVM version from `rustc +{NIGHTLY} -vV`"))
}

fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = env::var_os("HOME").ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// Tools the end-to-end tests run, with the Debian package of each.
const TEST_TOOLS: &[(&str, &str)] = &[
    ("unshare", "util-linux"),
    ("script", "bsdutils"),
    ("mount", "mount"),
    // Network sensor tests: real peers and the test's own namespaces.
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("ip", "iproute2"),
    ("python3", "python3"),
    // The evidence report's HTML, rendered headless (e2e_findings).
    ("chromium", "chromium"),
    // Deployment tests (tests/e2e_deploy_*.rs, tests/deploy_manifests.rs).
    ("buildah", "buildah"),
    ("debootstrap", "debootstrap"),
    ("kubectl", "kubectl"),
    ("systemd-analyze", "systemd"),
    ("setpriv", "util-linux"),
    ("chroot", "coreutils"),
    // Discovery (issue 14): the noise test compiles a program; the scan
    // benchmark compares with ripgrep.
    ("gcc", "gcc"),
    ("rg", "ripgrep"),
];

/// Libraries the tests compile their clients against: (header, package).
const TEST_HEADERS: &[(&str, &str)] = &[
    // io_uring opens (tests/e2e_iouring.rs): the client uses liburing.
    ("/usr/include/liburing.h", "liburing-dev"),
];

/// Installs the tools the end-to-end tests need when missing (Debian and
/// derivatives: apt-get, as root or through sudo). Idempotent and instant
/// when all are present.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    ensure_tools(TEST_TOOLS, TEST_HEADERS, "the end-to-end tests")
}

/// Installs the Debian packages of the `(tool, package)` pairs whose tool is
/// not on PATH and of the `(header, package)` pairs whose file is missing,
/// for `purpose` (messages). Idempotent.
pub fn ensure_tools(tools: &[(&str, &str)], headers: &[(&str, &str)], purpose: &str) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools.iter().filter(|(t, _)| which(t).is_err()).map(|(_, p)| *p).collect();
    missing.extend(headers.iter().filter(|(h, _)| !Path::new(h).exists()).map(|(_, p)| *p));
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {} for {purpose}", missing.join(", "));
    if which("apt-get").is_err() {
        bail!("{purpose} need {} (missing), and there is no apt-get here to install them", missing.join(", "));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let apt = |args: &[&str]| {
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        status(&mut c)
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install).with_context(|| format!("cannot install {}", missing.join(", ")))
}

pub fn which(program: &str) -> anyhow::Result<PathBuf> {
    let paths = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{program} not found on PATH"))
}

pub fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}
