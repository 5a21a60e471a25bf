//! The engine's typed inputs and outputs.
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use crate::inventory::Workload;

/// One file holding a credential, as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct CredFile {
    pub path: String,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// Still on disk at the last look.
    pub present: bool,
    /// Found by the at-rest scan (not only on access).
    pub at_rest: bool,
    /// Permission bits (`st_mode & 0o7777`), when the file could be read.
    pub mode: Option<u32>,
    pub owner_uid: Option<u32>,
    /// The nearest world-writable directory above it, if any.
    pub world_writable_dir: Option<String>,
    /// Latest store record id naming this file with this credential.
    pub record_id: Option<String>,
}

/// One credential (one `nhi.id`) the host knows of.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub nhi_id: String,
    pub kind: String,
    pub files: Vec<CredFile>,
    /// When the catalog says it expires (certificates, tokens).
    pub expires_at: Option<SystemTime>,
    /// The latest store record ids naming it (evidence).
    pub record_ids: Vec<String>,
}

/// A destination of a usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub server_address: String,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub connections: u64,
}

/// One usage: a credential used by one workload, cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub nhi_id: String,
    pub kind: String,
    /// `file`, `env`, `imds`.
    pub source: String,
    pub workload: Workload,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub accesses: u64,
    pub connections: u64,
    pub destinations: Vec<Destination>,
}

/// A credential file created (or rewritten with `O_CREAT`).
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    pub path: String,
    pub time: SystemTime,
    pub record_id: String,
    pub executable: Option<String>,
    pub user_id: Option<i64>,
    /// The creating process's controlling terminal (`pts/3`).
    pub tty: Option<String>,
    /// How many creating opens were seen.
    pub count: u64,
}

/// A watched interval (or a gap: `watched = false`).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: SystemTime,
    pub end: SystemTime,
    pub watched: bool,
    pub events_lost: u64,
}

/// What was watched, from the store's coverage table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// First coverage on this state directory.
    pub tracked_since: Option<SystemTime>,
    /// Watched intervals, in time order (gaps are what lies between).
    pub watched: Vec<Span>,
}

impl Coverage {
    /// Share of `[from, to]` watched, in percent, and the events lost in
    /// the watched intervals that overlap it.
    pub fn of(&self, from: SystemTime, to: SystemTime) -> (f64, u64) {
        let total = to.duration_since(from).unwrap_or_default();
        if total.is_zero() {
            return (0.0, 0);
        }
        let mut covered = Duration::ZERO;
        let mut lost = 0;
        let mut at = from;
        for s in &self.watched {
            let start = s.start.max(at);
            let end = s.end.min(to);
            if end > start {
                covered += end.duration_since(start).unwrap_or_default();
                at = end;
            }
            if s.end >= from && s.start <= to {
                lost += s.events_lost;
            }
        }
        ((covered.as_secs_f64() / total.as_secs_f64() * 100.0).min(100.0), lost)
    }
}

/// Everything the engine judges.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub credentials: Vec<Credential>,
    pub usages: Vec<Usage>,
    pub creations: Vec<Creation>,
    pub coverage: Coverage,
}

/// The engine's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// No use in this window: unused. Default 90 days.
    pub unused_window: Duration,
    /// Without an inventory, consumers and destinations first seen this
    /// long after a credential's first use are unexpected. Default 7 days.
    pub learning_period: Duration,
    /// Certificates and tokens expiring within this are a hygiene finding.
    /// Default 30 days.
    pub expiry_warning: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            unused_window: Duration::from_secs(90 * 86_400),
            learning_period: Duration::from_secs(7 * 86_400),
            expiry_warning: Duration::from_secs(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingType {
    Shadow,
    Unused,
    UnexpectedConsumer,
    UnexpectedDestination,
    HumanUse,
    Reuse,
    Hygiene,
    Created,
}

impl FindingType {
    pub const ALL: [FindingType; 8] = [
        Self::Shadow,
        Self::Unused,
        Self::UnexpectedConsumer,
        Self::UnexpectedDestination,
        Self::HumanUse,
        Self::Reuse,
        Self::Hygiene,
        Self::Created,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Unused => "unused",
            Self::UnexpectedConsumer => "unexpected_consumer",
            Self::UnexpectedDestination => "unexpected_destination",
            Self::HumanUse => "human_use",
            Self::Reuse => "reuse",
            Self::Hygiene => "hygiene",
            Self::Created => "created",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Info, Self::Low, Self::Medium, Self::High].into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    Open,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// The evidence of an `unused` finding (and of an unused credential in
/// the report): what window was judged, when, and how well it was watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnusedEvidence {
    pub evaluated_at: SystemTime,
    pub window: Duration,
    pub tracked_since: Option<SystemTime>,
    pub coverage_percent: f64,
    pub events_lost: u64,
}

/// One finding. Rendered into a record by [`super::render::record`] only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub kind: FindingType,
    pub state: State,
    pub severity: Severity,
    pub reason: String,
    pub nhi_id: String,
    pub nhi_kind: String,
    /// What this finding is about within the credential (a consumer, a
    /// destination, a path, a check): part of the id.
    pub subject: String,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub count: u64,
    pub record_ids: Vec<String>,
    pub workload: Option<Workload>,
    pub server_address: Option<String>,
    pub file_path: Option<String>,
    pub unused: Option<UnusedEvidence>,
}

/// The stable id of a finding: type, credential and subject, hashed.
pub fn finding_id(kind: FindingType, nhi_id: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_str(), nhi_id, subject] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// A credential's status in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Used in the window.
    InUse,
    /// Known for the whole window, no use in it.
    Unused,
    /// Not known for the whole window: too new to judge.
    TooNew,
    /// Not declared in the inventory (only with one).
    Shadow,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "in_use",
            Self::Unused => "unused",
            Self::TooNew => "too_new",
            Self::Shadow => "shadow",
        }
    }
}

/// The engine's answer for one evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Findings open now, ordered by id.
    pub findings: Vec<Finding>,
    /// Per credential (in [`Facts::credentials`] order, then credentials
    /// only the inventory names): its status.
    pub statuses: Vec<(String, Status)>,
    /// Inventory entries (by name) declaring a kind and path that matched
    /// no credential seen here.
    pub declared_not_found: Vec<String>,
}
