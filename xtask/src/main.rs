//! `cargo xtask <command>`: everything a fresh machine needs, idempotently.
//!
//! - `setup`: the nightly `rust-src` component and `bpf-linker` built against
//!   the nightly rustc's own LLVM (the recipe in DESIGN.md). Fast when done.
//! - `run`: setup, build, then run the agent on this host (root, or sudo).
//! - `test`: setup, clippy, a short run of every fuzz target, then the
//!   whole test suite as root.
//! - `bench <which>`: whole-system benchmarks as ratios to a baseline.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
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
    /// Install what building the eBPF programs and running the tests need
    /// (idempotent).
    Setup,
    /// Build and run the agent on this host with its built-in defaults.
    /// Arguments after `--` go to `nhi-observer run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run clippy, a short run of each fuzz target and the whole test suite
    /// (probe tests run as root). Arguments after `--` go to `cargo test`.
    Test {
        /// Skip clippy.
        #[arg(long)]
        no_lint: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks, each reported as a ratio to a baseline run in the same
    /// invocation.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::ensure().and_then(|()| test_tools::ensure()),
        Cmd::Run { args } => tasks::run(&args),
        Cmd::Test { no_lint, args } => tasks::test(!no_lint, &args),
        Cmd::Bench { which } => bench::run(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
