//! The per-deployment fingerprint key: 32 random bytes, generated at first
//! start (getrandom), stored mode 0600 in the state directory, reused after.
//! It keys the HMAC that names opaque tokens (`observer_creds::Keyed`).
//!
//! A key file readable by group or others is refused, not silently used:
//! with the key, anyone holding a candidate token could confirm it.
use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use observer_creds::{KEY_LEN, Keyed, Secret};

/// File name of the generated key in the state directory.
pub const KEY_FILE: &str = "fingerprint.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("fingerprint key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("fingerprint key {path} is accessible to group or others (mode {mode:04o}); it must be 0600 or stricter")]
    Mode { path: PathBuf, mode: u32 },
    #[error("fingerprint key {path} holds {len} bytes, want {KEY_LEN}")]
    Length { path: PathBuf, len: u64 },
    #[error("fingerprint key {path}: no randomness from the kernel: {message}")]
    Random { path: PathBuf, message: String },
}

/// The key at `<state_dir>/fingerprint.key`, created if missing.
pub fn load_or_create(state_dir: &Path) -> Result<Keyed, KeyError> {
    let path = state_dir.join(KEY_FILE);
    match load(&path) {
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => create(&path),
        other => other,
    }
}

/// A key that must already exist (`fingerprint_key_file` in the config).
pub fn load(path: &Path) -> Result<Keyed, KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Mode { path: path.to_owned(), mode });
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(KeyError::Length { path: path.to_owned(), len: meta.len() });
    }
    let mut key = Secret::new(vec![0u8; KEY_LEN]);
    f.read_exact(secret_bytes_mut(&mut key)).map_err(io)?;
    Ok(Keyed::new(key))
}

fn create(path: &Path) -> Result<Keyed, KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let mut key = Secret::new(vec![0u8; KEY_LEN]);
    getrandom::fill(secret_bytes_mut(&mut key))
        .map_err(|e| KeyError::Random { path: path.to_owned(), message: e.to_string() })?;
    let created: std::io::Result<File> = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let mut f = match created {
        Ok(f) => f,
        // Another instance created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load(path),
        Err(e) => return Err(io(e)),
    };
    f.write_all(key.expose()).and_then(|()| f.sync_all()).map_err(io)?;
    tracing::info!(path = %path.display(), "generated the fingerprint key");
    Ok(Keyed::new(key))
}

/// Writes into a fresh, zeroed `Secret` buffer without a second copy.
fn secret_bytes_mut(s: &mut Secret) -> &mut [u8] {
    s.expose_mut()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        let first = std::fs::read(&path).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first, "the key must not be regenerated");
        assert_eq!(a.id("k", b"token"), b.id("k", b"token"));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap().id("k", b"token"), a.id("k", b"token"));
    }

    #[test]
    fn loose_mode_and_wrong_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create(dir.path()), Err(KeyError::Mode { mode: 0o644, .. })));
        std::fs::write(&path, b"short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(KeyError::Length { len: 5, .. })));
        assert!(matches!(load(&dir.path().join("missing")), Err(KeyError::Io { .. })));
    }
}
