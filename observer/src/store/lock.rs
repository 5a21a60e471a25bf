//! The state directory's lock: one agent per state directory.
//!
//! Input: the state directory. Output: a [`StateLock`] held for the life of
//! the process (`<state_dir>/nhi-observer.lock`, holding the holder's pid).
//!
//! Invariants:
//! - the lock is an exclusive `flock` on the file: the kernel drops it when
//!   the process dies, however it dies (`kill -9` included), so a stale
//!   file never keeps an agent from starting;
//! - a second agent on the same directory is refused before it touches
//!   anything in it (database, key, JSON lines), with the first one's pid;
//!   two agents side by side would record every event twice and each would
//!   mark the other's run as unclean.
use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read as _, Seek as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

pub const LOCK_FILE: &str = "nhi-observer.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another nhi-observer (pid {}) is running on state directory {}: stop it, or give this one another --state-dir",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()), dir.display()
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    #[error("lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held while the agent runs; the lock goes with the file descriptor.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Takes the state directory's lock, or says who holds it.
pub fn lock(state_dir: &Path) -> Result<StateLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held { dir: state_dir.to_owned(), pid: text.trim().parse().ok() });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StateLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        match lock(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock not refused: {other:?}"),
        }
        drop(held);
        lock(dir.path()).expect("the lock is free once its holder is gone");
    }
}
