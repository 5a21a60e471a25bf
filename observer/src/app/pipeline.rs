//! The per-event chain: enrich -> classify -> records. Single-threaded (it
//! runs on the sink thread), so stages may keep state without locks.
//!
//! Input: decoded events. Output: records in the data-contract shape. A
//! credential file whose open succeeded is read (see `classify::reader`)
//! and yields one `nhi.credential.access` record per identity it holds,
//! each with its `nhi.id`; a file with none yields one file-level record
//! with `nhi.unparsed.reason`; a failed open yields the file-level record
//! alone, as does a write-only open (its content is not written yet); a
//! change of a known file that held identities first yields
//! `nhi.credential.rotation`.
use std::sync::{Arc, Mutex};

use observer_creds::{Keyed, Parsed};

use crate::{
    classify::{
        catalog::Catalog,
        reader::{Access, Reader},
    },
    clock::BootClock,
    config::Config,
    decode::{Event, FileOpen},
    enrich,
    export::record::{self, Context, EVENT_CREDENTIAL_ROTATION, Record, Value},
    scan::ScanReport,
    stats::Stats,
};

/// The at-rest scan's result, handed over by the scan thread.
pub type ScanHandoff = Arc<Mutex<Option<ScanReport>>>;

pub struct Pipeline {
    host_name: String,
    clock: BootClock,
    catalog: Catalog,
    reader: Reader,
    keyed: Arc<Keyed>,
    own_pid: u32,
    stats: Arc<Stats>,
    scan: ScanHandoff,
    /// `(s_dev, ino)` of the credential files the scan found: what the
    /// kernel's watched-inode map is filled from (issue 4).
    pub scanned_inodes: Vec<(u64, u64)>,
}

impl Pipeline {
    pub fn new(cfg: &Config, keyed: Arc<Keyed>, stats: Arc<Stats>, scan: ScanHandoff) -> Self {
        let host_name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            host_name,
            clock: BootClock::new(),
            catalog: cfg.catalog.clone(),
            reader: Reader::new(cfg.max_credential_bytes),
            keyed,
            own_pid: std::process::id(),
            stats,
            scan,
            scanned_inodes: Vec::new(),
        }
    }

    /// Handles one event, appending the records it yields to `out`.
    pub fn on_event(&mut self, mut event: Event, out: &mut Vec<Record>) {
        self.take_scan();
        if let Event::FileOpen(ev) = &event
            && ev.task.tgid == self.own_pid
        {
            // The agent's own reads (scan, classification) are not accesses.
            self.stats.count("file_event_self");
            return;
        }
        enrich::enrich(&mut event);
        match &event {
            Event::FileOpen(ev) => {
                let rule = self.catalog.rule(ev.rule_id);
                let path = read_path(ev);
                if path.as_deref().is_some_and(|p| self.catalog.excluded(p)) {
                    self.stats.count("file_event_excluded");
                    return;
                }
                let cx = Context {
                    host_name: &self.host_name,
                    time: self.clock.wall_time(ev.boot_ns),
                    rule: rule.map(|r| (r.name.as_str(), r.kind.as_str())),
                };
                let base = record::from_event(&event, &cx);
                // A write-only open comes before the content it writes: the
                // next read shows it (and a change of known content then is
                // a rotation). Failed opens have nothing to read.
                let readable = ev.ret >= 0 && ev.access() != crate::decode::Access::Write;
                let (Some(rule), Some(path), true) = (rule, path, readable) else {
                    out.push(base);
                    return;
                };
                let access = Access {
                    pid: ev.task.tgid,
                    path: std::path::Path::new(&path),
                    kernel_inode: (ev.ino != 0).then_some((ev.dev, ev.ino)),
                    format: rule.format,
                    kind: &rule.kind,
                };
                let c = self.reader.classify(&access, &self.keyed);
                self.stats.count(if c.read { "credential_file_read" } else { "credential_file_cached" });
                let format = rule.format.name();
                if let Some(before) = &c.rotated_from {
                    self.stats.count("credential_file_rotated");
                    out.push(rotation(&base, before, &c.parsed));
                }
                out.extend(identity_records(base, &c.parsed, format));
                if let Some(u) = &c.parsed.unparsed {
                    self.stats.count(u.reason());
                    tracing::debug!(path, reason = %u, "credential file not parsed");
                }
            }
        }
    }

    fn take_scan(&mut self) {
        let Ok(mut slot) = self.scan.try_lock() else { return };
        if let Some(report) = slot.take() {
            self.scanned_inodes = report.found.iter().filter_map(|f| f.kernel_inode()).collect();
        }
    }
}

/// The path to read: as the process asked for it when absolute (stable
/// across symlink swaps), else the kernel's resolved path when complete.
fn read_path(ev: &FileOpen) -> Option<String> {
    let requested = ev.path.to_str().filter(|p| p.starts_with('/'));
    let resolved = ev.resolved.as_ref().filter(|r| r.complete).and_then(|r| r.path.to_str());
    requested.or(resolved).map(str::to_owned)
}

/// One record per identity; the file-level record when there is none.
fn identity_records(base: Record, parsed: &Parsed, format: &str) -> Vec<Record> {
    let mut base = base;
    base.attributes.push(("nhi.format", format.into()));
    if parsed.identities.is_empty() {
        let mut r = base;
        if let Some(u) = &parsed.unparsed {
            r.attributes.push(("nhi.unparsed.reason", u.reason().into()));
        }
        return vec![r];
    }
    parsed
        .identities
        .iter()
        .map(|i| {
            let mut r = base.clone();
            r.set("nhi.kind", i.kind.clone());
            r.attributes.push(("nhi.id", i.id.clone().into()));
            for (k, v) in &i.attributes {
                r.attributes.push((k, v.clone().into()));
            }
            r
        })
        .collect()
}

/// `nhi.credential.rotation`: the file's identities before and after.
fn rotation(base: &Record, before: &Parsed, after: &Parsed) -> Record {
    let ids = |p: &Parsed| {
        let mut v: Vec<&str> = p.identities.iter().map(|i| i.id.as_str()).collect();
        v.sort_unstable();
        v.join(",")
    };
    let (b, a) = (ids(before), ids(after));
    let mut r = base.clone();
    r.event_name = EVENT_CREDENTIAL_ROTATION;
    r.attributes.push(("nhi.rotation.previous_ids", Value::from(b.clone())));
    r.attributes.push(("nhi.rotation.current_ids", Value::from(a.clone())));
    r.attributes.push(("nhi.rotation.identity_changed", Value::from(a != b)));
    r
}

#[cfg(test)]
mod tests {
    use observer_creds::{Identity, Unparsed};

    use super::*;

    fn base() -> Record {
        Record {
            time: std::time::SystemTime::UNIX_EPOCH,
            event_name: record::EVENT_CREDENTIAL_ACCESS,
            attributes: vec![("nhi.kind", "aws.access_key".into()), ("file.path", "/root/.aws/credentials".into())],
        }
    }

    #[test]
    fn one_record_per_identity_with_its_kind_and_id() {
        let parsed = Parsed {
            identities: vec![
                Identity::new("aws.access_key", "AKIA1").with("nhi.aws.profile", "a"),
                Identity::new("aws.session_key", "ASIA2"),
            ],
            unparsed: None,
        };
        let recs = identity_records(base(), &parsed, "aws-ini");
        assert_eq!(recs.len(), 2);
        let get = |r: &Record, k: &str| r.attributes.iter().find(|(x, _)| *x == k).map(|(_, v)| v.clone());
        assert_eq!(get(&recs[1], "nhi.kind"), Some("aws.session_key".into()));
        assert_eq!(get(&recs[0], "nhi.id"), Some("AKIA1".into()));
        assert_eq!(get(&recs[0], "nhi.aws.profile"), Some("a".into()));
        assert_eq!(recs[0].attributes.iter().filter(|(k, _)| *k == "nhi.kind").count(), 1);
        let none = identity_records(base(), &Parsed::unparsed(Unparsed::Binary), "aws-ini");
        assert_eq!(get(&none[0], "nhi.unparsed.reason"), Some("binary".into()));
        assert_eq!(get(&none[0], "nhi.id"), None);
        let rot = rotation(&base(), &parsed, &Parsed { identities: vec![Identity::new("aws.access_key", "AKIA3")], unparsed: None });
        assert_eq!(rot.event_name, EVENT_CREDENTIAL_ROTATION);
        assert_eq!(get(&rot, "nhi.rotation.previous_ids"), Some("AKIA1,ASIA2".into()));
        assert_eq!(get(&rot, "nhi.rotation.identity_changed"), Some(true.into()));
    }
}
