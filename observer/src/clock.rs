//! Kernel boot-time stamps (`bpf_ktime_get_boot_ns`) to wall-clock time.
use std::time::{Duration, Instant, SystemTime};

use nix::time::{ClockId, clock_gettime};

/// Converts boot-time nanoseconds to `SystemTime`, re-reading the offset
/// between the clocks every few seconds so clock steps (NTP) are followed.
pub struct BootClock {
    /// Wall-clock time at boot, in ns since the epoch.
    boot_epoch_ns: i128,
    refreshed: Instant,
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

impl BootClock {
    pub fn new() -> Self {
        Self { boot_epoch_ns: boot_epoch_ns(), refreshed: Instant::now() }
    }

    pub fn wall_time(&mut self, boot_ns: u64) -> SystemTime {
        if self.refreshed.elapsed() > Duration::from_secs(5) {
            self.boot_epoch_ns = boot_epoch_ns();
            self.refreshed = Instant::now();
        }
        let ns = self.boot_epoch_ns + i128::from(boot_ns);
        u64::try_from(ns).map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Now, on the kernel's boot-time clock (`bpf_ktime_get_boot_ns`).
pub fn boot_now_ns() -> u64 {
    u64::try_from(ns(ClockId::CLOCK_BOOTTIME)).unwrap_or(0)
}

fn ns(clock: ClockId) -> i128 {
    clock_gettime(clock).map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())).unwrap_or(0)
}

fn boot_epoch_ns() -> i128 {
    ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_in_boot_time_is_now_in_wall_time() {
        let mut c = BootClock::new();
        let boot_now = u64::try_from(ns(ClockId::CLOCK_BOOTTIME)).unwrap();
        let wall = c.wall_time(boot_now);
        let diff = SystemTime::now().duration_since(wall).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }
}
