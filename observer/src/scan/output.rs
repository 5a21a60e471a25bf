//! `nhi-observer scan` output: a table (default) or one JSON document
//! (`--json`) on stdout, and a progress spinner on stderr when stderr is a
//! terminal. Only identities and reasons are printed: `Found` holds no
//! secret.
use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Map, Value, json};

use super::{Found, ScanReport};

/// A spinner on stderr if it is a terminal, else nothing.
pub fn progress() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

pub fn json(report: &ScanReport) -> Value {
    json!({
        "files": report.found.iter().map(file_json).collect::<Vec<_>>(),
        "files_seen": report.files_seen,
        "walk_errors": report.walk_errors,
        "identities": report.identities(),
    })
}

fn file_json(f: &Found) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), f.path.to_string_lossy().into());
    m.insert("nhi.rule".into(), f.rule.clone().into());
    m.insert("nhi.format".into(), f.format.name().into());
    if let Some(st) = f.stat {
        let kdev = st.kernel_dev();
        m.insert("nhi.file.device".into(), crate::model::file::device(kdev).into());
        m.insert("file.inode".into(), st.ino.to_string().into());
        m.insert("file.size".into(), st.size.into());
    }
    let ids: Vec<Value> = f
        .parsed
        .identities
        .iter()
        .map(|i| {
            let mut o = Map::new();
            o.insert("nhi.id".into(), i.id.clone().into());
            o.insert("nhi.kind".into(), i.kind.clone().into());
            for (k, v) in &i.attributes {
                o.insert((*k).into(), v.clone().into());
            }
            Value::Object(o)
        })
        .collect();
    m.insert("identities".into(), ids.into());
    if let Some(u) = &f.parsed.unparsed {
        m.insert("nhi.unparsed.reason".into(), u.reason().into());
        m.insert("nhi.unparsed.detail".into(), u.to_string().into());
    }
    Value::Object(m)
}

pub fn table(report: &ScanReport) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    // A terminal of unknown or tiny width would squeeze ids into slivers:
    // full rows are more useful then.
    if t.width().is_none_or(|w| w < 80) {
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    t.set_header(["path", "rule", "kind", "identity"]);
    for f in &report.found {
        let path = f.path.to_string_lossy();
        if f.parsed.identities.is_empty() {
            let why = f.parsed.unparsed.as_ref().map(ToString::to_string).unwrap_or_default();
            t.add_row([path.as_ref(), f.rule.as_str(), f.kind.as_str(), &format!("(unparsed: {why})")]);
        }
        for i in &f.parsed.identities {
            t.add_row([path.as_ref(), f.rule.as_str(), i.kind.as_str(), i.id.as_str()]);
        }
    }
    t
}

/// Prints the report in the chosen form.
pub fn print(report: &ScanReport, as_json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &json(report))?;
        writeln!(out)
    } else {
        writeln!(out, "{}", table(report))?;
        writeln!(
            out,
            "{} credential files, {} identities ({} files seen, {} unreadable entries)",
            report.found.len(),
            report.identities(),
            report.files_seen,
            report.walk_errors
        )
    }
}
