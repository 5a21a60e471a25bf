//! `nhi-observer check`: can the agent run on this host, and what will it
//! see? Each finding is a line in plain words; the verdict is the exit code.
//! Capabilities are reported per sensor (`caps`): which it needs, whether held.
use std::{fmt, path::Path};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_map_supported, is_program_supported},
};
use ::caps::CapSet;

use crate::probes::{self, ProbeOptions, Probes, offsets};

mod caps;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The agent runs, but something is not seen.
    Warn,
    /// The agent cannot run.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok  ",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        })
    }
}

#[derive(Debug)]
pub struct Finding {
    pub status: Status,
    pub topic: &'static str,
    pub detail: String,
}

fn finding(status: Status, topic: &'static str, detail: impl Into<String>) -> Finding {
    Finding { status, topic, detail: detail.into() }
}

pub fn run(ring_bytes: u32) -> Vec<Finding> {
    let mut out = vec![kernel(), btf(), cgroup_v2()];
    out.extend(capabilities());
    out.push(caps::memlock_finding(kernel_version()));
    out.extend(program_types());
    out.push(probes_attach(ring_bytes));
    out
}

/// Exit status for a list of findings: 0 when the agent can run.
pub fn can_run(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.status != Status::Fail)
}

pub fn print(findings: &[Finding]) {
    for f in findings {
        println!("{} {:<14} {}", f.status, f.topic, f.detail);
    }
    if can_run(findings) {
        println!("verdict: nhi-observer can run on this host");
    } else {
        println!("verdict: nhi-observer cannot run on this host (see FAIL lines)");
    }
}

fn kernel() -> Finding {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    match parse_version(&release) {
        Some(v) if v >= (5, 8) => finding(Status::Ok, "kernel", format!("{release} (5.8 or later needed for the BPF ring buffer)")),
        Some(_) => finding(Status::Fail, "kernel", format!("{release} is older than 5.8: no BPF ring buffer")),
        None => finding(Status::Warn, "kernel", format!("cannot parse kernel release `{release}`")),
    }
}

fn kernel_version() -> Option<(u32, u32)> {
    parse_version(&nix::sys::utsname::uname().ok()?.release().to_string_lossy())
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn btf() -> Finding {
    let path = Path::new(offsets::VMLINUX_BTF);
    if !path.exists() {
        return finding(Status::Fail, "btf", format!("{} is missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y", path.display()));
    }
    match offsets::resolve_file(path) {
        Ok(_) => finding(Status::Ok, "btf", format!("{} present; kernel structure offsets resolved", path.display())),
        Err(e) => finding(
            Status::Warn,
            "btf",
            format!("{} present but offsets did not resolve ({e}): no inode, resolved path, executable or parent in events", path.display()),
        ),
    }
}

fn cgroup_v2() -> Finding {
    match crate::host::cgroup2_mount() {
        Some(m) => finding(Status::Ok, "cgroup v2", format!("mounted at {m}")),
        None => finding(
            Status::Warn,
            "cgroup v2",
            "not mounted: no network sensor (connections, TLS/QUIC server names, metadata calls), no workload identity from cgroups",
        ),
    }
}

fn capabilities() -> Vec<Finding> {
    match ::caps::read(None, CapSet::Effective) {
        Ok(held) => caps::sensor_findings(&held),
        Err(e) => vec![finding(Status::Warn, "capabilities", format!("cannot read capabilities: {e}"))],
    }
}

fn program_types() -> Vec<Finding> {
    let types: &[(&str, ProgramType, &str)] = &[
        ("fentry/fexit", ProgramType::Tracing, "not used"),
        ("tracepoint", ProgramType::TracePoint, "not used yet"),
        ("raw tracepoint", ProgramType::RawTracePoint, "not used yet"),
        ("cgroup_skb", ProgramType::CgroupSkb, "network sensor: first payload bytes"),
        ("cgroup_sock_addr", ProgramType::CgroupSockAddr, "network sensor: connect, sendmsg"),
        ("cgroup_sock", ProgramType::CgroupSock, "network sensor: socket release"),
        ("sock_ops", ProgramType::SockOps, "not used yet"),
    ];
    let mut out: Vec<Finding> = types
        .iter()
        .map(|(name, ty, role)| match is_program_supported(*ty) {
            Ok(true) => finding(Status::Ok, "program type", format!("{name}: loads ({role})")),
            Ok(false) => finding(Status::Warn, "program type", format!("{name}: not supported by this kernel ({role})")),
            Err(e) => finding(Status::Warn, "program type", format!("{name}: refused ({e}; {role})")),
        })
        .collect();
    out.push(if kprobes_available() {
        finding(Status::Ok, "program type", "kprobe: kprobes available (not used)")
    } else {
        finding(Status::Ok, "program type", "kprobe: absent, CONFIG_KPROBES off (not used)")
    });
    out.push(match is_map_supported(MapType::RingBuf) {
        Ok(true) => finding(Status::Ok, "map type", "ring buffer: supported"),
        Ok(false) => finding(Status::Fail, "map type", "ring buffer: not supported (kernel 5.8+ needed)"),
        Err(e) => finding(Status::Warn, "map type", format!("ring buffer: probe failed: {e}")),
    });
    out
}

fn kprobes_available() -> bool {
    ["/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn probes_attach(ring_bytes: u32) -> Finding {
    let attached = Probes::load(&ProbeOptions { ring_bytes, dedup_ns: 0 }).and_then(|mut p| p.attach().map(|()| p));
    let names: Vec<String> =
        probes::PROGRAM_LIST.iter().map(|(name, hook)| format!("{name} ({} on {})", hook.kind(), hook.target())).collect();
    match attached {
        // Dropping the probes detaches them again.
        Ok(_probes) => finding(Status::Ok, "probes", format!("load and attach: {}", names.join(", "))),
        Err(e) => finding(Status::Fail, "probes", format!("cannot load or attach: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_version("5.8.0"), Some((5, 8)));
        assert_eq!(parse_version("garbage"), None);
        assert!((5, 10) >= (5, 8) && (4, 19) < (5, 8));
    }
}
