//! The agent's heap: mimalloc (set as the global allocator by the binary
//! and the benchmarks), tuned to hand freed memory back at once.
//!
//! Why: the per-event chain allocates many small strings; mimalloc serves
//! them at about half glibc's cost (`cargo xtask bench pipeline`). Its
//! defaults keep freed pages for a while and commit whole arenas up front,
//! which costs RSS on an agent that idles most of the time; with purging
//! immediate and arenas committed on demand, idle and loaded RSS are at or
//! below glibc's (`cargo xtask bench memory`, docs/design.md).
use std::os::raw::{c_int, c_long};

/// `mi_option_e` numbers of mimalloc v3 (`mimalloc.h`), which the crate's
/// bindings do not name. Each is changed only while it still holds its
/// documented default, so a renumbered option in a later mimalloc, or a
/// value set by the user (`MIMALLOC_PURGE_DELAY=...`), is left alone.
const ARENA_EAGER_COMMIT: (c_int, c_long, c_long) = (4, 2, 0);
const PURGE_DELAY: (c_int, c_long, c_long) = (15, 1000, 0);

/// Applies the agent's allocator settings; call first thing in `main`.
pub fn tune() {
    for (option, default, ours) in [ARENA_EAGER_COMMIT, PURGE_DELAY] {
        // SAFETY: reading and setting mimalloc options has no
        // preconditions; unknown numbers are ignored by mimalloc.
        unsafe {
            if libmimalloc_sys::mi_option_get(option) == default {
                libmimalloc_sys::mi_option_set(option, ours);
            }
        }
    }
}

/// Returns freed heap pages to the OS: mimalloc's (the Rust heap; `force`
/// also collects pages other threads abandoned) and glibc's (SQLite and
/// other C code allocate there).
pub fn release_free_memory() {
    // SAFETY: both only release free pages; no preconditions, callable
    // from any thread.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers still mean what they meant (a renumbered
    /// mimalloc fails here, not silently), and a value the user set is kept.
    #[test]
    fn tune_sets_immediate_purge_and_lazy_arena_commit_unless_the_user_did() {
        let user_set = |o: c_int| match o {
            4 => std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some(),
            _ => std::env::var_os("MIMALLOC_PURGE_DELAY").is_some(),
        };
        // SAFETY: see `tune`.
        let get = |o: c_int| unsafe { libmimalloc_sys::mi_option_get(o) };
        let before: Vec<c_long> = [ARENA_EAGER_COMMIT, PURGE_DELAY].iter().map(|(o, _, _)| get(*o)).collect();
        tune();
        for ((option, default, ours), before) in [ARENA_EAGER_COMMIT, PURGE_DELAY].into_iter().zip(before) {
            if user_set(option) {
                assert_eq!(get(option), before, "option {option}: the user's value must stay");
            } else {
                assert_eq!(before, default, "option {option} no longer has the default we expect");
                assert_eq!(get(option), ours, "option {option}");
            }
        }
    }
}
