//! The watch list: the catalog's kernel rules resolved over the file
//! system plus the inodes learned since (at-rest scan, confirmed opens),
//! loaded into the kernel at start, on each rescan, on SIGHUP and when a
//! credential path is re-pointed (the directory watch, `links`); and the
//! at-rest scan that feeds it.
use std::{
    sync::{Arc, mpsc as std_mpsc},
    thread,
};

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{Input, error_text, links};
use crate::{
    classify::{
        catalog::{Catalog, WatchRule},
        watch::{self, InodeEntry, WatchList},
    },
    config::Config,
    probes::Probes,
    scan,
    stats::Stats,
    store,
};

/// Credential inodes found by the at-rest scan or learned from confirmed
/// opens, which the rules' expansion alone would not find. Bounded: the
/// oldest go first past half the kernel map's size.
#[derive(Default)]
pub(super) struct KnownInodes(Vec<InodeEntry>);

const MAX_KNOWN_INODES: usize = 32_768;

impl KnownInodes {
    pub(super) fn add(&mut self, new: &[InodeEntry]) {
        for e in new {
            self.0.retain(|k| k.key != e.key);
            self.0.push(e.clone());
        }
        let excess = self.0.len().saturating_sub(MAX_KNOWN_INODES);
        self.0.drain(..excess);
    }
}

/// Resolves the catalog's kernel rules over the file system, adds the known
/// inodes, and loads both into the kernel.
pub(super) fn load_watch(
    probes: &mut Probes,
    catalog: &Catalog,
    known: &KnownInodes,
    stats: &Stats,
) -> anyhow::Result<Arc<WatchList>> {
    let rules: Vec<WatchRule> = catalog.kernel_rules();
    let mut entries = watch::expand(&rules, &watch::home_dirs());
    entries.extend(known.0.iter().cloned());
    entries.sort_by_key(|e| (e.key.dev, e.key.ino));
    entries.dedup_by_key(|e| (e.key.dev, e.key.ino));
    let loaded = probes.set_watch(&rules, entries.clone())?;
    Stats::set(&stats.watched_inodes, loaded.inodes as u64);
    tracing::info!(
        rules = rules.len(),
        path_keys = loaded.path_keys,
        inodes = loaded.inodes,
        "watch list loaded"
    );
    Ok(Arc::new(WatchList::new(catalog.clone(), &entries)))
}

/// Watches the directories holding the catalog's paths for credential
/// paths re-pointed while running (app/links.rs); `None` without inotify.
pub(super) fn link_watch(catalog: &Catalog) -> Option<links::LinkWatch> {
    match links::LinkWatch::new(&catalog.kernel_rules(), &watch::home_dirs()) {
        Ok((w, failed)) => {
            link_watch_failures(failed);
            tracing::debug!(
                dirs = w.len(),
                "watching credential directories for re-pointed paths"
            );
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no inotify: credential paths re-pointed while running are seen at the next rescan");
            None
        }
    }
}

/// Brings the directory watch up to date with the catalog and the homes.
pub(super) fn refresh_links(links: &mut Option<links::LinkWatch>, catalog: &Catalog) {
    match links {
        Some(w) => link_watch_failures(w.refresh(&catalog.kernel_rules(), &watch::home_dirs())),
        None => *links = link_watch(catalog),
    }
}

fn link_watch_failures(failed: usize) {
    if failed > 0 {
        tracing::warn!(
            failed,
            "some credential directories cannot be watched for re-pointed paths (inotify limits?); those are seen at the next rescan"
        );
    }
}

/// Re-resolves the watch list and hands it to the pipeline, in order with
/// the events.
pub(super) async fn reload(
    probes: &mut Probes,
    catalog: &Catalog,
    known: &KnownInodes,
    stats: &Stats,
    tx: &mpsc::Sender<Input>,
    why: &str,
) {
    match load_watch(probes, catalog, known, stats) {
        Ok(watch) => {
            let _ = tx.send(Input::Watch(watch)).await;
        }
        Err(e) => tracing::error!(why, "watch list not updated: {}", error_text(&e)),
    }
}

/// The at-rest scan, on its own thread so that start is not delayed. Each
/// credential file it finds is watched by inode from then on (under any
/// name it is opened by, in any mount namespace).
pub(super) fn start_scan(
    cfg: &Config,
    keyed: Arc<observer_creds::Keyed>,
    inodes: mpsc::UnboundedSender<InodeEntry>,
    at_rest: std_mpsc::Sender<Vec<store::evidence::AtRest>>,
) -> anyhow::Result<()> {
    let catalog = cfg.catalog.clone();
    // Two walker threads: the agent is running beside it.
    let opts = scan::ScanOptions {
        threads: 2,
        ..scan::ScanOptions::new(scan::roots(&[], &cfg.scan_roots), cfg.max_credential_bytes)
    };
    thread::Builder::new()
        .name("nhi-scan".into())
        .spawn(move || {
            let report = scan::scan(&catalog, &keyed, &opts, &mut |_, _| {});
            tracing::info!(
                files = report.found.len(),
                identities = report.identities(),
                files_seen = report.files_seen,
                walk_errors = report.walk_errors,
                skipped = ?report.skipped,
                "at-rest scan done"
            );
            // The findings' facts: what is present at rest.
            let found: Vec<store::evidence::AtRest> = report
                .found
                .iter()
                .flat_map(|f| {
                    f.parsed.identities.iter().map(|i| store::evidence::AtRest {
                        path: f.path.to_string_lossy().into_owned(),
                        nhi_id: i.id.clone(),
                        kind: i.kind.clone(),
                        expires: i
                            .attributes
                            .iter()
                            .filter(|(k, _)| {
                                *k == "nhi.credential.expires_at" || *k == "nhi.x509.not_after"
                            })
                            .find_map(|(_, v)| crate::inventory::parse_expiry(v)),
                    })
                })
                .collect();
            let _ = at_rest.send(found);
            for found in &report.found {
                let (Some((dev, ino)), Some(rule)) = (
                    found.kernel_inode(),
                    catalog.rules.iter().find(|r| *r.name == *found.rule),
                ) else {
                    continue;
                };
                let entry = InodeEntry::new(
                    dev as u32,
                    ino,
                    rule.id,
                    observer_common::INODE_FILE,
                    found.path.clone(),
                );
                if inodes.send(entry).is_err() {
                    return;
                }
            }
        })
        .map(drop)
        .context("starting the scan thread")
}
