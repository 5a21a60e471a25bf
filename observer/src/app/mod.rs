//! `run`: wires the stages, in a fixed order.
//!
//! Start: state dir, load probes, fill the watch list, spawn the reader and
//! the sink, attach. Stop (SIGINT, SIGTERM, or a failing stage): stop the
//! reader after a last drain, let the sink write and flush what it holds,
//! then drop the probes, which detaches them.
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
    config::Config,
    decode::Event,
    export::jsonl::JsonLines,
    probes::{ProbeOptions, Probes},
    ringbuf,
    stats::Stats,
};

mod pipeline;
pub use pipeline::Pipeline;

/// Events between the reader and the sink. Full: the reader waits and the
/// kernel ring absorbs the burst (and counts what it cannot).
const CHANNEL_CAPACITY: usize = 4096;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    ensure_state_dir(&cfg.state_dir)?;
    let mut probes = Probes::load(&ProbeOptions { ring_bytes: cfg.ring_bytes }).context("loading probes")?;
    let n = probes.set_rules(&cfg.rules).context("filling the watch list")?;
    tracing::info!(rules = cfg.rules.len(), keys = n, "watch list loaded");
    let n = probes
        .set_metadata_dests(&crate::net::imds::default_endpoints())
        .context("filling the metadata-service addresses")?;
    tracing::debug!(addresses = n, "metadata-service addresses loaded");
    let ring = probes.take_events().context("opening the event ring buffer")?;

    let stats = Arc::new(Stats::default());
    let shutdown = CancellationToken::new();
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let reader = tokio::spawn(ringbuf::run(ring, tx, stats.clone(), shutdown.clone()));

    let mut sink = JsonLines::open(&cfg.jsonl).with_context(|| format!("opening JSON lines output {:?}", cfg.jsonl))?;
    let mut pipeline = Pipeline::new(&cfg);
    let (done_tx, done_rx) = std_mpsc::channel();
    let sink_stats = stats.clone();
    let sink_shutdown = shutdown.clone();
    let runtime = tokio::runtime::Handle::current();
    let sink_thread = thread::Builder::new()
        .name("nhi-sink".into())
        .spawn(move || {
            let result = sink_loop(&runtime, rx, &mut pipeline, &mut sink, &sink_stats);
            sink_shutdown.cancel();
            let _ = done_tx.send(());
            result
        })
        .context("starting the sink thread")?;

    probes.attach().context("attaching probes")?;
    tracing::info!(network = probes.network(), "probes attached; watching");

    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        () = shutdown.cancelled() => tracing::info!("a stage stopped: shutting down"),
    }
    shutdown.cancel();
    let reader_result = tokio::time::timeout(Duration::from_secs(10), reader).await;
    // The reader owned the only sender: the sink now sees the end of input.
    let sink_result = tokio::task::spawn_blocking(move || {
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        sink_thread.join()
    })
    .await;
    let kernel = probes.counters().ok();
    drop(probes);
    tracing::info!(
        events = Stats::get(&stats.events_received),
        records = Stats::get(&stats.records_written),
        decode_errors = ?stats.decode_errors(),
        kernel_counters = ?kernel,
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

fn ensure_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))
}

/// How often the pipeline hears that time passed (connection timeouts)
/// when no event arrives.
const TICK: Duration = Duration::from_millis(500);

/// The sink thread: events through the pipeline, records to the sink. At
/// the end of input the pipeline reports what it still holds.
fn sink_loop(
    runtime: &tokio::runtime::Handle,
    mut rx: mpsc::Receiver<Event>,
    pipeline: &mut Pipeline,
    sink: &mut JsonLines,
    stats: &Stats,
) -> std::io::Result<()> {
    let mut records = Vec::new();
    let write = |records: &mut Vec<_>, sink: &mut JsonLines| -> std::io::Result<()> {
        for record in records.drain(..) {
            sink.write(&record)?;
            Stats::add(&stats.records_written, 1);
        }
        Ok(())
    };
    let result = (|| {
        loop {
            match runtime.block_on(async { tokio::time::timeout(TICK, rx.recv()).await }) {
                Ok(Some(event)) => {
                    Stats::add(&stats.events_received, 1);
                    pipeline.on_event(event, &mut records);
                    write(&mut records, sink)?;
                    // Write everything already queued, then flush once.
                    while let Ok(event) = rx.try_recv() {
                        Stats::add(&stats.events_received, 1);
                        pipeline.on_event(event, &mut records);
                        write(&mut records, sink)?;
                    }
                }
                Ok(None) => break,
                Err(_elapsed) => {}
            }
            pipeline.on_tick(&mut records);
            write(&mut records, sink)?;
            sink.flush()?;
        }
        pipeline.finish(&mut records);
        write(&mut records, sink)?;
        sink.flush()
    })();
    match result {
        // A closed stdout (`| head`) is the reader of our output leaving.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            tracing::info!("output closed");
            Ok(())
        }
        other => other,
    }
}
