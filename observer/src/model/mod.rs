//! The model: what every stage hands on, in one place that imports no
//! stage after it (no sink, no store), so that sensors, the correlator,
//! the store and the exporters all depend on it and never on each other.
//!
//! - `record`: every event name; [`Emit`], what the stages hand the store
//!   (one typed record per event name); [`Stored`], what the store needs
//!   of one (a typed `nhi.id`); the record's one JSON text
//!   ([`typed_json`]) and its reading back ([`from_json`]); and the
//!   [`Record`], the rendered attribute form of a typed record (event
//!   name, time, attributes named by the OpenTelemetry semantic
//!   conventions or `nhi.*`) that only the edges and tests read;
//! - `records`: one typed record per event name (with the workload, the
//!   process and the credential identity as typed parts), deriving
//!   `Serialize` with the attribute names and `JsonSchema`;
//! - `render`: the one renderer, a typed record to its attributes;
//! - `schema`: the schema of every record, generated from `records`
//!   ([`schema::document`]);
//! - `flat`: a record's flattened parts written as its own fields, with
//!   their names kept `&'static str` (records with parts serialise through
//!   it);
//! - `json`: the store's JSON text of a record, serde_json's text written
//!   without its per-byte escape lookup for strings that need none;
//! - `file`: the `nhi.credential.access` record of a file open (and the
//!   rotation record made from it);
//! - `subject`: who used which credential, typed (credential, source,
//!   consumer), and the usage key made of them.
//!
//! Input: decoded events and typed values. Output: typed records, which
//! the store serialises once; JSON lines and OTLP are made from that one
//! serialisation, and `render` gives the same names and values as
//! attributes.
/// Serializer methods that refuse their value (the model's serializers
/// each take only some shapes): `refuse!(error; method(argument types),
/// ...)`, each method returning `error`. Defined before the modules that
/// use it.
macro_rules! refuse {
    ($err:expr; $($f:ident($($t:ty),*)),* $(,)?) => {
        $(fn $f(self, $(_: $t),*) -> Result<Self::Ok, Self::Error> { $err })*
    };
}

pub mod file;
pub mod flat;
pub mod json;
pub mod record;
pub mod records;
pub mod render;
pub mod schema;
pub mod subject;

pub use record::{
    EVENT_AGENT_STATS, EVENT_CONNECTION, EVENT_COVERAGE, EVENT_CREDENTIAL_ACCESS,
    EVENT_CREDENTIAL_ROTATION, EVENT_FINDING, EVENT_NAMES, EVENT_USAGE, Emit, Record, Stored, Value,
    from_json, rfc3339, typed_json,
};
pub use render::{permanent, render};
pub use subject::{CONSUMER_KEYS, Consumer, Credential, Source};
