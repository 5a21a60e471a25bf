//! Between records and the correlator: which attributes of an access
//! record name the usage ([`usage_head`]). The `nhi.usage` record of a
//! usage as stored is the store's (`store::usage_record`).
use std::{num::NonZeroUsize, sync::Arc};

use lru::LruCache;

use super::UsageHead;
use crate::model::{Record, Value};

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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

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
}
