//! The model: what every stage hands on, in one place that imports no
//! stage after it (no sink, no store), so that sensors, the correlator,
//! the store and the exporters all depend on it and never on each other.
//!
//! - `record`: the [`Record`] (event name, time, attributes named by the
//!   OpenTelemetry semantic conventions or `nhi.*`) and every event name;
//! - `records`: one typed record per event name (with the workload, the
//!   process and the credential identity as typed parts), deriving
//!   `Serialize` with the attribute names and `JsonSchema`;
//! - `render`: the one renderer, a typed record to its attributes;
//! - `schema`: the schema of every record, generated from `records`
//!   ([`schema::document`]);
//! - `file`: the `nhi.credential.access` record of a file open (and the
//!   rotation record made from it);
//! - `subject`: who used which credential, typed (credential, source,
//!   consumer), and the usage key made of them.
//!
//! Input: decoded events and typed values. Output: records, rendered from
//! their typed form by `render` alone, which the store serialises once;
//! JSON lines and OTLP render that one serialisation.
pub mod file;
pub mod record;
pub mod records;
pub mod render;
pub mod schema;
pub mod subject;

pub use record::{
    EVENT_AGENT_STATS, EVENT_CONNECTION, EVENT_COVERAGE, EVENT_CREDENTIAL_ACCESS,
    EVENT_CREDENTIAL_ROTATION, EVENT_FINDING, EVENT_NAMES, EVENT_USAGE, Emit, Record, Stored, Value,
    process_attributes, rfc3339,
};
pub use render::render;
pub use subject::{CONSUMER_KEYS, Consumer, Credential, Source};
