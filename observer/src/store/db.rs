//! The writer ([`Store`], on the sink thread) and the readers' helpers
//! (the exporter's cursor, coverage queries).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::schema;
use crate::{
    correlate::{Confidence, UsageDelta},
    export::record::{Record, Value},
};

/// Rows in one transaction at most before it is committed.
pub const COMMIT_ROWS: usize = 2048;
/// Age of the open transaction at which it is committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// Record ids reserved (and committed) ahead of use.
const ID_BLOCK: i64 = 100_000;
/// The OTLP log exporter's cursor.
pub const CURSOR_OTLP_LOGS: &str = "otlp.logs";
const PRUNE_EVERY: Duration = Duration::from_secs(60);
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

/// The agent's cumulative loss and traffic counters since start, from
/// which each coverage interval records its deltas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub events_received: u64,
    /// Events the kernel could not queue (ring buffer full), all kinds.
    pub events_lost: u64,
    pub decode_errors: u64,
    /// Losses by kind (`file`, `process`, `network`, `decode`, ...).
    pub drops: BTreeMap<&'static str, u64>,
}

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

struct CoverageState {
    row: i64,
    start_ns: i64,
    base: Counters,
}

pub struct Store {
    conn: Connection,
    opts: StoreOptions,
    instance: String,
    run_id: i64,
    in_tx: bool,
    rows: usize,
    tx_started: Instant,
    next_id: i64,
    reserved: i64,
    coverage: CoverageState,
    /// Whether the probes are attached: until then the run's first coverage
    /// interval stays empty (loading takes seconds; nothing is seen then).
    watching: bool,
    last_counters: Counters,
    last_prune: Instant,
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

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    configure(&conn).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    Ok(conn)
}

/// A second connection on the database (the exporter's): migrations are
/// the writer's job, so this waits for no schema change.
pub fn open_reader(state_dir: &Path) -> Result<Connection, StoreError> {
    open_conn(&db_path(state_dir))
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

    /// The connection, inside the open transaction, for `rows` more rows
    /// (the findings' writers in `evidence.rs`).
    pub(super) fn write_conn(&mut self, rows: usize) -> rusqlite::Result<&Connection> {
        self.begin()?;
        self.rows += rows;
        Ok(&self.conn)
    }

    /// The connection, for reads.
    pub(super) fn read_conn(&self) -> &Connection {
        &self.conn
    }

    fn begin(&mut self) -> rusqlite::Result<()> {
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

    /// Adds a usage delta to the cumulative usage and returns the result.
    pub fn upsert_usage(&mut self, d: &UsageDelta) -> Result<UsageRow, StoreError> {
        self.begin()?;
        let h = &d.head;
        let consumer = consumer_json(&h.consumer);
        let (id, first, last, accesses, connections): (i64, i64, i64, i64, i64) = self
            .conn
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
            self.conn
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
        self.rows += 1 + d.destinations.len();
        let destinations = destinations(&self.conn, id)?;
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

    /// Moves this run's "alive" mark and the current coverage interval to
    /// now, with the counters' deltas; starts a new interval when the
    /// current one is `coverage_every` long. Part of the open transaction.
    pub fn heartbeat(&mut self, counters: &Counters) -> Result<(), StoreError> {
        self.begin()?;
        let now = now_ns();
        self.conn
            .prepare_cached("UPDATE runs SET last_alive_ns = ?1 WHERE id = ?2")?
            .execute(params![now, self.run_id])?;
        self.rows += 1;
        if !self.watching {
            return Ok(()); // alive, but not watching yet: no coverage
        }
        self.write_coverage(now, counters)?;
        if u(now - self.coverage.start_ns) >= u64::try_from(self.opts.coverage_every.as_nanos()).unwrap_or(u64::MAX) {
            self.conn.execute(
                "INSERT INTO coverage (run_id, start_ns, end_ns, events_received, events_lost, decode_errors, drops) VALUES (?1, ?2, ?2, 0, 0, 0, '{}')",
                params![self.run_id, now],
            )?;
            self.coverage = CoverageState { row: self.conn.last_insert_rowid(), start_ns: now, base: counters.clone() };
        }
        self.last_counters = counters.clone();
        Ok(())
    }

    /// The probes are attached since `since` (wall clock): the run's first
    /// coverage interval starts there, with the counters as they are.
    pub fn watching(&mut self, since: SystemTime, counters: &Counters) -> Result<(), StoreError> {
        self.begin()?;
        let since = ns(since);
        self.conn.execute("UPDATE coverage SET start_ns = ?1, end_ns = ?1 WHERE id = ?2", params![since, self.coverage.row])?;
        self.coverage.start_ns = since;
        self.coverage.base = counters.clone();
        self.watching = true;
        self.rows += 1;
        Ok(())
    }

    /// The sensors this run actually has (the network sensor may fail to
    /// attach): the report's blind spots come from here.
    pub fn set_sensors(&mut self, sensors: &[&str]) -> Result<(), StoreError> {
        self.begin()?;
        self.conn.execute("UPDATE runs SET sensors = ?1 WHERE id = ?2", params![sensors.join(","), self.run_id])?;
        self.rows += 1;
        Ok(())
    }

    pub fn is_watching(&self) -> bool {
        self.watching
    }

    fn write_coverage(&mut self, now: i64, c: &Counters) -> rusqlite::Result<()> {
        let b = &self.coverage.base;
        let drops: BTreeMap<&str, u64> = c
            .drops
            .iter()
            .map(|(k, v)| (*k, v.saturating_sub(b.drops.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        self.conn
            .prepare_cached(
                "UPDATE coverage SET end_ns = ?1, events_received = ?2, events_lost = ?3, decode_errors = ?4, drops = ?5 WHERE id = ?6",
            )?
            .execute(params![
                now,
                i(c.events_received.saturating_sub(b.events_received)),
                i(c.events_lost.saturating_sub(b.events_lost)),
                i(c.decode_errors.saturating_sub(b.decode_errors)),
                serde_json::to_string(&drops).unwrap_or_else(|_| "{}".into()),
                self.coverage.row
            ])?;
        Ok(())
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

    fn commit(&mut self) -> rusqlite::Result<()> {
        if self.in_tx {
            self.conn.execute_batch("COMMIT")?;
            self.in_tx = false;
            self.commits += 1;
        }
        Ok(())
    }

    /// Deletes delivered records past the retention, and the oldest past
    /// `max_records`. Runs at most once a minute (or when `force`).
    pub fn prune(&mut self, force: bool) -> Result<(), StoreError> {
        if !force && self.last_prune.elapsed() < PRUNE_EVERY {
            return Ok(());
        }
        self.last_prune = Instant::now();
        self.commit()?;
        let cutoff = now_ns() - i64::try_from(self.opts.retention.as_nanos()).unwrap_or(i64::MAX);
        let delivered = delivered_upto(&self.conn, &self.opts.cursors)?;
        let old = self
            .conn
            .execute("DELETE FROM records WHERE time_ns < ?1 AND id <= ?2", params![cutoff, delivered])?;
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

/// The highest record id every listed cursor has passed (`i64::MAX` when
/// no exporter is enabled: nothing waits for delivery).
fn delivered_upto(conn: &Connection, cursors: &[&'static str]) -> rusqlite::Result<i64> {
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

/// An interval of the state directory's history: watched (a coverage
/// interval, with what was lost in it) or not (no agent ran).
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub start: SystemTime,
    pub end: SystemTime,
    /// `None`: nothing was watched.
    pub run: Option<i64>,
    pub events_lost: u64,
    pub decode_errors: u64,
}

/// What was watched between `from` and `to`: coverage intervals and the
/// gaps between them (agent down), in time order. The report's evidence
/// ("watched without loss since ...") is built on this.
pub fn coverage(conn: &Connection, from: SystemTime, to: SystemTime) -> rusqlite::Result<Vec<Interval>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run_id, start_ns, end_ns, events_lost, decode_errors FROM coverage
         WHERE end_ns >= ?1 AND start_ns <= ?2 ORDER BY start_ns, id",
    )?;
    let rows: Vec<(i64, i64, i64, i64, i64)> = stmt
        .query_map(params![ns(from), ns(to)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    let mut at = ns(from);
    for (run, start, end, lost, decode) in rows {
        if start > at {
            out.push(Interval { start: time(at), end: time(start), run: None, events_lost: 0, decode_errors: 0 });
        }
        out.push(Interval {
            start: time(start.max(ns(from))),
            end: time(end.min(ns(to))),
            run: Some(run),
            events_lost: u(lost),
            decode_errors: u(decode),
        });
        at = at.max(end);
    }
    if at < ns(to) {
        out.push(Interval { start: time(at), end: to, run: None, events_lost: 0, decode_errors: 0 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use super::*;
    use crate::correlate::{Destination, UsageHead};

    fn record(n: u32) -> Record {
        Record {
            time: SystemTime::now(),
            event_name: "nhi.credential.access",
            attributes: vec![("nhi.id", format!("AKIA{n}").into()), ("process.pid", n.into())],
        }
    }

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

    #[test]
    fn runs_and_coverage_show_the_gap_of_an_unclean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // Loading the probes: alive, nothing watched yet.
        std::thread::sleep(Duration::from_millis(20));
        s.heartbeat(&Counters::default()).unwrap();
        let attached = SystemTime::now();
        s.watching(attached, &Counters::default()).unwrap();
        let mut c = Counters { events_received: 10, events_lost: 2, ..Counters::default() };
        c.drops.insert("file", 2);
        s.heartbeat(&c).unwrap();
        s.maybe_commit(true).unwrap();
        drop(s); // no close: like kill -9
        std::thread::sleep(Duration::from_millis(30));
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.close(&Counters::default()).unwrap();
        let conn = open_reader(dir.path()).unwrap();
        let runs: Vec<(i64, i64)> = conn
            .prepare("SELECT clean, stopped_ns - last_alive_ns FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(runs, [(0, 0), (1, 0)], "first run ends at its last commit, unclean; second clean");
        let iv = coverage(&conn, t0, SystemTime::now()).unwrap();
        let watched: Vec<_> = iv.iter().filter(|i| i.run.is_some()).collect();
        assert_eq!(watched.len(), 2);
        assert_eq!(watched[0].events_lost, 2);
        assert_eq!(watched[0].start, time(ns(attached)), "coverage starts when the probes were attached, not at open");
        assert_eq!(watched[1].start, watched[1].end, "the second run never attached: it watched nothing");
        assert!(iv.iter().any(|i| i.run.is_none()), "the agent-down gap is an interval: {iv:?}");
        let drops: String = conn.query_row("SELECT drops FROM coverage ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(drops, r#"{"file":2}"#);
    }

    #[test]
    fn usage_accumulates_across_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let a = s.upsert_usage(&delta(3, None)).unwrap();
        assert_eq!((a.accesses, a.connections, a.destinations.len()), (3, 0, 0));
        let b = s.upsert_usage(&delta(2, Some(("sts.amazonaws.com", Confidence::Direct)))).unwrap();
        assert_eq!(b.id, a.id);
        assert_eq!((b.accesses, b.connections), (5, 1));
        assert_eq!(b.destinations[0].server_address, "sts.amazonaws.com");
        let c = s.upsert_usage(&delta(0, Some(("sts.amazonaws.com", Confidence::Direct)))).unwrap();
        assert_eq!(c.destinations.len(), 1);
        assert_eq!(c.destinations[0].connections, 2);
        assert!(c.first_seen <= c.last_seen);
        s.maybe_commit(true).unwrap();
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
