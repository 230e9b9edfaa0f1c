//! What of the outcome spool the daemon has answered for: a cursor, the byte offset of the
//! first line not answered for, kept next to the spool (`<spool>.sent`) and replaced
//! atomically after each answer, so a restarted agent neither loses nor resends records.
//!
//! Batches are read from the cursor, whole lines only: a line still being written is left for
//! the next round, and a line that does not parse (cut short by a crash, then ended when the
//! spool was reopened) is passed over. Once the cursor reaches the end of the spool, the spool
//! is emptied and the cursor reset, both under the spool's lock, so no record appended
//! meanwhile is lost and the spool stays small while the daemon answers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use distd_api::outcome::OutcomeRecord;
use tcdist_core::error::{Error, Result};

use super::spool::Spool;

pub struct Outbox {
    spool: Arc<Mutex<Spool>>,
    spool_path: PathBuf,
    cursor_path: PathBuf,
    /// Bytes of the spool the daemon has answered for.
    sent: u64,
}

/// Records read from the spool, and the offset just past the last line read.
pub struct Batch {
    pub records: Vec<OutcomeRecord>,
    pub end: u64,
}

impl Outbox {
    /// The outbox of `spool`, with the cursor where the last agent left it. A cursor that is not
    /// a byte offset is a store error (exit 4): guessing would lose records or send them twice.
    pub fn open(spool: Arc<Mutex<Spool>>) -> Result<Self> {
        let spool_path = spool.lock().expect("spool lock").path().to_owned();
        let mut name = spool_path.clone().into_os_string();
        name.push(".sent");
        let cursor_path = PathBuf::from(name);
        let sent = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                Error::store(
                    "reading the outcome cursor",
                    &cursor_path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{text:?} is not a byte offset; remove the file to send the whole \
                             spool again"
                        ),
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::store("reading the outcome cursor", &cursor_path, e)),
        };
        let len = std::fs::metadata(&spool_path)
            .map_err(|e| Error::store("reading the outcome spool", &spool_path, e))?
            .len();
        let mut outbox = Self {
            spool,
            spool_path,
            cursor_path,
            sent,
        };
        // The agent stopped after emptying the spool and before resetting the cursor.
        if sent > len {
            outbox.sent = 0;
            outbox.store()?;
        }
        Ok(outbox)
    }

    /// Up to `max` records after the cursor; none when no whole line follows it.
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        let read = |e| Error::store("reading the outcome spool", &self.spool_path, e);
        let mut file = File::open(&self.spool_path).map_err(read)?;
        file.seek(SeekFrom::Start(self.sent)).map_err(read)?;
        let mut reader = BufReader::new(file);
        let mut batch = Batch {
            records: Vec::new(),
            end: self.sent,
        };
        let mut line = Vec::new();
        while batch.records.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(read)?;
            if line.last() != Some(&b'\n') {
                break;
            }
            batch.end += n as u64;
            if let Ok(record) = serde_json::from_slice(&line) {
                batch.records.push(record);
            }
        }
        Ok((batch.end > self.sent).then_some(batch))
    }

    /// Moves the cursor past a batch the daemon answered for. If the cursor cannot be written
    /// the one in memory still moves: the batch is sent again only if the agent restarts.
    pub fn mark_sent(&mut self, end: u64) -> Result<()> {
        self.sent = end;
        self.store()
    }

    /// Empties the spool if the daemon has answered for all of it, and resets the cursor,
    /// holding the lock appends take; says whether it did.
    pub fn compact(&mut self) -> Result<bool> {
        if self.sent == 0 {
            return Ok(false);
        }
        let spool = Arc::clone(&self.spool);
        let mut spool = spool.lock().expect("spool lock");
        let emptied = spool
            .empty_if_all_sent(self.sent)
            .map_err(|e| Error::store("emptying the outcome spool", &self.spool_path, e))?;
        if emptied {
            self.sent = 0;
            self.store()?;
        }
        Ok(emptied)
    }

    /// Whole lines after the cursor: the records the daemon has not answered for yet.
    pub fn waiting(&self) -> Result<u64> {
        let read = |e| Error::store("reading the outcome spool", &self.spool_path, e);
        let mut file = File::open(&self.spool_path).map_err(read)?;
        file.seek(SeekFrom::Start(self.sent)).map_err(read)?;
        let mut lines = 0;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buffer).map_err(read)?;
            if n == 0 {
                return Ok(lines);
            }
            lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }

    /// Writes the cursor: a new file renamed over the old one, so it is never half written.
    fn store(&self) -> Result<()> {
        let dir = self.cursor_path.parent().unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            writeln!(file, "{}", self.sent)?;
            file.as_file().sync_all()?;
            file.persist(&self.cursor_path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| Error::store("writing the outcome cursor", &self.cursor_path, e))
    }
}

/// A spool in a temporary directory, for this module's tests and the sender's.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use distd_api::outcome::{Arm, JobId, JobResult, OutcomeRecord};
    use jiff::Timestamp;
    use tcdist_core::digest::Digest;

    use super::Outbox;
    use crate::agent::spool::Spool;

    pub fn record(job: &str) -> OutcomeRecord {
        let at = Timestamp::from_second(1_900_000_000).unwrap();
        OutcomeRecord {
            host_id: Some("spiffe://tcdist.test/buildkite/agent".into()),
            job_id: JobId::parse(job).unwrap(),
            pipeline: None,
            arm: Arm::Candidate,
            release: Digest::of(b"candidate"),
            channel: "stable".into(),
            sequence: 7,
            stage: 1,
            result: JobResult::Lost,
            retry: 0,
            exit_status: None,
            served_at: at,
            time: at,
        }
    }

    pub struct Fixture {
        _dir: tempfile::TempDir,
        pub path: PathBuf,
        pub spool: Arc<Mutex<Spool>>,
    }

    impl Fixture {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("outcomes/outcomes.jsonl");
            let spool = Arc::new(Mutex::new(Spool::open(&path, 1 << 30).unwrap()));
            Self {
                _dir: dir,
                path,
                spool,
            }
        }

        /// The spool opened again, as by a restarted agent.
        pub fn reopen(&mut self) {
            self.spool = Arc::new(Mutex::new(Spool::open(&self.path, 1 << 30).unwrap()));
        }

        pub fn append(&self, job: &str) {
            self.spool.lock().unwrap().append(&record(job)).unwrap();
        }

        pub fn outbox(&self) -> Outbox {
            Outbox::open(Arc::clone(&self.spool)).unwrap()
        }

        pub fn spool_len(&self) -> u64 {
            std::fs::metadata(&self.path).unwrap().len()
        }

        pub fn cursor(&self) -> String {
            std::fs::read_to_string(self.path.with_extension("jsonl.sent")).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::testing::Fixture;
    use super::*;

    fn jobs(batch: &Batch) -> Vec<&str> {
        batch.records.iter().map(|r| r.job_id.as_str()).collect()
    }

    fn send_all(outbox: &mut Outbox) -> Vec<String> {
        let mut sent = Vec::new();
        while let Some(batch) = outbox.next_batch(10).unwrap() {
            sent.extend(batch.records.iter().map(|r| r.job_id.to_string()));
            outbox.mark_sent(batch.end).unwrap();
        }
        sent
    }

    #[test]
    fn cursor_persists_across_a_restart_so_nothing_is_lost_or_sent_twice() {
        let mut f = Fixture::new();
        for job in ["a", "b", "c"] {
            f.append(job);
        }
        let mut outbox = f.outbox();
        let batch = outbox.next_batch(2).unwrap().unwrap();
        assert_eq!(jobs(&batch), ["a", "b"]);
        outbox.mark_sent(batch.end).unwrap();
        assert_eq!(f.cursor(), format!("{}\n", batch.end));
        assert_eq!(outbox.waiting().unwrap(), 1);
        drop(outbox);
        f.reopen();
        f.append("d");
        let outbox = f.outbox();
        assert_eq!(jobs(&outbox.next_batch(10).unwrap().unwrap()), ["c", "d"]);
    }

    #[test]
    fn partial_last_line_is_left_for_the_next_round() {
        let f = Fixture::new();
        f.append("a");
        let line = serde_json::to_string(&testing::record("b")).unwrap();
        let (head, tail) = line.split_at(20);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&f.path)
            .unwrap();
        file.write_all(head.as_bytes()).unwrap();
        let mut outbox = f.outbox();
        let batch = outbox.next_batch(10).unwrap().unwrap();
        assert_eq!(jobs(&batch), ["a"]);
        assert_eq!(batch.end, f.spool_len() - head.len() as u64);
        outbox.mark_sent(batch.end).unwrap();
        assert!(outbox.next_batch(10).unwrap().is_none());
        assert_eq!(outbox.waiting().unwrap(), 0);
        // Nothing was answered for past the partial line: the spool stays.
        assert!(!outbox.compact().unwrap());
        writeln!(file, "{tail}").unwrap();
        assert_eq!(jobs(&outbox.next_batch(10).unwrap().unwrap()), ["b"]);
    }

    #[test]
    fn line_cut_short_by_a_crash_is_passed_over() {
        let mut f = Fixture::new();
        f.append("a");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f.path)
            .unwrap()
            .write_all(b"{\"host_id\":\"spiffe://tcd")
            .unwrap();
        // Reopening ends the cut line; the next record starts a line of its own.
        f.reopen();
        f.append("b");
        let mut outbox = f.outbox();
        assert_eq!(outbox.waiting().unwrap(), 3);
        assert_eq!(send_all(&mut outbox), ["a", "b"]);
        assert!(outbox.compact().unwrap());
    }

    #[test]
    fn spool_emptied_only_when_everything_was_sent() {
        let f = Fixture::new();
        f.append("a");
        f.append("b");
        let mut outbox = f.outbox();
        assert!(!outbox.compact().unwrap(), "nothing sent yet");
        let batch = outbox.next_batch(10).unwrap().unwrap();
        // Appended while the batch was on its way: not answered for, so it stays.
        f.append("c");
        outbox.mark_sent(batch.end).unwrap();
        assert!(!outbox.compact().unwrap());
        assert_eq!(outbox.waiting().unwrap(), 1);
        assert_eq!(send_all(&mut outbox), ["c"]);
        assert!(outbox.compact().unwrap());
        assert_eq!(f.spool_len(), 0);
        assert_eq!(f.cursor(), "0\n");
        // Appends go on from the start of the emptied spool.
        f.append("d");
        assert_eq!(send_all(&mut outbox), ["d"]);
    }

    #[test]
    fn appends_racing_compaction_are_each_sent_exactly_once() {
        let f = Fixture::new();
        let mut outbox = f.outbox();
        let appender = {
            let spool = Arc::clone(&f.spool);
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let record = testing::record(&format!("job-{i}"));
                    spool.lock().unwrap().append(&record).unwrap();
                }
            })
        };
        let mut sent = Vec::new();
        let mut emptied = 0;
        while !appender.is_finished() || outbox.waiting().unwrap() > 0 {
            sent.extend(send_all(&mut outbox));
            emptied += usize::from(outbox.compact().unwrap());
        }
        appender.join().unwrap();
        let want: Vec<String> = (0..2000).map(|i| format!("job-{i}")).collect();
        assert_eq!(sent, want);
        assert!(emptied > 0);
    }

    #[test]
    fn cursor_past_the_end_of_the_spool_starts_over() {
        let f = Fixture::new();
        std::fs::write(f.path.with_extension("jsonl.sent"), "4096\n").unwrap();
        f.append("a");
        let mut outbox = f.outbox();
        assert_eq!(f.cursor(), "0\n");
        assert_eq!(send_all(&mut outbox), ["a"]);
    }

    #[test]
    fn cursor_that_is_not_an_offset_is_a_store_error() {
        let f = Fixture::new();
        std::fs::write(f.path.with_extension("jsonl.sent"), "soon\n").unwrap();
        let err = Outbox::open(Arc::clone(&f.spool)).err().unwrap();
        assert_eq!(err.exit_code(), 4);
        let message = err.to_string();
        assert!(
            message.contains("outcomes.jsonl.sent") && message.contains("not a byte offset"),
            "{message}"
        );
    }
}
