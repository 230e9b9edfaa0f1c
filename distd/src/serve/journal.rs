//! The job journal: one JSON file per job under `<state_dir>/jobs/`, replaced atomically
//! (written aside, synced, renamed) at every change, beside the job's log. It is all the state
//! the daemon has besides the registry, and what lets a restarted daemon resume or close the
//! jobs a crash left running.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use distd_api::wire::Job;
use serde::{Deserialize, Serialize};

/// A job as recorded, with the process running it (to stop it after a daemon crash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub job: Job,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRecord>,
}

/// The job's process group: its leader's pid and start time (clock ticks after boot, from
/// `/proc/PID/stat`), so a reused pid is never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    pub started: u64,
}

pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("jobs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Journal { dir })
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// Where the job's process writes its result (the release digest, last line).
    pub fn output_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.out"))
    }

    pub fn events_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.events"))
    }

    pub fn write(&self, record: &Record) -> Result<()> {
        let path = self.dir.join(format!("{}.json", record.job.id));
        let temp = self.dir.join(format!(".{}.json.tmp", record.job.id));
        let bytes = serde_json::to_vec_pretty(record)?;
        let mut file =
            std::fs::File::create(&temp).with_context(|| format!("writing {}", temp.display()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Every recorded job, by id. A record that does not parse is named and skipped: one
    /// damaged file must not keep the daemon from starting.
    pub fn read_all(&self) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice::<Record>(&bytes)?))
            {
                Ok(record) => records.push(record),
                Err(e) => eprintln!("distd: skipping the job record {}: {e:#}", path.display()),
            }
        }
        records.sort_by_key(|r| r.job.id);
        Ok(records)
    }
}

impl ProcessRecord {
    /// The record of a running process `pid`, when `/proc` shows it.
    pub fn of(pid: i32) -> Option<Self> {
        start_time(pid).map(|started| ProcessRecord { pid, started })
    }

    /// Whether the process group the recorded process led is still the job's, so signalling
    /// it reaches only the job's processes. Linux never hands out a pid that is still some
    /// group's id, so with the leader gone, any member left is the job's (make.bash after the
    /// leader died with the daemon); a leader with another start time means the group ended
    /// and its id was reused.
    pub fn group_is_ours(&self) -> bool {
        start_time(self.pid).is_none_or(|started| started == self.started)
    }

    /// Sends `signal` to the job's process group, if it is still the job's.
    pub fn signal_group(&self, signal: libc::c_int) {
        if self.group_is_ours() {
            // SAFETY: kill(2) on a process group this daemon started (checked just above).
            unsafe { libc::kill(-self.pid, signal) };
        }
    }
}

/// Field 22 of `/proc/PID/stat`, the process's start time; the command name before it may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use distd_api::wire::JobState;

    #[test]
    fn records_survive_a_round_trip_and_a_damaged_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let record = Record {
            job: Job {
                id: 7,
                line: "go1.26".into(),
                requested_by: "spiffe://td/release/manager".into(),
                state: JobState::Running,
                attempts: 1,
                release: None,
                error: None,
                history: Vec::new(),
            },
            process: ProcessRecord::of(std::process::id() as i32),
        };
        journal.write(&record).unwrap();
        std::fs::write(dir.path().join("jobs/8.json"), b"{\"job\":").unwrap();
        let read = journal.read_all().unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].job, record.job);
        assert!(read[0].process.unwrap().group_is_ours());
    }

    #[test]
    fn a_group_whose_leader_id_was_reused_is_not_the_jobs() {
        let me = ProcessRecord::of(std::process::id() as i32).unwrap();
        let reused = ProcessRecord {
            started: me.started + 1,
            ..me
        };
        assert!(!reused.group_is_ours());
        assert!(me.group_is_ours());
        assert!(ProcessRecord::of(i32::MAX).is_none());
    }
}
