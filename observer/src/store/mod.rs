//! Store: the agent's durable state, SQLite in WAL mode in the state
//! directory (`<state_dir>/nhi-observer.db`).
//!
//! Input (on the sink thread, the only writer of everything but cursors
//! and `rejected`):
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
//! - store first: a record's JSON text is handed out (for JSON lines) only
//!   once its transaction committed ([`Store::take_committed`]);
//! - a failed write rolls its whole transaction back; its writes wait, in
//!   order, in a bounded retry queue (drops counted by reason in
//!   [`Store::drops`]), replayed once a second; nothing else opens a
//!   transaction meanwhile; the outage is kept in `gaps`;
//! - record ids are never reused, even after a crash: ids are handed out
//!   from a block reserved in `meta.id_reserved`, written in the
//!   transaction that first holds an id past the block;
//! - a damaged database is set aside at start, never appended to;
//! - bounded: delivered records older than the retention are deleted (in
//!   batches); past `max_records`, the oldest go even undelivered (counted,
//!   logged as the data loss it is); the WAL is checkpointed by the writer
//!   and cut back to 512 KiB.
//!
//! Schema: `schema.rs` (versioned migrations), documented in docs/design.md.
//!
//! Files, by role: `writer` (the [`Store`], its batched transactions and
//! record ids), `usage` (cumulative usage and destinations), `outbox` (the
//! records the exporters read behind their cursors, and retention),
//! `coverage` (runs and watched intervals), `lock` (one agent per state
//! directory), `evidence` (the findings' facts and lifecycle state),
//! `schema` (migrations).
mod coverage;
pub mod evidence;
mod lock;
mod outbox;
pub mod schema;
mod usage;
mod usage_record;
mod writer;

pub use coverage::{Counters, Interval, coverage};
pub use lock::{LOCK_FILE, LockError, StateLock, lock};
pub use outbox::{CURSOR_OTLP_LOGS, backlog, cursor, open_reader, records_after, reject, set_cursor};
pub use usage::{DestinationRow, UsageRow};
pub use writer::{COMMIT_INTERVAL, COMMIT_ROWS, Store, StoreError, StoreOptions, db_path, record_id, time as db_time};
pub use usage_record::{MAX_LISTED_DESTINATIONS, usage_id, usage_record};
