//! The writer and its record ids: [`Store`] (on the sink thread), its
//! batched transactions, record ids handed out from reserved blocks, and
//! the helpers every part of the store shares (paths, connections, time).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    coverage::{Counters, CoverageState},
    schema,
};
use crate::export::record::{Record, Value};

/// Rows in one transaction at most before it is committed.
pub const COMMIT_ROWS: usize = 2048;
/// Age of the open transaction at which it is committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// Record ids reserved (and committed) ahead of use.
const ID_BLOCK: i64 = 100_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path} has schema version {found}, newer than this agent's {supported}: upgrade the agent")]
    TooNew { path: PathBuf, found: usize, supported: usize },
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Delivered records older than this are deleted.
    pub retention: Duration,
    /// Most records kept; past it the oldest go, delivered or not.
    pub max_records: u64,
    /// Length of one coverage interval.
    pub coverage_every: Duration,
    /// Which sensors this run has (for `runs.sensors`).
    pub sensors: Vec<&'static str>,
    /// Cursors that must have passed a record before it may be pruned
    /// (the enabled exporters).
    pub cursors: Vec<&'static str>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_records: 2_000_000,
            coverage_every: Duration::from_secs(60),
            sensors: Vec::new(),
            cursors: Vec::new(),
        }
    }
}

pub struct Store {
    pub(super) conn: Connection,
    pub(super) opts: StoreOptions,
    pub(super) instance: String,
    pub(super) run_id: i64,
    pub(super) in_tx: bool,
    pub(super) rows: usize,
    pub(super) tx_started: Instant,
    pub(super) next_id: i64,
    pub(super) reserved: i64,
    pub(super) coverage: CoverageState,
    /// Whether the probes are attached: until then the run's first coverage
    /// interval stays empty (loading takes seconds; nothing is seen then).
    pub(super) watching: bool,
    pub(super) last_counters: Counters,
    pub(super) last_prune: Instant,
    /// Records deleted undelivered because of `max_records`.
    pub dropped: u64,
    pub commits: u64,
}

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("nhi-observer.db")
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (the exporter) never block the writer; NORMAL: a
    // commit is in the WAL file before COMMIT returns, so it survives the
    // process dying (kill -9); only a power loss can take the last ones.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

pub(super) fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    configure(&conn).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    Ok(conn)
}

pub fn ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

pub fn time(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

pub(super) fn now_ns() -> i64 {
    ns(SystemTime::now())
}

pub(super) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating or migrating) the database, closes the previous run
    /// (cleanly stopped or not), and starts this one.
    pub fn open(state_dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let path = db_path(state_dir);
        let mut conn = open_conn(&path)?;
        let migrations = schema::migrations();
        // A database written by a newer agent: its version is past our
        // migrations (`Outside`); refuse it with a message that says so.
        match migrations.current_version(&conn)? {
            rusqlite_migration::SchemaVersion::Outside(v) | rusqlite_migration::SchemaVersion::Inside(v)
                if v.get() > schema::VERSION =>
            {
                return Err(StoreError::TooNew { path, found: v.get(), supported: schema::VERSION });
            }
            _ => {}
        }
        migrations.to_latest(&mut conn)?;
        let now = now_ns();
        let tx = conn.transaction()?;
        let instance = match tx.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0)).optional()? {
            Some(v) => v,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| {
                    StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                        e.to_string(),
                    ))))
                })?;
                let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
                tx.execute("INSERT INTO meta (key, value) VALUES ('instance', ?1)", [&id])?;
                id
            }
        };
        // Runs that never stopped cleanly end at their last commit.
        let crashed = tx.execute("UPDATE runs SET stopped_ns = last_alive_ns WHERE stopped_ns IS NULL", [])?;
        if crashed > 0 {
            tracing::warn!(runs = crashed, "the previous run did not stop cleanly: its last commit ends its coverage");
        }
        let reserved: i64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'id_reserved'", [], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let max_id: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM records", [], |r| r.get(0))?;
        let next_id = reserved.max(max_id) + 1;
        let reserved = next_id - 1 + ID_BLOCK;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('id_reserved', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [reserved.to_string()],
        )?;
        tx.execute(
            "INSERT INTO runs (started_ns, last_alive_ns, pid, version, sensors) VALUES (?1, ?1, ?2, ?3, ?4)",
            params![now, std::process::id(), env!("CARGO_PKG_VERSION"), opts.sensors.join(",")],
        )?;
        let run_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO coverage (run_id, start_ns, end_ns, events_received, events_lost, decode_errors, drops) VALUES (?1, ?2, ?2, 0, 0, 0, '{}')",
            params![run_id, now],
        )?;
        let row = tx.last_insert_rowid();
        for name in &opts.cursors {
            tx.execute("INSERT OR IGNORE INTO cursors (name, last_id, updated_ns) VALUES (?1, 0, ?2)", params![name, now])?;
        }
        tx.commit()?;
        tracing::info!(path = %path.display(), run = run_id, next_record = next_id, schema = schema::VERSION, "store opened");
        Ok(Store {
            conn,
            opts,
            instance,
            run_id,
            in_tx: false,
            rows: 0,
            tx_started: Instant::now(),
            next_id,
            reserved,
            coverage: CoverageState { row, start_ns: now, base: Counters::default() },
            watching: false,
            last_counters: Counters::default(),
            last_prune: Instant::now(),
            dropped: 0,
            commits: 0,
        })
    }

    /// This database's random instance id (`service.instance.id`, and the
    /// prefix of every `nhi.record.id`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    pub(super) fn begin(&mut self) -> rusqlite::Result<()> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN")?;
            self.in_tx = true;
            self.rows = 0;
            self.tx_started = Instant::now();
        }
        Ok(())
    }

    /// Hands out the next record id, reserving a new block (committed on
    /// its own first) when this one is used up.
    fn take_id(&mut self) -> rusqlite::Result<i64> {
        if self.next_id > self.reserved {
            self.commit()?;
            let reserved = self.next_id - 1 + ID_BLOCK;
            self.conn.execute("UPDATE meta SET value = ?1 WHERE key = 'id_reserved'", [reserved.to_string()])?;
            self.reserved = reserved;
        }
        let id = self.next_id;
        self.next_id += 1;
        Ok(id)
    }

    /// Gives the record its id (`nhi.record.id`), adds it to the open
    /// transaction, and returns its JSON text (for the JSON lines output:
    /// one serialization for both).
    pub fn append(&mut self, record: &mut Record) -> Result<String, StoreError> {
        let id = self.take_id()?;
        record.set("nhi.record.id", format!("{}-{id}", self.instance));
        let body = serde_json::to_string(&*record).unwrap_or_default();
        let nhi_id = record.attributes.iter().find(|(k, _)| *k == "nhi.id").and_then(|(_, v)| match v {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        });
        self.begin()?;
        self.conn
            .prepare_cached("INSERT INTO records (id, time_ns, event_name, nhi_id, body) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![id, ns(record.time), record.event_name, nhi_id, body])?;
        self.rows += 1;
        Ok(body)
    }

    /// Rows in the open transaction.
    pub fn pending_rows(&self) -> usize {
        if self.in_tx { self.rows } else { 0 }
    }

    /// Commits when the open transaction is big or old enough (or `force`).
    /// Returns whether it committed.
    pub fn maybe_commit(&mut self, force: bool) -> Result<bool, StoreError> {
        if !self.in_tx {
            return Ok(false);
        }
        if force || self.rows >= COMMIT_ROWS || self.tx_started.elapsed() >= COMMIT_INTERVAL {
            if let Err(e) = self.commit() {
                // SQLite rolls back on most commit failures (disk full);
                // make sure, and start the next batch afresh.
                let _ = self.conn.execute_batch("ROLLBACK");
                self.in_tx = false;
                return Err(e.into());
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Time until the open transaction is due, if one is open.
    pub fn commit_due_in(&self) -> Option<Duration> {
        self.in_tx.then(|| COMMIT_INTERVAL.saturating_sub(self.tx_started.elapsed()))
    }

    pub(super) fn commit(&mut self) -> rusqlite::Result<()> {
        if self.in_tx {
            self.conn.execute_batch("COMMIT")?;
            self.in_tx = false;
            self.commits += 1;
        }
        Ok(())
    }

    /// Size of the database and its WAL, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let path = self.conn.path().map(PathBuf::from).unwrap_or_default();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        [path, wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Clean stop: last heartbeat, the run marked stopped, committed.
    pub fn close(&mut self, counters: &Counters) -> Result<(), StoreError> {
        self.heartbeat(counters)?;
        let now = now_ns();
        self.conn.execute("UPDATE runs SET stopped_ns = ?1, last_alive_ns = ?1, clean = 1 WHERE id = ?2", params![now, self.run_id])?;
        self.commit()?;
        // Fold the WAL back into the database file.
        let _ = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::outbox::{open_reader, records_after};

    pub(in crate::store) fn record(n: u32) -> Record {
        Record {
            time: SystemTime::now(),
            event_name: "nhi.credential.access",
            attributes: vec![("nhi.id", format!("AKIA{n}").into()), ("process.pid", n.into())],
        }
    }

    #[test]
    fn a_database_from_a_newer_agent_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let conn = rusqlite::Connection::open(db_path(dir.path())).unwrap();
        conn.pragma_update(None, "user_version", i64::try_from(schema::VERSION + 1).unwrap()).unwrap();
        drop(conn);
        match Store::open(dir.path(), StoreOptions::default()) {
            Err(StoreError::TooNew { found, supported, .. }) => assert_eq!((found, supported), (schema::VERSION + 1, schema::VERSION)),
            Err(e) => panic!("refused, but not as too new: {e}"),
            Ok(_) => panic!("a newer database was opened"),
        }
    }

    #[test]
    fn records_get_ids_that_survive_restarts_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut r = record(1);
        let body = s.append(&mut r).unwrap();
        let instance = s.instance().to_owned();
        assert!(body.contains(&format!("\"nhi.record.id\":\"{instance}-1\"")), "{body}");
        s.append(&mut record(2)).unwrap();
        s.maybe_commit(true).unwrap();
        // A third record never committed: the process "dies" here.
        s.append(&mut record(3)).unwrap();
        drop(s);
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(s.instance(), instance);
        let mut r = record(4);
        s.append(&mut r).unwrap();
        s.maybe_commit(true).unwrap();
        let reader = open_reader(dir.path()).unwrap();
        let rows = records_after(&reader, 0, 10).unwrap();
        assert_eq!(rows.len(), 3, "committed records only");
        assert!(rows[2].0 > 3, "ids handed out before the crash are not reused: {}", rows[2].0);
    }
}
