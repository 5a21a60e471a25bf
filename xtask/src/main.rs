//! `cargo xtask <command>`: everything a fresh machine needs, idempotently.
//!
//! - `setup`: the nightly `rust-src` component and `bpf-linker` built against
//!   the nightly rustc's own LLVM (the recipe in the shared DESIGN notes, kept in `setup.rs`). Fast when done.
//! - `run`: setup, build, then run the agent on this host (root, or sudo).
//! - `test`: setup, clippy, then the whole test suite as root, then a short
//!   run of every fuzz target (`fuzz/`).
//! - `bench`: overhead benchmarks, as ratios against baselines in one run.
//! - `fuzz`: build the fuzz targets and run each for a while.
//! - `docs`: the records' field tables in README.md and docs/design.md,
//!   generated from `nhi-observer schema` (`--check`: fail on drift).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod docs;
mod fuzz;
mod setup;
mod tasks;
mod test_tools;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs (idempotent).
    Setup,
    /// Build and run the agent on this host with its built-in defaults.
    /// Arguments after `--` go to `nhi-observer run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run clippy, the docs drift check (`docs --check`) and the whole test
    /// suite (probe tests run as root).
    /// Arguments after `--` go to `cargo test`.
    Test {
        /// Skip clippy.
        #[arg(long)]
        no_lint: bool,
        /// Skip the short fuzz runs.
        #[arg(long)]
        no_fuzz: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Overhead benchmarks, as ratios against baselines in the same run:
    /// `files` (credential-file sensor: open loop and a source tree),
    /// `process` (process creation with and without the agent), `tls` (TLS
    /// handshakes per second, and connections the agent missed), `targets`
    /// (all of the issue-17 targets in one table).
    Bench {
        /// Which benchmark: `files`, `process`, `tls`, `pipeline` (decode +
        /// classify + correlate throughput, criterion), `memory` (agent
        /// RSS with 10k live processes and 1k credentials) or `scan`
        /// (content discovery: recall against detect-secrets, wall time
        /// against ripgrep), `idle` (agent CPU and wake-ups with no
        /// workload, over 60 s), `burst` (100k credential opens per second
        /// for 5 s: nothing lost; loss counted exactly with a too-small
        /// ring) or `targets` (alias `all`: every issue-17 measurement in
        /// one run, then one table of target, threshold, measured, met).
        name: String,
        /// `files`, `tls`, `scan`, `process`: rounds of interleaved setups.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// `process`: iterations per run.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
        /// `targets`: shorter runs, a smoke check of the whole set.
        #[arg(long)]
        quick: bool,
        /// `tls`, `process`, `files`: this agent binary instead of building
        /// the release one here (to compare two builds).
        #[arg(long)]
        agent: Option<std::path::PathBuf>,
        /// `pipeline`: compare this tree with the benchmark built from this
        /// git revision, both running at once on one core each, `--rounds`
        /// times (cores swapped each round): the median of the ratios. The
        /// way to rank two builds on a noisy host.
        #[arg(long)]
        base: Option<String>,
    },
    /// Regenerate the records' field tables (README.md, docs/design.md,
    /// between `<!-- generated:fields RECORD -->` markers) and
    /// docs/schema/records.schema.json from `nhi-observer schema`.
    Docs {
        /// Write nothing; fail, naming the file and record, when the
        /// committed text differs from what the code generates.
        #[arg(long)]
        check: bool,
    },
    /// Build every fuzz target and run each for SECONDS (seeded with the
    /// fixture corpus). A crash fails with the reproducer's path.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only targets whose name contains this.
        filter: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::ensure()
            .and_then(|()| setup::ensure_test_tools())
            .and_then(|()| test_tools::ensure())
            .and_then(|()| test_tools::ensure_deploy_venv()),
        Cmd::Run { args } => tasks::run(&args),
        Cmd::Test { no_lint, no_fuzz, args } => tasks::test(!no_lint, &args).and_then(|()| {
            if no_fuzz { Ok(()) } else { fuzz::run(fuzz::SMOKE_SECONDS, None) }
        }),
        Cmd::Bench { name, rounds, iterations, quick, agent, base } => {
            setup::ensure().and_then(|()| bench::run(&name, rounds, iterations, quick, agent, base.as_deref()))
        }
        Cmd::Docs { check } => docs::run(check),
        Cmd::Fuzz { seconds, filter } => fuzz::run(seconds, filter.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
