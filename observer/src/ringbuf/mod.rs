//! Ring-buffer reader: drains the kernel's `EVENTS` ring as soon as it is
//! readable, decodes each record and passes it on.
//!
//! Input: the ring buffer. Output: [`Event`]s on a bounded channel, as
//! whatever message type the consumer makes of them (`T: From<Event>`): the
//! reader does not know who consumes it.
//! When the channel is full the reader waits (backpressure): the kernel
//! never waits, so a stalled pipeline shows up as counted ring-buffer
//! reserve failures in the kernel, in one place, per event kind.
use std::sync::Arc;

use aya::maps::{Array, MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    decode::{self, Event},
    stats::Stats,
};

/// Records handled per wake-up before yielding to the consumer.
const BATCH: usize = 512;
/// After a wake-up, let a burst gather before draining: the kernel wakes
/// the reader only when it has caught up, so one wake-up (and one channel
/// hand-off, one write) then serves many records instead of one each.
/// Measured with `cargo xtask bench tls`: about 2 futex + 1 epoll_wait + 1
/// write per connection without it.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// While records keep coming, the reader polls the ring this often instead
/// of being woken (see [`run`]).
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Reads the ring until `shutdown`.
///
/// `polling` is the kernel's `READER_POLLING` flag. After a wake-up the
/// reader sets it and drains the ring every [`POLL`] (at once again while
/// more than a batch waits); meanwhile the process and network
/// programs submit without waking it (a wake-up cost them more than all
/// their other work). The first poll that finds nothing clears the flag,
/// waits a moment for records submitted just before, drains once more and
/// goes back to waiting for a wake-up: an idle agent has no timer.
pub async fn run<T: From<Event>>(
    ring: RingBuf<MapData>,
    mut polling: Option<Array<MapData, u32>>,
    tx: mpsc::Sender<T>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for
    // as long as it lives; the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_poll: Option<tokio::time::Instant> = None;
    loop {
        let poll_at = next_poll.unwrap_or_else(tokio::time::Instant::now);
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                tokio::time::sleep(COALESCE).await;
                let drained = drain(guard.get_inner_mut(), &mut batch, &stats);
                if drained {
                    // Clears readiness only if no new wake-up arrived meanwhile.
                    guard.clear_ready();
                }
                if next_poll.is_none() && set_polling(&mut polling, true) {
                    next_poll = Some(tokio::time::Instant::now() + POLL);
                }
                false
            }
            () = tokio::time::sleep_until(poll_at), if next_poll.is_some() => {
                let drained = drain(fd.get_mut(), &mut batch, &stats);
                if batch.is_empty() && drained {
                    // Idle: wake-ups again. A program that read the flag
                    // just before it changed may still submit without one,
                    // hence the last drain; only an empty ring may go back
                    // to waiting (the kernel wakes the reader only once it
                    // has caught up). If the flag cannot be cleared, keep
                    // polling.
                    let idle = set_polling(&mut polling, false) && {
                        tokio::time::sleep(COALESCE).await;
                        drain(fd.get_mut(), &mut batch, &stats) || !set_polling(&mut polling, true)
                    };
                    next_poll = if idle { None } else { Some(tokio::time::Instant::now() + POLL) };
                } else {
                    // More than a batch waiting: the next batch as soon as
                    // this one is handed on, not a poll interval later.
                    // While the reader polls, process and network records
                    // come without wake-ups, so waiting [`POLL`] here capped
                    // it at one batch per interval (51,200 records/s): a
                    // loopback connection storm lost a third of its
                    // records (`cargo xtask bench burst`).
                    next_poll = Some(tokio::time::Instant::now() + if drained { POLL } else { std::time::Duration::ZERO });
                }
                false
            }
            () = shutdown.cancelled() => {
                // Final pass: what the kernel committed before we stop.
                while !drain(fd.get_mut(), &mut batch, &stats) {
                    forward(&tx, &mut batch).await;
                }
                true
            }
        };
        if !forward(&tx, &mut batch).await || stopping {
            return Ok(());
        }
    }
}

/// Sets the kernel's polling flag; false if there is none or it could not
/// be set.
fn set_polling(flag: &mut Option<Array<MapData, u32>>, on: bool) -> bool {
    let Some(map) = flag else { return false };
    match map.set(0, u32::from(on), 0) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, on, "cannot set the ring reader's polling flag");
            false
        }
    }
}

/// Decodes up to [`BATCH`] records into `batch`; true when the ring is empty.
fn drain(ring: &mut RingBuf<MapData>, batch: &mut Vec<Event>, stats: &Stats) -> bool {
    while batch.len() < BATCH {
        let Some(item) = ring.next() else { return true };
        match decode::decode(&item) {
            Ok(event) => batch.push(event),
            Err(err) => {
                stats.decode_error(err.reason());
                tracing::debug!(error = %err, len = item.len(), "undecodable ring-buffer record");
            }
        }
    }
    false
}

/// Sends the batch on; false when the receiver is gone.
async fn forward<T: From<Event>>(tx: &mpsc::Sender<T>, batch: &mut Vec<Event>) -> bool {
    for event in batch.drain(..) {
        if tx.send(T::from(event)).await.is_err() {
            return false;
        }
    }
    true
}
