//! Between the sensors and the correlator: the usage an access belongs to
//! ([`usage_head`]), made from the typed credential, source and consumer
//! the sensors hand on (`crate::model::subject`), never read back out of a
//! record. The `nhi.usage` record of a usage as stored is the store's
//! (`store::usage_record`).
use std::{num::NonZeroUsize, sync::Arc};

use lru::LruCache;

use super::UsageHead;
use crate::model::{Consumer, Credential, Source, subject::write_usage_key};

/// What names a usage: the host, the credential, how it was obtained and
/// the workload that used it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub host: &'a str,
    pub credential: &'a Credential,
    pub source: Source,
    pub consumer: &'a Consumer,
}

fn head_with_key(s: &Subject<'_>, key: Arc<str>) -> UsageHead {
    UsageHead {
        key,
        nhi_id: s.credential.id.clone(),
        kind: s.credential.kind.clone(),
        source: s.source.as_str().to_owned(),
        host: s.host.to_owned(),
        consumer: s.consumer.clone(),
    }
}

/// The usage an access belongs to: `None` when the credential has no id
/// (an empty `nhi.id` names nothing).
pub fn usage_head(s: &Subject<'_>) -> Option<UsageHead> {
    if s.credential.id.is_empty() {
        return None;
    }
    let mut key = String::with_capacity(128);
    write_usage_key(s.host, s.credential, s.source, s.consumer, &mut key);
    Some(head_with_key(s, Arc::from(key)))
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
        Self { cache: LruCache::sparse(capacity), key: String::with_capacity(256) }
    }

    /// [`usage_head`], shared with earlier accesses of the same usage.
    pub fn get(&mut self, s: &Subject<'_>) -> Option<Arc<UsageHead>> {
        if s.credential.id.is_empty() {
            return None;
        }
        self.key.clear();
        write_usage_key(s.host, s.credential, s.source, s.consumer, &mut self.key);
        if let Some(head) = self.cache.get(self.key.as_str()) {
            return Some(head.clone());
        }
        let head = Arc::new(head_with_key(s, Arc::from(self.key.as_str())));
        self.cache.put(head.key.clone(), head.clone());
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(id: &str) -> Credential {
        Credential { id: id.into(), kind: "aws.access_key".into() }
    }

    fn consumer(pid: u32, exe: &str, pod: bool) -> Consumer {
        Consumer {
            executable_path: Some(exe.into()),
            user_id: Some(0),
            container_id: Some(format!("c{pid}")),
            namespace: pod.then(|| "ns".into()),
            ..Consumer::default()
        }
    }

    fn head(c: &Consumer) -> Option<UsageHead> {
        usage_head(&Subject { host: "h", credential: &cred("AKIAIOSFODNN7EXAMPLE"), source: Source::File, consumer: c })
    }

    #[test]
    fn consumer_is_the_workload_not_the_process() {
        let a = head(&consumer(1, "/usr/bin/aws", false)).unwrap();
        let b = head(&consumer(2, "/usr/bin/aws", false)).unwrap();
        assert_ne!(a.key, b.key, "outside pods, the container is the workload");
        let a = head(&consumer(1, "/usr/bin/aws", true)).unwrap();
        let b = head(&consumer(2, "/usr/bin/aws", true)).unwrap();
        assert_eq!(a.key, b.key, "two pods of one workload: one usage (container left out)");
        let c = head(&consumer(2, "/usr/bin/python3", true)).unwrap();
        assert_ne!(a.key, c.key);
        assert!(a.consumer.attributes().iter().all(|(k, _)| *k != "container.id"));
        assert_eq!((a.nhi_id.as_str(), a.kind.as_str(), a.source.as_str(), a.host.as_str()), ("AKIAIOSFODNN7EXAMPLE", "aws.access_key", "file", "h"));
        let c = consumer(1, "/x", false);
        assert!(usage_head(&Subject { host: "h", credential: &cred(""), source: Source::File, consumer: &c }).is_none());
    }

    #[test]
    fn interned_heads_equal_fresh_ones_and_are_shared() {
        let mut heads = Heads::new(NonZeroUsize::new(2).unwrap());
        let id = cred("AKIAIOSFODNN7EXAMPLE");
        let s = |c| Subject { host: "h", credential: &id, source: Source::File, consumer: c };
        let c1 = consumer(1, "/usr/bin/aws", false);
        let a = heads.get(&s(&c1)).unwrap();
        assert_eq!(*a, head(&c1).unwrap());
        let c1_again = consumer(1, "/usr/bin/aws", false);
        assert!(Arc::ptr_eq(&a, &heads.get(&s(&c1_again)).unwrap()));
        let c2 = consumer(2, "/usr/bin/aws", false);
        let b = heads.get(&s(&c2)).unwrap();
        assert_ne!(a.key, b.key);
        let mut pod = consumer(3, "/usr/bin/aws", true);
        pod.interactive = Some(true);
        assert_eq!(*heads.get(&s(&pod)).unwrap(), head(&pod).unwrap());
        assert!(head(&pod).unwrap().key.contains("process.interactive=true\u{1f}"));
        let none = cred("");
        assert!(heads.get(&Subject { host: "h", credential: &none, source: Source::Env, consumer: &c1 }).is_none());
    }
}
