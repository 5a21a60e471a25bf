//! The one place a [`Finding`] becomes a record (`nhi.finding`), with the
//! attribute names of the data contract (README, docs/design.md).
use std::time::SystemTime;

use super::model::{Finding, Workload};
use crate::model::{
    Value, rfc3339,
    records::{self, FindingWorkload, UnusedEvidence},
    render::append,
};

fn workload(w: &Workload) -> FindingWorkload {
    FindingWorkload {
        executable_path: w.executable.clone(),
        user_id: w.user_id,
        interactive: w.interactive,
        systemd_unit: w.systemd_unit.clone(),
        container_image: w.container_image.clone(),
        container_id: w.container_id.clone(),
        namespace: w.k8s_namespace.clone(),
        service_account: w.k8s_service_account.clone(),
    }
}

/// The workload attributes of a finding, by their record names.
pub fn workload_attributes(w: &Workload, a: &mut Vec<(&'static str, Value)>) {
    append(&workload(w), a);
}

/// `nhi.finding` for a finding's current state, stamped `time`.
pub fn record(f: &Finding, host: &str, time: SystemTime) -> records::Finding {
    records::Finding {
        time,
        host_name: host.to_owned().into(),
        id: f.id.clone(),
        finding_type: f.kind.as_str(),
        state: f.state.as_str(),
        severity: f.severity.as_str(),
        reason: f.reason.clone(),
        nhi_id: f.nhi_id.clone(),
        nhi_kind: f.nhi_kind.clone(),
        first_seen: rfc3339(f.first_seen),
        last_seen: rfc3339(f.last_seen),
        count: f.count,
        record_ids: f.record_ids.clone(),
        workload: f.workload.as_ref().map(workload),
        server_address: f.server_address.clone(),
        file_path: f.file_path.clone(),
        unused: f.unused.as_ref().map(|u| UnusedEvidence {
            evaluated_at: rfc3339(u.evaluated_at),
            window_seconds: u.window.as_secs(),
            tracked_since: u.tracked_since.map(rfc3339),
            coverage_percent: percent(u.coverage_percent),
            events_lost: u.events_lost,
        }),
        record_id: None,
    }
}

/// A percentage as the contract's string: one decimal, `99.5`, `100.0`.
pub fn percent(p: f64) -> String {
    format!("{:.1}", (p * 10.0).floor() / 10.0)
}
