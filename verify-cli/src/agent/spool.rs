//! The outcome spool: one [`OutcomeRecord`] JSON line per outcome, capped in size. The served-job
//! records (`served.rs`) append to it; with `report_to`, the sender (`outbox.rs`) reads it and
//! empties it once the daemon has answered for every line. Appends and emptying both hold the
//! spool's lock, so a record appended while a batch was on its way is never emptied unsent.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use distd_api::outcome::OutcomeRecord;
use tcdist_core::error::{Error, Result};

/// The spool, appended to one whole line at a time.
pub struct Spool {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    /// Whether a full spool was logged already (logged once until it has room again).
    full_logged: bool,
}

#[derive(Debug)]
pub enum SpoolError {
    Full,
    Io(std::io::Error),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Full => f.write_str(
                "it has reached outcome_spool_max_bytes; further outcomes are counted in \
                 tcdist_agent_outcomes_unspooled_total and not written",
            ),
            SpoolError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Spool {
    /// Opens `path` for appending, creating it (0640) and its directory (0750) if needed. A
    /// last line cut short (the agent died mid-write) is ended, so the next record starts a
    /// line of its own; readers skip the line that does not parse.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| Error::store("creating the outcome spool's directory", dir, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| Error::store("opening the outcome spool", path, e))?;
        let mut size = file
            .metadata()
            .map_err(|e| Error::store("reading the outcome spool", path, e))?
            .len();
        if size > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| Error::store("reading the outcome spool", path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(|e| Error::store("writing the outcome spool", path, e))?;
                size += 1;
            }
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            full_logged: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, record: &OutcomeRecord) -> std::result::Result<(), SpoolError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        if self.size + line.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full);
        }
        self.full_logged = false;
        // One write of the whole line: a reader never sees two records interleaved.
        self.file.write_all(&line).map_err(SpoolError::Io)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Every I/O error is logged; a full spool once until it has room again.
    pub fn should_log(&mut self, problem: &SpoolError) -> bool {
        match problem {
            SpoolError::Full => !std::mem::replace(&mut self.full_logged, true),
            SpoolError::Io(_) => true,
        }
    }

    /// Empties the spool if it holds exactly `sent` bytes (all of them answered for), and says
    /// whether it did. The file's length is what counts, not the bytes this spool wrote: a
    /// failed write may have left part of a line.
    pub fn empty_if_all_sent(&mut self, sent: u64) -> std::io::Result<bool> {
        if self.file.metadata()?.len() != sent {
            return Ok(false);
        }
        // Appends go to the end of the file (O_APPEND): the next one starts at byte 0.
        self.file.set_len(0)?;
        self.size = 0;
        Ok(true)
    }
}
