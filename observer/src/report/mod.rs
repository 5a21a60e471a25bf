//! `nhi-observer report`: per credential, what was seen and what it
//! means, and the evidence a reviewer signs before revoking one.
//!
//! Input: the state directory's database, opened read-only (the agent may
//! be running: no lock it waits for, nothing written), an optional
//! inventory, the window, the findings settings. Output: one [`Report`],
//! rendered as JSON (keys are the records' attribute names), Markdown or
//! one self-contained HTML file (inline CSS and SVG, no external asset).
//!
//! Invariants: judged by the same engine as the agent's findings
//! ([`crate::findings::evaluate`]), so report and records agree; the
//! database holds no secret and neither does the report; every text from
//! the database is escaped by the renderer that prints it.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, SystemTime},
};

use crate::{
    findings::{self, Coverage, Facts, Finding, FindingType, Settings, Span, Status, Workload},
    inventory::Inventory,
    store::{StoreError, evidence},
};

mod html;
mod json;
mod markdown;

pub use html::html;
pub use json::json;
pub use markdown::markdown;

/// One credential as the report shows it.
#[derive(Debug, Clone)]
pub struct CredentialReport {
    pub nhi_id: String,
    pub kind: String,
    pub status: Status,
    pub declared: bool,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub paths: Vec<String>,
    /// `executable (uid U) from terminal T at time`, per created file.
    pub created_by: Vec<String>,
    pub consumers: Vec<Workload>,
    pub destinations: Vec<String>,
    pub first_seen: Option<SystemTime>,
    pub last_seen: Option<SystemTime>,
    pub last_used: Option<SystemTime>,
    pub accesses: u64,
    pub connections: u64,
    /// Use intervals (first to last seen of each usage), for the timeline.
    pub uses: Vec<(SystemTime, SystemTime)>,
    pub findings: Vec<String>,
    /// For unused credentials: the statement a reviewer signs.
    pub signoff: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub host: String,
    pub generated_at: SystemTime,
    pub window: Duration,
    pub window_start: SystemTime,
    pub tracked_since: Option<SystemTime>,
    pub inventory: Option<String>,
    pub coverage_percent: f64,
    pub events_lost: u64,
    pub lost_by_kind: BTreeMap<String, u64>,
    /// Watched spans and gaps within the window, in time order.
    pub timeline: Vec<Span>,
    pub blind_spots: Vec<String>,
    /// Said beside the sign-off statements when the window was not fully
    /// watched.
    pub signoff_caveat: Option<String>,
    pub credentials: Vec<CredentialReport>,
    pub findings: Vec<Finding>,
    pub declared_not_found: Vec<String>,
}

/// Spans of `[from, to]`: watched ones from the coverage, gaps between.
pub fn timeline(c: &Coverage, from: SystemTime, to: SystemTime) -> Vec<Span> {
    let mut out = Vec::new();
    let mut at = from;
    for s in &c.watched {
        if s.end <= from || s.start >= to {
            continue;
        }
        let start = s.start.max(from);
        if start > at {
            out.push(Span { start: at, end: start, watched: false, events_lost: 0 });
        }
        let end = s.end.min(to);
        out.push(Span { start, end, watched: true, events_lost: s.events_lost });
        at = at.max(end);
    }
    if at < to {
        out.push(Span { start: at, end: to, watched: false, events_lost: 0 });
    }
    out
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Builds the report from facts (the pure part, tested without a
/// database).
pub fn build(
    facts: &Facts,
    runs_sensors: Option<&str>,
    lost_by_kind: BTreeMap<String, u64>,
    inventory: Option<&Inventory>,
    settings: &Settings,
    host: &str,
    now: SystemTime,
) -> Report {
    let eval = findings::evaluate(facts, inventory, settings, now);
    let window_start = now.checked_sub(settings.unused_window).unwrap_or(SystemTime::UNIX_EPOCH);
    let (coverage_percent, events_lost) = facts.coverage.of(window_start, now);
    let timeline = timeline(&facts.coverage, window_start, now);
    let mut credentials = Vec::new();
    for (id, status) in &eval.statuses {
        let cred = facts.credentials.iter().find(|c| &c.nhi_id == id);
        let usages: Vec<_> = facts.usages.iter().filter(|u| &u.nhi_id == id).collect();
        let paths: Vec<String> = cred.map(|c| c.files.iter().map(|f| f.path.clone()).collect()).unwrap_or_default();
        let kind = cred.map(|c| c.kind.clone()).or_else(|| usages.first().map(|u| u.kind.clone()));
        let entry = inventory.and_then(|inv| inv.entry_for(id, kind.as_deref().unwrap_or(""), &paths));
        let kind = kind.or_else(|| entry.and_then(|e| e.kind.clone())).unwrap_or_else(|| "unknown".into());
        let created_by = facts
            .creations
            .iter()
            .filter(|c| paths.contains(&c.path))
            .map(|c| {
                let by = Workload { executable: c.executable.clone(), user_id: c.user_id, ..Workload::default() };
                let tty = c.tty.as_ref().map(|t| format!(" from terminal {t}")).unwrap_or_default();
                format!("{}: {}{tty} at {}", c.path, by.label(), crate::model::rfc3339(c.time))
            })
            .collect();
        let consumers: BTreeSet<Workload> = usages.iter().map(|u| u.workload.clone()).collect();
        let destinations: BTreeSet<String> =
            usages.iter().flat_map(|u| u.destinations.iter().map(|d| d.server_address.clone())).collect();
        let files = cred.into_iter().flat_map(|c| c.files.iter());
        let first_seen = files.clone().map(|f| f.first_seen).chain(usages.iter().map(|u| u.first_seen)).min();
        let last_seen = files.map(|f| f.last_seen).chain(usages.iter().map(|u| u.last_seen)).max();
        let last_used = usages.iter().map(|u| u.last_seen).max();
        let findings: Vec<String> = eval.findings.iter().filter(|f| &f.nhi_id == id).map(|f| f.id.clone()).collect();
        let unused = *status == Status::Unused
            || eval.findings.iter().any(|f| &f.nhi_id == id && f.kind == FindingType::Unused);
        let signoff = unused.then(|| {
            format!(
                "No use of {id} observed on host {host} between {} and {}; coverage {}%, {events_lost} events lost.",
                crate::model::rfc3339(window_start),
                crate::model::rfc3339(now),
                findings::render::percent(coverage_percent),
            )
        });
        credentials.push(CredentialReport {
            nhi_id: id.clone(),
            kind,
            status: *status,
            declared: entry.is_some(),
            owner: entry.and_then(|e| e.owner.clone()),
            purpose: entry.and_then(|e| e.purpose.clone()),
            paths,
            created_by,
            consumers: consumers.into_iter().collect(),
            destinations: destinations.into_iter().collect(),
            first_seen,
            last_seen,
            last_used,
            accesses: usages.iter().map(|u| u.accesses).sum(),
            connections: usages.iter().map(|u| u.connections).sum(),
            uses: usages.iter().map(|u| (u.first_seen, u.last_seen)).collect(),
            findings,
            signoff,
        });
    }
    let mut blind_spots = Vec::new();
    match runs_sensors {
        Some(s) if !s.split(',').any(|x| x == "network") => blind_spots.push(
            "no network sensor in the last run (cgroup v2 hooks did not attach): destinations were not seen".to_owned(),
        ),
        None => blind_spots.push("the agent never ran on this state directory: nothing was watched".to_owned()),
        _ => {}
    }
    let gaps: Duration = timeline.iter().filter(|s| !s.watched).map(|s| s.end.duration_since(s.start).unwrap_or_default()).sum();
    if !gaps.is_zero() {
        blind_spots.push(format!("the agent was not watching for {} of the window (gaps in the coverage timeline)", human(gaps)));
    }
    if events_lost > 0 {
        blind_spots.push(format!("{events_lost} events were lost in the window (kernel ring buffer full)"));
    }
    blind_spots.push(
        "credentials used only from memory (read before the agent started and kept by a process) show no new access"
            .to_owned(),
    );
    blind_spots.push("environment-variable credentials are seen when a process starts, not each time it uses them".to_owned());
    let signoff_caveat = (coverage_percent < 100.0).then(|| {
        format!(
            "The window was watched {}% of the time: weigh the gaps in the coverage timeline before signing.",
            findings::render::percent(coverage_percent)
        )
    });
    Report {
        signoff_caveat,
        host: host.to_owned(),
        generated_at: now,
        window: settings.unused_window,
        window_start,
        tracked_since: facts.coverage.tracked_since,
        inventory: inventory.map(|i| i.path.display().to_string()),
        coverage_percent,
        events_lost,
        lost_by_kind,
        timeline,
        blind_spots,
        credentials,
        findings: eval.findings,
        declared_not_found: eval.declared_not_found,
    }
}

/// Reads the state directory (read-only) and builds the report.
pub fn load(
    state_dir: &Path,
    inventory: Option<&Inventory>,
    settings: &Settings,
    now: SystemTime,
) -> Result<Report, StoreError> {
    let conn = evidence::open_read_only(state_dir)?;
    let facts = evidence::load_facts(&conn)?;
    let runs = evidence::runs(&conn)?;
    let window_start = now.checked_sub(settings.unused_window).unwrap_or(SystemTime::UNIX_EPOCH);
    let lost = evidence::drops_by_kind(&conn, window_start, now)?;
    let host: String = conn
        .query_row("SELECT host FROM usage ORDER BY last_seen_ns DESC LIMIT 1", [], |r| r.get(0))
        .ok()
        .unwrap_or_else(|| nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default());
    Ok(build(&facts, runs.last().map(|r| r.3.as_str()), lost, inventory, settings, &host, now))
}

#[cfg(test)]
mod tests;
