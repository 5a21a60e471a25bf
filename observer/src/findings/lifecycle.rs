//! From two evaluations to the records to emit: a finding is emitted when
//! it opens (or re-opens), when its severity or reason changes, and when
//! it resolves; an unchanged open finding is only updated in the store.
use std::{collections::HashMap, time::SystemTime};

use super::model::{Finding, State};

/// What one reconciliation does.
#[derive(Debug, Default)]
pub struct Changes {
    /// Transitions, to emit as `nhi.finding` records.
    pub emit: Vec<Finding>,
    /// New state of findings whose stored copy is out of date (emitted
    /// ones included).
    pub store: Vec<Finding>,
}

/// `previous`: the stored findings by id (open and resolved); `current`:
/// the findings open now.
pub fn reconcile(previous: &HashMap<String, Finding>, current: Vec<Finding>, now: SystemTime) -> Changes {
    let mut changes = Changes::default();
    let mut open_now = std::collections::HashSet::new();
    for mut f in current {
        open_now.insert(f.id.clone());
        match previous.get(&f.id) {
            Some(p) if p.state == State::Open => {
                f.first_seen = f.first_seen.min(p.first_seen);
                if p.severity != f.severity || p.reason != f.reason {
                    changes.emit.push(f.clone());
                    changes.store.push(f);
                } else if p.count != f.count || p.last_seen != f.last_seen || p.record_ids != f.record_ids {
                    changes.store.push(f);
                }
            }
            // New, or resolved before and open again.
            _ => {
                changes.emit.push(f.clone());
                changes.store.push(f);
            }
        }
    }
    let mut resolved: Vec<&Finding> =
        previous.values().filter(|p| p.state == State::Open && !open_now.contains(&p.id)).collect();
    resolved.sort_by(|a, b| a.id.cmp(&b.id));
    for p in resolved {
        let mut f = p.clone();
        f.state = State::Resolved;
        f.last_seen = f.last_seen.max(now);
        if let Some(u) = &mut f.unused {
            u.evaluated_at = now;
        }
        changes.emit.push(f.clone());
        changes.store.push(f);
    }
    changes
}
