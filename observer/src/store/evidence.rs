//! The findings' side of the store: what the engine is judged on
//! (`credential_files`, `file_creations`, usage, coverage) and the
//! findings' lifecycle state (`findings`).
//!
//! Input (writer, on the sink thread, on the findings timer): new records
//! read behind the `findings` cursor (accesses name files and creators),
//! the at-rest scan's credentials, `stat` of known files. Output (readers:
//! the agent's evaluation, `nhi-observer report` on a read-only
//! connection): [`Facts`] and the stored findings.
//!
//! Invariants: never per event (a timer drives it); the `findings` cursor
//! is not an export cursor, so it never holds records back from pruning;
//! at most [`INGEST_BATCH`] records per call, so one evaluation is bounded.
use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    time::SystemTime,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use serde_json::Value as Json;

use super::writer::{Store, StoreError, db_path, i, now_ns, ns, time, u};
use crate::model::records::FileAccess;
use crate::findings::{
    Coverage, Creation, CredFile, Credential, Destination, Facts, Finding, Span, State, Usage, Workload,
};

/// The findings' reader cursor over `records`.
pub const CURSOR_FINDINGS: &str = "findings";
/// Most records read per ingestion.
pub const INGEST_BATCH: usize = 20_000;
/// How a file access's stored JSON text names its source (the ingest's
/// filter; `the_ingest_reads_file_accesses_and_passes_over_env_and_imds_ones`
/// fails if the store's text stops writing it so).
const FILE_SOURCE: &str = r#""nhi.source":"file""#;
/// Record ids kept as evidence per credential.
const EVIDENCE_IDS: usize = 8;

/// A credential file found at rest by the scan.
#[derive(Debug, Clone)]
pub struct AtRest {
    pub path: String,
    pub nhi_id: String,
    pub kind: String,
    pub expires: Option<SystemTime>,
}

/// Opens the database read-only (the report): no lock is taken that the
/// running agent would wait for, nothing is migrated or written.
pub fn open_read_only(state_dir: &Path) -> Result<Connection, StoreError> {
    let path = db_path(state_dir);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|source| StoreError::Open { path: path.clone(), source })?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|source| StoreError::Open { path: path.clone(), source })?;
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| StoreError::Open { path: path.clone(), source })?;
    let found = usize::try_from(found).unwrap_or(0);
    let supported = super::schema::VERSION;
    if found > supported {
        return Err(StoreError::TooNew { path, found, supported });
    }
    if found < supported {
        return Err(StoreError::TooOld { path, found, supported });
    }
    Ok(conn)
}

fn s<'a>(v: &'a Json, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Json::as_str)
}

fn expiry_of(facts: &crate::model::records::Facts) -> Option<SystemTime> {
    ["nhi.credential.expires_at", "nhi.x509.not_after"]
        .iter()
        .filter_map(|k| facts.0.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str()))
        .find_map(crate::inventory::parse_expiry)
}

/// A stored file access or rotation (its JSON text, read back as the typed
/// record) and the credentials it names in its file: an access's `nhi.id`,
/// a rotation's identities after the change. `None` for other records.
fn file_access(event: &str, body: &str) -> Option<(FileAccess, Vec<String>)> {
    use crate::model::{EVENT_CREDENTIAL_ROTATION, from_json, records::{AccessSource, CredentialAccess, Rotation}};
    if event == EVENT_CREDENTIAL_ROTATION {
        let r: Rotation = from_json(body)?;
        let ids = r.change.current_ids.split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect();
        return Some((r.access, ids));
    }
    let AccessSource::File(f) = from_json::<CredentialAccess>(body)?.source else { return None };
    let ids = f.identity.id.iter().cloned().collect();
    Some((*f, ids))
}

/// The nearest ancestor directory anyone may write to (sticky or not).
fn world_writable_dir(path: &Path) -> Option<String> {
    path.ancestors().skip(1).find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        (m.is_dir() && m.permissions().mode() & 0o002 != 0).then(|| d.to_string_lossy().into_owned())
    })
}

impl Store {
    /// Reads the next records after the findings cursor, at most
    /// [`INGEST_BATCH`] of them (of any kind): file accesses and rotations
    /// name the files holding each credential; creating opens name who
    /// created a credential file. Returns how many records it went
    /// through ([`INGEST_BATCH`]: there may be more).
    pub fn ingest_records(&mut self) -> Result<usize, StoreError> {
        let after = super::cursor(self.read_conn(), CURSOR_FINDINGS)?;
        let instance = self.instance().to_owned();
        // The window: the next records by id, whatever their kind, so one
        // call is bounded however few of them name files.
        let (scanned, upto): (i64, Option<i64>) = self.read_conn().prepare_cached(
            "SELECT count(*), max(id) FROM (SELECT id FROM records WHERE id > ?1 ORDER BY id LIMIT ?2)",
        )?
        .query_row(params![after, i(INGEST_BATCH as u64)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let Some(upto) = upto else { return Ok(0) };
        let scanned = usize::try_from(scanned).unwrap_or(0);
        let rows: Vec<(i64, i64, String, String)> = {
            // Only what names files: rotations, and accesses whose
            // `nhi.source` is `file`. Environment and metadata-service
            // accesses (one per credential variable of every exec) are
            // passed over in SQL, never copied out and deserialised here.
            // The test is a substring search, not a JSON parse (which
            // would cost every file access as much again as it saves on
            // the others): the store's text (`typed_json`, serde_json's
            // compact form) writes the attribute as `"nhi.source":"file"`,
            // and a string value cannot hold that sequence (its quotes are
            // escaped), so no file access is missed; `file_access` still
            // reads each row passed, and a body that is not JSON cannot
            // fail the query. `cargo bench --bench store -- ingest`: 2.8
            // us per passed-over environment access (most of it reading
            // the rows' pages), against 5.5-8 us to read out and
            // deserialise each.
            let mut stmt = self.read_conn().prepare_cached(
                "SELECT id, time_ns, event_name, body FROM records WHERE id > ?1 AND id <= ?2
                 AND (event_name = 'nhi.credential.rotation'
                      OR (event_name = 'nhi.credential.access' AND instr(body, ?3) > 0))
                 ORDER BY id",
            )?;
            stmt.query_map(params![after, upto, FILE_SOURCE], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let n = rows.len();
        let conn = self.write_conn(n + 1)?;
        for (id, time_ns, event, body) in rows {
            let Some((access, ids)) = file_access(&event, &body) else { continue };
            let record_id = format!("{instance}-{id}");
            let path = access.open.path.as_str();
            if access.open.result >= 0 && access.open.create {
                conn.prepare_cached(
                    "INSERT INTO file_creations (path, time_ns, record_id, executable, uid, tty, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                     ON CONFLICT (path) DO UPDATE SET time_ns = excluded.time_ns, record_id = excluded.record_id,
                       executable = excluded.executable, uid = excluded.uid, tty = excluded.tty, count = count + 1",
                )?
                .execute(params![
                    path,
                    time_ns,
                    record_id,
                    access.process.executable_path,
                    access.process.user_id,
                    access.workload.tty
                ])?;
            }
            let kind = access.kind.as_deref().unwrap_or("");
            let expires = expiry_of(&access.identity.facts);
            for nhi_id in ids {
                upsert_file(conn, &nhi_id, kind, path, time_ns, false, expires, Some(&record_id))?;
            }
        }
        super::set_cursor(conn, CURSOR_FINDINGS, upto)?;
        Ok(scanned)
    }

    /// Credentials the at-rest scan found.
    pub fn add_at_rest(&mut self, found: &[AtRest]) -> Result<(), StoreError> {
        let now = now_ns();
        let conn = self.write_conn(found.len())?;
        for f in found {
            upsert_file(conn, &f.nhi_id, &f.kind, &f.path, now, true, f.expires, None)?;
        }
        Ok(())
    }

    /// Looks at every known credential file again: still there, its mode,
    /// owner and the nearest world-writable directory above it.
    pub fn refresh_files(&mut self) -> Result<(), StoreError> {
        let paths: Vec<String> = {
            let mut stmt = self.read_conn().prepare_cached("SELECT DISTINCT path FROM credential_files")?;
            stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        let conn = self.write_conn(paths.len())?;
        for p in paths {
            let path = Path::new(&p);
            match std::fs::symlink_metadata(path) {
                Ok(m) => conn
                    .prepare_cached(
                        "UPDATE credential_files SET present = 1, mode = ?2, owner_uid = ?3, world_writable_dir = ?4 WHERE path = ?1",
                    )?
                    .execute(params![p, m.mode() & 0o7777, m.uid(), world_writable_dir(path)])?,
                Err(_) => conn.prepare_cached("UPDATE credential_files SET present = 0 WHERE path = ?1")?.execute([&p])?,
            };
        }
        Ok(())
    }

    /// The stored findings (open and resolved), by id.
    pub fn findings(&self) -> Result<HashMap<String, Finding>, StoreError> {
        Ok(load_findings(self.read_conn())?)
    }

    /// Stores the findings' new state.
    pub fn save_findings(&mut self, findings: &[Finding]) -> Result<(), StoreError> {
        let now = now_ns();
        let conn = self.write_conn(findings.len())?;
        for f in findings {
            let body = serde_json::to_string(f).unwrap_or_default();
            conn.prepare_cached(
                "INSERT INTO findings (id, type, nhi_id, state, severity, opened_ns, updated_ns, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, severity = excluded.severity,
                   opened_ns = CASE WHEN findings.state = 'resolved' AND excluded.state = 'open' THEN excluded.opened_ns ELSE findings.opened_ns END,
                   updated_ns = excluded.updated_ns, body = excluded.body",
            )?
            .execute(params![f.id, f.kind.as_str(), f.nhi_id, f.state.as_str(), f.severity.as_str(), now, body])?;
        }
        Ok(())
    }

    /// The facts as committed and pending in this transaction.
    pub fn facts(&self) -> Result<Facts, StoreError> {
        Ok(load_facts(self.read_conn())?)
    }

    /// When this state directory's coverage began.
    pub fn tracked_since(&self) -> Result<Option<SystemTime>, StoreError> {
        Ok(tracked_since(self.read_conn())?)
    }
}

#[allow(clippy::too_many_arguments)]
fn upsert_file(
    conn: &Connection,
    nhi_id: &str,
    kind: &str,
    path: &str,
    time_ns: i64,
    at_rest: bool,
    expires: Option<SystemTime>,
    record_id: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO credential_files (nhi_id, kind, path, first_seen_ns, last_seen_ns, at_rest, present, expires_ns, record_id)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, 1, ?6, ?7)
         ON CONFLICT (nhi_id, path) DO UPDATE SET
           kind = CASE WHEN excluded.kind = '' THEN kind ELSE excluded.kind END,
           first_seen_ns = min(first_seen_ns, excluded.first_seen_ns),
           last_seen_ns = max(last_seen_ns, excluded.last_seen_ns),
           at_rest = max(at_rest, excluded.at_rest),
           present = 1,
           expires_ns = coalesce(excluded.expires_ns, expires_ns),
           record_id = coalesce(excluded.record_id, record_id)",
    )?
    .execute(params![nhi_id, kind, path, time_ns, at_rest, expires.map(ns), record_id])?;
    Ok(())
}

pub fn load_findings(conn: &Connection) -> rusqlite::Result<HashMap<String, Finding>> {
    let mut stmt = conn.prepare_cached("SELECT body FROM findings")?;
    let bodies: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Finding>(b).ok())
        .map(|f| (f.id.clone(), f))
        .collect())
}

/// Open findings only.
pub fn open_findings(conn: &Connection) -> rusqlite::Result<Vec<Finding>> {
    let mut v: Vec<Finding> = load_findings(conn)?.into_values().filter(|f| f.state == State::Open).collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(v)
}

pub fn tracked_since(conn: &Connection) -> rusqlite::Result<Option<SystemTime>> {
    let v: Option<i64> =
        conn.query_row("SELECT min(start_ns) FROM coverage WHERE end_ns > start_ns", [], |r| r.get(0))?;
    Ok(v.map(time))
}

fn instance(conn: &Connection) -> rusqlite::Result<String> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}

fn workload(consumer: &str) -> Workload {
    let v: Json = serde_json::from_str(consumer).unwrap_or(Json::Null);
    let st = |k: &str| s(&v, k).map(str::to_owned);
    Workload {
        executable: st("process.executable.path"),
        user_id: v.get("process.user.id").and_then(Json::as_i64),
        interactive: v.get("process.interactive").and_then(Json::as_bool).unwrap_or(false),
        systemd_unit: st("nhi.systemd.unit"),
        container_image: st("container.image.name"),
        container_id: st("container.id"),
        k8s_namespace: st("k8s.namespace.name"),
        k8s_service_account: st("nhi.k8s.service_account"),
    }
}

/// Everything the engine judges, from the database.
pub fn load_facts(conn: &Connection) -> rusqlite::Result<Facts> {
    let instance = instance(conn)?;
    let mut creds: BTreeMap<String, Credential> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT nhi_id, kind, path, first_seen_ns, last_seen_ns, at_rest, present, mode, owner_uid,
                    world_writable_dir, expires_ns, record_id
             FROM credential_files ORDER BY nhi_id, path",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let nhi_id: String = r.get(0)?;
            let kind: String = r.get(1)?;
            let c = creds.entry(nhi_id.clone()).or_insert_with(|| Credential {
                nhi_id,
                kind: kind.clone(),
                files: Vec::new(),
                expires_at: None,
                record_ids: Vec::new(),
            });
            if c.kind.is_empty() {
                c.kind = kind;
            }
            if let Some(e) = r.get::<_, Option<i64>>(10)? {
                c.expires_at = Some(time(e));
            }
            c.files.push(CredFile {
                path: r.get(2)?,
                first_seen: time(r.get(3)?),
                last_seen: time(r.get(4)?),
                at_rest: r.get::<_, i64>(5)? != 0,
                present: r.get::<_, i64>(6)? != 0,
                mode: r.get::<_, Option<i64>>(7)?.and_then(|m| u32::try_from(m).ok()),
                owner_uid: r.get::<_, Option<i64>>(8)?.and_then(|m| u32::try_from(m).ok()),
                world_writable_dir: r.get(9)?,
                record_id: r.get(11)?,
            });
        }
    }
    let mut usages = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, nhi_id, kind, source, consumer, first_seen_ns, last_seen_ns, accesses, connections FROM usage ORDER BY id",
        )?;
        let rows: Vec<(i64, Usage)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Usage {
                        nhi_id: r.get(1)?,
                        kind: r.get(2)?,
                        source: r.get(3)?,
                        workload: workload(&r.get::<_, String>(4)?),
                        first_seen: time(r.get(5)?),
                        last_seen: time(r.get(6)?),
                        accesses: u(r.get(7)?),
                        connections: u(r.get(8)?),
                        destinations: Vec::new(),
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut dest = conn.prepare_cached(
            "SELECT server_address, min(first_seen_ns), max(last_seen_ns), sum(connections) FROM usage_destinations
             WHERE usage_id = ?1 GROUP BY server_address ORDER BY server_address",
        )?;
        for (id, mut usage) in rows {
            usage.destinations = dest
                .query_map([id], |r| {
                    Ok(Destination {
                        server_address: r.get(0)?,
                        first_seen: time(r.get(1)?),
                        last_seen: time(r.get(2)?),
                        connections: u(r.get(3)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            usages.push(usage);
        }
    }
    {
        let mut ids = conn.prepare_cached("SELECT id FROM records WHERE nhi_id = ?1 ORDER BY id DESC LIMIT ?2")?;
        let names: Vec<String> = creds.keys().cloned().chain(usages.iter().map(|u| u.nhi_id.clone())).collect();
        for name in names {
            let list: Vec<String> = ids
                .query_map(params![name, i(EVIDENCE_IDS as u64)], |r| r.get::<_, i64>(0))?
                .map(|r| r.map(|id| format!("{instance}-{id}")))
                .collect::<rusqlite::Result<_>>()?;
            if let Some(c) = creds.get_mut(&name) {
                c.record_ids = list;
            } else if !list.is_empty() {
                // Known from usage only (environment variables, metadata
                // service): a credential without files, with evidence.
                let kind = usages.iter().find(|u| u.nhi_id == name).map(|u| u.kind.clone()).unwrap_or_default();
                creds.insert(
                    name.clone(),
                    Credential { nhi_id: name, kind, files: Vec::new(), expires_at: None, record_ids: list },
                );
            }
        }
    }
    let creations = {
        let mut stmt =
            conn.prepare_cached("SELECT path, time_ns, record_id, executable, uid, tty, count FROM file_creations ORDER BY path")?;
        stmt.query_map([], |r| {
            Ok(Creation {
                path: r.get(0)?,
                time: time(r.get(1)?),
                record_id: r.get(2)?,
                executable: r.get(3)?,
                user_id: r.get(4)?,
                tty: r.get(5)?,
                count: u(r.get(6)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    Ok(Facts { credentials: creds.into_values().collect(), usages, creations, coverage: load_coverage(conn)? })
}

/// Watched intervals, adjacent ones merged (a run writes one per
/// coverage period).
pub fn load_coverage(conn: &Connection) -> rusqlite::Result<Coverage> {
    let mut stmt = conn.prepare_cached(
        "SELECT start_ns, end_ns, events_lost FROM coverage WHERE end_ns > start_ns ORDER BY start_ns, id",
    )?;
    let rows: Vec<(i64, i64, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    // Intervals closer than this are one (heartbeats are a second apart).
    const JOIN_NS: i64 = 3_000_000_000;
    let mut watched: Vec<Span> = Vec::new();
    for (start, end, lost) in rows {
        match watched.last_mut() {
            Some(last) if start <= ns(last.end) + JOIN_NS => {
                last.end = last.end.max(time(end));
                last.events_lost += u(lost);
            }
            _ => watched.push(Span { start: time(start), end: time(end), watched: true, events_lost: u(lost) }),
        }
    }
    Ok(Coverage { tracked_since: watched.first().map(|s| s.start), watched })
}

/// Lost events per kind in `[from, to]` (the coverage rows' `drops`).
pub fn drops_by_kind(conn: &Connection, from: SystemTime, to: SystemTime) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare_cached("SELECT drops FROM coverage WHERE end_ns >= ?1 AND start_ns <= ?2")?;
    let rows: Vec<String> = stmt.query_map(params![ns(from), ns(to)], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let mut out = BTreeMap::new();
    for r in rows {
        if let Ok(m) = serde_json::from_str::<BTreeMap<String, u64>>(&r) {
            for (k, v) in m {
                *out.entry(k).or_insert(0) += v;
            }
        }
    }
    Ok(out)
}

/// The runs: (started, stopped or last alive, clean, sensors).
pub fn runs(conn: &Connection) -> rusqlite::Result<Vec<(SystemTime, SystemTime, bool, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT started_ns, coalesce(stopped_ns, last_alive_ns), clean, sensors FROM runs ORDER BY id")?;
    stmt.query_map([], |r| Ok((time(r.get(0)?), time(r.get(1)?), r.get::<_, i64>(2)? != 0, r.get(3)?)))?.collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        model::records::CredentialAccess,
        findings::{FindingType, Settings, evaluate, lifecycle::reconcile},
        store::StoreOptions,
    };

    fn access(path: &str, id: Option<&str>, create: bool, tty: Option<&str>) -> CredentialAccess {
        use crate::model::records::{AccessSource, FileAccess, FileOpen, Identity, Process, Workload};
        CredentialAccess {
            time: SystemTime::now(),
            host_name: "".into(),
            source: AccessSource::File(Box::new(FileAccess {
                kind: Some("aws.access_key".into()),
                open: FileOpen { path: path.into(), create, result: 3, ..FileOpen::default() },
                process: Process {
                    user_id: 1000,
                    executable_path: Some("/usr/bin/tee".into()),
                    ..Process::default()
                },
                workload: Workload { tty: tty.map(str::to_owned), ..Workload::default() },
                identity: Identity { id: id.map(str::to_owned), ..Identity::default() },
                ..FileAccess::default()
            })),
            record_id: None,
        }
    }

    /// Guards the reading of rotation records: their identities after the
    /// change are a comma-separated list (read as an array before, so a
    /// rotation named no credential's file).
    #[test]
    fn a_rotation_names_its_file_for_the_identities_after_the_change() {
        use crate::model::records::{AccessSource, Rotation, RotationIds};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let path = path.to_str().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let AccessSource::File(access) = access(path, None, false, None).source else { unreachable!() };
        s.append(&mut Rotation {
            time: SystemTime::now(),
            host_name: "".into(),
            source: "file",
            access: *access,
            change: RotationIds {
                previous_ids: "AKIAOLD".into(),
                current_ids: "AKIANEW1,AKIANEW2".into(),
                identity_changed: true,
            },
            record_id: None,
        })
        .unwrap();
        s.maybe_commit(true).unwrap();
        assert_eq!(s.ingest_records().unwrap(), 1);
        let facts = s.facts().unwrap();
        let mut named: Vec<&str> =
            facts.credentials.iter().filter(|c| c.files.iter().any(|f| f.path == path)).map(|c| c.nhi_id.as_str()).collect();
        named.sort_unstable();
        assert_eq!(named, ["AKIANEW1", "AKIANEW2"]);
    }

    /// Guards the ingest's filter in SQL: environment and metadata-service
    /// accesses (and a row that is not JSON) are passed over without
    /// failing the ingest or moving the cursor short of them, file
    /// accesses around them still name their files, and every record is
    /// still in the outbox for the exporters.
    #[test]
    fn the_ingest_reads_file_accesses_and_passes_over_env_and_imds_ones() {
        use crate::model::records::{AccessSource, CredentialAccess, ImdsAccess};
        use crate::store::outbox::{open_reader, records_after};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let path = path.to_str().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let imds = || CredentialAccess {
            time: SystemTime::now(),
            host_name: "h".into(),
            source: AccessSource::Imds(Box::new(ImdsAccess {
                id: Some("role-IMDS".into()),
                provider: "aws",
                operation: "credentials",
                method: "GET".into(),
                url_path: "/latest/meta-data/iam/security-credentials/role".into(),
                ..ImdsAccess::default()
            })),
            record_id: None,
        };
        s.append(&mut crate::store::writer::tests::record(1)).unwrap();
        s.append(&mut access(path, Some("AKIAFILE1"), false, None)).unwrap();
        s.append(&mut imds()).unwrap();
        s.append(&mut crate::store::writer::tests::record(2)).unwrap();
        s.append(&mut access(path, Some("AKIAFILE2"), false, None)).unwrap();
        s.maybe_commit(true).unwrap();
        // A row no agent wrote: not JSON, under the access event's name.
        s.write_conn(1)
            .unwrap()
            .execute(
                "INSERT INTO records (id, time_ns, event_name, body) VALUES (1000, 0, 'nhi.credential.access', 'not json')",
                [],
            )
            .unwrap();
        s.append(&mut crate::store::writer::tests::record(3)).unwrap();
        s.maybe_commit(true).unwrap();
        assert_eq!(s.ingest_records().unwrap(), 7, "went through every record");
        let facts = s.facts().unwrap();
        let mut named: Vec<&str> = facts.credentials.iter().map(|c| c.nhi_id.as_str()).collect();
        named.sort_unstable();
        assert_eq!(named, ["AKIAFILE1", "AKIAFILE2"], "only file accesses name files");
        let max: i64 = s.read_conn().query_row("SELECT max(id) FROM records", [], |r| r.get(0)).unwrap();
        assert_eq!(crate::store::cursor(s.read_conn(), CURSOR_FINDINGS).unwrap(), max, "the cursor is past them all");
        assert_eq!(s.ingest_records().unwrap(), 0, "nothing left");
        s.maybe_commit(true).unwrap();
        let bodies: Vec<String> =
            records_after(&open_reader(dir.path()).unwrap(), 0, 100).unwrap().into_iter().map(|r| r.2).collect();
        for needle in ["AKIA1", "AKIA2", "AKIA3", "role-IMDS", "AKIAFILE1", "AKIAFILE2", "not json"] {
            assert_eq!(
                bodies.iter().filter(|b| b.contains(&format!("\"{needle}\"")) || *b == needle).count(),
                1,
                "{needle} is in the outbox once: {bodies:?}"
            );
        }
    }

    /// Guards the bound of one ingest: at most `INGEST_BATCH` records
    /// gone through per call, whatever their kind (environment accesses
    /// are passed over in SQL, which must not make one call read a whole
    /// backlog), and a file access past the first window is read by the
    /// next call.
    #[test]
    fn one_ingest_goes_through_at_most_a_batch_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let path = path.to_str().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for n in 0..INGEST_BATCH {
            s.append(&mut crate::store::writer::tests::record(u32::try_from(n).unwrap())).unwrap();
            if n % 2000 == 1999 {
                s.maybe_commit(true).unwrap();
            }
        }
        s.append(&mut access(path, Some("AKIAPAST"), false, None)).unwrap();
        s.maybe_commit(true).unwrap();
        assert_eq!(s.ingest_records().unwrap(), INGEST_BATCH, "a full window: there may be more");
        assert!(s.facts().unwrap().credentials.iter().all(|c| c.nhi_id != "AKIAPAST"), "not read yet");
        assert_eq!(s.ingest_records().unwrap(), 1);
        assert!(s.facts().unwrap().credentials.iter().any(|c| c.nhi_id == "AKIAPAST"), "read by the next call");
    }

    #[test]
    fn the_report_reads_only_a_database_of_its_own_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        assert!(open_read_only(dir.path()).is_ok());
        for (version, older) in [(crate::store::schema::VERSION - 1, true), (crate::store::schema::VERSION + 1, false)] {
            let conn = rusqlite::Connection::open(db_path(dir.path())).unwrap();
            conn.pragma_update(None, "user_version", i64::try_from(version).unwrap()).unwrap();
            drop(conn);
            match open_read_only(dir.path()) {
                Err(StoreError::TooOld { found, .. }) if older => assert_eq!(found, version),
                Err(StoreError::TooNew { found, .. }) if !older => assert_eq!(found, version),
                Err(e) => panic!("refused for another reason: {e}"),
                Ok(_) => panic!("schema {version} was read"),
            }
        }
    }

    #[test]
    fn records_become_facts_and_findings_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "x").unwrap();
        let path = file.to_str().unwrap();
        let mut s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.watching(SystemTime::now(), &Default::default()).unwrap();
        s.append(&mut access(path, None, true, Some("pts/1"))).unwrap();
        s.append(&mut access(path, Some("AKIA1"), false, None)).unwrap();
        s.add_at_rest(&[AtRest { path: "/gone/credentials".into(), nhi_id: "AKIA2".into(), kind: "aws.access_key".into(), expires: None }])
            .unwrap();
        assert_eq!(s.ingest_records().unwrap(), 2);
        assert_eq!(s.ingest_records().unwrap(), 0, "the cursor moved past them");
        s.refresh_files().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.heartbeat(&Default::default()).unwrap();
        let facts = s.facts().unwrap();
        let one = facts.credentials.iter().find(|c| c.nhi_id == "AKIA1").unwrap();
        assert_eq!(one.files[0].path, path);
        assert!(one.files[0].present && one.files[0].mode.is_some());
        assert_eq!(one.record_ids.len(), 1, "the access that named it");
        let two = facts.credentials.iter().find(|c| c.nhi_id == "AKIA2").unwrap();
        assert!(!two.files[0].present && two.files[0].at_rest, "scanned, since deleted");
        assert_eq!(facts.creations.len(), 1);
        assert_eq!(facts.creations[0].tty.as_deref(), Some("pts/1"));
        assert!(facts.coverage.tracked_since.is_some());

        let now = SystemTime::now();
        let eval = evaluate(&facts, None, &Settings::default(), now);
        assert!(eval.findings.iter().any(|f| f.kind == FindingType::Created && f.nhi_id == "AKIA1"));
        let changes = reconcile(&s.findings().unwrap(), eval.findings, now);
        assert!(!changes.emit.is_empty());
        s.save_findings(&changes.store).unwrap();
        // No usage is modelled here: the totals count these accesses as
        // they are (else the reopen recounts them, a new usage).
        s.usage_counted().unwrap();
        s.maybe_commit(true).unwrap();
        // A reader meanwhile: read-only, while the writer holds a transaction.
        s.append(&mut access(path, Some("AKIA1"), false, None)).unwrap();
        let ro = open_read_only(dir.path()).unwrap();
        assert_eq!(open_findings(&ro).unwrap().len(), changes.store.len());
        assert!(ro.execute("DELETE FROM findings", []).is_err(), "read-only");
        drop(s);
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let again = reconcile(&s.findings().unwrap(), evaluate(&s.facts().unwrap(), None, &Settings::default(), now).findings, now);
        assert!(again.emit.is_empty(), "reopened: nothing new to say: {:?}", again.emit);
    }
}
