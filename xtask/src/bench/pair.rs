//! `bench pipeline --base REV`: this tree's pipeline benchmark against the
//! same benchmark built from another revision, both running *at the same
//! time*, each pinned to its own core, the cores swapped every round.
//!
//! Why: on this project's VMs the wall-clock rate of one binary moves by
//! +-25% within minutes (docs/design.md, "Fewer instructions, not fewer
//! cycles"), so two builds measured one after the other are ranked by the
//! host as much as by the code. Run side by side, whatever the host does
//! it does to both; the ratio of the pair is the figure, and the median of
//! the rounds' ratios is printed. (Checked on the ninth session's change:
//! six pinned rounds gave 1.23, as eight alternating rounds had.)
//!
//! The base is built in a temporary git worktree with its own target
//! directory (`target/pipeline-base`, kept between runs, so only what
//! changed is rebuilt); the worktree is removed afterwards.
use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The benchmark compared: the whole chain with the store's serialisation
/// (the issue-12 target's figure).
const FILTER: &str = "decode\\+classify\\+correlate\\+serialise$";

/// Builds the pipeline benchmark in `dir` (a workspace) into
/// `target_dir` (None: the workspace's own); the benchmark executable.
fn build(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir).args(["bench", "-p", "nhi-observer", "--bench", "pipeline", "--no-run", "--message-format=json"]);
    if let Some(t) = target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("running cargo bench --no-run")?;
    if !out.status.success() {
        bail!("building the pipeline benchmark in {} failed: {}", dir.display(), out.status);
    }
    executable(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("cargo named no pipeline benchmark executable in {}", dir.display()))
}

/// The `executable` of the `pipeline` bench target in cargo's JSON
/// messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|m| {
        let is_pipeline = m["target"]["name"] == "pipeline" && m["target"]["kind"][0] == "bench";
        m["executable"].as_str().filter(|_| is_pipeline).map(PathBuf::from)
    })
}

/// Criterion's throughput estimate (the middle of `thrpt: [lo mid hi]`),
/// in elements per second.
fn throughput(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.trim_start().starts_with("thrpt:"))?;
    let inside = line.split_once('[')?.1.split_once(']')?.0;
    let parts: Vec<&str> = inside.split_whitespace().collect();
    let (value, unit) = (parts.get(2)?.parse::<f64>().ok()?, *parts.get(3)?);
    let scale = match unit {
        "elem/s" => 1.0,
        "Kelem/s" => 1e3,
        "Melem/s" => 1e6,
        "Gelem/s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

/// Starts `bin`'s compared benchmark pinned to `cpu`.
fn start(bin: &Path, cpu: usize) -> anyhow::Result<std::process::Child> {
    let mut cmd = Command::new(bin);
    cmd.args(["--bench", FILTER, "--measurement-time", "4", "--warm-up-time", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only `sched_setaffinity` (a system
    // call, async-signal-safe) on a set built on the stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {} on cpu {cpu}", bin.display()))
}

fn finish(child: std::process::Child, what: &str) -> anyhow::Result<f64> {
    let out = child.wait_with_output().with_context(|| format!("waiting for the {what} benchmark"))?;
    if !out.status.success() {
        bail!("the {what} benchmark failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    throughput(&text).with_context(|| format!("no throughput in the {what} benchmark's output:\n{text}"))
}

/// A temporary worktree at `rev`, removed on drop.
struct Worktree {
    root: PathBuf,
    dir: PathBuf,
}

impl Worktree {
    fn add(root: &Path, rev: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("nhi-pipeline-base-{}", std::process::id()));
        let st = Command::new("git")
            .current_dir(root)
            .args(["worktree", "add", "--detach", "--force"])
            .arg(&dir)
            .arg(rev)
            .status()
            .context("running git worktree add")?;
        if !st.success() {
            bail!("git worktree add {} {rev} failed: {st} (is `{rev}` a revision of this repository?)", dir.display());
        }
        Ok(Self { root: root.to_owned(), dir })
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = Command::new("git")
            .current_dir(&self.root)
            .args(["worktree", "remove", "--force"])
            .arg(&self.dir)
            .status();
    }
}

pub fn run(base: &str, rounds: usize) -> anyhow::Result<()> {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if cpus < 2 {
        bail!("bench pipeline --base runs the two builds at once, one per core: this machine has {cpus} online");
    }
    let rounds = rounds.max(1);
    let root = crate::tasks::workspace_root();
    let this = build(&root, None)?;
    let base_bin = {
        let tree = Worktree::add(&root, base)?;
        let bin = build(&tree.dir, Some(&root.join("target/pipeline-base")))?;
        // Outside the worktree (removed next) and the target directory
        // (rebuilt by the next comparison).
        let copy = std::env::temp_dir().join(format!("nhi-pipeline-base-bench-{}", std::process::id()));
        std::fs::copy(&bin, &copy).with_context(|| format!("copying {}", bin.display()))?;
        copy
    };
    println!("bench pipeline: this tree against {base}, {rounds} round(s), both at once, one core each (cores swapped each round)");
    println!("{:<7}{:>14}{:>14}{:>9}", "round", "base /s", "this /s", "ratio");
    let mut ratios = Vec::with_capacity(rounds);
    let result = (|| -> anyhow::Result<()> {
        for r in 0..rounds {
            let (base_cpu, this_cpu) = if r % 2 == 0 { (0, 1) } else { (1, 0) };
            let b = start(&base_bin, base_cpu)?;
            let t = start(&this, this_cpu)?;
            let (b, t) = (finish(b, "base")?, finish(t, "this tree's")?);
            ratios.push(t / b);
            println!("{:<7}{:>14.0}{:>14.0}{:>9.3}", r + 1, b, t, t / b);
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&base_bin);
    result?;
    println!("median ratio this / base: {:.3} ({} rounds)", super::median(&mut ratios), rounds);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_reads_the_middle_estimate_in_every_unit() {
        let out = "pipeline/decode+classify+correlate+serialise\n                        time:   [5.8136 ms 6.3749 ms 7.0592 ms]\n                        thrpt:  [725.29 Kelem/s 803.15 Kelem/s 880.70 Kelem/s]\n";
        assert_eq!(throughput(out).map(f64::round), Some(803_150.0));
        let out = "thrpt:  [992.1 Kelem/s 1.0230 Melem/s 1.0700 Melem/s]";
        assert_eq!(throughput(out).map(f64::round), Some(1_023_000.0));
        assert_eq!(throughput("thrpt:  [1 elem/s 2 elem/s 3 elem/s]"), Some(2.0));
        assert_eq!(throughput("thrpt:  [1 B/s 2 B/s 3 B/s]"), None);
        assert_eq!(throughput("time: [1 ms 2 ms 3 ms]"), None);
    }

    #[test]
    fn executable_is_the_pipeline_bench_target() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"nhi_observer","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"net","kind":["bench"]},"executable":"/t/net-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"pipeline","kind":["bench"]},"executable":"/t/pipeline-2"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(executable(messages), Some(PathBuf::from("/t/pipeline-2")));
        assert_eq!(executable("not json\n"), None);
    }
}
