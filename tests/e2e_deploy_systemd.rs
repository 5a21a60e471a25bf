//! The systemd unit (deploy/systemd/nhi-observer.service), checked for
//! real: `systemd-analyze security` scores it (systemd is not PID 1 on the
//! test machines, so `--offline=true`), and the real agent runs under the
//! unit's own capability bounding set, no-new-privileges (setpriv), system
//! call filter and address families (a seccomp filter built from the
//! unit's lines, as systemd builds it) and file-system protections (a
//! mount namespace with every mount read-only but the state directory, a
//! private /tmp), and must still report a credential file read, a
//! credential variable at exec and a TLS server name. Not emulated:
//! PrivateDevices, MemoryDenyWriteExecute, the Restrict*/Protect* options
//! that have no file-system or seccomp form here.
mod common;

use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::Arc};

use common::{
    deploy::{exercise, run_ok, tools_available},
    *,
};

/// The exposure `systemd-analyze security` may give the unit (0 best, 10
/// worst); 7.0 before this unit was hardened.
const MAX_EXPOSURE: f64 = 4.0;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/nhi-observer.service")
}

/// The unit's `[Service]` settings: key -> every value given (a key may
/// repeat, e.g. SystemCallFilter).
fn service_settings() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(unit_path()).expect("read the unit");
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]"
            && let Some((k, v)) = line.split_once('=')
        {
            out.entry(k.trim().to_owned()).or_default().push(v.trim().to_owned());
        }
    }
    out
}

fn one<'a>(s: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    s.get(key).and_then(|v| v.last()).unwrap_or_else(|| panic!("the unit sets no {key}"))
}

/// The overall exposure is 4.0 or less; exit 64 (bad configuration) is
/// not restarted, and the agent does exit 64 on a bad configuration.
#[test]
fn unit_scores_at_most_4_and_does_not_restart_on_config_errors() {
    if !tools_available("unit_scores_at_most_4", &["systemd-analyze"]) {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{text}");

    let s = service_settings();
    assert!(one(&s, "RestartPreventExitStatus").split_whitespace().any(|c| c == "64"));
    assert_eq!(one(&s, "Restart"), "on-failure");
    // The agent's own answer to a bad configuration is that exit status.
    let bad = Command::new(agent_binary())
        .args(["run", "--health-listen", "not-an-address"])
        .env("NHI_OBSERVER_LOG", "error")
        .output()
        .expect("agent");
    assert_eq!(bad.status.code(), Some(64), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("health_listen"));
}

/// `systemd-analyze syscall-filter` expanded to system call names
/// (groups recursively), as systemd resolves a SystemCallFilter line.
fn expand(items: &[&str], out: &mut std::collections::BTreeSet<String>, seen: &mut std::collections::BTreeSet<String>) {
    for item in items {
        if let Some(group) = item.strip_prefix('@') {
            if !seen.insert(group.to_owned()) {
                continue;
            }
            let text = run_ok(Command::new("systemd-analyze").args(["syscall-filter", "--no-pager", item]));
            let members: Vec<&str> = text
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            assert!(!members.is_empty(), "systemd-analyze knows no {item}");
            expand(&members, out, seen);
        } else {
            out.insert((*item).to_owned());
        }
    }
}

/// The seccomp filter systemd would install for the unit: its allowed
/// system calls (SystemCallFilter lines: an allow list, then `~` lines
/// removing from it) fail with SystemCallErrorNumber otherwise, and
/// socket(2) only for RestrictAddressFamilies.
fn unit_seccomp(s: &BTreeMap<String, Vec<String>>) -> seccompiler::BpfProgram {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
    let mut allowed = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in s.get("SystemCallFilter").expect("the unit filters system calls") {
        if let Some(deny) = line.strip_prefix('~') {
            let mut removed = std::collections::BTreeSet::new();
            expand(&deny.split_whitespace().collect::<Vec<_>>(), &mut removed, &mut std::collections::BTreeSet::new());
            allowed.retain(|c| !removed.contains(c));
        } else {
            expand(&line.split_whitespace().collect::<Vec<_>>(), &mut allowed, &mut seen);
        }
    }
    assert!(allowed.contains("bpf") && allowed.contains("openat2"), "unexpected filter: {allowed:?}");
    let errno = match one(s, "SystemCallErrorNumber") {
        "EPERM" => libc::EPERM,
        other => panic!("SystemCallErrorNumber {other}: teach the test its number"),
    };
    let families: Vec<u64> = one(s, "RestrictAddressFamilies")
        .split_whitespace()
        .map(|f| match f {
            "AF_UNIX" => libc::AF_UNIX as u64,
            "AF_INET" => libc::AF_INET as u64,
            "AF_INET6" => libc::AF_INET6 as u64,
            "AF_NETLINK" => libc::AF_NETLINK as u64,
            other => panic!("address family {other}: teach the test its number"),
        })
        .collect();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in &allowed {
        // Names of other architectures (e.g. arm_fadvise64_64) do not exist here.
        let Ok(nr) = name.parse::<syscalls::Sysno>() else { continue };
        let nr = nr.id() as i64;
        if nr == libc::SYS_socket {
            let per_family = families
                .iter()
                .map(|f| {
                    SeccompRule::new(vec![
                        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *f).expect("condition"),
                    ])
                    .expect("rule")
                })
                .collect();
            rules.insert(nr, per_family);
        } else {
            rules.insert(nr, vec![]);
        }
    }
    assert!(rules.contains_key(&libc::SYS_socket), "the filter must allow socket(2) for the allowed families");
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(errno as u32),
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into().expect("architecture"),
    )
    .expect("seccomp filter");
    filter.try_into().expect("compile seccomp filter")
}

/// The unit's file-system protections, as systemd sets them up in the
/// service's own mount namespace before it drops capabilities:
/// ProtectSystem=strict and ProtectHome=read-only (every mount read-only),
/// ProtectKernelTunables and ProtectControlGroups (/proc/sys, /sys and the
/// cgroup tree read-only: covered by "every mount"), ReadWritePaths (the
/// state directory stays writable), PrivateTmp (an empty /tmp and
/// /var/tmp). Returns a hook for between fork and exec: every path and
/// string is prepared here, the hook only makes system calls.
fn fs_sandbox(s: &BTreeMap<String, Vec<String>>, state: &std::path::Path) -> impl Fn() -> std::io::Result<()> + Send + Sync + 'static {
    use std::ffi::CString;
    assert_eq!(one(s, "ProtectSystem"), "strict");
    assert_eq!(one(s, "ProtectHome"), "read-only");
    assert_eq!(one(s, "PrivateTmp"), "yes");
    assert_eq!(one(s, "ProtectKernelTunables"), "yes");
    assert_eq!(one(s, "ProtectControlGroups"), "yes");
    let c = |p: &str| CString::new(p).expect("path");
    // Every mount point, outermost first (/proc itself stays writable, as
    // systemd leaves it; /proc/sys becomes read-only below).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|p| p != "/proc" && !p.starts_with("/proc/") && p != "/dev" && !p.starts_with("/dev/"))
        .collect();
    points.sort();
    points.dedup();
    let points: Vec<CString> = points.iter().map(|p| c(p)).collect();
    let state = c(state.to_str().expect("state path"));
    let (root, proc_sys, tmp, var_tmp, tmpfs) = (c("/"), c("/proc/sys"), c("/tmp"), c("/var/tmp"), c("tmpfs"));
    move || {
        // SAFETY: plain system calls on C strings prepared before the fork.
        unsafe {
            let check = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
            // ReadWritePaths: its own mount, left writable.
            check(libc::mount(state.as_ptr(), state.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
            check(libc::mount(proc_sys.as_ptr(), proc_sys.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
            check(libc::mount(std::ptr::null(), proc_sys.as_ptr(), std::ptr::null(), libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY, std::ptr::null()))?;
            for p in &points {
                // Mounts hidden by others, or gone, are skipped as systemd does.
                let _ = libc::mount(std::ptr::null(), p.as_ptr(), std::ptr::null(), libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY, std::ptr::null());
            }
            check(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY, std::ptr::null()))?;
            for t in [&tmp, &var_tmp] {
                check(libc::mount(tmpfs.as_ptr(), t.as_ptr(), tmpfs.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, std::ptr::null()))?;
            }
        }
        Ok(())
    }
}

/// The agent under the unit's bounding set, no-new-privileges, system-call
/// filter, address families and file-system protections still sees file,
/// exec and network events.
#[test]
fn agent_sees_file_exec_and_network_under_the_units_sandbox() {
    if !bpf_available("agent_sees_file_exec_and_network_under_the_units_sandbox")
        || !tools_available("agent_sees_file_exec_and_network_under_the_units_sandbox", &["setpriv", "systemd-analyze"])
    {
        return;
    }
    let _serial = serial();
    let s = service_settings();
    let caps: Vec<String> = one(&s, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(!caps.iter().any(|c| c == "+sys_admin"), "the unit must not need CAP_SYS_ADMIN: {caps:?}");
    assert_eq!(one(&s, "NoNewPrivileges"), "yes");
    let program = Arc::new(unit_seccomp(&s));
    // Not under /tmp or /var/tmp: PrivateTmp hides those.
    std::fs::create_dir_all("/var/lib").expect("/var/lib");
    let state = tempfile::Builder::new().prefix("nhi-e2e-unit-").tempdir_in("/var/lib").expect("state dir");
    let sandbox = fs_sandbox(&s, state.path());
    let mut pre_args: Vec<std::ffi::OsString> = vec![
        format!("--bounding-set=-all,{}", caps.join(",")).into(),
        "--inh-caps=-all".into(),
        "--ambient-caps=-all".into(),
        "--no-new-privs".into(),
    ];
    // The binary too: a checkout under /tmp (CI's clone may be one) is
    // hidden by PrivateTmp like everything else there.
    let bin_dir = tempfile::Builder::new().prefix("nhi-e2e-bin-").tempdir_in("/var/lib").expect("binary dir");
    let bin = bin_dir.path().join("nhi-observer");
    std::fs::copy(agent_binary(), &bin).expect("copy the agent binary out of /tmp");
    pre_args.push(bin.into());
    let launch = Launch {
        program: common::which("setpriv"),
        pre_args,
        state_dir_arg: None,
        // systemd's order: namespaces and mounts, then (setpriv)
        // capabilities, with the seccomp filter installed last before exec.
        pre_exec: Some(Arc::new(move || {
            sandbox()?;
            seccompiler::apply_filter(&program).map_err(|e| std::io::Error::other(e.to_string()))
        })),
    };
    let agent = Agent::start_launch(&launch, &[], "info", &[], Some(state));
    // Read-only where the unit says so, writable state.
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", agent.pid())).expect("agent mountinfo");
    let opts = |point: &str| -> String {
        mountinfo
            .lines()
            .rfind(|l| l.split_whitespace().nth(4) == Some(point))
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_owned))
            .unwrap_or_else(|| panic!("no mount at {point} in the agent's namespace"))
    };
    assert!(opts("/").split(',').any(|o| o == "ro"), "ProtectSystem=strict: / is {}", opts("/"));
    assert!(opts("/proc/sys").split(',').any(|o| o == "ro"));
    assert!(opts("/tmp").split(',').any(|o| o == "rw"), "PrivateTmp: a tmpfs of its own");
    // The agent's own view of its capabilities: exactly the unit's set.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).expect("agent status");
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff").trim().to_owned();
    let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).expect("CapBnd").trim().to_owned();
    assert_eq!(eff, bnd, "effective = bounding set (root under the unit)");
    let mask = u64::from_str_radix(&eff, 16).expect("hex");
    let want = caps_mask(&caps);
    assert_eq!(mask, want, "the agent runs with exactly the unit's capabilities");
    assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')));
    assert!(status.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('2')));
    exercise(agent, "systemd");
}

fn caps_mask(caps: &[String]) -> u64 {
    caps.iter()
        .map(|c| match c.trim_start_matches('+') {
            "dac_read_search" => 2,
            "net_admin" => 12,
            "sys_ptrace" => 19,
            "sys_admin" => 21,
            "sys_resource" => 24,
            "perfmon" => 38,
            "bpf" => 39,
            other => panic!("capability {other}: teach the test its number"),
        })
        .fold(0u64, |m, bit| m | (1 << bit))
}
