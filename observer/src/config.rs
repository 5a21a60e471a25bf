//! Configuration: an optional TOML file (`--config`) and command-line flags,
//! resolved into one validated [`Config`] before any BPF is loaded. Flags win
//! over the file; the file wins over built-in defaults. Every field is
//! optional: the agent runs with no file at all.
use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    classify::catalog::{self, Catalog, WatchEntry},
    correlate::CorrelatorConfig,
    export::{jsonl::Target, otlp::OtlpConfig},
    identity::IdentityConfig,
    store::StoreOptions,
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/nhi-observer";
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// Credential files larger than this are reported unparsed, not read.
pub const DEFAULT_MAX_CREDENTIAL_BYTES: u64 = 1 << 20;

/// The configuration file. Unknown keys are an error, so a typo never
/// silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory for the agent's state. Default: `/var/lib/nhi-observer`.
    pub state_dir: Option<PathBuf>,
    /// Where JSON lines go: `-` for standard output, or a file path to
    /// append to. Default: `-`.
    pub jsonl: Option<String>,
    /// Size of the kernel-to-agent ring buffer in bytes: a power of two of
    /// at least 4096. Default: 8 MiB (about 6,000 file events in flight).
    pub ring_buffer_bytes: Option<u32>,
    /// Repeated opens of one file by one process (same access, same
    /// outcome) within this window become one record with a count
    /// (`nhi.access.count`). 0 reports every open. Default: 1000.
    pub dedup_interval_ms: Option<u64>,
    /// How often the watch list is re-resolved against the file system
    /// (new homes, rotated files), in seconds. Default: 60.
    pub rescan_interval_secs: Option<u64>,
    /// How often an `nhi.agent.stats` record (loss and de-dup counters) is
    /// written, in seconds; one is always written at shutdown. Default: 60.
    pub stats_interval_secs: Option<u64>,
    /// Extra credential paths, on top of the built-in catalog (same shape:
    /// `name`, `kind`, `path` or `paths`, `format`, `kernel`).
    #[serde(default)]
    pub watch: Vec<WatchEntry>,
    /// Path patterns never treated as credentials, on top of the built-in
    /// trust-store exclusions.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Environment variables that name credential files, on top of the
    /// built-in ones (`GOOGLE_APPLICATION_CREDENTIALS`, `KUBECONFIG`, ...):
    /// `variable`, `rule` (the catalog rule whose format reads the file),
    /// `files` (the value is a directory: these files in it), `list` (the
    /// value is `:`-separated). At exec, their targets are watched by inode.
    #[serde(default)]
    pub env_path: Vec<crate::classify::env_paths::EnvPathRule>,
    /// Extra directories `scan` (and the agent's scan at start) walks, on
    /// top of the homes, `/etc`, `/var/lib/kubelet/pods` and `/run/secrets`.
    #[serde(default)]
    pub scan_roots: Vec<PathBuf>,
    /// Scan for credential files at start (feeds the identity cache and the
    /// kernel's watched inodes). Default: true.
    pub scan_at_start: Option<bool>,
    /// Largest credential file read, in bytes. Default: 1 MiB.
    pub max_credential_bytes: Option<u64>,
    /// Key for the keyed fingerprints of opaque tokens. Default:
    /// `<state_dir>/fingerprint.key`, generated at first start. Point every
    /// host of a fleet at one copy of the same key so that the same token on
    /// two hosts has the same `nhi.id`.
    pub fingerprint_key_file: Option<PathBuf>,
    /// Address (`IP:PORT`) of the health endpoint for orchestrators'
    /// probes: `GET /healthz` (the agent's loop turns) and `GET /readyz`
    /// (probes attached, not stopping). Default: none (no endpoint).
    pub health_listen: Option<String>,
    /// Process table and workload identity.
    #[serde(default)]
    pub process: ProcessConfig,
    /// Usage records: correlation of credential accesses and connections.
    #[serde(default)]
    pub usage: UsageFileConfig,
    /// The database in the state directory.
    #[serde(default)]
    pub store: StoreFileConfig,
    /// Inventory of declared credentials (YAML, see
    /// `deploy/inventory.example.yaml`): what is not in it is `shadow`, and
    /// its consumers and destinations are the expected ones. Default: none.
    pub inventory: Option<PathBuf>,
    /// Findings (`nhi.finding`) and coverage records (`nhi.coverage`).
    #[serde(default)]
    pub findings: FindingsFileConfig,
    /// OpenTelemetry export. The standard `OTEL_*` environment variables
    /// configure it (endpoint, protocol, headers, compression, timeout,
    /// resource attributes, service name); these keys only add what they
    /// do not cover.
    #[serde(default)]
    pub otlp: OtlpFileConfig,
}

/// The `[usage]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFileConfig {
    /// How often changed usage records are committed and emitted
    /// (`nhi.usage`), in seconds. Default: 10.
    pub flush_interval_secs: Option<u64>,
    /// A connection by the process that accessed a credential at most this
    /// many seconds before is a `direct` use of it. Default: 10.
    pub direct_window_secs: Option<u64>,
    /// Later connections of that process, and connections of its
    /// descendants, up to this many seconds after the access are
    /// `inferred` uses. Default: 300.
    pub inferred_window_secs: Option<u64>,
}

/// The `[store]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFileConfig {
    /// Hours raw records (accesses, connections, usage versions) are kept
    /// once exported. Usage totals and coverage are kept regardless.
    /// Default: 168 (7 days).
    pub retention_hours: Option<u64>,
    /// Most records kept; past it the oldest are deleted even if not yet
    /// exported (an ERROR says so). Default: 2000000.
    pub max_records: Option<u64>,
    /// Length of one coverage interval, in seconds. Default: 60.
    pub coverage_interval_secs: Option<u64>,
}

/// The `[findings]` section. Durations are written `90d`, `12h`, `30s`,
/// `1h 30m`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingsFileConfig {
    /// How often findings are evaluated (and emitted when they open,
    /// change or resolve). Default: `60s`.
    pub interval: Option<String>,
    /// A credential present or declared with no use in this window is
    /// `unused` (if it was known for the whole window; else `too_new`).
    /// Default: `90d`.
    pub unused_window: Option<String>,
    /// Without an inventory, consumers and destinations first seen this
    /// long after a credential's first use are unexpected. Default: `7d`.
    pub learning_period: Option<String>,
    /// Certificates and tokens expiring within this are a hygiene
    /// finding. Default: `30d`.
    pub expiry_warning: Option<String>,
    /// How often an `nhi.coverage` record (what was watched, what was
    /// lost) is emitted; one is also emitted at start and at stop.
    /// Default: `300s`.
    pub coverage_interval: Option<String>,
}

/// Findings and coverage records, resolved.
#[derive(Debug, Clone)]
pub struct FindingsConfig {
    pub interval: Duration,
    pub settings: crate::findings::Settings,
    pub coverage_every: Duration,
    pub inventory: Option<crate::inventory::Inventory>,
}

/// Parses a duration (`90d`, `12h`, `30s`); zero is refused.
pub fn parse_duration(name: &'static str, text: &str) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ConfigError::ZeroInterval(name)),
        Err(e) => Err(ConfigError::Duration { name, text: text.to_owned(), message: e.to_string() }),
    }
}

/// The `[otlp]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpFileConfig {
    /// Export even when no `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is set
    /// (to the protocol's default endpoint on localhost). Default: false.
    pub enabled: Option<bool>,
    /// Send logs (events and usage records). Default: true.
    pub logs: Option<bool>,
    /// Send metrics (the agent's counters). Default: true.
    pub metrics: Option<bool>,
    /// Records per export request. Default: 512.
    pub batch_size: Option<usize>,
    /// Longest wait between retries of a failed export, in seconds.
    /// Default: 30.
    pub max_backoff_secs: Option<u64>,
}

/// The `[process]` section: the process table behind workload identity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Emit each process's arguments (`process.command_args`), with values
    /// that look like secrets masked. Default: false.
    pub capture_args: Option<bool>,
    /// Most processes the table holds; the least recently used go first.
    /// Default: 32768.
    pub table_capacity: Option<usize>,
    /// Seconds between checks of the table against /proc, which remove
    /// processes whose exit the agent missed. Default: 60.
    pub reconcile_interval_secs: Option<u64>,
}

pub const DEFAULT_TABLE_CAPACITY: usize = 32_768;

/// Command-line overrides.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub jsonl: Option<String>,
    pub ring_buffer_bytes: Option<u32>,
    /// `--capture-args`: on if given (else the file decides).
    pub capture_args: bool,
    /// `--inventory`: wins over the file's `inventory`.
    pub inventory: Option<PathBuf>,
    /// `--health-listen`: wins over `health_listen` in the file.
    pub health_listen: Option<String>,
}

/// The validated configuration the agent runs with.
#[derive(Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    pub jsonl: Target,
    pub ring_bytes: u32,
    pub dedup: Duration,
    pub rescan_every: Duration,
    pub stats_every: Duration,
    pub catalog: Catalog,
    /// Variables naming credential files (built-in and configured).
    pub env_paths: Vec<crate::classify::env_paths::EnvPathRule>,
    pub identity: IdentityConfig,
    pub scan_roots: Vec<PathBuf>,
    pub scan_at_start: bool,
    pub max_credential_bytes: u64,
    pub fingerprint_key_file: Option<PathBuf>,
    pub usage: UsageConfig,
    pub store: StoreOptions,
    pub otlp: OtlpConfig,
    pub findings: FindingsConfig,
    /// Where the health endpoint listens; `None`: no endpoint.
    pub health_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub flush_every: Duration,
    pub correlator: CorrelatorConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("ring_buffer_bytes = {0}: must be a power of two between 4096 and 1 GiB")]
    RingSize(u32),
    #[error("{0}")]
    Catalog(#[from] catalog::CatalogError),
    #[error("{0}")]
    EnvPath(#[from] crate::classify::env_paths::EnvPathError),
    #[error("scan root {0} must be an absolute path")]
    RelativeScanRoot(PathBuf),
    #[error("state_dir must be an absolute path, got {0}")]
    RelativeStateDir(PathBuf),
    #[error("{0} must be at least 1")]
    ZeroInterval(&'static str),
    #[error("process.table_capacity = {0}: must be between 64 and 4194304")]
    TableCapacity(usize),
    #[error("usage.direct_window_secs must not exceed usage.inferred_window_secs")]
    Windows,
    #[error("{name} = {text:?}: {message} (write durations as 90d, 12h, 30s)")]
    Duration { name: &'static str, text: String, message: String },
    #[error("{0}")]
    Inventory(#[from] crate::inventory::InventoryError),
    #[error("{0} = {1}: out of range")]
    Range(&'static str, u64),
    #[error("state_dir {0}: {1}")]
    StateDir(PathBuf, &'static str),
    #[error("jsonl {0}: is a directory; name a file (or - for standard output)")]
    JsonlIsDir(PathBuf),
    #[error("jsonl {0}: its directory does not exist (create it, or use - for standard output)")]
    JsonlNoDir(PathBuf),
    #[error("health_listen = {0:?}: not an IP:PORT address (e.g. 127.0.0.1:9808)")]
    HealthListen(String),
}

/// A state directory the agent cannot use is a configuration error (exit
/// 64, naming the path), found before anything is loaded or created.
fn check_state_dir(dir: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(ConfigError::StateDir(dir.to_owned(), "exists and is not a directory")),
        Ok(_) => nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
            .map_err(|_| ConfigError::StateDir(dir.to_owned(), "is not writable (read-only file system or permissions)")),
        Err(_) => Ok(()), // created at start (its parent's problems are reported then)
    }
}

impl Config {
    pub fn resolve(o: Overrides) -> Result<Self, ConfigError> {
        let file = match &o.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let inventory_path = o.inventory.clone().or_else(|| file.inventory.clone());
        let o_health = o.health_listen;
        let state_dir = o.state_dir.or(file.state_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(ConfigError::RelativeStateDir(state_dir));
        }
        check_state_dir(&state_dir)?;
        let jsonl: Target = o.jsonl.or(file.jsonl).unwrap_or_else(|| "-".into()).parse().unwrap_or(Target::Stdout);
        if let Target::File(path) = &jsonl
            && path.is_dir()
        {
            return Err(ConfigError::JsonlIsDir(path.clone()));
        }
        // Its directory must be there: found before the store and the
        // probes are set up, not after (the agent does not create it).
        if let Target::File(path) = &jsonl
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(ConfigError::JsonlNoDir(path.clone()));
        }
        let ring_bytes = o.ring_buffer_bytes.or(file.ring_buffer_bytes).unwrap_or(DEFAULT_RING_BYTES);
        if !ring_bytes.is_power_of_two() || !(4096..=1 << 30).contains(&ring_bytes) {
            return Err(ConfigError::RingSize(ring_bytes));
        }
        let secs = |v: Option<u64>, default: u64, name| match v.unwrap_or(default) {
            0 => Err(ConfigError::ZeroInterval(name)),
            n => Ok(Duration::from_secs(n)),
        };
        let rescan_every = secs(file.rescan_interval_secs, 60, "rescan_interval_secs")?;
        let stats_every = secs(file.stats_interval_secs, 60, "stats_interval_secs")?;
        let dedup = Duration::from_millis(file.dedup_interval_ms.unwrap_or(1000));
        let mut catalog = Catalog::builtin()?;
        // The inventory names credentials (ids, paths) but holds none: the
        // agent's own configuration is never a place a credential is stored.
        catalog.extend(file.watch, &file.exclude)?;
        if let Some(p) = &inventory_path {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if let Some(p) = p.to_str() {
                catalog.exclude_exact(p);
            }
        }
        let env_paths = crate::classify::env_paths::resolve(file.env_path, &catalog)?;
        if let Some(root) = file.scan_roots.iter().find(|r| !r.is_absolute()) {
            return Err(ConfigError::RelativeScanRoot(root.clone()));
        }
        let p = file.process;
        let capacity = p.table_capacity.unwrap_or(DEFAULT_TABLE_CAPACITY);
        let table_capacity = NonZeroUsize::new(capacity)
            .filter(|_| (64..=1 << 22).contains(&capacity))
            .ok_or(ConfigError::TableCapacity(capacity))?;
        let identity = IdentityConfig {
            capture_args: o.capture_args || p.capture_args.unwrap_or(false),
            table_capacity,
            reconcile_interval: secs(p.reconcile_interval_secs, 60, "process.reconcile_interval_secs")?,
            // One stats cadence for the agent: the `identity stats` log line
            // follows the `nhi.agent.stats` records.
            stats_interval: stats_every,
        };
        let u = file.usage;
        let direct_window = secs(u.direct_window_secs, 10, "usage.direct_window_secs")?;
        let inferred_window = secs(u.inferred_window_secs, 300, "usage.inferred_window_secs")?;
        if direct_window > inferred_window {
            return Err(ConfigError::Windows);
        }
        let usage = UsageConfig {
            flush_every: secs(u.flush_interval_secs, 10, "usage.flush_interval_secs")?,
            correlator: CorrelatorConfig { direct_window, inferred_window, ..CorrelatorConfig::default() },
        };
        let st = file.store;
        let retention_hours = st.retention_hours.unwrap_or(168);
        let max_records = st.max_records.unwrap_or(2_000_000);
        if max_records < 1000 {
            return Err(ConfigError::Range("store.max_records", max_records));
        }
        let store = StoreOptions {
            retention: Duration::from_secs(retention_hours.saturating_mul(3600)),
            max_records,
            coverage_every: secs(st.coverage_interval_secs, 60, "store.coverage_interval_secs")?,
            ..StoreOptions::default()
        };
        let o = file.otlp;
        let batch_size = o.batch_size.unwrap_or(512);
        if !(1..=8192).contains(&batch_size) {
            return Err(ConfigError::Range("otlp.batch_size", batch_size as u64));
        }
        let otlp = OtlpConfig {
            enabled: o.enabled.unwrap_or(false) || crate::export::otlp::endpoint_in_env(),
            logs: o.logs.unwrap_or(true),
            metrics: o.metrics.unwrap_or(true),
            batch_size,
            max_backoff: secs(o.max_backoff_secs, 30, "otlp.max_backoff_secs")?,
        };
        let f = file.findings;
        let dur = |v: Option<String>, default: &str, name| parse_duration(name, v.as_deref().unwrap_or(default));
        let inventory = match inventory_path {
            Some(path) => Some(crate::inventory::Inventory::load(&path)?),
            None => None,
        };
        let findings = FindingsConfig {
            interval: dur(f.interval, "60s", "findings.interval")?,
            settings: crate::findings::Settings {
                unused_window: dur(f.unused_window, "90d", "findings.unused_window")?,
                learning_period: dur(f.learning_period, "7d", "findings.learning_period")?,
                expiry_warning: dur(f.expiry_warning, "30d", "findings.expiry_warning")?,
            },
            coverage_every: dur(f.coverage_interval, "300s", "findings.coverage_interval")?,
            inventory,
        };
        let health_listen = match o_health.or(file.health_listen) {
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| ConfigError::HealthListen(text))?),
            None => None,
        };
        Ok(Self {
            state_dir,
            jsonl,
            ring_bytes,
            dedup,
            rescan_every,
            stats_every,
            catalog,
            env_paths,
            identity,
            scan_roots: file.scan_roots,
            scan_at_start: file.scan_at_start.unwrap_or(true),
            max_credential_bytes: file.max_credential_bytes.unwrap_or(DEFAULT_MAX_CREDENTIAL_BYTES),
            fingerprint_key_file: file.fingerprint_key_file,
            usage,
            store,
            otlp,
            findings,
            health_listen,
        })
    }
}

fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn with_file(text: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::resolve(Overrides { config: Some(f.path().to_owned()), ..Default::default() })
    }

    /// Guards exit 64 (not 1) with the path for an unusable state_dir or
    /// jsonl: they are configuration mistakes.
    #[test]
    fn an_unusable_state_dir_or_jsonl_is_a_configuration_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = Config::resolve(Overrides { state_dir: Some(file.clone()), ..Default::default() }).unwrap_err();
        assert!(matches!(&e, ConfigError::StateDir(p, _) if *p == file), "{e}");
        assert!(e.to_string().contains(&file.display().to_string()));
        let e = Config::resolve(Overrides {
            state_dir: Some(dir.path().join("state")),
            jsonl: Some(dir.path().to_string_lossy().into_owned()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::JsonlIsDir(_)), "{e}");
        let missing = dir.path().join("no-such-dir").join("out.jsonl");
        let e = Config::resolve(Overrides {
            state_dir: Some(dir.path().join("state")),
            jsonl: Some(missing.to_string_lossy().into_owned()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(&e, ConfigError::JsonlNoDir(p) if *p == missing), "{e}");
        assert!(e.to_string().contains(&missing.display().to_string()));
    }

    #[test]
    fn findings_durations_and_inventory() {
        let c = Config::resolve(Overrides::default()).unwrap();
        assert_eq!(c.findings.settings.unused_window, Duration::from_secs(90 * 86_400));
        assert_eq!(c.findings.interval, Duration::from_secs(60));
        assert_eq!(c.findings.coverage_every, Duration::from_secs(300));
        assert!(c.findings.inventory.is_none());
        let c = with_file("[findings]\nunused_window = \"30s\"\nlearning_period = \"2h\"\n").unwrap();
        assert_eq!(c.findings.settings.unused_window, Duration::from_secs(30));
        assert_eq!(c.findings.settings.learning_period, Duration::from_secs(7200));
        let e = with_file("[findings]\nunused_window = \"ninety days\"\n").unwrap_err().to_string();
        assert!(e.contains("findings.unused_window"), "{e}");
        assert!(with_file("[findings]\ninterval = \"0s\"\n").is_err());
        let e = with_file("inventory = \"/nonexistent/inv.yaml\"\n").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/inv.yaml"), "{e}");
    }

    /// Regression: content discovery found the key ids an inventory lists
    /// and took the inventory for a place those credentials are stored.
    #[test]
    fn the_inventory_file_is_never_a_credential_store() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yaml");
        std::fs::write(&inv, "credentials:\n  - id: AKIAIOSFODNN7EXAMPLE\n").unwrap();
        let o = Overrides { inventory: Some(inv.clone()), ..Default::default() };
        let c = Config::resolve(o).unwrap();
        let canonical = std::fs::canonicalize(&inv).unwrap();
        assert!(c.catalog.excluded(canonical.to_str().unwrap()));
        assert!(!c.catalog.excluded(dir.path().join("credentials").to_str().unwrap()));
        // A path with pattern characters is still one exact path: not
        // refused as a pattern, and not a prefix of its neighbours.
        let odd = dir.path().join("inv*");
        std::fs::write(&odd, "credentials: []\n").unwrap();
        let o = Overrides { inventory: Some(odd.clone()), ..Default::default() };
        let c = Config::resolve(o).unwrap();
        let canonical = std::fs::canonicalize(&odd).unwrap();
        assert!(c.catalog.excluded(canonical.to_str().unwrap()));
        assert!(!c.catalog.excluded(&format!("{}x", canonical.display())));
    }

    #[test]
    fn health_endpoint_is_off_unless_configured() {
        assert_eq!(Config::resolve(Overrides::default()).unwrap().health_listen, None);
        let c = with_file("health_listen = \"127.0.0.1:9808\"\n").unwrap();
        assert_eq!(c.health_listen, Some("127.0.0.1:9808".parse().unwrap()));
        // The flag wins over the file.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"health_listen = \"127.0.0.1:9808\"\n").unwrap();
        let o = Overrides { config: Some(f.path().to_owned()), health_listen: Some("[::1]:1".into()), ..Default::default() };
        assert_eq!(Config::resolve(o).unwrap().health_listen, Some("[::1]:1".parse().unwrap()));
        // Not an address: a configuration error (exit 64).
        assert!(matches!(with_file("health_listen = \"localhost\"\n"), Err(ConfigError::HealthListen(_))));
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::resolve(Overrides::default()).unwrap();
        assert_eq!(c.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(c.jsonl, Target::Stdout);
        assert_eq!(c.ring_bytes, DEFAULT_RING_BYTES);
        assert!(c.catalog.rules.iter().any(|r| r.name == "aws-shared-credentials"));
        assert!(c.scan_at_start);
        assert_eq!(c.max_credential_bytes, DEFAULT_MAX_CREDENTIAL_BYTES);
        assert_eq!(c.dedup, std::time::Duration::from_secs(1));
        assert!(!c.identity.capture_args, "argv capture is opt-in");
        assert_eq!(c.identity.table_capacity.get(), DEFAULT_TABLE_CAPACITY);
    }

    #[test]
    fn process_section_and_flag() {
        let c = with_file("[process]\ncapture_args = true\ntable_capacity = 128\nreconcile_interval_secs = 2\n").unwrap();
        assert!(c.identity.capture_args);
        assert_eq!(c.identity.table_capacity.get(), 128);
        assert_eq!(c.identity.reconcile_interval, Duration::from_secs(2));
        let c = Config::resolve(Overrides { capture_args: true, ..Default::default() }).unwrap();
        assert!(c.identity.capture_args);
    }

    #[test]
    fn file_extends_catalog_and_flags_win() {
        let c = with_file("jsonl = \"/tmp/x.jsonl\"\n[[watch]]\nname = \"vault\"\npath = \"~/.vault-token\"\n").unwrap();
        assert_eq!(c.jsonl, Target::File("/tmp/x.jsonl".into()));
        let r = c.catalog.rules.iter().find(|r| r.name == "vault").unwrap();
        assert_eq!(r.kind, "unknown");
        assert_eq!(r.format, observer_creds::Format::Auto);
        assert!(c.catalog.rules.iter().all(|x| x.id != 0));
        let c = with_file(
            "exclude = [\"/srv/x/\"]\nscan_roots = [\"/srv\"]\n[[watch]]\nname = \"app-token\"\nkind = \"app.token\"\npaths = [\"/srv/app/token\", \"*.apptoken\"]\nformat = \"token\"\nkernel = false\n",
        )
        .unwrap();
        let rules: Vec<_> = c.catalog.rules.iter().filter(|r| r.name == "app-token").collect();
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| r.format == observer_creds::Format::Token && !r.kernel));
        assert_eq!(c.scan_roots, [PathBuf::from("/srv")]);
        assert!(c.catalog.excluded("/srv/x/a.pem"));
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"jsonl = \"/tmp/x.jsonl\"\n").unwrap();
        let c = Config::resolve(Overrides {
            config: Some(f.path().to_owned()),
            jsonl: Some("-".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.jsonl, Target::Stdout);
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        assert!(matches!(with_file("jsnol = 1"), Err(ConfigError::Parse { .. })));
        assert!(matches!(with_file("ring_buffer_bytes = 5000"), Err(ConfigError::RingSize(5000))));
        assert!(matches!(
            with_file("[[watch]]\nname = \"x\"\npath = \"rel/x\"\n"),
            Err(ConfigError::Catalog(catalog::CatalogError::Pattern { .. }))
        ));
        assert!(matches!(
            with_file("[[watch]]\nname = \"kubeconfig\"\npath = \"/x\"\n"),
            Err(ConfigError::Catalog(catalog::CatalogError::DuplicateName(_)))
        ));
        assert!(matches!(
            with_file("[[watch]]\nname = \"x\"\npath = \"/x\"\nformat = \"xml\"\n"),
            Err(ConfigError::Catalog(catalog::CatalogError::Format { .. }))
        ));
        assert!(matches!(with_file("scan_roots = [\"rel\"]"), Err(ConfigError::RelativeScanRoot(_))));
        assert!(matches!(with_file("state_dir = \"rel\""), Err(ConfigError::RelativeStateDir(_))));
        assert!(matches!(with_file("stats_interval_secs = 0"), Err(ConfigError::ZeroInterval(_))));
        assert_eq!(with_file("dedup_interval_ms = 0").unwrap().dedup, std::time::Duration::ZERO);
        assert!(matches!(with_file("[process]\ntable_capacity = 3"), Err(ConfigError::TableCapacity(3))));
        assert!(matches!(with_file("[process]\nreconcile_interval_secs = 0"), Err(ConfigError::ZeroInterval(_))));
        assert!(matches!(with_file("[process]\ncapture_argz = true"), Err(ConfigError::Parse { .. })));
        assert!(matches!(
            with_file("[usage]\ndirect_window_secs = 60\ninferred_window_secs = 30"),
            Err(ConfigError::Windows)
        ));
        assert!(matches!(with_file("[otlp]\nbatch_size = 0"), Err(ConfigError::Range(..))));
        assert!(matches!(with_file("[store]\nmax_records = 10"), Err(ConfigError::Range(..))));
        assert!(matches!(with_file("[otlp]\nendpoint = \"x\""), Err(ConfigError::Parse { .. })));
        let c = with_file("[usage]\nflush_interval_secs = 2\n[store]\nretention_hours = 1\n").unwrap();
        assert_eq!(c.usage.flush_every, Duration::from_secs(2));
        assert_eq!(c.store.retention, Duration::from_secs(3600));
        let missing = Config::resolve(Overrides { config: Some("/nonexistent/x.toml".into()), ..Default::default() });
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }
}
