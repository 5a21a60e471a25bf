//! JSON-lines sink: one record per line to stdout or a file.
//!
//! Written from the sink thread (`app`, `nhi-sink`: blocking writes must
//! not stall a tokio worker). Lines are buffered and flushed after each
//! store commit (or when no transaction is open), so output is prompt when
//! idle and batched under load.
use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
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

pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonLines {
    pub fn open(target: &Target) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(io::stdout()),
            Target::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        };
        Ok(Self { out: BufWriter::with_capacity(64 * 1024, out) })
    }

    pub fn write<T: serde::Serialize>(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")
    }

    /// Writes an already serialized record (the store's copy of it).
    pub fn write_raw(&mut self, line: &str) -> io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
