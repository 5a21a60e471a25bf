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

/// A record that is not 8-byte aligned (the ring's are) is copied and
/// decodes the same; one byte short is a short record either way.
#[test]
fn an_unaligned_record_decodes_as_an_aligned_one() {
    let raw = bytes(&sample());
    let mut shifted = vec![0u8; raw.len() + 1];
    let at = if shifted.as_ptr().align_offset(8) == 0 { 1 } else { 0 };
    shifted[at..at + raw.len()].copy_from_slice(&raw);
    let shifted = &shifted[at..at + raw.len()];
    assert_ne!(shifted.as_ptr().align_offset(8), 0, "the copy is unaligned");
    let (Ok(Event::FileOpen(a)), Ok(Event::FileOpen(b))) = (decode(&raw), decode(shifted)) else { panic!("not a file open") };
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(b.exe.unwrap().path, "/usr/bin/cat");
    for short in [&raw[..raw.len() - 1], &shifted[..raw.len() - 1]] {
        assert!(matches!(decode(short), Err(DecodeError::Short { kind: EventKind::FileOpen, .. })));
    }
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

    /// `utf8` is `str::from_utf8`, whatever the bytes (ASCII or not).
    #[test]
    fn utf8_is_from_utf8(bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'/', 0, 0x7f, 0x80, 0xc3, 0xa9, 0xff]), 0..40)) {
        proptest::prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
    }

    /// The walk's path is its names in reverse order, each after a `/`,
    /// empty names skipped, as splitting the walk at its NULs gives it;
    /// bytes of 0, `/` and a few letters, so that names, empty names and
    /// every position of a NUL occur.
    #[test]
    fn walked_path_is_the_names_reversed(
        walk in proptest::collection::vec(proptest::sample::select(vec![0u8, 0, b'/', b'a', b'b', 0xff]), 0..80),
        len in 0u16..100,
        complete in proptest::bool::ANY,
    ) {
        let used = &walk[..usize::from(len).min(walk.len())];
        let mut want = Vec::new();
        if !complete {
            want.extend_from_slice("…".as_bytes());
        }
        for name in used.split(|&c| c == 0).rev().filter(|n| !n.is_empty()) {
            want.push(b'/');
            want.extend_from_slice(name);
        }
        if want.is_empty() {
            want.push(b'/');
        }
        let got = walked_path(&walk, len, complete);
        proptest::prop_assert_eq!(got.path.clone().into_vec(), want);
        proptest::prop_assert_eq!(got.complete, complete);
    }
}

mod process {
    use observer_common::{
        CgroupMkdirEvent, EXEC_ENV_MAX, EventKind, ProcessExecEvent, ProcessForkEvent, cgroup_flags, exec_flags,
    };

    use super::super::*;

    fn pod_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn exec_record(args: &[u8], env: &[u8], flags: u32) -> Vec<u8> {
        // SAFETY: integer-only repr(C) type; all zeroes is valid.
        let mut ev: ProcessExecEvent = unsafe { std::mem::zeroed() };
        ev.header.kind = EventKind::ProcessExec as u32;
        ev.task.tgid = 42;
        ev.task.start_boot_ns = 7;
        ev.task.comm[..3].copy_from_slice(b"cat");
        ev.args_len = args.len() as u32;
        ev.env_len = env.len() as u32;
        ev.flags = flags | exec_flags::HAS_TTY | exec_flags::EXE_VALID;
        ev.tty[..5].copy_from_slice(b"pts3\0");
        let filename = b"/usr/bin/cat";
        ev.filename_len = filename.len() as u16;
        let exe = b"cat\0bin\0usr\0";
        ev.exe_len = exe.len() as u16;
        let mut bytes = pod_bytes(&ev);
        bytes.extend_from_slice(filename);
        bytes.extend_from_slice(exe);
        bytes.extend_from_slice(args);
        bytes.extend_from_slice(env);
        let size = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&size.to_ne_bytes());
        bytes
    }

    #[test]
    fn exec_record_with_args_and_environment() {
        let bytes = exec_record(b"cat\0/etc/hosts\0", b"PATH=/bin\0VAULT_TOKEN=hvs.x\0", 0);
        let Ok(Event::ProcessExec(ev)) = decode(&bytes) else { panic!("not an exec") };
        assert_eq!(ev.task.tgid, 42);
        assert!(!format!("{ev:?}").contains("hvs.x"), "the environment is redacted in Debug");
        assert_eq!(ev.exe.as_ref().unwrap().path, "/usr/bin/cat");
        assert_eq!(ev.filename, "/usr/bin/cat");
        assert_eq!(ev.tty.as_deref(), Some("pts3"));
        assert_eq!(ev.args.expose(), b"cat\0/etc/hosts\0");
        assert_eq!(ev.env.expose(), b"PATH=/bin\0VAULT_TOKEN=hvs.x\0");
        assert!(!ev.env_truncated);
    }

    #[test]
    fn exec_record_lengths_are_checked() {
        let mut bytes = exec_record(b"a\0", b"B=c\0", exec_flags::ENV_TRUNCATED);
        let Ok(Event::ProcessExec(ev)) = decode(&bytes) else { panic!("not an exec") };
        assert!(ev.env_truncated);
        // A failed copy of the environment is an incomplete one too.
        let failed = exec_record(b"a\0", b"", exec_flags::ENV_FAILED);
        let Ok(Event::ProcessExec(ev)) = decode(&failed) else { panic!("not an exec") };
        assert!(ev.env_truncated && ev.env.expose().is_empty());
        // Claim more data than the record has.
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(decode(&bytes), Err(DecodeError::BadLength { .. })));
        // Claim more than the kernel can send.
        let mut ev: ProcessExecEvent = unsafe { std::mem::zeroed() };
        ev.header.kind = EventKind::ProcessExec as u32;
        ev.env_len = (EXEC_ENV_MAX + 1) as u32;
        let mut big = pod_bytes(&ev);
        big.resize(big.len() + EXEC_ENV_MAX + 1, b'x');
        assert!(matches!(decode(&big), Err(DecodeError::BadLength { .. })));
        // An exec path or a walk longer than the kernel's buffers.
        for (filename_len, exe_len) in [(PATH_LEN as u16, 0), (0, WALK_BUF_LEN as u16)] {
            let mut ev: ProcessExecEvent = unsafe { std::mem::zeroed() };
            ev.header.kind = EventKind::ProcessExec as u32;
            ev.filename_len = filename_len;
            ev.exe_len = exe_len;
            let mut big = pod_bytes(&ev);
            big.resize(big.len() + PATH_LEN + WALK_BUF_LEN, b'x');
            assert!(matches!(decode(&big), Err(DecodeError::BadLength { .. })));
        }
        assert!(matches!(decode(&bytes[..100]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn fork_and_cgroup_records() {
        // SAFETY: integer-only repr(C) types; all zeroes is valid.
        let mut f: ProcessForkEvent = unsafe { std::mem::zeroed() };
        f.header.kind = EventKind::ProcessFork as u32;
        f.parent.tgid = 1;
        f.child_tgid = 2;
        f.child_start_boot_ns = 99;
        f.child_cgroup_id = 1234;
        let Ok(Event::ProcessFork(ev)) = decode(&pod_bytes(&f)) else { panic!("not a fork") };
        assert_eq!((ev.parent.tgid, ev.child_tgid, ev.child_start_boot_ns, ev.child_cgroup_id), (1, 2, 99, 1234));

        let mut c: CgroupMkdirEvent = unsafe { std::mem::zeroed() };
        c.header.kind = EventKind::CgroupMkdir as u32;
        c.cgroup_id = 77;
        c.path[..24].copy_from_slice(b"/system.slice/x.service\0");
        c.flags = cgroup_flags::PATH_TRUNCATED;
        let Ok(Event::CgroupMkdir(ev)) = decode(&pod_bytes(&c)) else { panic!("not a mkdir") };
        assert_eq!((ev.cgroup_id, ev.path.as_str(), ev.path_truncated), (77, "/system.slice/x.service", true));
    }

    proptest::proptest! {
        /// An exec header with arbitrary lengths and data never panics.
        #[test]
        fn exec_with_random_body(body in proptest::collection::vec(proptest::num::u8::ANY, size_of::<ProcessExecEvent>()..size_of::<ProcessExecEvent>() + 4096)) {
            let mut bytes = body;
            bytes[..4].copy_from_slice(&(EventKind::ProcessExec as u32).to_ne_bytes());
            let _ = decode(&bytes);
        }
    }
}
