//! What was watched when: runs (one per agent start, with its last
//! heartbeat) and coverage intervals with what was lost in each.
use std::{collections::BTreeMap, time::SystemTime};

use rusqlite::{Connection, params};

use super::writer::{Store, StoreError, i, now_ns, ns, time, u};

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

#[derive(Clone)]
pub(super) struct CoverageState {
    pub(super) row: i64,
    pub(super) start_ns: i64,
    pub(super) base: Counters,
}

impl Store {
    /// Moves this run's "alive" mark and the current coverage interval to
    /// now, with the counters' deltas; starts a new interval when the
    /// current one is `coverage_every` long. Part of the open transaction.
    pub fn heartbeat(&mut self, counters: &Counters) -> Result<(), StoreError> {
        if self.failing.is_some() {
            return Ok(()); // the gap is recorded when writes come back
        }
        self.beat(counters).map_err(|e| {
            self.fail(&e);
            e.into()
        })
    }

    fn beat(&mut self, counters: &Counters) -> rusqlite::Result<()> {
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
        if self.failing.is_some() {
            return Ok(()); // asked again once writes come back
        }
        let since = ns(since);
        let row = self.coverage.row;
        let written = self.begin().and_then(|()| {
            self.conn.execute("UPDATE coverage SET start_ns = ?1, end_ns = ?1 WHERE id = ?2", params![since, row])
        });
        if let Err(e) = written {
            self.fail(&e);
            return Err(e.into());
        }
        self.coverage.start_ns = since;
        self.coverage.base = counters.clone();
        self.watching = true;
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
    use std::time::Duration;

    use super::*;
    use crate::store::{StoreOptions, open_reader};

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
}
