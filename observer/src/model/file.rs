//! The `nhi.credential.access` record of a file open, as the kernel saw it.
//!
//! Input: a decoded [`FileOpen`] and its catalog rule. Output: the record,
//! before the workload identity stage adds the rest. Invariant: the path
//! rule (resolved path, or a failed relative open's directory joined with
//! the requested name) is decided here only.
use observer_common::MatchKind;

use super::records::{self, AccessSource, CredentialAccess, FileAccess, Process};
use crate::decode::{FileOpen, syscall_name};

/// A path's bytes as text, with the bytes that are not UTF-8 as `\xNN`
/// (a lossy conversion would show two different names the same).
pub fn escaped(bytes: &[u8]) -> String {
    text(bytes).0
}

/// [`escaped`], and whether a byte was escaped (valid UTF-8, the usual
/// case, is checked word by word and copied).
fn text(bytes: &[u8]) -> (String, bool) {
    use std::fmt::Write as _;
    if let Some(text) = crate::decode::utf8(bytes) {
        return (text.to_owned(), false);
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    (out, true)
}

/// The typed access of a file open (`rule`: the catalog rule's name and
/// credential kind), before the later stages add content, identity and
/// workload. Boxed as a record holds it ([`records::AccessSource`]), and
/// made in its box: a `FileAccess` made on the stack was then copied
/// into one (888 bytes).
pub fn file_access(ev: &FileOpen, rule: Option<(&'static str, &'static str)>) -> Box<FileAccess> {
    use std::os::unix::ffi::OsStrExt;
    // Bytes that are not UTF-8 are shown as `\xNN` (issue 14), and said so.
    let (requested, mut path_escaped) = text(ev.path.as_bytes());
    let (path, path_truncated) = match &ev.resolved {
        Some(r) => {
            let (resolved, resolved_escaped) = text(r.path.as_bytes());
            path_escaped |= resolved_escaped;
            let path = if ev.resolved_is_base {
                // A failed relative open: its directory joined with the name.
                format!("{}/{requested}", resolved.trim_end_matches('/'))
            } else {
                resolved
            };
            (path, !r.complete)
        }
        None => (requested.clone(), false),
    };
    let known_file = ev.ino != 0;
    let mut access = Box::<FileAccess>::default();
    access.kind = rule.map(|(_, kind)| kind.into());
    access.rule = rule.map(|(name, _)| name.into());
    access.open = records::FileOpen {
        path_escaped,
        path,
        path_truncated,
        requested_path: requested,
        requested_path_truncated: ev.path_truncated,
        inode: known_file.then_some(records::Inode(ev.ino)),
        device: known_file.then_some(records::Device(ev.dev)),
        access: ev.access().as_str(),
        create: ev.creates(),
        mode: ev.creates().then(|| format!("{:04o}", ev.mode & 0o7777)),
        match_kind: match_name(ev.match_kind),
        syscall: syscall_name(ev.syscall),
        result: ev.ret,
        // io_uring `file_index`: no descriptor, so no inode or resolved path.
        fixed_file: ev.fixed_file,
        error_type: (ev.ret < 0).then(|| errno_name(ev.ret)),
    };
    access.process = Process::new(&ev.task, ev.exe.as_ref());
    access
}

/// `nhi.credential.rotation`: a file's access record (`base`) with the
/// file's identities before and after (`None` for an access that is not a
/// file's).
pub fn rotation(
    base: &CredentialAccess,
    before: &observer_creds::Parsed,
    after: &observer_creds::Parsed,
) -> Option<records::Rotation> {
    let AccessSource::File(access) = &base.source else { return None };
    let ids = |p: &observer_creds::Parsed| {
        let mut v: Vec<&str> = p.identities.iter().map(|i| i.id.as_str()).collect();
        v.sort_unstable();
        v.join(",")
    };
    let (previous_ids, current_ids) = (ids(before), ids(after));
    let identity_changed = previous_ids != current_ids;
    Some(records::Rotation {
        time: base.time,
        host_name: base.host_name.clone(),
        source: "file",
        access: (**access).clone(),
        change: records::RotationIds { previous_ids, current_ids, identity_changed },
        record_id: None,
    })
}

fn match_name(m: MatchKind) -> &'static str {
    match m {
        MatchKind::Path => "path",
        MatchKind::Inode => "inode",
        MatchKind::Dir => "directory",
        MatchKind::Name => "name",
    }
}

/// `nhi.file.device`: `major:minor` of a kernel `dev_t`
/// (`super_block::s_dev`, as file events carry it).
pub fn device(dev: u64) -> String {
    records::Device(dev).to_string()
}

fn errno_name(ret: i64) -> String {
    let code = i32::try_from(-ret).unwrap_or(0);
    let errno = nix::errno::Errno::from_raw(code);
    if errno == nix::errno::Errno::UnknownErrno {
        format!("errno {code}")
    } else {
        format!("{errno:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(-2), "ENOENT");
        assert_eq!(errno_name(-13), "EACCES");
        assert_eq!(errno_name(-100000), "errno 100000");
    }

    #[test]
    fn kernel_dev_t_split() {
        // 8:1 as the kernel encodes it (MKDEV = major << 20 | minor).
        let dev = observer_common::kernel_dev(8, 1);
        assert_eq!(dev, (8 << 20) | 1);
        assert_eq!(device(u64::from(dev)), "8:1");
    }
}
