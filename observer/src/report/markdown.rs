//! The report as Markdown (a review ticket, a pull request).
use std::fmt::Write as _;

use super::Report;
use crate::{model::rfc3339, findings::render};

/// Text safe in a Markdown table cell: no pipes, no line breaks, no HTML,
/// no emphasis or code markers.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn t(v: Option<std::time::SystemTime>) -> String {
    v.map(rfc3339).unwrap_or_else(|| "-".into())
}

pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# NHI report: {}\n", cell(&r.host));
    let _ = writeln!(
        o,
        "Generated {}; window {} to {} ({} s).\n",
        rfc3339(r.generated_at),
        rfc3339(r.window_start),
        rfc3339(r.generated_at),
        r.window.as_secs()
    );
    let _ = writeln!(o, "## Credentials\n");
    let _ = writeln!(
        o,
        "| nhi.id | kind | status | paths | created by | consumers | destinations | first seen | last seen | accesses | findings |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for c in &r.credentials {
        let consumers: Vec<String> = c.consumers.iter().map(|w| w.label()).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&c.nhi_id),
            cell(&c.kind),
            c.status.as_str(),
            cell(&c.paths.join(", ")),
            cell(&c.created_by.join("; ")),
            cell(&consumers.join("; ")),
            cell(&c.destinations.join(", ")),
            t(c.first_seen),
            t(c.last_seen),
            c.accesses,
            c.findings.len()
        );
    }
    let _ = writeln!(o, "\n## Findings\n");
    let _ = writeln!(o, "| type | severity | nhi.id | reason | first seen | last seen | count | id |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for f in &r.findings {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.kind.as_str(),
            f.severity.as_str(),
            cell(&f.nhi_id),
            cell(&f.reason),
            rfc3339(f.first_seen),
            rfc3339(f.last_seen),
            f.count,
            f.id
        );
    }
    let _ = writeln!(o, "\n## Evidence\n");
    let _ = writeln!(o, "- Host: {}", cell(&r.host));
    let _ = writeln!(o, "- Tracked since: {}", t(r.tracked_since));
    let _ = writeln!(o, "- Coverage of the window: {}%", render::percent(r.coverage_percent));
    let lost: Vec<String> = r.lost_by_kind.iter().map(|(k, v)| format!("{} {v}", cell(k))).collect();
    let _ = writeln!(
        o,
        "- Events lost: {}{}",
        r.events_lost,
        if lost.is_empty() { String::new() } else { format!(" ({})", lost.join(", ")) }
    );
    if let Some(i) = &r.inventory {
        let _ = writeln!(o, "- Inventory: {}", cell(i));
    }
    for d in &r.declared_not_found {
        let _ = writeln!(o, "- Declared in the inventory, not found on this host: {}", cell(d));
    }
    let _ = writeln!(o, "\n### Coverage\n");
    let _ = writeln!(o, "| from | to | watched | events lost |");
    let _ = writeln!(o, "|---|---|---|---|");
    for s in &r.timeline {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            rfc3339(s.start),
            rfc3339(s.end),
            if s.watched { "yes" } else { "no (gap)" },
            s.events_lost
        );
    }
    let _ = writeln!(o, "\n### Blind spots\n");
    for b in &r.blind_spots {
        let _ = writeln!(o, "- {}", cell(b));
    }
    let signoffs: Vec<&String> = r.credentials.iter().filter_map(|c| c.signoff.as_ref()).collect();
    if !signoffs.is_empty() {
        let _ = writeln!(o, "\n### Sign-off\n");
        for s in signoffs {
            let _ = writeln!(o, "- {}", cell(s));
        }
        if let Some(c) = &r.signoff_caveat {
            let _ = writeln!(o, "\n{}", cell(c));
        }
    }
    o
}
