//! `cargo xtask docs [--check]`: the records' field tables in README.md and
//! docs/design.md, generated from the agent's own schema.
//!
//! Input: the JSON document `nhi-observer schema` prints (`records`: one
//! JSON Schema per event name, as schemars writes it: `$ref`/`$defs`,
//! `allOf`, `oneOf`/`anyOf` for enums, `properties` with `description`,
//! `type`, `required`, `patternProperties`). Output: one markdown table per
//! marker pair
//!
//! ```text
//! <!-- generated:fields RECORD [KEY=VALUE] [$defs/NAME] [-$defs/NAME] -->
//! ...replaced...
//! <!-- /generated -->
//! ```
//!
//! where RECORD is an event name, `KEY=VALUE` keeps only the variants whose
//! KEY is that constant (`nhi.source=file`), `$defs/NAME` documents one
//! shared definition of the record instead of the record, and `-$defs/NAME`
//! leaves that definition's fields out (they have their own table). The
//! whole document is also written to `docs/schema/records.schema.json`.
//!
//! Invariants: only the text between markers (and the schema file) is
//! written; prose around the tables is the authors'. `--check` writes
//! nothing and fails, naming the file and the record, when a committed
//! table or the schema file differs from what the code generates.
use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Files whose marked tables are generated, relative to the workspace.
pub const FILES: &[&str] = &["README.md", "docs/design.md"];
/// The whole schema, as the agent prints it.
pub const SCHEMA_FILE: &str = "docs/schema/records.schema.json";

const OPEN: &str = "<!-- generated:fields ";
const CLOSE: &str = "<!-- /generated -->";

/// `cargo xtask docs`: regenerate (or, with `check`, compare).
pub fn run(check: bool) -> anyhow::Result<()> {
    let root = crate::tasks::workspace_root();
    let doc = schema_document(&root)?;
    let mut drift = Vec::new();
    for rel in FILES {
        let path = root.join(rel);
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let new =
            regenerate(&old, &doc).with_context(|| format!("generating the tables of {rel}"))?;
        if check {
            drift.extend(differences(rel, &old, &new));
        } else if new != old {
            std::fs::write(&path, &new).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("xtask docs: {rel} updated");
        }
    }
    let schema_text = schema_text(&doc)?;
    let schema_path = root.join(SCHEMA_FILE);
    let old_schema = std::fs::read_to_string(&schema_path).unwrap_or_default();
    if check {
        if old_schema != schema_text {
            drift.push(format!(
                "{SCHEMA_FILE}: differs from `nhi-observer schema`{}",
                first_difference(&old_schema, &schema_text)
            ));
        }
        if !drift.is_empty() {
            bail!(
                "the committed docs differ from the code's schema (run `cargo xtask docs`):\n  {}",
                drift.join("\n  ")
            );
        }
        eprintln!("xtask docs: tables and {SCHEMA_FILE} match the schema");
    } else if old_schema != schema_text {
        if let Some(dir) = schema_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&schema_path, &schema_text)
            .with_context(|| format!("writing {}", schema_path.display()))?;
        eprintln!("xtask docs: {SCHEMA_FILE} updated");
    }
    Ok(())
}

/// The agent's schema document, from its `schema` subcommand (built if
/// needed; a debug build, as the tests use).
fn schema_document(root: &Path) -> anyhow::Result<Value> {
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--package",
            "nhi-observer",
            "--bin",
            "nhi-observer",
            "--",
            "schema",
        ])
        .output()
        .context("running `cargo run -p nhi-observer -- schema`")?;
    if !out.status.success() {
        bail!(
            "`nhi-observer schema` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("`nhi-observer schema` printed no JSON document")
}

fn schema_text(doc: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(doc)? + "\n")
}

/// One documented field.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    ty: String,
    meaning: String,
    required: bool,
}

type Fields = BTreeMap<String, Field>;

/// What a marker asks for.
#[derive(Debug, Default)]
struct Selector {
    record: String,
    variant: Option<(String, String)>,
    definition: Option<String>,
    exclude: Vec<String>,
}

fn parse_selector(spec: &str) -> anyhow::Result<Selector> {
    let mut words = spec.split_whitespace();
    let Some(record) = words.next() else {
        bail!("a marker names no record")
    };
    let mut sel = Selector {
        record: record.to_owned(),
        ..Default::default()
    };
    for w in words {
        if let Some(name) = w.strip_prefix("-$defs/") {
            sel.exclude.push(name.to_owned());
        } else if let Some(name) = w.strip_prefix("$defs/") {
            sel.definition = Some(name.to_owned());
        } else if let Some((k, v)) = w.split_once('=') {
            sel.variant = Some((k.to_owned(), v.to_owned()));
        } else {
            bail!("`{w}` is neither KEY=VALUE, $defs/NAME nor -$defs/NAME");
        }
    }
    Ok(sel)
}

/// The table a marker stands for.
fn table_for(doc: &Value, spec: &str) -> anyhow::Result<String> {
    let sel = parse_selector(spec)?;
    let Some(schema) = doc.get("records").and_then(|r| r.get(&sel.record)) else {
        bail!("record `{}` is not in the schema's `records`", sel.record);
    };
    let def = |name: &str| -> anyhow::Result<&Value> {
        schema
            .get("$defs")
            .and_then(|d| d.get(name))
            .with_context(|| format!("record `{}` has no `$defs/{name}`", sel.record))
    };
    let mut fields = Fields::new();
    match &sel.definition {
        Some(name) => collect(schema, def(name)?, None, "", true, &mut fields)?,
        None => collect(schema, schema, sel.variant.as_ref(), "", true, &mut fields)?,
    }
    for name in &sel.exclude {
        let mut excluded = Fields::new();
        collect(schema, def(name)?, None, "", true, &mut excluded)?;
        fields.retain(|k, _| !excluded.contains_key(k));
    }
    if fields.is_empty() {
        bail!("marker `{spec}` selects no field");
    }
    Ok(render(&fields))
}

fn resolve<'a>(root: &'a Value, reference: &str) -> anyhow::Result<&'a Value> {
    let Some(pointer) = reference.strip_prefix('#') else {
        bail!("`$ref` {reference} is not local to the record's schema");
    };
    root.pointer(pointer)
        .with_context(|| format!("`$ref` {reference} points at nothing"))
}

/// The fields `schema` describes (resolving `$ref`, `allOf`, and the
/// variants of `oneOf`/`anyOf`), added to `out`. A field is required when
/// every enclosing level requires it.
fn collect(
    root: &Value,
    schema: &Value,
    variant: Option<&(String, String)>,
    prefix: &str,
    required_here: bool,
    out: &mut Fields,
) -> anyhow::Result<()> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        collect(root, resolve(root, r)?, variant, prefix, required_here, out)?;
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, prop) in props {
            let name = format!("{prefix}{key}");
            let is_required = required_here && required.contains(&key.as_str());
            let target = deref(root, prop)?;
            if target.get("properties").is_some() && !is_nullable(root, prop)? {
                // A nested object: its fields, under dotted names.
                collect(root, target, None, &format!("{name}."), is_required, out)?;
                continue;
            }
            add(
                out,
                name,
                Field {
                    ty: type_of(root, prop)?,
                    meaning: meaning(root, prop)?,
                    required: is_required,
                },
            );
        }
    }
    if let Some(patterns) = schema.get("patternProperties").and_then(Value::as_object) {
        for (pattern, prop) in patterns {
            let name = format!("{prefix}/{pattern}/");
            add(
                out,
                name,
                Field {
                    ty: type_of(root, prop)?,
                    meaning: meaning(root, prop)?,
                    required: false,
                },
            );
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            collect(root, part, variant, prefix, required_here, out)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut per_branch = Vec::new();
        for branch in branches {
            if let Some((k, v)) = variant
                && !has_constant(root, branch, k, v)?
            {
                continue;
            }
            let mut f = Fields::new();
            collect(root, branch, variant, prefix, required_here, &mut f)?;
            per_branch.push(f);
        }
        if per_branch.is_empty() {
            if let Some((k, v)) = variant {
                bail!("no `{key}` variant has `{k}` = `{v}`");
            }
            continue;
        }
        // A field is required only when every branch kept requires it.
        let n = per_branch.len();
        let mut merged = Fields::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for f in per_branch {
            for (name, field) in f {
                *seen.entry(name.clone()).or_default() += 1;
                add(&mut merged, name, field);
            }
        }
        for (name, mut field) in merged {
            if seen.get(&name).copied().unwrap_or(0) < n {
                field.required = false;
            }
            add(out, name, field);
        }
    }
    Ok(())
}

/// Adds a field; a name seen twice (two variants, two `allOf` parts) keeps
/// both types and either meaning, and is required if either says so.
fn add(out: &mut Fields, name: String, field: Field) {
    match out.get_mut(&name) {
        None => {
            out.insert(name, field);
        }
        Some(old) => {
            if old.ty != field.ty && !old.ty.split(" or ").any(|t| t == field.ty) {
                old.ty = format!("{} or {}", old.ty, field.ty);
            }
            if old.meaning.is_empty() {
                old.meaning = field.meaning;
            }
            old.required |= field.required;
        }
    }
}

fn deref<'a>(root: &'a Value, schema: &'a Value) -> anyhow::Result<&'a Value> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(root, resolve(root, r)?),
        None => Ok(schema),
    }
}

fn is_nullable(root: &Value, schema: &Value) -> anyhow::Result<bool> {
    Ok(type_of(root, schema)?.split(" or ").any(|t| t == "null"))
}

/// Whether `schema` fixes property `key` to `value` (`const`, or a
/// one-value `enum`): itself (a branch may pin the key beside its `$ref`,
/// as draft 2020-12 allows), through its `$ref`, or in an `allOf` part.
fn has_constant(root: &Value, schema: &Value, key: &str, value: &str) -> anyhow::Result<bool> {
    let pinned = schema
        .get("properties")
        .and_then(|p| p.get(key))
        .is_some_and(|p| {
            p.get("const").and_then(Value::as_str) == Some(value)
                || p.get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.len() == 1 && e[0].as_str() == Some(value))
        });
    if pinned {
        return Ok(true);
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && has_constant(root, resolve(root, r)?, key, value)?
    {
        return Ok(true);
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if has_constant(root, part, key, value)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A short type: `string`, `integer`, `array of string`, `` `file` `` for a
/// constant, `` `a` | `b` `` for an enum, `string or null`.
fn type_of(root: &Value, schema: &Value) -> anyhow::Result<String> {
    let schema = deref(root, schema)?;
    if let Some(c) = schema.get("const") {
        return Ok(literal(c));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Ok(values.iter().map(literal).collect::<Vec<_>>().join(" | "));
    }
    let one = |t: &str| -> anyhow::Result<String> {
        Ok(match t {
            "array" => match schema.get("items") {
                Some(items) => format!("array of {}", type_of(root, items)?),
                None => "array".to_owned(),
            },
            t => t.to_owned(),
        })
    };
    match schema.get("type") {
        Some(Value::String(t)) => return one(t),
        Some(Value::Array(ts)) => {
            let names: Vec<String> = ts
                .iter()
                .filter_map(Value::as_str)
                .map(one)
                .collect::<anyhow::Result<_>>()?;
            return Ok(names.join(" or "));
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let mut names: Vec<String> = Vec::new();
            for b in branches {
                let t = type_of(root, b)?;
                if !names.contains(&t) {
                    names.push(t);
                }
            }
            return Ok(names.join(" or "));
        }
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return type_of(root, only);
    }
    Ok(if schema.get("properties").is_some() {
        "object".to_owned()
    } else {
        "any".to_owned()
    })
}

fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        v => format!("`{v}`"),
    }
}

/// The property's description, or its referenced type's.
fn meaning(root: &Value, schema: &Value) -> anyhow::Result<String> {
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        return Ok(d.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => meaning(root, resolve(root, r)?),
        None => Ok(String::new()),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn render(fields: &Fields) -> String {
    let mut t = String::from("| field | type | meaning |\n|---|---|---|\n");
    // Named fields first, then the pattern-named ones.
    let (named, patterns): (Vec<_>, Vec<_>) =
        fields.iter().partition(|(name, _)| !name.starts_with('/'));
    for (name, f) in named.into_iter().chain(patterns) {
        let name = if name.starts_with('/') {
            format!("keys matching `{}`", name.trim_matches('/'))
        } else {
            format!("`{name}`")
        };
        let req = if f.required { " (required)" } else { "" };
        t.push_str(&format!(
            "| {}{req} | {} | {} |\n",
            cell(&name),
            cell(&f.ty),
            cell(&f.meaning)
        ));
    }
    t
}

/// `text` with every marked table replaced by the one generated from `doc`.
pub fn regenerate(text: &str, doc: &Value) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after_open = &rest[start..];
        let Some(end_of_open) = after_open.find("-->") else {
            bail!("a `{OPEN}` marker is not closed by `-->`")
        };
        let spec = after_open[OPEN.len()..end_of_open].trim();
        let body_start = start + end_of_open + 3;
        let Some(close) = rest[body_start..].find(CLOSE) else {
            bail!("marker `{spec}` has no `{CLOSE}`")
        };
        if rest[body_start..body_start + close].contains(OPEN) {
            bail!("marker `{spec}` is not closed by `{CLOSE}` before the next marker");
        }
        let table = table_for(doc, spec).with_context(|| format!("marker `{spec}`"))?;
        out.push_str(&rest[..body_start]);
        out.push('\n');
        out.push_str(&table);
        out.push_str(CLOSE);
        rest = &rest[body_start + close + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One line per marked table of `file` that differs between the committed
/// `old` and the generated `new` text.
fn differences(file: &str, old: &str, new: &str) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    let sections = |t: &str| -> Vec<(String, String)> {
        let mut v = Vec::new();
        let mut rest = t;
        while let Some(s) = rest.find(OPEN) {
            let a = &rest[s..];
            let Some(e) = a.find("-->") else { break };
            let spec = a[OPEN.len()..e].trim().to_owned();
            let body = &a[e + 3..];
            let Some(c) = body.find(CLOSE) else { break };
            v.push((spec, body[..c].to_owned()));
            rest = &body[c..];
        }
        v
    };
    let (o, n) = (sections(old), sections(new));
    let mut found: Vec<String> = o
        .iter()
        .zip(&n)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((spec, a), (_, b))| {
            format!("{file}: table `{spec}` differs{}", first_difference(a, b))
        })
        .collect();
    if found.is_empty() {
        found.push(format!(
            "{file}: differs outside the tables{}",
            first_difference(old, new)
        ));
    }
    found
}

fn first_difference(old: &str, new: &str) -> String {
    let (mut a, mut b) = (old.lines(), new.lines());
    for i in 1.. {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) if x == y => continue,
            (x, y) => {
                return format!(
                    " at its line {i}: committed `{}`, generated `{}`",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                );
            }
        }
    }
    String::new()
}

/// For `cargo xtask test`: the check, as CI runs it.
pub fn check() -> anyhow::Result<()> {
    run(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What schemars 1.x writes for a record with a flattened common part,
    /// an internally tagged enum, a referenced definition and a nullable
    /// field, plus pattern-named attributes.
    fn fixture() -> Value {
        json!({"records": {"nhi.test": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Test",
            "type": "object",
            "properties": {
                "time": {"type": "string", "description": "When it happened."},
                "nhi.id": {"type": ["string", "null"], "description": "The credential's\n identity."},
                "nhi.count": {"type": "integer", "format": "uint64", "minimum": 0, "description": "How many | opens."},
                "nhi.sensors": {"type": "array", "items": {"type": "string"}, "description": "Sensors."}
            },
            "required": ["time", "nhi.count"],
            "allOf": [{"$ref": "#/$defs/Workload"}],
            "patternProperties": {"^nhi\\.aws\\.": {"type": "string", "description": "AWS facts."}},
            "oneOf": [
                {"type": "object", "description": "A file.",
                 "properties": {"nhi.source": {"type": "string", "const": "file"},
                                "file.path": {"type": "string", "description": "The path."}},
                 "required": ["nhi.source", "file.path"]},
                {"type": "object",
                 "properties": {"nhi.source": {"type": "string", "const": "env"},
                                "nhi.env.name": {"$ref": "#/$defs/EnvName"}},
                 "required": ["nhi.source"]}
            ],
            "$defs": {
                "Workload": {"type": "object", "properties": {
                    "process.pid": {"type": "integer", "description": "The process."},
                    "container.id": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "The container."}
                }, "required": ["process.pid"]},
                "EnvName": {"type": "string", "description": "The variable's name."}
            }
        }}})
    }

    fn rows(table: &str) -> Vec<&str> {
        table.lines().skip(2).collect()
    }

    #[test]
    fn a_record_table_resolves_refs_all_of_variants_and_patterns() {
        let t = table_for(&fixture(), "nhi.test").unwrap();
        let r = rows(&t);
        assert!(
            r.contains(&"| `time` (required) | string | When it happened. |"),
            "{t}"
        );
        // Optional: nullable and not in `required`; newlines folded.
        assert!(
            r.contains(&"| `nhi.id` | string or null | The credential's identity. |"),
            "{t}"
        );
        // A pipe in a description does not split the cell.
        assert!(
            r.contains(&"| `nhi.count` (required) | integer | How many \\| opens. |"),
            "{t}"
        );
        assert!(
            r.contains(&"| `nhi.sensors` | array of string | Sensors. |"),
            "{t}"
        );
        // From the `allOf` `$ref`: required inside the definition.
        assert!(
            r.contains(&"| `process.pid` (required) | integer | The process. |"),
            "{t}"
        );
        assert!(
            r.contains(&"| `container.id` | string or null | The container. |"),
            "{t}"
        );
        assert!(
            r.contains(&"| keys matching `^nhi\\.aws\\.` | string | AWS facts. |"),
            "{t}"
        );
        // Variants: the tag is in both (required), each variant's own field
        // is optional for the record as a whole; a `$ref`'d description.
        assert!(
            r.contains(&"| `nhi.source` (required) | `file` or `env` |  |"),
            "{t}"
        );
        assert!(r.contains(&"| `file.path` | string | The path. |"), "{t}");
        assert!(
            r.contains(&"| `nhi.env.name` | string | The variable's name. |"),
            "{t}"
        );
        assert_eq!(r.len(), 10, "{t}");
        assert!(
            r[9].starts_with("| keys matching"),
            "pattern rows come last: {t}"
        );
    }

    #[test]
    fn a_variant_selector_keeps_one_variant_and_a_definition_can_be_left_out() {
        let t = table_for(&fixture(), "nhi.test nhi.source=file -$defs/Workload").unwrap();
        let r = rows(&t);
        assert!(
            r.contains(&"| `file.path` (required) | string | The path. |"),
            "{t}"
        );
        assert!(
            r.contains(&"| `nhi.source` (required) | `file` |  |"),
            "{t}"
        );
        assert!(
            !t.contains("nhi.env.name")
                && !t.contains("process.pid")
                && !t.contains("container.id"),
            "{t}"
        );
        assert!(t.contains("`time` (required)"), "{t}");
        let err = table_for(&fixture(), "nhi.test nhi.source=imds").unwrap_err();
        assert!(
            format!("{err:#}").contains("`nhi.source` = `imds`"),
            "{err:#}"
        );
    }

    #[test]
    fn a_definition_selector_documents_the_shared_definition_alone() {
        let t = table_for(&fixture(), "nhi.test $defs/Workload").unwrap();
        assert_eq!(
            rows(&t),
            [
                "| `container.id` | string or null | The container. |",
                "| `process.pid` (required) | integer | The process. |"
            ]
        );
        assert!(
            format!(
                "{:#}",
                table_for(&fixture(), "nhi.test $defs/Nope").unwrap_err()
            )
            .contains("no `$defs/Nope`")
        );
        assert!(
            format!("{:#}", table_for(&fixture(), "nhi.other").unwrap_err())
                .contains("`nhi.other` is not in")
        );
    }

    #[test]
    fn only_the_text_between_markers_is_replaced() {
        let text = "# Title\n\nProse stays.\n\n<!-- generated:fields nhi.test $defs/Workload -->\n| old | table |\n<!-- /generated -->\n\nMore prose.\n";
        let new = regenerate(text, &fixture()).unwrap();
        assert!(new.starts_with("# Title\n\nProse stays.\n\n<!-- generated:fields nhi.test $defs/Workload -->\n| field | type | meaning |\n"));
        assert!(new.ends_with("| `process.pid` (required) | integer | The process. |\n<!-- /generated -->\n\nMore prose.\n"), "{new}");
        assert!(!new.contains("| old | table |"));
        // Regenerating the result changes nothing.
        assert_eq!(regenerate(&new, &fixture()).unwrap(), new);
        let unclosed =
            regenerate("<!-- generated:fields nhi.test -->\n| x |\n", &fixture()).unwrap_err();
        assert!(format!("{unclosed:#}").contains("has no `<!-- /generated -->`"));
    }

    /// The drift check CI runs: one changed line in a committed table is
    /// found, named by file and record.
    #[test]
    fn the_drift_check_names_the_file_and_record_of_a_changed_line() {
        let text = "Intro.\n<!-- generated:fields nhi.test $defs/Workload -->\n<!-- /generated -->\n<!-- generated:fields nhi.test nhi.source=env -$defs/Workload -->\n<!-- /generated -->\n";
        let committed = regenerate(text, &fixture()).unwrap();
        assert!(
            differences(
                "README.md",
                &committed,
                &regenerate(&committed, &fixture()).unwrap()
            )
            .is_empty()
        );
        // Someone edits a generated line by hand...
        let edited = committed.replace("| The process. |", "| The process id. |");
        assert_ne!(edited, committed);
        let found = differences(
            "README.md",
            &edited,
            &regenerate(&edited, &fixture()).unwrap(),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("README.md: table `nhi.test $defs/Workload` differs"),
            "{}",
            found[0]
        );
        assert!(
            found[0]
                .contains("committed `| `process.pid` (required) | integer | The process id. |`"),
            "{}",
            found[0]
        );
        // ...or the schema changes under a committed table.
        let mut changed = fixture();
        changed["records"]["nhi.test"]["oneOf"][1]["required"] =
            json!(["nhi.source", "nhi.env.name"]);
        let found = differences(
            "docs/design.md",
            &committed,
            &regenerate(&committed, &changed).unwrap(),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "docs/design.md: table `nhi.test nhi.source=env -$defs/Workload` differs"
            ),
            "{}",
            found[0]
        );
        assert!(
            found[0].contains("generated `| `nhi.env.name` (required) |"),
            "{}",
            found[0]
        );
    }
}
