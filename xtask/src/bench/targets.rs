//! `cargo xtask bench targets [--quick]`: every issue-17 measurement in one
//! invocation, then one table: target, threshold, measured value, met.
//!
//! Runs, in this order, the existing benchmarks (their own tables are
//! printed as they go): `process` (process creation with and without
//! credential variables, the process programs' BPF time, and the bpftrace
//! peer), `tls` (handshakes per second and missed connections), `files`
//! (the file program over the floor program, and the peer on the open loop
//! and the tree read), `idle` (CPU and wake-ups with no workload) and
//! `burst` (100k credential opens per second, then a storm of 100,000
//! loopback connections). `--quick` shortens every run
//! for a smoke check (its figures are not the ones to quote); the full run
//! took about 6 minutes on a busy 2-core machine.
use std::time::Duration;

use super::{burst, files, idle, process, tls};

struct Sizes {
    process_iterations: u32,
    process_rounds: usize,
    tls: tls::Args,
    files_rounds: usize,
    idle_window: Duration,
    burst: burst::Args,
}

impl Sizes {
    fn new(quick: bool, agent: std::path::PathBuf) -> Self {
        if quick {
            Self {
                process_iterations: 300,
                process_rounds: 1,
                tls: tls::Args { seconds: 2, rounds: 1, clients: 2, agent: Some(agent) },
                files_rounds: 1,
                idle_window: Duration::from_secs(10),
                burst: burst::Args { rate: 100_000, seconds: 1 },
            }
        } else {
            Self {
                process_iterations: 2000,
                process_rounds: 5,
                tls: tls::Args { seconds: 5, rounds: 5, clients: 2, agent: Some(agent) },
                files_rounds: 5,
                idle_window: Duration::from_secs(60),
                burst: burst::Args { rate: 100_000, seconds: 5 },
            }
        }
    }
}

/// One line of the table.
struct Row {
    target: String,
    threshold: String,
    measured: String,
    met: bool,
}

fn row(target: impl Into<String>, threshold: impl Into<String>, measured: String, met: bool) -> Row {
    Row { target: target.into(), threshold: threshold.into(), measured, met }
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let bin = super::release_agent()?;
    let sizes = Sizes::new(quick, bin.clone());
    let started = std::time::Instant::now();
    let mut rows = Vec::new();

    println!("== process creation (bench process, {} iterations, {} rounds)", sizes.process_iterations, sizes.process_rounds);
    let procs = process::bench(&bin, sizes.process_iterations, sizes.process_rounds)?;
    for p in &procs {
        rows.push(row(
            format!("1. process creation, {}", short(p.workload)),
            "<= 1.05x",
            format!("{:.3}x", p.agent_ratio),
            p.agent_ratio <= 1.05,
        ));
    }
    // Per program: the worse of the two workloads.
    if let Some(first) = procs.first() {
        for (i, &(name, target, _)) in first.programs.iter().enumerate() {
            let ns = procs.iter().filter_map(|p| p.programs.get(i).map(|v| v.2)).fold(0.0, f64::max);
            rows.push(row(
                format!("1. {name}: BPF time per process"),
                format!("<= {:.1} us", target / 1e3),
                format!("{:.2} us", ns / 1e3),
                ns <= target,
            ));
        }
    }

    println!("\n== TLS handshakes (bench tls, {} round(s) of {} s)", sizes.tls.rounds, sizes.tls.seconds);
    let t = tls::measure(&sizes.tls)?;
    rows.push(row(
        "2. TLS handshakes/s with agent / without",
        ">= 0.97x",
        {
            let (lo, hi) = t.round_range();
            format!("{:.3}x (rounds {lo:.3}-{hi:.3}; medians {:.0} vs {:.0}/s)", t.ratio(), t.with_agent, t.baseline)
        },
        t.ratio() >= 0.97,
    ));
    rows.push(row("2. TLS connections missed", "0", format!("{} of {}", t.missed, t.made), t.missed == 0));

    println!("\n== file sensor (bench files, {} round(s))", sizes.files_rounds);
    let f = files::run(sizes.files_rounds, Some(bin.clone()))?;
    rows.push(row(
        "3. file program over the floor program",
        "<= 20 ns per syscall exit",
        format!("{:+.1} ns", f.program_ns_over_floor),
        f.program_ns_over_floor <= 20.0,
    ));
    let peer = |what: &str, agent: f64, peer: f64| {
        row(
            format!("4. {what}: agent vs bpftrace"),
            "agent < peer",
            format!("{agent:.3}x vs {peer:.3}x"),
            agent < peer,
        )
    };
    rows.push(peer("open loop", f.loop_agent, f.loop_peer));
    rows.push(peer("source-tree read", f.tree_agent, f.tree_peer));
    for p in &procs {
        rows.push(peer(&format!("process creation, {}", short(p.workload)), p.agent_ratio, p.peer_ratio));
    }

    println!("\n== idle (bench idle, {} s)", sizes.idle_window.as_secs());
    let i = idle::bench(&bin, sizes.idle_window)?;
    rows.push(row(
        "5. idle CPU",
        format!("<= {}% of one CPU", idle::TARGETS.cpu_pct),
        format!("{:.2}%", i.cpu_pct),
        i.cpu_pct <= idle::TARGETS.cpu_pct,
    ));
    rows.push(row(
        "5. idle wake-ups",
        format!("<= {}/s", idle::TARGETS.wakeups_per_s),
        format!("{:.1}/s", i.wakeups_per_s),
        i.wakeups_per_s <= idle::TARGETS.wakeups_per_s,
    ));

    println!("\n== burst (bench burst, {}/s for {} s)", sizes.burst.rate, sizes.burst.seconds);
    let b = burst::measure(&bin, &sizes.burst)?;
    rows.push(row(
        format!("6. burst of {}k credential opens/s, default ring", sizes.burst.rate / 1000),
        "0 lost, 0 twice",
        format!("{} lost, {} counted twice, of {} ({:.0}/s reached)", b.lost(), b.over(), b.opens, b.rate),
        b.lost() == 0 && b.over() == 0,
    ));
    rows.push(row(
        "6. loss counter with a too-small ring",
        "arrived + lost = opens",
        format!(
            "{} + {} = {} of {}{}",
            b.small_arrived,
            b.small_lost,
            b.small_arrived + b.small_lost,
            b.small_opens,
            others(b.small_lost_all, b.small_lost)
        ),
        b.small_ring_exact(),
    ));

    rows.push(row(
        "6. no de-dup, default ring (1 s; no loss target)",
        "arrived + lost = opens",
        format!(
            "{} + {} lost = {} of {}{}",
            b.nodedup_arrived,
            b.nodedup_lost,
            b.nodedup_arrived + b.nodedup_lost,
            b.nodedup_opens,
            others(b.nodedup_lost_all, b.nodedup_lost)
        ),
        b.nodedup_exact(),
    ));

    rows.push(row(
        "6. connection storm, default ring",
        "0 lost",
        format!(
            "{} recorded of {}, {} lost ({:.0}/s reached)",
            b.storm_records, b.storm_connections, b.storm_lost, b.storm_rate
        ),
        b.storm_complete(),
    ));

    print_table(&rows, quick, started.elapsed());
    Ok(())
}

/// Other processes' lost file events during a loss-count run (the
/// machine-wide counter less the benchmark's own, which the kernel counts
/// per process): shown, not counted against the row.
fn others(all: u64, mine: u64) -> String {
    match all.saturating_sub(mine) {
        0 => String::new(),
        n => format!(" ({n} lost by other processes)"),
    }
}

/// A process workload's name for the table.
fn short(workload: &str) -> &'static str {
    if workload.contains("credential") { "credential vars" } else { "plain" }
}

fn print_table(rows: &[Row], quick: bool, took: Duration) {
    let w0 = rows.iter().map(|r| r.target.len()).max().unwrap_or(0).max("target".len());
    let w1 = rows.iter().map(|r| r.threshold.len()).max().unwrap_or(0).max("threshold".len());
    let w2 = rows.iter().map(|r| r.measured.len()).max().unwrap_or(0).max("measured".len());
    println!(
        "\n== issue 17 targets ({} run, {:.0} s; timings are only comparable on a quiet machine)",
        if quick { "quick" } else { "full" },
        took.as_secs_f64()
    );
    println!("{:<w0$}  {:<w1$}  {:<w2$}  met", "target", "threshold", "measured");
    for r in rows {
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r.target, r.threshold, r.measured, if r.met { "yes" } else { "NO" });
    }
    let met = rows.iter().filter(|r| r.met).count();
    println!("{met} of {} met", rows.len());
}
