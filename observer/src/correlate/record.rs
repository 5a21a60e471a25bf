//! Between records and the correlator: which attributes of an access
//! record name the usage ([`usage_head`]), and the `nhi.usage` record of a
//! usage as stored ([`usage_record`]).
use std::{num::NonZeroUsize, sync::Arc, time::SystemTime};

use lru::LruCache;

use sha2::{Digest as _, Sha256};

use super::UsageHead;
use crate::{
    export::record::{Record, Value, rfc3339},
    store::UsageRow,
};

pub const EVENT_USAGE: &str = "nhi.usage";

/// The workload-identity attributes that name a consumer. Not the pid, the
/// pod name or the cgroup path: they change with every restart, and usage
/// would then grow with them. A pod's container id is left out for the
/// same reason (its namespace and service account name the workload).
pub const CONSUMER_KEYS: &[&str] = &[
    "process.executable.path",
    "process.user.id",
    "process.user.name",
    "process.interactive",
    "nhi.systemd.unit",
    "container.id",
    "container.runtime",
    "k8s.namespace.name",
    "nhi.k8s.service_account",
];

/// Destinations listed in an `nhi.usage` record (the most recent first);
/// the store keeps them all.
pub const MAX_LISTED_DESTINATIONS: usize = 32;

fn get<'a>(r: &'a Record, key: &str) -> Option<&'a Value> {
    r.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn text(v: &Value) -> String {
    let mut s = String::new();
    push_text(&mut s, v);
    s
}

fn push_text(out: &mut String, v: &Value) {
    use std::fmt::Write as _;
    match v {
        Value::Str(s) => out.push_str(s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::StrList(l) => {
            for (i, s) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(s);
            }
        }
    }
}

/// The consumer attributes of an access record, in [`CONSUMER_KEYS`] order.
fn consumer_attributes(r: &Record) -> impl Iterator<Item = (&'static str, &Value)> {
    let in_pod = get(r, "k8s.namespace.name").is_some();
    CONSUMER_KEYS
        .iter()
        .filter(move |k| !(in_pod && **k == "container.id"))
        .filter_map(move |k| get(r, k).map(|v| (*k, v)))
}

/// Writes the usage key of an access record into `key`; `None` for records
/// that name no credential.
fn write_usage_key(r: &Record, key: &mut String) -> Option<()> {
    let nhi_id = match get(r, "nhi.id")? {
        Value::Str(s) if !s.is_empty() => s,
        _ => return None,
    };
    let host = get(r, "host.name");
    let source = get(r, "nhi.source");
    if let Some(v) = host {
        push_text(key, v);
    }
    key.push('\u{1f}');
    key.push_str(nhi_id);
    key.push('\u{1f}');
    if let Some(v) = source {
        push_text(key, v);
    }
    key.push('\u{1f}');
    for (k, v) in consumer_attributes(r) {
        key.push_str(k);
        key.push('=');
        push_text(key, v);
        key.push('\u{1f}');
    }
    Some(())
}

fn head_with_key(r: &Record, key: Arc<str>) -> Option<UsageHead> {
    let nhi_id = match get(r, "nhi.id")? {
        Value::Str(s) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    Some(UsageHead {
        key,
        nhi_id,
        kind: get(r, "nhi.kind").map(text).unwrap_or_default(),
        source: get(r, "nhi.source").map(text).unwrap_or_default(),
        host: get(r, "host.name").map(text).unwrap_or_default(),
        consumer: consumer_attributes(r).map(|(k, v)| (k, v.clone())).collect(),
    })
}

/// The usage an access record belongs to: `None` for records that name no
/// credential (`nhi.id` absent: failed opens, unparsed files, environment
/// variables without a derivable id).
pub fn usage_head(r: &Record) -> Option<UsageHead> {
    let mut key = String::with_capacity(128);
    write_usage_key(r, &mut key)?;
    head_with_key(r, Arc::from(key))
}

/// Usage heads recently seen, shared: a process reading the same credential
/// in a loop builds its usage key once per access (no copy) and its head
/// once. Bounded (least recently used first).
pub struct Heads {
    cache: LruCache<Arc<str>, Arc<UsageHead>>,
    key: String,
}

impl Heads {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self { cache: LruCache::new(capacity), key: String::with_capacity(256) }
    }

    /// [`usage_head`], shared with earlier accesses of the same usage.
    pub fn get(&mut self, r: &Record) -> Option<Arc<UsageHead>> {
        self.key.clear();
        write_usage_key(r, &mut self.key)?;
        if let Some(head) = self.cache.get(self.key.as_str()) {
            return Some(head.clone());
        }
        let head = Arc::new(head_with_key(r, Arc::from(self.key.as_str()))?);
        self.cache.put(head.key.clone(), head.clone());
        Some(head)
    }
}

/// A stable, short id for a usage key (`nhi.usage.id`): the same usage on
/// the same host has the same id across restarts and record versions.
pub fn usage_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `nhi.usage`: the cumulative state of one usage as committed.
pub fn usage_record(u: &UsageRow) -> Record {
    let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(24);
    a.push(("host.name", u.host.clone().into()));
    a.push(("nhi.id", u.nhi_id.clone().into()));
    a.push(("nhi.kind", u.kind.clone().into()));
    a.push(("nhi.source", u.source.clone().into()));
    a.extend(u.consumer.iter().cloned());
    a.push(("nhi.usage.id", usage_id(&u.usage_key).into()));
    a.push(("nhi.usage.first_seen", rfc3339(u.first_seen).into()));
    a.push(("nhi.usage.last_seen", rfc3339(u.last_seen).into()));
    a.push(("nhi.usage.count", int(u.accesses)));
    a.push(("nhi.usage.connections", int(u.connections)));
    if let Some(best) = u.destinations.iter().map(|d| d.confidence.as_str()).min_by_key(|c| *c != "direct") {
        a.push(("nhi.usage.confidence", best.into()));
        let mut listed: Vec<String> = Vec::new();
        let mut confidences: Vec<String> = Vec::new();
        for d in &u.destinations {
            let dest = format!("{}:{}", d.server_address, d.server_port);
            if let Some(i) = listed.iter().position(|l| *l == dest) {
                // Listed once, with its best confidence.
                if d.confidence.as_str() == "direct" {
                    confidences[i] = "direct".into();
                }
                continue;
            }
            if listed.len() == MAX_LISTED_DESTINATIONS {
                a.push(("nhi.usage.destinations_truncated", true.into()));
                break;
            }
            listed.push(dest);
            confidences.push(d.confidence.as_str().into());
        }
        // One destination (reached directly, inferred, or both): named as
        // `server.*` too.
        if let ([_], Some(only)) = (listed.as_slice(), u.destinations.first()) {
            a.push(("server.address", only.server_address.clone().into()));
            a.push(("server.port", u32::from(only.server_port).into()));
        }
        a.push(("nhi.usage.destinations", listed.into()));
        a.push(("nhi.usage.destination_confidences", confidences.into()));
    }
    Record { time: u.last_seen.max(SystemTime::UNIX_EPOCH), event_name: EVENT_USAGE, attributes: a }
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::Confidence, store::DestinationRow};

    fn access_record(pid: u32, exe: &str, pod: bool) -> Record {
        let mut attributes: Vec<(&'static str, Value)> = vec![
            ("host.name", "h".into()),
            ("nhi.source", "file".into()),
            ("nhi.kind", "aws.access_key".into()),
            ("nhi.id", "AKIAIOSFODNN7EXAMPLE".into()),
            ("process.pid", pid.into()),
            ("process.executable.path", exe.into()),
            ("process.user.id", 0u32.into()),
            ("container.id", format!("c{pid}").into()),
        ];
        if pod {
            attributes.push(("k8s.namespace.name", "ns".into()));
            attributes.push(("k8s.pod.name", format!("pod-{pid}").into()));
        }
        Record { time: SystemTime::UNIX_EPOCH, event_name: "nhi.credential.access", attributes }
    }

    #[test]
    fn consumer_is_the_workload_not_the_process() {
        let a = usage_head(&access_record(1, "/usr/bin/aws", false)).unwrap();
        let b = usage_head(&access_record(2, "/usr/bin/aws", false)).unwrap();
        assert_ne!(a.key, b.key, "outside pods, the container is the workload");
        let a = usage_head(&access_record(1, "/usr/bin/aws", true)).unwrap();
        let b = usage_head(&access_record(2, "/usr/bin/aws", true)).unwrap();
        assert_eq!(a.key, b.key, "two pods of one workload: one usage (pid, pod and container left out)");
        let c = usage_head(&access_record(2, "/usr/bin/python3", true)).unwrap();
        assert_ne!(a.key, c.key);
        assert!(a.consumer.iter().all(|(k, _)| *k != "process.pid" && *k != "k8s.pod.name"));
        let mut no_id = access_record(1, "/x", false);
        no_id.attributes.retain(|(k, _)| *k != "nhi.id");
        assert!(usage_head(&no_id).is_none());
        assert_eq!(usage_id(&a.key), usage_id(&b.key));
        assert_eq!(usage_id(&a.key).len(), 24);
    }

    #[test]
    fn interned_heads_equal_fresh_ones_and_are_shared() {
        let mut heads = Heads::new(NonZeroUsize::new(2).unwrap());
        let r1 = access_record(1, "/usr/bin/aws", false);
        let a = heads.get(&r1).unwrap();
        assert_eq!(*a, usage_head(&r1).unwrap());
        assert!(Arc::ptr_eq(&a, &heads.get(&access_record(1, "/usr/bin/aws", false)).unwrap()));
        let b = heads.get(&access_record(2, "/usr/bin/aws", false)).unwrap();
        assert_ne!(a.key, b.key);
        let mut pod = access_record(3, "/usr/bin/aws", true);
        pod.attributes.push(("process.interactive", true.into()));
        assert_eq!(*heads.get(&pod).unwrap(), usage_head(&pod).unwrap());
        assert!(usage_head(&pod).unwrap().key.contains("process.interactive=true\u{1f}"));
        let mut no_id = access_record(1, "/x", false);
        no_id.attributes.retain(|(k, _)| *k != "nhi.id");
        assert!(heads.get(&no_id).is_none());
    }

    #[test]
    fn usage_record_lists_destinations_with_confidence() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let dest = |h: &str, c| DestinationRow {
            server_address: h.into(),
            server_port: 443,
            confidence: c,
            first_seen: t,
            last_seen: t,
            connections: 1,
        };
        let mut row = UsageRow {
            id: 1,
            usage_key: "k".into(),
            nhi_id: "AKIA".into(),
            kind: "aws.access_key".into(),
            source: "file".into(),
            host: "h".into(),
            consumer: vec![("process.executable.path", "/usr/bin/aws".into())],
            first_seen: t,
            last_seen: t,
            accesses: 5,
            connections: 3,
            destinations: vec![dest("a.example", Confidence::Inferred), dest("b.example", Confidence::Inferred)],
        };
        let r = usage_record(&row);
        let get = |r: &Record, k: &str| r.attributes.iter().find(|(x, _)| *x == k).map(|(_, v)| v.clone());
        assert_eq!(r.event_name, EVENT_USAGE);
        assert_eq!(get(&r, "nhi.usage.count"), Some(Value::Int(5)));
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("inferred".into()));
        assert_eq!(get(&r, "server.address"), None, "two destinations: listed, no single server.address");
        row.destinations.push(dest("a.example", Confidence::Direct));
        let r = usage_record(&row);
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("direct".into()));
        assert_eq!(
            get(&r, "nhi.usage.destinations"),
            Some(Value::StrList(vec!["a.example:443".into(), "b.example:443".into()]))
        );
        assert_eq!(
            get(&r, "nhi.usage.destination_confidences"),
            Some(Value::StrList(vec!["direct".into(), "inferred".into()]))
        );
        row.destinations.remove(1);
        let r = usage_record(&row);
        assert_eq!(get(&r, "server.address"), Some("a.example".into()), "one destination, two confidences");
        assert_eq!(get(&r, "nhi.usage.confidence"), Some("direct".into()));
        row.destinations.truncate(1);
        let r = usage_record(&row);
        assert_eq!(get(&r, "server.address"), Some("a.example".into()));
        row.destinations.clear();
        assert_eq!(get(&usage_record(&row), "nhi.usage.confidence"), None);
    }
}
