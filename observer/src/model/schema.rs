//! The machine-readable schema of the records, as `nhi-observer schema`
//! prints it and `cargo xtask docs` renders into the README's field tables.
//!
//! STAND-IN (branch `docsmem`): a few real fields of each record, described
//! by small structs that exist only for their schema. The typed-model branch
//! replaces this file with `document()` built from the record types the
//! stages pass; the shape of the document is the contract both keep:
//!
//! ```json
//! {"$schema": "https://json-schema.org/draft/2020-12/schema",
//!  "title": "nhi-observer records", "version": "<crate version>",
//!  "records": {"<event.name>": <JSON Schema of that record>, ...}}
//! ```
//!
//! Input: the types. Output: a `serde_json::Value`. Invariant: one entry per
//! event name in [`super::EVENT_NAMES`] that is documented.
#![expect(
    dead_code,
    reason = "stand-in: these types exist only for their schema"
)]

use schemars::{JsonSchema, Schema, SchemaGenerator, schema_for};
use serde_json::{Map, Value, json};

/// JSON Schema dialect of every record schema (schemars' default).
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Attributes every record carries.
#[derive(JsonSchema)]
struct Common {
    /// When it happened (RFC 3339, UTC).
    time: String,
    /// Unique id of this record (`<instance>-<n>`, never reused): the same id
    /// on a record delivered twice marks the duplicate.
    #[serde(rename = "nhi.record.id")]
    record_id: String,
}

/// The process of the event and the workload it belongs to. Keys are absent
/// when unknown.
#[derive(JsonSchema)]
struct Workload {
    /// The process (host pid namespace).
    #[serde(rename = "process.pid")]
    pid: u32,
    /// The executable, from the kernel at event time.
    #[serde(rename = "process.executable.path")]
    executable: String,
    /// The innermost systemd unit, for non-container cgroups.
    #[serde(rename = "nhi.systemd.unit")]
    unit: Option<String>,
    /// From the cgroup name.
    #[serde(rename = "container.id")]
    container_id: Option<String>,
}

fn workload_ref(generator: &mut SchemaGenerator) -> Schema {
    let reference = generator.subschema_for::<Workload>();
    Schema::from(
        json!({ "allOf": [reference] })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )
}

/// How the credential was obtained, with what only that source knows.
#[derive(JsonSchema)]
#[serde(tag = "nhi.source")]
enum AccessSource {
    /// An open of a credential file.
    #[serde(rename = "file")]
    File {
        /// The opened file's real path in the process's mount namespace.
        #[serde(rename = "file.path")]
        path: String,
        /// The catalog rule that matched.
        #[serde(rename = "nhi.rule")]
        rule: String,
    },
    /// A credential in a process's environment.
    #[serde(rename = "env")]
    Env {
        /// The variable's name (its value never leaves the agent).
        #[serde(rename = "nhi.env.name")]
        name: String,
    },
    /// A request to a cloud instance-metadata service.
    #[serde(rename = "imds")]
    Imds {
        /// `aws`, `gcp`, `azure` or `alibaba`.
        #[serde(rename = "nhi.imds.provider")]
        provider: String,
    },
}

/// `nhi.credential.access`.
#[derive(JsonSchema)]
struct CredentialAccess {
    #[serde(flatten)]
    common: Common,
    /// The credential's stable, non-secret identity.
    #[serde(rename = "nhi.id")]
    id: Option<String>,
    /// The credential kind.
    #[serde(rename = "nhi.kind")]
    kind: String,
    #[serde(flatten)]
    source: AccessSource,
    #[serde(flatten)]
    #[schemars(schema_with = "workload_ref")]
    workload: Workload,
    /// Non-secret facts about the identity (profile, project, ...).
    #[serde(flatten)]
    #[schemars(schema_with = "identity_facts")]
    facts: (),
}

fn identity_facts(_: &mut SchemaGenerator) -> Schema {
    Schema::from(
        json!({"patternProperties": {"^nhi\\.(aws|gcp|k8s|x509|key|jwt)\\.": {
            "description": "Non-secret facts about the identity (profile, project, certificate subject, ...).",
            "type": ["string", "integer", "boolean"]
        }}})
        .as_object()
        .cloned()
        .unwrap_or_default(),
    )
}

/// `nhi.usage`.
#[derive(JsonSchema)]
struct Usage {
    #[serde(flatten)]
    common: Common,
    /// Stable id of (host, credential, source, consumer).
    #[serde(rename = "nhi.usage.id")]
    usage_id: String,
    /// Accesses: the sum of the access records' `nhi.access.count`.
    #[serde(rename = "nhi.usage.count")]
    count: u64,
    /// `direct` or `inferred`; absent when no connection was linked.
    #[serde(rename = "nhi.usage.confidence")]
    confidence: Option<String>,
}

/// `nhi.coverage`.
#[derive(JsonSchema)]
struct Coverage {
    #[serde(flatten)]
    common: Common,
    /// Start of the interval this record covers.
    #[serde(rename = "nhi.coverage.start")]
    start: String,
    /// End of the interval this record covers.
    #[serde(rename = "nhi.coverage.end")]
    end: String,
    /// Sensors attached: `file`, `process`, `network`.
    #[serde(rename = "nhi.coverage.sensors")]
    sensors: Vec<String>,
    /// Events the kernel could not queue in the interval.
    #[serde(rename = "nhi.coverage.events_lost")]
    events_lost: u64,
}

/// `nhi.finding`.
#[derive(JsonSchema)]
struct Finding {
    #[serde(flatten)]
    common: Common,
    /// Stable hex id of the finding.
    #[serde(rename = "nhi.finding.id")]
    id: String,
    /// `shadow`, `unused`, `unexpected_consumer`, ...
    #[serde(rename = "nhi.finding.type")]
    kind: String,
    /// Short human text (never secret material).
    #[serde(rename = "nhi.finding.reason")]
    reason: String,
}

/// `nhi.connection`.
#[derive(JsonSchema)]
struct Connection {
    #[serde(flatten)]
    common: Common,
    /// `tcp` or `quic`.
    #[serde(rename = "network.transport")]
    transport: String,
    /// The server name the client asked for; without one, the peer address.
    #[serde(rename = "server.address")]
    server_address: String,
    /// The server port.
    #[serde(rename = "server.port")]
    server_port: u16,
}

/// `nhi.agent.stats` (carries no `nhi.record.id`).
#[derive(JsonSchema)]
struct AgentStats {
    /// When the counters were read.
    time: String,
    /// File events the kernel sent.
    #[serde(rename = "nhi.file.events.emitted")]
    file_events_emitted: u64,
    /// File events the kernel could not send (ring buffer full).
    #[serde(rename = "nhi.file.events.lost")]
    file_events_lost: u64,
}

/// The schema document of every documented record.
pub fn document() -> Value {
    let mut records = Map::new();
    let mut add = |name: &str, schema: Schema| {
        records.insert(name.to_owned(), schema.to_value());
    };
    add(
        super::EVENT_CREDENTIAL_ACCESS,
        schema_for!(CredentialAccess),
    );
    add(super::EVENT_USAGE, schema_for!(Usage));
    add(super::EVENT_COVERAGE, schema_for!(Coverage));
    add(super::EVENT_FINDING, schema_for!(Finding));
    add(super::EVENT_CONNECTION, schema_for!(Connection));
    add(super::EVENT_AGENT_STATS, schema_for!(AgentStats));
    json!({
        "$schema": DIALECT,
        "title": "nhi-observer records",
        "version": env!("CARGO_PKG_VERSION"),
        "records": records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `cargo xtask docs` reads: dialect, title, version, and one
    /// object schema per event name it documents.
    #[test]
    fn the_document_names_every_documented_record_with_its_fields() {
        let doc = document();
        assert_eq!(doc["$schema"], DIALECT);
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
        let records = doc["records"].as_object().expect("records");
        for name in [
            super::super::EVENT_CREDENTIAL_ACCESS,
            super::super::EVENT_USAGE,
            super::super::EVENT_COVERAGE,
            super::super::EVENT_FINDING,
            super::super::EVENT_CONNECTION,
            super::super::EVENT_AGENT_STATS,
        ] {
            assert!(records.contains_key(name), "{name} missing");
        }
        let cov = &records["nhi.coverage"];
        assert_eq!(
            cov["properties"]["nhi.coverage.events_lost"]["type"],
            "integer"
        );
        let required: Vec<&str> = cov["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            required.contains(&"nhi.coverage.start") && required.contains(&"time"),
            "{required:?}"
        );
        // The workload is a shared definition, referenced from the access record.
        assert!(
            records["nhi.credential.access"]["$defs"]["Workload"]["properties"]["process.pid"]
                .is_object()
        );
    }
}
