//! The exporters' outbox: the `records` table read behind a cursor per
//! exporter, and the retention that deletes what every cursor has passed.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::writer::{Store, StoreError, db_path, i, now_ns, open_conn, u};

/// The OTLP log exporter's cursor.
pub const CURSOR_OTLP_LOGS: &str = "otlp.logs";
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A second connection on the database (the exporter's): migrations are
/// the writer's job, so this waits for no schema change.
pub fn open_reader(state_dir: &Path) -> Result<Connection, StoreError> {
    open_conn(&db_path(state_dir))
}

impl Store {
    /// Deletes delivered records past the retention, and the oldest past
    /// `max_records`. Runs at most once a minute (or when `force`).
    pub fn prune(&mut self, force: bool) -> Result<(), StoreError> {
        if self.failing.is_some() || (!force && self.last_prune.elapsed() < PRUNE_EVERY) {
            return Ok(());
        }
        self.last_prune = Instant::now();
        self.commit()?;
        let cutoff = now_ns() - i64::try_from(self.opts.retention.as_nanos()).unwrap_or(i64::MAX);
        let delivered = delivered_upto(&self.conn, &self.opts.cursors)?;
        let old = self
            .conn
            .execute("DELETE FROM records WHERE time_ns < ?1 AND id <= ?2", params![cutoff, delivered])?;
        self.conn.execute("DELETE FROM rejected WHERE rejected_ns < ?1", [cutoff])?;
        let count: i64 = self.conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
        let excess = u(count).saturating_sub(self.opts.max_records);
        if excess > 0 {
            let undelivered: i64 = self.conn.query_row(
                "SELECT count(*) FROM (SELECT id FROM records ORDER BY id LIMIT ?1) WHERE id > ?2",
                params![i(excess), delivered],
                |r| r.get(0),
            )?;
            self.conn.execute(
                "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id LIMIT ?1)",
                params![i(excess)],
            )?;
            if undelivered > 0 {
                self.dropped += u(undelivered);
                tracing::error!(
                    dropped = undelivered,
                    max_records = self.opts.max_records,
                    "store full: oldest records deleted before they were exported"
                );
            }
        }
        if old > 0 || excess > 0 {
            tracing::debug!(expired = old, excess, "store pruned");
        }
        Ok(())
    }
}

/// The highest record id every listed cursor has passed (`i64::MAX` when
/// no exporter is enabled: nothing waits for delivery).
pub(super) fn delivered_upto(conn: &Connection, cursors: &[&'static str]) -> rusqlite::Result<i64> {
    let mut upto = i64::MAX;
    for name in cursors {
        let v: i64 =
            conn.query_row("SELECT last_id FROM cursors WHERE name = ?1", [name], |r| r.get(0)).optional()?.unwrap_or(0);
        upto = upto.min(v);
    }
    Ok(upto)
}

/// Reader side: the exporter's cursor.
pub fn cursor(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn.query_row("SELECT last_id FROM cursors WHERE name = ?1", [name], |r| r.get(0)).optional()?.unwrap_or(0))
}

/// Reader side: moves a cursor forward (never back).
pub fn set_cursor(conn: &Connection, name: &str, last_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO cursors (name, last_id, updated_ns) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id), updated_ns = excluded.updated_ns",
    )?
    .execute(params![name, last_id, now_ns()])?;
    Ok(())
}

/// Reader side: a record the exporter's collector refused for good is kept
/// in `rejected` with the reason, and the cursor moves past it, together.
pub fn reject(
    conn: &mut Connection,
    name: &str,
    id: i64,
    time_ns: i64,
    body: &str,
    reason: &str,
    message: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT OR IGNORE INTO rejected (record_id, exporter, reason, message, time_ns, rejected_ns, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, name, reason, message, time_ns, now_ns(), body],
    )?;
    set_cursor(&tx, name, id)?;
    tx.commit()
}

/// Reader side: up to `limit` records after `after`, in id order.
pub fn records_after(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<(i64, i64, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, time_ns, body FROM records WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = stmt.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

/// Reader side: records not yet past the cursor.
pub fn backlog(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    let c = cursor(conn, name)?;
    conn.query_row("SELECT count(*) FROM records WHERE id > ?1", [c], |r| r.get::<_, i64>(0)).map(u)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{StoreOptions, writer::tests::record};

    #[test]
    fn a_rejected_record_is_kept_aside_and_the_cursor_moves_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { cursors: vec![CURSOR_OTLP_LOGS], ..StoreOptions::default() };
        let mut s = Store::open(dir.path(), opts).unwrap();
        for n in 0..3 {
            s.append(&mut record(n)).unwrap();
        }
        s.maybe_commit(true).unwrap();
        let mut reader = open_reader(dir.path()).unwrap();
        let rows = records_after(&reader, 0, 10).unwrap();
        set_cursor(&reader, CURSOR_OTLP_LOGS, rows[0].0).unwrap();
        reject(&mut reader, CURSOR_OTLP_LOGS, rows[1].0, rows[1].1, &rows[1].2, "grpc_invalid_argument", "refused").unwrap();
        assert_eq!(cursor(&reader, CURSOR_OTLP_LOGS).unwrap(), rows[1].0);
        assert_eq!(backlog(&reader, CURSOR_OTLP_LOGS).unwrap(), 1, "delivery goes on after it");
        let (id, reason, body): (i64, String, String) =
            reader.query_row("SELECT record_id, reason, body FROM rejected", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!((id, reason.as_str(), body.as_str()), (rows[1].0, "grpc_invalid_argument", rows[1].2.as_str()));
    }

    #[test]
    fn prune_keeps_undelivered_records_until_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            retention: Duration::ZERO,
            max_records: 5,
            cursors: vec![CURSOR_OTLP_LOGS],
            ..StoreOptions::default()
        };
        let mut s = Store::open(dir.path(), opts).unwrap();
        for n in 0..4 {
            s.append(&mut record(n)).unwrap();
        }
        s.maybe_commit(true).unwrap();
        let reader = open_reader(dir.path()).unwrap();
        s.prune(true).unwrap();
        assert_eq!(records_after(&reader, 0, 100).unwrap().len(), 4, "none delivered: all kept");
        let ids: Vec<i64> = records_after(&reader, 0, 100).unwrap().iter().map(|r| r.0).collect();
        set_cursor(&reader, CURSOR_OTLP_LOGS, ids[1]).unwrap();
        set_cursor(&reader, CURSOR_OTLP_LOGS, ids[0]).unwrap(); // never moves back
        assert_eq!(cursor(&reader, CURSOR_OTLP_LOGS).unwrap(), ids[1]);
        s.prune(true).unwrap();
        assert_eq!(records_after(&reader, 0, 100).unwrap().len(), 2, "delivered and expired: deleted");
        assert_eq!(backlog(&reader, CURSOR_OTLP_LOGS).unwrap(), 2);
        for n in 0..6 {
            s.append(&mut record(n)).unwrap();
        }
        s.prune(true).unwrap();
        assert_eq!(records_after(&reader, 0, 100).unwrap().len(), 5);
        assert_eq!(s.dropped, 3, "past the bound, undelivered records go, counted");
    }
}
