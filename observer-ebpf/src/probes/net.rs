//! Network sensor: who connects where, and the first bytes they send.
//!
//! Hooks, all attached at the cgroup v2 root so every process is covered:
//! - `cgroup/connect4|6` (process context): a TCP `connect()` becomes a
//!   [`NetConnectEvent`] with the task and its executable, and the socket
//!   enters `FLOWS` (key: socket cookie) so its first payload is copied. A
//!   UDP `connect()` only enters `FLOWS` (task kept in the entry).
//! - `cgroup/sendmsg4|6` (process context): an unconnected UDP socket's
//!   first `sendto()` enters `FLOWS` the same way.
//! - `cgroup_skb/egress` (no process context; runs for every packet the
//!   host sends, so a packet that cannot matter (no TCP payload, UDP too
//!   short for QUIC) leaves before the `FLOWS` lookup): for a socket in `FLOWS`,
//!   copies outbound payload to the agent as [`NetPayloadEvent`]s, joined by
//!   cookie. TCP: only a stream whose first byte starts a TLS handshake
//!   record (bounded by the ClientHello's own length and
//!   `NET_TLS_CAPTURE_MAX`), or plaintext to a metadata-service address in
//!   `METADATA_DESTS` (`NET_PLAIN_CAPTURE_MAX`); any other stream is dropped
//!   from `FLOWS` at its first byte, with nothing copied. UDP: only QUIC
//!   v1/v2 Initial packets (long header, at least 1200 bytes); the first one
//!   announces the socket with the task kept at connect/sendmsg time.
//! - `cgroup/sock_release`: a socket still in `FLOWS` leaves it, and the
//!   agent gets a [`NetCloseEvent`] so it can finish the connection's record.
//!
//! Records are submitted without waking the reader while it polls
//! (`READER_POLLING`, see probes/process.rs): during a burst of
//! connections, a wake-up per record (irq_work, self-IPI, remote wake-up)
//! cost more than the rest of these programs.
//!
//! Minimum kernel: 5.9 (sock_release hook, cookie in cgroup_sock programs);
//! 5.8 for the ring buffer.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_socket_cookie, bpf_skb_load_bytes, generated},
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use observer_common::{
    Counter, EventHeader, EventKind, IPPROTO_TCP, IPPROTO_UDP, MetadataDest, NET_CHUNK_LEN,
    NET_MAX_FLOWS, NET_MAX_METADATA_DESTS, NET_MAX_SEGMENTS, NET_PLAIN_CAPTURE_MAX, NET_TLS_CAPTURE_MAX, NetAddr,
    NetCloseEvent, NetCloseReason, NetConnectEvent, NetHook, NetPayloadEvent, TaskInfo, WALK_BUF_LEN, net_flags,
};

use super::process::submit_flags;
use crate::{
    kernel,
    maps::{EVENTS, count},
};

const IPPROTO_MPTCP: u32 = 262;
/// TLS record content type `handshake`, and handshake type `client_hello`.
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CLIENT_HELLO: u8 = 0x01;
/// Slack over the ClientHello's length for the headers of the records it
/// is split into (5 bytes each).
const TLS_RECORD_SLACK: u32 = 64;
/// QUIC: client Initial datagrams are padded to at least 1200 bytes.
const QUIC_MIN_INITIAL: u32 = 1200;
const QUIC_V1: u32 = 1;
const QUIC_V2: u32 = 0x6b33_43cf;
/// Chunks one skb may be split into (a GSO skb can hold 64 kB; we never
/// copy more than `NET_TLS_CAPTURE_MAX` of a stream).
const MAX_CHUNKS: u32 = NET_TLS_CAPTURE_MAX / NET_CHUNK_LEN as u32;

/// What the kernel is doing with a socket in `FLOWS`.
mod state {
    /// TCP, connected, no payload seen yet.
    pub const NEW: u32 = 0;
    /// TCP stream that starts with a TLS handshake record.
    pub const TLS: u32 = 1;
    /// TCP plaintext to a metadata-service address.
    pub const PLAIN: u32 = 2;
    /// UDP socket (QUIC Initials are copied).
    pub const UDP: u32 = 3;
}

/// Per-socket state, key: socket cookie.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Flow {
    /// The task at connect/sendmsg time (UDP: announced later, from here).
    pub task: TaskInfo,
    pub addr: NetAddr,
    pub port: u16,
    pub _pad0: u16,
    pub family: u32,
    pub protocol: u32,
    pub hook: u32,
    pub state: u32,
    /// Payload bytes copied so far, and the most this stream may get.
    pub copied: u32,
    pub limit: u32,
    pub segments: u32,
    /// Non-zero: the destination is a metadata service (plaintext copied).
    pub plain_ok: u32,
    /// Non-zero: a UDP socket already announced to the agent.
    pub announced: u32,
}
const _: () = assert!(core::mem::size_of::<Flow>() == 56 + 16 + 4 + 4 * 9);
const _: () = assert!(core::mem::size_of::<Flow>().is_multiple_of(8) && core::mem::align_of::<Flow>() == 8);

#[map]
static FLOWS: LruHashMap<u64, Flow> = LruHashMap::with_max_entries(NET_MAX_FLOWS, 0);

/// Metadata-service addresses (IMDS and the like), filled by the agent.
#[map]
static METADATA_DESTS: HashMap<NetAddr, MetadataDest> = HashMap::with_max_entries(NET_MAX_METADATA_DESTS, 0);

/// Per-CPU staging for a payload record (prefix + bytes), output with its
/// real length. `busy` guards against a nested run on the same CPU (a
/// softirq transmit interrupting a process-context one).
#[repr(C)]
pub struct NetScratch {
    pub busy: u32,
    pub _pad0: u32,
    pub ev: NetPayloadEvent,
    pub data: [u8; NET_CHUNK_LEN],
}

#[map]
static NET_SCRATCH: PerCpuArray<NetScratch> = PerCpuArray::with_max_entries(1, 0);

/// The executable's walked path, per process (key: tgid), valid while the
/// process runs the same exec: its leader's start time (pid reuse), its
/// `self_exec_id` (exec keeps the pid and changes this) and its
/// `mm->exe_file` (`PR_SET_MM_EXE_FILE`) are those recorded. Walking the
/// path was most of `net_connect4`'s cost; a process that connects often
/// (a client, a proxy) walks it once per exec.
#[repr(C)]
pub struct ExeCache {
    pub start_boot_ns: u64,
    pub exec_id: u64,
    pub exe_file: u64,
    pub len: u16,
    pub complete: u16,
    pub _pad0: u32,
    pub path: [u8; WALK_BUF_LEN],
}

/// Processes whose executable is cached (least recently used go first).
const EXE_CACHE_ENTRIES: u32 = 1024;

#[map]
static EXE_CACHE: LruHashMap<u32, ExeCache> = LruHashMap::with_max_entries(EXE_CACHE_ENTRIES, 0);

/// Per-CPU staging for an [`ExeCache`] entry (too big for the stack).
#[map]
static EXE_STAGING: PerCpuArray<ExeCache> = PerCpuArray::with_max_entries(1, 0);

/// The current task's executable path into `buf`: from [`EXE_CACHE`] when
/// it holds this process's current exec, else walked (and cached).
/// `typed`: `current` from [`kernel::current_task_cast`], if any.
#[inline(always)]
fn exe_path(file: u64, task: &TaskInfo, typed: Option<u64>, buf: &mut [u8; WALK_BUF_LEN]) -> kernel::Walk {
    let exec_id = if kernel::off!(task_self_exec_id) != 0 && task.start_boot_ns != 0 {
        match typed {
            Some(current) => Some(kernel::ld::<u64>(current, kernel::off!(task_self_exec_id))),
            None => kernel::read::<u64>(kernel::current_task(), kernel::off!(task_self_exec_id)),
        }
    } else {
        None
    };
    let Some(exec_id) = exec_id else {
        return kernel::walk_file_path(file, buf);
    };
    if let Some(c) = EXE_CACHE.get_ptr(task.tgid) {
        // SAFETY: a map value pointer, read-only here; a concurrent update
        // of the same entry (another thread of the process) writes the
        // same path.
        unsafe {
            if (*c).start_boot_ns == task.start_boot_ns && (*c).exec_id == exec_id && (*c).exe_file == file {
                // The walk's bytes only (`len` from 0, whole words), by
                // plain loads and stores from the map value: no helper
                // call, and not the whole buffer.
                let len = (*c).len;
                let words = usize::from(len).div_ceil(8);
                let src = (*c).path.as_ptr().cast::<u64>();
                let dst = buf.as_mut_ptr().cast::<u64>();
                for i in 0..WALK_BUF_LEN / 8 {
                    if i >= words {
                        break;
                    }
                    dst.add(i).write_unaligned(src.add(i).read_unaligned());
                }
                return kernel::Walk { len, complete: (*c).complete != 0 };
            }
        }
    }
    let walk = kernel::walk_file_path(file, buf);
    if let Some(stage) = EXE_STAGING.get_ptr_mut(0) {
        // SAFETY: our per-CPU staging value, used by one program run at a
        // time (connect and sendmsg run in process context, not nested).
        unsafe {
            (*stage).start_boot_ns = task.start_boot_ns;
            (*stage).exec_id = exec_id;
            (*stage).exe_file = file;
            (*stage).len = walk.len;
            (*stage).complete = u16::from(walk.complete);
            (*stage)._pad0 = 0;
            if aya_ebpf::helpers::bpf_probe_read_kernel_buf(buf.as_ptr(), &mut (*stage).path).is_ok() {
                let _ = EXE_CACHE.insert(task.tgid, &*stage, 0);
            }
        }
    }
    walk
}

// ---- connect / sendmsg --------------------------------------------------

#[cgroup_sock_addr(connect4)]
pub fn net_connect4(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, NetHook::Connect4);
    1
}

#[cgroup_sock_addr(connect6)]
pub fn net_connect6(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, NetHook::Connect6);
    1
}

#[cgroup_sock_addr(sendmsg4)]
pub fn net_sendmsg4(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, NetHook::Sendmsg4);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn net_sendmsg6(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, NetHook::Sendmsg6);
    1
}

/// An address as the two little-endian words of its 16 bytes: an IPv4
/// address (network order, as the context holds it) v4-mapped
/// (`::ffff:a.b.c.d`).
#[inline(always)]
fn v4_mapped(ip4_be: u32) -> [u64; 2] {
    [0, 0xffff_0000 | (u64::from(ip4_be) << 32)]
}

#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "the flow goes to the map by reference: by value it would be copied first"
)]
fn on_sock_addr(ctx: &SockAddrContext, hook: NetHook) -> Option<()> {
    let sa = ctx.sock_addr;
    // SAFETY: `sa` is the program's context; the verifier checks each
    // field access (u32 loads of readable fields).
    let (protocol, family, user_port) = unsafe { ((*sa).protocol, (*sa).family, (*sa).user_port) };
    let protocol = match protocol {
        IPPROTO_TCP | IPPROTO_MPTCP => IPPROTO_TCP,
        IPPROTO_UDP => IPPROTO_UDP,
        _ => return None,
    };
    let sendmsg = matches!(hook, NetHook::Sendmsg4 | NetHook::Sendmsg6);
    if sendmsg && protocol != IPPROTO_UDP {
        return None;
    }
    // SAFETY: as above.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if sendmsg && FLOWS.get_ptr(cookie).is_some() {
        // Every datagram of an unconnected socket comes here: stay cheap.
        return None;
    }
    let addr = match hook {
        NetHook::Connect4 | NetHook::Sendmsg4 => {
            // SAFETY: as above.
            v4_mapped(unsafe { (*sa).user_ip4 })
        }
        NetHook::Connect6 | NetHook::Sendmsg6 => {
            // SAFETY: as above; user_ip6 is read as four u32 loads.
            let w = unsafe { [(*sa).user_ip6[0], (*sa).user_ip6[1], (*sa).user_ip6[2], (*sa).user_ip6[3]] };
            [u64::from(w[0]) | (u64::from(w[1]) << 32), u64::from(w[2]) | (u64::from(w[3]) << 32)]
        }
    };
    let port = u16::from_be(user_port as u16);
    // Zeroed a word at a time, then the fields that are not zero, and used
    // in place: a zero-initialised `Flow` (or a byte array literal, or a
    // copy out of this one) becomes calls of a byte-at-a-time `memset`
    // subprogram, about 90 stores a connect.
    let mut slot = core::mem::MaybeUninit::<Flow>::uninit();
    let f = slot.as_mut_ptr();
    // SAFETY: `Flow` is plain integers, 8-byte aligned, a whole number of
    // words (asserted at `Flow`): once every word is written, `*f` is a
    // valid `Flow`, used only through `f` while `slot` lives.
    let flow = unsafe {
        let words = f.cast::<u64>();
        for i in 0..core::mem::size_of::<Flow>() / 8 {
            core::ptr::write_volatile(words.add(i), 0);
        }
        let a = (&raw mut (*f).addr).cast::<u64>();
        a.write(addr[0]);
        a.add(1).write(addr[1]);
        (*f).port = port;
        (*f).family = family;
        (*f).protocol = protocol;
        (*f).hook = hook as u32;
        (*f).state = state::NEW;
        &mut *f
    };
    if protocol == IPPROTO_UDP {
        current_identity(&mut flow.task);
        flow.state = state::UDP;
        return FLOWS.insert(cookie, &*flow, 0).ok();
    }
    emit_connect(flow, cookie, true);
    flow.plain_ok = u32::from(METADATA_DESTS.get_ptr(flow.addr).is_some());
    FLOWS.insert(cookie, &*flow, 0).ok()
}

/// The connecting task's identity into `info`: by plain loads from a
/// typed `current` where the kernel allows it (no helper calls; each costs
/// this kind of host's return-thunk mitigation), else through the helpers.
/// Returns the typed `current`, if any.
#[inline(always)]
fn current_identity(info: &mut TaskInfo) -> Option<u64> {
    match kernel::current_task_cast() {
        Some(task) => {
            kernel::current_task_info_typed(info, task);
            Some(task)
        }
        None => {
            kernel::current_task_info_untyped(info, &kernel::offsets());
            None
        }
    }
}

/// Sends a [`NetConnectEvent`]. `current`: in the connecting task's context
/// (take task and executable now); otherwise use the task kept in `flow`.
#[inline(always)]
fn emit_connect(flow: &Flow, cookie: u64, current: bool) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<NetConnectEvent>(0) else {
        count(EventKind::NetConnect, Counter::ReserveFailed);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned record of the
    // right size; every field is written before submit.
    unsafe {
        (*ev).header = EventHeader {
            kind: EventKind::NetConnect as u32,
            size: core::mem::size_of::<NetConnectEvent>() as u32,
            boot_ns: generated::bpf_ktime_get_boot_ns(),
        };
        let typed = if current {
            current_identity(&mut (*ev).task)
        } else {
            (*ev).task = flow.task;
            None
        };
        (*ev).cookie = cookie;
        (*ev).addr = flow.addr;
        (*ev).port = flow.port;
        (*ev)._pad0 = 0;
        (*ev).family = flow.family;
        (*ev).protocol = flow.protocol;
        (*ev).hook = flow.hook;
        (*ev)._pad1 = 0;
        (*ev).exe_len = 0;
        let mut flags = 0;
        let exe = match typed {
            Some(task) => kernel::exe_file_of(task),
            None if current => kernel::current_exe_file_untyped(&kernel::offsets()),
            None => None,
        };
        if let Some(exe) = exe {
            let walk = exe_path(exe, &(*ev).task, typed, &mut (*ev).exe);
            (*ev).exe_len = walk.len;
            flags |= net_flags::EXE_VALID;
            if !walk.complete {
                flags |= net_flags::EXE_TRUNCATED;
            }
        }
        (*ev).flags = flags;
    }
    entry.submit(submit_flags());
    count(EventKind::NetConnect, Counter::Emitted);
    Some(())
}

#[inline(always)]
fn emit_close(cookie: u64, reason: NetCloseReason) {
    let Some(mut entry) = EVENTS.reserve::<NetCloseEvent>(0) else {
        count(EventKind::NetClose, Counter::ReserveFailed);
        return;
    };
    entry.write(NetCloseEvent {
        header: EventHeader {
            kind: EventKind::NetClose as u32,
            size: core::mem::size_of::<NetCloseEvent>() as u32,
            // SAFETY: plain helper call.
            boot_ns: unsafe { generated::bpf_ktime_get_boot_ns() },
        },
        cookie,
        reason: reason as u32,
        _pad0: 0,
    });
    entry.submit(submit_flags());
    count(EventKind::NetClose, Counter::Emitted);
}

// ---- egress payload -----------------------------------------------------

#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    let _ = on_egress(&ctx);
    1
}

/// Where a packet goes and where its transport payload starts.
struct Packet {
    addr: NetAddr,
    protocol: u32,
    /// Offset of the transport header from the network header.
    l4: u32,
}

#[inline(always)]
fn parse_ip(ctx: &SkBuffContext) -> Option<Packet> {
    let b0: u8 = ctx.load(0).ok()?;
    match b0 >> 4 {
        4 => {
            let protocol: u8 = ctx.load(9).ok()?;
            let d: [u8; 4] = ctx.load(16).ok()?;
            Some(Packet {
                addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, d[0], d[1], d[2], d[3]],
                protocol: u32::from(protocol),
                l4: u32::from(b0 & 0x0f) * 4,
            })
        }
        6 => {
            // Extension headers are not followed: TCP and UDP from local
            // sockets come right after the fixed header.
            let protocol: u8 = ctx.load(6).ok()?;
            let addr: NetAddr = ctx.load(24).ok()?;
            Some(Packet { addr, protocol: u32::from(protocol), l4: 40 })
        }
        _ => None,
    }
}

/// Whether a packet may matter to a socket in `FLOWS`; false only when it
/// certainly cannot: not TCP or UDP, TCP without payload (SYN, pure ACK,
/// FIN: most packets of a connection, and of both its ends), or UDP too
/// short for a QUIC Initial. Those leave here, before the socket-cookie
/// read and the `FLOWS` lookup that every packet of the host paid for
/// (`bench tls`). Read with direct packet loads (no helper calls); when the
/// headers are not in the linear part, the answer is "may" and the full
/// path decides, as before.
#[inline(always)]
fn may_matter(ctx: &SkBuffContext) -> bool {
    let skb = ctx.skb.skb;
    // SAFETY: the program's context; the verifier checks these reads.
    let (data, end, len) = unsafe { ((*skb).data as usize, (*skb).data_end as usize, (*skb).len) };
    if data + 40 > end {
        return true;
    }
    // SAFETY: 40 bytes from `data` are inside the packet (checked above).
    let b0 = unsafe { *(data as *const u8) };
    let (protocol, l4) = match b0 >> 4 {
        // SAFETY: as above (offset 9 < 40).
        4 if b0 & 0x0f == 5 => (unsafe { *((data + 9) as *const u8) }, 20u32),
        // Options: rare; the full path reads them.
        4 => return true,
        // SAFETY: as above (offset 6 < 40).
        6 => (unsafe { *((data + 6) as *const u8) }, 40u32),
        _ => return false,
    };
    match u32::from(protocol) {
        IPPROTO_TCP => {
            if data + l4 as usize + 13 > end {
                return true;
            }
            // SAFETY: l4 + 12 < l4 + 13 bytes are inside the packet (checked).
            let doff = unsafe { *((data + l4 as usize + 12) as *const u8) } >> 4;
            len > l4 + u32::from(doff) * 4
        }
        IPPROTO_UDP => len >= l4 + 8 + QUIC_MIN_INITIAL,
        _ => false,
    }
}

#[inline(always)]
fn on_egress(ctx: &SkBuffContext) -> Option<()> {
    if !may_matter(ctx) {
        return None;
    }
    // SAFETY: the context pointer is what the helper expects.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let flow = FLOWS.get_ptr_mut(cookie)?;
    let pkt = parse_ip(ctx)?;
    // SAFETY: `flow` points into the map value, valid for this run.
    let f = unsafe { &mut *flow };
    if pkt.protocol != f.protocol {
        return None;
    }
    if f.protocol == IPPROTO_UDP {
        return on_udp(ctx, cookie, f, &pkt);
    }
    on_tcp(ctx, cookie, f, &pkt)
}

#[inline(always)]
fn on_tcp(ctx: &SkBuffContext, cookie: u64, f: &mut Flow, pkt: &Packet) -> Option<()> {
    let seq = u32::from_be(ctx.load::<u32>((pkt.l4 + 4) as usize).ok()?);
    let doff: u8 = ctx.load((pkt.l4 + 12) as usize).ok()?;
    let off = pkt.l4 + u32::from(doff >> 4) * 4;
    let len = ctx.skb.len();
    if len <= off {
        return None; // SYN, ACK, FIN: no payload
    }
    let plen = len - off;
    if f.state == state::NEW {
        let b0: u8 = ctx.load(off as usize).ok()?;
        if b0 == TLS_HANDSHAKE {
            f.state = state::TLS;
            f.limit = tls_limit(ctx, off, plen);
        } else if f.plain_ok != 0 {
            f.state = state::PLAIN;
            f.limit = NET_PLAIN_CAPTURE_MAX;
        } else {
            let _ = FLOWS.remove(cookie);
            emit_close(cookie, NetCloseReason::NotCaptured);
            return None;
        }
    }
    let left = f.limit.saturating_sub(f.copied);
    let want = if plen < left { plen } else { left };
    f.segments += 1;
    let ending = want == left || f.segments >= NET_MAX_SEGMENTS;
    let mut done: u32 = 0;
    for _ in 0..MAX_CHUNKS {
        if done >= want {
            break;
        }
        let rest = want - done;
        let n = if rest < NET_CHUNK_LEN as u32 { rest } else { NET_CHUNK_LEN as u32 };
        let last = done + n >= want;
        let mut flags = 0;
        if last && ending {
            flags |= net_flags::PAYLOAD_END;
        }
        emit_chunk(ctx, cookie, pkt, f.port, IPPROTO_TCP, off + done, n, seq.wrapping_add(done), flags);
        done += n;
    }
    f.copied += done;
    if ending {
        let _ = FLOWS.remove(cookie);
    }
    Some(())
}

/// How many bytes of a stream that starts with a TLS handshake record to
/// copy: the ClientHello (from its handshake header) plus the record
/// headers around it, never more than `NET_TLS_CAPTURE_MAX`.
#[inline(always)]
fn tls_limit(ctx: &SkBuffContext, off: u32, plen: u32) -> u32 {
    if plen < 9 {
        return NET_TLS_CAPTURE_MAX;
    }
    let Ok(h) = ctx.load::<[u8; 9]>(off as usize) else {
        return NET_TLS_CAPTURE_MAX;
    };
    if h[5] != TLS_CLIENT_HELLO {
        return NET_TLS_CAPTURE_MAX;
    }
    let reclen = u32::from(h[3]) << 8 | u32::from(h[4]);
    let hslen = u32::from(h[6]) << 16 | u32::from(h[7]) << 8 | u32::from(h[8]);
    let want = if reclen >= hslen + 4 { 5 + reclen } else { 9 + hslen + TLS_RECORD_SLACK };
    if want < NET_TLS_CAPTURE_MAX { want } else { NET_TLS_CAPTURE_MAX }
}

#[inline(always)]
fn on_udp(ctx: &SkBuffContext, cookie: u64, f: &mut Flow, pkt: &Packet) -> Option<()> {
    let port = u16::from_be(ctx.load::<u16>((pkt.l4 + 2) as usize).ok()?);
    let off = pkt.l4 + 8;
    let len = ctx.skb.len();
    if len < off + QUIC_MIN_INITIAL {
        return None;
    }
    let plen = len - off;
    let h: [u8; 5] = ctx.load(off as usize).ok()?;
    let version = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    let long = h[0] & 0xc0 == 0xc0;
    let initial = (version == QUIC_V1 && h[0] & 0x30 == 0) || (version == QUIC_V2 && h[0] & 0x30 == 0x10);
    if !long || !initial {
        return None;
    }
    if f.announced == 0 {
        f.announced = 1;
        let mut seen = *f;
        seen.addr = pkt.addr;
        seen.port = port;
        emit_connect(&seen, cookie, false);
    }
    let (n, flags) =
        if plen > NET_CHUNK_LEN as u32 { (NET_CHUNK_LEN as u32, net_flags::PAYLOAD_TRUNCATED) } else { (plen, 0) };
    emit_chunk(ctx, cookie, pkt, port, IPPROTO_UDP, off, n, 0, flags);
    Some(())
}

/// Copies `n` (1..=NET_CHUNK_LEN) bytes at `off` into one payload record.
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "all scalars of one record; a struct would cost stack")]
fn emit_chunk(
    ctx: &SkBuffContext,
    cookie: u64,
    pkt: &Packet,
    port: u16,
    protocol: u32,
    off: u32,
    n: u32,
    seq: u32,
    flags: u32,
) -> Option<()> {
    let scratch = NET_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU value, valid for this run; `busy` keeps a nested run
    // on this CPU from using it at the same time.
    let s = unsafe { &mut *scratch };
    if s.busy != 0 {
        count(EventKind::NetPayload, Counter::ReserveFailed);
        return None;
    }
    s.busy = 1;
    let out = fill_and_output(ctx, s, cookie, pkt, port, protocol, off, n, seq, flags);
    s.busy = 0;
    match out {
        Some(()) => count(EventKind::NetPayload, Counter::Emitted),
        None => count(EventKind::NetPayload, Counter::ReserveFailed),
    }
    out
}

#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "see emit_chunk")]
fn fill_and_output(
    ctx: &SkBuffContext,
    s: &mut NetScratch,
    cookie: u64,
    pkt: &Packet,
    port: u16,
    protocol: u32,
    off: u32,
    n: u32,
    seq: u32,
    flags: u32,
) -> Option<()> {
    if n == 0 || n > NET_CHUNK_LEN as u32 {
        return None;
    }
    // The verifier needs the bound on the very register passed to the
    // helper; LLVM may test a copy. Re-derive it opaquely: for n in
    // 1..=NET_CHUNK_LEN this is the identity. (NET_CHUNK_LEN is a power of two.)
    let n = (core::hint::black_box(n).wrapping_sub(1) & (NET_CHUNK_LEN as u32 - 1)) + 1;
    // SAFETY: destination is the scratch buffer of NET_CHUNK_LEN bytes and
    // 1 <= n <= NET_CHUNK_LEN; the helper checks the packet bounds.
    let r = unsafe { bpf_skb_load_bytes(ctx.as_ptr().cast(), off, s.data.as_mut_ptr().cast(), n) };
    if r != 0 {
        return None;
    }
    let prefix = core::mem::size_of::<NetPayloadEvent>() as u32;
    s.ev = NetPayloadEvent {
        header: EventHeader {
            kind: EventKind::NetPayload as u32,
            size: prefix + n,
            // SAFETY: plain helper call.
            boot_ns: unsafe { generated::bpf_ktime_get_boot_ns() },
        },
        cookie,
        addr: pkt.addr,
        port,
        _pad0: 0,
        seq,
        len: n,
        protocol,
        flags,
        _pad1: 0,
    };
    // SAFETY: `ev` and `data` are adjacent in the #[repr(C)] scratch value
    // (NetPayloadEvent is 64 bytes, 8-aligned: no gap), so prefix + n bytes
    // from `ev` stay inside it.
    let bytes = unsafe {
        core::slice::from_raw_parts((&raw const s.ev).cast::<u8>(), (prefix + n) as usize)
    };
    EVENTS.output::<[u8]>(bytes, submit_flags()).ok()
}

// ---- release ------------------------------------------------------------

#[cgroup_sock(sock_release)]
pub fn net_sock_release(ctx: SockContext) -> i32 {
    let _ = on_release(&ctx);
    1
}

#[inline(always)]
fn on_release(ctx: &SockContext) -> Option<()> {
    // SAFETY: the context pointer is what the helper expects.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let flow = FLOWS.get_ptr(cookie)?;
    // SAFETY: map value, valid for this run.
    let (protocol, announced) = unsafe { ((*flow).protocol, (*flow).announced) };
    let _ = FLOWS.remove(cookie);
    // A UDP socket the agent never heard of (no QUIC Initial) needs no close.
    if protocol == IPPROTO_TCP || announced != 0 {
        emit_close(cookie, NetCloseReason::Released);
    }
    Some(())
}
