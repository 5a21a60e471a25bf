//! Enrich: what the kernel event does not carry, looked up once per event
//! from the host. Input: decoded events. Output: the same events with gaps
//! filled from /proc where the process is still alive; a gap that cannot be
//! filled stays empty (records never carry a guess). The process table and
//! workload identity (lineage, cgroup, container, pod, service account) are
//! the other half of this stage: `crate::identity`.
use std::{ffi::OsString, path::PathBuf};

use crate::decode::{Event, WalkedPath};

/// Fills in the executable from `/proc/<tgid>/exe` when the kernel could not
/// capture it (no kernel offsets; or a UDP socket announced from packet
/// context). Processes that have exited stay unknown.
pub fn enrich(event: &mut Event) {
    match event {
        Event::FileOpen(ev) => {
            if ev.exe.is_none() {
                ev.exe = proc_exe(ev.task.tgid);
            }
        }
        Event::NetConnect(ev) => {
            if ev.exe.is_none() {
                ev.exe = proc_exe(ev.task.tgid);
            }
        }
        Event::NetPayload(_) | Event::NetClose(_) => {}
        // Process lifecycle events feed the process table (`crate::identity`).
        Event::ProcessExec(_) | Event::ProcessFork(_) | Event::ProcessExit(_) | Event::CgroupMkdir(_) => {}
    }
}

fn proc_exe(tgid: u32) -> Option<WalkedPath> {
    let path = std::fs::read_link(PathBuf::from(format!("/proc/{tgid}/exe"))).ok()?;
    Some(WalkedPath { path: OsString::from(path), complete: true })
}
