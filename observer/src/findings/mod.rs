//! Findings: what the usage records mean. Shadow, unused, unexpected
//! consumers and destinations, human use, reuse, hygiene and creation
//! chains, judged on the host from its own aggregated state and an
//! optional inventory.
//!
//! Input: typed facts loaded from the store ([`Facts`]: credentials and
//! the files holding them, usages with their consumers and destinations,
//! file creations, coverage), the inventory, the settings and the time of
//! evaluation (an injected clock: [`evaluate`] never reads the system
//! clock). Output: the findings open now ([`Finding`]) and each
//! credential's status ([`Status`]); [`lifecycle::reconcile`] turns two
//! evaluations into the transitions to emit (opened, changed, resolved),
//! and [`render::record`] is the one place a finding becomes a record.
//!
//! Invariants: pure (no I/O, no clock); runs on a timer over aggregated
//! state, never per event; a finding's id is a hash of its type, nhi.id
//! and subject, so the same finding has the same id across evaluations
//! and restarts; a finding is emitted when it opens, changes state or
//! severity, or resolves, never once per event; a credential that was not
//! known for the whole window is `too_new`, never `unused`.
mod engine;
pub mod lifecycle;
mod model;
pub mod render;

pub use engine::evaluate;
pub use model::*;
