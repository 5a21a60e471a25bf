//! The `nhi.usage` record of a usage as committed: cumulative counts,
//! first and last seen, and where its connections went.
//!
//! Input: a [`UsageRow`] (what the store holds). Output: the record, which
//! the store serialises like any other. Invariant: the record's
//! `nhi.usage.id` is stable for the usage's key across restarts.
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::UsageRow;
use crate::model::{EVENT_USAGE, Record, Value, rfc3339};

/// Destinations listed in an `nhi.usage` record (the most recent first);
/// the store keeps them all.
pub const MAX_LISTED_DESTINATIONS: usize = 32;

/// A stable, short id for a usage key (`nhi.usage.id`): the same usage on
/// the same host has the same id across restarts and record versions.
pub fn usage_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `nhi.usage`: the cumulative state of one usage as committed.
pub fn usage_record(u: &UsageRow) -> Record {
    let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    a.push(("host.name", u.host.clone().into()));
    a.push(("nhi.id", u.nhi_id.clone().into()));
    a.push(("nhi.kind", u.kind.clone().into()));
    a.push(("nhi.source", u.source.clone().into()));
    a.extend(u.consumer.iter().cloned());
    a.push(("nhi.usage.id", usage_id(&u.usage_key).into()));
    a.push(("nhi.usage.first_seen", rfc3339(u.first_seen).into()));
    a.push(("nhi.usage.last_seen", rfc3339(u.last_seen).into()));
    a.push(("nhi.usage.count", int(u.accesses)));
    a.push(("nhi.usage.connections", int(u.connections)));
    if let Some(best) = u
        .destinations
        .iter()
        .map(|d| d.confidence.as_str())
        .min_by_key(|c| *c != "direct")
    {
        a.push(("nhi.usage.confidence", best.into()));
        let mut listed: Vec<String> = Vec::new();
        let mut confidences: Vec<String> = Vec::new();
        for d in &u.destinations {
            let dest = format!("{}:{}", d.server_address, d.server_port);
            if let Some(i) = listed.iter().position(|l| *l == dest) {
                // Listed once, with its best confidence.
                if d.confidence.as_str() == "direct" {
                    confidences[i] = "direct".into();
                }
                continue;
            }
            if listed.len() == MAX_LISTED_DESTINATIONS {
                a.push(("nhi.usage.destinations_truncated", true.into()));
                break;
            }
            listed.push(dest);
            confidences.push(d.confidence.as_str().into());
        }
        // One destination (reached directly, inferred, or both): named as
        // `server.*` too.
        if let ([_], Some(only)) = (listed.as_slice(), u.destinations.first()) {
            a.push(("server.address", only.server_address.clone().into()));
            a.push(("server.port", u32::from(only.server_port).into()));
        }
        a.push(("nhi.usage.destinations", listed.into()));
        a.push(("nhi.usage.destination_confidences", confidences.into()));
    }
    Record {
        time: u.last_seen.max(SystemTime::UNIX_EPOCH),
        event_name: EVENT_USAGE,
        attributes: a,
    }
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::Confidence, store::DestinationRow};

    #[test]
    fn usage_id_is_stable_and_short() {
        assert_eq!(usage_id("a\u{1f}b"), usage_id("a\u{1f}b"));
        assert_ne!(usage_id("a"), usage_id("b"));
        assert_eq!(usage_id("a").len(), 24);
    }

    #[test]
    fn usage_record_lists_destinations_with_confidence() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let dest = |h: &str, c| DestinationRow {
            server_address: h.into(),
            server_port: 443,
            confidence: c,
            first_seen: t,
            last_seen: t,
            connections: 1,
        };
        let mut row = UsageRow {
            id: 1,
            usage_key: "k".into(),
            nhi_id: "AKIA".into(),
            kind: "aws.access_key".into(),
            source: "file".into(),
            host: "h".into(),
            consumer: vec![("process.executable.path", "/usr/bin/aws".into())],
            first_seen: t,
            last_seen: t,
            accesses: 5,
            connections: 3,
            destinations: vec![
                dest("a.example", Confidence::Inferred),
                dest("b.example", Confidence::Inferred),
            ],
        };
        let r = usage_record(&row);
        let get = |r: &Record, k: &str| {
            r.attributes
                .iter()
                .find(|(x, _)| *x == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(r.event_name, EVENT_USAGE);
        assert_eq!(get(&r, "nhi.usage.count"), Some(Value::Int(5)));
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("inferred".into()));
        assert_eq!(
            get(&r, "server.address"),
            None,
            "two destinations: listed, no single server.address"
        );
        row.destinations.push(dest("a.example", Confidence::Direct));
        let r = usage_record(&row);
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("direct".into()));
        assert_eq!(
            get(&r, "nhi.usage.destinations"),
            Some(Value::StrList(vec![
                "a.example:443".into(),
                "b.example:443".into()
            ]))
        );
        assert_eq!(
            get(&r, "nhi.usage.destination_confidences"),
            Some(Value::StrList(vec!["direct".into(), "inferred".into()]))
        );
        row.destinations.remove(1);
        let r = usage_record(&row);
        assert_eq!(
            get(&r, "server.address"),
            Some("a.example".into()),
            "one destination, two confidences"
        );
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("direct".into()));
        row.destinations.truncate(1);
        let r = usage_record(&row);
        assert_eq!(get(&r, "server.address"), Some("a.example".into()));
        row.destinations.clear();
        assert_eq!(get(&usage_record(&row), "nhi.usage.confidence"), None);
    }
}
