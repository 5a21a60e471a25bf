//! The machine-readable schema of every record, generated from the typed
//! records ([`super::records`]) by schemars: the same declarations the
//! renderer serialises, so the schema cannot drift from the output.
//!
//! Input: the record types. Output: [`document`], one JSON Schema (draft
//! 2020-12) per event name of the records' flat attributes (without `time`
//! and `event.name`, which every record has), each attribute described by
//! its field's doc comment. The `schema` subcommand prints it and the docs
//! tables are generated from it.
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Value, json};

use super::records::{
    AgentStats, Connection, Coverage, CredentialAccess, Finding, Rotation, TypedRecord, Usage,
    Workload,
};

/// The schema of one record type's attributes. Shared parts (the workload,
/// the process, ...) are `$defs` of that record's own schema, referenced by
/// `$ref`, so that each record's schema stands alone and the docs can
/// document a shared part once.
fn record_schema<T: TypedRecord>() -> (&'static str, Value) {
    (T::EVENT_NAME, schema_of::<T>())
}

fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
    }
    without_null(&mut schema);
    schema
}

/// The access record's `nhi.source` tag is pinned per `oneOf` branch with
/// no text of its own: it gets its branch's (`Read from a file.`).
fn described_source(mut schema: Value) -> Value {
    if let Some(Value::Array(branches)) = schema.get_mut("oneOf") {
        for branch in branches {
            let text = branch.get("description").and_then(Value::as_str).map(str::to_owned);
            if let (Some(text), Some(source)) = (text, branch.pointer_mut("/properties/nhi.source"))
                && let Some(source) = source.as_object_mut()
            {
                source.insert("description".into(), Value::String(format!("How the credential was obtained. {text}")));
            }
        }
    }
    schema
}

/// Adds `D`'s schema as `$defs/<name>` of `schema`. A part the record
/// flattens (the workload) is inlined by schemars; naming it as well lets
/// the docs show it once and leave it out of each record's own table.
fn with_def<D: JsonSchema>(mut schema: Value, name: &str) -> Value {
    let mut part = schema_of::<D>();
    let nested = part.as_object_mut().and_then(|m| m.remove("$defs"));
    if let Some(map) = schema.as_object_mut() {
        let defs = map.entry("$defs").or_insert_with(|| json!({}));
        if let Some(defs) = defs.as_object_mut() {
            if let Some(Value::Object(nested)) = nested {
                defs.extend(nested);
            }
            defs.insert(name.to_owned(), part);
        }
    }
    schema
}

/// An absent attribute is left out, never `null`: `Option` fields' schemas
/// say the value's type alone.
fn without_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            map.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// `{"$schema", "title", "version", "records": {"<event.name>": schema}}`.
pub fn document() -> Value {
    let records: serde_json::Map<String, Value> = [
        {
            let (name, schema) = record_schema::<CredentialAccess>();
            (name, with_def::<Workload>(described_source(schema), "Workload"))
        },
        record_schema::<Rotation>(),
        record_schema::<Connection>(),
        record_schema::<Usage>(),
        record_schema::<Finding>(),
        record_schema::<Coverage>(),
        record_schema::<AgentStats>(),
    ]
    .into_iter()
    .map(|(name, schema)| (name.to_owned(), schema))
    .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "nhi-observer records",
        "version": env!("CARGO_PKG_VERSION"),
        "records": records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EVENT_NAMES, records::samples, render};

    /// A record as the attributes every output shows (JSON of the rendered
    /// attribute list, without `time` and `event.name`).
    fn attributes<T: TypedRecord>(r: &T) -> (&'static str, Value) {
        let rec = render(r);
        let map: serde_json::Map<String, Value> = rec
            .attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::to_value(v).expect("JSON")))
            .collect();
        (rec.event_name, Value::Object(map))
    }

    fn samples() -> Vec<(&'static str, Value)> {
        let mut out: Vec<(&'static str, Value)> =
            samples::accesses().iter().map(attributes).collect();
        out.push(attributes(&samples::rotation()));
        out.push(attributes(&samples::connection()));
        out.push(attributes(&samples::usage()));
        out.push(attributes(&samples::finding()));
        out.push(attributes(&samples::coverage()));
        out.push(attributes(&samples::stats()));
        out
    }

    #[test]
    fn every_event_name_has_a_schema_with_described_attributes() {
        let doc = document();
        assert_eq!(
            doc["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
        let records = doc["records"].as_object().expect("records");
        let mut names: Vec<&str> = records.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = EVENT_NAMES.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
        // Every attribute a sample shows is declared, with a description.
        for (name, sample) in samples() {
            let text = records[name].to_string();
            for key in sample.as_object().expect("object").keys() {
                assert!(
                    text.contains(&format!("\"{key}\":{{")) || key.starts_with("nhi.aws."),
                    "{name}: {key} is not declared in {text}"
                );
            }
        }
        fn described(v: &Value, path: &str) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    assert!(
                        p.get("description")
                            .and_then(Value::as_str)
                            .is_some_and(|d| !d.is_empty())
                            || p.get("const").is_some(),
                        "{path}.{k} has no description: {p}"
                    );
                }
            }
            match v {
                Value::Object(m) => m
                    .iter()
                    .for_each(|(k, x)| described(x, &format!("{path}/{k}"))),
                Value::Array(a) => a.iter().for_each(|x| described(x, path)),
                _ => {}
            }
        }
        described(&doc["records"], "records");
    }

    /// Every attribute name the schema declares needs no escape in JSON
    /// (the store's writer writes field names as they are, `model::json`),
    /// and so does every identity fact's name a stored text can give back.
    #[test]
    fn attribute_names_need_no_escape() {
        fn names(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(props) = m.get("properties").and_then(Value::as_object) {
                        out.extend(props.keys().cloned());
                    }
                    m.values().for_each(|x| names(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| names(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        names(&document()["records"], &mut all);
        assert!(all.len() > 100, "{all:?}");
        for name in &all {
            assert!(name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'), "{name:?}");
        }
        use crate::model::records::de::is_fact;
        assert!(is_fact("nhi.aws.profile"));
        for bad in ["nhi.aws.a\"b", "nhi.aws.a\\b", "nhi.aws.a\nb", "nhi.aws.a\u{1}b"] {
            assert!(!is_fact(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_rendered_sample_validates_against_its_schema() {
        let doc = document();
        for (name, sample) in samples() {
            let validator =
                jsonschema::validator_for(&doc["records"][name]).expect("a valid schema");
            let errors: Vec<String> = validator
                .iter_errors(&sample)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{sample}");
        }
        // And the schema rejects what the outputs never show: a wrong type,
        // a missing required attribute.
        let (name, mut bad) = attributes(&samples::connection());
        bad["server.port"] = Value::from("443");
        let validator = jsonschema::validator_for(&doc["records"][name]).expect("a valid schema");
        assert!(!validator.is_valid(&bad));
        let (name, mut bad) = attributes(&samples::coverage());
        bad.as_object_mut()
            .expect("object")
            .remove("nhi.agent.state");
        let validator = jsonschema::validator_for(&doc["records"][name]).expect("a valid schema");
        assert!(!validator.is_valid(&bad));
    }
}
