//! The model: what every stage hands on, in one place that imports no
//! stage after it (no sink, no store), so that sensors, the correlator,
//! the store and the exporters all depend on it and never on each other.
//!
//! - `record`: the [`Record`] (event name, time, attributes named by the
//!   OpenTelemetry semantic conventions or `nhi.*`) and every event name;
//! - `file`: the `nhi.credential.access` record of a file open;
//! - `subject`: who used which credential, typed (credential, source,
//!   consumer), and the usage key made of them;
//! - `schema`: the JSON Schema document of the records (`nhi-observer schema`).
//!
//! Input: decoded events and typed values. Output: records, which the store
//! serialises once; JSON lines and OTLP render that one serialisation.
pub mod file;
pub mod record;
pub mod schema;
pub mod subject;

pub use record::{
    EVENT_AGENT_STATS, EVENT_CONNECTION, EVENT_COVERAGE, EVENT_CREDENTIAL_ACCESS,
    EVENT_CREDENTIAL_ROTATION, EVENT_FINDING, EVENT_NAMES, EVENT_USAGE, Record, Value,
    process_attributes, rfc3339,
};
pub use subject::{CONSUMER_KEYS, Consumer, Credential, Source};
