//! nhi-observer: which workload uses which machine credential, from the host.
//!
//! Exit codes: 0 success; 1 runtime failure (or `check`: cannot run here);
//! 64 bad configuration or usage.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod app;
mod check;
mod classify;
mod clock;
mod config;
mod decode;
mod enrich;
mod export;
mod net;
mod probes;
mod ringbuf;
mod secret;
mod stats;

const EX_USAGE: u8 = 64;

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
    },
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { ring_buffer_bytes } => {
            let findings = check::run(ring_buffer_bytes);
            check::print(&findings);
            if check::can_run(&findings) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Command::Run(args) => {
            let cfg = match config::Config::resolve(config::Overrides {
                config: args.config,
                state_dir: args.state_dir,
                jsonl: args.jsonl,
                ring_buffer_bytes: args.ring_buffer_bytes,
            }) {
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
            match runtime.block_on(app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NHI_OBSERVER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
