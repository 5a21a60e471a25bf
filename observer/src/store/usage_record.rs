//! The `nhi.usage` record of a usage as committed: cumulative counts,
//! first and last seen, and where its connections went.
//!
//! Input: a [`UsageRow`] (what the store holds). Output: the record, which
//! the store serialises like any other. Invariant: the record's
//! `nhi.usage.id` is stable for the usage's key across restarts.
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::UsageRow;
use crate::model::{
    rfc3339,
    records::{Consumer, Usage, UsageDestinations},
};

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
pub fn usage_record(u: &UsageRow) -> Usage {
    let destinations = u
        .destinations
        .iter()
        .map(|d| d.confidence.as_str())
        .min_by_key(|c| *c != "direct")
        .map(|best| {
            let mut listed: Vec<String> = Vec::new();
            let mut confidences: Vec<String> = Vec::new();
            let mut truncated = false;
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
                    truncated = true;
                    break;
                }
                listed.push(dest);
                confidences.push(d.confidence.as_str().into());
            }
            // One destination (reached directly, inferred, or both): named
            // as `server.*` too.
            let only = match (listed.as_slice(), u.destinations.first()) {
                ([_], Some(only)) => Some(only),
                _ => None,
            };
            UsageDestinations {
                confidence: best,
                truncated,
                server_address: only.map(|d| d.server_address.clone()),
                server_port: only.map(|d| d.server_port),
                destinations: listed,
                confidences,
            }
        });
    Usage {
        time: u.last_seen.max(SystemTime::UNIX_EPOCH),
        host_name: u.host.clone().into(),
        id: u.nhi_id.clone(),
        kind: u.kind.clone(),
        source: u.source.clone(),
        consumer: Consumer::from(&u.consumer),
        usage_id: usage_id(&u.usage_key),
        first_seen: rfc3339(u.first_seen),
        last_seen: rfc3339(u.last_seen),
        count: u.accesses,
        connections: u.connections,
        destinations,
        record_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::Confidence,
        model::{EVENT_USAGE, Record, Value},
        store::DestinationRow,
    };

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
            consumer: crate::model::Consumer { executable_path: Some("/usr/bin/aws".into()), ..Default::default() },
            first_seen: t,
            last_seen: t,
            accesses: 5,
            connections: 3,
            destinations: vec![
                dest("a.example", Confidence::Inferred),
                dest("b.example", Confidence::Inferred),
            ],
        };
        let r = crate::model::render(&usage_record(&row));
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
        let r = crate::model::render(&usage_record(&row));
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
        let r = crate::model::render(&usage_record(&row));
        assert_eq!(
            get(&r, "server.address"),
            Some("a.example".into()),
            "one destination, two confidences"
        );
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("direct".into()));
        row.destinations.truncate(1);
        let r = crate::model::render(&usage_record(&row));
        assert_eq!(get(&r, "server.address"), Some("a.example".into()));
        row.destinations.clear();
        assert_eq!(get(&crate::model::render(&usage_record(&row)), "nhi.usage.confidence"), None);
    }
}
