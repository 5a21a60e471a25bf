//! End-to-end tests of the credential-access sensor (issue 4): every way a
//! credential file can be opened and spelled, de-duplication counts, loss
//! accounting, and watch-list changes at runtime. Each test starts the real
//! agent as root and asserts on the records it wrote.
mod common;

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::symlink,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const ACCESS: &str = "nhi.credential.access";

/// Opens `argv[1]` through several syscalls and spellings, one per line of
/// `argv[2]`: `openat-abs`, `openat-cwd <dir> <rel>`, `openat-dirfd <dir>
/// <rel>`, `open <path>`, `openat2 <path>`.
const OPENER: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
def check(fd):
    if fd < 0: raise OSError(ctypes.get_errno(), "open failed")
    os.close(fd)
for line in sys.argv[1].strip().splitlines():
    op, *a = line.split()
    if op == "openat":
        check(os.open(a[0], os.O_RDONLY))
    elif op == "openat-cwd":
        os.chdir(a[0]); check(os.open(a[1], os.O_RDONLY)); os.chdir("/")
    elif op == "openat-dirfd":
        d = os.open(a[0], os.O_RDONLY | os.O_DIRECTORY); check(os.open(a[1], os.O_RDONLY, dir_fd=d)); os.close(d)
    elif op == "open":
        check(libc.syscall(2, a[0].encode(), os.O_RDONLY, 0))
    elif op == "openat2":
        how = OpenHow(os.O_RDONLY, 0, 0)
        check(libc.syscall(437, -100, a[0].encode(), ctypes.byref(how), ctypes.sizeof(how)))
    elif op in ("missing", "missing-cwd"):
        if op == "missing-cwd": os.chdir(a[0])
        try: os.close(os.open(a[-1], os.O_RDONLY)); raise SystemExit("opened " + a[-1])
        except FileNotFoundError: pass
        os.chdir("/")
    else:
        raise SystemExit("bad op " + op)
"#;

fn records_for_pid(records: &[Value], pid: u32) -> Vec<&Value> {
    named(records, ACCESS).into_iter().filter(|r| int_attr(r, "process.pid") == Some(i64::from(pid))).collect()
}

/// Path spellings: absolute, relative to the cwd, relative to a dirfd,
/// through a symlink elsewhere, and the open/openat/openat2 syscalls. Each
/// must be reported as the same credential file.
#[test]
fn every_spelling_and_syscall_of_a_credential_open_is_reported() {
    if !bpf_available("every_spelling_and_syscall_of_a_credential_open_is_reported") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let aws = home.path().join(".aws");
    fs::create_dir_all(&aws).unwrap();
    let cred = aws.join("credentials");
    fs::write(&cred, "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let alias = elsewhere.path().join("innocent-name");
    symlink(&cred, &alias).unwrap();

    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config_args(state.path(), "dedup_interval_ms = 0\n").iter().map(String::as_str).collect::<Vec<_>>());
    let (c, a, h) = (cred.display(), alias.display(), home.path().display());
    let plan = format!(
        "openat {c}\nopenat-cwd {aws} credentials\nopenat-dirfd {h} .aws/credentials\nopenat {a}\nopen {c}\nopenat2 {c}\n",
        aws = aws.display()
    );
    let (pid, _) = python(OPENER, &[&plan]);
    let (status, records, _) = {
        let deadline = Instant::now() + Duration::from_secs(5);
        while records_for_pid(&agent.records(), pid).len() < 6 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        agent.stop(Signal::SIGTERM)
    };
    assert!(status.success());
    let mine = records_for_pid(&records, pid);
    assert_eq!(mine.len(), 6, "one record per open: {mine:#?}");
    for r in &mine {
        assert_eq!(str_attr(r, "file.path"), cred.to_str(), "{r:#}");
        assert_eq!(str_attr(r, "nhi.rule"), Some("aws-shared-credentials"));
        assert!(int_attr(r, "nhi.open.result").is_some_and(|fd| fd >= 0));
        assert_eq!(int_attr(r, "nhi.access.count"), Some(1));
    }
    let requested: BTreeSet<_> = mine.iter().filter_map(|r| str_attr(r, "nhi.file.requested_path")).collect();
    for want in [cred.to_str().unwrap(), "credentials", ".aws/credentials", alias.to_str().unwrap()] {
        assert!(requested.contains(want), "no record requested as {want}: {requested:?}");
    }
    let syscalls: BTreeSet<_> = mine.iter().filter_map(|r| str_attr(r, "nhi.open.syscall")).collect();
    assert_eq!(syscalls, BTreeSet::from(["open", "openat", "openat2"]));
}

/// Kubernetes mounts the service-account token as `token -> ..data/token`,
/// `..data -> ..<timestamp>`, in a tmpfs, inside the pod's mount namespace.
/// Read through `/var/run/...` and `/run/...` from a private mount
/// namespace, it is still the token, by its real name.
#[test]
fn service_account_token_through_atomic_writer_symlinks_in_a_mount_namespace() {
    if !bpf_available("service_account_token_through_atomic_writer_symlinks_in_a_mount_namespace") {
        return;
    }
    let _serial = serial();
    let agent = Agent::start(&[]);
    let script = r#"
set -e
mount -t tmpfs tmpfs /run
d=/run/secrets/kubernetes.io/serviceaccount
mkdir -p $d/..2026_11_23_08_00_00.000000001
printf 'eyJhbGciOiJSUzI1NiJ9.e30.sig' > $d/..2026_11_23_08_00_00.000000001/token
ln -s ..2026_11_23_08_00_00.000000001 $d/..data
ln -s ..data/token $d/token
cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null
cat /run/secrets/kubernetes.io/serviceaccount/token > /dev/null
"#;
    // unshare execs the shell in place, so the shell has the child's pid and
    // the two `cat`s are its children: records of any other process opening
    // a token on this host (another agent, a kubelet) are left out.
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let shell = i64::from(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let is_token = |r: &Value| {
        str_attr(r, "nhi.rule") == Some("k8s-service-account-token")
            && r.get("process.parent_pid").and_then(Value::as_i64) == Some(shell)
    };
    agent.wait_for_record(Duration::from_secs(5), |r| is_token(r));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    // The shell that wrote the token is reported too (a create); here we
    // check the two reads.
    let tokens: Vec<_> = named(&records, ACCESS)
        .into_iter()
        .filter(|r| is_token(r) && str_attr(r, "nhi.file.access") == Some("read"))
        .collect();
    let requested: BTreeSet<_> = tokens.iter().filter_map(|r| str_attr(r, "nhi.file.requested_path")).collect();
    assert!(
        requested.contains("/var/run/secrets/kubernetes.io/serviceaccount/token")
            && requested.contains("/run/secrets/kubernetes.io/serviceaccount/token"),
        "{tokens:#?}"
    );
    for r in &tokens {
        // The real file, as the pod's mount namespace names it.
        assert_eq!(
            str_attr(r, "file.path"),
            Some("/run/secrets/kubernetes.io/serviceaccount/..2026_11_23_08_00_00.000000001/token"),
            "{r:#}"
        );
        assert_eq!(str_attr(r, "process.command"), Some("cat"));
    }
}

/// A credential known from the agent's scan is recognised by inode under
/// any name: here bind-mounted elsewhere in another mount namespace.
#[test]
fn bind_mounted_credential_is_recognised_by_inode() {
    if !bpf_available("bind_mounted_credential_is_recognised_by_inode") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let key = home.path().join(".ssh/id_ed25519");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nsynthetic\n").unwrap();
    let agent = Agent::start(&[]);
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /mnt; touch /mnt/app.conf; mount --bind '{}' /mnt/app.conf; cat /mnt/app.conf > /dev/null",
        key.display()
    );
    let out = Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hit = |r: &Value| str_attr(r, "nhi.file.requested_path") == Some("/mnt/app.conf");
    agent.wait_for_record(Duration::from_secs(5), hit);
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let r = named(&records, ACCESS).into_iter().find(|r| hit(r)).unwrap_or_else(|| panic!("no record: {records:#?}"));
    assert_eq!(str_attr(r, "nhi.match"), Some("inode"));
    assert_eq!(str_attr(r, "nhi.rule"), Some("ssh-private-key"));
    assert_eq!(str_attr(r, "file.path"), Some("/mnt/app.conf"), "the name in the process's namespace");
    assert_eq!(str_attr(r, "file.inode"), Some(fs::metadata(&key).map(|m| std::os::unix::fs::MetadataExt::ino(&m).to_string()).unwrap().as_str()));
}

/// Writes and creates matter (rotation, SSO caches); so does a failed
/// probe for a credential, with its errno.
#[test]
fn writes_creates_and_failures_carry_access_and_result() {
    if !bpf_available("writes_creates_and_failures_carry_access_and_result") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    fs::create_dir_all(home.path().join(".kube")).unwrap();
    fs::create_dir_all(home.path().join(".aws")).unwrap();
    let locked = home.path().join(".ssh/id_rsa");
    fs::create_dir_all(locked.parent().unwrap()).unwrap();
    fs::write(&locked, "k").unwrap();
    let agent = Agent::start(&[]);
    let script = r#"
import ctypes, os, sys
h = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
os.close(os.open(h + "/.kube/config", os.O_WRONLY | os.O_CREAT, 0o600))   # create
os.close(os.open(h + "/.kube/config", os.O_RDWR))                          # read_write
fd = libc.creat((h + "/.aws/config").encode(), 0o644)                      # creat(2)
assert fd >= 0; os.close(fd)
try: os.open(h + "/.aws/credentials", os.O_RDONLY)                         # ENOENT
except FileNotFoundError: pass
os.chmod(h + "/.ssh/id_rsa", 0)
os.setuid(65534)
try: os.open(h + "/.ssh/id_rsa", os.O_RDONLY)                              # EACCES as nobody
except PermissionError: pass
"#;
    let (pid, _) = python(script, &[home.path().to_str().unwrap()]);
    let (status, records, _) = {
        agent.wait_for_record(Duration::from_secs(5), |r| {
            int_attr(r, "process.pid") == Some(i64::from(pid)) && str_attr(r, "error.type") == Some("EACCES")
        });
        agent.stop(Signal::SIGTERM)
    };
    assert!(status.success());
    let mine = records_for_pid(&records, pid);
    let find = |path: &str, syscall: &str, access: &str| {
        let p = home.path().join(path);
        mine.iter()
            .find(|r| {
                str_attr(r, "file.path") == p.to_str()
                    && str_attr(r, "nhi.open.syscall") == Some(syscall)
                    && str_attr(r, "nhi.file.access") == Some(access)
            })
            .copied()
            .unwrap_or_else(|| panic!("no {syscall} {access} record of {path}: {mine:#?}"))
    };
    let created = find(".kube/config", "openat", "write");
    assert_eq!(created.get("nhi.file.create"), Some(&Value::Bool(true)));
    assert_eq!(str_attr(created, "nhi.file.mode"), Some("0600"));
    let rw = find(".kube/config", "openat", "read_write");
    assert_eq!(rw.get("nhi.file.create"), Some(&Value::Bool(false)));
    let creat = find(".aws/config", "creat", "write");
    assert_eq!(creat.get("nhi.file.create"), Some(&Value::Bool(true)));
    assert_eq!(str_attr(creat, "nhi.rule"), Some("aws-config"));
    let enoent = find(".aws/credentials", "openat", "read");
    assert_eq!((int_attr(enoent, "nhi.open.result"), str_attr(enoent, "error.type")), (Some(-2), Some("ENOENT")));
    let eacces = find(".ssh/id_rsa", "openat", "read");
    assert_eq!((int_attr(eacces, "nhi.open.result"), str_attr(eacces, "error.type")), (Some(-13), Some("EACCES")));
    assert_eq!(int_attr(eacces, "process.user.id"), Some(65534));
}

/// What the loops open: a credential file (reads of files that hold no
/// credential are counted, not reported).
const SYNTHETIC_AWS: &str = "[default]\naws_access_key_id = AKIAE2ELOOPSYNTHET01\n";
const SYNTHETIC_KEY: &str = include_str!("../observer-creds/tests/corpus/tls/pkcs8-rsa.key");

const LOOP: &str = r#"
import os, sys
path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flags = {"r": os.O_RDONLY, "rw": os.O_RDWR}[mode]
for _ in range(n):
    os.close(os.open(path, flags))
"#;

/// A process opening one file in a loop becomes one record plus counts;
/// the counts add up exactly, per access mode.
#[test]
fn repeated_opens_are_folded_and_counted_exactly() {
    if !bpf_available("repeated_opens_are_folded_and_counted_exactly") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".aws/credentials");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(&cred, SYNTHETIC_AWS).unwrap();
    let agent = Agent::start(&[]);
    let c = cred.to_str().unwrap();
    let (reader, _) = python(LOOP, &[c, "500", "r"]);
    let (writer, _) = python(LOOP, &[c, "300", "rw"]);
    // The tail of a burst is reported by the next sweep (every second).
    let (status, records, _) = {
        std::thread::sleep(Duration::from_millis(1500));
        agent.stop(Signal::SIGTERM)
    };
    assert!(status.success());
    let of = |pid: u32, access: &'static str| {
        move |r: &Value| int_attr(r, "process.pid") == Some(i64::from(pid)) && str_attr(r, "nhi.file.access") == Some(access)
    };
    assert_eq!(access_count(&records, of(reader, "read")), 500);
    assert_eq!(access_count(&records, of(writer, "read_write")), 300);
    let reader_records = records_for_pid(&records, reader).len();
    assert!(reader_records <= 3, "500 opens in a loop must not be 500 records: {reader_records}");
    let stats = final_stats(&records);
    assert!(int_attr(stats, "nhi.file.opens.folded").is_some_and(|n| n >= 500 + 300 - 2 * 3), "{stats:#}");
}

/// Two threads of one process opening one file as fast as they can, on
/// two CPUs, with a 1 ms de-dup window: the kernel's key for the file is
/// created, and its window passed, by both threads at once again and
/// again (a thousand windows a second). Every open is counted once.
/// (Before: two events emitted at once counted the key's whole total
/// twice, and the key's creation could lose one open to the other CPU's
/// insert; `bench burst` summed 0.6% over its opens.)
#[test]
fn two_threads_opening_one_file_at_once_are_counted_once() {
    if !bpf_available("two_threads_opening_one_file_at_once_are_counted_once") {
        return;
    }
    use std::{
        ffi::CString,
        os::unix::ffi::OsStrExt as _,
        sync::{Arc, Barrier},
    };
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    fs::write(&path, "[default]\naws_access_key_id = AKIAE2ERACE000000001\n").unwrap();
    let file = CString::new(path.as_os_str().as_bytes()).unwrap();
    let rule = format!(
        "dedup_interval_ms = 1\n[[watch]]\nname = \"race\"\nkind = \"aws.access_key\"\npath = \"{}/\"\nformat = \"aws-ini\"\n",
        dir.path().display()
    );
    let state = tempfile::tempdir().unwrap();
    let args = config_args(state.path(), &rule);
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let start = Arc::new(Barrier::new(2));
    let until = Instant::now() + Duration::from_secs(2);
    let opens: i64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (start, file) = (start.clone(), &file);
                s.spawn(move || {
                    start.wait();
                    let mut n = 0;
                    while Instant::now() < until {
                        // SAFETY: a NUL-terminated path; the fd is closed at once.
                        let fd = unsafe { libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                        assert!(fd >= 0, "open {file:?}");
                        // SAFETY: our own fd.
                        unsafe { libc::close(fd) };
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let me = i64::from(std::process::id());
    let stats = final_stats(&records);
    assert_eq!(int_attr(stats, "nhi.file.events.lost"), Some(0), "{stats:#}");
    assert_eq!(access_count(&records, |r| int_attr(r, "process.pid") == Some(me)), opens, "{stats:#}");
}

/// 100k credential opens at the default ring size: nothing lost, and the
/// counts account for every one of them.
#[test]
fn burst_of_100k_opens_is_fully_accounted_at_the_default_ring_size() {
    if !bpf_available("burst_of_100k_opens_is_fully_accounted_at_the_default_ring_size") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".kube/config");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(&cred, "apiVersion: v1\nusers:\n- name: e2e\n  user:\n    token: e2e-synthetic-kube-token-0001\n").unwrap();
    let agent = Agent::start(&[]);
    let (pid, _) = python(LOOP, &[cred.to_str().unwrap(), "100000", "r"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    assert_eq!(access_count(&records, |r| int_attr(r, "process.pid") == Some(i64::from(pid))), 100_000);
    let stats = final_stats(&records);
    assert_eq!(int_attr(stats, "nhi.file.events.lost"), Some(0), "{stats:#}");
    assert_eq!(int_attr(stats, "nhi.agent.decode_errors"), Some(0), "{stats:#}");
}

/// With de-duplication off and a tiny ring, a burst overflows the ring:
/// every open that did not arrive is counted lost, exactly, by the
/// process's own count (`nhi.file.events.lost_by_process`). The
/// machine-wide counter also holds other processes' losses during the
/// burst (a clean-clone CI run once saw 821 + 19,180 = 20,001 with it).
#[test]
fn ring_overflow_loss_is_counted_exactly() {
    if !bpf_available("ring_overflow_loss_is_counted_exactly") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let cred = home.path().join(".aws/config");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    fs::write(&cred, SYNTHETIC_AWS).unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = config_args(state.path(), "dedup_interval_ms = 0\nring_buffer_bytes = 16384\n");
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    const N: i64 = 20_000;
    let (pid, _) = python(LOOP, &[cred.to_str().unwrap(), &N.to_string(), "r"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let arrived = records_for_pid(&records, pid).len() as i64;
    let stats = final_stats(&records);
    let lost = int_attr(stats, "nhi.file.events.lost").unwrap();
    // The kernel counts losses per process too: this loop's, exactly,
    // whatever other processes on the host lost meanwhile.
    let lost_mine: i64 = stats["nhi.file.events.lost_by_process"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once(':'))
        .find(|(p, _)| p.parse::<i64>().ok() == Some(i64::from(pid)))
        .map_or(0, |(_, n)| n.parse().unwrap());
    assert!(lost_mine > 0, "a 16 KiB ring cannot hold {N} events: {stats:#}");
    assert_eq!(arrived + lost_mine, N, "arrived {arrived} + lost {lost_mine} by the loop ({stats:#})");
    assert!(lost >= lost_mine, "the machine-wide count includes the loop's: {stats:#}");
}

/// The name rules both name-length tests use: a suffix (`*.zq`), a
/// prefix below `dir` (`zqp_*`) and two exact names of one and two bytes.
fn zq_rules(dir: &std::path::Path) -> String {
    format!(
        "[[watch]]\nname = \"zq-suffix\"\nkind = \"tls.private_key\"\npath = \"*.zq\"\n\
         [[watch]]\nname = \"zq-prefix\"\nkind = \"tls.private_key\"\npath = \"{}/zqp_*\"\n\
         [[watch]]\nname = \"zq-one\"\nkind = \"tls.private_key\"\npath = \"q\"\n\
         [[watch]]\nname = \"zq-two\"\nkind = \"tls.private_key\"\npath = \"qz\"\n",
        dir.display()
    )
}

/// Failed opens (the file does not exist, so only the requested string is
/// there): name rules match the string's last component at every name
/// length, by an absolute path and by a bare name relative to the cwd,
/// and a path-prefix rule matches absolute paths below it. The kernel
/// tests these names' first and last two bytes first and skips the
/// path-rule trie for paths no rule can start with (the path gate): a
/// name or path either step wrongly turned away is missing here.
#[test]
fn failed_opens_match_name_and_path_rules_at_every_name_length() {
    if !bpf_available("failed_opens_match_name_and_path_rules_at_every_name_length") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = config_args(state.path(), &zq_rules(dir.path()));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let d = dir.path().display().to_string();
    // (what the process asked for, rule, how the kernel matched it)
    let mut expected: Vec<(String, &str, &str)> = Vec::new();
    let mut plan = String::new();
    for len in 3..=64 {
        let name = format!("{}.zq", "a".repeat(len - 3));
        expected.push((format!("{d}/{name}"), "zq-suffix", "name"));
        plan.push_str(&format!("missing {d}/{name}\n"));
        if len % 7 == 3 {
            expected.push((name.clone(), "zq-suffix", "name"));
            plan.push_str(&format!("missing-cwd {d} {name}\n"));
        }
    }
    for len in 4..=64 {
        let name = format!("zqp_{}", "b".repeat(len - 4));
        expected.push((format!("{d}/{name}"), "zq-prefix", "path"));
        plan.push_str(&format!("missing {d}/{name}\n"));
    }
    for name in ["q", "qz"] {
        let rule = if name == "q" { "zq-one" } else { "zq-two" };
        expected.push((format!("{d}/{name}"), rule, "name"));
        plan.push_str(&format!("missing {d}/{name}\n"));
        expected.push((name.to_owned(), rule, "name"));
        plan.push_str(&format!("missing-cwd {d} {name}\n"));
    }
    let (pid, _) = python(OPENER, &[&plan]);
    let last = expected.last().unwrap().0.clone();
    agent.wait_for_record(Duration::from_secs(5), |r| {
        str_attr(r, "nhi.file.requested_path") == Some(last.as_str()) && int_attr(r, "process.pid") == Some(i64::from(pid))
    });
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let mine = records_for_pid(&records, pid);
    let missing: Vec<_> = expected
        .iter()
        .filter(|(asked, ..)| !mine.iter().any(|r| str_attr(r, "nhi.file.requested_path") == Some(asked.as_str())))
        .map(|(asked, ..)| format!("{asked} ({} bytes)", asked.len()))
        .collect();
    assert!(missing.is_empty(), "no record of these failed opens: {missing:#?}");
    for (asked, rule, how) in &expected {
        let hit = mine.iter().find(|r| str_attr(r, "nhi.file.requested_path") == Some(asked.as_str())).unwrap();
        assert_eq!(
            (str_attr(hit, "nhi.rule"), str_attr(hit, "nhi.match"), str_attr(hit, "error.type")),
            (Some(*rule), Some(*how), Some("ENOENT")),
            "{asked}: {hit:#}"
        );
    }
}

/// The watch list changes at runtime (config + SIGHUP) with no program
/// reload: a path that was not watched becomes watched.
#[test]
fn watch_list_changes_at_runtime_without_reloading_programs() {
    if !bpf_available("watch_list_changes_at_runtime_without_reloading_programs") {
        return;
    }
    let _serial = serial();
    let home = temp_home();
    let token = home.path().join(".deploy-key");
    fs::write(&token, "synthetic").unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = config_args(state.path(), "");
    let mut agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let before = program_ids(agent.pid());
    let (first, _) = python(LOOP, &[token.to_str().unwrap(), "1", "r"]);
    fs::write(state.path().join("config.toml"), "[[watch]]\nname = \"deploy-key\"\nkind = \"app.deploy_key\"\npath = \"~/.deploy-key\"\n").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.pid() as i32), Signal::SIGHUP).unwrap();
    agent.wait_for_log_count("watch list loaded", 2, Duration::from_secs(10));
    let (second, _) = python(LOOP, &[token.to_str().unwrap(), "1", "r"]);
    assert_eq!(program_ids(agent.pid()), before, "programs were reloaded");
    agent.wait_for_record(Duration::from_secs(5), |r| int_attr(r, "process.pid") == Some(i64::from(second)));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    assert!(records_for_pid(&records, first).is_empty(), "not watched before the reload");
    let r = records_for_pid(&records, second);
    assert_eq!(r.len(), 1, "{records:#?}");
    assert_eq!(str_attr(r[0], "nhi.rule"), Some("deploy-key"));
    assert_eq!(str_attr(r[0], "nhi.kind"), Some("app.deploy_key"));
}

/// Directory rules (everything below) and suffix rules (any file ending
/// so, anywhere), from the config file.
#[test]
fn directory_and_suffix_rules_match_in_the_kernel() {
    if !bpf_available("directory_and_suffix_rules_match_in_the_kernel") {
        return;
    }
    let _serial = serial();
    let pki = tempfile::tempdir().unwrap();
    fs::create_dir_all(pki.path().join("etcd")).unwrap();
    // Real (synthetic) keys: files without a credential are not records.
    fs::write(pki.path().join("etcd/ca.key"), SYNTHETIC_KEY).unwrap();
    let other = tempfile::tempdir().unwrap();
    let pem = other.path().join("server-chain.pem");
    fs::write(&pem, SYNTHETIC_KEY).unwrap();
    fs::write(other.path().join("server-chain.pem.txt"), "not it").unwrap();
    let state = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[[watch]]\nname = \"pki\"\nkind = \"tls.private_key\"\npath = \"{}/\"\n[[watch]]\nname = \"pem\"\nkind = \"tls.certificate\"\npath = \"*.pem\"\n",
        pki.path().display()
    );
    let args = config_args(state.path(), &cfg);
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let plan = format!(
        "openat-dirfd {} etcd/ca.key\nopenat-cwd {} server-chain.pem\nopenat {}/server-chain.pem.txt\n",
        pki.path().display(),
        other.path().display(),
        other.path().display()
    );
    let (pid, _) = python(OPENER, &[&plan]);
    agent.wait_for_record(Duration::from_secs(5), |r| str_attr(r, "nhi.rule") == Some("pem"));
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    // Python itself opens CA bundles (*.pem) as it starts: only our files.
    let ours = |r: &&Value| {
        str_attr(r, "file.path").is_some_and(|p| p.starts_with(pki.path().to_str().unwrap()) || p.starts_with(other.path().to_str().unwrap()))
    };
    let mine: Vec<_> = records_for_pid(&records, pid).into_iter().filter(ours).collect();
    let rules: BTreeSet<_> = mine.iter().filter_map(|r| str_attr(r, "nhi.rule")).collect();
    assert_eq!(rules, BTreeSet::from(["pem", "pki"]), "{mine:#?}");
    assert_eq!(mine.len(), 2, "the .pem.txt file is not a credential: {mine:#?}");
    let pki_rec = mine.iter().find(|r| str_attr(r, "nhi.rule") == Some("pki")).unwrap();
    assert_eq!(str_attr(pki_rec, "file.path").map(|p| p.ends_with("/etcd/ca.key")), Some(true));
}

fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok())))
        .collect();
    ids.sort_unstable();
    ids
}

/// The kernel's name gate at every name length it takes (1 to 64 bytes):
/// short names meet its pre-filter on their first and last two bytes
/// alone (kernel.rs `inline_name_ends`), wherever those bytes sit in the
/// name's words (the last two may straddle two words); longer ones are
/// read whole. The files are created (by this test) after the agent
/// starts, so that first open is matched by name: no scan has seen the
/// inode yet (the agent learns it from that record).
#[test]
fn name_rules_match_at_every_name_length() {
    if !bpf_available("name_rules_match_at_every_name_length") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = config_args(state.path(), &zq_rules(dir.path()));
    let agent = Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut expected: Vec<(String, &str)> = Vec::new();
    for len in 3..=64 {
        expected.push((format!("{}.zq", "a".repeat(len - 3)), "zq-suffix"));
    }
    for len in 4..=64 {
        expected.push((format!("zqp_{}", "b".repeat(len - 4)), "zq-prefix"));
    }
    expected.push(("q".into(), "zq-one"));
    expected.push(("qz".into(), "zq-two"));
    let mut plan = String::new();
    for (name, _) in &expected {
        let path = dir.path().join(name);
        fs::write(&path, SYNTHETIC_KEY).unwrap();
        plan.push_str(&format!("openat {}\n", path.display()));
    }
    let (pid, _) = python(OPENER, &[&plan]);
    let last = dir.path().join(&expected.last().unwrap().0);
    agent.wait_for_record(Duration::from_secs(5), |r| {
        str_attr(r, "file.path") == last.to_str() && int_attr(r, "process.pid") == Some(i64::from(pid))
    });
    let (status, records, _) = agent.stop(Signal::SIGTERM);
    assert!(status.success());
    let accesses = named(&records, ACCESS);
    for (name, rule) in &expected {
        let path = dir.path().join(name);
        let hits: Vec<_> = accesses.iter().filter(|r| str_attr(r, "file.path") == path.to_str()).collect();
        assert!(hits.iter().all(|r| str_attr(r, "nhi.rule") == Some(*rule)), "{name}: {hits:#?}");
        assert!(
            hits.iter().any(|r| int_attr(r, "process.pid") == Some(i64::from(pid))),
            "{name} ({} bytes) opened by the reader: {hits:#?}",
            name.len()
        );
        if *rule != "zq-prefix" {
            // Prefix rules may also watch their directory; for the others,
            // the creating open can only have come through the name gate.
            assert!(
                hits.iter().any(|r| str_attr(r, "nhi.match") == Some("name")),
                "{name} ({} bytes) matched by name: {hits:#?}",
                name.len()
            );
        }
    }
}
