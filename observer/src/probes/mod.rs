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
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
    },
};
use observer_common::{
    Counter, DedupKey, DedupValue, EventKind, FileSensorConfig, InodeKey, InodeRule, KernelOffsets, MetadataDest,
    NetAddr, PathKeyData, PathRule, counter_index,
};

use crate::classify::{catalog::WatchRule, watch::InodeEntry};

pub mod offsets;
pub mod patch;
pub mod rules;

/// The kernel programs, built by build.rs for the BPF target.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer-probes"));

/// Releases this process's mapping of the embedded programs' pages (about
/// 1 MiB of the binary, read once while loading): RSS, not memory the
/// agent needs. They are file-backed and never written, so a later read
/// faults them back in from the binary unchanged (`madvise(2)`,
/// MADV_DONTNEED on a private file mapping). Only whole pages inside the
/// object are released.
pub fn release_program_pages() {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
    let start = PROGRAMS.as_ptr() as usize;
    let first = start.next_multiple_of(page);
    let last = (start + PROGRAMS.len()) / page * page;
    if last > first {
        // SAFETY: the range lies inside the static's read-only, private
        // file mapping, which is never written: dropping its pages changes
        // no byte a reader sees.
        let rc = unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_DONTNEED) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "madvise of the embedded programs failed");
        }
    }
}

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

/// Every program the agent runs, by function name, with its hook. (The
/// object also holds `sys_exit_floor`, which only the benchmark loads.)
pub const PROGRAM_LIST: &[(&str, Hook)] = &[
    ("sys_exit", Hook::TpBtf("sys_exit")),
    // Process table and workload identity (probes/process.rs).
    ("proc_exec", Hook::TpBtf("sched_process_exec")),
    ("proc_fork", Hook::TpBtf("sched_process_fork")),
    ("proc_exit", Hook::TpBtf("sched_process_exit")),
    ("cgroup_mkdir", Hook::TpBtf("cgroup_mkdir")),
    // io_uring opens (probes/iouring.rs); optional, see `OPTIONAL_PROGRAMS`.
    ("io_uring_submit_req", Hook::TpBtf("io_uring_submit_req")),
    ("io_uring_complete", Hook::TpBtf("io_uring_complete")),
    // Network sensor (probes/net.rs), on the cgroup v2 root.
    ("net_connect4", Hook::CgroupSockAddr("connect4")),
    ("net_connect6", Hook::CgroupSockAddr("connect6")),
    ("net_sendmsg4", Hook::CgroupSockAddr("sendmsg4")),
    ("net_sendmsg6", Hook::CgroupSockAddr("sendmsg6")),
    ("net_egress", Hook::CgroupSkbEgress),
    ("net_sock_release", Hook::CgroupSock("sock_release")),
];

/// Programs the agent runs without when they cannot load (a kernel built
/// without io_uring, or one whose io_uring layout is unknown): it says so
/// and goes on, since only that way of opening files goes unseen.
pub const OPTIONAL_PROGRAMS: &[&str] = &["io_uring_submit_req", "io_uring_complete"];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read kernel BTF from {path}: {source} (the agent needs a kernel built with CONFIG_DEBUG_INFO_BTF)")]
    Btf { path: String, source: aya::BtfError },
    #[error("loading the eBPF object failed: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program `{name}` ({} on {}): {source}", hook.kind(), hook.target())]
    Program { name: &'static str, hook: Hook, source: Box<ProgramError> },
    #[error("map `{0}` is missing from the eBPF object")]
    NoMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error(transparent)]
    Patch(#[from] patch::PatchError),
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { name, source }
}

pub struct ProbeOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// De-duplication window in ns (0: off).
    pub dedup_ns: u64,
}

pub struct Probes {
    ebpf: Ebpf,
    dedup_ns: u64,
    /// What the kernel's inode gate currently holds.
    inodes: Vec<InodeEntry>,
    /// The cgroup v2 root the cgroup programs are attached to, held open
    /// for as long as they are.
    cgroup: Option<File>,
    /// Whether the network sensor (the cgroup programs) is attached.
    network: bool,
    /// Optional programs that did not load (never attached).
    skipped: Vec<&'static str>,
}

/// Maps the pipeline reads: counters and de-duplication state.
pub struct KernelState {
    pub counters: PerCpuArray<MapData, u64>,
    /// An LRU hash in the kernel; aya reads it as a hash map.
    pub dedup: BpfHashMap<MapData, DedupKey, DedupValue>,
    /// File events lost per process (tgid), an LRU hash of
    /// [`observer_common::MAX_LOST_PROCESSES`] entries.
    pub file_lost: BpfHashMap<MapData, u32, u64>,
}

impl KernelState {
    /// Kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let get = |kind, counter| -> Result<u64, ProbeError> {
            let values = self.counters.get(&counter_index(kind, counter), 0).map_err(map_err("COUNTERS"))?;
            Ok(values.iter().sum())
        };
        let k = EventKind::FileOpen;
        const PROCESS: [EventKind; 4] =
            [EventKind::ProcessExec, EventKind::ProcessFork, EventKind::ProcessExit, EventKind::CgroupMkdir];
        let sum = |counter| PROCESS.into_iter().map(|k| get(k, counter)).sum::<Result<u64, ProbeError>>();
        Ok(KernelCounters {
            file_open_emitted: get(k, Counter::Emitted)?,
            file_open_reserve_failed: get(k, Counter::ReserveFailed)?,
            file_open_dedup_suppressed: get(k, Counter::DedupSuppressed)?,
            file_open_slow_path: get(k, Counter::SlowPath)?,
            process_emitted: sum(Counter::Emitted)?,
            process_reserve_failed: sum(Counter::ReserveFailed)?,
            net_connect_emitted: get(EventKind::NetConnect, Counter::Emitted)?,
            net_connect_reserve_failed: get(EventKind::NetConnect, Counter::ReserveFailed)?,
            net_payload_emitted: get(EventKind::NetPayload, Counter::Emitted)?,
            net_payload_reserve_failed: get(EventKind::NetPayload, Counter::ReserveFailed)?,
            net_close_emitted: get(EventKind::NetClose, Counter::Emitted)?,
            net_close_reserve_failed: get(EventKind::NetClose, Counter::ReserveFailed)?,
        })
    }

    /// The processes whose file events were lost, as (tgid, events), most
    /// first, at most `top` (reads the map only when something was lost:
    /// `lost` is the machine-wide count).
    pub fn file_lost_by_process(&self, lost: u64, top: usize) -> Vec<(u32, u64)> {
        if lost == 0 {
            return Vec::new();
        }
        let mut all: Vec<(u32, u64)> = self.file_lost.iter().filter_map(Result::ok).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(top);
        all
    }
}

impl Probes {
    /// Loads the programs (not yet attached).
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        // The kernel's BTF is read twice (in place for the offsets, parsed
        // by aya for loading): one after the other, the first freed before
        // the second, so that the start's peak memory holds one of them.
        let kernel = offsets::resolve_file(Path::new(offsets::VMLINUX_BTF)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "kernel offsets unavailable: only failed opens and path rules are watched; events lack inode, resolved path, executable and parent");
            offsets::KernelBtf { offsets: KernelOffsets::default(), rdonly_cast: None, iouring: Default::default() }
        });
        crate::alloc::release_free_memory();
        Self::load_with(opts, &kernel)
    }

    /// [`Probes::load`] with the given kernel facts (the tests load with
    /// fewer of them, as an older kernel would give).
    fn load_with(opts: &ProbeOptions, kernel: &offsets::KernelBtf) -> Result<Self, ProbeError> {
        let btf = Btf::from_sys_fs()
            .map_err(|source| ProbeError::Btf { path: offsets::VMLINUX_BTF.into(), source })?;
        if kernel.rdonly_cast.is_none() {
            tracing::info!("no bpf_rdonly_cast kfunc (kernel before 6.2): the file sensor reads fd tables with helpers, at a higher cost per open");
        }
        let (programs, _) = patch::patch_rdonly_cast(PROGRAMS, kernel.rdonly_cast)?;
        let ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("OFFSETS", &kernel.offsets, true)
            .override_global("IOURING_OFFSETS", &kernel.iouring, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(&programs)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        let mut probes =
            Self { ebpf, dedup_ns: opts.dedup_ns, inodes: Vec::new(), cgroup: None, network: false, skipped: Vec::new() };
        for &(name, hook) in PROGRAM_LIST {
            let optional = OPTIONAL_PROGRAMS.contains(&name);
            if optional && kernel.iouring.valid == 0 {
                probes.skipped.push(name);
                continue;
            }
            match probes.load_one(name, hook, &btf) {
                Ok(()) => {}
                Err(e) if optional => {
                    tracing::warn!(program = name, error = %e, "optional program not loaded: opens through io_uring are not seen");
                    probes.skipped.push(name);
                }
                Err(source) => return Err(ProbeError::Program { name, hook, source: Box::new(source) }),
            }
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
            match crate::host::cgroup2_mount() {
                Some(path) => {
                    let dir = File::open(&path).map_err(|source| ProbeError::Cgroup { path: path.clone(), source })?;
                    tracing::debug!(cgroup = %path, "cgroup v2 root for the network sensor");
                    self.cgroup = Some(dir);
                }
                None => tracing::warn!("no cgroup v2 mount: the network sensor is off (no connections, TLS or QUIC)"),
            }
        }
        for &(name, hook) in PROGRAM_LIST {
            if (hook.on_cgroup() && self.cgroup.is_none()) || self.skipped.contains(&name) {
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
            BpfHashMap::try_from(map).map_err(map_err(NAME))?;
        let wanted: Vec<NetAddr> = addrs.iter().map(net_addr_of).collect();
        let stale: Vec<NetAddr> = dests.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for key in &stale {
            dests.remove(key).map_err(map_err(NAME))?;
        }
        for (i, key) in wanted.iter().enumerate() {
            let value = MetadataDest { id: u32::try_from(i).unwrap_or(u32::MAX), _pad0: 0 };
            dests.insert(key, value, 0).map_err(map_err(NAME))?;
        }
        Ok(wanted.len())
    }

    /// Replaces the kernel's watch list: path rules, name gate and the
    /// watched inodes. Takes effect at once; no reload.
    pub fn set_watch(&mut self, rules: &[WatchRule], inodes: Vec<InodeEntry>) -> Result<WatchStats, ProbeError> {
        // The path gate is off while the trie and its bitmap change (a
        // failed open is then looked up, as without the gate), so that no
        // open meets a gate that does not yet hold its rule.
        self.update_file_cfg(|cfg| cfg.path_gate_len = 0)?;
        let keys = rules::path_keys(rules);
        let path_gate = rules::PathGate::build(&keys);
        let path_keys = self.set_path_rules(&keys)?;
        self.write_bitmap("PATH_GATE", &path_gate.bits)?;
        let gate = rules::NameGate::build(rules);
        self.write_bitmap("NAME_GATE", &gate.bits)?;
        self.write_bitmap("AFFIX_GATE", &gate.affix)?;
        let dir_rules = rules
            .iter()
            .any(|r| r.pattern.kind == crate::classify::catalog::PatternKind::Prefix && r.pattern.text.ends_with('/'));
        let cfg = FileSensorConfig {
            dedup_ns: self.dedup_ns,
            prefix_lens: gate.prefix_lens,
            suffix_lens: gate.suffix_lens,
            dir_rules: u32::from(dir_rules),
            agent_tgid: std::process::id(),
            path_gate_len: path_gate.len,
            _pad0: 0,
        };
        self.update_file_cfg(|c| *c = cfg)?;
        self.set_inodes(inodes)?;
        Ok(WatchStats { path_keys, inodes: self.inodes.len() })
    }

    /// Adds inodes to the watch (a credential file just created).
    pub fn add_inodes(&mut self, new: &[InodeEntry]) -> Result<(), ProbeError> {
        let mut all = self.inodes.clone();
        all.extend(new.iter().cloned());
        all.sort_by_key(|e| (e.key.dev, e.key.ino));
        all.dedup_by_key(|e| (e.key.dev, e.key.ino));
        self.set_inodes(all)
    }

    /// Changes the file sensor's settings (`FILE_CFG`) in place.
    fn update_file_cfg(&mut self, change: impl FnOnce(&mut FileSensorConfig)) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut("FILE_CFG").ok_or(ProbeError::NoMap("FILE_CFG"))?;
        let mut array: Array<&mut MapData, FileSensorConfig> = Array::try_from(map).map_err(map_err("FILE_CFG"))?;
        let mut cfg = array.get(&0, 0).map_err(map_err("FILE_CFG"))?;
        change(&mut cfg);
        array.set(0, cfg, 0).map_err(map_err("FILE_CFG"))
    }

    fn set_path_rules(&mut self, wanted: &[(aya::maps::lpm_trie::Key<PathKeyData>, PathRule)]) -> Result<usize, ProbeError> {
        let map = self.ebpf.map_mut("PATH_RULES").ok_or(ProbeError::NoMap("PATH_RULES"))?;
        let mut trie: LpmTrie<&mut MapData, PathKeyData, PathRule> =
            LpmTrie::try_from(map).map_err(map_err("PATH_RULES"))?;
        let stale: Vec<_> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.iter().any(|(w, _)| rules::same_key(w, k)))
            .collect();
        for key in &stale {
            trie.remove(key).map_err(map_err("PATH_RULES"))?;
        }
        for (key, value) in wanted {
            trie.insert(key, value, 0).map_err(map_err("PATH_RULES"))?;
        }
        Ok(wanted.len())
    }

    /// Writes the words of a gate bitmap that differ from the kernel's.
    fn write_bitmap(&mut self, name: &'static str, bits: &rules::Bitmap) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(name).ok_or(ProbeError::NoMap(name))?;
        let mut array: Array<&mut MapData, u64> = Array::try_from(map).map_err(map_err(name))?;
        for (i, &word) in bits.0.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            if array.get(&i, 0).map_err(map_err(name))? != word {
                array.set(i, word, 0).map_err(map_err(name))?;
            }
        }
        Ok(())
    }

    /// Makes `WATCHED_INODES` and the inode gate hold exactly `entries`.
    /// Entries are inserted before gate bits are set and gate bits cleared
    /// before entries are removed, so the kernel never sees a gate bit
    /// without its entry for longer than one update.
    fn set_inodes(&mut self, entries: Vec<InodeEntry>) -> Result<(), ProbeError> {
        {
            let map = self.ebpf.map_mut("WATCHED_INODES").ok_or(ProbeError::NoMap("WATCHED_INODES"))?;
            let mut hash: BpfHashMap<&mut MapData, InodeKey, InodeRule> =
                BpfHashMap::try_from(map).map_err(map_err("WATCHED_INODES"))?;
            for e in &entries {
                hash.insert(e.key, e.rule, 0).map_err(map_err("WATCHED_INODES"))?;
            }
        }
        self.write_bitmap("INODE_GATE", &rules::inode_gate(&entries))?;
        let stale: Vec<InodeKey> =
            self.inodes.iter().filter(|old| !entries.iter().any(|e| e.key == old.key)).map(|e| e.key).collect();
        if !stale.is_empty() {
            let map = self.ebpf.map_mut("WATCHED_INODES").ok_or(ProbeError::NoMap("WATCHED_INODES"))?;
            let mut hash: BpfHashMap<&mut MapData, InodeKey, InodeRule> =
                BpfHashMap::try_from(map).map_err(map_err("WATCHED_INODES"))?;
            for key in &stale {
                // Already gone is fine.
                let _ = hash.remove(key);
            }
        }
        self.inodes = entries;
        Ok(())
    }

    /// The event ring buffer, for the reader. Can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::NoMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(map_err("EVENTS"))
    }

    /// The flag the ring reader sets while it polls the ring on a timer
    /// (process records then skip their wake-up). Can be taken once.
    pub fn take_reader_polling(&mut self) -> Result<Array<MapData, u32>, ProbeError> {
        let map = self.ebpf.take_map("READER_POLLING").ok_or(ProbeError::NoMap("READER_POLLING"))?;
        Array::try_from(map).map_err(map_err("READER_POLLING"))
    }

    /// Counters and de-dup state, for the pipeline. Can be taken once.
    pub fn take_kernel_state(&mut self) -> Result<KernelState, ProbeError> {
        let counters = self.ebpf.take_map("COUNTERS").ok_or(ProbeError::NoMap("COUNTERS"))?;
        let dedup = self.ebpf.take_map("DEDUP").ok_or(ProbeError::NoMap("DEDUP"))?;
        let file_lost = self.ebpf.take_map("FILE_LOST_TGID").ok_or(ProbeError::NoMap("FILE_LOST_TGID"))?;
        Ok(KernelState {
            counters: PerCpuArray::try_from(counters).map_err(map_err("COUNTERS"))?,
            dedup: BpfHashMap::try_from(dedup).map_err(map_err("DEDUP"))?,
            file_lost: BpfHashMap::try_from(file_lost).map_err(map_err("FILE_LOST_TGID"))?,
        })
    }
}

/// What `set_watch` loaded.
#[derive(Debug, Clone, Copy)]
pub struct WatchStats {
    pub path_keys: usize,
    pub inodes: usize,
}

/// Totals of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub file_open_emitted: u64,
    /// File events lost because the ring buffer was full.
    pub file_open_reserve_failed: u64,
    /// Opens folded into an earlier event's count.
    pub file_open_dedup_suppressed: u64,
    /// Opens that took the helper-based slow path (grown fd table).
    pub file_open_slow_path: u64,
    /// Exec, fork, exit and cgroup records emitted.
    pub process_emitted: u64,
    /// Exec, fork, exit and cgroup records lost because the ring was full:
    /// the process table then reconciles against /proc.
    pub process_reserve_failed: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program passes the verifier on this kernel with fewer kernel
    /// facts than it has, as older kernels or kernels with less BTF give:
    /// without the `bpf_rdonly_cast` kfunc (before 6.2: no typed fd-table
    /// walk, no typed `current` in the network programs), without the task
    /// identity offsets (identity helpers), and with no offsets at all.
    /// The programs choose these paths by load-time constants, so a normal
    /// load verifies only the typed ones.
    #[test]
    fn programs_load_on_the_paths_older_kernels_take() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new(offsets::VMLINUX_BTF).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI runs this test as root on a kernel with BTF");
            eprintln!("skipped: needs root and {}", offsets::VMLINUX_BTF);
            return;
        }
        let full = offsets::resolve_file(Path::new(offsets::VMLINUX_BTF)).expect("offsets resolve");
        assert!(full.rdonly_cast.is_some() && full.offsets.btf_task != 0 && full.offsets.task_ident_valid == 1);
        let mut no_kfunc = full;
        no_kfunc.rdonly_cast = None;
        no_kfunc.offsets.btf_task = 0;
        let mut no_ident = full;
        no_ident.offsets.task_ident_valid = 0;
        let mut none = full;
        none.offsets = KernelOffsets::default();
        let opts = ProbeOptions { ring_bytes: 1 << 16, dedup_ns: 0 };
        for (what, kernel) in [("full", full), ("no kfunc", no_kfunc), ("no identity offsets", no_ident), ("no offsets", none)] {
            let probes = Probes::load_with(&opts, &kernel).unwrap_or_else(|e| panic!("{what}: {e}"));
            for &(name, _) in PROGRAM_LIST {
                let program = probes.ebpf.program(name).unwrap_or_else(|| panic!("{what}: no {name}"));
                assert!(program.fd().is_ok(), "{what}: {name} not loaded");
            }
            assert!(probes.skipped.is_empty(), "{what}: skipped {:?}", probes.skipped);
        }
    }

    /// The embedded programs read the same after their pages are released
    /// (a reload, `check`, or the patch tests read them again).
    #[test]
    fn released_program_pages_read_back_unchanged() {
        let before: Vec<u8> = PROGRAMS.to_vec();
        assert!(before.len() > 3 * 4096, "the object spans whole pages");
        release_program_pages();
        assert!(PROGRAMS == before.as_slice());
        release_program_pages();
        assert_eq!(PROGRAMS.len(), before.len());
        assert!(PROGRAMS == before.as_slice());
    }
}
