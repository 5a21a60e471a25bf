//! The record every sink emits: an event name, a time and attributes named by
//! OpenTelemetry semantic conventions where one exists, `nhi.*` otherwise.
use std::time::SystemTime;

use serde::{Serialize, Serializer, ser::SerializeMap};

use observer_common::MatchKind;

use crate::decode::{Event, FileOpen, Task, WalkedPath, syscall_name};

pub const EVENT_CREDENTIAL_ACCESS: &str = "nhi.credential.access";
/// The agent's own counters: events lost, folded, rejected (JSON lines;
/// OTLP metrics later).
pub const EVENT_AGENT_STATS: &str = "nhi.agent.stats";
/// A known credential file changed: its identities before and after.
pub const EVENT_CREDENTIAL_ROTATION: &str = "nhi.credential.rotation";

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A string array (OpenTelemetry `string[]`, e.g. `process.command_args`).
    StrList(Vec<String>),
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Self::StrList(v)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Str(v) => s.serialize_str(v),
            Self::Int(v) => s.serialize_i64(*v),
            Self::Bool(v) => s.serialize_bool(*v),
            Self::StrList(v) => v.serialize(s),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub time: SystemTime,
    pub event_name: &'static str,
    pub attributes: Vec<(&'static str, Value)>,
}

impl Record {
    /// Replaces the value of `key`, or adds it.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// Sets `nhi.access.count`: how many opens this record stands for.
    pub fn set_count(&mut self, count: u64) {
        self.set("nhi.access.count", Value::Int(i64::try_from(count).unwrap_or(i64::MAX)));
    }
}

/// JSON: `{"time": RFC 3339, "event.name": .., <attributes>..}`, flat, so
/// that `jq`, Loki and Vector read it without nesting.
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.attributes.len() + 2))?;
        map.serialize_entry("time", &rfc3339(self.time))?;
        map.serialize_entry("event.name", self.event_name)?;
        for (k, v) in &self.attributes {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a record needs besides the event itself.
pub struct Context<'a> {
    pub host_name: &'a str,
    pub time: SystemTime,
    /// Rule id -> (rule name, credential kind).
    pub rule: Option<(&'a str, &'a str)>,
}

/// The record for a sensor event; `None` for events that only feed the
/// agent's state (process lifecycle, cgroups).
pub fn from_event(event: &Event, cx: &Context<'_>) -> Option<Record> {
    match event {
        Event::FileOpen(ev) => Some(file_open(ev, cx)),
        Event::ProcessExec(_) | Event::ProcessFork(_) | Event::ProcessExit(_) | Event::CgroupMkdir(_) => None,
        // The network tracker (`crate::net`) makes those records.
        Event::NetConnect(_) | Event::NetPayload(_) | Event::NetClose(_) => None,
    }
}

/// A path's bytes as text, with the bytes that are not UTF-8 as `\xNN`
/// (a lossy conversion would show two different names the same).
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn file_open(ev: &FileOpen, cx: &Context<'_>) -> Record {
    let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    a.push(("host.name", cx.host_name.into()));
    a.push(("nhi.source", "file".into()));
    if let Some((name, kind)) = cx.rule {
        a.push(("nhi.kind", kind.into()));
        a.push(("nhi.rule", name.into()));
    }
    use std::os::unix::ffi::OsStrExt;
    // Bytes that are not UTF-8 are shown as `\xNN` (issue 14), and said so.
    let requested = escaped(ev.path.as_bytes());
    if ev.path.to_str().is_none() || ev.resolved.as_ref().is_some_and(|r| r.path.to_str().is_none()) {
        a.push(("nhi.file.path_escaped", true.into()));
    }
    match &ev.resolved {
        Some(r) => {
            let resolved = escaped(r.path.as_bytes());
            let path = if ev.resolved_is_base {
                // A failed relative open: its directory joined with the name.
                format!("{}/{requested}", resolved.trim_end_matches('/'))
            } else {
                resolved
            };
            a.push(("file.path", path.into()));
            if !r.complete {
                a.push(("nhi.file.path_truncated", true.into()));
            }
        }
        None => a.push(("file.path", requested.clone().into())),
    }
    a.push(("nhi.file.requested_path", requested.into()));
    if ev.path_truncated {
        a.push(("nhi.file.requested_path_truncated", true.into()));
    }
    if ev.ino != 0 {
        a.push(("file.inode", ev.ino.to_string().into()));
        a.push(("nhi.file.device", format!("{}:{}", dev_major(ev.dev), dev_minor(ev.dev)).into()));
    }
    a.push(("nhi.file.access", ev.access().as_str().into()));
    a.push(("nhi.file.create", ev.creates().into()));
    if ev.creates() {
        a.push(("nhi.file.mode", format!("{:04o}", ev.mode & 0o7777).into()));
    }
    a.push(("nhi.match", match_name(ev.match_kind).into()));
    a.push(("nhi.open.syscall", syscall_name(ev.syscall).into()));
    a.push(("nhi.open.result", ev.ret.into()));
    if ev.ret < 0 {
        a.push(("error.type", errno_name(ev.ret).into()));
    }
    process_attributes(&mut a, &ev.task, ev.exe.as_ref());
    Record { time: cx.time, event_name: EVENT_CREDENTIAL_ACCESS, attributes: a }
}

/// The attributes of the process an event happened in, as the kernel saw
/// it at that moment (the workload identity stage adds the rest).
pub fn process_attributes(a: &mut Vec<(&'static str, Value)>, task: &Task, exe: Option<&WalkedPath>) {
    a.push(("process.pid", task.tgid.into()));
    a.push(("thread.id", task.pid.into()));
    if task.ppid != 0 {
        a.push(("process.parent_pid", task.ppid.into()));
    }
    a.push(("process.user.id", task.uid.into()));
    a.push(("process.command", task.comm.clone().into()));
    if let Some(exe) = exe {
        a.push(("process.executable.path", exe.path.to_string_lossy().into_owned().into()));
    }
}

fn match_name(m: MatchKind) -> &'static str {
    match m {
        MatchKind::Path => "path",
        MatchKind::Inode => "inode",
        MatchKind::Dir => "directory",
        MatchKind::Name => "name",
    }
}

/// Kernel `dev_t` (as in `struct super_block::s_dev`): 12-bit major, 20-bit minor.
fn dev_major(dev: u64) -> u64 {
    (dev >> 20) & 0xfff
}

fn dev_minor(dev: u64) -> u64 {
    dev & 0xf_ffff
}

fn errno_name(ret: i64) -> String {
    let code = i32::try_from(-ret).unwrap_or(0);
    let errno = nix::errno::Errno::from_raw(code);
    if errno == nix::errno::Errno::UnknownErrno { format!("errno {code}") } else { format!("{errno:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(-2), "ENOENT");
        assert_eq!(errno_name(-13), "EACCES");
        assert_eq!(errno_name(-100000), "errno 100000");
    }

    #[test]
    fn kernel_dev_t_split() {
        // 8:1 as the kernel encodes it (MKDEV = major << 20 | minor).
        let dev = (8 << 20) | 1;
        assert_eq!((dev_major(dev), dev_minor(dev)), (8, 1));
    }
}
