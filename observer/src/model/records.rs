//! One typed record per event name. Each type derives `Serialize` with the
//! record's dotted attribute names and `JsonSchema`, so the schema
//! (`model::schema`) and every output (`model::render`) come from the same
//! declaration and cannot drift. Field docs are the schema's descriptions
//! (and the README field tables' text). A type with flattened parts
//! implements `Serialize` by hand instead, field by field in declaration
//! order with the same names and skip rules ([`super::flat`] says why);
//! reading its text back through the derived `Deserialize` checks it.
//!
//! Each also derives `Deserialize`, so the store's JSON text of a record
//! reads back as the record ([`super::from_json`]).
//!
//! Input: typed values from the sensors and the later stages. Output: the
//! attributes, rendered once by [`super::render`]. Invariant: field order
//! is the attribute order the outputs have always had; a key is absent
//! when its value is unknown (`skip_serializing_if`), never null.
use std::{borrow::Cow, time::SystemTime};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::SerializeStruct};

use super::flat;
use super::record::{
    EVENT_AGENT_STATS, EVENT_CONNECTION, EVENT_COVERAGE, EVENT_CREDENTIAL_ACCESS,
    EVENT_CREDENTIAL_ROTATION, EVENT_FINDING, EVENT_USAGE,
};

/// A typed record: its event name and time; its attributes are its
/// serialisation.
pub trait TypedRecord: Serialize + JsonSchema {
    /// `event.name`.
    const EVENT_NAME: &'static str;
    /// `time`.
    fn time(&self) -> SystemTime;
    /// Sets `time` (a record read back: its JSON text has it apart).
    fn set_time(&mut self, time: SystemTime);
}

/// A name from a closed set (`tcp`, `read`, `ipv4`, ...). An alias, so
/// that serde's derive does not take the field for text borrowed from the
/// input (it is read back through `de::static_str`).
pub type Name = &'static str;

fn is_false(b: &bool) -> bool {
    !*b
}

/// The process an event happened in, as the kernel saw it at that moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Process {
    /// The process (host pid namespace).
    #[serde(rename = "process.pid")]
    pub pid: u32,
    /// The thread that made the call.
    #[serde(rename = "thread.id")]
    pub thread_id: u32,
    /// The parent process.
    #[serde(rename = "process.parent_pid", skip_serializing_if = "Option::is_none")]
    pub parent_pid: Option<u32>,
    /// The process's user id.
    #[serde(rename = "process.user.id")]
    pub user_id: u32,
    /// The kernel's command name (`comm`, 15 bytes).
    #[serde(rename = "process.command")]
    pub command: String,
    /// The executable, from the kernel at event time (else from the process table).
    #[serde(
        rename = "process.executable.path",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable_path: Option<String>,
}

impl Process {
    /// The process of a kernel event (`exe`: the executable the kernel
    /// captured with it).
    pub fn new(task: &crate::decode::Task, exe: Option<&crate::decode::WalkedPath>) -> Self {
        Self {
            pid: task.tgid,
            thread_id: task.pid,
            parent_pid: (task.ppid != 0).then_some(task.ppid),
            user_id: task.uid,
            command: task.comm.clone(),
            executable_path: exe.map(crate::decode::WalkedPath::lossy),
        }
    }
}

/// The workload identity of the process an event happened in (the identity
/// stage adds it). Keys are absent when unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// The path given to exec when it is not the executable (a script; the executable is its interpreter).
    #[serde(
        rename = "nhi.process.exec_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub exec_path: Option<String>,
    /// The arguments, only with `--capture-args` (or `capture_args` in `[process]`); values that look like secrets become `<masked>`.
    #[serde(
        rename = "process.command_args",
        skip_serializing_if = "Option::is_none"
    )]
    pub command_args: Option<Vec<String>>,
    /// Present (true) when argv was longer than the 1 KiB the kernel copies.
    #[serde(
        rename = "nhi.process.command_args_truncated",
        skip_serializing_if = "is_false",
        default
    )]
    pub command_args_truncated: bool,
    /// The process's group id.
    #[serde(
        rename = "nhi.process.group.id",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<u32>,
    /// Whether the process has a controlling terminal: a person, not a workload, is using the credential.
    #[serde(
        rename = "process.interactive",
        skip_serializing_if = "Option::is_none"
    )]
    pub interactive: Option<bool>,
    /// The controlling terminal (`pts/3`).
    #[serde(rename = "nhi.process.tty", skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// When the process started (with `process.pid`, unique even when pids are reused; RFC 3339).
    #[serde(
        rename = "process.creation.time",
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_time: Option<String>,
    /// Parent, grandparent, ... as `"<pid> <executable>"`, nearest first, up to 8.
    #[serde(
        rename = "nhi.process.ancestors",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub ancestors: Vec<String>,
    /// The user name of `process.user.id` on this host.
    #[serde(rename = "process.user.name", skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The cgroup v2 path at the moment of the event.
    #[serde(rename = "nhi.cgroup.path", skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`), for non-container cgroups.
    #[serde(rename = "nhi.systemd.unit", skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The container, from the cgroup name.
    #[serde(rename = "container.id", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman` (absent when the cgroup name does not say).
    #[serde(rename = "container.runtime", skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The pod, from the kubelet's cgroup name (or the service-account token).
    #[serde(rename = "k8s.pod.uid", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The pod's namespace, decoded (not verified) from the service-account token the pod mounts.
    #[serde(rename = "k8s.namespace.name", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name, decoded (not verified) from its service-account token.
    #[serde(rename = "k8s.pod.name", skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's service account, `namespace/name`.
    #[serde(
        rename = "nhi.k8s.service_account",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account: Option<String>,
    /// The service account's uid.
    #[serde(
        rename = "nhi.k8s.service_account.uid",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account_uid: Option<String>,
    /// The node the pod runs on.
    #[serde(rename = "k8s.node.name", skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The issuer of the pod's service-account token.
    #[serde(
        rename = "nhi.k8s.token.issuer",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_issuer: Option<String>,
    /// When the pod's service-account token expires (RFC 3339).
    #[serde(
        rename = "nhi.k8s.token.expires",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_expires: Option<String>,
}

/// Non-secret facts about a credential's identity, open-ended
/// (`nhi.aws.profile`, `nhi.x509.not_after`, `nhi.detector`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts(pub Vec<(&'static str, String)>);

impl Facts {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Facts {
    /// As a struct: the names are `&'static str` (the creds crate's
    /// literals, or names read back that match [`de::is_fact`]), so they
    /// reach the serializer as field names ([`super::flat`]).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Facts", self.0.len())?;
        for (k, v) in &self.0 {
            st.serialize_field(k, v)?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for Facts {
    /// The keys of the facts' pattern ([`de::is_fact`]) among what the
    /// record's other parts left; any other key belongs to another part.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Facts;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("identity facts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Facts, A::Error> {
                let mut facts = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if de::is_fact(&key) {
                        facts.push((super::render::intern(&key), map.next_value::<String>()?));
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Facts(facts))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl JsonSchema for Facts {
    fn schema_name() -> Cow<'static, str> {
        "Facts".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "patternProperties": {
                "^nhi\\.(aws|azure|content|credential|db|detector|gcp|jwt|k8s|key|pypi|registry|server|ssh|x509)(\\.[a-z0-9_.]+)?$": {
                    "type": "string",
                    "description": "Non-secret facts about the identity: `nhi.aws.*`, `nhi.gcp.*`, `nhi.k8s.*`, `nhi.x509.*`, `nhi.key.*`, `nhi.jwt.*`, `nhi.registry`, `nhi.server.address`, `nhi.credential.expires_at`, `nhi.detector`, `nhi.content.line`, `nhi.content.name`, ... (string values: profile, project, service-account uid, certificate subject and notAfter, key algorithm, token audience and expiry, the host a login is for; for files found by content, what recognised the credential, its line and the assignment that holds it)."
                }
            }
        })
    }
}

/// The credential an access names, when the file, variable or request
/// names one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct Identity {
    /// The credential's stable, non-secret identity (one record per identity in a file).
    #[serde(rename = "nhi.id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Non-secret facts about the identity.
    #[serde(flatten, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Identity", flat::UNCOUNTED)?;
        flat::opt(&mut st, "nhi.id", &self.id)?;
        if !self.facts.is_empty() {
            flat::fields(&mut st, &self.facts)?;
        }
        st.end()
    }
}

/// What the file sensor saw of a file open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileOpen {
    /// Present (true) when `file.path` or `nhi.file.requested_path` held bytes that are not UTF-8, shown as `\xNN`.
    #[serde(
        rename = "nhi.file.path_escaped",
        skip_serializing_if = "is_false",
        default
    )]
    pub path_escaped: bool,
    /// The opened file's real path in the process's mount namespace (symlinks resolved); for a failed open, the requested path (joined to the cwd or dirfd directory when relative).
    #[serde(rename = "file.path")]
    pub path: String,
    /// Present (true) when the resolved path was longer than the kernel copies.
    #[serde(
        rename = "nhi.file.path_truncated",
        skip_serializing_if = "is_false",
        default
    )]
    pub path_truncated: bool,
    /// The path exactly as the process passed it.
    #[serde(rename = "nhi.file.requested_path")]
    pub requested_path: String,
    /// Present (true) when the requested path was longer than the kernel copies.
    #[serde(
        rename = "nhi.file.requested_path_truncated",
        skip_serializing_if = "is_false",
        default
    )]
    pub requested_path_truncated: bool,
    /// The opened file's inode (successful opens), as a decimal string.
    #[serde(rename = "file.inode", skip_serializing_if = "Option::is_none")]
    pub inode: Option<Inode>,
    /// The opened file's device, `major:minor` (successful opens).
    #[serde(rename = "nhi.file.device", skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// `read`, `write` or `read_write`.
    #[serde(rename = "nhi.file.access")]
    #[serde(deserialize_with = "de::static_str")]
    pub access: Name,
    /// Whether `O_CREAT` was given.
    #[serde(rename = "nhi.file.create")]
    pub create: bool,
    /// The mode of a create (octal, `0600`).
    #[serde(rename = "nhi.file.mode", skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// How the kernel caught it: `path` (a path rule, failed opens), `inode` (a known credential file, under any name), `directory` (a file in a watched directory), `name` (its name, prefix or suffix; confirmed by the agent).
    #[serde(rename = "nhi.match")]
    #[serde(deserialize_with = "de::static_str")]
    pub match_kind: Name,
    /// `open`/`openat`/`openat2`/`creat`, or `io_uring.openat`/`io_uring.openat2` for opens submitted through io_uring.
    #[serde(rename = "nhi.open.syscall")]
    #[serde(deserialize_with = "de::static_str")]
    pub syscall: Name,
    /// The fd or `-errno`.
    #[serde(rename = "nhi.open.result")]
    pub result: i64,
    /// Present (true) for an io_uring open into a fixed-file slot (`file_index`): `nhi.open.result` is 0 or the slot, there is no descriptor, so no inode and `file.path` is the requested path.
    #[serde(
        rename = "nhi.open.fixed_file",
        skip_serializing_if = "is_false",
        default
    )]
    pub fixed_file: bool,
    /// The errno name (`ENOENT`) when the open failed.
    #[serde(rename = "error.type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// An inode number, shown as a decimal string (written straight into the
/// output, no string kept per event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inode(pub u64);

impl Serialize for Inode {
    /// Its digits as one string (not through `core::fmt`, which hands the
    /// serializer a fragment at a time).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

impl<'de> Deserialize<'de> for Inode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map(Self).map_err(serde::de::Error::custom)
    }
}

/// A kernel `dev_t` (`super_block::s_dev`, as file events carry it), shown
/// as `major:minor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Device(pub u64);

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = observer_common::kernel_dev_split(self.0 as u32);
        write!(f, "{major}:{minor}")
    }
}

impl Serialize for Device {
    /// `major:minor` (as its `Display`), made on the stack and handed over
    /// as one string.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (major, minor) = observer_common::kernel_dev_split(self.0 as u32);
        let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (major, minor) = (a.format(major).as_bytes(), b.format(minor).as_bytes());
        // Two u32s of at most 10 digits each, and the colon.
        let mut text = [0u8; 21];
        let colon = major.len();
        let end = colon + 1 + minor.len();
        text[..colon].copy_from_slice(major);
        text[colon] = b':';
        text[colon + 1..end].copy_from_slice(minor);
        s.serialize_str(crate::decode::utf8(&text[..end]).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Device {
    /// `major:minor`, back to the kernel's `dev_t`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        let (major, minor) = s
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| serde::de::Error::custom("a device is major:minor"))?;
        Ok(Self(u64::from(observer_common::kernel_dev(major, minor))))
    }
}

/// Both are strings in every output.
macro_rules! string_schema {
    ($($t:ty),*) => {$(
        impl JsonSchema for $t {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                String::schema_name()
            }
            fn json_schema(g: &mut SchemaGenerator) -> Schema {
                String::json_schema(g)
            }
        }
    )*};
}
string_schema!(Inode, Device);

/// How the catalog read a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileContent {
    /// The file format the catalog read it as (`aws-ini`, `kubeconfig`, `tls`, ...).
    #[serde(rename = "nhi.format", skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// When the file yielded no identity and may hold a credential: `too_large`, `binary` or `malformed` (at a specific credential path), `encrypted`, `unsupported`, `unreadable` (also: a FIFO or device at a credential path).
    #[serde(
        rename = "nhi.unparsed.reason",
        skip_serializing_if = "Option::is_none"
    )]
    #[serde(default, deserialize_with = "de::opt_static_str")]
    pub unparsed_reason: Option<Name>,
    /// With `unreadable`: why (`not a regular file: a FIFO`, an I/O error kind, ...).
    #[serde(
        rename = "nhi.unparsed.detail",
        skip_serializing_if = "Option::is_none"
    )]
    pub unparsed_detail: Option<String>,
}

/// `nhi.credential.access` (`nhi.source` = `file`): a credential file opened.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct FileAccess {
    /// The catalog rule's credential kind, or the identity's own, more precise kind (`aws.session_key`, `github.pat`, ...).
    #[serde(rename = "nhi.kind", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'static, str>>,
    /// The catalog rule that matched (`content` for files found by content).
    #[serde(rename = "nhi.rule", skip_serializing_if = "Option::is_none")]
    pub rule: Option<Cow<'static, str>>,
    /// The open.
    #[serde(flatten)]
    pub open: FileOpen,
    /// The opening process.
    #[serde(flatten)]
    pub process: Process,
    /// The opening process's workload (before the content and identity:
    /// the order the agent has always emitted).
    #[serde(flatten)]
    pub workload: Workload,
    /// How the file was read.
    #[serde(flatten)]
    pub content: FileContent,
    /// The identity this record names.
    #[serde(flatten)]
    pub identity: Identity,
    /// How many opens this record stands for: the same process opening the same file the same way with the same outcome within `dedup_interval_ms` is folded into one record. Summed, the counts are every open.
    #[serde(rename = "nhi.access.count", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Serialize for FileAccess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FileAccess", flat::UNCOUNTED)?;
        flat::opt(&mut st, "nhi.kind", &self.kind)?;
        flat::opt(&mut st, "nhi.rule", &self.rule)?;
        flat::fields(&mut st, &self.open)?;
        flat::fields(&mut st, &self.process)?;
        flat::fields(&mut st, &self.workload)?;
        flat::fields(&mut st, &self.content)?;
        flat::fields(&mut st, &self.identity)?;
        flat::opt(&mut st, "nhi.access.count", &self.count)?;
        st.end()
    }
}

/// `nhi.credential.access` (`nhi.source` = `env`): a credential in a process's environment at exec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct EnvAccess {
    /// From the value's prefix when it has a known one (`github.pat`, `slack.bot_token`, ...), else from the name: `aws.access_key`, `aws.session_token`, `gcp.service_account_key`, `github.token`, `vault.token`, `generic.token`, `generic.api_key`, `generic.secret`, `generic.password`.
    #[serde(rename = "nhi.kind")]
    pub kind: String,
    /// AWS: the access key id; a value with a known token prefix: `<kind>:hmac-sha256:...`; any other value: `secret.value:hmac-sha256:...`; none for a variable that names a file.
    #[serde(rename = "nhi.id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The variable's name (its value never leaves the agent).
    #[serde(rename = "nhi.env.name")]
    pub env_name: String,
    /// The exec'ing process.
    #[serde(flatten)]
    pub process: Process,
    /// Its workload.
    #[serde(flatten)]
    pub workload: Workload,
}

impl Serialize for EnvAccess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("EnvAccess", flat::UNCOUNTED)?;
        st.serialize_field("nhi.kind", &self.kind)?;
        flat::opt(&mut st, "nhi.id", &self.id)?;
        st.serialize_field("nhi.env.name", &self.env_name)?;
        flat::fields(&mut st, &self.process)?;
        flat::fields(&mut st, &self.workload)?;
        st.end()
    }
}

/// Where a connection went, on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// `ipv4` (also for a dual-stack socket's v4-mapped destination) or `ipv6`.
    #[serde(rename = "network.type")]
    #[serde(deserialize_with = "de::static_str")]
    pub network_type: Name,
    /// The destination address as on the wire.
    #[serde(rename = "network.peer.address")]
    pub address: String,
    /// The destination port as on the wire.
    #[serde(rename = "network.peer.port")]
    pub port: u16,
}

/// The socket a network record is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SocketFacts {
    /// The socket's family, `inet` or `inet6`.
    #[serde(rename = "nhi.socket.family")]
    #[serde(deserialize_with = "de::static_str")]
    pub family: Name,
    /// The kernel's socket cookie (joins this record to others about the socket), as a decimal string.
    #[serde(rename = "nhi.socket.cookie")]
    pub cookie: String,
}

/// `nhi.credential.access` (`nhi.source` = `imds`): a request to a cloud instance-metadata service that hands out or names a credential.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
pub struct ImdsAccess {
    /// `aws.imds.session_token`, `aws.iam_role`, `aws.ec2_instance_identity`, `aws.ecs_task_role`, `aws.eks_pod_identity`, `gcp.service_account`, `azure.managed_identity`, `alibaba.ram_role`.
    #[serde(rename = "nhi.kind", skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "de::opt_static_str")]
    pub kind: Option<Name>,
    /// The role, account or identity the request names, when it names one.
    #[serde(rename = "nhi.id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `aws`, `gcp`, `azure`, `alibaba`.
    #[serde(rename = "nhi.imds.provider")]
    #[serde(deserialize_with = "de::static_str")]
    pub provider: Name,
    /// `token`, `list`, `credentials`, `identity`.
    #[serde(rename = "nhi.imds.operation")]
    #[serde(deserialize_with = "de::static_str")]
    pub operation: Name,
    /// The request's method.
    #[serde(rename = "http.request.method")]
    pub method: String,
    /// The request's path, without query.
    #[serde(rename = "url.path")]
    pub url_path: String,
    /// The HTTP `Host` without its port, else the peer address.
    #[serde(rename = "server.address")]
    pub server_address: String,
    /// The peer port.
    #[serde(rename = "server.port")]
    pub server_port: u16,
    /// The destination on the wire.
    #[serde(flatten)]
    pub peer: Peer,
    /// The socket.
    #[serde(flatten)]
    pub socket: SocketFacts,
    /// The requesting process.
    #[serde(flatten)]
    pub process: Process,
    /// Its workload.
    #[serde(flatten)]
    pub workload: Workload,
}

impl Serialize for ImdsAccess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ImdsAccess", flat::UNCOUNTED)?;
        flat::opt(&mut st, "nhi.kind", &self.kind)?;
        flat::opt(&mut st, "nhi.id", &self.id)?;
        st.serialize_field("nhi.imds.provider", self.provider)?;
        st.serialize_field("nhi.imds.operation", self.operation)?;
        st.serialize_field("http.request.method", &self.method)?;
        st.serialize_field("url.path", &self.url_path)?;
        st.serialize_field("server.address", &self.server_address)?;
        st.serialize_field("server.port", &self.server_port)?;
        flat::fields(&mut st, &self.peer)?;
        flat::fields(&mut st, &self.socket)?;
        flat::fields(&mut st, &self.process)?;
        flat::fields(&mut st, &self.workload)?;
        st.end()
    }
}

/// How a credential was obtained (`nhi.source`), with what that source
/// tells. Each part is boxed: a part is most of a record (about 900
/// bytes, the workload's optional texts), and a record is moved from
/// stage to stage; boxed, a move copies a pointer (the benchmark's access
/// record took six `memcpy` calls of 952 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "nhi.source")]
pub enum AccessSource {
    /// Read from a file.
    #[serde(rename = "file")]
    File(Box<FileAccess>),
    /// Found in a process's environment at exec.
    #[serde(rename = "env")]
    Env(Box<EnvAccess>),
    /// Fetched from a cloud metadata service.
    #[serde(rename = "imds")]
    Imds(Box<ImdsAccess>),
}

/// `nhi.credential.access`: a credential read from a file, the environment or a metadata service.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct CredentialAccess {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// How the credential was obtained: `file`, `env` or `imds`.
    #[serde(flatten)]
    pub source: AccessSource,
    /// `<instance>-<n>`, never reused: the same id on a record delivered twice (after a crash) marks the duplicate.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Serialize for CredentialAccess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CredentialAccess", flat::UNCOUNTED)?;
        st.serialize_field("host.name", &self.host_name)?;
        flat::fields(&mut st, &self.source)?;
        flat::opt(&mut st, "nhi.record.id", &self.record_id)?;
        st.end()
    }
}

/// `nhi.credential.rotation`: a known credential file changed; the file's access record, with its identities before and after.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct Rotation {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// `file`.
    #[serde(rename = "nhi.source")]
    #[serde(deserialize_with = "de::static_str")]
    pub source: Name,
    /// The access that found the change.
    #[serde(flatten)]
    pub access: FileAccess,
    /// The file's identities before and after.
    #[serde(flatten)]
    pub change: RotationIds,
    /// `<instance>-<n>`, never reused.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Serialize for Rotation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Rotation", flat::UNCOUNTED)?;
        st.serialize_field("host.name", &self.host_name)?;
        st.serialize_field("nhi.source", self.source)?;
        flat::fields(&mut st, &self.access)?;
        flat::fields(&mut st, &self.change)?;
        flat::opt(&mut st, "nhi.record.id", &self.record_id)?;
        st.end()
    }
}

/// A credential file's identities before and after a change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RotationIds {
    /// The file's identities before, sorted, comma-separated.
    #[serde(rename = "nhi.rotation.previous_ids")]
    pub previous_ids: String,
    /// The file's identities after, sorted, comma-separated.
    #[serde(rename = "nhi.rotation.current_ids")]
    pub current_ids: String,
    /// Whether the identities changed (else only the content did).
    #[serde(rename = "nhi.rotation.identity_changed")]
    pub identity_changed: bool,
}

/// What a connection's first bytes said about TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsHello {
    /// `tls` (`ssl` for SSL 3).
    #[serde(rename = "tls.protocol.name", skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "de::opt_static_str")]
    pub protocol_name: Option<Name>,
    /// The highest version the client offered (`1.3`); the negotiated one is in the server's answer, which is not read.
    #[serde(
        rename = "tls.protocol.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    /// Offered TLS versions (GREASE values removed).
    #[serde(rename = "nhi.tls.offered_versions")]
    pub offered_versions: Vec<String>,
    /// Offered ALPN protocols.
    #[serde(
        rename = "nhi.tls.alpn",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub alpn: Vec<String>,
    /// Whether the client sent GREASE.
    #[serde(rename = "nhi.tls.grease")]
    pub grease: bool,
}

/// `nhi.connection`: one per outbound TCP connection and per QUIC connection attempt.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct Connection {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// `tcp` or `quic`.
    #[serde(rename = "network.transport")]
    #[serde(deserialize_with = "de::static_str")]
    pub transport: Name,
    /// The server name the client asked for (TLS or QUIC SNI, or the HTTP `Host` of a metadata request); without one, the peer address.
    #[serde(rename = "server.address")]
    pub server_address: String,
    /// The server port.
    #[serde(rename = "server.port")]
    pub server_port: u16,
    /// Whether `server.address` is a name seen in the traffic.
    #[serde(rename = "nhi.server_name.seen")]
    pub server_name_seen: bool,
    /// `tls.sni`, `quic.sni` or `http.host` (when seen).
    #[serde(
        rename = "nhi.server_name.source",
        skip_serializing_if = "Option::is_none"
    )]
    #[serde(default, deserialize_with = "de::opt_static_str")]
    pub server_name_source: Option<Name>,
    /// The destination on the wire.
    #[serde(flatten)]
    pub peer: Peer,
    /// What the first bytes were: `tls`, `quic`, `http` (to a metadata service), `other` (not copied), `none` (nothing sent), `incomplete` (a ClientHello that did not finish within what the kernel copies).
    #[serde(rename = "nhi.connection.payload")]
    #[serde(deserialize_with = "de::static_str")]
    pub payload: Name,
    /// The ClientHello, when there was one.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsHello>,
    /// `1` or `2`.
    #[serde(rename = "nhi.quic.version", skip_serializing_if = "Option::is_none")]
    pub quic_version: Option<String>,
    /// The first request's method (metadata-service connections).
    #[serde(
        rename = "http.request.method",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_method: Option<String>,
    /// The first request's path, without query (metadata-service connections).
    #[serde(rename = "url.path", skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    /// Why TLS or QUIC bytes gave no ClientHello (`incomplete_client_hello`, `malformed_hello`, ...).
    #[serde(rename = "error.type", skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "de::opt_static_str")]
    pub error_type: Option<Name>,
    /// The socket.
    #[serde(flatten)]
    pub socket: SocketFacts,
    /// The connecting process, captured in the kernel at `connect()` (for QUIC, at the socket's first `sendmsg()`/`connect()`; the executable then comes from `/proc`).
    #[serde(flatten)]
    pub process: Process,
    /// Its workload.
    #[serde(flatten)]
    pub workload: Workload,
    /// `<instance>-<n>`, never reused.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Connection", flat::UNCOUNTED)?;
        st.serialize_field("host.name", &self.host_name)?;
        st.serialize_field("network.transport", self.transport)?;
        st.serialize_field("server.address", &self.server_address)?;
        st.serialize_field("server.port", &self.server_port)?;
        st.serialize_field("nhi.server_name.seen", &self.server_name_seen)?;
        flat::opt(&mut st, "nhi.server_name.source", &self.server_name_source)?;
        flat::fields(&mut st, &self.peer)?;
        st.serialize_field("nhi.connection.payload", self.payload)?;
        flat::fields(&mut st, &self.tls)?;
        flat::opt(&mut st, "nhi.quic.version", &self.quic_version)?;
        flat::opt(&mut st, "http.request.method", &self.http_method)?;
        flat::opt(&mut st, "url.path", &self.url_path)?;
        flat::opt(&mut st, "error.type", &self.error_type)?;
        flat::fields(&mut st, &self.socket)?;
        flat::fields(&mut st, &self.process)?;
        flat::fields(&mut st, &self.workload)?;
        flat::opt(&mut st, "nhi.record.id", &self.record_id)?;
        st.end()
    }
}

/// The workload that used a credential: never a pid or pod name, so one usage spans restarts and replicas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Consumer {
    /// The executable: the kernel's, else the process table's.
    #[serde(
        rename = "process.executable.path",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable_path: Option<String>,
    /// The user id.
    #[serde(rename = "process.user.id", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    /// The user name.
    #[serde(rename = "process.user.name", skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Whether the process had a controlling terminal.
    #[serde(
        rename = "process.interactive",
        skip_serializing_if = "Option::is_none"
    )]
    pub interactive: Option<bool>,
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`), for non-container cgroups.
    #[serde(rename = "nhi.systemd.unit", skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The container, from the cgroup name (left out inside a pod: its namespace and service account name the workload).
    #[serde(rename = "container.id", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman` (absent when the cgroup name does not say).
    #[serde(rename = "container.runtime", skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The pod's namespace, decoded (not verified) from the service-account token the pod mounts.
    #[serde(rename = "k8s.namespace.name", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's service account, `namespace/name`.
    #[serde(
        rename = "nhi.k8s.service_account",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account: Option<String>,
}

/// The destinations of a usage's linked connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageDestinations {
    /// `direct` (a connection by the process that read it, within `direct_window_secs`) or `inferred` (later, or by a descendant, within `inferred_window_secs`).
    #[serde(rename = "nhi.usage.confidence")]
    #[serde(deserialize_with = "de::static_str")]
    pub confidence: Name,
    /// Present (true) when more destinations than listed were linked.
    #[serde(
        rename = "nhi.usage.destinations_truncated",
        skip_serializing_if = "is_false",
        default
    )]
    pub truncated: bool,
    /// The single destination's server, when there is exactly one.
    #[serde(rename = "server.address", skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// The single destination's port, when there is exactly one.
    #[serde(rename = "server.port", skip_serializing_if = "Option::is_none")]
    pub server_port: Option<u16>,
    /// `server.address:server.port` of the linked connections (most recent first, up to 32).
    #[serde(rename = "nhi.usage.destinations")]
    pub destinations: Vec<String>,
    /// Each listed destination's best confidence.
    #[serde(rename = "nhi.usage.destination_confidences")]
    pub confidences: Vec<String>,
}

/// `nhi.usage`: the cumulative use of one credential by one workload, written when it changed.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct Usage {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// The credential.
    #[serde(rename = "nhi.id")]
    pub id: String,
    /// The credential's kind.
    #[serde(rename = "nhi.kind")]
    pub kind: String,
    /// How it was obtained (`file`, `env`, `imds`).
    #[serde(rename = "nhi.source")]
    pub source: String,
    /// The workload that used it.
    #[serde(flatten)]
    pub consumer: Consumer,
    /// Stable id of (host, credential, source, consumer).
    #[serde(rename = "nhi.usage.id")]
    pub usage_id: String,
    /// First access or linked connection (RFC 3339).
    #[serde(rename = "nhi.usage.first_seen")]
    pub first_seen: String,
    /// Last access or linked connection (RFC 3339).
    #[serde(rename = "nhi.usage.last_seen")]
    pub last_seen: String,
    /// Accesses: the sum of the access records' `nhi.access.count`.
    #[serde(rename = "nhi.usage.count")]
    pub count: u64,
    /// Connections linked to the credential.
    #[serde(rename = "nhi.usage.connections")]
    pub connections: u64,
    /// Where its connections went; absent when no connection was linked.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<UsageDestinations>,
    /// `<instance>-<n>`, never reused.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Usage", flat::UNCOUNTED)?;
        st.serialize_field("host.name", &self.host_name)?;
        st.serialize_field("nhi.id", &self.id)?;
        st.serialize_field("nhi.kind", &self.kind)?;
        st.serialize_field("nhi.source", &self.source)?;
        flat::fields(&mut st, &self.consumer)?;
        st.serialize_field("nhi.usage.id", &self.usage_id)?;
        st.serialize_field("nhi.usage.first_seen", &self.first_seen)?;
        st.serialize_field("nhi.usage.last_seen", &self.last_seen)?;
        st.serialize_field("nhi.usage.count", &self.count)?;
        st.serialize_field("nhi.usage.connections", &self.connections)?;
        flat::fields(&mut st, &self.destinations)?;
        flat::opt(&mut st, "nhi.record.id", &self.record_id)?;
        st.end()
    }
}

/// The workload a finding is about, where known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindingWorkload {
    /// The executable.
    #[serde(
        rename = "process.executable.path",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable_path: Option<String>,
    /// The user id.
    #[serde(rename = "process.user.id", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// Present (true) when a person at a terminal used it.
    #[serde(
        rename = "process.interactive",
        skip_serializing_if = "is_false",
        default
    )]
    pub interactive: bool,
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`), for non-container cgroups.
    #[serde(rename = "nhi.systemd.unit", skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The container image.
    #[serde(
        rename = "container.image.name",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_image: Option<String>,
    /// The container, from the cgroup name.
    #[serde(rename = "container.id", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The pod's namespace, decoded (not verified) from the service-account token the pod mounts.
    #[serde(rename = "k8s.namespace.name", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's service account, `namespace/name`.
    #[serde(
        rename = "nhi.k8s.service_account",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account: Option<String>,
}

/// What an `unused` finding was judged on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UnusedEvidence {
    /// When it was judged (RFC 3339).
    #[serde(rename = "nhi.finding.evaluated_at")]
    pub evaluated_at: String,
    /// Over which window, in seconds.
    #[serde(rename = "nhi.finding.window_seconds")]
    pub window_seconds: u64,
    /// Since when this host's state directory has been watched (RFC 3339).
    #[serde(
        rename = "nhi.coverage.tracked_since",
        skip_serializing_if = "Option::is_none"
    )]
    pub tracked_since: Option<String>,
    /// Which share of the window was watched (a string, one decimal, rounded down).
    #[serde(rename = "nhi.coverage.percent")]
    pub coverage_percent: String,
    /// The events lost in the window.
    #[serde(rename = "nhi.coverage.events_lost")]
    pub events_lost: u64,
}

/// `nhi.finding`: what the usage records mean (shadow, unused, misused, ...); one record when a finding opens, changes or resolves.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct Finding {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// Stable hex id: a hash of the type, `nhi.id` and subject (the consumer, destination, path or check).
    #[serde(rename = "nhi.finding.id")]
    pub id: String,
    /// `shadow`, `unused`, `unexpected_consumer`, `unexpected_destination`, `human_use`, `reuse`, `hygiene`, `created`.
    #[serde(rename = "nhi.finding.type")]
    #[serde(deserialize_with = "de::static_str")]
    pub finding_type: Name,
    /// `open` or `resolved`.
    #[serde(rename = "nhi.finding.state")]
    #[serde(deserialize_with = "de::static_str")]
    pub state: Name,
    /// `info`, `low`, `medium`, `high`.
    #[serde(rename = "nhi.finding.severity")]
    #[serde(deserialize_with = "de::static_str")]
    pub severity: Name,
    /// Short human text (never secret material).
    #[serde(rename = "nhi.finding.reason")]
    pub reason: String,
    /// The credential.
    #[serde(rename = "nhi.id")]
    pub nhi_id: String,
    /// The credential's kind.
    #[serde(rename = "nhi.kind")]
    pub nhi_kind: String,
    /// The evidence: first seen (RFC 3339).
    #[serde(rename = "nhi.finding.first_seen")]
    pub first_seen: String,
    /// The evidence: last seen (RFC 3339).
    #[serde(rename = "nhi.finding.last_seen")]
    pub last_seen: String,
    /// The evidence: how many accesses, connections or files.
    #[serde(rename = "nhi.finding.count")]
    pub count: u64,
    /// `nhi.record.id` of the records behind it (the latest accesses naming the credential; for `created`, the creating open).
    #[serde(rename = "nhi.finding.record_ids")]
    pub record_ids: Vec<String>,
    /// The workload, where known.
    #[serde(
        flatten,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::finding_workload"
    )]
    pub workload: Option<FindingWorkload>,
    /// `unexpected_destination`: the server.
    #[serde(rename = "server.address", skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// The file it is about, where one applies.
    #[serde(rename = "file.path", skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// `unused` only: what it was judged on.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub unused: Option<UnusedEvidence>,
    /// `<instance>-<n>`, never reused.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl Serialize for Finding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Finding", flat::UNCOUNTED)?;
        st.serialize_field("host.name", &self.host_name)?;
        st.serialize_field("nhi.finding.id", &self.id)?;
        st.serialize_field("nhi.finding.type", self.finding_type)?;
        st.serialize_field("nhi.finding.state", self.state)?;
        st.serialize_field("nhi.finding.severity", self.severity)?;
        st.serialize_field("nhi.finding.reason", &self.reason)?;
        st.serialize_field("nhi.id", &self.nhi_id)?;
        st.serialize_field("nhi.kind", &self.nhi_kind)?;
        st.serialize_field("nhi.finding.first_seen", &self.first_seen)?;
        st.serialize_field("nhi.finding.last_seen", &self.last_seen)?;
        st.serialize_field("nhi.finding.count", &self.count)?;
        st.serialize_field("nhi.finding.record_ids", &self.record_ids)?;
        flat::fields(&mut st, &self.workload)?;
        flat::opt(&mut st, "server.address", &self.server_address)?;
        flat::opt(&mut st, "file.path", &self.file_path)?;
        flat::fields(&mut st, &self.unused)?;
        flat::opt(&mut st, "nhi.record.id", &self.record_id)?;
        st.end()
    }
}

/// `nhi.coverage`: what was watched, when, and what was lost, so "not used" and "not watched" can be told apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coverage {
    #[serde(skip, default = "de::epoch")]
    pub time: SystemTime,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// The start of the interval this record covers (RFC 3339; consecutive records are contiguous).
    #[serde(rename = "nhi.coverage.start")]
    pub start: String,
    /// The end of the interval this record covers (RFC 3339).
    #[serde(rename = "nhi.coverage.end")]
    pub end: String,
    /// The first watched moment of this state directory (RFC 3339).
    #[serde(rename = "nhi.coverage.tracked_since")]
    pub tracked_since: String,
    /// Sensors attached: `file`, `process`, `network` (absent without cgroup v2).
    #[serde(rename = "nhi.coverage.sensors")]
    pub sensors: Vec<String>,
    /// Events the kernel could not queue in the interval.
    #[serde(rename = "nhi.coverage.events_lost")]
    pub events_lost: u64,
    /// The events lost as `kind=n` (`file`, `process`, `network`, `decode`).
    #[serde(rename = "nhi.coverage.events_lost_by_kind")]
    pub events_lost_by_kind: Vec<String>,
    /// Records the agent could not decode.
    #[serde(rename = "nhi.coverage.decode_errors")]
    pub decode_errors: u64,
    /// `up`, `degraded` (events lost, or no network sensor) or `stopping`.
    #[serde(rename = "nhi.agent.state")]
    pub state: String,
    /// `<instance>-<n>`, never reused.
    #[serde(rename = "nhi.record.id", skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

/// `nhi.agent.stats`: the agent's own counters, cumulative since start (JSON lines; OTLP carries them as metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentStats {
    #[serde(skip)]
    pub time: Option<SystemTime>,
    /// The host the agent runs on.
    #[serde(rename = "host.name")]
    pub host_name: Cow<'static, str>,
    /// File events the kernel sent.
    #[serde(rename = "nhi.file.events.emitted")]
    pub file_events_emitted: u64,
    /// File events the kernel could not send because the ring buffer was full.
    #[serde(rename = "nhi.file.events.lost")]
    pub file_events_lost: u64,
    /// Whose those were: `<pid>:<events>`, most first, up to 8 processes (a process's count holds while it stays among the kernel's 1,024 most recent losers; absent when nothing was lost).
    #[serde(
        rename = "nhi.file.events.lost_by_process",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub file_events_lost_by_process: Vec<String>,
    /// Opens folded into a count.
    #[serde(rename = "nhi.file.opens.folded")]
    pub file_opens_folded: u64,
    /// Opens read with helpers (kernels without the cast kfunc).
    #[serde(rename = "nhi.file.opens.slow_path")]
    pub file_opens_slow_path: u64,
    /// Process events the kernel sent.
    #[serde(rename = "nhi.process.events.emitted")]
    pub process_events_emitted: u64,
    /// Process events lost.
    #[serde(rename = "nhi.process.events.lost")]
    pub process_events_lost: u64,
    /// Connect events the kernel sent.
    #[serde(rename = "nhi.net.connect.emitted")]
    pub net_connect_emitted: u64,
    /// Connect events lost.
    #[serde(rename = "nhi.net.connect.lost")]
    pub net_connect_lost: u64,
    /// Payload events the kernel sent.
    #[serde(rename = "nhi.net.payload.emitted")]
    pub net_payload_emitted: u64,
    /// Payload events lost.
    #[serde(rename = "nhi.net.payload.lost")]
    pub net_payload_lost: u64,
    /// Close events lost.
    #[serde(rename = "nhi.net.close.lost")]
    pub net_close_lost: u64,
    /// Connections waiting for their first bytes.
    #[serde(rename = "nhi.net.connections.pending")]
    pub net_connections_pending: u64,
    /// Events the agent received.
    #[serde(rename = "nhi.agent.events.received")]
    pub events_received: u64,
    /// Kernel candidates no rule confirmed.
    #[serde(rename = "nhi.agent.candidates.rejected")]
    pub candidates_rejected: u64,
    /// Records written.
    #[serde(rename = "nhi.agent.records.written")]
    pub records_written: u64,
    /// Records the agent could not decode.
    #[serde(rename = "nhi.agent.decode_errors")]
    pub decode_errors: u64,
    /// Keys in the de-dup table.
    #[serde(rename = "nhi.agent.dedup.keys")]
    pub dedup_keys: u64,
    /// Processes in the process table.
    #[serde(rename = "nhi.agent.process_table.size")]
    pub process_table_size: u64,
    /// Processes evicted from the process table.
    #[serde(rename = "nhi.agent.process_table.evicted")]
    pub process_table_evicted: u64,
    /// Rules the kernel watches.
    #[serde(rename = "nhi.watch.rules")]
    pub watch_rules: u64,
    /// Inodes the kernel watches.
    #[serde(rename = "nhi.watch.inodes")]
    pub watch_inodes: u64,
    /// Usage deltas waiting to be written.
    #[serde(rename = "nhi.agent.usage.pending")]
    pub usage_pending: u64,
    /// Connections linked to a credential.
    #[serde(rename = "nhi.agent.connections.linked")]
    pub connections_linked: u64,
    /// Connections linked to none.
    #[serde(rename = "nhi.agent.connections.unlinked")]
    pub connections_unlinked: u64,
    /// Destinations not kept (a usage's list was full).
    #[serde(rename = "nhi.agent.usage.destinations_dropped")]
    pub usage_destinations_dropped: u64,
    /// Records that could not be rendered, so not stored or written (0 unless a record type is broken).
    #[serde(rename = "nhi.agent.records.unrenderable")]
    pub records_unrenderable: u64,
}

impl CredentialAccess {
    /// The accessing process and its workload, whatever the source (the
    /// identity stage fills them in).
    pub fn process_workload_mut(&mut self) -> (&mut Process, &mut Workload) {
        match &mut self.source {
            AccessSource::File(f) => (&mut f.process, &mut f.workload),
            AccessSource::Env(e) => (&mut e.process, &mut e.workload),
            AccessSource::Imds(i) => (&mut i.process, &mut i.workload),
        }
    }

    /// The accessing process and its workload, whatever the source.
    pub fn process_workload(&self) -> (&Process, &Workload) {
        match &self.source {
            AccessSource::File(f) => (&f.process, &f.workload),
            AccessSource::Env(e) => (&e.process, &e.workload),
            AccessSource::Imds(i) => (&i.process, &i.workload),
        }
    }

    /// `nhi.source`.
    pub fn source(&self) -> super::Source {
        match &self.source {
            AccessSource::File(_) => super::Source::File,
            AccessSource::Env(_) => super::Source::Env,
            AccessSource::Imds(_) => super::Source::Imds,
        }
    }

    /// The credential this access names (`nhi.id`, `nhi.kind`), if any.
    pub fn credential(&self) -> Option<super::Credential> {
        let kind = match &self.source {
            AccessSource::File(f) => f.kind.as_deref().unwrap_or_default().to_owned(),
            AccessSource::Env(e) => e.kind.clone(),
            AccessSource::Imds(i) => i.kind.unwrap_or_default().to_owned(),
        };
        Some(super::Credential { id: self.nhi_id()?.to_owned(), kind })
    }

    /// The consumer the record shows: the values of its process and
    /// workload that name one (what the correlator keyed its usage by).
    pub fn consumer(&self) -> super::Consumer {
        let (p, w) = self.process_workload();
        super::Consumer {
            executable_path: p.executable_path.clone(),
            user_id: Some(p.user_id),
            user_name: w.user_name.clone(),
            interactive: w.interactive,
            systemd_unit: w.systemd_unit.clone(),
            container_id: w.container_id.clone(),
            container_runtime: w.container_runtime.clone(),
            namespace: w.namespace.clone(),
            service_account: w.service_account.clone(),
        }
    }

    /// How many accesses it stands for (`nhi.access.count`; 1 when
    /// absent, as the correlator counts it).
    pub fn count(&self) -> u64 {
        match &self.source {
            AccessSource::File(f) => f.count.unwrap_or(1),
            _ => 1,
        }
    }

    /// `nhi.id`: the credential this access names, if any.
    pub fn nhi_id(&self) -> Option<&str> {
        match &self.source {
            AccessSource::File(f) => f.identity.id.as_deref(),
            AccessSource::Env(e) => e.id.as_deref(),
            AccessSource::Imds(i) => i.id.as_deref(),
        }
    }
}

impl TypedRecord for CredentialAccess {
    const EVENT_NAME: &'static str = EVENT_CREDENTIAL_ACCESS;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for Rotation {
    const EVENT_NAME: &'static str = EVENT_CREDENTIAL_ROTATION;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for Connection {
    const EVENT_NAME: &'static str = EVENT_CONNECTION;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for Usage {
    const EVENT_NAME: &'static str = EVENT_USAGE;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for Finding {
    const EVENT_NAME: &'static str = EVENT_FINDING;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for Coverage {
    const EVENT_NAME: &'static str = EVENT_COVERAGE;
    fn time(&self) -> SystemTime {
        self.time
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = time;
    }
}
impl TypedRecord for AgentStats {
    const EVENT_NAME: &'static str = EVENT_AGENT_STATS;
    fn time(&self) -> SystemTime {
        self.time.unwrap_or_else(SystemTime::now)
    }
    fn set_time(&mut self, time: SystemTime) {
        self.time = Some(time);
    }
}

/// Reading a record back from its JSON text (the store's column): the
/// parts serde cannot derive.
pub(crate) mod de {
    use std::{borrow::Cow, time::SystemTime};

    use serde::{Deserialize, Deserializer};

    /// A record's `time` before it is read from apart (`set_time`).
    pub fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    /// A name from a closed set (`tcp`, `read`, `ipv4`, ...), kept once
    /// per distinct text, as the renderer keeps attribute names.
    pub fn static_str<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        Ok(super::super::render::intern(&Cow::<'de, str>::deserialize(d)?))
    }

    pub fn opt_static_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
        Ok(Option::<Cow<'de, str>>::deserialize(d)?.map(|s| super::super::render::intern(&s)))
    }

    /// The identity-fact groups: the schema's `Facts` pattern,
    /// `^nhi\.(group)(\.[a-z0-9_.]+)?$`.
    const FACT_GROUPS: &[&str] = &[
        "aws", "azure", "content", "credential", "db", "detector", "gcp", "jwt", "k8s", "key", "pypi", "registry",
        "server", "ssh", "x509",
    ];

    /// Whether `key` names an identity fact.
    pub fn is_fact(key: &str) -> bool {
        let Some(rest) = key.strip_prefix("nhi.") else { return false };
        let (group, tail) = match rest.split_once('.') {
            Some((g, t)) => (g, Some(t)),
            None => (rest, None),
        };
        FACT_GROUPS.contains(&group)
            && tail.is_none_or(|t| {
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            })
    }

    /// A finding's workload: absent (`None`) when none of its keys is.
    pub fn finding_workload<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<super::FindingWorkload>, D::Error> {
        let w = super::FindingWorkload::deserialize(d)?;
        Ok((w != super::FindingWorkload::default()).then_some(w))
    }
}

/// One filled-in record of each type (every optional part present), for
/// the schema and renderer tests.
#[cfg(test)]
pub(crate) mod samples {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn t() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000)
    }

    pub fn process() -> Process {
        Process {
            pid: 4242,
            thread_id: 4243,
            parent_pid: Some(1),
            user_id: 1000,
            command: "aws".into(),
            executable_path: Some("/usr/bin/aws".into()),
        }
    }

    pub fn workload() -> Workload {
        Workload {
            exec_path: Some("/opt/run.sh".into()),
            command_args: Some(vec!["aws".into(), "<masked>".into()]),
            command_args_truncated: true,
            group_id: Some(1000),
            interactive: Some(false),
            tty: Some("pts/3".into()),
            creation_time: Some("2025-11-24T16:00:00Z".into()),
            ancestors: vec!["1 /sbin/init".into()],
            user_name: Some("ann".into()),
            cgroup_path: Some("/kubepods/pod1/c1".into()),
            systemd_unit: Some("app.service".into()),
            container_id: Some("c1".into()),
            container_runtime: Some("containerd".into()),
            pod_uid: Some("p1".into()),
            namespace: Some("ns".into()),
            pod_name: Some("pod".into()),
            service_account: Some("ns/sa".into()),
            service_account_uid: Some("sa1".into()),
            node_name: Some("node".into()),
            token_issuer: Some("https://kubernetes.default.svc".into()),
            token_expires: Some("2026-11-24T16:00:00Z".into()),
        }
    }

    pub fn file_access() -> FileAccess {
        FileAccess {
            kind: Some("aws.access_key".into()),
            rule: Some("aws-shared-credentials".into()),
            open: FileOpen {
                path_escaped: true,
                path: "/home/a/.aws/credentials".into(),
                path_truncated: true,
                requested_path: "credentials".into(),
                requested_path_truncated: true,
                inode: Some(Inode(1_234_567)),
                device: Some(Device(u64::from(observer_common::kernel_dev(254, 1)))),
                access: "read_write",
                create: true,
                mode: Some("0600".into()),
                match_kind: "inode",
                syscall: "openat",
                result: 3,
                fixed_file: true,
                error_type: Some("ENOENT".into()),
            },
            process: process(),
            content: FileContent {
                format: Some("aws-ini".into()),
                unparsed_reason: Some("unreadable"),
                unparsed_detail: Some("not a regular file: a FIFO".into()),
            },
            identity: Identity {
                id: Some("AKIAGOLDEN0000000001".into()),
                facts: Facts(vec![("nhi.aws.profile", "default".into())]),
            },
            workload: workload(),
            count: Some(3),
        }
    }

    fn peer() -> Peer {
        Peer {
            network_type: "ipv4",
            address: "169.254.169.254".into(),
            port: 80,
        }
    }

    fn socket() -> SocketFacts {
        SocketFacts {
            family: "inet",
            cookie: "812".into(),
        }
    }

    pub fn accesses() -> Vec<CredentialAccess> {
        let access = |source| CredentialAccess {
            time: t(),
            host_name: "h".into(),
            source,
            record_id: Some("i-1".into()),
        };
        vec![
            access(AccessSource::File(Box::new(file_access()))),
            access(AccessSource::Env(Box::new(EnvAccess {
                kind: "aws.access_key".into(),
                id: Some("AKIAGOLDEN0000000001".into()),
                env_name: "AWS_ACCESS_KEY_ID".into(),
                process: process(),
                workload: workload(),
            }))),
            access(AccessSource::Imds(Box::new(ImdsAccess {
                kind: Some("aws.iam_role"),
                id: Some("app-role".into()),
                provider: "aws",
                operation: "credentials",
                method: "GET".into(),
                url_path: "/latest/meta-data/iam/security-credentials/app-role".into(),
                server_address: "169.254.169.254".into(),
                server_port: 80,
                peer: peer(),
                socket: socket(),
                process: process(),
                workload: workload(),
            }))),
        ]
    }

    pub fn rotation() -> Rotation {
        Rotation {
            time: t(),
            host_name: "h".into(),
            source: "file",
            access: file_access(),
            change: RotationIds {
                previous_ids: "AKIA1".into(),
                current_ids: "AKIA2".into(),
                identity_changed: true,
            },
            record_id: Some("i-2".into()),
        }
    }

    pub fn connection() -> Connection {
        Connection {
            time: t(),
            host_name: "h".into(),
            transport: "tcp",
            server_address: "sts.amazonaws.com".into(),
            server_port: 443,
            server_name_seen: true,
            server_name_source: Some("tls.sni"),
            peer: peer(),
            payload: "tls",
            tls: Some(TlsHello {
                protocol_name: Some("tls"),
                protocol_version: Some("1.3".into()),
                offered_versions: vec!["1.3".into(), "1.2".into()],
                alpn: vec!["h2".into()],
                grease: true,
            }),
            quic_version: Some("1".into()),
            http_method: Some("GET".into()),
            url_path: Some("/".into()),
            error_type: Some("malformed_hello"),
            socket: socket(),
            process: process(),
            workload: workload(),
            record_id: Some("i-3".into()),
        }
    }

    pub fn usage() -> Usage {
        Usage {
            time: t(),
            host_name: "h".into(),
            id: "AKIAGOLDEN0000000001".into(),
            kind: "aws.access_key".into(),
            source: "file".into(),
            consumer: Consumer {
                executable_path: Some("/usr/bin/aws".into()),
                user_id: Some(1000),
                user_name: Some("ann".into()),
                interactive: Some(false),
                systemd_unit: Some("app.service".into()),
                container_id: Some("c1".into()),
                container_runtime: Some("docker".into()),
                namespace: Some("ns".into()),
                service_account: Some("ns/sa".into()),
            },
            usage_id: "9a9622a7546cf15843fa212d".into(),
            first_seen: "2025-11-24T16:00:00Z".into(),
            last_seen: "2025-11-24T16:01:00Z".into(),
            count: 5,
            connections: 4,
            destinations: Some(UsageDestinations {
                confidence: "direct",
                truncated: true,
                server_address: Some("sts.amazonaws.com".into()),
                server_port: Some(443),
                destinations: vec!["sts.amazonaws.com:443".into()],
                confidences: vec!["direct".into()],
            }),
            record_id: Some("i-4".into()),
        }
    }

    pub fn finding() -> Finding {
        Finding {
            time: t(),
            host_name: "h".into(),
            id: "1221bdc6131d667f254005c5".into(),
            finding_type: "unused",
            state: "open",
            severity: "low",
            reason: "no use in the last 90d".into(),
            nhi_id: "AKIAGOLDEN0000000001".into(),
            nhi_kind: "aws.access_key".into(),
            first_seen: "2025-11-24T16:00:00Z".into(),
            last_seen: "2025-11-24T16:01:00Z".into(),
            count: 0,
            record_ids: vec!["i-1".into()],
            workload: Some(FindingWorkload {
                executable_path: Some("/usr/bin/aws".into()),
                user_id: Some(1000),
                interactive: true,
                systemd_unit: Some("app.service".into()),
                container_image: Some("app:1".into()),
                container_id: Some("c1".into()),
                namespace: Some("ns".into()),
                service_account: Some("ns/sa".into()),
            }),
            server_address: Some("sts.amazonaws.com".into()),
            file_path: Some("/home/a/.aws/credentials".into()),
            unused: Some(UnusedEvidence {
                evaluated_at: "2025-11-24T16:02:00Z".into(),
                window_seconds: 7_776_000,
                tracked_since: Some("2025-08-24T16:00:00Z".into()),
                coverage_percent: "99.4".into(),
                events_lost: 0,
            }),
            record_id: Some("i-5".into()),
        }
    }

    pub fn coverage() -> Coverage {
        Coverage {
            time: t(),
            host_name: "h".into(),
            start: "2025-11-24T16:00:00Z".into(),
            end: "2025-11-24T16:05:00Z".into(),
            tracked_since: "2025-08-24T16:00:00Z".into(),
            sensors: vec!["file".into(), "process".into(), "network".into()],
            events_lost: 2,
            events_lost_by_kind: vec!["file=2".into()],
            decode_errors: 0,
            state: "degraded".into(),
            record_id: Some("i-6".into()),
        }
    }

    pub fn stats() -> AgentStats {
        AgentStats {
            time: Some(t()),
            host_name: "h".into(),
            events_received: 7,
            ..AgentStats::default()
        }
    }
}
