//! Store: the agent's durable state, SQLite in WAL mode in the state
//! directory (`<state_dir>/nhi-observer.db`).
//!
//! Input (on the sink thread, the only writer of everything but cursors):
//! records as the pipeline emits them, usage deltas from the correlator,
//! and the agent's loss counters. Output: the `records` table, which the
//! exporter reads behind its cursor (its own connection, `export::otlp`),
//! cumulative `usage`, and `runs`/`coverage`, which say what was watched
//! when and what was lost.
//!
//! Invariants:
//! - writes are batched: one transaction is open at a time and committed by
//!   [`Store::maybe_commit`] when it holds [`COMMIT_ROWS`] rows or is
//!   [`COMMIT_INTERVAL`] old (never per event, never unbounded); a commit
//!   survives `kill -9` (WAL, `synchronous = NORMAL`: a power loss may take
//!   the last commits, a process crash cannot);
//! - record ids are never reused, even after a crash: ids are handed out
//!   from a block reserved (and committed) ahead in `meta.id_reserved`, so
//!   a record the JSON lines output saw but the database lost cannot share
//!   its id with a later one;
//! - bounded: delivered records older than the retention are deleted; past
//!   `max_records`, the oldest go even undelivered (counted, logged as the
//!   data loss it is).
//!
//! Findings' facts and lifecycle state: `evidence.rs`.
//!
//! Schema: `schema.rs` (versioned migrations), documented in docs/design.md.
mod db;
pub mod evidence;
pub mod schema;

pub use db::{
    COMMIT_INTERVAL, COMMIT_ROWS, CURSOR_OTLP_LOGS, Counters, DestinationRow, Interval, Store, StoreError,
    StoreOptions, UsageRow, backlog, coverage, cursor, db_path, open_reader, records_after, set_cursor,
    time as db_time,
};
