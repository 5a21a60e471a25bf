//! nhi-observer: which workload uses which machine credential, from the host.
//!
//! Exit codes: 0 success; 1 runtime failure (or `check`: cannot run here);
//! 64 bad configuration or usage; 75 another agent holds the state
//! directory (try again once it has stopped).
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use nhi_observer::{app, check, classify, config, report, scan, secret};

const EX_USAGE: u8 = 64;
const EX_TEMPFAIL: u8 = 75;

/// mimalloc, tuned by [`nhi_observer::alloc::tune`] (see there why).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nhi-observer", version, about, long_about = None)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NHI_OBSERVER_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: watch credential use on this host and emit records.
    Run(RunArgs),
    /// Preflight: kernel, BTF, cgroup v2, capabilities, and which probes
    /// attach. Exits non-zero when the agent cannot run here.
    Check {
        /// Ring-buffer size to try, in bytes.
        #[arg(long, default_value_t = config::DEFAULT_RING_BYTES)]
        ring_buffer_bytes: u32,
        /// Configuration file to validate (TOML), as `run` would read it.
        #[arg(long, env = "NHI_OBSERVER_CONFIG")]
        config: Option<PathBuf>,
        /// State directory to check [default: the config's, or /var/lib/nhi-observer].
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// At-rest discovery of credential files and their identities; no BPF
    /// needed. Walks the homes, /etc, /var/lib/kubelet/pods, /run/secrets
    /// and the config's scan_roots, or the PATHS given.
    Scan(ScanArgs),
    /// Per credential: where it is stored, who created and used it, towards
    /// which servers, its status (in_use, unused, too_new, shadow) and
    /// findings; and the evidence (coverage, gaps, losses, blind spots, a
    /// sign-off statement per unused credential). Reads the state
    /// directory read-only, also while the agent runs.
    Report(ReportArgs),
    /// Print the JSON Schema of every record the agent emits (one schema
    /// per event name, JSON Schema 2020-12), as the docs' field tables are
    /// generated from it.
    Schema,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Html,
    Markdown,
    Json,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Configuration file (TOML): state_dir, inventory and the [findings]
    /// settings, as the agent uses them.
    #[arg(long, env = "NHI_OBSERVER_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: /var/lib/nhi-observer].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Inventory of declared credentials (YAML).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// The window judged: no use in it is `unused` (90d, 12h, 30s)
    /// [default: 90d, or findings.unused_window in the config].
    #[arg(long)]
    window: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Configuration file (TOML): catalog extensions, scan roots.
    #[arg(long, env = "NHI_OBSERVER_CONFIG")]
    config: Option<PathBuf>,
    /// State directory holding the fingerprint key [default: /var/lib/nhi-observer].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Directories (or files) to scan instead of the defaults.
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML). Optional: built-in defaults apply.
    #[arg(long, env = "NHI_OBSERVER_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: /var/lib/nhi-observer].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// JSON lines output: `-` for standard output or a file [default: -].
    #[arg(long)]
    jsonl: Option<String>,
    /// Kernel ring-buffer size in bytes [default: 8 MiB].
    #[arg(long)]
    ring_buffer_bytes: Option<u32>,
    /// Emit process arguments (`process.command_args`), secret-looking
    /// values masked [default: off, or `capture_args` in the config].
    #[arg(long)]
    capture_args: bool,
    /// Inventory of declared credentials (YAML) [default: none, or
    /// `inventory` in the config].
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Serve `/healthz` and `/readyz` on this address (IP:PORT), for
    /// orchestrators' probes [default: off, or `health_listen` in the config].
    #[arg(long)]
    health_listen: Option<String>,
}

fn main() -> ExitCode {
    nhi_observer::alloc::tune();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { ring_buffer_bytes, config, state_dir } => {
            let cfg = match config::Config::resolve(config::Overrides {
                config: config.clone(),
                state_dir,
                ..Default::default()
            }) {
                Ok(cfg) => cfg,
                Err(e) => {
                    tracing::error!("configuration: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let mut findings = check::configuration(&cfg, config.as_deref());
            findings.extend(check::run(ring_buffer_bytes));
            check::print(&findings);
            if check::can_run(&findings) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Command::Scan(args) => run_scan(args),
        Command::Report(args) => run_report(args),
        Command::Schema => print_schema(),
        Command::Run(args) => {
            let overrides = config::Overrides {
                config: args.config,
                state_dir: args.state_dir,
                jsonl: args.jsonl,
                ring_buffer_bytes: args.ring_buffer_bytes,
                capture_args: args.capture_args,
                inventory: args.inventory,
                health_listen: args.health_listen,
            };
            let cfg = match config::Config::resolve(overrides.clone()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    tracing::error!("configuration: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(app::run(cfg, overrides)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.downcast_ref::<nhi_observer::store::LockError>().is_some_and(|l| matches!(l, nhi_observer::store::LockError::Held { .. })) => {
                    tracing::error!("{}", app::error_text(&e));
                    ExitCode::from(EX_TEMPFAIL)
                }
                Err(e) => {
                    tracing::error!("{}", app::error_text(&e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_schema() -> ExitCode {
    let doc = nhi_observer::model::schema::document();
    let text = match serde_json::to_string_pretty(&doc) {
        Ok(t) => t + "\n",
        Err(e) => {
            tracing::error!("rendering the schema: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("writing the schema: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_report(args: ReportArgs) -> ExitCode {
    let mut cfg = match config::Config::resolve(config::Overrides {
        config: args.config,
        state_dir: args.state_dir,
        inventory: args.inventory,
        ..Default::default()
    }) {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some(w) = &args.window {
        match config::parse_duration("--window", w) {
            Ok(d) => cfg.findings.settings.unused_window = d,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let now = std::time::SystemTime::now();
    let report = match report::load(&cfg.state_dir, cfg.findings.inventory.as_ref(), &cfg.findings.settings, now) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("reading the state directory {}: {e}", cfg.state_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let text = match args.format {
        ReportFormat::Html => report::html(&report),
        ReportFormat::Markdown => report::markdown(&report),
        ReportFormat::Json => report::json(&report),
    };
    let written = match &args.out {
        Some(path) => std::fs::write(path, text.as_bytes()),
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_scan(args: ScanArgs) -> ExitCode {
    let cfg = match config::Config::resolve(config::Overrides {
        config: args.config,
        state_dir: args.state_dir,
        ..Default::default()
    }) {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let keyed = match scan_key(&cfg) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = scan::ScanOptions::new(scan::roots(&args.paths, &cfg.scan_roots), cfg.max_credential_bytes);
    let bar = scan::output::progress();
    let report = scan::scan(&cfg.catalog, &keyed, &opts, &mut |path, r| {
        if let Some(bar) = &bar
            && r.files_seen % 64 == 0
        {
            bar.set_message(format!("{} files, {} credential files: {}", r.files_seen, r.found.len(), path.display()));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    match scan::output::print(&report, args.json, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("writing the scan report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The agent's key when the state directory has or can take one, so scan
/// and agent name opaque tokens alike; else a key for this run only.
fn scan_key(cfg: &config::Config) -> Result<observer_creds::Keyed, classify::key::KeyError> {
    if let Some(path) = &cfg.fingerprint_key_file {
        return classify::key::load(path);
    }
    let created = std::fs::create_dir_all(&cfg.state_dir).map_err(|source| classify::key::KeyError::Io {
        path: cfg.state_dir.clone(),
        source,
    });
    match created.and_then(|()| classify::key::load_or_create(&cfg.state_dir)) {
        Ok(k) => Ok(k),
        Err(classify::key::KeyError::Io { path, source }) => {
            tracing::warn!(
                path = %path.display(),
                error = %source,
                "no usable fingerprint key in the state directory: opaque-token ids of this scan are not comparable with the agent's"
            );
            let mut key = secret::Secret::new(vec![0u8; observer_creds::KEY_LEN]);
            getrandom::fill(key.expose_mut()).map_err(|e| classify::key::KeyError::Random { path, message: e.to_string() })?;
            Ok(observer_creds::Keyed::new(key))
        }
        Err(e) => Err(e),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NHI_OBSERVER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a log file or a journal
    // are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
