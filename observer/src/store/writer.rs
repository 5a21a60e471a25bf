//! The writer and its record ids: [`Store`] (on the sink thread), its
//! batched transactions, record ids handed out from reserved blocks, and
//! the helpers every part of the store shares (paths, connections, time).
use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    coverage::{Counters, CoverageState},
    schema,
};
use crate::{
    correlate::UsageDelta,
    model::Stored,
};

/// Rows in one transaction at most before it is committed.
pub const COMMIT_ROWS: usize = 2048;
/// Age of the open transaction at which it is committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// Record ids reserved (and committed) ahead of use.
const ID_BLOCK: i64 = 100_000;
/// Writes (records, usage deltas) kept in memory at most while the database
/// cannot take them; past it the oldest go, counted.
pub const MAX_QUEUED: usize = 50_000;
/// Writes per transaction when the retry queue is written: small, so that
/// a little space freed is used at once.
const REPLAY_ROWS: usize = 256;
/// How often writes are retried while they fail.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// What the WAL file is cut back to after each checkpoint.
const WAL_LIMIT_BYTES: i64 = 512 * 1024;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Records inserted by one statement: appended records wait in the open
/// transaction's `pending` until this many are there (or anything else
/// writes, or it commits), then go in one multi-row `INSERT` (one
/// statement run instead of this many: `bench tls`).
const INSERT_BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot move the damaged database {path} aside: {source}")]
    SetAside { path: PathBuf, source: std::io::Error },
    #[error("the database cannot be written; records waiting for it are lost")]
    Unwritable,
    #[error("database {path} has schema version {found}, newer than this agent's {supported}: upgrade the agent")]
    TooNew { path: PathBuf, found: usize, supported: usize },
    /// A reader (the report) never migrates: an older database is the
    /// agent's to upgrade.
    #[error("database {path} has schema version {found}, older than this version's {supported}: start the agent once (it migrates the database), then report")]
    TooOld { path: PathBuf, found: usize, supported: usize },
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
    /// Whether this run's start is committed (not yet: started on a full
    /// disk; done with the first write that works).
    pub(super) run_started: bool,
    /// A damaged database set aside at open, recorded with the run's start.
    pub(super) replaced: Option<(PathBuf, String)>,
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
    /// The writes of the open transaction, in order, until it commits.
    pub(super) pending: Vec<Op>,
    /// Writes that wait for the database to take them again (bounded).
    pub(super) retry: VecDeque<Op>,
    /// JSON text of committed records not yet handed out.
    pub(super) committed: Vec<String>,
    /// Set while writes fail.
    pub(super) failing: Option<Failing>,
    /// The coverage state when the open transaction began (restored when
    /// it is rolled back).
    pub(super) coverage_at_begin: CoverageState,
    /// Writes given up, by reason (`store_queue_full`, `usage_queue_full`,
    /// `store_unwritable_at_stop`).
    pub drops: BTreeMap<&'static str, u64>,
    /// The first record id of this run: the usage recount at start covers
    /// the ids before it.
    pub(super) first_id: i64,
    /// Usages whose totals the start recounted from committed access
    /// records (their `nhi.usage` records are due).
    pub(super) recounted: Vec<super::UsageRow>,
    /// How many of `pending`'s last ops are records not yet inserted
    /// (written [`INSERT_BATCH`] at a time; always a suffix of `pending`).
    pub(super) unwritten: usize,
}

/// One record as stored.
pub(super) struct Row {
    id: i64,
    time_ns: i64,
    event_name: &'static str,
    nhi_id: Option<String>,
    body: String,
}

/// A write, kept until its transaction commits.
pub(super) enum Op {
    Record(Row),
    Usage(UsageDelta),
    /// The usage totals count every access record up to this id (written
    /// after the deltas of one flush, in their transaction).
    UsageMark(i64),
}

pub(super) struct Failing {
    since_ns: i64,
    last_try: Instant,
    error: String,
    /// Writes given up during this outage.
    dropped: u64,
}

/// `PRAGMA cache_size` of every connection: negative means KiB.
const CACHE_KIB: i64 = -512;
/// The page size a new database is created with.
const PAGE_SIZE: i64 = 16 * 1024;

/// `wal_autocheckpoint` for a database of `page_size`: the pages in
/// [`WAL_LIMIT_BYTES`], at least one.
fn checkpoint_pages(page_size: i64) -> i64 {
    (WAL_LIMIT_BYTES / page_size.max(512)).max(1)
}

/// A record's `nhi.record.id`, `<instance>-<id>`, in one allocation of its
/// final size (`format!` grows its buffer and costs about as much again:
/// `bench net`; `bench pipeline` makes its ids with this too).
pub fn record_id(instance: &str, id: i64) -> String {
    let mut text = String::with_capacity(instance.len() + 21);
    text.push_str(instance);
    text.push('-');
    text.push_str(itoa::Buffer::new().format(id));
    text
}

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("nhi-observer.db")
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A new database gets 16 KiB pages (SQLite's default is 4 KiB): records
    // of about 0.5-1 KiB are appended, and every page a transaction changes
    // is written whole to the WAL, then to the database at a checkpoint,
    // each one two or three system calls; with pages four times larger a
    // stored record costs about a quarter of those calls (about 10% of the
    // sink's CPU per record: docs/design.md, "What a stored record
    // costs"). Only a database not yet written takes it, so this comes
    // before WAL mode (which writes the header); an existing database
    // keeps its page size (changing it would need a VACUUM outside WAL
    // mode).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // WAL: readers (the exporter) never block the writer; NORMAL: a
    // commit is in the WAL file before COMMIT returns, so it survives the
    // process dying (kill -9); only a power loss can take the last ones.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The WAL stays bounded: checkpointed every 512 KiB of pages (32 pages
    // of 16 KiB, 128 of an older database's 4 KiB: the database file, not
    // the WAL, holds the data even on a small disk), and cut back to this
    // size after a checkpoint.
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", checkpoint_pages(page_size))?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
    // Page cache per connection: 512 KiB (SQLite's default is 2 MiB). The
    // writer appends and updates a few rows per transaction, and the
    // exporters read forward from a cursor: neither re-reads much, and the
    // OS page cache holds the file anyway (`bench memory`: 1.5 MB less).
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    Ok(())
}

pub(super) fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    configure(&conn).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    Ok(conn)
}

/// The database names credentials and their users: only the agent's user
/// reads it (0600), whatever the directory's mode or the umask. Created so
/// before SQLite opens it (its WAL and shared-memory files take its mode).
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Whether the database file is damaged: `PRAGMA quick_check` finds a
/// problem, or the file is not a database at all (overwritten header).
/// `None` when it is sound, absent, or cannot be read for another reason
/// (then opening it says why).
fn damage(path: &Path) -> Option<String> {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    if !path.exists() {
        return None;
    }
    let corrupt = |e: &rusqlite::Error| matches!(e.sqlite_error_code(), Some(NotADatabase | DatabaseCorrupt));
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => return corrupt(&e).then(|| e.to_string()),
    };
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    let found: rusqlite::Result<Vec<String>> =
        conn.prepare("PRAGMA quick_check(20)").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match found {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => None,
        Ok(rows) => Some(rows.join("; ")),
        Err(e) => corrupt(&e).then(|| e.to_string()),
    }
}

/// Moves a damaged database (and its WAL and shared-memory files) aside
/// under a dated name, so a new one can start; says so at ERROR. Returns
/// where it went and what was wrong.
fn set_aside(path: &Path, problem: &str) -> Result<(PathBuf, String), StoreError> {
    let t = ::time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let moved = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = PathBuf::from(format!("{}{suffix}", moved.display()));
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| StoreError::SetAside { path: from.clone(), source: e })?;
        }
    }
    tracing::error!(
        path = %path.display(),
        kept_as = %moved.display(),
        problem,
        "the database is damaged: it is kept aside and a new one is started. Records it held that were not yet exported are not in the new database, and coverage starts again now (recorded in the gaps table). Keep the damaged file for inspection (sqlite3 .recover can salvage rows) and delete it when done"
    );
    Ok((moved, problem.to_owned()))
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
        let replaced = match damage(&path) {
            None => None,
            Some(problem) => Some(set_aside(&path, &problem)?),
        };
        private_file(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(source)),
        })?;
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
        // Reads first: they work on a full disk too.
        let instance = match conn.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0)).optional()? {
            Some(v) => v,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| {
                    StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                        e.to_string(),
                    ))))
                })?;
                b.iter().map(|x| format!("{x:02x}")).collect()
            }
        };
        let reserved: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'id_reserved'", [], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let max_id: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM records", [], |r| r.get(0))?;
        let next_id = reserved.max(max_id) + 1;
        let mut store = Store {
            conn,
            opts,
            instance,
            run_id: 0,
            run_started: false,
            replaced,
            in_tx: false,
            rows: 0,
            tx_started: Instant::now(),
            next_id,
            reserved: 0,
            coverage: CoverageState { row: 0, start_ns: now, base: Counters::default() },
            coverage_at_begin: CoverageState { row: 0, start_ns: now, base: Counters::default() },
            pending: Vec::new(),
            retry: VecDeque::new(),
            committed: Vec::new(),
            failing: None,
            drops: BTreeMap::new(),
            watching: false,
            last_counters: Counters::default(),
            last_prune: Instant::now(),
            dropped: 0,
            commits: 0,
            first_id: next_id,
            recounted: Vec::new(),
            unwritten: 0,
        };
        let started = store.begin().and_then(|()| store.start_run(now)).and_then(|()| store.conn.execute_batch("COMMIT"));
        match started {
            Ok(()) => {
                store.in_tx = false;
                store.run_started = true;
                tracing::info!(path = %path.display(), run = store.run_id, next_record = next_id, schema = schema::VERSION, "store opened");
            }
            Err(e) if unwritable(&e) => {
                // A full disk must not leave the host unwatched: run, keep
                // records in the retry queue, start the run once it can.
                store.fail(&e);
                tracing::error!(path = %path.display(), error = %e, "the database cannot be written at start: running degraded; records wait in memory until it can");
            }
            Err(e) => {
                let _ = store.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
        Ok(store)
    }

    /// Starts this run, in the open transaction: closes the previous runs
    /// (cleanly stopped or not), reserves ids, opens the first coverage
    /// interval and the cursors, and records a replaced database.
    fn start_run(&mut self, now: i64) -> rusqlite::Result<()> {
        let conn = &self.conn;
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?1)", [&self.instance])?;
        // Runs that never stopped cleanly end at their last commit.
        let crashed = conn.execute("UPDATE runs SET stopped_ns = last_alive_ns WHERE stopped_ns IS NULL", [])?;
        if crashed > 0 {
            tracing::warn!(runs = crashed, "the previous run did not stop cleanly: its last commit ends its coverage");
        }
        Self::reserve(conn, &mut self.reserved, self.next_id)?;
        self.recounted = super::usage::recount(conn, self.first_id - 1)?;
        conn.execute(
            "INSERT INTO runs (started_ns, last_alive_ns, pid, version, sensors) VALUES (?1, ?1, ?2, ?3, ?4)",
            params![now, std::process::id(), env!("CARGO_PKG_VERSION"), self.opts.sensors.join(",")],
        )?;
        let run_id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO coverage (run_id, start_ns, end_ns, events_received, events_lost, decode_errors, drops) VALUES (?1, ?2, ?2, 0, 0, 0, '{}')",
            params![run_id, now],
        )?;
        let row = conn.last_insert_rowid();
        for name in &self.opts.cursors {
            conn.execute("INSERT OR IGNORE INTO cursors (name, last_id, updated_ns) VALUES (?1, 0, ?2)", params![name, now])?;
        }
        if let Some((moved, problem)) = &self.replaced {
            // What the damaged database held is not in this one: evidence
            // built on this database starts here.
            let detail = serde_json::json!({ "moved_to": moved.display().to_string(), "problem": problem }).to_string();
            conn.execute(
                "INSERT INTO gaps (start_ns, end_ns, kind, detail) VALUES (?1, ?1, 'database_replaced', ?2)",
                params![now, detail],
            )?;
        }
        self.run_id = run_id;
        self.coverage = CoverageState { row, start_ns: now, base: Counters::default() };
        Ok(())
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
        if self.failing.is_some() {
            return Err(unwritable_now());
        }
        self.begin()?;
        self.rows += rows;
        Ok(&self.conn)
    }

    /// The connection, for reads.
    pub(super) fn read_conn(&self) -> &Connection {
        &self.conn
    }

    /// The sensors this run actually has (the network sensor may fail to
    /// attach): the report's blind spots come from here.
    pub fn set_sensors(&mut self, sensors: &[&str]) -> Result<(), StoreError> {
        if self.failing.is_some() {
            return Err(unwritable_now().into());
        }
        self.begin()?;
        self.conn.execute("UPDATE runs SET sensors = ?1 WHERE id = ?2", params![sensors.join(","), self.run_id])?;
        self.rows += 1;
        Ok(())
    }

    /// Opens the transaction if none is open, and inserts the records that
    /// wait for a batch: whatever writes or reads next sees them.
    pub(super) fn begin(&mut self) -> rusqlite::Result<()> {
        self.open_tx()?;
        self.insert_waiting()
    }

    /// Inserts the records of the open transaction not yet written, in
    /// multi-row statements of [`INSERT_BATCH`], the rest one by one.
    fn insert_waiting(&mut self) -> rusqlite::Result<()> {
        if self.unwritten == 0 {
            return Ok(());
        }
        let rows = &self.pending[self.pending.len() - self.unwritten..];
        let mut chunks = rows.chunks_exact(INSERT_BATCH);
        for chunk in &mut chunks {
            // Only records wait; the highest id is the last.
            if let Some(Op::Record(last)) = chunk.last() {
                Self::reserve(&self.conn, &mut self.reserved, last.id)?;
            }
            insert_rows(&self.conn, chunk)?;
        }
        for op in chunks.remainder() {
            Self::write_op(&self.conn, &mut self.reserved, op)?;
        }
        self.unwritten = 0;
        Ok(())
    }

    fn open_tx(&mut self) -> rusqlite::Result<()> {
        if self.in_tx && self.conn.is_autocommit() {
            // SQLite rolled the open transaction back after an error (a
            // full disk mid-statement): what it held is lost unless replayed.
            let e = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the open transaction was rolled back".into()),
            );
            self.fail(&e);
            return Err(e);
        }
        if !self.in_tx {
            self.conn.execute_batch("BEGIN")?;
            self.in_tx = true;
            self.rows = 0;
            self.tx_started = Instant::now();
            self.coverage_at_begin = self.coverage.clone();
        }
        Ok(())
    }

    /// Hands out the next record id. Ids come from a block reserved in
    /// `meta.id_reserved`; the reservation is written in the transaction
    /// that first holds an id past it ([`Store::reserve`]).
    fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Makes sure the open transaction reserves `id`: an id is never handed
    /// out again once a record with it committed, even after a crash.
    fn reserve(conn: &Connection, reserved: &mut i64, id: i64) -> rusqlite::Result<()> {
        if id > *reserved {
            let block = id - 1 + ID_BLOCK;
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('id_reserved', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            )?
            .execute([block.to_string()])?;
            *reserved = block;
        }
        Ok(())
    }

    /// Gives the record its id (`nhi.record.id`) and its JSON text (one
    /// serialization for the database, the JSON lines output and OTLP), and
    /// adds it to the open transaction. Its text reaches the JSON lines
    /// output only once it is committed ([`Store::take_committed`]). When
    /// the database cannot be written the record waits in the retry queue;
    /// the error is returned for the count of failed writes, the record is
    /// not lost with it. Only typed records are [`Stored`]: their
    /// `nhi.id` is a typed field. A record that cannot be rendered is not
    /// stored (counted in `model::record::UNRENDERABLE`; its id is not
    /// reused).
    pub fn append<R: Stored + ?Sized>(&mut self, record: &mut R) -> Result<(), StoreError> {
        let id = self.take_id();
        let Some(body) = record.to_json(record_id(&self.instance, id)) else {
            // Not stored: the id goes to the next record.
            self.next_id = id;
            return Ok(());
        };
        let nhi_id = record.nhi_id().map(str::to_owned);
        let row = Row { id, time_ns: ns(record.time()), event_name: record.event_name(), nhi_id, body };
        self.submit(Op::Record(row))
    }

    /// Adds one row-level write to the open transaction, or to the retry
    /// queue while the database cannot be written; a failed write starts
    /// the outage (the op waits in the queue, the error is returned for
    /// the count of failed writes).
    pub(super) fn submit(&mut self, op: Op) -> Result<(), StoreError> {
        if self.failing.is_some() {
            self.queue(op);
            return Ok(());
        }
        let written = if matches!(op, Op::Record(_)) {
            // Records wait for a batch (inserted by `begin`).
            let opened = self.open_tx();
            self.pending.push(op);
            self.unwritten += 1;
            opened.and_then(|()| if self.unwritten >= INSERT_BATCH { self.insert_waiting() } else { Ok(()) })
        } else {
            let written = self.begin().and_then(|()| Self::write_op(&self.conn, &mut self.reserved, &op));
            self.pending.push(op);
            written
        };
        match written {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(e.into())
            }
        }
    }

    /// Writes one op in the open transaction.
    fn write_op(conn: &Connection, reserved: &mut i64, op: &Op) -> rusqlite::Result<()> {
        match op {
            Op::Record(row) => {
                Self::reserve(conn, reserved, row.id)?;
                insert_row(conn, row)
            }
            Op::Usage(d) => super::usage::upsert(conn, d).map(drop),
            Op::UsageMark(through) => super::usage::mark(conn, *through),
        }
    }

    /// Rows in the open transaction.
    pub fn pending_rows(&self) -> usize {
        if self.in_tx { self.rows } else { 0 }
    }

    /// Records given to the store whose text has not been handed out yet:
    /// in the open transaction, in the retry queue, or committed and not
    /// taken.
    pub fn unreleased(&self) -> usize {
        self.pending.len() + self.retry.len() + self.committed.len()
    }

    /// Commits when the open transaction is big or old enough (or `force`);
    /// while writes fail, retries the queue once a [`RETRY_EVERY`] (or when
    /// `force`). Returns whether something was committed.
    pub fn maybe_commit(&mut self, force: bool) -> Result<bool, StoreError> {
        if self.failing.is_some() {
            let due = self.failing.as_ref().is_some_and(|f| f.last_try.elapsed() >= RETRY_EVERY);
            return if force || due { self.replay() } else { Ok(false) };
        }
        if !self.in_tx {
            return Ok(false);
        }
        if force || self.rows >= COMMIT_ROWS || self.tx_started.elapsed() >= COMMIT_INTERVAL {
            self.commit()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Time until the open transaction is due, if one is open; while writes
    /// fail, until the next retry.
    pub fn commit_due_in(&self) -> Option<Duration> {
        if let Some(f) = &self.failing {
            return Some(RETRY_EVERY.saturating_sub(f.last_try.elapsed()));
        }
        self.in_tx.then(|| COMMIT_INTERVAL.saturating_sub(self.tx_started.elapsed()))
    }

    /// Commits the open transaction; its records' text is then ready for
    /// [`Store::take_committed`]. On failure the transaction is rolled back
    /// whole and its writes go to the retry queue.
    pub(super) fn commit(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            return Ok(());
        }
        if let Err(e) = self.insert_waiting().and_then(|()| self.conn.execute_batch("COMMIT")) {
            self.fail(&e);
            return Err(e.into());
        }
        self.in_tx = false;
        self.commits += 1;
        self.release();
        Ok(())
    }

    /// The committed writes' records go out.
    fn release(&mut self) {
        for op in self.pending.drain(..) {
            if let Op::Record(row) = op {
                self.committed.push(row.body);
            }
        }
    }

    /// Hands out the JSON text of the records committed since the last call,
    /// in id order.
    pub fn take_committed(&mut self, out: &mut Vec<String>) {
        out.append(&mut self.committed);
    }

    /// Whether writes fail now (the records wait in the retry queue).
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// A write failed: the whole transaction goes (SQLite may have rolled
    /// back part or all of it; make sure it is all), with it the batch
    /// state, and its writes wait in the retry queue, in order, before the
    /// ones already waiting.
    pub(super) fn fail(&mut self, e: &rusqlite::Error) {
        if self.in_tx || !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.in_tx = false;
        self.rows = 0;
        self.unwritten = 0;
        self.coverage = self.coverage_at_begin.clone();
        // The reservation may have gone with the transaction: write it again.
        self.reserved = 0;
        if !self.run_started {
            // The run's start (and its usage recount) went with it.
            self.run_id = 0;
            self.recounted.clear();
        }
        let mut ops: VecDeque<Op> = self.pending.drain(..).collect();
        ops.append(&mut self.retry);
        self.retry = ops;
        self.bound_queue();
        match &mut self.failing {
            Some(f) => {
                f.last_try = Instant::now();
                f.error = e.to_string();
            }
            None => {
                tracing::error!(
                    error = %e,
                    queued = self.retry.len(),
                    max_queued = MAX_QUEUED,
                    "store write failed: records wait in memory and are retried every second; they reach JSON lines and OTLP once stored. Free space in the state directory (or fix the error)"
                );
                self.failing =
                    Some(Failing { since_ns: now_ns(), last_try: Instant::now(), error: e.to_string(), dropped: 0 });
            }
        }
        // A WAL that filled the disk gives its space back (when it can).
        let _ = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    }

    /// Adds an op to the retry queue, within its bound.
    pub(super) fn queue(&mut self, op: Op) {
        self.retry.push_back(op);
        self.bound_queue();
    }

    /// Past [`MAX_QUEUED`], the oldest waiting writes go, counted by reason.
    fn bound_queue(&mut self) {
        while self.retry.len() > MAX_QUEUED {
            let reason = match self.retry.pop_front() {
                Some(Op::Record(_)) => "store_queue_full",
                Some(Op::Usage(_)) => "usage_queue_full",
                // A later flush's mark covers what it covered.
                Some(Op::UsageMark(_)) => continue,
                None => break,
            };
            *self.drops.entry(reason).or_default() += 1;
            if let Some(f) = &mut self.failing {
                f.dropped += 1;
            }
        }
    }

    /// Writes the retry queue in one transaction; on success the store is
    /// writable again (logged, with how long it was not), and the interval
    /// is kept in `gaps`.
    fn replay(&mut self) -> Result<bool, StoreError> {
        if let Some(f) = &mut self.failing {
            f.last_try = Instant::now();
        }
        if self.in_tx || !self.pending.is_empty() {
            // Something began a transaction meanwhile: it goes back in line.
            self.fail(&unwritable_now());
        }
        let mut stored = 0;
        // In chunks of a transaction's size: space freed a little at a time
        // is used a little at a time.
        loop {
            // A flush's usage deltas and their mark commit together (else a
            // crash between them would recount accesses already counted).
            let mut n = self.retry.len().min(REPLAY_ROWS);
            while n < self.retry.len() && matches!(self.retry[n - 1], Op::Usage(_)) {
                n += 1;
            }
            self.pending = self.retry.drain(..n).collect();
            let last = self.retry.is_empty();
            let written = (|| {
                self.begin()?;
                if !self.run_started {
                    self.start_run(now_ns())?;
                }
                for op in &self.pending {
                    Self::write_op(&self.conn, &mut self.reserved, op)?;
                }
                if last && let Some(f) = &self.failing {
                    let detail = serde_json::json!({ "error": f.error, "records_dropped": f.dropped }).to_string();
                    self.conn.execute(
                        "INSERT INTO gaps (start_ns, end_ns, kind, detail) VALUES (?1, ?2, 'store_unwritable', ?3)",
                        params![f.since_ns, now_ns(), detail],
                    )?;
                }
                self.conn.execute_batch("COMMIT")
            })();
            if let Err(e) = written {
                self.fail(&e);
                return Err(e.into());
            }
            self.in_tx = false;
            self.run_started = true;
            self.replaced = None;
            self.commits += 1;
            stored += self.pending.len();
            self.release();
            if last {
                break;
            }
        }
        if let Some(f) = self.failing.take() {
            tracing::warn!(
                unwritable_for_s = (now_ns() - f.since_ns) / 1_000_000_000,
                stored,
                dropped = f.dropped,
                "store writes again: the waiting records are stored"
            );
        }
        let _ = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
        Ok(true)
    }

    /// Size of the database and its WAL, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let path = self.conn.path().map(PathBuf::from).unwrap_or_default();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        [path, wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    /// Clean stop: last heartbeat, the run marked stopped, committed. What
    /// still cannot be written is counted (`store_unwritable_at_stop`) and
    /// logged.
    pub fn close(&mut self, counters: &Counters) -> Result<(), StoreError> {
        if self.failing.is_some() {
            let _ = self.replay();
        }
        if self.failing.is_some() {
            let records = self.retry.iter().filter(|o| matches!(o, Op::Record(_))).count() as u64;
            *self.drops.entry("store_unwritable_at_stop").or_default() += records;
            tracing::error!(records, "stopping while the store cannot write: these records are lost");
            self.retry.clear();
            return Err(StoreError::Unwritable);
        }
        self.heartbeat(counters)?;
        let now = now_ns();
        self.begin()?;
        let marked = self
            .conn
            .execute("UPDATE runs SET stopped_ns = ?1, last_alive_ns = ?1, clean = 1 WHERE id = ?2", params![now, self.run_id]);
        if let Err(e) = marked {
            self.fail(&e);
            return Err(e.into());
        }
        self.commit()?;
        // Fold the WAL back into the database file.
        let _ = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
        Ok(())
    }
}

/// Whether a write failed for want of space or of a working disk (the
/// store then runs degraded) rather than for a fault of the agent's own.
fn unwritable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, DiskFull, SystemIoFailure};
    matches!(e.sqlite_error_code(), Some(DiskFull | SystemIoFailure | CannotOpen))
}

/// The error of a write asked for while the store cannot write.
fn unwritable_now() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("the store cannot write now (records wait in its retry queue)".into()),
    )
}

/// `OR IGNORE`: a replayed record that did reach the database (a
/// statement SQLite committed on its own after a failure) is not a reason
/// to fail the whole replay.
fn insert_row(conn: &Connection, row: &Row) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO records (id, time_ns, event_name, nhi_id, body) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![row.id, row.time_ns, row.event_name, row.nhi_id, row.body])?;
    Ok(())
}

/// [`INSERT_BATCH`] records in one statement (`OR IGNORE` as in
/// [`insert_row`]).
fn insert_rows(conn: &Connection, ops: &[Op]) -> rusqlite::Result<()> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let values = vec!["(?, ?, ?, ?, ?)"; INSERT_BATCH].join(", ");
        format!("INSERT OR IGNORE INTO records (id, time_ns, event_name, nhi_id, body) VALUES {values}")
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut at = 1;
    for op in ops {
        // Only records wait for a batch (anything else would leave its
        // parameters unbound: NULL, refused by the table).
        let Op::Record(row) = op else { continue };
        stmt.raw_bind_parameter(at, row.id)?;
        stmt.raw_bind_parameter(at + 1, row.time_ns)?;
        stmt.raw_bind_parameter(at + 2, row.event_name)?;
        stmt.raw_bind_parameter(at + 3, &row.nhi_id)?;
        stmt.raw_bind_parameter(at + 4, &row.body)?;
        at += 5;
    }
    stmt.raw_execute()?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::outbox::{open_reader, records_after};
    use crate::model::records::{AccessSource, CredentialAccess, EnvAccess, Process};

    /// Guards the retry queue: a full disk (here: the database's page limit)
    /// makes writes fail mid-transaction; nothing is handed out for JSON
    /// lines until it is stored, the batch state is reset, and once space
    /// returns every record is stored once, in order, and the outage is a gap.
    #[test]
    fn records_wait_while_the_database_cannot_write_and_are_stored_when_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let pages: i64 = s.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        s.conn.pragma_update(None, "max_page_count", pages).unwrap();
        let mut out = Vec::new();
        let mut failed = 0;
        for n in 0..2000 {
            let mut r = padded(n, &"x".repeat(400));
            if s.append(&mut r).is_err() {
                failed += 1;
            }
            if s.maybe_commit(n % 100 == 99).is_err() {
                failed += 1;
            }
            s.take_committed(&mut out);
        }
        assert!(failed > 0 && s.is_failing(), "the page limit made writes fail");
        assert!(!s.in_tx && s.pending_rows() == 0, "a failed write leaves no batch state behind");
        let stored_before = out.len();
        let reader = open_reader(dir.path()).unwrap();
        assert_eq!(records_after(&reader, 0, 10_000).unwrap().len(), stored_before, "what went out is what is stored");
        s.conn.pragma_update(None, "max_page_count", 1_000_000).unwrap();
        assert!(s.maybe_commit(true).unwrap(), "the queue is written once the database takes writes again");
        s.take_committed(&mut out);
        assert!(!s.is_failing());
        assert_eq!(out.len(), 2000, "every record stored and handed out once");
        let rows = records_after(&reader, 0, 10_000).unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<_>>(), "in order, no id twice, none missing");
        let gaps: i64 = reader.query_row("SELECT count(*) FROM gaps WHERE kind = 'store_unwritable'", [], |r| r.get(0)).unwrap();
        assert_eq!(gaps, 1, "the outage is kept as a gap");
        assert!(s.drops.is_empty(), "nothing dropped within the queue's bound: {:?}", s.drops);
    }

    #[test]
    fn record_ids_are_instance_dash_number() {
        assert_eq!(record_id("b7e1", 1), "b7e1-1");
        assert_eq!(record_id("b7e1", i64::MAX), format!("b7e1-{}", i64::MAX));
        assert_eq!(record_id("", -3), "--3");
    }

    /// Guards the page size: a new database gets [`PAGE_SIZE`] and a WAL
    /// checkpointed every 512 KiB; a database created with SQLite's
    /// default 4 KiB pages keeps them, its WAL bound still 512 KiB.
    #[test]
    fn a_new_database_gets_large_pages_and_an_old_one_keeps_its_own() {
        let page = |c: &Connection| -> (i64, i64) {
            let size = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
            let every = c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
            (size, every)
        };
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(page(&s.conn), (16 * 1024, 32));
        drop(s);
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(page(&s.conn), (16 * 1024, 32), "reopened");

        let old = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(db_path(old.path())).unwrap();
            c.pragma_update(None, "page_size", 4096).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        let mut s = Store::open(old.path(), StoreOptions::default()).unwrap();
        assert_eq!(page(&s.conn), (4096, 128), "an existing database keeps its pages");
        s.append(&mut record(1)).unwrap();
        assert!(s.maybe_commit(true).unwrap());
        let reader = open_reader(old.path()).unwrap();
        assert_eq!(records_after(&reader, 0, 10).unwrap().len(), 1);
        assert_eq!(checkpoint_pages(1 << 16), 8);
        assert_eq!(checkpoint_pages(0), 1024, "a nonsense size is taken as 512 bytes");
    }

    /// Guards the replay against writers that open a transaction while the
    /// store cannot write (the sink thread panicked on a restart on a full
    /// disk): they are refused until the queue is written.
    #[test]
    fn nothing_opens_a_transaction_while_the_store_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.fail(&unwritable_now());
        s.append(&mut record(1)).unwrap();
        assert!(s.set_sensors(&["file"]).is_err());
        assert!(s.write_conn(1).is_err());
        assert!(!s.in_tx);
        assert!(s.maybe_commit(true).unwrap());
        let mut out = Vec::new();
        s.take_committed(&mut out);
        assert_eq!(out.len(), 1);
        s.set_sensors(&["file"]).unwrap();
        s.maybe_commit(true).unwrap();
    }

    #[test]
    fn past_its_bound_the_retry_queue_drops_the_oldest_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.fail(&rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None));
        for n in 0..(MAX_QUEUED as u32 + 7) {
            s.append(&mut record(n)).unwrap();
        }
        assert_eq!(s.drops.get("store_queue_full"), Some(&7));
        assert!(s.maybe_commit(true).unwrap());
        let mut out = Vec::new();
        s.take_committed(&mut out);
        assert_eq!(out.len(), MAX_QUEUED);
        assert!(out[0].contains("-8\""), "the oldest went first: {}", out[0]);
    }

    /// Guards the integrity check at start: a damaged database used to be
    /// appended to silently, and delivery stopped for good at the damaged
    /// page; an overwritten header made the agent exit.
    #[test]
    fn a_damaged_database_is_kept_aside_and_a_new_one_started() {
        use std::io::{Seek as _, SeekFrom, Write as _};
        for (what, at, len) in [("overwritten header", 0u64, 100usize), ("random bytes mid-file", 0, 8192)] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
            for n in 0..3000 {
                let mut r = padded(n, &"y".repeat(300));
                s.append(&mut r).unwrap();
            }
            s.close(&Counters::default()).unwrap();
            drop(s);
            let path = db_path(dir.path());
            let size = std::fs::metadata(&path).unwrap().len();
            let at = if at == 0 && len > 100 { size / 2 } else { at };
            let mut junk = vec![0u8; len];
            getrandom::fill(&mut junk).unwrap();
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&junk).unwrap();
            drop(f);
            let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
            s.append(&mut record(1)).unwrap();
            s.maybe_commit(true).unwrap();
            let aside: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with("nhi-observer.db.damaged-"))
                .collect();
            assert_eq!(aside.len(), 1, "{what}: the damaged file is kept aside: {aside:?}");
            let reader = open_reader(dir.path()).unwrap();
            assert_eq!(records_after(&reader, 0, 10).unwrap().len(), 1, "{what}: a new database");
            let kind: String = reader.query_row("SELECT kind FROM gaps", [], |r| r.get(0)).unwrap();
            assert_eq!(kind, "database_replaced", "{what}");
        }
    }

    /// Guards the batched inserts: records wait for a multi-row INSERT, so
    /// a write of another kind (here the usage mark, and the run's row)
    /// must see the records before it, the batch that fills and the
    /// remainder both reach the database, each id once and in order, and
    /// nothing goes out before the commit.
    #[test]
    fn batched_records_are_stored_whole_in_order_and_before_other_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let reader = open_reader(dir.path()).unwrap();
        let n = INSERT_BATCH * 2 + 7;
        let mut out = Vec::new();
        for k in 0..n {
            s.append(&mut record(u32::try_from(k).unwrap())).unwrap();
            if k == INSERT_BATCH + 3 {
                // Not a multiple of the batch: these records wait, and the
                // mark (another table) flushes them first.
                assert!(s.unwritten > 0);
                s.usage_counted().unwrap();
                assert_eq!(s.unwritten, 0, "a write of another kind inserts the waiting records first");
                let seen: i64 = s.conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0)).unwrap();
                assert_eq!(seen, i64::try_from(k + 1).unwrap(), "the open transaction holds every record so far");
            }
        }
        s.take_committed(&mut out);
        assert!(out.is_empty(), "nothing goes out before its commit");
        assert!(s.unwritten > 0, "the last records wait for the commit");
        assert!(s.maybe_commit(true).unwrap());
        s.take_committed(&mut out);
        assert_eq!(out.len(), n);
        let rows = records_after(&reader, 0, 10_000).unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, (1..=i64::try_from(n).unwrap()).collect::<Vec<_>>());
        for (k, (_, _, body)) in rows.iter().enumerate() {
            assert_eq!(body, &out[k], "the stored text is the text handed out");
            assert!(body.contains(&format!("\"AKIA{k}\"")), "row {k} holds its own record: {body}");
        }
        let nhi_ids: i64 = reader.query_row("SELECT count(*) FROM records WHERE nhi_id = 'AKIA40'", [], |r| r.get(0)).unwrap();
        assert_eq!(nhi_ids, 1, "the columns are bound per row");
        let reserved: String =
            reader.query_row("SELECT value FROM meta WHERE key = 'id_reserved'", [], |r| r.get(0)).unwrap();
        assert!(reserved.parse::<i64>().unwrap() >= i64::try_from(n).unwrap());
    }

    /// A typed access naming `AKIA<n>`, by process `n`.
    pub(in crate::store) fn record(n: u32) -> CredentialAccess {
        padded(n, "")
    }

    /// [`record`], `pad` longer.
    fn padded(n: u32, pad: &str) -> CredentialAccess {
        CredentialAccess {
            time: SystemTime::now(),
            host_name: "h".into(),
            source: AccessSource::Env(Box::new(EnvAccess {
                kind: "aws.access_key".into(),
                id: Some(format!("AKIA{n}")),
                env_name: format!("AWS_ACCESS_KEY_ID{pad}"),
                process: Process { pid: n, ..Process::default() },
                workload: Default::default(),
            })),
            record_id: None,
        }
    }

    #[test]
    fn the_database_is_private_to_the_agent_even_in_an_open_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.append(&mut record(1)).unwrap();
        s.maybe_commit(true).unwrap();
        for name in ["nhi-observer.db", "nhi-observer.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}: {mode:o}");
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
        s.append(&mut r).unwrap();
        let instance = s.instance().to_owned();
        s.append(&mut record(2)).unwrap();
        let mut out = Vec::new();
        s.take_committed(&mut out);
        assert!(out.is_empty(), "no record text goes out before its commit");
        s.maybe_commit(true).unwrap();
        s.take_committed(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].contains(&format!("\"nhi.record.id\":\"{instance}-1\"")), "{}", out[0]);
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
