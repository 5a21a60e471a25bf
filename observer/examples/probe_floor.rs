//! Benchmark helper: attaches only the floor program (the file sensor's hook
//! and syscall filter, counting, nothing else), prints `attached`, and runs
//! until stdin closes or SIGINT/SIGTERM. Used by `cargo xtask bench files`.
use std::io::Read;

use aya::{Btf, EbpfLoader, maps::PerCpuArray, programs::BtfTracePoint};

fn main() -> anyhow::Result<()> {
    let btf = Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer-probes")))?;
    let program: &mut BtfTracePoint =
        ebpf.program_mut("sys_exit_floor").ok_or_else(|| anyhow::anyhow!("no floor program"))?.try_into()?;
    program.load("sys_exit", &btf)?;
    program.attach()?;
    println!("attached");
    // Blocks until the benchmark closes our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let hits: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map("FLOOR_HITS").ok_or_else(|| anyhow::anyhow!("no map"))?)?;
    let total: u64 = hits.get(&0, 0)?.iter().sum();
    println!("open-family exits seen: {total}");
    Ok(())
}
