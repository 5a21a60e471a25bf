//! Cumulative usage: one row per (credential, source, consumer), and
//! where its connections went.
use std::time::SystemTime;

use rusqlite::{Connection, params};

use super::writer::{Op, Store, StoreError, i, ns, time, u};
use crate::{
    correlate::{Confidence, UsageDelta},
    model::Value,
};

/// One destination of a usage, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRow {
    pub server_address: String,
    pub server_port: u16,
    pub confidence: Confidence,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub connections: u64,
}

/// One usage, cumulative, as committed (or about to be).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub id: i64,
    pub usage_key: String,
    pub nhi_id: String,
    pub kind: String,
    pub source: String,
    pub host: String,
    pub consumer: Vec<(&'static str, Value)>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub accesses: u64,
    pub connections: u64,
    /// Most recent first.
    pub destinations: Vec<DestinationRow>,
}

impl Store {
    /// Adds a usage delta to the cumulative usage and returns the result;
    /// `None` while the database cannot be written (the delta then waits in
    /// the retry queue, and the next usage record after it shows the total).
    pub fn upsert_usage(&mut self, d: &UsageDelta) -> Result<Option<UsageRow>, StoreError> {
        if self.failing.is_some() {
            self.queue(Op::Usage(d.clone()));
            return Ok(None);
        }
        let written = self.begin().and_then(|()| upsert(&self.conn, d));
        self.pending.push(Op::Usage(d.clone()));
        match written {
            Ok(row) => {
                self.rows += 1 + d.destinations.len();
                Ok(Some(row))
            }
            Err(e) => {
                self.fail(&e);
                Err(e.into())
            }
        }
    }
}

/// Adds a usage delta in the open transaction; the cumulative row.
pub(super) fn upsert(conn: &Connection, d: &UsageDelta) -> rusqlite::Result<UsageRow> {
        let h = &d.head;
        let consumer = consumer_json(&h.consumer);
        let (id, first, last, accesses, connections): (i64, i64, i64, i64, i64) = conn
            .prepare_cached(
                "INSERT INTO usage (usage_key, nhi_id, kind, source, host, consumer, first_seen_ns, last_seen_ns, accesses, connections)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (usage_key) DO UPDATE SET
                   kind = excluded.kind,
                   first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
                   last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
                   accesses = accesses + excluded.accesses,
                   connections = connections + excluded.connections
                 RETURNING id, first_seen_ns, last_seen_ns, accesses, connections",
            )?
            .query_row(
                params![
                    &*h.key,
                    h.nhi_id,
                    h.kind,
                    h.source,
                    h.host,
                    consumer,
                    ns(d.first_seen),
                    ns(d.last_seen),
                    i(d.accesses),
                    i(d.connections)
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        for ((dest, confidence), seen) in &d.destinations {
            conn
                .prepare_cached(
                    "INSERT INTO usage_destinations (usage_id, server_address, server_port, confidence, first_seen_ns, last_seen_ns, connections)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (usage_id, server_address, server_port, confidence) DO UPDATE SET
                       first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
                       last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
                       connections = connections + excluded.connections",
                )?
                .execute(params![
                    id,
                    dest.address,
                    dest.port,
                    confidence.as_str(),
                    ns(seen.first),
                    ns(seen.last),
                    i(seen.count)
                ])?;
        }
        let destinations = destinations(conn, id)?;
        Ok(UsageRow {
            id,
            usage_key: h.key.to_string(),
            nhi_id: h.nhi_id.clone(),
            kind: h.kind.clone(),
            source: h.source.clone(),
            host: h.host.clone(),
            consumer: h.consumer.clone(),
            first_seen: time(first),
            last_seen: time(last),
            accesses: u(accesses),
            connections: u(connections),
            destinations,
        })
}

fn consumer_json(consumer: &[(&'static str, Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = consumer
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn destinations(conn: &Connection, usage_id: i64) -> rusqlite::Result<Vec<DestinationRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT server_address, server_port, confidence, first_seen_ns, last_seen_ns, connections
         FROM usage_destinations WHERE usage_id = ?1 ORDER BY last_seen_ns DESC, server_address LIMIT 256",
    )?;
    let rows = stmt.query_map([usage_id], |r| {
        let confidence: String = r.get(2)?;
        Ok(DestinationRow {
            server_address: r.get(0)?,
            server_port: r.get(1)?,
            confidence: if confidence == "direct" { Confidence::Direct } else { Confidence::Inferred },
            first_seen: time(r.get(3)?),
            last_seen: time(r.get(4)?),
            connections: u(r.get(5)?),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use super::*;
    use crate::{
        correlate::{Destination, UsageHead},
        store::StoreOptions,
    };

    fn delta(accesses: u64, dest: Option<(&str, Confidence)>) -> UsageDelta {
        let t = SystemTime::now();
        let mut destinations = HashMap::new();
        if let Some((h, c)) = dest {
            destinations.insert(
                (Destination { address: h.into(), port: 443 }, c),
                crate::correlate::Seen { first: t, last: t, count: 1 },
            );
        }
        UsageDelta {
            head: Arc::new(UsageHead {
                key: Arc::from("k1"),
                nhi_id: "AKIA1".into(),
                kind: "aws.access_key".into(),
                source: "file".into(),
                host: "h".into(),
                consumer: vec![("process.executable.path", "/usr/bin/aws".into())],
            }),
            first_seen: t,
            last_seen: t,
            accesses,
            connections: u64::from(dest.is_some()),
            destinations,
        }
    }

    #[test]
    fn usage_accumulates_across_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let a = s.upsert_usage(&delta(3, None)).unwrap().unwrap();
        assert_eq!((a.accesses, a.connections, a.destinations.len()), (3, 0, 0));
        let b = s.upsert_usage(&delta(2, Some(("sts.amazonaws.com", Confidence::Direct)))).unwrap().unwrap();
        assert_eq!(b.id, a.id);
        assert_eq!((b.accesses, b.connections), (5, 1));
        assert_eq!(b.destinations[0].server_address, "sts.amazonaws.com");
        let c = s.upsert_usage(&delta(0, Some(("sts.amazonaws.com", Confidence::Direct)))).unwrap().unwrap();
        assert_eq!(c.destinations.len(), 1);
        assert_eq!(c.destinations[0].connections, 2);
        assert!(c.first_seen <= c.last_seen);
        s.maybe_commit(true).unwrap();
    }
}
