//! cgroup v2 ids to paths, and paths to workload identity.
//!
//! Input: the cgroup id every kernel event carries (`TaskInfo::cgroup_id`,
//! the cgroup directory's inode number on the cgroup2 mount). Output: the
//! cgroup's path and what its name says: systemd unit, container id and
//! runtime, Kubernetes pod uid.
//!
//! Ids are learned from a walk of the cgroup2 mount at start, from the
//! kernel's `cgroup_mkdir` records (so a cgroup that lived for a few
//! milliseconds is still named), and on a miss from `/proc/<pid>/cgroup`
//! checked against the directory's inode, then from a new walk at most every
//! [`RESCAN_EVERY`]. The mount point is read from `/proc/self/mountinfo`
//! (hybrid hosts mount cgroup2 at `/sys/fs/cgroup/unified`).
use std::{
    num::NonZeroUsize,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;

/// At most one full walk of the cgroup tree per this interval on misses.
pub const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// A walk stops after this many directories (hosts have a few thousand).
const MAX_WALK: usize = 200_000;

/// What a cgroup's path says about the workload in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupWorkload {
    /// Innermost systemd unit (`nginx.service`, `session-3.scope`), for
    /// cgroups that are not a container's.
    pub systemd_unit: Option<String>,
    /// 64 hex digits.
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman`, when the name says.
    pub container_runtime: Option<&'static str>,
    /// Kubernetes pod uid (dashes, as the API server shows it).
    pub pod_uid: Option<String>,
    /// Path of the pod's cgroup (the `...pod<uid>...` directory).
    pub pod_cgroup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub id: u64,
    /// From the cgroup2 root, with a leading `/`.
    pub path: String,
    pub workload: CgroupWorkload,
}

impl CgroupInfo {
    pub fn new(id: u64, path: String) -> Self {
        let workload = parse(&path);
        Self { id, path, workload }
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `<prefix><64 hex>.scope` (systemd cgroup driver) or `<prefix><64 hex>`
/// (cgroupfs driver, podman's `libpod-<id>`).
fn scoped_id<'a>(component: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = component.strip_prefix(prefix)?;
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some(id)
}

/// A pod uid as the kubelet writes it: 36 chars, dashes (cgroupfs driver)
/// or underscores (systemd driver, where `-` separates slice levels).
fn pod_uid(s: &str) -> Option<String> {
    let uid = s.replace('_', "-");
    let ok = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    ok.then(|| uid.to_ascii_lowercase())
}

/// Container runtimes by cgroup name prefix. conmon, the monitor podman and
/// cri-o run beside each container, is not the container.
const RUNTIME_PREFIXES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

/// Reads the workload identity out of a cgroup path. The innermost match of
/// each kind wins (`.../libpod-<id>.scope/container` is still the container).
///
/// Names handled: systemd units (`system.slice/x.service`, user units,
/// session scopes); docker (`docker-<id>.scope`, `/docker/<id>`);
/// containerd/CRI (`cri-containerd-<id>.scope`, a bare id under a pod);
/// cri-o (`crio-<id>.scope`); podman (`libpod-<id>.scope`,
/// `/libpod_parent/libpod-<id>`); kubelet pods (`kubepods-<qos>-pod<uid>.slice`,
/// `kubepods-pod<uid>.slice`, `/kubepods/<qos>/pod<uid>`).
pub fn parse(path: &str) -> CgroupWorkload {
    let mut w = CgroupWorkload::default();
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut in_kubepods = false;
    let mut unit = None;
    for (i, c) in components.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| components[p]);
        if *c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-") {
            in_kubepods = true;
        }
        // Pods: systemd driver `kubepods-<qos>-pod<uid>.slice`, cgroupfs `pod<uid>`.
        if let Some(slice) = c.strip_suffix(".slice")
            && slice.starts_with("kubepods")
            && let Some(pos) = slice.rfind("-pod")
            && let Some(uid) = pod_uid(&slice[pos + 4..])
        {
            w.pod_uid = Some(uid);
            w.pod_cgroup = Some(format!("/{}", components[..=i].join("/")));
        } else if in_kubepods
            && let Some(uid) = c.strip_prefix("pod").and_then(pod_uid)
        {
            w.pod_uid = Some(uid);
            w.pod_cgroup = Some(format!("/{}", components[..=i].join("/")));
        }
        // Containers.
        let conmon = c.starts_with("crio-conmon-") || c.starts_with("libpod-conmon-");
        let runtime = RUNTIME_PREFIXES.iter().find_map(|(prefix, rt)| scoped_id(c, prefix).map(|id| (id, *rt)));
        if let Some((id, rt)) = runtime.filter(|_| !conmon) {
            w.container_id = Some(id.to_owned());
            w.container_runtime = Some(rt);
        } else if is_container_id(c) {
            // cgroupfs driver: `/docker/<id>`, or a bare id under a pod.
            w.container_id = Some((*c).to_owned());
            w.container_runtime = match parent {
                Some("docker") => Some("docker"),
                _ => None,
            };
        }
        if !conmon && (c.ends_with(".service") || c.ends_with(".scope")) {
            unit = Some((*c).to_owned());
        }
    }
    if w.container_id.is_none() {
        w.systemd_unit = unit;
    }
    w
}

/// Resolves cgroup ids to [`CgroupInfo`]s.
pub struct Cgroups {
    mount: Option<PathBuf>,
    by_id: LruCache<u64, Arc<CgroupInfo>>,
    last_walk: Option<Instant>,
    /// Ids no source could name (counted per lookup).
    pub unresolved: u64,
}

impl Cgroups {
    /// Finds the cgroup2 mount and walks it once.
    pub fn new(capacity: NonZeroUsize) -> Self {
        let mount = crate::host::cgroup2_mount().map(PathBuf::from);
        if mount.is_none() {
            tracing::warn!("no cgroup2 mount: records will carry no cgroup, unit, container or pod");
        }
        let mut me = Self { mount, by_id: LruCache::sparse(capacity), last_walk: None, unresolved: 0 };
        me.walk();
        me
    }

    pub fn mount(&self) -> Option<&Path> {
        self.mount.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Records an id and path (from the kernel's `cgroup_mkdir`).
    pub fn insert(&mut self, id: u64, path: String) -> Arc<CgroupInfo> {
        let info = Arc::new(CgroupInfo::new(id, path));
        self.by_id.put(id, info.clone());
        info
    }

    /// The cgroup with `id`, where `tgid` is a process that was in it.
    pub fn resolve(&mut self, id: u64, tgid: u32) -> Option<Arc<CgroupInfo>> {
        if id == 0 {
            return None;
        }
        if let Some(info) = self.by_id.get(&id) {
            return Some(info.clone());
        }
        if let Some(path) = proc_cgroup_path(tgid)
            && self.dir_id(&path) == Some(id)
        {
            return Some(self.insert(id, path));
        }
        if self.last_walk.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
            self.walk();
            if let Some(info) = self.by_id.get(&id) {
                return Some(info.clone());
            }
        }
        self.unresolved += 1;
        None
    }

    /// The id (inode) of the cgroup directory at `path`.
    pub fn dir_id(&self, path: &str) -> Option<u64> {
        let dir = self.dir(path)?;
        std::fs::metadata(dir).ok().map(|m| m.ino())
    }

    /// The directory of a cgroup path on the cgroup2 mount.
    pub fn dir(&self, path: &str) -> Option<PathBuf> {
        let mount = self.mount.as_ref()?;
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        Some(if rel.is_empty() { mount.clone() } else { mount.join(rel) })
    }

    /// Walks the whole cgroup2 tree, learning every id.
    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let Some(mount) = self.mount.clone() else { return };
        let mut stack = vec![(mount, String::from("/"))];
        let mut seen = 0usize;
        while let Some((dir, path)) = stack.pop() {
            seen += 1;
            if seen > MAX_WALK {
                tracing::warn!(limit = MAX_WALK, "cgroup walk stopped at its limit");
                break;
            }
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            if !self.by_id.contains(&meta.ino()) {
                self.by_id.put(meta.ino(), Arc::new(CgroupInfo::new(meta.ino(), path.clone())));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.filter_map(Result::ok) {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if path == "/" { format!("/{name}") } else { format!("{path}/{name}") };
                    stack.push((entry.path(), child));
                }
            }
        }
    }

    /// Live pids in the cgroup at `path` and below (at most `limit`).
    pub fn pids_under(&self, path: &str, limit: usize) -> Vec<u32> {
        let Some(root) = self.dir(path) else { return Vec::new() };
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
                if out.len() >= limit {
                    out.truncate(limit);
                    return out;
                }
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
                );
            }
        }
        out
    }
}

/// The cgroup v2 path of a live process (`0::<path>` in /proc/<pid>/cgroup).
pub fn proc_cgroup_path(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c1e3a4d1cd9a4e0b6e6f4b8c2a1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7";
    const POD: &str = "1f3c5a7e-9b2d-4f6a-8c1e-3d5f7a9b1c2d";

    fn pod_us() -> String {
        POD.replace('-', "_")
    }

    #[test]
    fn systemd_units() {
        let w = parse("/system.slice/nginx.service");
        assert_eq!(w.systemd_unit.as_deref(), Some("nginx.service"));
        assert_eq!(w.container_id, None);
        let w = parse("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(w.systemd_unit.as_deref(), Some("session-3.scope"));
        let w = parse("/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service");
        assert_eq!(w.systemd_unit.as_deref(), Some("backup.service"));
        assert_eq!(parse("/").systemd_unit, None);
    }

    #[test]
    fn docker_both_drivers() {
        let w = parse(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!((w.container_id.as_deref(), w.container_runtime), (Some(ID), Some("docker")));
        assert_eq!(w.systemd_unit, None, "a container's scope is not reported as a unit");
        let w = parse(&format!("/docker/{ID}"));
        assert_eq!((w.container_id.as_deref(), w.container_runtime), (Some(ID), Some("docker")));
    }

    #[test]
    fn kubelet_systemd_driver_with_containerd_and_crio() {
        let pod = pod_us();
        let w = parse(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(w.pod_uid.as_deref(), Some(POD));
        assert_eq!(
            w.pod_cgroup.as_deref(),
            Some(format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod}.slice").as_str())
        );
        assert_eq!((w.container_id.as_deref(), w.container_runtime), (Some(ID), Some("containerd")));
        // Guaranteed QoS pods sit directly under kubepods.slice.
        let w = parse(&format!("/kubepods.slice/kubepods-pod{pod}.slice/crio-{ID}.scope"));
        assert_eq!(w.pod_uid.as_deref(), Some(POD));
        assert_eq!(w.container_runtime, Some("cri-o"));
        // conmon is not the container.
        let w = parse(&format!("/kubepods.slice/kubepods-pod{pod}.slice/crio-conmon-{ID}.scope"));
        assert_eq!(w.container_id, None);
        assert_eq!(w.pod_uid.as_deref(), Some(POD));
    }

    #[test]
    fn kubelet_cgroupfs_driver() {
        let w = parse(&format!("/kubepods/burstable/pod{POD}/{ID}"));
        assert_eq!(w.pod_uid.as_deref(), Some(POD));
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, None, "a bare id does not name its runtime");
        // `pod<uid>` outside kubepods is just a name.
        assert_eq!(parse(&format!("/pod{POD}")).pod_uid, None);
    }

    #[test]
    fn podman_names() {
        let w = parse(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!((w.container_id.as_deref(), w.container_runtime), (Some(ID), Some("podman")));
        let w = parse(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(w.container_id.as_deref(), Some(ID), "systemd-in-container sub-cgroup");
        let w = parse(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"));
        assert_eq!(w.container_runtime, Some("podman"));
        assert_eq!(parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container_id, None);
        assert_eq!(parse(&format!("/libpod_parent/libpod-{ID}")).container_runtime, Some("podman"));
    }

    #[test]
    fn near_misses_are_not_identities() {
        assert_eq!(parse("/system.slice/docker-abc.scope").container_id, None);
        assert_eq!(parse(&format!("/system.slice/docker-{}.scope", &ID[..63])).container_id, None);
        assert_eq!(parse("/kubepods.slice/kubepods-podnot_a_uid.slice").pod_uid, None);
        assert_eq!(parse(&format!("/x/{}", ID.to_uppercase())).container_id, None);
    }
}
