//! Correlate: credential accesses and the connections that follow them,
//! folded into usage records.
//!
//! Input: [`Access`] (a credential, by `nhi.id`, used by a process at a
//! time, with an exact count) and [`Connection`] (a process, with its
//! ancestors, connected to a destination at a time). Output:
//! [`UsageDelta`]s, drained by the sink, added to the store's cumulative
//! usage and exported as `nhi.usage` records.
//!
//! A usage is (credential, source, consumer): the consumer is the workload
//! identity (executable, user, unit, container, pod namespace and service
//! account), not the pid, so usage stays bounded while processes come and
//! go. A connection is linked to every credential that the same process
//! accessed at most `direct_window` before (confidence `direct`), or that
//! the process itself accessed at most `inferred_window` before, or one of
//! its ancestors (up to [`MAX_DEPTH`] generations) did (`inferred`).
//! Connections before an access are not linked to it.
//!
//! Time is the kernel's boot-time clock carried by the events, so the
//! correlator is deterministic and tests drive it with their own times.
//! Bounded: the processes remembered ([`CorrelatorConfig::max_processes`],
//! least recently used first), credentials per process
//! ([`MAX_CREDS_PER_PROCESS`]), pending usage deltas
//! ([`CorrelatorConfig::max_pending`]: the sink drains them when full).
mod correlator;
pub mod record;

pub use record::{Heads, Subject, usage_head};

pub use correlator::{
    Access, Confidence, Connection, Correlator, CorrelatorConfig, DestKey, Destination, Destinations, MAX_CREDS_PER_PROCESS,
    MAX_DEPTH, Seen, UsageDelta, UsageHead,
};
