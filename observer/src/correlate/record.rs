//! Between the sensors and the correlator: the usage an access belongs to
//! ([`usage_head`]), made from the typed credential, source and consumer
//! the sensors hand on (`crate::model::subject`), never read back out of a
//! record. The `nhi.usage` record of a usage as stored is the store's
//! (`store::usage_record`).
use std::{num::NonZeroUsize, sync::Arc};

use lru::LruCache;

use super::UsageHead;
use crate::model::{
    Consumer, Credential, Source,
    subject::{hash_usage_key, same_usage_key, write_usage_key},
};

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
    UsageHead::new(
        key,
        s.credential.id.clone(),
        s.credential.kind.clone(),
        s.source.as_str().to_owned(),
        s.host.to_owned(),
        s.consumer.clone(),
    )
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
/// in a loop finds its head by a hash of the usage key's parts, checked
/// against them, without writing the key; a head is made (and its key
/// written) once. Bounded (least recently used first).
/// (`S` hashes the key's parts; a test gives one under which every
/// subject collides.)
pub struct Heads<S = lru::DefaultHasher> {
    /// By [`hash_usage_key`]; a hit is a head only if [`same_usage_key`].
    cache: LruCache<u64, Arc<UsageHead>>,
    state: S,
    key: String,
}

impl Heads {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self::with_hasher(capacity, lru::DefaultHasher::default())
    }
}

impl<S: std::hash::BuildHasher> Heads<S> {
    pub fn with_hasher(capacity: NonZeroUsize, state: S) -> Self {
        Self { cache: LruCache::sparse(capacity), state, key: String::with_capacity(256) }
    }

    /// [`usage_head`], shared with earlier accesses of the same usage.
    pub fn get(&mut self, s: &Subject<'_>) -> Option<Arc<UsageHead>> {
        use std::hash::Hasher;
        if s.credential.id.is_empty() {
            return None;
        }
        let mut h = self.state.build_hasher();
        hash_usage_key(&s.credential.id, s.source, s.consumer, &mut h);
        let hash = h.finish();
        let subject = (s.host, s.credential.id.as_str(), s.source.as_str(), s.consumer);
        if let Some(head) = self.cache.get(&hash)
            && same_usage_key((&head.host, &head.nhi_id, &head.source, &head.consumer), subject)
        {
            return Some(head.clone());
        }
        // New, or another usage with the same hash (it is replaced).
        self.key.clear();
        write_usage_key(s.host, s.credential, s.source, s.consumer, &mut self.key);
        let head = Arc::new(head_with_key(s, Arc::from(self.key.as_str())));
        self.cache.put(hash, head.clone());
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

    /// A head is found by a hash of the key's parts, then checked against
    /// them: what differs in the key gives another head, what the key
    /// leaves out (a pod's container) does not.
    #[test]
    fn a_head_is_shared_only_by_subjects_with_its_key() {
        a_head_is_shared_only_by_its_subjects(Heads::new(NonZeroUsize::new(16).unwrap()));
        /// Every subject hashes to 0: only the check tells usages apart.
        #[derive(Default)]
        struct Collide;
        impl std::hash::Hasher for Collide {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let collide = std::hash::BuildHasherDefault::<Collide>::default();
        a_head_is_shared_only_by_its_subjects(Heads::with_hasher(NonZeroUsize::new(16).unwrap(), collide));
    }

    fn a_head_is_shared_only_by_its_subjects<S: std::hash::BuildHasher>(mut heads: Heads<S>) {
        let (id, other) = (cred("AKIAIOSFODNN7EXAMPLE"), cred("AKIAIOSFODNN7EXAMPLF"));
        let c = consumer(1, "/usr/bin/aws", false);
        let base = heads.get(&Subject { host: "h", credential: &id, source: Source::File, consumer: &c }).unwrap();
        for (host, credential, source) in [("h2", &id, Source::File), ("h", &other, Source::File), ("h", &id, Source::Env)] {
            let head = heads.get(&Subject { host, credential, source, consumer: &c }).unwrap();
            assert!(!Arc::ptr_eq(&base, &head), "{host} {} {source:?} took another usage's head", credential.id);
            assert_eq!(*head, usage_head(&Subject { host, credential, source, consumer: &c }).unwrap());
        }
        let mut uid = c.clone();
        uid.user_id = Some(1000);
        assert_ne!(heads.get(&Subject { host: "h", credential: &id, source: Source::File, consumer: &uid }).unwrap().key, base.key);
        let (pod_a, pod_b) = (consumer(2, "/usr/bin/aws", true), consumer(3, "/usr/bin/aws", true));
        let a = heads.get(&Subject { host: "h", credential: &id, source: Source::File, consumer: &pod_a }).unwrap();
        let b = heads.get(&Subject { host: "h", credential: &id, source: Source::File, consumer: &pod_b }).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "two containers of one pod workload are one usage");
        // (Under collisions the slot went to others meanwhile: an equal head.)
        assert_eq!(*heads.get(&Subject { host: "h", credential: &id, source: Source::File, consumer: &c }).unwrap(), *base);
    }
}
