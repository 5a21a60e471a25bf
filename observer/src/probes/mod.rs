//! Probes: load the embedded kernel programs, hand them the kernel offsets,
//! fill the watch-list maps and attach. Dropping [`Probes`] detaches every
//! program (aya closes the links).
//!
//! Program types: tp_btf only for now (kernel 5.5+ with BTF; the ring buffer
//! needs 5.8).
use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError},
};
use observer_common::{COUNTER_SLOTS, Counter, EventKind, KernelOffsets, PathKeyData, PathRule, counter_index};

use crate::classify::catalog::WatchRule;

pub mod offsets;
pub mod rules;

/// The kernel programs, built by build.rs for the BPF target.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer-probes"));

/// How a program attaches. Add a variant (and its arms in `load_one` and
/// `attach_one`) for a new program type.
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    /// BTF-enabled raw tracepoint, by tracepoint name.
    TpBtf(&'static str),
}

impl Hook {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TpBtf(_) => "tp_btf",
        }
    }

    pub fn target(&self) -> &'static str {
        match self {
            Self::TpBtf(tp) => tp,
        }
    }
}

/// Every program in the object, by function name, with its hook.
pub const PROGRAM_LIST: &[(&str, Hook)] = &[
    ("sys_exit", Hook::TpBtf("sys_exit")),
    // Process table and workload identity (probes/process.rs).
    ("sched_process_exec", Hook::TpBtf("sched_process_exec")),
    ("sched_process_fork", Hook::TpBtf("sched_process_fork")),
    ("sched_process_exit", Hook::TpBtf("sched_process_exit")),
    ("cgroup_mkdir", Hook::TpBtf("cgroup_mkdir")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read kernel BTF from {path}: {source} (the agent needs a kernel built with CONFIG_DEBUG_INFO_BTF)")]
    Btf { path: String, source: aya::BtfError },
    #[error("loading the eBPF object failed: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program `{name}` ({} on {}): {source}", hook.kind(), hook.target())]
    Program { name: &'static str, hook: Hook, source: Box<aya::programs::ProgramError> },
    #[error("map `{0}` is missing from the eBPF object")]
    NoMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

pub struct ProbeOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
}

pub struct Probes {
    ebpf: Ebpf,
}

impl Probes {
    /// Loads the programs (not yet attached).
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        let btf = Btf::from_sys_fs()
            .map_err(|source| ProbeError::Btf { path: offsets::VMLINUX_BTF.into(), source })?;
        let kernel_offsets = offsets::resolve_file(Path::new(offsets::VMLINUX_BTF)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "kernel offsets unavailable: events will lack inode, resolved path, executable and parent");
            KernelOffsets::default()
        });
        let ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("OFFSETS", &kernel_offsets, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(PROGRAMS)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        let mut probes = Self { ebpf };
        for &(name, hook) in PROGRAM_LIST {
            probes
                .load_one(name, hook, &btf)
                .map_err(|source| ProbeError::Program { name, hook, source: Box::new(source) })?;
        }
        Ok(probes)
    }

    fn load_one(&mut self, name: &'static str, hook: Hook, btf: &Btf) -> Result<(), ProgramError> {
        let program = self.ebpf.program_mut(name).ok_or(ProgramError::NotLoaded)?;
        match hook {
            Hook::TpBtf(tp) => {
                let p: &mut BtfTracePoint = program.try_into()?;
                p.load(tp, btf)
            }
        }
    }

    /// Attaches every loaded program.
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        for &(name, hook) in PROGRAM_LIST {
            self.attach_one(name, hook)
                .map_err(|source| ProbeError::Program { name, hook, source: Box::new(source) })?;
        }
        Ok(())
    }

    fn attach_one(&mut self, name: &'static str, hook: Hook) -> Result<(), ProgramError> {
        let program = self.ebpf.program_mut(name).ok_or(ProgramError::NotLoaded)?;
        match hook {
            Hook::TpBtf(_) => {
                let p: &mut BtfTracePoint = program.try_into()?;
                p.attach().map(drop)
            }
        }
    }

    /// Replaces the kernel's path watch list with `rules`. Takes effect at
    /// once; no reload.
    pub fn set_rules(&mut self, rules: &[WatchRule]) -> Result<usize, ProbeError> {
        let map = self.ebpf.map_mut("PATH_RULES").ok_or(ProbeError::NoMap("PATH_RULES"))?;
        let mut trie: LpmTrie<&mut MapData, PathKeyData, PathRule> =
            LpmTrie::try_from(map).map_err(|source| ProbeError::Map { name: "PATH_RULES", source })?;
        let wanted = rules::path_keys(rules);
        let stale: Vec<_> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.iter().any(|(w, _)| rules::same_key(w, k)))
            .collect();
        for key in &stale {
            trie.remove(key).map_err(|source| ProbeError::Map { name: "PATH_RULES", source })?;
        }
        for (key, value) in &wanted {
            trie.insert(key, value, 0).map_err(|source| ProbeError::Map { name: "PATH_RULES", source })?;
        }
        Ok(wanted.len())
    }

    /// The event ring buffer, for the reader. Can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::NoMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(|source| ProbeError::Map { name: "EVENTS", source })
    }

    /// Kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let map = self.ebpf.map("COUNTERS").ok_or(ProbeError::NoMap("COUNTERS"))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| ProbeError::Map { name: "COUNTERS", source })?;
        let get = |kind, counter| -> Result<u64, ProbeError> {
            let values = array
                .get(&counter_index(kind, counter), 0)
                .map_err(|source| ProbeError::Map { name: "COUNTERS", source })?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            file_open_emitted: get(EventKind::FileOpen, Counter::Emitted)?,
            file_open_reserve_failed: get(EventKind::FileOpen, Counter::ReserveFailed)?,
            process_emitted: [EventKind::ProcessExec, EventKind::ProcessFork, EventKind::ProcessExit, EventKind::CgroupMkdir]
                .into_iter()
                .map(|k| get(k, Counter::Emitted))
                .sum::<Result<u64, _>>()?,
            process_reserve_failed: [
                EventKind::ProcessExec,
                EventKind::ProcessFork,
                EventKind::ProcessExit,
                EventKind::CgroupMkdir,
            ]
            .into_iter()
            .map(|k| get(k, Counter::ReserveFailed))
            .sum::<Result<u64, _>>()?,
        })
    }
}

const _: () = assert!(COUNTER_SLOTS >= 2);

/// Totals of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub file_open_emitted: u64,
    /// File events lost because the ring buffer was full.
    pub file_open_reserve_failed: u64,
    /// Exec, fork, exit and cgroup records emitted.
    pub process_emitted: u64,
    /// Exec, fork, exit and cgroup records lost because the ring was full:
    /// the process table then reconciles against /proc.
    pub process_reserve_failed: u64,
}
