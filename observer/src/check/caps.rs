//! Which capability each sensor needs, and whether it is held.
//!
//! Input: the effective capability set (of `check` itself, which runs with
//! what the agent would get: same unit, same container).
//! Output: one [`Finding`] per sensor, naming every capability it needs,
//! why, and whether it is held; and one for the locked-memory limit on
//! kernels that charge BPF memory to it.
//! Invariants: the table below is the least set found by experiment on
//! kernel 6.18 (tests/e2e_deploy_systemd.rs runs the agent under exactly
//! the systemd unit's bounding set, tests/e2e_deploy_image.rs under the
//! DaemonSet's): CAP_SYS_ADMIN is not needed when CAP_BPF, CAP_PERFMON and
//! CAP_NET_ADMIN are held (kernel 5.8 and later), but stands in for all
//! three on older kernels and runtimes.
use std::collections::HashSet;

use caps::Capability;

use super::{Finding, Status, finding};

/// What a sensor cannot do without a capability.
pub struct Need {
    pub cap: Capability,
    pub why: &'static str,
    /// Without it the agent does not start (the probes do not load or
    /// attach); otherwise the sensor runs and misses some events.
    pub fatal: bool,
}

/// The sensors and their needs (the agent loads all three together).
pub const SENSORS: &[(&str, &[Need])] = &[
    (
        "file",
        &[
            Need { cap: Capability::CAP_BPF, why: "load the tp_btf programs and maps", fatal: true },
            Need { cap: Capability::CAP_PERFMON, why: "tp_btf programs read kernel memory", fatal: true },
            Need {
                cap: Capability::CAP_DAC_READ_SEARCH,
                why: "read other users' credential files for their identities",
                fatal: false,
            },
            Need {
                cap: Capability::CAP_SYS_PTRACE,
                why: "open files through /proc/<pid>/root of other users' processes",
                fatal: false,
            },
        ],
    ),
    (
        "process",
        &[
            Need { cap: Capability::CAP_BPF, why: "load the tp_btf programs", fatal: true },
            Need { cap: Capability::CAP_PERFMON, why: "read exec arguments and environment in the kernel", fatal: true },
            Need {
                cap: Capability::CAP_SYS_PTRACE,
                why: "read /proc/<pid> of other users' processes: the table at start, pod tokens",
                fatal: false,
            },
        ],
    ),
    (
        "network",
        &[
            Need { cap: Capability::CAP_BPF, why: "load the cgroup programs", fatal: true },
            Need {
                cap: Capability::CAP_NET_ADMIN,
                why: "load cgroup_sock_addr/cgroup_sock programs and attach them to the cgroup v2 root",
                fatal: true,
            },
        ],
    ),
];

/// CAP_SYS_ADMIN implies CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN for BPF.
fn held_for_bpf(held: &HashSet<Capability>, cap: Capability) -> bool {
    held.contains(&cap)
        || (held.contains(&Capability::CAP_SYS_ADMIN)
            && matches!(cap, Capability::CAP_BPF | Capability::CAP_PERFMON | Capability::CAP_NET_ADMIN))
}

/// One finding per sensor.
pub fn sensor_findings(held: &HashSet<Capability>) -> Vec<Finding> {
    SENSORS
        .iter()
        .map(|(sensor, needs)| {
            let mut status = Status::Ok;
            let parts: Vec<String> = needs
                .iter()
                .map(|n| {
                    let ok = held_for_bpf(held, n.cap);
                    if !ok {
                        status = match (status, n.fatal) {
                            (Status::Fail, _) | (_, true) => Status::Fail,
                            _ => Status::Warn,
                        };
                    }
                    let via_admin = ok && !held.contains(&n.cap);
                    let state = if via_admin { "held (as CAP_SYS_ADMIN)" } else if ok { "held" } else { "MISSING" };
                    format!("{} {state} ({})", n.cap, n.why)
                })
                .collect();
            finding(status, "capabilities", format!("{sensor} sensor: {}", parts.join("; ")))
        })
        .collect()
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (5.11 and later
/// charge the memory cgroup). The agent does not raise the limit: the
/// systemd unit sets LimitMEMLOCK=infinity; a container runtime must too.
pub fn memlock_finding(kernel: Option<(u32, u32)>) -> Finding {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK).map(|(soft, _)| soft);
    let shown = match limit {
        Ok(v) if v == nix::sys::resource::RLIM_INFINITY => "unlimited".to_owned(),
        Ok(v) => format!("{} KiB", v / 1024),
        Err(e) => format!("unknown ({e})"),
    };
    match kernel {
        Some(v) if v >= (5, 11) => finding(
            Status::Ok,
            "memlock",
            format!("RLIMIT_MEMLOCK {shown}: not used for BPF memory on this kernel (5.11+); no CAP_SYS_RESOURCE needed"),
        ),
        _ => match limit {
            Ok(v) if v == nix::sys::resource::RLIM_INFINITY || v >= 64 << 20 => {
                finding(Status::Ok, "memlock", format!("RLIMIT_MEMLOCK {shown}: enough for the agent's maps"))
            }
            _ => finding(
                Status::Warn,
                "memlock",
                format!(
                    "RLIMIT_MEMLOCK {shown}: kernels before 5.11 charge BPF maps to it; raise it (LimitMEMLOCK=infinity, ulimit -l unlimited)"
                ),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    const LEAST: &[Capability] = &[
        Capability::CAP_BPF,
        Capability::CAP_PERFMON,
        Capability::CAP_NET_ADMIN,
        Capability::CAP_DAC_READ_SEARCH,
        Capability::CAP_SYS_PTRACE,
    ];

    #[test]
    fn least_set_is_enough_for_every_sensor() {
        let f = sensor_findings(&set(LEAST));
        assert_eq!(f.len(), 3);
        assert!(f.iter().all(|f| f.status == Status::Ok), "{f:?}");
        assert!(f[2].detail.starts_with("network sensor: CAP_BPF held"), "{}", f[2].detail);
    }

    #[test]
    fn missing_net_admin_fails_the_network_sensor_only() {
        let without: Vec<_> = LEAST.iter().copied().filter(|c| *c != Capability::CAP_NET_ADMIN).collect();
        let f = sensor_findings(&set(&without));
        assert_eq!(f[0].status, Status::Ok);
        assert_eq!(f[2].status, Status::Fail);
        assert!(f[2].detail.contains("CAP_NET_ADMIN MISSING"), "{}", f[2].detail);
    }

    #[test]
    fn missing_file_access_caps_warn() {
        let f = sensor_findings(&set(&[Capability::CAP_BPF, Capability::CAP_PERFMON, Capability::CAP_NET_ADMIN]));
        assert_eq!(f[0].status, Status::Warn);
        assert!(f[0].detail.contains("CAP_DAC_READ_SEARCH MISSING"));
        assert_eq!(f[2].status, Status::Ok);
    }

    #[test]
    fn sys_admin_stands_in_for_the_bpf_caps() {
        let f = sensor_findings(&set(&[
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_DAC_READ_SEARCH,
            Capability::CAP_SYS_PTRACE,
        ]));
        assert!(f.iter().all(|f| f.status == Status::Ok), "{f:?}");
        assert!(f[2].detail.contains("CAP_NET_ADMIN held (as CAP_SYS_ADMIN)"));
    }
}
