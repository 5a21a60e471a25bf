//! `run`: wires the stages, in a fixed order.
//!
//! Start: signal handlers, state dir and fingerprint key, load probes,
//! resolve and load the watch list, spawn the reader, the ticker and the
//! sink, attach, then scan for credential files at rest on a thread of its
//! own (what it finds is watched by inode from then on). While running:
//! re-resolve the watch list periodically, add inodes the pipeline confirms,
//! reload the config on SIGHUP (watch list; no BPF reload). Stop (SIGINT,
//! SIGTERM, or a failing stage): stop the reader after a last drain, let the
//! sink write the last de-dup tails, usage and a final stats record, commit
//! and flush, drop the probes, which detaches them, then give the OTLP
//! exporter a few seconds to deliver what is committed.
//!
//! This file holds the start and stop order; the sink thread (store, JSON
//! lines, heartbeats, findings) is `sink.rs`, the watch list's loading and
//! the at-rest scan that feeds it `watch_list.rs`, the per-event stages
//! `pipeline.rs`.
//!
//! The store is opened (and migrated) before the probes load, and the OTLP
//! exporter started from the `OTEL_*` variables: a database or exporter
//! that cannot work is a startup error, not a silent loss.
use std::{
    sync::{Arc, mpsc as std_mpsc},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{
    classify::key,
    config::{Config, Overrides},
    export::{jsonl::JsonLines, otlp},
    probes::{ProbeOptions, Probes},
    ringbuf,
    stats::Stats,
    store::{self, Store},
};

mod dedup;
mod findings;
mod links;
pub mod health;
mod pipeline;
mod sink;
mod watch_list;
pub use pipeline::{Input, Pipeline};
use sink::{Out, sink_loop};
use watch_list::{KnownInodes, link_watch, load_watch, refresh_links, reload, start_scan};

/// Inputs between the reader and the sink. Full: the reader waits and the
/// kernel ring absorbs the burst (and counts what it cannot).
const CHANNEL_CAPACITY: usize = 4096;

/// Runs the agent until SIGINT/SIGTERM. Needs a multi-thread runtime (the
/// exporter's start and stop wait in `block_in_place`).
pub async fn run(cfg: Config, overrides: Overrides) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives while we start must be a clean
    // shutdown, not the default action (death without a flush).
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // Before anything is created: without the capabilities to load the
    // probes, say which and stop.
    if let Some(missing) = crate::check::missing_bpf_capabilities() {
        anyhow::bail!(missing);
    }
    ensure_state_dir(&cfg.state_dir)?;
    // Before anything in the directory is touched: one agent per state
    // directory. Held until `run` returns.
    let _lock = store::lock(&cfg.state_dir)?;
    let keyed = Arc::new(match &cfg.fingerprint_key_file {
        Some(path) => key::load(path)?,
        None => key::load_or_create(&cfg.state_dir)?,
    });
    let stats = Arc::new(Stats::default());
    let mut store_opts = cfg.store.clone();
    store_opts.sensors = vec!["file", "process", "network"];
    if cfg.otlp.enabled && cfg.otlp.logs {
        store_opts.cursors = vec![store::CURSOR_OTLP_LOGS];
    }
    let mut db = Store::open(&cfg.state_dir, store_opts).context("opening the store")?;
    let exporter = if cfg.otlp.enabled {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let resource = otlp::resource(&host, db.instance());
        // Waits for the exporter thread to build its exporters: off the
        // runtime's workers.
        let e = tokio::task::block_in_place(|| {
            otlp::Exporter::start(&cfg.otlp, cfg.state_dir.clone(), resource, stats.clone())
        })
        .context("starting the OTLP exporter")?;
        Some(e)
    } else {
        None
    };
    let waker = exporter.as_ref().map(otlp::Exporter::waker);
    // Before the probes load: a start-up probe sees the agent alive while
    // loading, and not ready until attached.
    let health = Arc::new(health::Health::new());
    let health_stop = CancellationToken::new();
    let health_task = match cfg.health_listen {
        Some(addr) => Some(health::serve(addr, health.clone(), health_stop.clone()).await?),
        None => None,
    };
    let dedup_ns = u64::try_from(cfg.dedup.as_nanos()).unwrap_or(u64::MAX);
    let mut probes =
        Probes::load(&ProbeOptions { ring_bytes: cfg.ring_bytes, dedup_ns }).context("loading probes")?;
    // Inodes found by the scan or learned from confirmed opens: kept across
    // re-resolutions of the watch list.
    let mut known = KnownInodes::default();
    let mut catalog = cfg.catalog.clone();
    let watch = load_watch(&mut probes, &catalog, &known, &stats).context("loading the watch list")?;
    let n = probes
        .set_metadata_dests(&crate::net::imds::default_endpoints())
        .context("filling the metadata-service addresses")?;
    tracing::debug!(addresses = n, "metadata-service addresses loaded");
    let ring = probes.take_events().context("opening the event ring buffer")?;
    let polling = probes.take_reader_polling().context("opening the reader's polling flag")?;
    let kernel = probes.take_kernel_state().context("opening the kernel counters")?;

    let shutdown = CancellationToken::new();
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let reader = tokio::spawn(ringbuf::run(ring, Some(polling), tx.clone(), stats.clone(), shutdown.clone()));
    let ticker = tokio::spawn(tick(tx.clone(), shutdown.clone()));

    let mut sink = JsonLines::open(&cfg.jsonl).with_context(|| match &cfg.jsonl {
        crate::export::jsonl::Target::File(path) => format!("opening JSON lines output {}", path.display()),
        crate::export::jsonl::Target::Stdout => "opening JSON lines output (standard output)".to_owned(),
    })?;
    let (inode_tx, mut inode_rx) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new(&cfg, watch, Some(kernel), keyed.clone(), stats.clone(), inode_tx.clone());
    let (at_rest_tx, at_rest_rx) = std_mpsc::channel();
    let mut findings = findings::Findings::new(cfg.findings.clone(), at_rest_rx);
    let (done_tx, done_rx) = std_mpsc::channel();
    let sink_stats = stats.clone();
    let sink_shutdown = shutdown.clone();
    let runtime = tokio::runtime::Handle::current();
    // When the probes were attached: coverage (what was watched) starts there.
    let attached = Arc::new(std::sync::OnceLock::new());
    let sink_attached = attached.clone();
    let sink_health = health.clone();
    let sink_thread = thread::Builder::new()
        .name("nhi-sink".into())
        .spawn(move || {
            let mut out = Out {
                sink: &mut sink,
                store: &mut db,
                stats: &sink_stats,
                lines: Vec::new(),
                unstored: Vec::new(),
                wake: waker.as_deref(),
            };
            let result =
                sink_loop(&runtime, rx, &mut pipeline, &mut out, &mut findings, &sink_attached, &sink_health);
            sink_shutdown.cancel();
            let _ = done_tx.send(());
            result
        })
        .context("starting the sink thread")?;

    // Loading read the kernel's BTF twice (offsets, aya's parse) and the
    // process table scanned /proc: tens of MiB freed since, which the
    // allocators keep unless told. Hand them back once, before watching.
    crate::alloc::release_free_memory();
    crate::probes::release_program_pages();
    // Before "attached": a path re-pointed from then on is seen.
    let mut links = link_watch(&catalog);
    probes.attach().context("attaching probes")?;
    let sensors: Vec<&'static str> =
        if probes.network() { vec!["file", "process", "network"] } else { vec!["file", "process"] };
    let _ = attached.set((std::time::SystemTime::now(), sensors));
    health.attached();
    tracing::info!(network = probes.network(), "probes attached; watching");
    if cfg.scan_at_start {
        start_scan(&cfg, keyed, inode_tx, at_rest_tx)?;
    } else {
        drop(inode_tx);
        drop(at_rest_tx);
    }

    let mut rescan = tokio::time::interval(cfg.rescan_every);
    rescan.tick().await; // the first tick is immediate: we just loaded
    loop {
        tokio::select! {
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            () = shutdown.cancelled() => { tracing::info!("a stage stopped: shutting down"); break }
            _ = sighup.recv() => match Config::resolve(overrides.clone()) {
                Ok(new) => {
                    if new.state_dir != cfg.state_dir || new.jsonl != cfg.jsonl || new.ring_bytes != cfg.ring_bytes {
                        tracing::warn!("SIGHUP: state_dir, jsonl and ring_buffer_bytes changes need a restart; applying the rest");
                    }
                    if new.dedup != cfg.dedup {
                        tracing::warn!("SIGHUP: dedup_interval_ms changes need a restart");
                    }
                    if new.findings.inventory.as_ref().map(|i| &i.path) != cfg.findings.inventory.as_ref().map(|i| &i.path)
                        || new.findings.settings != cfg.findings.settings
                    {
                        tracing::warn!("SIGHUP: the inventory and the [findings] settings are read at start; restart to apply them");
                    }
                    catalog = new.catalog;
                    reload(&mut probes, &catalog, &known, &stats, &tx, "SIGHUP").await;
                    refresh_links(&mut links, &catalog);
                }
                Err(e) => tracing::error!("SIGHUP: configuration not reloaded, keeping the current one: {e}"),
            },
            _ = rescan.tick() => {
                reload(&mut probes, &catalog, &known, &stats, &tx, "rescan").await;
                refresh_links(&mut links, &catalog);
            }
            // A credential path re-pointed (symlink, rename): reload now,
            // not at the next rescan.
            changed = async {
                match links.as_mut() {
                    Some(l) => l.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = &changed {
                    tracing::warn!(error = %e, "credential directory watch failed; re-pointed paths are seen at the next rescan");
                }
                reload(&mut probes, &catalog, &known, &stats, &tx, "credential path changed").await;
                tracing::info!("a credential path changed: watch list reloaded");
                if changed.is_err() {
                    // The queue failed: start a new one.
                    links = link_watch(&catalog);
                }
            }
            Some(entry) = inode_rx.recv() => {
                let mut new = vec![entry];
                while let Ok(e) = inode_rx.try_recv() {
                    new.push(e);
                }
                known.add(&new);
                match probes.add_inodes(&new) {
                    Ok(()) => tracing::debug!(n = new.len(), "watching credential inodes"),
                    Err(e) => tracing::warn!(error = %e, "cannot add credential inodes to the watch list"),
                }
            }
        }
    }
    health.stopping();
    shutdown.cancel();
    drop(tx);
    let reader_result = tokio::time::timeout(Duration::from_secs(10), reader).await;
    let _ = ticker.await;
    // The reader and ticker held the last senders: the sink now sees the end.
    let sink_result = tokio::task::spawn_blocking(move || {
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        sink_thread.join()
    })
    .await;
    drop(probes);
    if let Some(e) = exporter {
        // Waits (up to the deadline) for the exporter thread: off the
        // runtime's workers.
        tokio::task::block_in_place(|| e.stop(otlp::STOP_DEADLINE));
    }
    health_stop.cancel();
    if let Some(task) = health_task {
        let _ = task.await;
    }
    tracing::info!(
        events = Stats::get(&stats.events_received),
        records = Stats::get(&stats.records_written),
        process_table = Stats::get(&stats.process_table_size),
        process_table_evicted = Stats::get(&stats.process_table_evicted),
        process_table_reconciled = Stats::get(&stats.process_table_reconciled),
        env_credentials = Stats::get(&stats.env_credentials),
        stored = Stats::get(&stats.records_stored),
        store_write_failures = Stats::get(&stats.store_errors),
        store_drops = ?stats.store_drops(),
        jsonl_lines_lost = Stats::get(&stats.jsonl_lines_lost),
        exported = Stats::get(&stats.exported_records),
        export_backlog = Stats::get(&stats.export_backlog),
        decode_errors = ?stats.decode_errors(),
        classify = ?stats.classify_counts(),
        "stopped; probes detached"
    );
    match reader_result {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e).context("ring-buffer reader"),
        Ok(Err(e)) => return Err(e).context("ring-buffer reader task"),
        Err(_) => tracing::error!("ring-buffer reader did not stop within 10 s"),
    }
    match sink_result {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e).context("writing JSON lines"),
        _ => Err(anyhow::anyhow!("the sink thread failed")),
    }
}

/// An error and its causes on one line, each cause once. The agent's
/// error types say their cause in their own message (so that `{e}` is
/// whole where one is logged alone), and so do some of their sources
/// (rusqlite's); anyhow's `{:#}` prints every source again after it
/// ("database x: Is a directory (os error 21): Is a directory (os error
/// 21): ..."). A cause whose text the line already holds is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// One `Input::Tick` a second until shutdown; never blocks on a full queue.
async fn tick(tx: mpsc::Sender<Input>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => { let _ = tx.try_send(Input::Tick); }
            () = shutdown.cancelled() => return,
        }
    }
}

fn ensure_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))
}


#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    #[derive(Debug, thiserror::Error)]
    #[error("lock file {path}: {source}")]
    struct Embeds {
        path: String,
        source: std::io::Error,
    }

    /// Guards "OS errors are printed twice": a cause the message already
    /// says was printed again by the chain.
    #[test]
    fn error_text_says_each_cause_once_and_keeps_the_ones_not_said() {
        let io = std::io::Error::from_raw_os_error(21);
        let os = io.to_string();
        let e = Err::<(), _>(Embeds { path: "/x/lock".into(), source: io }).context("taking the lock").unwrap_err();
        let line = super::error_text(&e);
        assert_eq!(line.matches(&os).count(), 1, "{line}");
        assert!(line.starts_with("taking the lock: lock file /x/lock: "), "{line}");
        let e = Err::<(), _>(std::io::Error::from_raw_os_error(2)).context("opening y").unwrap_err();
        assert_eq!(super::error_text(&e), format!("opening y: {}", std::io::Error::from_raw_os_error(2)));
    }
}
