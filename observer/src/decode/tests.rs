use observer_common::{EventKind, FileOpenEvent, OpenSyscall, PATH_LEN, WALK_BUF_LEN, event_flags};

use super::*;

fn zeroed() -> FileOpenEvent {
    // SAFETY: integer-only repr(C) type; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn bytes(ev: &FileOpenEvent) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-old-data value.
    unsafe { std::slice::from_raw_parts((ev as *const FileOpenEvent).cast::<u8>(), size_of::<FileOpenEvent>()) }
        .to_vec()
}

fn put(buf: &mut [u8], s: &[u8]) {
    buf[..s.len()].copy_from_slice(s);
}

fn sample() -> FileOpenEvent {
    let mut ev = zeroed();
    ev.header.kind = EventKind::FileOpen as u32;
    ev.header.size = size_of::<FileOpenEvent>() as u32;
    ev.header.boot_ns = 42;
    ev.task.tgid = 100;
    ev.task.pid = 101;
    ev.task.uid = 1000;
    put(&mut ev.task.comm, b"cat\0");
    ev.syscall = OpenSyscall::OpenAt as u32;
    ev.match_kind = 1;
    ev.rule_id = 1;
    ev.ret = 3;
    put(&mut ev.path, b"/home/a/.aws/credentials\0");
    let walk = b"credentials\0.aws\0a\0home\0";
    put(&mut ev.resolved, walk);
    ev.resolved_len = walk.len() as u16;
    let exe = b"cat\0bin\0usr\0";
    put(&mut ev.exe, exe);
    ev.exe_len = exe.len() as u16;
    ev.flags = event_flags::RESOLVED_VALID | event_flags::EXE_VALID;
    ev
}

#[test]
fn decodes_a_file_open() {
    let Ok(Event::FileOpen(ev)) = decode(&bytes(&sample())) else { panic!("not a file open") };
    assert_eq!(ev.task.tgid, 100);
    assert_eq!(ev.task.comm, "cat");
    assert_eq!(ev.path, "/home/a/.aws/credentials");
    assert_eq!(ev.resolved.unwrap().path, "/home/a/.aws/credentials");
    assert_eq!(ev.exe.unwrap().path, "/usr/bin/cat");
    assert_eq!(ev.syscall, OpenSyscall::OpenAt);
}

#[test]
fn incomplete_walk_is_marked() {
    let mut ev = sample();
    ev.flags |= event_flags::RESOLVED_TRUNCATED;
    let Ok(Event::FileOpen(ev)) = decode(&bytes(&ev)) else { panic!("not a file open") };
    let r = ev.resolved.unwrap();
    assert!(!r.complete);
    assert_eq!(r.path, "…/home/a/.aws/credentials");
}

#[test]
fn stale_bytes_after_the_walk_are_ignored() {
    let mut ev = sample();
    put(&mut ev.resolved[ev.resolved_len as usize..], b"junk\0more\0");
    let Ok(Event::FileOpen(ev)) = decode(&bytes(&ev)) else { panic!("not a file open") };
    assert_eq!(ev.resolved.unwrap().path, "/home/a/.aws/credentials");
}

#[test]
fn bad_records_are_errors() {
    assert_eq!(decode(&[1, 2, 3]).unwrap_err(), DecodeError::ShortHeader);
    let mut ev = sample();
    ev.header.kind = 999;
    assert_eq!(decode(&bytes(&ev)).unwrap_err(), DecodeError::UnknownKind(999));
    let ev = sample();
    assert!(matches!(decode(&bytes(&ev)[..100]), Err(DecodeError::Short { .. })));
    let mut ev = sample();
    ev.syscall = 77;
    assert_eq!(decode(&bytes(&ev)).unwrap_err(), DecodeError::BadValue { field: "syscall", value: 77 });
}

#[test]
fn unterminated_strings_do_not_overrun() {
    let mut ev = sample();
    ev.path = [b'a'; PATH_LEN];
    ev.task.comm = [b'b'; 16];
    ev.resolved = [b'c'; WALK_BUF_LEN];
    ev.resolved_len = u16::MAX;
    let Ok(Event::FileOpen(ev)) = decode(&bytes(&ev)) else { panic!("not a file open") };
    assert_eq!(ev.path.len(), PATH_LEN);
    assert_eq!(ev.task.comm.len(), 16);
    assert_eq!(ev.resolved.unwrap().path.len(), WALK_BUF_LEN + 1);
}

proptest::proptest! {
    /// Whatever the kernel (or a bug) puts in the ring, decode returns.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = decode(&bytes);
    }

    /// A valid header with an arbitrary body: still no panic, and a
    /// file-open body of the right size always decodes or names the field.
    #[test]
    fn file_open_with_random_body(body in proptest::collection::vec(proptest::num::u8::ANY, size_of::<FileOpenEvent>())) {
        let mut bytes = body;
        bytes[..4].copy_from_slice(&(EventKind::FileOpen as u32).to_ne_bytes());
        match decode(&bytes) {
            Ok(_) | Err(DecodeError::BadValue { .. }) => {}
            Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
        }
    }
}
