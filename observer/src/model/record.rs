//! The records' common parts: every event name; [`Emit`], the typed record
//! of each event name that the stages hand the store; [`Stored`], what the
//! store needs of one; its one JSON text ([`typed_json`]) and the reading
//! of that text back into the typed record ([`from_json`]); and the
//! [`Record`], a typed record's rendered attributes (an event name, a time
//! and attributes named by OpenTelemetry semantic conventions where one
//! exists, `nhi.*` otherwise), read only at the edges and in tests.
//!
//! Input: typed records from the stages. Output: their JSON text, which
//! the store keeps (JSON lines write it; OTLP delivery reads it back).
//! Invariants: every event name is a constant here, so that no output
//! spells one differently; a record that cannot be serialised is counted
//! ([`UNRENDERABLE`]), never written as an empty body.
use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use serde::{
    Deserialize, Serialize, Serializer,
    de::DeserializeOwned,
    ser::{SerializeMap, SerializeStruct},
};

use super::records::{self, TypedRecord};

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

/// `t` in RFC 3339 as the `time` crate writes it (UTC, `Z`, the fraction's
/// trailing zeros left out, none when it is zero); empty for a time whose
/// year is outside 0-9999 (RFC 3339's four digits), where `time` cannot
/// write one.
pub fn rfc3339(t: SystemTime) -> String {
    let mut text = [0u8; RFC3339_MAX];
    let len = write_rfc3339(t, &mut text);
    String::from_utf8_lossy(&text[..len]).into_owned()
}

/// The longest [`rfc3339`] text: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const RFC3339_MAX: usize = 30;

/// [`rfc3339`] into `out`; the bytes written (0: none).
///
/// The date and time to the second come from the `time` crate, once per
/// second a thread sees (records come in bursts: formatting them cost
/// ~500 instructions a record, a fifth of the text's non-string work);
/// the fraction is the nanoseconds' nine digits without their trailing
/// zeros, as `time` writes it. `rfc3339_is_time_s_text` checks it against
/// `time` over random times, fractions and the year's limits.
fn write_rfc3339(t: SystemTime, out: &mut [u8; RFC3339_MAX]) -> usize {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => match i64::try_from(d.as_secs()) {
            Ok(s) => (s, d.subsec_nanos()),
            Err(_) => return 0,
        },
        Err(e) => {
            // Before 1970: whole seconds down, the fraction up from them.
            let d = e.duration();
            let Ok(s) = i64::try_from(d.as_secs()) else { return 0 };
            match d.subsec_nanos() {
                0 => (-s, 0),
                n => (-s - 1, 1_000_000_000 - n),
            }
        }
    };
    thread_local! {
        /// The last second formatted: `YYYY-MM-DDTHH:MM:SS`, or `None`
        /// when it has no RFC 3339 text.
        static SECOND: Cell<(i64, Option<[u8; 19]>)> = const { Cell::new((i64::MIN, None)) };
    }
    let second = SECOND.with(|cached| {
        let (at, text) = cached.get();
        if at == secs {
            return text;
        }
        let text = second_text(secs);
        cached.set((secs, text));
        text
    });
    let Some(second) = second else { return 0 };
    out[..19].copy_from_slice(&second);
    let mut len = 19;
    if nanos != 0 {
        // Nine digits (a leading 1 keeps the zeros in front), then
        // without the trailing zeros.
        let mut digits = itoa::Buffer::new();
        let digits = &digits.format(1_000_000_000 + nanos).as_bytes()[1..];
        let used = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        out[len] = b'.';
        out[len + 1..len + 1 + used].copy_from_slice(&digits[..used]);
        len += 1 + used;
    }
    out[len] = b'Z';
    len + 1
}

/// The `YYYY-MM-DDTHH:MM:SS` of a Unix second, by the `time` crate; `None`
/// outside the years RFC 3339 can write.
fn second_text(secs: i64) -> Option<[u8; 19]> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let mut text = [0u8; 20];
    let mut rest = &mut text[..];
    t.format_into(&mut rest, &time::format_description::well_known::Rfc3339).ok()?;
    // `...SSZ`: 20 bytes, the `Z` left out.
    text[..19].try_into().ok()
}

/// Records that could not be rendered (a serialisation error: the
/// records' derives give only scalars, string lists and flat maps, so this
/// stays 0 unless a type change breaks that). Such a record is not stored
/// or written; `nhi.agent.records.unrenderable` and the
/// `nhi.agent.drops{nhi.drop.reason=record_unrenderable}` metric count it.
pub static UNRENDERABLE: AtomicU64 = AtomicU64::new(0);

/// [`UNRENDERABLE`] now.
pub fn unrenderable() -> u64 {
    UNRENDERABLE.load(Ordering::Relaxed)
}

/// A typed record's JSON text, as the store keeps it: `time`, `event.name`,
/// then its attributes, straight from its `Serialize` derive (no attribute
/// list in between). The same text as the serialisation of its
/// [`super::render()`]ing: both come from the same derive, in the same order.
/// `None` (counted in [`UNRENDERABLE`]) if it cannot be serialised.
///
/// Written by [`super::json`], serde_json's text without its per-byte
/// escape lookup (`typed_text_is_the_rendered_text` and
/// `json_text_is_serde_json_s` check it against serde_json's text, with
/// the time from [`rfc3339`]), straight into the returned `String` (one
/// allocation per record, sized by the last record's length), with the
/// time formatted on the stack.
pub fn typed_json<T: super::records::TypedRecord>(r: &T) -> Option<String> {
    let stored = StoredText::of(r);
    let mut json = String::with_capacity(TEXT_CAPACITY.get());
    match super::json::write(&mut json, &stored) {
        Ok(()) => {
            // The next record starts with room for one a little longer
            // than this one (records of a kind differ by a few bytes).
            TEXT_CAPACITY.set((json.len() + json.len() / 8 + 16).clamp(256, TEXT_CAPACITY_MAX));
            Some(json)
        }
        Err(e) => {
            UNRENDERABLE.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, event = T::EVENT_NAME, "record not rendered");
            None
        }
    }
}

/// What [`typed_json`] serialises: the record with its time and event name
/// first.
struct StoredText<'a, T: Serialize> {
    time: Rfc3339Text,
    event_name: &'static str,
    record: &'a T,
}

impl<T: Serialize> Serialize for StoredText<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("StoredText", super::flat::UNCOUNTED)?;
        st.serialize_field("time", &self.time)?;
        st.serialize_field("event.name", self.event_name)?;
        super::flat::fields(&mut st, self.record)?;
        st.end()
    }
}

impl<'a, T: super::records::TypedRecord> StoredText<'a, T> {
    fn of(r: &'a T) -> Self {
        Self { time: Rfc3339Text(r.time()), event_name: T::EVENT_NAME, record: r }
    }
}

thread_local! {
    /// The capacity [`typed_json`] gives the next record's text: the last
    /// one's length and an eighth (no reallocation while records keep
    /// about their size; a longer one grows its text once).
    static TEXT_CAPACITY: Cell<usize> = const { Cell::new(1024) };
}

/// The most [`TEXT_CAPACITY`] starts a record's text with (a longer text
/// grows as it is written).
const TEXT_CAPACITY_MAX: usize = 16 * 1024;

/// A time as [`rfc3339`] writes it (empty if it cannot be), formatted on
/// the stack.
struct Rfc3339Text(SystemTime);

impl Serialize for Rfc3339Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; RFC3339_MAX];
        let len = write_rfc3339(self.0, &mut text);
        s.serialize_str(crate::decode::utf8(&text[..len]).unwrap_or_default())
    }
}

/// A stored record's JSON text (from [`typed_json`]) back as its typed
/// record, its time from `time`; `None` for text that is not a record of
/// type `T` (another event name, a missing or mistyped attribute).
pub fn from_json<T: super::records::TypedRecord + DeserializeOwned>(json: &str) -> Option<T> {
    #[derive(Deserialize)]
    struct Stored<T> {
        time: String,
        #[serde(rename = "event.name")]
        event_name: String,
        #[serde(flatten)]
        record: T,
    }
    let stored: Stored<T> = serde_json::from_str(json).ok()?;
    if stored.event_name != T::EVENT_NAME {
        return None;
    }
    let time = time::OffsetDateTime::parse(&stored.time, &time::format_description::well_known::Rfc3339).ok()?;
    let mut record = stored.record;
    record.set_time(time.into());
    Some(record)
}

/// What the stages hand the store: a typed record of each event name,
/// rendered once there (its JSON text, from which JSON lines and OTLP are
/// made).
#[derive(Debug, Clone)]
pub enum Emit {
    /// `nhi.credential.access` from a file, the environment or a metadata
    /// service.
    Access(Box<records::CredentialAccess>),
    /// `nhi.credential.rotation`.
    Rotation(Box<records::Rotation>),
    /// `nhi.connection`.
    Connection(Box<records::Connection>),
    /// `nhi.usage`.
    Usage(Box<records::Usage>),
    /// `nhi.finding`.
    Finding(Box<records::Finding>),
    /// `nhi.coverage`.
    Coverage(Box<records::Coverage>),
    /// `nhi.agent.stats`: never stored (the sink writes it to JSON lines
    /// only; OTLP carries the counters as metrics).
    Stats(Box<records::AgentStats>),
}

macro_rules! emit_from {
    ($($variant:ident($t:ty)),* $(,)?) => {$(
        impl From<$t> for Emit {
            fn from(r: $t) -> Self {
                Self::$variant(Box::new(r))
            }
        }
    )*};
}
emit_from!(
    Access(records::CredentialAccess),
    Rotation(records::Rotation),
    Connection(records::Connection),
    Usage(records::Usage),
    Finding(records::Finding),
    Coverage(records::Coverage),
    Stats(records::AgentStats),
);

/// What the store needs of a typed record: its time, event name, the
/// credential it names (`nhi.id`, a typed field) and its one JSON text,
/// with the `nhi.record.id` the store gives it.
pub trait Stored {
    fn time(&self) -> SystemTime;
    fn event_name(&self) -> &'static str;
    /// `nhi.id`: the credential the record names, if any.
    fn nhi_id(&self) -> Option<&str>;
    /// The record's JSON text, with its `nhi.record.id`; `None` (counted)
    /// if it cannot be rendered.
    fn to_json(&mut self, record_id: String) -> Option<String>;
}

macro_rules! stored {
    ($($t:ty => |$r:ident| $nhi_id:expr),* $(,)?) => {$(
        impl Stored for $t {
            fn time(&self) -> SystemTime {
                TypedRecord::time(self)
            }
            fn event_name(&self) -> &'static str {
                <$t as TypedRecord>::EVENT_NAME
            }
            fn nhi_id(&self) -> Option<&str> {
                let $r = self;
                $nhi_id
            }
            fn to_json(&mut self, record_id: String) -> Option<String> {
                self.record_id = Some(record_id);
                typed_json(self)
            }
        }
    )*};
}
stored!(
    records::CredentialAccess => |r| records::CredentialAccess::nhi_id(r),
    records::Rotation => |r| r.access.identity.id.as_deref(),
    records::Connection => |_r| None,
    records::Usage => |r| Some(r.id.as_str()),
    records::Finding => |r| Some(r.nhi_id.as_str()),
    records::Coverage => |_r| None,
);

/// Dispatches to the record it holds (each arm is one event name's type).
macro_rules! each {
    ($e:expr, |$r:ident| $body:expr) => {
        match $e {
            Emit::Access($r) => $body,
            Emit::Rotation($r) => $body,
            Emit::Connection($r) => $body,
            Emit::Usage($r) => $body,
            Emit::Finding($r) => $body,
            Emit::Coverage($r) => $body,
            Emit::Stats($r) => $body,
        }
    };
}

impl Stored for Emit {
    fn time(&self) -> SystemTime {
        each!(self, |r| TypedRecord::time(&**r))
    }
    fn event_name(&self) -> &'static str {
        each!(self, |r| stored_name(&**r))
    }
    fn nhi_id(&self) -> Option<&str> {
        match self {
            Self::Stats(_) => None,
            Self::Access(r) => Stored::nhi_id(&**r),
            Self::Rotation(r) => Stored::nhi_id(&**r),
            Self::Connection(r) => Stored::nhi_id(&**r),
            Self::Usage(r) => Stored::nhi_id(&**r),
            Self::Finding(r) => Stored::nhi_id(&**r),
            Self::Coverage(r) => Stored::nhi_id(&**r),
        }
    }
    fn to_json(&mut self, record_id: String) -> Option<String> {
        match self {
            // Not a stored record: no id.
            Self::Stats(_) => self.json(),
            Self::Access(r) => r.to_json(record_id),
            Self::Rotation(r) => r.to_json(record_id),
            Self::Connection(r) => r.to_json(record_id),
            Self::Usage(r) => r.to_json(record_id),
            Self::Finding(r) => r.to_json(record_id),
            Self::Coverage(r) => r.to_json(record_id),
        }
    }
}

fn stored_name<T: TypedRecord>(_: &T) -> &'static str {
    T::EVENT_NAME
}

impl Emit {
    /// The record as attributes, from the one renderer (tests, and
    /// readers of attributes).
    pub fn rendered(&self) -> Record {
        each!(self, |r| super::render(&**r))
    }

    /// The record's JSON text as it is (no `nhi.record.id` added): what
    /// JSON lines write for it once stored.
    pub fn json(&self) -> Option<String> {
        match self {
            // Counters, written to JSON lines only: from their rendered
            // attributes, whose integers saturate at `i64::MAX` as OTLP's
            // do (a counter can pass it; `typed_json` writes a `u64` as it
            // is).
            Self::Stats(r) => serde_json::to_string(&super::render(&**r)).ok(),
            other => each!(other, |r| typed_json(&**r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::samples;

    /// The samples with every optional part absent.
    mod bare {
        use crate::model::records::{self, AccessSource, FileContent, Identity, samples};

        pub fn access() -> records::CredentialAccess {
            let mut a = samples::accesses().remove(0);
            if let AccessSource::File(f) = &mut a.source {
                f.identity = Identity::default();
                f.content = FileContent::default();
                f.open.inode = None;
                f.open.device = None;
                f.count = None;
                f.kind = None;
                f.rule = None;
            }
            a.record_id = None;
            a
        }

        pub fn connection() -> records::Connection {
            let mut c = samples::connection();
            c.tls = None;
            c.server_name_source = None;
            c.error_type = None;
            c
        }

        pub fn usage() -> records::Usage {
            let mut u = samples::usage();
            u.destinations = None;
            u
        }

        pub fn finding() -> records::Finding {
            let mut f = samples::finding();
            f.workload = None;
            f.unused = None;
            f.server_address = None;
            f.file_path = None;
            f
        }
    }

    fn every_record() -> Vec<Emit> {
        let mut all: Vec<Emit> = samples::accesses().into_iter().map(Emit::from).collect();
        all.extend([
            Emit::from(samples::rotation()),
            samples::connection().into(),
            samples::usage().into(),
            samples::finding().into(),
            samples::coverage().into(),
            samples::stats().into(),
        ]);
        all
    }

    /// The store's text of a typed record is the text its rendering (the
    /// attributes OTLP and tests read) serialises to: same names, values
    /// and order, byte for byte; its `nhi.id` is the rendered one.
    #[test]
    fn typed_text_is_the_rendered_text() {
        for mut typed in every_record() {
            let rendered = typed.rendered();
            let rendered_id = rendered.attributes.iter().find(|(k, _)| *k == "nhi.id").map(|(_, v)| v.clone());
            let name = typed.event_name();
            assert_eq!(rendered.event_name, name);
            if name != EVENT_AGENT_STATS {
                assert_eq!(Stored::nhi_id(&typed).map(Value::from), rendered_id, "{name}");
            }
            assert_eq!(typed.json(), Some(serde_json::to_string(&rendered).expect("JSON")), "{name}");
            let json = typed.to_json("i-9".into()).expect("renders");
            if name == EVENT_AGENT_STATS {
                assert!(!json.contains("nhi.record.id"), "{json}");
            } else {
                assert!(json.ends_with(r#","nhi.record.id":"i-9"}"#), "{json}");
            }
        }
        let mut access = samples::accesses().remove(0);
        access.record_id = None;
        let json = Emit::from(access).to_json("i-7".into()).expect("renders");
        assert!(json.starts_with(r#"{"time":"#) && json.ends_with(r#","nhi.record.id":"i-7"}"#), "{json}");
        assert!(json.contains(r#""file.inode":"1234567","nhi.file.device":"254:1""#), "{json}");
    }

    /// [`rfc3339`] (and the store's time text) is what the `time` crate
    /// writes for the same time: any second from year 0 to 9999, any
    /// fraction, the same second again (the cached second) and the next;
    /// and empty, without a panic, outside those years.
    #[test]
    fn rfc3339_is_time_s_text() {
        use std::time::Duration;

        use proptest::prelude::*;
        fn by_time(t: SystemTime) -> String {
            time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).expect("in range")
        }
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
        const FIRST: i64 = -62_167_219_200;
        const LAST: i64 = 253_402_300_799;
        let at = |secs: i64, nanos: u32| {
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
            } else {
                SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
            }
        };
        let nanos = prop_oneof![Just(0u32), 0..1_000_000_000u32, (1..1000u32).prop_map(|n| n * 1_000_000), (1..10u32).prop_map(|n| n * 100_000_000)];
        proptest!(ProptestConfig::with_cases(2000), |(secs in FIRST..=LAST, n in nanos, again in 0..2u32)| {
            let t = at(secs, n);
            prop_assert_eq!(rfc3339(t), by_time(t));
            // The same second from the cache, and the one after.
            let t2 = at(secs, (n + again * 7) % 1_000_000_000);
            prop_assert_eq!(rfc3339(t2), by_time(t2));
            if secs < LAST {
                prop_assert_eq!(rfc3339(at(secs + 1, n)), by_time(at(secs + 1, n)));
            }
        });
        for (secs, nanos) in [(0, 0), (0, 1), (-1, 999_999_999), (-1, 1), (FIRST, 0), (LAST, 999_999_999), (1_764_000_000, 120_000_000)] {
            assert_eq!(rfc3339(at(secs, nanos)), by_time(at(secs, nanos)), "{secs} {nanos}");
        }
        assert_eq!(rfc3339(at(1_764_000_000, 120_000_000)), "2025-11-24T16:00:00.12Z");
        // Outside the years: nothing, where `time` would panic or fail.
        for t in [at(FIRST - 1, 0), at(LAST + 1, 0), SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)] {
            assert_eq!(rfc3339(t), "");
            let mut e = Emit::from(samples::coverage());
            if let Emit::Coverage(c) = &mut e {
                c.time = t;
            }
            assert!(e.json().expect("renders").starts_with(r#"{"time":"","#));
        }
    }

    /// A key is absent when its value is, never `null`: the hand-written
    /// `Serialize` of the records with parts ([`super::super::flat`])
    /// keeps the derives' skip rules, with every optional part present
    /// and absent.
    #[test]
    fn no_record_text_has_a_null() {
        let mut all = every_record();
        all.extend([bare::access().into(), bare::connection().into(), bare::usage().into(), bare::finding().into()]);
        for mut r in all {
            for json in [r.json().expect("renders"), r.to_json("i-1".into()).expect("renders")] {
                let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
                let nulls: Vec<&String> = v.as_object().expect("object").iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k).collect();
                assert!(nulls.is_empty(), "{nulls:?} in {json}");
                assert!(!json.contains(":null"), "{json}");
            }
        }
    }

    /// The store's text is the text made before (serde_json's) of the same
    /// record, byte for byte (and its time [`rfc3339`]'s): every record,
    /// then a time with nanoseconds and strings holding every
    /// ASCII byte (the escaped ones among them at every offset of a 32-byte
    /// block), non-ASCII text, and the largest integers.
    #[test]
    fn json_text_is_serde_json_s() {
        use crate::model::records::{AccessSource, Inode};
        /// The text as it was made before: serde_json, and the time from
        /// [`rfc3339`].
        #[derive(Serialize)]
        struct Before<'a, T: Serialize> {
            time: String,
            #[serde(rename = "event.name")]
            event_name: &'static str,
            #[serde(flatten)]
            record: &'a T,
        }
        fn same<T: TypedRecord>(r: &T) {
            let before = Before { time: rfc3339(r.time()), event_name: T::EVENT_NAME, record: r };
            let serde = serde_json::to_string(&before).expect("serde_json");
            assert_eq!(typed_json(r).as_deref(), Some(serde.as_str()));
        }
        for emit in every_record() {
            match emit {
                Emit::Access(r) => same(&*r),
                Emit::Rotation(r) => same(&*r),
                Emit::Connection(r) => same(&*r),
                Emit::Usage(r) => same(&*r),
                Emit::Finding(r) => same(&*r),
                Emit::Coverage(r) => same(&*r),
                Emit::Stats(r) => same(&*r),
            }
        }
        let ascii: String = (0u8..0x80).map(char::from).collect();
        let mut texts = vec![ascii.clone(), ascii.repeat(3), "é€😀\u{2028}\u{2029}\u{fffd}".repeat(9), String::new()];
        for at in 0..40 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}'] {
                let mut t = "x".repeat(at);
                t.push(c);
                t.push_str(&"y".repeat(70 - at));
                texts.push(t);
            }
        }
        for text in texts {
            let mut access = samples::accesses().remove(0);
            // Every digit of the fraction.
            access.time = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_764_000_000, 123_456_789);
            access.host_name = text.clone().into();
            if let AccessSource::File(f) = &mut access.source {
                f.open.path = text.clone();
                f.open.inode = Some(Inode(u64::MAX));
                f.open.result = i64::MIN;
                f.count = Some(u64::MAX);
                f.workload.command_args = Some(vec![text.clone(), text]);
            }
            same(&access);
        }
    }

    /// Renders `r`, reads the text back as `T`, and checks it is `r`; and
    /// that the text is not read as a record of another event name.
    fn round_trip<T: TypedRecord + DeserializeOwned + PartialEq + std::fmt::Debug>(r: &T) {
        let json = typed_json(r).expect("renders");
        let back: Option<T> = from_json(&json);
        assert_eq!(back.as_ref(), Some(r), "{json}");
        let named = format!(r#""event.name":"{}""#, T::EVENT_NAME);
        assert!(from_json::<T>(&json.replace(&named, r#""event.name":"nhi.other""#)).is_none(), "{json}");
    }

    /// The store's text of every record type reads back as the typed
    /// record it was rendered from (every optional part present, then
    /// absent): what the start's recount and any other reader of the
    /// store's column rely on.
    #[test]
    fn every_record_reads_back_as_itself() {
        use crate::model::records::{AccessSource, Facts};
        for access in samples::accesses() {
            round_trip(&access);
        }
        round_trip(&bare::access());
        let mut facts = samples::accesses().remove(0);
        if let AccessSource::File(f) = &mut facts.source {
            f.identity.facts = Facts(vec![
                ("nhi.x509.not_after", "2027-01-01T00:00:00Z".into()),
                ("nhi.detector", "content".into()),
                ("nhi.server.address", "db.example".into()),
            ]);
        }
        round_trip(&facts);
        round_trip(&samples::rotation());
        round_trip(&samples::connection());
        round_trip(&bare::connection());
        round_trip(&samples::usage());
        round_trip(&bare::usage());
        round_trip(&samples::finding());
        round_trip(&bare::finding());
        round_trip(&samples::coverage());
        round_trip(&samples::stats());
    }
}
