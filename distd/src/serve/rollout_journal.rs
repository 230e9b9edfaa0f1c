//! The judge's journal, in `<state_dir>/rollouts/`:
//!
//! - `<line>/<channel>/<plan>/stage-<n>.jsonl`: the outcome records a stage counts, as
//!   accepted (one JSON line each, the agent's record with its host's SPIFFE ID);
//! - `verdicts.jsonl`: every verdict with what it was made from and what the judge did.
//!
//! Both are appended with one write per batch or verdict, and are all the judge needs to go on:
//! a daemon killed mid-stage reads the stage's outcomes and counts its looks from them again.
//! `distd rollout verdict --reports stage-<n>.jsonl` or `--record` recomputes a verdict.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tcdist_core::Digest;

use super::live::StageKey;
use crate::judge::tally;
use crate::judge::verdict::VerdictRecord;
use distd_api::outcome::OutcomeRecord;

/// One line of `verdicts.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerdictEntry {
    pub time: Timestamp,
    pub line: String,
    pub channel: String,
    pub candidate: Digest,
    pub plan: Digest,
    /// 1-based.
    pub stage: usize,
    /// The statement judged.
    pub sequence: u64,
    pub dry_run: bool,
    /// What the judge did: `resign`, `halt`, `advance`, `none` (and in a dry run, what it
    /// would have done); `failed: …` when signing it failed.
    pub action: String,
    pub record: VerdictRecord,
}

impl VerdictEntry {
    fn key(&self) -> StageKey {
        StageKey {
            line: self.line.clone(),
            channel: self.channel.clone(),
            plan: self.plan.clone(),
            stage: self.stage,
        }
    }
}

pub struct RolloutJournal {
    dir: PathBuf,
    /// Looks recorded per stage, counted from `verdicts.jsonl` at start.
    looks: Mutex<HashMap<StageKey, u64>>,
    /// One append at a time per file is enough; one lock keeps it simple.
    writing: Mutex<()>,
}

impl RolloutJournal {
    /// Opens (or creates) the journal under `state_dir`, counting the looks recorded so far.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("rollouts");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut looks = HashMap::new();
        let verdicts = dir.join("verdicts.jsonl");
        match std::fs::read_to_string(&verdicts) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    // A torn last line (a crash mid-write) is not a look.
                    match serde_json::from_str::<VerdictEntry>(line) {
                        Ok(entry) => *looks.entry(entry.key()).or_insert(0) += 1,
                        Err(e) => eprintln!(
                            "distd: {} line {}: not a verdict, skipped: {e}",
                            verdicts.display(),
                            i + 1
                        ),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", verdicts.display())),
        }
        Ok(RolloutJournal {
            dir,
            looks: Mutex::new(looks),
            writing: Mutex::new(()),
        })
    }

    fn stage_file(&self, key: &StageKey) -> PathBuf {
        // Line names and channels are checked path segments (line.rs, valid_tag).
        self.dir
            .join(&key.line)
            .join(&key.channel)
            .join(key.plan.hex())
            .join(format!("stage-{}.jsonl", key.stage))
    }

    /// Appends `records` to the stage's outcomes.
    pub fn append_outcomes(&self, key: &StageKey, records: &[&OutcomeRecord]) -> Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            serde_json::to_writer(&mut bytes, record)?;
            bytes.push(b'\n');
        }
        let path = self.stage_file(key);
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        append(&path, &bytes)
    }

    /// The stage's outcome records, in the order they were accepted.
    pub fn outcomes(&self, key: &StageKey) -> Result<Vec<OutcomeRecord>> {
        let path = self.stage_file(key);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // A torn last line is left out; it is written again by nobody, so it is lost.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        tally::parse_records(complete)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Which look at the stage the next verdict is (1 for the first).
    pub fn next_look(&self, key: &StageKey) -> u64 {
        let looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
        looks.get(key).copied().unwrap_or(0) + 1
    }

    /// Appends a verdict and counts its look.
    pub fn record_verdict(&self, entry: &VerdictEntry) -> Result<()> {
        let mut bytes = serde_json::to_vec(entry)?;
        bytes.push(b'\n');
        {
            let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            append(&self.dir.join("verdicts.jsonl"), &bytes)?;
        }
        let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
        *looks.entry(entry.key()).or_insert(0) += 1;
        Ok(())
    }
}

fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .with_context(|| format!("appending to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::tally::ArmCounts;
    use crate::judge::verdict::{Inputs, JudgeConfig, judge};
    use distd_api::outcome::{Arm, JobId, JobResult};

    fn key(stage: usize) -> StageKey {
        StageKey {
            line: "go1.26".into(),
            channel: "stable".into(),
            plan: Digest::of(b"plan"),
            stage,
        }
    }

    fn record(job: &str) -> OutcomeRecord {
        let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        OutcomeRecord {
            host_id: Some("spiffe://tcdist.test/host/1".into()),
            job_id: JobId::parse(job).unwrap(),
            pipeline: None,
            arm: Arm::Control,
            release: Digest::of(b"current"),
            channel: "stable".into(),
            sequence: 3,
            stage: 1,
            result: JobResult::Failed,
            retry: 0,
            exit_status: Some(1),
            served_at: at,
            time: at,
        }
    }

    fn verdict(stage: usize) -> VerdictEntry {
        let record = judge(Inputs {
            candidate: ArmCounts::default(),
            control: ArmCounts::default(),
            min_jobs: 10,
            min_hosts: 1,
            soaked: false,
            look: 1,
            config: JudgeConfig::default(),
        })
        .unwrap();
        VerdictEntry {
            time: Timestamp::now(),
            line: "go1.26".into(),
            channel: "stable".into(),
            candidate: Digest::of(b"candidate"),
            plan: Digest::of(b"plan"),
            stage,
            sequence: 4,
            dry_run: false,
            action: "resign".into(),
            record,
        }
    }

    #[test]
    fn outcomes_and_looks_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = RolloutJournal::open(dir.path()).unwrap();
        assert!(journal.outcomes(&key(1)).unwrap().is_empty());
        let (a, b) = (record("a"), record("b"));
        journal.append_outcomes(&key(1), &[&a]).unwrap();
        journal.append_outcomes(&key(1), &[&b]).unwrap();
        assert_eq!(journal.next_look(&key(1)), 1);
        journal.record_verdict(&verdict(1)).unwrap();
        journal.record_verdict(&verdict(1)).unwrap();
        journal.record_verdict(&verdict(2)).unwrap();
        drop(journal);

        let again = RolloutJournal::open(dir.path()).unwrap();
        assert_eq!(again.outcomes(&key(1)).unwrap(), [a, b]);
        assert!(again.outcomes(&key(2)).unwrap().is_empty());
        assert_eq!((again.next_look(&key(1)), again.next_look(&key(2))), (3, 2));
    }

    #[test]
    fn a_torn_last_line_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let journal = RolloutJournal::open(dir.path()).unwrap();
        let a = record("a");
        journal.append_outcomes(&key(1), &[&a]).unwrap();
        let path = journal.stage_file(&key(1));
        append(&path, b"{\"host_id\":\"spiffe://tc").unwrap();
        assert_eq!(journal.outcomes(&key(1)).unwrap(), [a]);
        append(&dir.path().join("rollouts/verdicts.jsonl"), b"{\"time\":").unwrap();
        assert_eq!(
            RolloutJournal::open(dir.path()).unwrap().next_look(&key(1)),
            1
        );
    }
}
