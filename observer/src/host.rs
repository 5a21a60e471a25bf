//! Facts about the host the agent runs on, read by several stages (probes,
//! workload identity, the preflight check): none of them owns them.
//!
//! Input: /proc of the agent's own process. Output: plain values; nothing
//! here is cached, since mounts can change while the agent runs.

/// The cgroup v2 mount point, if any (from /proc/self/mountinfo).
pub fn cgroup2_mount() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(str::to_owned))?
    })
}
