//! /proc: the process table's starting point, its fallback on a miss and its
//! check against lost exit records.
//!
//! /proc gives start times in clock ticks (`/proc/<pid>/stat` field 22,
//! `start_boottime` divided down), so entries read here are *coarse*: the
//! table matches them to the kernel's exact start time by tick. Reading a
//! process that exits meanwhile fails cleanly and is skipped.
use std::sync::Arc;

use procfs::process::Process;

use super::{
    args,
    table::{Origin, ProcKey, ProcessEntry},
};
use crate::secret::Secret;

/// Nanoseconds per /proc clock tick (`USER_HZ`, 100 on every Linux we know).
pub fn ns_per_tick() -> u64 {
    1_000_000_000 / procfs::ticks_per_second().max(1)
}

/// A terminal's name from `tty_nr` (major, minor), as `ps` shows it.
pub fn tty_name(major: i32, minor: i32) -> Option<String> {
    match major {
        0 => None,
        136..=143 => Some(format!("pts/{}", (major - 136) * 256 + minor)),
        4 if minor < 64 => Some(format!("tty{minor}")),
        4 => Some(format!("ttyS{}", minor - 64)),
        _ => Some(format!("tty({major}:{minor})")),
    }
}

/// The kernel's `tty->name` (`pts3`) in the same form as [`tty_name`].
pub fn kernel_tty_name(name: &str) -> String {
    match name.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("pts/{n}"),
        _ => name.to_owned(),
    }
}

/// Reads one process. With `expect_start`, returns `None` unless the
/// process with that pid started in the same clock tick (pid reuse).
pub fn read_process(
    tgid: u32,
    expect_start: Option<u64>,
    ns_per_tick: u64,
    capture_args: bool,
) -> Option<(ProcessEntry, Option<String>)> {
    let p = Process::new(i32::try_from(tgid).ok()?).ok()?;
    let stat = p.stat().ok()?;
    let start = stat.starttime.saturating_mul(ns_per_tick);
    if let Some(expect) = expect_start
        && expect != 0
        && expect / ns_per_tick != stat.starttime
    {
        return None;
    }
    let mut e = ProcessEntry::new(ProcKey { tgid, start_boot_ns: start }, Origin::Proc);
    e.coarse = true;
    e.ppid = u32::try_from(stat.ppid).unwrap_or(0);
    e.comm = stat.comm.as_str().into();
    let (major, minor) = stat.tty_nr();
    e.tty = tty_name(major, minor).map(Arc::from);
    if let Ok(status) = p.status() {
        e.uid = status.ruid;
        e.gid = status.rgid;
    }
    e.exe = p.exe().ok().map(|x| Arc::from(x.to_string_lossy()));
    if capture_args && let Ok(raw) = std::fs::read(format!("/proc/{tgid}/cmdline")) {
        let raw = Secret::new(raw);
        e.args = Some(Arc::from(args::mask(&raw)));
    }
    Some((e, super::cgroup::proc_cgroup_path(tgid)))
}

/// Every process on the host (threads excluded), with its cgroup path.
pub fn scan(ns_per_tick: u64, capture_args: bool) -> Vec<(ProcessEntry, Option<String>)> {
    let Ok(all) = procfs::process::all_processes() else {
        tracing::warn!("cannot list /proc: the process table starts empty");
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|p| u32::try_from(p.pid()).ok())
        .filter_map(|pid| read_process(pid, None, ns_per_tick, capture_args))
        .collect()
}

/// Whether the process `key` names is still running (same pid, same tick).
pub fn alive(key: ProcKey, ns_per_tick: u64) -> bool {
    let Ok(p) = Process::new(i32::try_from(key.tgid).unwrap_or(-1)) else {
        return false;
    };
    match p.stat() {
        Ok(stat) => key.start_boot_ns == 0 || stat.starttime == key.start_boot_ns / ns_per_tick,
        Err(_) => false,
    }
}

/// The whole initial environment of a live process (`/proc/<pid>/environ`,
/// what the kernel copied at exec, uncut), if it is still the same process.
pub fn environ(key: ProcKey, ns_per_tick: u64) -> Option<Secret> {
    let raw = Secret::new(std::fs::read(format!("/proc/{}/environ", key.tgid)).ok()?);
    // Checked after the read: a process that was replaced in between fails here.
    alive(key, ns_per_tick).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_names() {
        assert_eq!(tty_name(136, 3).as_deref(), Some("pts/3"));
        assert_eq!(tty_name(137, 1).as_deref(), Some("pts/257"));
        assert_eq!(tty_name(4, 1).as_deref(), Some("tty1"));
        assert_eq!(tty_name(4, 64).as_deref(), Some("ttyS0"));
        assert_eq!(tty_name(0, 0), None);
        assert_eq!(kernel_tty_name("pts3"), "pts/3");
        assert_eq!(kernel_tty_name("ttyS0"), "ttyS0");
    }

    /// This test process, read from /proc, is alive under its own key and
    /// not under a key one tick later (what a reused pid would have).
    #[test]
    fn reads_and_recognises_this_process() {
        let me = std::process::id();
        let tick = ns_per_tick();
        let (e, cgroup) = read_process(me, None, tick, true).expect("read myself");
        assert!(e.coarse);
        assert!(e.exe.is_some());
        assert!(e.args.as_ref().is_some_and(|a| !a.is_empty()));
        assert!(alive(e.key, tick));
        let later = ProcKey { tgid: me, start_boot_ns: e.key.start_boot_ns + tick };
        assert!(!alive(later, tick));
        assert!(read_process(me, Some(later.start_boot_ns), tick, false).is_none());
        assert!(cgroup.is_some_and(|c| c.starts_with('/')));
        assert!(environ(e.key, tick).is_some());
    }

    #[test]
    fn reconcile_against_real_proc_drops_the_dead() {
        use std::num::NonZeroUsize;

        use super::super::table::ProcessTable;
        let tick = ns_per_tick();
        let mut t = ProcessTable::new(NonZeroUsize::new(8).unwrap(), tick);
        let (me, _) = read_process(std::process::id(), None, tick, false).unwrap();
        t.insert(me.clone());
        // A child that has exited and been reaped: its exit was "lost".
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        t.insert(ProcessEntry::new(ProcKey { tgid: pid, start_boot_ns: 42 * tick }, Origin::Exec));
        assert_eq!(t.reconcile(|e| alive(e.key, tick)), 1);
        assert!(t.peek(&me.key).is_some());
    }
}
