//! The container image and the DaemonSet's security context, for real:
//! deploy/Dockerfile is built with `buildah bud --isolation chroot` on a
//! local Debian base (`debootstrap --variant=minbase bookworm`, cached
//! under [`cache_dir`]: registries cannot be pulled on the test machines),
//! then the agent is started from the image's file system the way a
//! container runtime would start the rendered DaemonSet: the image's root
//! read-only, a /proc of the host PID namespace, a read-only /sys, the
//! manifest's hostPath mounts, and exactly its capabilities with
//! no-new-privileges (setpriv from the image). It must report a host
//! process's credential read with that process's workload identity, an
//! exec credential variable and a TLS server name, and answer the
//! manifest's health probes.
mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{
    deploy::{cache_dir, exercise, run_ok, tools_available},
    *,
};
use serde::Deserialize as _;
use serde_json::Value;

/// The local base image (never pushed anywhere).
const BASE_IMAGE: &str = "localhost/nhi-observer-test-base:bookworm-minbase";
const TEST_IMAGE: &str = "localhost/nhi-observer:e2e";
/// The agent's state directory in the manifests.
const STATE: &str = "/var/lib/nhi-observer";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Debian mirror apt is configured with (deb822 `.sources` or one-line
/// `.list` entries for bookworm), for debootstrap.
fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for block in text.split("\n\n") {
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.iter().any(|s| s == "bookworm")
                && let Some(u) = uris.first()
            {
                return u.clone();
            }
        }
        for line in text.lines().map(str::trim).filter(|l| l.starts_with("deb ")) {
            let words: Vec<&str> = line.split_whitespace().filter(|w| !w.starts_with('[') && !w.ends_with(']')).collect();
            if words.len() >= 3 && words[2] == "bookworm" {
                return words[1].to_owned();
            }
        }
    }
    panic!("no bookworm source in /etc/apt/sources.list*: cannot debootstrap the base image");
}

fn buildah(args: &[&str]) -> String {
    run_ok(Command::new("buildah").args(args)).trim().to_owned()
}

/// The local base image: a debootstrap minbase root file system cached
/// under [`cache_dir`] (about a minute to make, once), imported into
/// buildah's storage (kept there too).
fn base_image() {
    if Command::new("buildah").args(["inspect", "--type", "image", BASE_IMAGE]).output().is_ok_and(|o| o.status.success()) {
        return;
    }
    let rootfs = cache_dir().join("bookworm-minbase");
    let done = rootfs.join(".nhi-observer-complete");
    if !done.exists() {
        let tmp = cache_dir().join("bookworm-minbase.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::create_dir_all(cache_dir()).expect("cache dir");
        let mirror = debian_mirror();
        eprintln!("building the base image with debootstrap from {mirror} (once; cached in {})", rootfs.display());
        run_ok(Command::new("debootstrap").args(["--variant=minbase", "bookworm"]).arg(&tmp).arg(&mirror));
        for deb in std::fs::read_dir(tmp.join("var/cache/apt/archives")).into_iter().flatten().flatten() {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                let _ = std::fs::remove_file(deb.path());
            }
        }
        std::fs::rename(&tmp, &rootfs).expect("move the base root file system in place");
        std::fs::write(&done, b"").expect("marker");
    }
    let ctr = buildah(&["from", "scratch"]);
    let mnt = buildah(&["mount", &ctr]);
    run_ok(Command::new("cp").arg("-a").arg(format!("{}/.", rootfs.display())).arg(&mnt));
    let _ = std::fs::remove_file(Path::new(&mnt).join(".nhi-observer-complete"));
    buildah(&["umount", &ctr]);
    buildah(&["commit", "--rm", &ctr, BASE_IMAGE]);
}

/// Builds deploy/Dockerfile with the test's agent binary (stripped of
/// debug info) in a context laid out as the repository's.
fn build_image() {
    base_image();
    // A test image left by an interrupted run would stay behind untagged.
    let _ = Command::new("buildah").args(["rmi", TEST_IMAGE]).output();
    let ctx = tempfile::tempdir().expect("context");
    // Where `cargo build --release` puts it: the Dockerfile's default
    // AGENT_BINARY, and the one path its .dockerignore lets through.
    let bin = ctx.path().join("target/release/nhi-observer");
    std::fs::create_dir_all(bin.parent().expect("dir")).expect("context dirs");
    std::fs::copy(agent_binary(), &bin).expect("copy the agent");
    if which_opt("strip").is_some() {
        run_ok(Command::new("strip").arg("--strip-debug").arg(&bin));
    }
    run_ok(
        Command::new("buildah")
            .args(["bud", "--isolation", "chroot", "--pull=never", "--layers=false"])
            .arg("-f")
            .arg(repo().join("deploy/Dockerfile"))
            .args(["--build-arg", &format!("BASE_IMAGE={BASE_IMAGE}")])
            .args(["-t", TEST_IMAGE])
            .arg(ctx.path()),
    );
}

fn which_opt(p: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths).map(|d| d.join(p)).find(|p| p.is_file())
}

/// The rendered DaemonSet (jsonl-only overlay).
fn daemonset() -> Value {
    let yaml = run_ok(Command::new("kubectl").arg("kustomize").arg(repo().join("deploy/kubernetes/overlays/jsonl-only")));
    serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML"))
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet in the rendered manifests")
}

/// A buildah working container of the test image, and the image itself:
/// removed on drop, also when an assertion fails (nothing piles up in the
/// machine's image storage; the base image stays cached).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        for args in [vec!["umount", &self.0], vec!["rm", &self.0], vec!["rmi", TEST_IMAGE]] {
            let _ = Command::new("buildah").args(&args).output();
        }
    }
}

/// A container from the image the way a runtime would start the
/// DaemonSet's: returns the launcher for [`Agent::start_launch`] and the
/// buildah container.
fn container_launch(ds: &Value, state_host: &Path) -> (Launch, Container) {
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true, "host PID namespace");
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    let caps: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|v| format!("+{}", v.as_str().expect("capability").to_lowercase()))
        .collect();
    assert!(!caps.iter().any(|c| c == "+sys_admin"), "no CAP_SYS_ADMIN: {caps:?}");

    let ctr = Container(buildah(&["from", "--pull=never", TEST_IMAGE]));
    let root = buildah(&["mount", &ctr.0]);
    // The manifest's mounts: hostPath volumes at their mountPaths (the
    // state directory is the test's own), read-only where it says so.
    let mut mounts = String::new();
    for m in c["volumeMounts"].as_array().expect("volumeMounts") {
        let name = m["name"].as_str().expect("name");
        let target = m["mountPath"].as_str().expect("mountPath");
        let vol = spec["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == name).expect("volume");
        let host = vol["hostPath"]["path"].as_str().expect("hostPath volumes only");
        let source = if host == STATE { state_host.to_str().expect("state path").to_owned() } else { host.to_owned() };
        // Mount points, as a runtime makes them in the container's layer.
        std::fs::create_dir_all(Path::new(&root).join(target.trim_start_matches('/'))).expect("mount point");
        mounts.push_str(&format!("mount --rbind '{source}' \"$R{target}\"\n"));
        if m["readOnly"] == true {
            mounts.push_str(&format!("mount -o remount,bind,ro \"$R{target}\"\n"));
        }
    }
    let setpriv_args = format!("--bounding-set=-all,{} --inh-caps=-all --ambient-caps=-all --no-new-privs", caps.join(","));
    // /proc of the host PID namespace (hostPID), /sys read-only as runtimes
    // mount it for unprivileged containers, a minimal /dev, the volumes;
    // then the root itself read-only, and the image's own setpriv and agent.
    let script = format!(
        r#"set -e
R='{root}'
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=755,size=64k tmpfs "$R/dev"
for d in null zero random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
{mounts}mount -o remount,bind,ro "$R"
exec chroot "$R" /usr/bin/setpriv {setpriv_args} /usr/local/bin/nhi-observer "$@"
"#
    );
    let launch = Launch {
        program: which("unshare"),
        pre_args: ["--mount", "--propagation", "private", "sh", "-c", &script, "sh"].iter().map(Into::into).collect(),
        state_dir_arg: Some(PathBuf::from(STATE)),
        pre_exec: None,
    };
    (launch, ctr)
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the health endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn image_builds_and_runs_with_the_daemonsets_security_context() {
    let test = "image_builds_and_runs_with_the_daemonsets_security_context";
    if !bpf_available(test) || !tools_available(test, &["buildah", "debootstrap", "kubectl", "unshare", "chroot", "setpriv"]) {
        return;
    }
    let _serial = serial();
    build_image();

    // The image: entrypoint and OCI labels.
    let info: Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", TEST_IMAGE])).expect("inspect JSON");
    let cfg = &info["OCIv1"]["config"];
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/usr/local/bin/nhi-observer"]));
    for label in ["org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.licenses"] {
        assert!(cfg["Labels"][label].as_str().is_some_and(|v| !v.is_empty()), "label {label}: {cfg:#}");
    }

    let ds = daemonset();
    let state = tempfile::tempdir().expect("state dir");
    let (launch, ctr) = container_launch(&ds, state.path());
    // The manifest's health endpoint port, on loopback here (the pod's own
    // address in a cluster).
    let port = ds["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "health"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("a health port");
    let port = u16::try_from(port).expect("port") + 1000; // not the real agent's, if one runs here
    let listen = format!("--health-listen=127.0.0.1:{port}");
    let agent = Agent::start_launch(&launch, &[&listen], "info", &[], Some(state));
    // In the container: read-only root, only the manifest's capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).expect("agent status");
    assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')), "{status}");
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff").trim();
    assert_eq!(u64::from_str_radix(eff, 16).expect("hex"), caps_mask(&ds), "effective capabilities");
    let root = std::fs::read_link(format!("/proc/{}/root", agent.pid())).expect("agent root");
    assert_ne!(root, Path::new("/"), "the agent runs in the image's root");
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", agent.pid())).expect("mountinfo");
    let root_mount = mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).expect("root mount");
    assert!(root_mount.split_whitespace().nth(5).is_some_and(|o| o.split(',').any(|o| o == "ro")), "read-only root: {root_mount}");

    let ready = http_get(port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    let seen = exercise(agent, "image");
    assert!(!seen.records.is_empty());
    drop(ctr);
}

fn caps_mask(ds: &Value) -> u64 {
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("capabilities")
        .iter()
        .map(|c| match c.as_str().expect("capability") {
            "DAC_READ_SEARCH" => 2,
            "NET_ADMIN" => 12,
            "SYS_PTRACE" => 19,
            "SYS_ADMIN" => 21,
            "SYS_RESOURCE" => 24,
            "PERFMON" => 38,
            "BPF" => 39,
            other => panic!("capability {other}: teach the test its number"),
        })
        .fold(0u64, |m, bit| m | (1 << bit))
}
