//! Credential paths re-pointed while the agent runs (issue 14 item 6): a
//! symlink at `~/.aws/credentials` switched to another file, or a file
//! renamed over it. The kernel knows the old target by inode and the new
//! target's own name may pass no gate, so the agent watches the
//! directories that hold the rules' paths (inotify) and reloads the watch
//! list as soon as one of those names changes, before the next open in
//! practice (there is a window of milliseconds between the change and the
//! reload).
//!
//! Input: the kernel rules and the homes. Output: [`LinkWatch::changed`]
//! returns when a watched name in a watched directory was created, moved
//! or deleted. Invariants: only existing directories are watched; events
//! on other names in them (a busy home directory) are read and dropped.
use std::{
    collections::HashMap,
    ffi::OsString,
    os::fd::{AsFd as _, AsRawFd, RawFd},
    os::unix::ffi::OsStrExt as _,
    path::PathBuf,
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

use crate::classify::catalog::{PatternKind, WatchRule};

/// Which names in a watched directory matter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(OsString),
    Prefix(OsString),
}

impl Name {
    fn matches(&self, name: &std::ffi::OsStr) -> bool {
        match self {
            Self::Exact(n) => n == name,
            Self::Prefix(p) => name.as_bytes().starts_with(p.as_bytes()),
        }
    }
}

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct LinkWatch {
    fd: AsyncFd<Fd>,
    names: HashMap<WatchDescriptor, Vec<Name>>,
}

/// Directories to watch and the names in them, from the rules' exact and
/// name-prefix patterns (directory rules are watched by the kernel's
/// directory gate; name and suffix rules by its name gate).
fn targets(rules: &[WatchRule], homes: &[PathBuf]) -> HashMap<PathBuf, Vec<Name>> {
    let mut out: HashMap<PathBuf, Vec<Name>> = HashMap::new();
    for rule in rules {
        for pattern in rule.pattern.spellings() {
            for base in crate::classify::watch::pattern_bases(&pattern.text, homes) {
                let (Some(dir), Some(name)) = (base.parent(), base.file_name()) else {
                    continue;
                };
                let name = match pattern.kind {
                    PatternKind::Exact => Name::Exact(name.to_owned()),
                    PatternKind::Prefix if !pattern.text.ends_with('/') => {
                        Name::Prefix(name.to_owned())
                    }
                    _ => continue,
                };
                if dir.is_dir() {
                    let names = out.entry(dir.to_owned()).or_default();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
    }
    out
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ONLYDIR);

impl LinkWatch {
    /// Watches the directories of `rules` over `homes`. Directories that
    /// cannot be watched (limits, permissions) are skipped with a count.
    pub fn new(rules: &[WatchRule], homes: &[PathBuf]) -> std::io::Result<(Self, usize)> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: `Fd` owns the inotify descriptor (an `OwnedFd` inside
        // `Inotify`), so it stays open and the same for the AsyncFd's life.
        let fd =
            unsafe { AsyncFd::register_with_interest(Fd(inotify), tokio::io::Interest::READABLE) }?;
        let mut w = Self {
            fd,
            names: HashMap::new(),
        };
        let failed = w.refresh(rules, homes);
        Ok((w, failed))
    }

    /// Watches the directories of `rules` over `homes` as they are now
    /// (new homes, directories created since), on the same queue, so no
    /// change between two refreshes is lost. Returns how many directories
    /// could not be watched. Watches of directories no longer wanted stay
    /// (their events find no name and are dropped).
    pub fn refresh(&mut self, rules: &[WatchRule], homes: &[PathBuf]) -> usize {
        let mut names: HashMap<WatchDescriptor, Vec<Name>> = HashMap::new();
        let mut failed = 0;
        for (dir, wanted) in targets(rules, homes) {
            match self.fd.get_ref().0.add_watch(&dir, MASK) {
                Ok(wd) => names.entry(wd).or_default().extend(wanted),
                Err(e) => {
                    failed += 1;
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch a credential directory for changes");
                }
            }
        }
        self.names = names;
        failed
    }

    /// Directories watched.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Waits until a watched name changes (or the queue overflowed).
    pub async fn changed(&mut self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let events = match guard.get_inner().0.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EAGAIN) => {
                    guard.clear_ready();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let hit = events.iter().any(|ev| {
                ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || ev.name.as_deref().is_some_and(|n| {
                        self.names
                            .get(&ev.wd)
                            .is_some_and(|names| names.iter().any(|w| w.matches(n)))
                    })
            });
            if hit {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::catalog::test_rule;

    #[test]
    fn targets_are_the_parent_directories_of_exact_and_prefix_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("alice");
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let rules = [
            test_rule(1, "~/.aws/credentials"),
            test_rule(2, "~/.ssh/id_*"),
            test_rule(3, "~/.kube/config"),
            test_rule(4, "~/.aws/sso/cache/"),
            test_rule(5, "*.pem"),
        ];
        let t = targets(&rules, std::slice::from_ref(&home));
        assert_eq!(t.len(), 2, "{t:#?}");
        assert_eq!(t[&home.join(".aws")], [Name::Exact("credentials".into())]);
        assert_eq!(t[&home.join(".ssh")], [Name::Prefix("id_".into())]);
        assert!(Name::Prefix("id_".into()).matches("id_rsa".as_ref()));
        assert!(!Name::Exact("credentials".into()).matches("credentials.tmp".as_ref()));
    }

    /// A rename over a watched name wakes the watcher; other names do not.
    #[tokio::test]
    async fn a_rename_onto_a_watched_name_is_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bob");
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        let (mut w, failed) = LinkWatch::new(
            &[test_rule(1, "~/.aws/credentials")],
            std::slice::from_ref(&home),
        )
        .unwrap();
        assert_eq!((w.len(), failed), (1, 0));
        std::fs::write(home.join(".aws/other"), "x").unwrap();
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(200), w.changed()).await;
        assert!(quiet.is_err(), "another name woke the watcher");
        std::os::unix::fs::symlink("/etc/hostname", home.join(".aws/tmp-link")).unwrap();
        std::fs::rename(home.join(".aws/tmp-link"), home.join(".aws/credentials")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
            .await
            .expect("woken")
            .unwrap();
    }
}
