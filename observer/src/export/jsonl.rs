//! JSON-lines sink: one record per line to stdout or a file.
//!
//! Input: lines of committed records (and the agent's stats lines), from
//! the sink thread. Output: the file or stdout, written at each
//! [`JsonLines::flush`] (after each store commit), never in between.
//!
//! Invariants:
//! - a line is in the output whole or not at all: a write that fails
//!   (disk full) is cut back to the last whole line (files), and its
//!   lines are counted as not written (`lines_lost`), never retried (they
//!   are in the store, which is the record of truth);
//! - a failing output does not stop the agent: the outage is logged once
//!   at ERROR when it starts and once when writing works again; only a
//!   closed stdout (`BrokenPipe`, the reader left) ends it.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::PathBuf,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "-" { Self::Stdout } else { Self::File(PathBuf::from(s)) })
    }
}

enum Out {
    Stdout(io::Stdout),
    File(File),
}

pub struct JsonLines {
    out: Out,
    /// Lines since the last flush.
    buf: Vec<u8>,
    lines: u64,
    /// Lines that could not be written, since start.
    pub lines_lost: u64,
    /// Set while writes fail: since when, and what was lost since.
    failing: Option<(std::time::Instant, u64)>,
}

impl JsonLines {
    /// Opens the output; a file is created 0640 (it names credentials and
    /// their users: not for every user to read), and a regular file that
    /// exists with wider permissions (an older agent's, a shell's umask) is
    /// narrowed to them.
    pub fn open(target: &Target) -> io::Result<Self> {
        let out = match target {
            Target::Stdout => Out::Stdout(io::stdout()),
            Target::File(path) => {
                use std::os::unix::fs::PermissionsExt as _;
                let f = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
                let meta = f.metadata()?;
                let mode = meta.permissions().mode();
                if meta.is_file() && mode & 0o027 != 0 {
                    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o640))?;
                }
                Out::File(f)
            }
        };
        Ok(Self { out, buf: Vec::with_capacity(64 * 1024), lines: 0, lines_lost: 0, failing: None })
    }

    pub fn write<T: serde::Serialize>(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, record)?;
        self.buf.push(b'\n');
        self.lines += 1;
        Ok(())
    }

    /// Writes an already serialized record (the store's copy of it).
    pub fn write_raw(&mut self, line: &str) -> io::Result<()> {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.lines += 1;
        Ok(())
    }

    /// Writes the lines since the last flush. Fails only when stdout's
    /// reader is gone (`BrokenPipe`); other failures are counted.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match &mut self.out {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(&self.buf).and_then(|()| s.flush())
            }
            Out::File(f) => {
                let before = f.metadata().map(|m| m.len());
                let r = f.write_all(&self.buf);
                if r.is_err()
                    && let Ok(len) = before
                {
                    // No half line: cut back to the last whole one.
                    let _ = f.set_len(len);
                }
                r
            }
        };
        let lines = std::mem::take(&mut self.lines);
        self.buf.clear();
        match result {
            Ok(()) => {
                if let Some((since, lost)) = self.failing.take() {
                    tracing::warn!(
                        lines_lost = lost,
                        unwritable_for_s = since.elapsed().as_secs(),
                        "JSON lines output writable again (the lost lines' records are in the store)"
                    );
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(e),
            Err(e) => {
                self.lines_lost += lines;
                match &mut self.failing {
                    Some((_, lost)) => *lost += lines,
                    None => {
                        tracing::error!(
                            error = %e,
                            "JSON lines output cannot be written: lines are counted as lost (nhi.agent.drops{{reason=jsonl_unwritable}}) until it can; the records are in the store and OTLP. Free space where the output is"
                        );
                        self.failing = Some((std::time::Instant::now(), lines));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the JSON-lines outage: a full disk made the agent exit 1,
    /// which is a restart loop under systemd's Restart=on-failure.
    #[test]
    fn a_failing_output_counts_its_lines_and_recovers() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let mut j = JsonLines::open(&Target::File("/dev/full".into())).unwrap();
        j.write_raw("{\"a\":1}").unwrap();
        j.write_raw("{\"a\":2}").unwrap();
        j.flush().expect("a full disk does not stop the agent");
        assert_eq!(j.lines_lost, 2);
        assert!(j.failing.is_some());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        j.out = Out::File(OpenOptions::new().create(true).append(true).open(&path).unwrap());
        j.write_raw("{\"a\":3}").unwrap();
        j.flush().unwrap();
        assert!(j.failing.is_none(), "recovered");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":3}\n");
        assert_eq!(j.lines_lost, 2);
        use std::os::unix::fs::PermissionsExt as _;
        let j = JsonLines::open(&Target::File(dir.path().join("new.jsonl"))).unwrap();
        drop(j);
        let mode = std::fs::metadata(dir.path().join("new.jsonl")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "not readable by every user: {mode:o}");
        // An existing file readable by every user is narrowed.
        let old = dir.path().join("old.jsonl");
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(JsonLines::open(&Target::File(old.clone())).unwrap());
        assert_eq!(std::fs::metadata(&old).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
