//! What the monitor keeps in `--state DIR`: per log, the checkpoint it accepted last (and the
//! ones before it, so a fork can be shown with signed checkpoints), how far it has read and
//! the compact range of what it read, the watched entries it saw; the ledger head it pinned;
//! the CA keys the trust domains have had; and its alerts. `state.json` is replaced whole
//! (written aside, synced, renamed), so a monitor killed at any point resumes from the last
//! state it wrote, and never past an entry it did not read. A round and `distd monitor ack`
//! each hold the directory's lock while they read and write the state.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use distd_api::ledger::LedgerHead;
use serde::{Deserialize, Serialize};
use tcdist_verify::merkle::CompactRange;

use super::alert::Alert;

/// Accepted checkpoints kept besides the current one.
const HISTORY: usize = 32;
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MonitorState {
    pub version: u32,
    /// By the log's checkpoint origin.
    pub logs: BTreeMap<String, LogState>,
    /// The ledger as the monitor last read it.
    pub ledger: Option<LedgerHead>,
    /// Subject key IDs (hex) of every CA key the trust domains' bundles have held.
    pub ca_key_ids: BTreeSet<String>,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LogState {
    /// The last checkpoint accepted, as the log signed it.
    pub checkpoint: Option<String>,
    /// Checkpoints accepted before it, oldest first.
    pub history: Vec<String>,
    /// Entries `0..position` have been read.
    pub position: u64,
    /// The compact range of entries `0..position` (hex).
    pub range: Vec<String>,
    /// Watched entries seen: index → leaf hash (hex).
    pub watched: BTreeMap<u64, String>,
    /// When the monitor last read the log up to its checkpoint.
    pub caught_up_at: Option<jiff::Timestamp>,
}

impl LogState {
    pub fn compact_range(&self) -> Result<CompactRange> {
        let roots = self
            .range
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .context("a compact range hash is not 32 bytes of hex")
            })
            .collect::<Result<Vec<_>>>()?;
        CompactRange::from_parts(self.position, roots)
            .context("the compact range does not fit the position")
    }

    pub fn set_range(&mut self, range: &CompactRange) {
        self.position = range.size();
        self.range = range.roots().iter().map(hex::encode).collect();
    }

    /// Accepts `checkpoint` as the newest; the one before joins the history.
    pub fn accept(&mut self, checkpoint: String) {
        if self.checkpoint.as_ref() == Some(&checkpoint) {
            return;
        }
        if let Some(old) = self.checkpoint.replace(checkpoint) {
            self.history.push(old);
            let excess = self.history.len().saturating_sub(HISTORY);
            self.history.drain(..excess);
        }
    }
}

/// The state directory.
pub struct StateDir {
    dir: PathBuf,
}

/// The state directory's lock, held until dropped.
pub struct StateLock {
    _file: std::fs::File,
}

impl StateDir {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("proofs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// Waits for and takes the directory's lock.
    pub async fn lock(&self) -> Result<StateLock> {
        let path = self.dir.join("lock");
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
            Ok(StateLock { _file: file })
        })
        .await
        .context("the lock task failed")?
    }

    pub fn load(&self) -> Result<MonitorState> {
        let path = self.dir.join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let state: MonitorState = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "{} is not a monitor state: move it away to start over",
                        path.display()
                    )
                })?;
                if state.version != VERSION {
                    bail!(
                        "{} is of version {}, this monitor keeps {VERSION}",
                        path.display(),
                        state.version
                    );
                }
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MonitorState {
                version: VERSION,
                ..MonitorState::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, state: &MonitorState) -> Result<()> {
        write_atomic(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state)?,
        )
    }

    /// Where the proof of alert `id` is written.
    pub fn proof_path(&self, id: u64) -> PathBuf {
        self.dir.join("proofs").join(format!("{id}.json"))
    }
}

/// Replaces `path` with `bytes`: written aside, synced, renamed, and the rename synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file has a directory")?;
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .context("a file has a name")?
            .to_string_lossy()
    ));
    let mut file =
        std::fs::File::create(&temp).with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use tcdist_verify::merkle::leaf_hash;

    use super::*;

    #[test]
    fn accepted_checkpoints_keep_a_bounded_history() {
        let mut log = LogState::default();
        for n in 0..40 {
            log.accept(format!("checkpoint {n}"));
            log.accept(format!("checkpoint {n}"));
        }
        assert_eq!(log.checkpoint.as_deref(), Some("checkpoint 39"));
        assert_eq!(log.history.len(), HISTORY);
        assert_eq!(
            log.history.first().map(String::as_str),
            Some("checkpoint 7")
        );
        assert_eq!(
            log.history.last().map(String::as_str),
            Some("checkpoint 38")
        );
    }

    #[test]
    fn the_compact_range_survives_the_state_file() {
        let mut range = CompactRange::default();
        for n in 0..13u8 {
            range.push(leaf_hash(&[n]));
        }
        let mut log = LogState::default();
        log.set_range(&range);
        let text = serde_json::to_string(&log).unwrap();
        let back: LogState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.compact_range().unwrap(), range);
        let mut broken = back;
        broken.position = 15;
        assert!(broken.compact_range().is_err());
    }

    #[tokio::test]
    async fn state_is_saved_whole_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::open(dir.path()).unwrap();
        let _lock = state_dir.lock().await.unwrap();
        let mut state = state_dir.load().unwrap();
        assert_eq!(state.version, VERSION);
        state.ca_key_ids.insert("ab".into());
        state_dir.save(&state).unwrap();
        assert_eq!(state_dir.load().unwrap().ca_key_ids, state.ca_key_ids);
        std::fs::write(dir.path().join("state.json"), "{").unwrap();
        let err = state_dir.load().unwrap_err();
        assert!(format!("{err:#}").contains("move it away"), "{err:#}");
    }
}
