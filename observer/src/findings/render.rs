//! The one place a [`Finding`] becomes a record (`nhi.finding`), with the
//! attribute names of the data contract (README, docs/design.md).
use std::time::SystemTime;

use super::model::{Finding, Workload};
use crate::model::{EVENT_FINDING, Record, Value, rfc3339};

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The workload attributes of a finding, by their record names.
pub fn workload_attributes(w: &Workload, a: &mut Vec<(&'static str, Value)>) {
    if let Some(v) = &w.executable {
        a.push(("process.executable.path", v.clone().into()));
    }
    if let Some(v) = w.user_id {
        a.push(("process.user.id", Value::Int(v)));
    }
    if w.interactive {
        a.push(("process.interactive", true.into()));
    }
    if let Some(v) = &w.systemd_unit {
        a.push(("nhi.systemd.unit", v.clone().into()));
    }
    if let Some(v) = &w.container_image {
        a.push(("container.image.name", v.clone().into()));
    }
    if let Some(v) = &w.container_id {
        a.push(("container.id", v.clone().into()));
    }
    if let Some(v) = &w.k8s_namespace {
        a.push(("k8s.namespace.name", v.clone().into()));
    }
    if let Some(v) = &w.k8s_service_account {
        a.push(("nhi.k8s.service_account", v.clone().into()));
    }
}

/// `nhi.finding` for a finding's current state, stamped `time`.
pub fn record(f: &Finding, host: &str, time: SystemTime) -> Record {
    let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    a.push(("host.name", host.into()));
    a.push(("nhi.finding.id", f.id.clone().into()));
    a.push(("nhi.finding.type", f.kind.as_str().into()));
    a.push(("nhi.finding.state", f.state.as_str().into()));
    a.push(("nhi.finding.severity", f.severity.as_str().into()));
    a.push(("nhi.finding.reason", f.reason.clone().into()));
    a.push(("nhi.id", f.nhi_id.clone().into()));
    a.push(("nhi.kind", f.nhi_kind.clone().into()));
    a.push(("nhi.finding.first_seen", rfc3339(f.first_seen).into()));
    a.push(("nhi.finding.last_seen", rfc3339(f.last_seen).into()));
    a.push(("nhi.finding.count", int(f.count)));
    a.push(("nhi.finding.record_ids", Value::StrList(f.record_ids.clone())));
    if let Some(w) = &f.workload {
        workload_attributes(w, &mut a);
    }
    if let Some(s) = &f.server_address {
        a.push(("server.address", s.clone().into()));
    }
    if let Some(p) = &f.file_path {
        a.push(("file.path", p.clone().into()));
    }
    if let Some(u) = &f.unused {
        a.push(("nhi.finding.evaluated_at", rfc3339(u.evaluated_at).into()));
        a.push(("nhi.finding.window_seconds", int(u.window.as_secs())));
        if let Some(t) = u.tracked_since {
            a.push(("nhi.coverage.tracked_since", rfc3339(t).into()));
        }
        a.push(("nhi.coverage.percent", percent(u.coverage_percent).into()));
        a.push(("nhi.coverage.events_lost", int(u.events_lost)));
    }
    Record { time, event_name: EVENT_FINDING, attributes: a }
}

/// A percentage as the contract's string: one decimal, `99.5`, `100.0`.
pub fn percent(p: f64) -> String {
    format!("{:.1}", (p * 10.0).floor() / 10.0)
}
