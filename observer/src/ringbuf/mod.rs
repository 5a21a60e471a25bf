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

use aya::maps::{MapData, RingBuf};
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

pub async fn run<T: From<Event>>(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<T>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for
    // as long as it lives; the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                tokio::time::sleep(COALESCE).await;
                let drained = drain(guard.get_inner_mut(), &mut batch, &stats);
                if drained {
                    // Clears readiness only if no new wake-up arrived meanwhile.
                    guard.clear_ready();
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
