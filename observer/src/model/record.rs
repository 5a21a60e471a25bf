//! The record every sink emits: an event name, a time and attributes named by
//! OpenTelemetry semantic conventions where one exists, `nhi.*` otherwise.
//!
//! Input: typed values from the stages. Output: a [`Record`] that the
//! store serialises once (its JSON text is what JSON lines write and OTLP
//! delivery reads back). Invariant: every event name is a constant here, so
//! that no output spells one differently.
use std::time::SystemTime;

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::decode::{Task, WalkedPath};

/// A credential read from a file, the environment or a metadata service.
pub const EVENT_CREDENTIAL_ACCESS: &str = "nhi.credential.access";
/// The agent's own counters: events lost, folded, rejected (JSON lines;
/// OTLP carries them as metrics instead).
pub const EVENT_AGENT_STATS: &str = "nhi.agent.stats";
/// A known credential file changed: its identities before and after.
pub const EVENT_CREDENTIAL_ROTATION: &str = "nhi.credential.rotation";
/// An outbound connection, with its server name when one was seen.
pub const EVENT_CONNECTION: &str = "nhi.connection";
/// The aggregated use of one credential by one workload.
pub const EVENT_USAGE: &str = "nhi.usage";
/// What a usage means: shadow, unused, misused (`nhi.finding.type`).
pub const EVENT_FINDING: &str = "nhi.finding";
/// What was watched, when, and what was lost.
pub const EVENT_COVERAGE: &str = "nhi.coverage";

/// Every event name the agent emits.
pub const EVENT_NAMES: &[&str] = &[
    EVENT_CREDENTIAL_ACCESS,
    EVENT_CREDENTIAL_ROTATION,
    EVENT_CONNECTION,
    EVENT_USAGE,
    EVENT_FINDING,
    EVENT_COVERAGE,
    EVENT_AGENT_STATS,
];

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
        self.set(
            "nhi.access.count",
            Value::Int(i64::try_from(count).unwrap_or(i64::MAX)),
        );
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

/// The attributes of the process an event happened in, as the kernel saw
/// it at that moment (the workload identity stage adds the rest).
pub fn process_attributes(
    a: &mut Vec<(&'static str, Value)>,
    task: &Task,
    exe: Option<&WalkedPath>,
) {
    super::render::append(&super::records::Process::new(task, exe), a);
}

/// A typed record's JSON text, as the store keeps it: `time`, `event.name`,
/// then its attributes, straight from its `Serialize` derive (no attribute
/// list in between). The same text as the serialisation of its
/// [`super::render()`]ing: both come from the same derive, in the same order.
pub fn typed_json<T: super::records::TypedRecord>(r: &T) -> String {
    #[derive(Serialize)]
    struct Stored<'a, T: Serialize> {
        time: String,
        #[serde(rename = "event.name")]
        event_name: &'static str,
        #[serde(flatten)]
        record: &'a T,
    }
    serde_json::to_string(&Stored { time: rfc3339(r.time()), event_name: T::EVENT_NAME, record: r })
        .unwrap_or_default()
}

/// What the stages hand the store: a typed record, rendered once there
/// (its JSON text, from which JSON lines and OTLP are made), or a record
/// already in attribute form.
#[derive(Debug, Clone)]
pub enum Emit {
    /// `nhi.credential.access`, typed (its identity is [`Emit::nhi_id`]).
    Access(Box<super::records::CredentialAccess>),
    /// Any other record, as attributes.
    Record(Record),
}

impl From<Record> for Emit {
    fn from(r: Record) -> Self {
        Self::Record(r)
    }
}

impl From<super::records::CredentialAccess> for Emit {
    fn from(r: super::records::CredentialAccess) -> Self {
        Self::Access(Box::new(r))
    }
}

/// What the store needs of a record: its time, event name, the credential
/// it names (`nhi.id`, a typed field where the record is typed) and its
/// one JSON text, with the `nhi.record.id` the store gives it.
pub trait Stored {
    fn time(&self) -> SystemTime;
    fn event_name(&self) -> &'static str;
    /// `nhi.id`: the credential the record names, if any.
    fn nhi_id(&self) -> Option<&str>;
    /// The record's JSON text, with its `nhi.record.id`.
    fn to_json(&mut self, record_id: String) -> String;
}

impl Stored for super::records::CredentialAccess {
    fn time(&self) -> SystemTime {
        self.time
    }
    fn event_name(&self) -> &'static str {
        EVENT_CREDENTIAL_ACCESS
    }
    fn nhi_id(&self) -> Option<&str> {
        super::records::CredentialAccess::nhi_id(self)
    }
    fn to_json(&mut self, record_id: String) -> String {
        self.record_id = Some(record_id);
        typed_json(self)
    }
}

impl Stored for Record {
    fn time(&self) -> SystemTime {
        self.time
    }
    fn event_name(&self) -> &'static str {
        self.event_name
    }
    fn nhi_id(&self) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| *k == "nhi.id").and_then(|(_, v)| match v {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }
    fn to_json(&mut self, record_id: String) -> String {
        self.set("nhi.record.id", record_id);
        serde_json::to_string(&*self).unwrap_or_default()
    }
}

impl Stored for Emit {
    fn time(&self) -> SystemTime {
        match self {
            Self::Access(a) => a.time,
            Self::Record(r) => r.time,
        }
    }
    fn event_name(&self) -> &'static str {
        match self {
            Self::Access(_) => EVENT_CREDENTIAL_ACCESS,
            Self::Record(r) => r.event_name,
        }
    }
    fn nhi_id(&self) -> Option<&str> {
        match self {
            Self::Access(a) => a.nhi_id(),
            Self::Record(r) => Stored::nhi_id(r),
        }
    }
    fn to_json(&mut self, record_id: String) -> String {
        match self {
            Self::Access(a) => a.to_json(record_id),
            Self::Record(r) => r.to_json(record_id),
        }
    }
}

impl Emit {
    /// The record as attributes (tests, and readers of attributes).
    pub fn rendered(&self) -> Record {
        match self {
            Self::Access(a) => super::render(&**a),
            Self::Record(r) => r.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::samples;

    /// The store's text of a typed record is the text its rendering
    /// (the attribute list every output used to serialise) gives: same
    /// names, values and order, byte for byte.
    #[test]
    fn typed_text_is_the_rendered_text() {
        for access in samples::accesses() {
            let mut rendered = super::super::render(&access);
            let mut typed = Emit::from(access.clone());
            assert_eq!(Stored::nhi_id(&typed), Stored::nhi_id(&rendered), "{access:?}");
            assert_eq!(typed.to_json("i-9".into()), rendered.to_json("i-9".into()), "{access:?}");
        }
        let mut access = samples::accesses().remove(0);
        access.record_id = None;
        let json = Emit::from(access).to_json("i-7".into());
        assert!(json.starts_with(r#"{"time":"#) && json.ends_with(r#","nhi.record.id":"i-7"}"#), "{json}");
        assert!(json.contains(r#""file.inode":"1234567","nhi.file.device":"254:1""#), "{json}");
    }
}
