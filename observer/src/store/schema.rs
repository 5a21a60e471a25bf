//! The database schema, as migrations (`rusqlite_migration`, versioned by
//! SQLite's `user_version`). A migration is never edited once released:
//! changes are new entries at the end. `docs/design.md` documents every
//! table; the report command (shadow and unused findings) reads them.
use rusqlite_migration::{M, Migrations};

/// Version 1: records (the raw observations and usage snapshots, also the
/// export queue), usage and its destinations, runs and coverage intervals,
/// export cursors and the agent's metadata.
const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Every record the agent emits (except its own stats): credential accesses,
-- rotations, connections and usage snapshots. `id` is the record id
-- (never reused: see meta.id_reserved); the exporter delivers rows in id
-- order behind a cursor. Pruned after the retention once delivered.
CREATE TABLE records (
    id         INTEGER PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    event_name TEXT NOT NULL,
    nhi_id     TEXT,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX records_time ON records (time_ns);
CREATE INDEX records_nhi_id ON records (nhi_id) WHERE nhi_id IS NOT NULL;

-- One row per (credential, source, consumer): cumulative since first seen.
CREATE TABLE usage (
    id            INTEGER PRIMARY KEY,
    usage_key     TEXT NOT NULL UNIQUE,
    nhi_id        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,
    host          TEXT NOT NULL,
    consumer      TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    accesses      INTEGER NOT NULL,
    connections   INTEGER NOT NULL
) STRICT;
CREATE INDEX usage_nhi_id ON usage (nhi_id);

-- Where a usage's connections went, per link confidence.
CREATE TABLE usage_destinations (
    usage_id       INTEGER NOT NULL REFERENCES usage (id) ON DELETE CASCADE,
    server_address TEXT NOT NULL,
    server_port    INTEGER NOT NULL,
    confidence     TEXT NOT NULL CHECK (confidence IN ('direct', 'inferred')),
    first_seen_ns  INTEGER NOT NULL,
    last_seen_ns   INTEGER NOT NULL,
    connections    INTEGER NOT NULL,
    PRIMARY KEY (usage_id, server_address, server_port, confidence)
) STRICT;

-- One row per agent start. `last_alive_ns` moves at every heartbeat (1 s); a run
-- that ended without a clean stop (kill -9, crash, power loss) keeps it as
-- its end: the gap to the next run is time nothing was watched.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    started_ns    INTEGER NOT NULL,
    last_alive_ns INTEGER NOT NULL,
    stopped_ns    INTEGER,
    clean         INTEGER NOT NULL DEFAULT 0,
    pid           INTEGER NOT NULL,
    version       TEXT NOT NULL,
    sensors       TEXT NOT NULL
) STRICT;

-- Watched intervals of a run, with what was lost in each: events the
-- kernel could not queue (per kind), records the agent could not decode.
CREATE TABLE coverage (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    events_received INTEGER NOT NULL,
    events_lost     INTEGER NOT NULL,
    decode_errors   INTEGER NOT NULL,
    drops           TEXT NOT NULL
) STRICT;
CREATE INDEX coverage_time ON coverage (start_ns);

-- Delivery cursors: the last record id each exporter has delivered.
CREATE TABLE cursors (
    name       TEXT PRIMARY KEY,
    last_id    INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
) STRICT;
"#;

/// Version 2: what the store itself could not keep, so that evidence built
/// on it can say so: `gaps` (intervals the database could not be written,
/// or a damaged database set aside) and `rejected` (records an exporter's
/// collector refused for good, kept aside with the reason).
const V2: &str = r#"
-- Intervals in which this database missed what the agent saw: the store
-- could not write (kind 'store_unwritable': disk full, I/O error), or the
-- database before this one was damaged and set aside (kind
-- 'database_replaced', start = end = when). `detail` is JSON.
CREATE TABLE gaps (
    id       INTEGER PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns   INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
) STRICT;

-- Records a collector refused for good (a non-retryable OTLP answer):
-- delivery moved past them; they are kept here with the reason.
CREATE TABLE rejected (
    record_id   INTEGER NOT NULL,
    exporter    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    rejected_ns INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (exporter, record_id)
) STRICT;
"#;

/// Version 3: findings and the facts they are judged on that records
/// alone do not keep (records are pruned; these tables are not): the
/// files holding each credential, who created them, and each finding's
/// lifecycle state.
const V3: &str = r#"
-- One row per (credential, file): where a credential is stored, from the
-- at-rest scan and from accesses. Mode, owner and the nearest
-- world-writable directory are refreshed at each findings evaluation.
CREATE TABLE credential_files (
    nhi_id             TEXT NOT NULL,
    kind               TEXT NOT NULL,
    path               TEXT NOT NULL,
    first_seen_ns      INTEGER NOT NULL,
    last_seen_ns       INTEGER NOT NULL,
    at_rest            INTEGER NOT NULL DEFAULT 0,
    present            INTEGER NOT NULL DEFAULT 1,
    mode               INTEGER,
    owner_uid          INTEGER,
    world_writable_dir TEXT,
    expires_ns         INTEGER,
    record_id          TEXT,
    PRIMARY KEY (nhi_id, path)
) STRICT;
CREATE INDEX credential_files_path ON credential_files (path);

-- The last creating open (O_CREAT) of each credential file: who, from
-- which terminal, and how many such opens were seen.
CREATE TABLE file_creations (
    path       TEXT PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    record_id  TEXT NOT NULL,
    executable TEXT,
    uid        INTEGER,
    tty        TEXT,
    count      INTEGER NOT NULL
) STRICT;

-- Every finding ever opened, with its current state (open, resolved) and
-- its last emitted form (JSON): a restart does not re-open what is open.
CREATE TABLE findings (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    nhi_id     TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    severity   TEXT NOT NULL,
    opened_ns  INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX findings_nhi_id ON findings (nhi_id);
"#;

pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

static MIGRATIONS: &[M<'static>] = &[M::up(V1), M::up(V2), M::up(V3)];

/// The schema version this agent writes.
pub const VERSION: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
        assert_eq!(MIGRATIONS.len(), VERSION);
    }
}
