//! The report as one JSON document; keys are the records' attribute names.
use serde_json::{Map, Value, json};

use super::Report;
use crate::{
    model::{Value as Attr, rfc3339},
    findings::render,
};

fn t(v: Option<std::time::SystemTime>) -> Value {
    v.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

fn attrs(list: Vec<(&'static str, Attr)>) -> Value {
    let mut m = Map::new();
    for (k, v) in list {
        m.insert(k.to_owned(), serde_json::to_value(&v).unwrap_or(Value::Null));
    }
    Value::Object(m)
}

pub fn json(r: &Report) -> String {
    let credentials: Vec<Value> = r
        .credentials
        .iter()
        .map(|c| {
            let consumers: Vec<Value> = c
                .consumers
                .iter()
                .map(|w| {
                    let mut a = Vec::new();
                    render::workload_attributes(w, &mut a);
                    attrs(a)
                })
                .collect();
            json!({
                "nhi.id": c.nhi_id,
                "nhi.kind": c.kind,
                "nhi.credential.status": c.status.as_str(),
                "nhi.inventory.declared": c.declared,
                "nhi.inventory.owner": c.owner,
                "nhi.inventory.purpose": c.purpose,
                "file.path": c.paths,
                "nhi.created_by": c.created_by,
                "consumers": consumers,
                "nhi.usage.destinations": c.destinations,
                "nhi.usage.first_seen": t(c.first_seen),
                "nhi.usage.last_seen": t(c.last_seen),
                "nhi.usage.last_used": t(c.last_used),
                "nhi.usage.count": c.accesses,
                "nhi.usage.connections": c.connections,
                "nhi.finding.id": c.findings,
                "nhi.signoff": c.signoff,
            })
        })
        .collect();
    let findings: Vec<Value> = r
        .findings
        .iter()
        .map(|f| serde_json::to_value(crate::model::render(&render::record(f, &r.host, r.generated_at))).unwrap_or(Value::Null))
        .collect();
    let timeline: Vec<Value> = r
        .timeline
        .iter()
        .map(|s| {
            json!({
                "nhi.coverage.start": rfc3339(s.start),
                "nhi.coverage.end": rfc3339(s.end),
                "nhi.coverage.watched": s.watched,
                "nhi.coverage.events_lost": s.events_lost,
            })
        })
        .collect();
    let doc = json!({
        "host.name": r.host,
        "nhi.report.generated_at": rfc3339(r.generated_at),
        "nhi.finding.window_seconds": r.window.as_secs(),
        "nhi.report.window_start": rfc3339(r.window_start),
        "nhi.coverage.tracked_since": t(r.tracked_since),
        "nhi.coverage.percent": render::percent(r.coverage_percent),
        "nhi.coverage.events_lost": r.events_lost,
        "nhi.coverage.events_lost_by_kind": r.lost_by_kind,
        "nhi.inventory.path": r.inventory,
        "coverage": timeline,
        "blind_spots": r.blind_spots,
        "nhi.signoff.caveat": r.signoff_caveat,
        "credentials": credentials,
        "findings": findings,
        "nhi.inventory.not_found": r.declared_not_found,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
