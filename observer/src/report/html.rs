//! The report as one self-contained HTML file: inline CSS and SVG, no
//! script, no external asset. Every text is escaped by [`esc`].
use std::{fmt::Write as _, time::SystemTime};

use super::Report;
use crate::{model::rfc3339, findings::render};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}\
th{background:#f3f3f3}.in_use{color:#176f2c}.unused{color:#a15c00}.too_new{color:#555}.shadow{color:#b00020}\
.sev-high{color:#b00020;font-weight:bold}.sev-medium{color:#a15c00}.sev-low{color:#555}.sev-info{color:#777}\
svg{display:block}code{font-size:12px}.signoff{background:#fffbe6;padding:6px;border-left:3px solid #e0b000}";

const W: f64 = 320.0;

fn x(t: SystemTime, from: SystemTime, to: SystemTime) -> f64 {
    let total = to.duration_since(from).unwrap_or_default().as_secs_f64();
    if total <= 0.0 {
        return 0.0;
    }
    let at = t.duration_since(from).unwrap_or_default().as_secs_f64().min(total);
    at / total * W
}

/// A use timeline: one bar per usage (first to last seen) over the window.
fn use_svg(uses: &[(SystemTime, SystemTime)], from: SystemTime, to: SystemTime) -> String {
    let mut s = format!(
        "<svg class=\"timeline\" width=\"{W}\" height=\"14\" role=\"img\"><rect width=\"{W}\" height=\"14\" fill=\"#f4f4f4\"/>"
    );
    for (a, b) in uses {
        if *b < from {
            continue;
        }
        let x0 = x((*a).max(from), from, to);
        let w = (x(*b, from, to) - x0).max(2.0);
        let _ = write!(s, "<rect x=\"{x0:.1}\" y=\"2\" width=\"{w:.1}\" height=\"10\" fill=\"#2b7bb9\"><title>{} to {}</title></rect>", rfc3339(*a), rfc3339(*b));
    }
    s.push_str("</svg>");
    s
}

fn t(v: Option<SystemTime>) -> String {
    v.map(rfc3339).unwrap_or_else(|| "-".into())
}

pub fn html(r: &Report) -> String {
    let (from, to) = (r.window_start, r.generated_at);
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>NHI report: {}</title><style>{CSS}</style></head><body>",
        esc(&r.host)
    );
    let _ = write!(
        o,
        "<h1>NHI report: {}</h1><p>Generated {}; window {} to {} ({} s).</p>",
        esc(&r.host),
        rfc3339(r.generated_at),
        rfc3339(from),
        rfc3339(to),
        r.window.as_secs()
    );
    o.push_str("<h2>Credentials</h2><table id=\"credentials\"><thead><tr><th>nhi.id</th><th>kind</th><th>status</th><th>paths</th><th>created by</th><th>consumers</th><th>destinations</th><th>first seen</th><th>last seen</th><th>accesses</th><th>use in the window</th><th>findings</th></tr></thead><tbody>");
    for c in &r.credentials {
        let list = |v: &[String]| v.iter().map(|p| format!("<div>{}</div>", esc(p))).collect::<String>();
        let consumers: Vec<String> = c.consumers.iter().map(|w| w.label()).collect();
        let findings: String = r
            .findings
            .iter()
            .filter(|f| c.findings.contains(&f.id))
            .map(|f| {
                format!(
                    "<div class=\"sev-{}\" data-finding-type=\"{}\">{}: {}</div>",
                    f.severity.as_str(),
                    f.kind.as_str(),
                    f.kind.as_str(),
                    esc(&f.reason)
                )
            })
            .collect();
        let _ = write!(
            o,
            "<tr class=\"credential\" data-nhi-id=\"{}\" data-status=\"{}\"><td><code>{}</code>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.nhi_id),
            c.status.as_str(),
            esc(&c.nhi_id),
            c.owner.as_ref().map(|o| format!("<div>owner: {}</div>", esc(o))).unwrap_or_default(),
            esc(&c.kind),
            c.status.as_str(),
            c.status.as_str(),
            list(&c.paths),
            list(&c.created_by),
            list(&consumers),
            list(&c.destinations),
            t(c.first_seen),
            t(c.last_seen),
            c.accesses,
            use_svg(&c.uses, from, to),
            findings
        );
    }
    o.push_str("</tbody></table>");
    o.push_str("<h2>Findings</h2><table id=\"findings\"><thead><tr><th>type</th><th>severity</th><th>nhi.id</th><th>reason</th><th>first seen</th><th>last seen</th><th>count</th><th>id</th></tr></thead><tbody>");
    for f in &r.findings {
        let _ = write!(
            o,
            "<tr class=\"finding\" data-finding-type=\"{}\"><td>{}</td><td class=\"sev-{}\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            f.kind.as_str(),
            f.kind.as_str(),
            f.severity.as_str(),
            f.severity.as_str(),
            esc(&f.nhi_id),
            esc(&f.reason),
            rfc3339(f.first_seen),
            rfc3339(f.last_seen),
            f.count,
            esc(&f.id)
        );
    }
    o.push_str("</tbody></table>");
    o.push_str("<h2>Evidence</h2><ul>");
    let _ = write!(o, "<li>Host: {}</li>", esc(&r.host));
    let _ = write!(o, "<li>Tracked since: {}</li>", t(r.tracked_since));
    let _ = write!(o, "<li id=\"coverage-percent\">Coverage of the window: {}%</li>", render::percent(r.coverage_percent));
    let lost: Vec<String> = r.lost_by_kind.iter().map(|(k, v)| format!("{} {v}", esc(k))).collect();
    let _ = write!(o, "<li>Events lost: {}{}</li>", r.events_lost, if lost.is_empty() { String::new() } else { format!(" ({})", lost.join(", ")) });
    if let Some(i) = &r.inventory {
        let _ = write!(o, "<li>Inventory: {}</li>", esc(i));
    }
    for d in &r.declared_not_found {
        let _ = write!(o, "<li>Declared in the inventory, not found on this host: {}</li>", esc(d));
    }
    o.push_str("</ul><h3>Coverage timeline</h3>");
    let _ = write!(o, "<svg id=\"coverage-timeline\" width=\"{W}\" height=\"20\" role=\"img\">");
    for s in &r.timeline {
        let x0 = x(s.start, from, to);
        let w = (x(s.end, from, to) - x0).max(0.5);
        let _ = write!(
            o,
            "<rect class=\"{}\" x=\"{x0:.1}\" y=\"0\" width=\"{w:.1}\" height=\"20\" fill=\"{}\"><title>{} to {}: {}</title></rect>",
            if s.watched { "watched" } else { "gap" },
            if s.watched { "#3a9d5d" } else { "#d9534f" },
            rfc3339(s.start),
            rfc3339(s.end),
            if s.watched { format!("watched, {} events lost", s.events_lost) } else { "not watched".into() }
        );
    }
    o.push_str("</svg><table id=\"coverage\"><thead><tr><th>from</th><th>to</th><th>watched</th><th>events lost</th></tr></thead><tbody>");
    for s in &r.timeline {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339(s.start),
            rfc3339(s.end),
            if s.watched { "yes" } else { "no (gap)" },
            s.events_lost
        );
    }
    o.push_str("</tbody></table><h3>Blind spots</h3><ul id=\"blind-spots\">");
    for b in &r.blind_spots {
        let _ = write!(o, "<li>{}</li>", esc(b));
    }
    o.push_str("</ul>");
    let signoffs: Vec<&String> = r.credentials.iter().filter_map(|c| c.signoff.as_ref()).collect();
    if !signoffs.is_empty() {
        o.push_str("<h3>Sign-off</h3>");
        for s in signoffs {
            let _ = write!(o, "<p class=\"signoff\">{}</p>", esc(s));
        }
        if let Some(c) = &r.signoff_caveat {
            let _ = write!(o, "<p class=\"caveat\">{}</p>", esc(c));
        }
    }
    o.push_str("</body></html>\n");
    o
}
