//! Probes: load the embedded kernel programs, hand them the kernel offsets,
//! fill the watch-list maps and attach. Dropping [`Probes`] detaches every
//! program (aya closes the links).
//!
//! Program types: tp_btf (kernel 5.5+ with BTF; the ring buffer needs 5.8);
//! cgroup_sock_addr, cgroup_skb and cgroup_sock (sock_release: 5.9) on the
//! cgroup v2 root, whose directory stays open as long as [`Probes`] lives.
use std::{fs::File, net::IpAddr, path::Path};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
    },
};
use observer_common::{
    COUNTER_SLOTS, Counter, EventKind, KernelOffsets, MetadataDest, NetAddr, PathKeyData, PathRule, counter_index,
};

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
    /// cgroup_sock_addr on the cgroup v2 root; the attach point
    /// (`connect4`, `sendmsg6`, ...) is fixed by the program's section.
    CgroupSockAddr(&'static str),
    /// cgroup_skb egress on the cgroup v2 root.
    CgroupSkbEgress,
    /// cgroup_sock on the cgroup v2 root (`sock_release`, from the section).
    CgroupSock(&'static str),
}

impl Hook {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TpBtf(_) => "tp_btf",
            Self::CgroupSockAddr(_) => "cgroup_sock_addr",
            Self::CgroupSkbEgress => "cgroup_skb",
            Self::CgroupSock(_) => "cgroup_sock",
        }
    }

    pub fn target(&self) -> &'static str {
        match self {
            Self::TpBtf(tp) => tp,
            Self::CgroupSockAddr(at) | Self::CgroupSock(at) => at,
            Self::CgroupSkbEgress => "egress",
        }
    }

    /// Whether the program attaches to a cgroup (needs the cgroup v2 root).
    pub fn on_cgroup(&self) -> bool {
        !matches!(self, Self::TpBtf(_))
    }
}

/// Every program in the object, by function name, with its hook.
pub const PROGRAM_LIST: &[(&str, Hook)] = &[
    ("sys_exit", Hook::TpBtf("sys_exit")),
    ("net_connect4", Hook::CgroupSockAddr("connect4")),
    ("net_connect6", Hook::CgroupSockAddr("connect6")),
    ("net_sendmsg4", Hook::CgroupSockAddr("sendmsg4")),
    ("net_sendmsg6", Hook::CgroupSockAddr("sendmsg6")),
    ("net_egress", Hook::CgroupSkbEgress),
    ("net_sock_release", Hook::CgroupSock("sock_release")),
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
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
}

pub struct ProbeOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
}

pub struct Probes {
    ebpf: Ebpf,
    /// The cgroup v2 root the cgroup programs are attached to, held open
    /// for as long as they are.
    cgroup: Option<File>,
    /// Whether the network sensor (the cgroup programs) is attached.
    network: bool,
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
        let mut probes = Self { ebpf, cgroup: None, network: false };
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
            Hook::CgroupSockAddr(_) => {
                let p: &mut CgroupSockAddr = program.try_into()?;
                p.load()
            }
            Hook::CgroupSkbEgress => {
                let p: &mut CgroupSkb = program.try_into()?;
                p.load()
            }
            Hook::CgroupSock(_) => {
                let p: &mut CgroupSock = program.try_into()?;
                p.load()
            }
        }
    }

    /// Attaches every loaded program. The cgroup programs (network sensor)
    /// attach to the cgroup v2 root, found in /proc/self/mountinfo; without
    /// a cgroup v2 mount they are skipped with a warning and the agent runs
    /// without the network sensor.
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        if self.cgroup.is_none() {
            match crate::check::cgroup2_mount() {
                Some(path) => {
                    let dir = File::open(&path).map_err(|source| ProbeError::Cgroup { path: path.clone(), source })?;
                    tracing::debug!(cgroup = %path, "cgroup v2 root for the network sensor");
                    self.cgroup = Some(dir);
                }
                None => tracing::warn!("no cgroup v2 mount: the network sensor is off (no connections, TLS or QUIC)"),
            }
        }
        for &(name, hook) in PROGRAM_LIST {
            if hook.on_cgroup() && self.cgroup.is_none() {
                continue;
            }
            self.attach_one(name, hook)
                .map_err(|source| ProbeError::Program { name, hook, source: Box::new(source) })?;
        }
        self.network = self.cgroup.is_some();
        Ok(())
    }

    /// Whether the network sensor is attached.
    pub fn network(&self) -> bool {
        self.network
    }

    fn attach_one(&mut self, name: &'static str, hook: Hook) -> Result<(), ProgramError> {
        let program = self.ebpf.program_mut(name).ok_or(ProgramError::NotLoaded)?;
        // aya attaches through bpf_link on 5.7+, which always runs beside
        // other programs on the cgroup (systemd, runtimes, CNIs) and takes no
        // attach flags: passing AllowMultiple there is EINVAL. (Before 5.7
        // aya falls back to BPF_PROG_ATTACH, where Single would be exclusive;
        // the ring buffer needs 5.8 anyway.)
        let mode = CgroupAttachMode::Single;
        match (hook, self.cgroup.as_ref()) {
            (Hook::TpBtf(_), _) => {
                let p: &mut BtfTracePoint = program.try_into()?;
                p.attach().map(drop)
            }
            (Hook::CgroupSockAddr(_), Some(cgroup)) => {
                let p: &mut CgroupSockAddr = program.try_into()?;
                p.attach(cgroup, mode).map(drop)
            }
            (Hook::CgroupSkbEgress, Some(cgroup)) => {
                let p: &mut CgroupSkb = program.try_into()?;
                p.attach(cgroup, CgroupSkbAttachType::Egress, mode).map(drop)
            }
            (Hook::CgroupSock(_), Some(cgroup)) => {
                let p: &mut CgroupSock = program.try_into()?;
                p.attach(cgroup, mode).map(drop)
            }
            (_, None) => Err(ProgramError::NotAttached),
        }
    }

    /// Replaces the metadata-service destinations (addresses whose plaintext
    /// HTTP requests the kernel copies). Takes effect for new connections.
    pub fn set_metadata_dests(&mut self, addrs: &[IpAddr]) -> Result<usize, ProbeError> {
        const NAME: &str = "METADATA_DESTS";
        let map = self.ebpf.map_mut(NAME).ok_or(ProbeError::NoMap(NAME))?;
        let mut dests: BpfHashMap<&mut MapData, NetAddr, MetadataDest> =
            BpfHashMap::try_from(map).map_err(|source| ProbeError::Map { name: NAME, source })?;
        let wanted: Vec<NetAddr> = addrs.iter().map(net_addr_of).collect();
        let stale: Vec<NetAddr> = dests.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for key in &stale {
            dests.remove(key).map_err(|source| ProbeError::Map { name: NAME, source })?;
        }
        for (i, key) in wanted.iter().enumerate() {
            let value = MetadataDest { id: u32::try_from(i).unwrap_or(u32::MAX), _pad0: 0 };
            dests.insert(key, value, 0).map_err(|source| ProbeError::Map { name: NAME, source })?;
        }
        Ok(wanted.len())
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
            net_connect_emitted: get(EventKind::NetConnect, Counter::Emitted)?,
            net_connect_reserve_failed: get(EventKind::NetConnect, Counter::ReserveFailed)?,
            net_payload_emitted: get(EventKind::NetPayload, Counter::Emitted)?,
            net_payload_reserve_failed: get(EventKind::NetPayload, Counter::ReserveFailed)?,
            net_close_emitted: get(EventKind::NetClose, Counter::Emitted)?,
            net_close_reserve_failed: get(EventKind::NetClose, Counter::ReserveFailed)?,
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
    pub net_connect_emitted: u64,
    /// Connections lost because the ring buffer was full.
    pub net_connect_reserve_failed: u64,
    pub net_payload_emitted: u64,
    /// Payload chunks lost (ring buffer full, or the per-CPU staging buffer
    /// busy in a nested run).
    pub net_payload_reserve_failed: u64,
    pub net_close_emitted: u64,
    pub net_close_reserve_failed: u64,
}

/// The kernel's address form ([`NetAddr`]): IPv4 as v4-mapped IPv6.
pub fn net_addr_of(ip: &IpAddr) -> NetAddr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
