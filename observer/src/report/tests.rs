//! The report from hand-built facts: statuses, sign-off, escaping.
use std::time::{Duration, SystemTime};

use super::*;
use crate::findings::{CredFile, Credential, Span, Usage};

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn facts() -> Facts {
    let file = |p: &str| CredFile {
        path: p.into(),
        first_seen: t(0),
        last_seen: t(0),
        present: true,
        at_rest: true,
        mode: Some(0o600),
        owner_uid: Some(0),
        world_writable_dir: None,
        record_id: None,
    };
    Facts {
        credentials: vec![
            Credential {
                nhi_id: "<script>alert(1)</script>".into(),
                kind: "token".into(),
                files: vec![file("/srv/a&b")],
                expires_at: None,
                record_ids: vec![],
            },
            Credential { nhi_id: "USED".into(), kind: "token".into(), files: vec![file("/srv/u")], expires_at: None, record_ids: vec![] },
        ],
        usages: vec![Usage {
            nhi_id: "USED".into(),
            kind: "token".into(),
            source: "file".into(),
            workload: Workload { executable: Some("/usr/bin/app".into()), user_id: Some(0), ..Workload::default() },
            first_seen: t(50),
            last_seen: t(90),
            accesses: 4,
            connections: 0,
            destinations: vec![],
        }],
        creations: vec![],
        coverage: Coverage {
            tracked_since: Some(t(0)),
            watched: vec![
                Span { start: t(0), end: t(40), watched: true, events_lost: 0 },
                Span { start: t(60), end: t(100), watched: true, events_lost: 3 },
            ],
        },
    }
}

fn report() -> Report {
    let s = Settings { unused_window: Duration::from_secs(100), ..Settings::default() };
    build(&facts(), Some("file,process"), BTreeMap::from([("file".into(), 3)]), None, &s, "host-1", t(100))
}

#[test]
fn statuses_signoff_and_gaps() {
    let r = report();
    let st: Vec<(&str, Status)> = r.credentials.iter().map(|c| (c.nhi_id.as_str(), c.status)).collect();
    assert_eq!(st, [("<script>alert(1)</script>", Status::Unused), ("USED", Status::InUse)]);
    let signoff = r.credentials[0].signoff.as_deref().unwrap();
    assert!(signoff.starts_with("No use of <script>alert(1)</script> observed on host host-1 between "), "{signoff}");
    assert!(signoff.ends_with("coverage 80.0%, 3 events lost."), "{signoff}");
    assert!(r.credentials[1].signoff.is_none());
    assert!(r.signoff_caveat.as_deref().is_some_and(|c| c.contains("80.0%")), "gaps: the sign-off says so");
    assert_eq!(r.timeline.iter().filter(|s| !s.watched).count(), 1, "{:?}", r.timeline);
    assert!(r.blind_spots.iter().any(|b| b.contains("no network sensor")));
    assert!(r.blind_spots.iter().any(|b| b.contains("not watching for 20s")), "{:?}", r.blind_spots);
}

#[test]
fn html_escapes_everything_from_the_database() {
    let h = html(&report());
    assert!(!h.contains("<script>"), "unescaped text in the HTML");
    assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(h.contains("/srv/a&amp;b"));
    assert!(!h.contains("src=\"http") && !h.contains("href=\"http"), "no external assets");
    assert_eq!(h.matches("<tr class=\"credential\"").count(), 2);
    assert!(h.contains("id=\"coverage-timeline\""));
}

#[test]
fn json_uses_attribute_names_and_markdown_escapes_cells() {
    let j: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
    let c = &j["credentials"][1];
    assert_eq!(c["nhi.id"], "USED");
    assert_eq!(c["nhi.credential.status"], "in_use");
    assert_eq!(c["consumers"][0]["process.executable.path"], "/usr/bin/app");
    assert_eq!(j["nhi.coverage.percent"], "80.0");
    assert_eq!(j["nhi.coverage.events_lost_by_kind"]["file"], 3);
    assert!(j["findings"].as_array().unwrap().iter().any(|f| f["nhi.finding.type"] == "unused"));
    let m = markdown(&report());
    assert!(m.contains("\\<script\\>alert(1)\\</script\\>"), "{m}");
    assert!(m.contains("### Sign-off"));
}
