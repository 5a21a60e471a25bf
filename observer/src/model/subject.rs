//! Who used which credential, as typed values: the credential's identity
//! ([`Credential`]), how it was obtained ([`Source`]) and the workload that
//! used it ([`Consumer`]). The sensors make them from what they decoded and
//! the workload identity stage; the correlator keys usages by them, so no
//! stage reads them back out of a record's attributes.
//!
//! Input: typed values from the sensors and the identity stage. Output: the
//! usage key's text and the consumer's attributes (rendered here only).
//! Invariant: the key text is the one the store has always held (its hash
//! is the stable `nhi.usage.id`), so it must not change shape.
use super::record::Value;

/// `nhi.source`: how a credential was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Read from a file.
    File,
    /// Found in a process's environment at exec.
    Env,
    /// Fetched from a cloud metadata service.
    Imds,
}

impl Source {
    /// The source an `nhi.source` value names.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::File, Self::Env, Self::Imds].into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Env => "env",
            Self::Imds => "imds",
        }
    }
}

/// `nhi.id` and `nhi.kind` of the credential an access names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub kind: String,
}

/// The workload-identity values that name a consumer. Not the pid, the pod
/// name or the cgroup path: they change with every restart, and usage would
/// then grow with them. A pod's container id is left out for the same
/// reason (its namespace and service account name the workload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// `process.executable.path`: the kernel's, else the process table's.
    pub executable_path: Option<String>,
    /// `process.user.id`.
    pub user_id: Option<u32>,
    /// `process.user.name`.
    pub user_name: Option<String>,
    /// `process.interactive` (known when the process is).
    pub interactive: Option<bool>,
    /// `nhi.systemd.unit`.
    pub systemd_unit: Option<String>,
    /// `container.id` (left out inside a pod).
    pub container_id: Option<String>,
    /// `container.runtime`.
    pub container_runtime: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// `nhi.k8s.service_account`: `namespace/name`.
    pub service_account: Option<String>,
}

/// The consumer attribute names, in the order usage keys and `nhi.usage`
/// records list them.
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

/// One consumer value, borrowed.
enum Part<'a> {
    Str(&'a str),
    Int(u32),
    Bool(bool),
}

impl Part<'_> {
    fn push_text(&self, out: &mut String) {
        match self {
            Self::Str(s) => out.push_str(s),
            Self::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

impl Consumer {
    /// The present values, in [`CONSUMER_KEYS`] order. [`hash_usage_key`]
    /// and [`same_usage_key`] go through the same fields: change them
    /// together (`same_usage_key_is_the_key_texts_equality_typed`).
    fn parts(&self) -> impl Iterator<Item = (&'static str, Part<'_>)> {
        let in_pod = self.namespace.is_some();
        fn s<'a>(k: &'static str, v: &'a Option<String>) -> Option<(&'static str, Part<'a>)> {
            v.as_deref().map(|v| (k, Part::Str(v)))
        }
        [
            s(CONSUMER_KEYS[0], &self.executable_path),
            self.user_id.map(|v| (CONSUMER_KEYS[1], Part::Int(v))),
            s(CONSUMER_KEYS[2], &self.user_name),
            self.interactive.map(|v| (CONSUMER_KEYS[3], Part::Bool(v))),
            s(CONSUMER_KEYS[4], &self.systemd_unit),
            if in_pod {
                None
            } else {
                s(CONSUMER_KEYS[5], &self.container_id)
            },
            s(CONSUMER_KEYS[6], &self.container_runtime),
            s(CONSUMER_KEYS[7], &self.namespace),
            s(CONSUMER_KEYS[8], &self.service_account),
        ]
        .into_iter()
        .flatten()
    }

    /// The consumer's attributes, in [`CONSUMER_KEYS`] order, as the
    /// typed record shows them.
    pub fn attributes(&self) -> Vec<(&'static str, Value)> {
        let mut a = Vec::with_capacity(CONSUMER_KEYS.len());
        super::render::append(&super::records::Consumer::from(self), &mut a);
        a
    }
}

impl From<&Consumer> for super::records::Consumer {
    /// The consumer as records show it: a pod's container id left out.
    fn from(c: &Consumer) -> Self {
        Self {
            executable_path: c.executable_path.clone(),
            user_id: c.user_id,
            user_name: c.user_name.clone(),
            interactive: c.interactive,
            systemd_unit: c.systemd_unit.clone(),
            container_id: if c.namespace.is_some() { None } else { c.container_id.clone() },
            container_runtime: c.container_runtime.clone(),
            namespace: c.namespace.clone(),
            service_account: c.service_account.clone(),
        }
    }
}

/// Writes the usage key of (host, credential, source, consumer) into `key`:
/// fields separated by U+001F, the consumer as `name=value` pairs.
pub fn write_usage_key(
    host: &str,
    credential: &Credential,
    source: Source,
    consumer: &Consumer,
    key: &mut String,
) {
    key.push_str(host);
    key.push('\u{1f}');
    key.push_str(&credential.id);
    key.push('\u{1f}');
    key.push_str(source.as_str());
    key.push('\u{1f}');
    for (k, v) in consumer.parts() {
        key.push_str(k);
        key.push('=');
        v.push_text(key);
        key.push('\u{1f}');
    }
}

/// A hash of part of what [`write_usage_key`] would write, without writing
/// it: subjects with one key hash alike. The parts that tell usages apart
/// on one host are hashed (the credential, the executable, the user, a
/// terminal, the systemd unit, the container or the pod's service
/// account), not those that follow from them (the host, the user's name,
/// the runtime, the namespace): each hashed text costs about as much as
/// comparing all of them, and two subjects that hash alike are told apart
/// by [`same_usage_key`] (in a bounded cache, two such usages would push
/// each other out).
pub fn hash_usage_key(id: &str, source: Source, c: &Consumer, state: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    id.hash(state);
    source.hash(state);
    c.executable_path.hash(state);
    c.user_id.hash(state);
    c.interactive.hash(state);
    c.systemd_unit.hash(state);
    if c.namespace.is_none() {
        c.container_id.hash(state);
    } else {
        c.service_account.hash(state);
    }
}

/// Whether two subjects (host, credential id, source, consumer) have one
/// usage key, compared typed rather than as [`write_usage_key`] texts (so
/// a value holding the separator cannot pass for two values): the fields
/// [`Consumer::parts`] lists, a pod's container left out.
/// (The sources as their names: a usage head keeps its source as text.)
pub fn same_usage_key(a: (&str, &str, &str, &Consumer), b: (&str, &str, &str, &Consumer)) -> bool {
    let (x, y) = (a.3, b.3);
    a.0 == b.0
        && a.1 == b.1
        && a.2 == b.2
        && x.executable_path == y.executable_path
        && x.user_id == y.user_id
        && x.user_name == y.user_name
        && x.interactive == y.interactive
        && x.systemd_unit == y.systemd_unit
        && x.namespace == y.namespace
        && (x.namespace.is_some() || x.container_id == y.container_id)
        && x.container_runtime == y.container_runtime
        && x.service_account == y.service_account
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_and_attributes_follow_the_key_order_and_leave_a_pods_container_out() {
        let cred = Credential {
            id: "AKIA1".into(),
            kind: "aws.access_key".into(),
        };
        let mut c = Consumer {
            executable_path: Some("/usr/bin/aws".into()),
            user_id: Some(0),
            interactive: Some(true),
            container_id: Some("c1".into()),
            ..Consumer::default()
        };
        let mut key = String::new();
        write_usage_key("h", &cred, Source::File, &c, &mut key);
        assert_eq!(
            key,
            "h\u{1f}AKIA1\u{1f}file\u{1f}process.executable.path=/usr/bin/aws\u{1f}process.user.id=0\u{1f}\
             process.interactive=true\u{1f}container.id=c1\u{1f}"
        );
        c.namespace = Some("ns".into());
        c.service_account = Some("ns/sa".into());
        let names: Vec<&str> = c.attributes().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "process.executable.path",
                "process.user.id",
                "process.interactive",
                "k8s.namespace.name",
                "nhi.k8s.service_account"
            ]
        );
    }

    /// Typed comparison is the key text's, except that a value holding the
    /// separator cannot pass for two values; equal keys hash alike.
    #[test]
    fn same_usage_key_is_the_key_texts_equality_typed() {
        use std::hash::{BuildHasher, Hasher};
        let hash = |c: &Consumer| {
            let state = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
            let mut h = state.build_hasher();
            hash_usage_key("AKIA1", Source::File, c, &mut h);
            h.finish()
        };
        let text = |c: &Consumer| {
            let mut key = String::new();
            write_usage_key("h", &Credential { id: "AKIA1".into(), kind: "k".into() }, Source::File, c, &mut key);
            key
        };
        let a = Consumer { executable_path: Some("/x".into()), user_id: Some(0), ..Consumer::default() };
        let same = |x: &Consumer, y: &Consumer| same_usage_key(("h", "AKIA1", "file", x), ("h", "AKIA1", "file", y));
        let mut b = a.clone();
        assert!(same(&a, &b) && text(&a) == text(&b) && hash(&a) == hash(&b));
        // In a pod the container is not part of the key.
        let (mut p, mut q) = (a.clone(), a.clone());
        (p.namespace, q.namespace) = (Some("ns".into()), Some("ns".into()));
        (p.container_id, q.container_id) = (Some("c1".into()), Some("c2".into()));
        assert!(same(&p, &q) && text(&p) == text(&q) && hash(&p) == hash(&q));
        // Each field, changed alone, in and out of a pod: another key
        // exactly when the key text differs; one key, one hash.
        for base in [a.clone(), p.clone()] {
            let changes: [fn(&mut Consumer); 9] = [
                |c| c.executable_path = None,
                |c| c.user_id = Some(7),
                |c| c.user_name = Some("u".into()),
                |c| c.interactive = Some(false),
                |c| c.systemd_unit = Some("x.service".into()),
                |c| c.container_id = Some("c9".into()),
                |c| c.container_runtime = Some("containerd".into()),
                |c| c.namespace = Some("other".into()),
                |c| c.service_account = Some("ns/sa".into()),
            ];
            for (i, change) in changes.iter().enumerate() {
                let mut b = base.clone();
                change(&mut b);
                assert_eq!(same(&base, &b), text(&base) == text(&b), "field {i}, pod {:?}", base.namespace);
                if same(&base, &b) {
                    assert_eq!(hash(&base), hash(&b), "field {i}");
                }
            }
        }
        b.user_id = Some(1);
        assert!(!same(&a, &b) && text(&a) != text(&b));
        // One text, two keys.
        let forged = Consumer { executable_path: Some("/x\u{1f}process.user.id=0".into()), ..Consumer::default() };
        assert_eq!(text(&forged), text(&a));
        assert!(!same(&forged, &a));
        assert!(!same_usage_key(("h", "AKIA1", "file", &a), ("h", "AKIA1", "env", &a)));
        assert!(!same_usage_key(("h", "AKIA1", "file", &a), ("h2", "AKIA1", "file", &a)));
        assert!(!same_usage_key(("h", "AKIA1", "file", &a), ("h", "AKIA2", "file", &a)));
    }
}
