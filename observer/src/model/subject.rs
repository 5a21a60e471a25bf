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
    /// The present values, in [`CONSUMER_KEYS`] order.
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
}
