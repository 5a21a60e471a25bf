//! nhi-observer kernel programs.
//!
//! Program types used: tp_btf (raw syscall exit, sched and io_uring
//! tracepoints); cgroup_sock_addr,
//! cgroup_skb and cgroup_sock at the cgroup v2 root. No kprobes, fentry or LSM:
//! they are unavailable on the machines we test on (see docs/design.md and the shared DESIGN notes).
//! Minimum kernel: 5.8 (ring buffer), with BTF (tp_btf, offsets).
#![no_std]
#![no_main]
// `asm!` on the BPF target: one empty barrier in kernel.rs (fd_array_slot).
#![feature(asm_experimental_arch)]
// Atomic add on map values (the BPF target has no core atomics).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod kernel;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic; this is never called.
    loop {}
}

/// GPL-compatible: `bpf_probe_read_*` are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
