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
        "skipped": report.skipped,
        "identities": report.identities(),
    })
}

fn file_json(f: &Found) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), escaped(&f.path).into());
    m.insert("nhi.rule".into(), f.rule.clone().into());
    m.insert("nhi.format".into(), f.format.name().into());
    if f.path.to_str().is_none() {
        m.insert("nhi.file.path_escaped".into(), true.into());
    }
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

/// Control characters escaped (`\u{1b}`), the rest as it is.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
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
        // A file name is anyone's to choose: non-UTF-8 bytes as \xNN and
        // control characters (terminal escape sequences) escaped, never sent.
        let path = printable(&escaped(&f.path));
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

/// A path as text, with the bytes that are not UTF-8 as `\\xNN`.
pub fn escaped(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::model::file::escaped(path.as_os_str().as_bytes())
}

/// Prints the report in the chosen form.
pub fn print(report: &ScanReport, as_json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &json(report))?;
        writeln!(out)
    } else {
        writeln!(out, "{}", table(report))?;
        let skipped: Vec<String> = report.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
        writeln!(
            out,
            "{} credential files, {} identities ({} files seen, {} unreadable entries; not credentials: {})",
            report.found.len(),
            report.identities(),
            report.files_seen,
            report.walk_errors,
            if skipped.is_empty() { "none".to_owned() } else { skipped.join(", ") }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    /// Guards the scan table against file names that carry terminal escape
    /// sequences (a crafted name could rewrite the operator's screen).
    #[test]
    fn control_characters_in_file_names_are_escaped() {
        let shown = printable("/home/a/\u{1b}[2J\u{1b}]0;owned\u{7}.aws/credentials\n");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "/home/a/\\u{1b}[2J\\u{1b}]0;owned\\u{7}.aws/credentials\\n");
        assert_eq!(printable("/etc/ünïcode"), "/etc/ünïcode");
    }
}
