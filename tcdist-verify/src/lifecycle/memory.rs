//! What a store remembers of each repository's lifecycle statements: the newest head and
//! rollout statement seen per channel and the newest yank list. A verifier that remembers them refuses an older head
//! (a rollback) and keeps refusing a yanked release after the yank is deleted from the
//! registry. One JSON file per repository under `<store>/.lifecycle/`, replaced atomically
//! under an exclusive lock, so concurrent pulls (one agent, or several processes) never lose
//! each other's updates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};
use tcdist_oci::attachments::lifecycle::YankListPredicate;
use tcdist_oci::attachments::rollout::RolloutState;

/// A repository's memory is small (heads and yanks); a larger file is not one of ours.
const MAX_MEMORY_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryMemory {
    pub repository: String,
    #[serde(default)]
    pub channels: BTreeMap<String, SeenHead>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanks: Option<SeenYankList>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, SeenRollout>,
}

/// The newest head of a channel seen: its sequence and the release it named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenHead {
    pub sequence: u64,
    pub release: Digest,
}

/// The newest rollout statement of a channel seen: its sequence (counted with the channel's
/// heads), its plan's digest and state, and when it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenRollout {
    pub sequence: u64,
    pub plan: Digest,
    pub state: RolloutState,
    pub expires: jiff::Timestamp,
}

/// The newest yank list seen, verified when it was seen, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenYankList {
    pub manifest: Digest,
    pub list: YankListPredicate,
}

pub struct LifecycleMemory {
    dir: PathBuf,
}

impl LifecycleMemory {
    pub fn new(store: &Path) -> Self {
        LifecycleMemory {
            dir: store.join(".lifecycle"),
        }
    }

    fn file(&self, repository: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", hex::encode(Sha256::digest(repository))))
    }

    /// What is remembered of `repository` (nothing, the first time).
    pub fn load(&self, repository: &str) -> Result<RepositoryMemory> {
        let path = self.file(repository);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RepositoryMemory {
                    repository: repository.to_owned(),
                    ..Default::default()
                });
            }
            Err(e) => return Err(Error::store("reading", &path, e)),
        };
        let mut text = Vec::new();
        file.take(MAX_MEMORY_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::store("reading", &path, e))?;
        let invalid = |why: String| {
            Error::store(
                "reading",
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, why),
            )
        };
        if text.len() as u64 > MAX_MEMORY_BYTES {
            return Err(invalid(format!("over {MAX_MEMORY_BYTES} bytes")));
        }
        let memory: RepositoryMemory = serde_json::from_slice(&text)
            .map_err(|e| invalid(format!("not a lifecycle memory file: {e}")))?;
        if memory.repository != repository {
            return Err(invalid(format!(
                "it is the memory of {:?}, not {repository:?}",
                memory.repository
            )));
        }
        Ok(memory)
    }

    /// Applies `update` to what is remembered of `repository` and saves the result, all under
    /// the memory's lock.
    pub fn update(
        &self,
        repository: &str,
        update: impl FnOnce(&mut RepositoryMemory),
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::store("creating", &self.dir, e))?;
        let lock_path = self.dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::store("opening", &lock_path, e))?;
        // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::store(
                "locking",
                &lock_path,
                std::io::Error::last_os_error(),
            ));
        }
        let mut memory = self.load(repository)?;
        let before = memory.clone();
        update(&mut memory);
        if memory == before {
            return Ok(());
        }
        let path = self.file(repository);
        let temp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(&memory).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| Error::store("writing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_starts_empty_and_keeps_updates() {
        let dir = tempfile::tempdir().unwrap();
        let memory = LifecycleMemory::new(dir.path());
        assert!(memory.load("r").unwrap().channels.is_empty());
        memory
            .update("r", |m| {
                m.channels.insert(
                    "stable".into(),
                    SeenHead {
                        sequence: 4,
                        release: Digest::of(b"a"),
                    },
                );
            })
            .unwrap();
        assert_eq!(memory.load("r").unwrap().channels["stable"].sequence, 4);
        assert!(memory.load("other").unwrap().channels.is_empty());
    }

    #[test]
    fn memory_of_another_repository_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let memory = LifecycleMemory::new(dir.path());
        memory
            .update("a", |m| {
                m.channels.insert(
                    "c".into(),
                    SeenHead {
                        sequence: 1,
                        release: Digest::of(b"x"),
                    },
                );
            })
            .unwrap();
        std::fs::copy(memory.file("a"), memory.file("b")).unwrap();
        let err = memory.load("b").unwrap_err().to_string();
        assert!(err.contains("not \"b\""), "{err}");
    }
}
