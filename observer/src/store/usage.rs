//! Cumulative usage: one row per (credential, source, consumer), and
//! where its connections went.
use std::time::SystemTime;

use std::{collections::HashMap, sync::Arc};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::writer::{Op, Store, StoreError, i, ns, time, u};
use crate::{
    correlate::{
        Confidence, UsageDelta,
        record::{Subject, usage_head},
    },
    model::{Consumer, Credential, EVENT_CREDENTIAL_ACCESS, Source, records::CredentialAccess},
};

/// `meta` key: the usage totals count every access record up to this id.
const COUNTED_THROUGH: &str = "usage_counted_through";

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
    pub consumer: Consumer,
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

    /// After a flush's deltas: the usage totals now count every access
    /// record handed an id so far. Written in the deltas' transaction, so
    /// that a start after a crash knows which committed access records the
    /// totals lack ([`recount`]).
    pub fn usage_counted(&mut self) -> Result<(), StoreError> {
        let through = self.next_id - 1;
        self.submit(Op::UsageMark(through))
    }

    /// The usages the start recounted (see [`recount`]), once: their
    /// `nhi.usage` records are due.
    pub fn take_recounted(&mut self) -> Vec<UsageRow> {
        std::mem::take(&mut self.recounted)
    }
}

/// Moves the usage mark forward (never back), in the open transaction.
pub(super) fn mark(conn: &Connection, through: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
    )?
    .execute(params![COUNTED_THROUGH, through.to_string()])?;
    Ok(())
}

/// At start, in the run's first transaction: usage deltas wait in memory
/// up to `flush_interval_secs`, so after a crash (kill -9, power loss) the
/// access records committed after the last flush are not in the totals.
/// Adds them (counts, first and last seen, by the usage key the correlator
/// uses) and moves the mark to `through` (the last id before this run).
/// Cheap after a clean stop: nothing is past the mark. A database without
/// a mark (new, or from before it) starts one at `through`. Connections
/// are not recounted: what linked them to a credential was the
/// correlator's memory, not a record.
pub(super) fn recount(conn: &Connection, through: i64) -> rusqlite::Result<Vec<UsageRow>> {
    let counted: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [COUNTED_THROUGH], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| v.parse().ok());
    let Some(counted) = counted else {
        mark(conn, through)?;
        return Ok(Vec::new());
    };
    let mut deltas: HashMap<Arc<str>, UsageDelta> = HashMap::new();
    let mut records = 0u64;
    {
        let mut stmt = conn.prepare(
            "SELECT time_ns, body FROM records WHERE id > ?1 AND id <= ?2 AND event_name = ?3 AND nhi_id IS NOT NULL ORDER BY id",
        )?;
        let mut rows = stmt.query(params![counted, through, EVENT_CREDENTIAL_ACCESS])?;
        while let Some(row) = rows.next()? {
            let body: String = row.get(1)?;
            let Some(a) = StoredAccess::parse(&body) else { continue };
            let t = time(row.get(0)?);
            let subject = Subject { host: &a.host, credential: &a.credential, source: a.source, consumer: &a.consumer };
            let Some(head) = usage_head(&subject) else { continue };
            records += 1;
            let d = deltas.entry(head.key.clone()).or_insert_with(|| UsageDelta {
                head: Arc::new(head),
                first_seen: t,
                last_seen: t,
                accesses: 0,
                connections: 0,
                destinations: Default::default(),
            });
            d.first_seen = d.first_seen.min(t);
            d.last_seen = d.last_seen.max(t);
            let count = a.count;
            d.accesses += count;
        }
    }
    let mut rows = Vec::with_capacity(deltas.len());
    for d in deltas.values() {
        rows.push(upsert(conn, d)?);
    }
    mark(conn, through)?;
    if records > 0 {
        tracing::warn!(
            records,
            usages = rows.len(),
            "usage totals recounted: access records committed after the last usage flush of a run that did not stop cleanly are added to the totals (connections of that interval are not)"
        );
    }
    Ok(rows)
}

/// What names the usage of a stored access record (the store's own JSON
/// serialisation, read back as the typed record at start only), and its
/// `nhi.access.count`.
struct StoredAccess {
    host: String,
    credential: Credential,
    source: Source,
    consumer: Consumer,
    count: u64,
}

impl StoredAccess {
    fn parse(body: &str) -> Option<Self> {
        let access: CredentialAccess = crate::model::from_json(body)?;
        Some(Self {
            credential: access.credential()?,
            source: access.source(),
            consumer: access.consumer(),
            count: access.count(),
            host: access.host_name.to_string(),
        })
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

/// The consumer column: the consumer as the usage record shows it.
fn consumer_json(consumer: &Consumer) -> String {
    // Through a `Value`: its map sorts the names, as the column always had them.
    serde_json::to_value(crate::model::records::Consumer::from(consumer)).map(|v| v.to_string()).unwrap_or_default()
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
    use std::sync::Arc;

    use super::*;
    use crate::{
        correlate::{Destination, UsageHead},
        store::StoreOptions,
    };

    fn delta(accesses: u64, dest: Option<(&str, Confidence)>) -> UsageDelta {
        let t = SystemTime::now();
        let mut destinations = crate::correlate::Destinations::default();
        if let Some((h, c)) = dest {
            destinations.insert(
                (Destination { address: h.into(), port: 443 }, c),
                crate::correlate::Seen { first: t, last: t, count: 1 },
            );
        }
        UsageDelta {
            head: Arc::new(UsageHead::new(
                Arc::from("k1"),
                "AKIA1".into(),
                "aws.access_key".into(),
                "file".into(),
                "h".into(),
                Consumer { executable_path: Some("/usr/bin/aws".into()), ..Consumer::default() },
            )),
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

    /// An access record as the pipeline stores it, and its delta as the
    /// correlator would make it.
    fn access(exe: &str, count: u64) -> (CredentialAccess, UsageDelta) {
        use crate::model::records::{AccessSource, FileAccess, Identity, Process, Workload};
        let r = CredentialAccess {
            time: SystemTime::now(),
            host_name: "h".into(),
            source: AccessSource::File(Box::new(FileAccess {
                kind: Some("aws.access_key".into()),
                identity: Identity { id: Some("AKIARECOUNT".into()), ..Identity::default() },
                process: Process { pid: 42, executable_path: Some(exe.into()), ..Process::default() },
                workload: Workload { interactive: Some(false), ..Workload::default() },
                count: Some(count),
                ..FileAccess::default()
            })),
            record_id: None,
        };
        // The live path's head, from the typed values the record shows.
        let credential = Credential { id: "AKIARECOUNT".into(), kind: "aws.access_key".into() };
        let consumer =
            Consumer { executable_path: Some(exe.into()), user_id: Some(0), interactive: Some(false), ..Consumer::default() };
        let subject = Subject { host: "h", credential: &credential, source: Source::File, consumer: &consumer };
        let head = Arc::new(usage_head(&subject).unwrap());
        let d = UsageDelta {
            head,
            first_seen: r.time,
            last_seen: r.time,
            accesses: count,
            connections: 0,
            destinations: Default::default(),
        };
        (r, d)
    }

    fn totals(s: &Store) -> Vec<(String, i64)> {
        let mut st = s.conn.prepare("SELECT consumer, accesses FROM usage ORDER BY consumer").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// Guards the recount at start: usage deltas wait in memory up to the
    /// flush interval, so after a crash the committed access records
    /// outnumbered the totals; and a clean stop must not be recounted.
    #[test]
    fn a_start_after_a_crash_adds_the_committed_accesses_the_totals_lack() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // Flushed: 3 + 2 accesses, their usage and the mark committed.
        for (exe, n) in [("/usr/bin/aws", 3), ("/usr/bin/python3", 2)] {
            let (mut r, d) = access(exe, n);
            s.append(&mut r).unwrap();
            s.upsert_usage(&d).unwrap();
        }
        s.usage_counted().unwrap();
        s.maybe_commit(true).unwrap();
        // Committed, not flushed: 4 + 1 (+ 5 in a new usage), then a record
        // never committed (the crash).
        for (exe, n) in [("/usr/bin/aws", 4), ("/usr/bin/python3", 1), ("/usr/bin/curl", 5)] {
            s.append(&mut access(exe, n).0).unwrap();
        }
        s.maybe_commit(true).unwrap();
        s.append(&mut access("/usr/bin/aws", 100).0).unwrap();
        assert_eq!(totals(&s).iter().map(|t| t.1).sum::<i64>(), 5, "the crash: only flushed deltas in the totals");
        drop(s);
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let t = totals(&s);
        let by = |exe: &str| t.iter().find(|(c, _)| c.contains(exe)).map(|x| x.1);
        assert_eq!((by("aws"), by("python3"), by("curl")), (Some(7), Some(3), Some(5)), "{t:?}");
        let recounted = s.take_recounted();
        assert_eq!(recounted.len(), 3, "each recounted usage's record is due");
        assert!(s.take_recounted().is_empty(), "once");
        // This run counts live (delta, mark); a clean stop and a start
        // recount nothing.
        let (mut r, d) = access("/usr/bin/aws", 1);
        s.append(&mut r).unwrap();
        s.upsert_usage(&d).unwrap();
        s.usage_counted().unwrap();
        s.close(&super::super::Counters::default()).unwrap();
        drop(s);
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(s.take_recounted().is_empty());
        assert_eq!(totals(&s).iter().map(|t| t.1).sum::<i64>(), 16);
    }

    #[test]
    fn destinations_past_the_retention_go_and_the_usage_stays() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { retention: std::time::Duration::ZERO, ..StoreOptions::default() };
        let mut s = Store::open(dir.path(), opts).unwrap();
        s.upsert_usage(&delta(1, Some(("sts.amazonaws.com", Confidence::Direct)))).unwrap().unwrap();
        s.maybe_commit(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.prune(true).unwrap();
        let (usage, dests): (i64, i64) = s
            .conn
            .query_row("SELECT (SELECT count(*) FROM usage), (SELECT count(*) FROM usage_destinations)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((usage, dests), (1, 0));
    }
}
