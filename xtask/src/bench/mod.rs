//! `cargo xtask bench <which>`: whole-system benchmarks, each reported as a
//! ratio against a baseline run in the same invocation (never an absolute
//! time: the machines differ and are shared).
use clap::Subcommand;

pub mod tls;

#[derive(Subcommand)]
pub enum Which {
    /// TLS handshakes per second against a local server, without and with
    /// the agent, and connections the agent missed at that rate.
    Tls(tls::Args),
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Tls(args) => tls::run(&args),
    }
}
