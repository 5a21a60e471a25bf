//! The rules: one pass over the facts per evaluation.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use super::model::*;
use crate::inventory::{Entry, Inventory};

/// Everything the engine knows of one credential during an evaluation.
struct View<'a> {
    nhi_id: String,
    kind: String,
    cred: Option<&'a Credential>,
    usages: Vec<&'a Usage>,
    entry: Option<&'a Entry>,
}

impl View<'_> {
    fn paths(&self) -> Vec<String> {
        self.cred.map(|c| c.files.iter().map(|f| f.path.clone()).collect()).unwrap_or_default()
    }

    fn present_files(&self) -> impl Iterator<Item = &CredFile> {
        self.cred.into_iter().flat_map(|c| c.files.iter()).filter(|f| f.present)
    }

    fn record_ids(&self) -> Vec<String> {
        self.cred.map(|c| c.record_ids.clone()).unwrap_or_default()
    }

    fn known_since(&self) -> Option<SystemTime> {
        let files = self.cred.into_iter().flat_map(|c| c.files.iter()).map(|f| f.first_seen);
        files.chain(self.usages.iter().map(|u| u.first_seen)).min()
    }

    fn first_use(&self) -> Option<SystemTime> {
        self.usages.iter().map(|u| u.first_seen).min()
    }

    fn last_use(&self) -> Option<SystemTime> {
        self.usages.iter().map(|u| u.last_seen).max()
    }

    fn last_seen(&self) -> Option<SystemTime> {
        let files = self.cred.into_iter().flat_map(|c| c.files.iter()).map(|f| f.last_seen);
        files.chain(self.usages.iter().map(|u| u.last_seen)).max()
    }

    fn accesses(&self) -> u64 {
        self.usages.iter().map(|u| u.accesses).sum()
    }
}

/// A workload as a subject string: what names it across restarts.
fn workload_subject(w: &Workload) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        o(&w.executable),
        w.user_id.map(|u| u.to_string()).unwrap_or_default(),
        o(&w.systemd_unit),
        o(&w.container_image),
        o(&w.container_id),
        o(&w.k8s_namespace),
        o(&w.k8s_service_account)
    )
}

/// The workload without user and terminal: "the same program in the same
/// place" (reuse counts these).
fn program(w: &Workload) -> Workload {
    Workload { user_id: None, interactive: false, ..w.clone() }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

struct Builder<'v, 'a> {
    view: &'v View<'a>,
    out: &'v mut Vec<Finding>,
}

impl Builder<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: FindingType,
        subject: String,
        severity: Severity,
        reason: String,
        (first_seen, last_seen): (SystemTime, SystemTime),
        count: u64,
        extra: impl FnOnce(&mut Finding),
    ) {
        let mut f = Finding {
            id: finding_id(kind, &self.view.nhi_id, &subject),
            kind,
            state: State::Open,
            severity,
            reason,
            nhi_id: self.view.nhi_id.clone(),
            nhi_kind: self.view.kind.clone(),
            subject,
            first_seen,
            last_seen,
            count,
            record_ids: self.view.record_ids(),
            workload: None,
            server_address: None,
            file_path: None,
            unused: None,
        };
        extra(&mut f);
        self.out.push(f);
    }
}

/// Judges the facts at `now`. Pure: the same facts, inventory, settings
/// and time give the same answer.
pub fn evaluate(facts: &Facts, inventory: Option<&Inventory>, s: &Settings, now: SystemTime) -> Evaluation {
    let mut views: BTreeMap<String, View<'_>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for c in &facts.credentials {
        order.push(c.nhi_id.clone());
        views.insert(
            c.nhi_id.clone(),
            View { nhi_id: c.nhi_id.clone(), kind: c.kind.clone(), cred: Some(c), usages: Vec::new(), entry: None },
        );
    }
    for u in &facts.usages {
        let v = views.entry(u.nhi_id.clone()).or_insert_with(|| {
            order.push(u.nhi_id.clone());
            View { nhi_id: u.nhi_id.clone(), kind: u.kind.clone(), cred: None, usages: Vec::new(), entry: None }
        });
        v.usages.push(u);
    }
    if let Some(inv) = inventory {
        for v in views.values_mut() {
            v.entry = inv.entry_for(&v.nhi_id, &v.kind, &v.paths());
        }
        // Declared by id, never seen here: judged as present since
        // tracking began (it could have been used since then).
        for e in &inv.entries {
            if let Some(id) = &e.id
                && !views.contains_key(id)
            {
                order.push(id.clone());
                views.insert(
                    id.clone(),
                    View {
                        nhi_id: id.clone(),
                        kind: e.kind.clone().unwrap_or_else(|| "unknown".into()),
                        cred: None,
                        usages: Vec::new(),
                        entry: Some(e),
                    },
                );
            }
        }
    }
    let window_start = now.checked_sub(s.unused_window).unwrap_or(SystemTime::UNIX_EPOCH);
    let tracked_since = facts.coverage.tracked_since;
    let mut eval = Evaluation::default();
    let mut out = Vec::new();
    for id in &order {
        let Some(v) = views.get(id) else { continue };
        let status = judge(v, facts, inventory.is_some(), s, now, window_start, tracked_since, &mut out);
        eval.statuses.push((id.clone(), status));
    }
    for f in creations(facts, &views) {
        out.push(f);
    }
    if let Some(inv) = inventory {
        for e in inv.entries.iter().filter(|e| e.id.is_none()) {
            if !views.values().any(|v| v.entry.is_some_and(|x| std::ptr::eq(x, e))) {
                eval.declared_not_found.push(e.name());
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    eval.findings = out;
    eval
}

#[allow(clippy::too_many_arguments)]
fn judge(
    v: &View<'_>,
    facts: &Facts,
    with_inventory: bool,
    s: &Settings,
    now: SystemTime,
    window_start: SystemTime,
    tracked_since: Option<SystemTime>,
    out: &mut Vec<Finding>,
) -> Status {
    let mut b = Builder { view: v, out };
    let known_since = v.known_since().or(if v.entry.is_some() { tracked_since } else { None });
    let last_use = v.last_use();
    let seen = (known_since.unwrap_or(now), v.last_seen().unwrap_or(now));
    let use_status = match (last_use, known_since) {
        (Some(t), _) if t >= window_start => Status::InUse,
        (_, Some(k)) if k <= window_start => Status::Unused,
        _ => Status::TooNew,
    };
    let shadow = with_inventory && v.entry.is_none();
    if shadow {
        let used = if v.usages.is_empty() { "present at rest" } else { "in use" };
        b.push(
            FindingType::Shadow,
            String::new(),
            if v.usages.is_empty() { Severity::Low } else { Severity::Medium },
            format!("{used}, not declared in the inventory"),
            seen,
            v.accesses(),
            |f| f.file_path = v.paths().into_iter().next(),
        );
    }
    let present = v.present_files().next().is_some();
    if use_status == Status::Unused && (present || v.entry.is_some()) {
        let (coverage_percent, events_lost) = facts.coverage.of(window_start, now);
        let reason = match last_use {
            Some(_) => format!("no use in the last {}", human(s.unused_window)),
            None => format!("never used; no use in the last {}", human(s.unused_window)),
        };
        b.push(FindingType::Unused, String::new(), Severity::Low, reason, seen, 0, |f| {
            f.file_path = v.present_files().next().map(|f| f.path.clone());
            f.unused = Some(UnusedEvidence {
                evaluated_at: now,
                window: s.unused_window,
                tracked_since,
                coverage_percent,
                events_lost,
            });
        });
    }
    consumers(&mut b, v, s);
    destinations(&mut b, v, s);
    reuse(&mut b, v);
    hygiene(&mut b, v, s, now);
    if shadow { Status::Shadow } else { use_status }
}

/// Usages merged by workload (a workload may use a credential from a file
/// and from its environment: one subject).
fn by_workload<'a>(v: &View<'a>) -> BTreeMap<String, (Workload, SystemTime, SystemTime, u64)> {
    let mut m: BTreeMap<String, (Workload, SystemTime, SystemTime, u64)> = BTreeMap::new();
    for u in &v.usages {
        let e = m.entry(workload_subject(&u.workload)).or_insert((u.workload.clone(), u.first_seen, u.last_seen, 0));
        e.0.interactive |= u.workload.interactive;
        e.1 = e.1.min(u.first_seen);
        e.2 = e.2.max(u.last_seen);
        e.3 += u.accesses;
    }
    m
}

fn consumers(b: &mut Builder<'_, '_>, v: &View<'_>, s: &Settings) {
    let declared = v.entry.filter(|e| !e.consumers.is_empty());
    let learned_until = v.first_use().map(|t| t + s.learning_period);
    for (subject, (w, first, last, count)) in by_workload(v) {
        let unexpected = match declared {
            Some(e) => !e.expects_consumer(&w),
            None => learned_until.is_some_and(|t| first > t),
        };
        if unexpected {
            let reason = match declared {
                Some(_) => format!("used by {}, not a consumer the inventory lists", w.label()),
                None => format!("used by {}, first seen after the {} learning period", w.label(), human(s.learning_period)),
            };
            let w2 = w.clone();
            b.push(FindingType::UnexpectedConsumer, subject.clone(), Severity::Medium, reason, (first, last), count, |f| {
                f.workload = Some(w2)
            });
        }
        if w.interactive {
            let reason = format!("used from an interactive session (controlling terminal) by {}", w.label());
            b.push(FindingType::HumanUse, subject, Severity::Medium, reason, (first, last), count, |f| {
                f.workload = Some(w)
            });
        }
    }
}

fn destinations(b: &mut Builder<'_, '_>, v: &View<'_>, s: &Settings) {
    let declared = v.entry.filter(|e| !e.destinations.is_empty());
    let learned_until = v.first_use().map(|t| t + s.learning_period);
    let mut m: BTreeMap<&str, (SystemTime, SystemTime, u64, Workload)> = BTreeMap::new();
    for u in &v.usages {
        for d in &u.destinations {
            let e = m.entry(d.server_address.as_str()).or_insert((d.first_seen, d.last_seen, 0, u.workload.clone()));
            e.0 = e.0.min(d.first_seen);
            e.1 = e.1.max(d.last_seen);
            e.2 += d.connections;
        }
    }
    for (server, (first, last, count, w)) in m {
        let unexpected = match declared {
            Some(e) => !e.expects_destination(server),
            None => learned_until.is_some_and(|t| first > t),
        };
        if !unexpected {
            continue;
        }
        let reason = match declared {
            Some(_) => format!("used towards {server}, not a destination the inventory lists"),
            None => format!("used towards {server}, first seen after the {} learning period", human(s.learning_period)),
        };
        b.push(FindingType::UnexpectedDestination, server.to_owned(), Severity::Medium, reason, (first, last), count, |f| {
            f.server_address = Some(server.to_owned());
            f.workload = Some(w);
        });
    }
}

fn reuse(b: &mut Builder<'_, '_>, v: &View<'_>) {
    let files: BTreeSet<&str> = v.present_files().map(|f| f.path.as_str()).collect();
    let seen = |b: &Builder<'_, '_>| (b.view.known_since().unwrap_or(SystemTime::UNIX_EPOCH), b.view.last_seen().unwrap_or(SystemTime::UNIX_EPOCH));
    if files.len() > 1 {
        let first = files.iter().next().map(|p| (*p).to_owned());
        let reason = format!("stored in {} files: {}", files.len(), files.iter().copied().collect::<Vec<_>>().join(", "));
        let at = seen(b);
        b.push(FindingType::Reuse, "files".into(), Severity::Low, reason, at, files.len() as u64, |f| f.file_path = first);
    }
    let programs: BTreeSet<Workload> = v.usages.iter().map(|u| program(&u.workload)).collect();
    if programs.len() > 1 {
        let names: Vec<String> = programs.iter().map(Workload::label).collect();
        let reason = format!("used by {} distinct workloads: {}", programs.len(), names.join(", "));
        let at = seen(b);
        b.push(FindingType::Reuse, "workloads".into(), Severity::Low, reason, at, programs.len() as u64, |_| {});
    }
}

fn hygiene(b: &mut Builder<'_, '_>, v: &View<'_>, s: &Settings, now: SystemTime) {
    let seen = (v.known_since().unwrap_or(now), v.last_seen().unwrap_or(now));
    let consumer_uids: BTreeSet<i64> =
        v.usages.iter().filter(|u| u.source == "file").filter_map(|u| u.workload.user_id).collect();
    let files: Vec<CredFile> = v.present_files().cloned().collect();
    for f in &files {
        let path = Some(f.path.clone());
        if let Some(mode) = f.mode
            && mode & 0o044 != 0
        {
            let who = if mode & 0o004 != 0 { "all users" } else { "its group" };
            let sev = if mode & 0o004 != 0 { Severity::High } else { Severity::Medium };
            let reason = format!("{} is readable by {who} (mode {mode:04o})", f.path);
            b.push(FindingType::Hygiene, format!("mode:{}", f.path), sev, reason, seen, 1, |x| x.file_path = path.clone());
        }
        if let Some(owner) = f.owner_uid {
            let others: Vec<String> =
                consumer_uids.iter().filter(|u| **u != i64::from(owner)).map(|u| u.to_string()).collect();
            if !others.is_empty() {
                let reason =
                    format!("{} is owned by uid {owner} but used by uid {}", f.path, others.join(", "));
                b.push(FindingType::Hygiene, format!("owner:{}", f.path), Severity::Low, reason, seen, 1, |x| {
                    x.file_path = path.clone()
                });
            }
        }
        if let Some(dir) = &f.world_writable_dir {
            let reason = format!("{} is under the world-writable directory {dir}", f.path);
            b.push(FindingType::Hygiene, format!("world_writable_dir:{}", f.path), Severity::High, reason, seen, 1, |x| {
                x.file_path = path.clone()
            });
        }
    }
    if v.kind == "aws.access_key" && v.nhi_id.starts_with("AKIA") {
        b.push(
            FindingType::Hygiene,
            "long_lived_key".into(),
            Severity::Low,
            "long-lived AWS access key (AKIA...): temporary credentials (roles, SSO) are the norm".into(),
            seen,
            1,
            |x| x.file_path = files.first().map(|f| f.path.clone()),
        );
    }
    let expiry = v
        .cred
        .and_then(|c| c.expires_at)
        .or_else(|| v.entry.and_then(|e| e.expires.as_deref()).and_then(crate::inventory::parse_expiry));
    if let Some(t) = expiry {
        let at = crate::model::rfc3339(t);
        if t <= now {
            b.push(FindingType::Hygiene, "expired".into(), Severity::Medium, format!("expired at {at}"), seen, 1, |_| {});
        } else if t <= now + s.expiry_warning {
            let reason = format!("expires at {at}, within {}", human(s.expiry_warning));
            b.push(FindingType::Hygiene, "expiring".into(), Severity::Low, reason, seen, 1, |_| {});
        }
    }
}

/// `created`: per credential file with a known creation, who created it.
fn creations(facts: &Facts, views: &BTreeMap<String, View<'_>>) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &facts.creations {
        for v in views.values() {
            if !v.cred.is_some_and(|cr| cr.files.iter().any(|f| f.path == c.path)) {
                continue;
            }
            let by = Workload {
                executable: c.executable.clone(),
                user_id: c.user_id,
                interactive: c.tty.is_some(),
                ..Workload::default()
            };
            let from = match &c.tty {
                Some(t) => format!("from terminal {t}"),
                None => "not from a terminal".into(),
            };
            let reason = format!("{} created by {} {from}", c.path, by.label());
            let mut b = Builder { view: v, out: &mut out };
            let rec = c.record_id.clone();
            let path = c.path.clone();
            b.push(FindingType::Created, c.path.clone(), Severity::Info, reason, (c.time, c.time), c.count, |f| {
                f.record_ids = vec![rec];
                f.file_path = Some(path);
                f.workload = Some(by);
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
