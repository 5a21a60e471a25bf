//! The overhead floor: the file sensor's hook and syscall filter with nothing
//! behind it, counting open-family exits. Never attached by the agent; the
//! benchmark (`cargo xtask bench files`) loads it to measure what any design
//! on this hook pays, so the sensor's own cost can be read against it.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::files::is_open_family;
use crate::maps::FLOOR_HITS;

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit_floor(ctx: BtfTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    if is_open_family(regs)
        && let Some(slot) = FLOOR_HITS.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
    0
}
