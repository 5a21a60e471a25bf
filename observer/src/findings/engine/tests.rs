//! The rules, without a kernel: facts built by hand, a fixed clock.
use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, SystemTime},
};

use super::*;
use crate::findings::lifecycle::reconcile;

const DAY: u64 = 86_400;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn settings() -> Settings {
    Settings {
        unused_window: Duration::from_secs(10 * DAY),
        learning_period: Duration::from_secs(DAY),
        expiry_warning: Duration::from_secs(5 * DAY),
    }
}

fn file(path: &str, first: u64) -> CredFile {
    CredFile {
        path: path.into(),
        first_seen: t(first),
        last_seen: t(first),
        present: true,
        at_rest: true,
        mode: Some(0o600),
        owner_uid: Some(1000),
        world_writable_dir: None,
        record_id: None,
    }
}

fn cred(id: &str, kind: &str, files: Vec<CredFile>) -> Credential {
    Credential { nhi_id: id.into(), kind: kind.into(), files, expires_at: None, record_ids: vec!["i-1".into()] }
}

fn workload(exe: &str, uid: i64) -> Workload {
    Workload { executable: Some(exe.into()), user_id: Some(uid), ..Workload::default() }
}

fn usage(id: &str, w: Workload, first: u64, last: u64) -> Usage {
    Usage {
        nhi_id: id.into(),
        kind: "aws.access_key".into(),
        source: "file".into(),
        workload: w,
        first_seen: t(first),
        last_seen: t(last),
        accesses: 3,
        connections: 0,
        destinations: Vec::new(),
    }
}

fn coverage_since(secs: u64) -> Coverage {
    Coverage {
        tracked_since: Some(t(secs)),
        watched: vec![Span { start: t(secs), end: t(100 * DAY), watched: true, events_lost: 2 }],
    }
}

fn of_type(e: &Evaluation, k: FindingType) -> Vec<&Finding> {
    e.findings.iter().filter(|f| f.kind == k).collect()
}

fn status(e: &Evaluation, id: &str) -> Status {
    e.statuses.iter().find(|(i, _)| i == id).map(|(_, s)| *s).unwrap()
}

#[test]
fn unused_needs_the_whole_window_and_carries_its_evidence() {
    let facts = Facts {
        credentials: vec![
            cred("OLD", "token", vec![file("/srv/old", 0)]),
            cred("NEW", "token", vec![file("/srv/new", 15 * DAY)]),
        ],
        coverage: coverage_since(0),
        ..Facts::default()
    };
    let now = t(20 * DAY);
    let e = evaluate(&facts, None, &settings(), now);
    assert_eq!(status(&e, "OLD"), Status::Unused);
    assert_eq!(status(&e, "NEW"), Status::TooNew, "known for 5 of the 10 days: too new, not unused");
    let unused = of_type(&e, FindingType::Unused);
    assert_eq!(unused.len(), 1);
    let u = unused[0].unused.as_ref().unwrap();
    assert_eq!(unused[0].nhi_id, "OLD");
    assert_eq!(u.window, Duration::from_secs(10 * DAY));
    assert_eq!(u.evaluated_at, now);
    assert_eq!(u.tracked_since, Some(t(0)));
    assert!((u.coverage_percent - 100.0).abs() < 1e-9);
    assert_eq!(u.events_lost, 2);
}

#[test]
fn a_gap_in_coverage_lowers_the_percentage() {
    let c = Coverage {
        tracked_since: Some(t(0)),
        watched: vec![
            Span { start: t(0), end: t(4 * DAY), watched: true, events_lost: 1 },
            Span { start: t(6 * DAY), end: t(10 * DAY), watched: true, events_lost: 0 },
        ],
    };
    let (p, lost) = c.of(t(0), t(10 * DAY));
    assert!((p - 80.0).abs() < 1e-9, "{p}");
    assert_eq!(lost, 1);
}

#[test]
fn a_later_use_resolves_unused() {
    let mut facts = Facts {
        credentials: vec![cred("K", "token", vec![file("/srv/k", 0)])],
        coverage: coverage_since(0),
        ..Facts::default()
    };
    let s = settings();
    let first = evaluate(&facts, None, &s, t(20 * DAY));
    let opened = reconcile(&HashMap::new(), first.findings, t(20 * DAY));
    assert_eq!(opened.emit.iter().filter(|f| f.kind == FindingType::Unused).count(), 1);
    let stored: HashMap<String, Finding> = opened.store.into_iter().map(|f| (f.id.clone(), f)).collect();
    // Evaluated again, nothing changed: nothing emitted.
    let again = reconcile(&stored, evaluate(&facts, None, &s, t(20 * DAY + 60)).findings, t(20 * DAY + 60));
    assert!(again.emit.is_empty(), "{:?}", again.emit);
    facts.usages.push(usage("K", workload("/usr/bin/app", 1000), 21 * DAY, 21 * DAY));
    let e = evaluate(&facts, None, &s, t(21 * DAY));
    assert_eq!(status(&e, "K"), Status::InUse);
    let after = reconcile(&stored, e.findings, t(21 * DAY));
    let resolved: Vec<_> = after.emit.iter().filter(|f| f.kind == FindingType::Unused).collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, State::Resolved);
}

#[test]
fn shadow_only_with_an_inventory() {
    let facts = Facts {
        credentials: vec![cred("DECLARED", "token", vec![file("/srv/a", 0)]), cred("SHADOW", "token", vec![file("/srv/b", 0)])],
        usages: vec![usage("SHADOW", workload("/usr/bin/app", 1000), 1, 19 * DAY)],
        coverage: coverage_since(0),
        ..Facts::default()
    };
    let without = evaluate(&facts, None, &settings(), t(20 * DAY));
    assert!(of_type(&without, FindingType::Shadow).is_empty());
    let inv = crate::inventory::Inventory::parse(Path::new("i"), "credentials:\n  - id: DECLARED\n  - id: GONE\n").unwrap();
    let with = evaluate(&facts, Some(&inv), &settings(), t(20 * DAY));
    let shadow = of_type(&with, FindingType::Shadow);
    assert_eq!(shadow.len(), 1);
    assert_eq!(shadow[0].nhi_id, "SHADOW");
    assert_eq!(shadow[0].severity, Severity::Medium, "in use");
    assert_eq!(status(&with, "SHADOW"), Status::Shadow);
    assert_eq!(status(&with, "DECLARED"), Status::Unused);
    // Declared, never seen on this host: judged since tracking began.
    assert_eq!(status(&with, "GONE"), Status::Unused);
    assert!(of_type(&with, FindingType::Unused).iter().any(|f| f.nhi_id == "GONE"));
}

#[test]
fn consumers_and_destinations_against_the_inventory() {
    let mut u = usage("K", workload("/usr/bin/python3", 1000), 0, 19 * DAY);
    u.destinations = vec![
        Destination { server_address: "api.example.com".into(), first_seen: t(1), last_seen: t(2), connections: 1 },
        Destination { server_address: "evil.test".into(), first_seen: t(1), last_seen: t(2), connections: 4 },
    ];
    let ok = usage("K", workload("/usr/bin/aws", 1000), 0, 19 * DAY);
    let facts = Facts { usages: vec![u, ok], coverage: coverage_since(0), ..Facts::default() };
    let inv = crate::inventory::Inventory::parse(
        Path::new("i"),
        "credentials:\n  - id: K\n    consumers: [{executable: /usr/bin/aws}]\n    destinations: ['*.example.com']\n",
    )
    .unwrap();
    let e = evaluate(&facts, Some(&inv), &settings(), t(20 * DAY));
    let c = of_type(&e, FindingType::UnexpectedConsumer);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].workload.as_ref().unwrap().executable.as_deref(), Some("/usr/bin/python3"));
    let d = of_type(&e, FindingType::UnexpectedDestination);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].server_address.as_deref(), Some("evil.test"));
    assert_eq!(d[0].count, 4);
    let r = of_type(&e, FindingType::Reuse);
    assert_eq!(r.len(), 1, "two programs use K: {r:?}");
    assert_eq!(r[0].subject, "workloads");
}

#[test]
fn without_inventory_new_consumers_after_the_learning_period_are_unexpected() {
    let mut late = usage("K", workload("/usr/bin/curl", 1000), 3 * DAY, 3 * DAY);
    late.destinations =
        vec![Destination { server_address: "late.test".into(), first_seen: t(3 * DAY), last_seen: t(3 * DAY), connections: 1 }];
    let mut early = usage("K", workload("/usr/bin/aws", 1000), 0, 2 * DAY);
    early.destinations =
        vec![Destination { server_address: "early.test".into(), first_seen: t(10), last_seen: t(10), connections: 1 }];
    let facts = Facts { usages: vec![early, late], coverage: coverage_since(0), ..Facts::default() };
    let e = evaluate(&facts, None, &settings(), t(4 * DAY));
    let c = of_type(&e, FindingType::UnexpectedConsumer);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].workload.as_ref().unwrap().executable.as_deref(), Some("/usr/bin/curl"));
    let d = of_type(&e, FindingType::UnexpectedDestination);
    assert_eq!(d.iter().map(|f| f.server_address.clone().unwrap()).collect::<Vec<_>>(), ["late.test"]);
}

#[test]
fn human_use_is_use_from_a_terminal() {
    let mut w = workload("/usr/bin/aws", 1000);
    w.interactive = true;
    let facts = Facts { usages: vec![usage("K", w, 0, 1)], coverage: coverage_since(0), ..Facts::default() };
    let e = evaluate(&facts, None, &settings(), t(2));
    let h = of_type(&e, FindingType::HumanUse);
    assert_eq!(h.len(), 1);
    assert!(h[0].workload.as_ref().unwrap().interactive);
}

#[test]
fn hygiene_checks() {
    let mut loose = file("/tmp/x/key", 0);
    loose.mode = Some(0o644);
    loose.owner_uid = Some(0);
    loose.world_writable_dir = Some("/tmp".into());
    let mut c = cred("AKIAEXAMPLE", "aws.access_key", vec![loose, file("/srv/copy", 0)]);
    c.expires_at = Some(t(DAY));
    let mut cert = cred("SHA256:cert", "x509.certificate", vec![file("/srv/cert.pem", 0)]);
    cert.expires_at = Some(t(3 * DAY));
    let facts = Facts {
        credentials: vec![c, cert],
        usages: vec![usage("AKIAEXAMPLE", workload("/usr/bin/aws", 1000), 0, 1)],
        coverage: coverage_since(0),
        ..Facts::default()
    };
    let e = evaluate(&facts, None, &settings(), t(2 * DAY));
    let subjects: Vec<(&str, &str, Severity)> =
        of_type(&e, FindingType::Hygiene).iter().map(|f| (f.nhi_id.as_str(), f.subject.as_str(), f.severity)).collect();
    for want in [
        ("AKIAEXAMPLE", "mode:/tmp/x/key", Severity::High),
        ("AKIAEXAMPLE", "owner:/tmp/x/key", Severity::Low),
        ("AKIAEXAMPLE", "world_writable_dir:/tmp/x/key", Severity::High),
        ("AKIAEXAMPLE", "long_lived_key", Severity::Low),
        ("AKIAEXAMPLE", "expired", Severity::Medium),
        ("SHA256:cert", "expiring", Severity::Low),
    ] {
        assert!(subjects.contains(&want), "{want:?} not in {subjects:?}");
    }
    assert!(!subjects.iter().any(|s| s.1 == "mode:/srv/copy"), "0600 is fine");
    assert_eq!(subjects.iter().filter(|s| s.1.starts_with("owner:")).count(), 1, "/srv/copy is owned by the consumer");
    let reuse = of_type(&e, FindingType::Reuse);
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].subject, "files");
}

#[test]
fn created_names_the_creator_and_is_not_repeated() {
    let facts = Facts {
        credentials: vec![cred("K", "token", vec![file("/srv/k", 0)])],
        creations: vec![Creation {
            path: "/srv/k".into(),
            time: t(0),
            record_id: "i-7".into(),
            executable: Some("/usr/bin/tee".into()),
            user_id: Some(1000),
            tty: Some("pts/3".into()),
            count: 1,
        }],
        coverage: coverage_since(0),
        ..Facts::default()
    };
    let e = evaluate(&facts, None, &settings(), t(1));
    let c = of_type(&e, FindingType::Created);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].record_ids, ["i-7"]);
    assert!(c[0].reason.contains("/usr/bin/tee (uid 1000) from terminal pts/3"), "{}", c[0].reason);
    let first = reconcile(&HashMap::new(), e.findings.clone(), t(1));
    let stored: HashMap<String, Finding> = first.store.into_iter().map(|f| (f.id.clone(), f)).collect();
    assert!(reconcile(&stored, e.findings, t(2)).emit.is_empty());
}

#[test]
fn finding_ids_are_stable_and_distinct() {
    let a = finding_id(FindingType::Unused, "K", "");
    assert_eq!(a, finding_id(FindingType::Unused, "K", ""));
    assert_ne!(a, finding_id(FindingType::Shadow, "K", ""));
    assert_ne!(a, finding_id(FindingType::Unused, "K2", ""));
    assert_eq!(a.len(), 24);
}
