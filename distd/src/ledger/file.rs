//! A ledger in one file on this host: the daemon's (in its state dir), or a small
//! deployment's (`--ledger`). Appends take an exclusive lock on the file and check the whole
//! chain first, so concurrent writers (the daemon and its build jobs) never interleave, and
//! nothing is appended to a ledger that was tampered with.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use distd_api::ledger::{LedgerEvent, LedgerRecord, check, next_line};
use tcdist_core::error::Rejection;

pub struct FileLedger {
    path: PathBuf,
}

impl FileLedger {
    pub fn new(path: PathBuf) -> Self {
        FileLedger { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` (made by `appended_by`, when it came through the API) as the next
    /// record, durably, and returns it.
    pub async fn append(
        &self,
        event: LedgerEvent,
        appended_by: Option<String>,
    ) -> Result<LedgerRecord> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append_locked(&path, event, appended_by))
            .await
            .context("the ledger task failed")?
    }

    /// The whole file (empty when it does not exist yet), read under a shared lock so no
    /// half-written line is seen.
    pub async fn read(&self) -> Result<Vec<u8>> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = match open(&path, false) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(store("opening the ledger", &path, e)),
            };
            file.lock_shared()
                .map_err(|e| store("locking the ledger", &path, e))?;
            let mut text = Vec::new();
            file.read_to_end(&mut text)
                .map_err(|e| store("reading the ledger", &path, e))?;
            Ok(text)
        })
        .await
        .context("the ledger task failed")?
    }
}

fn append_locked(
    path: &Path,
    event: LedgerEvent,
    appended_by: Option<String>,
) -> Result<LedgerRecord> {
    let mut file = open(path, true).map_err(|e| store("opening the ledger", path, e))?;
    file.lock()
        .map_err(|e| store("locking the ledger", path, e))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| store("reading the ledger", path, e))?;
    let head = check(&text)
        .map_err(|reason| {
            tcdist_core::Error::from(Rejection::malformed(
                format!("ledger {}", path.display()),
                format!("{reason}; nothing more is appended to it"),
            ))
        })?
        .head();
    let (record, mut line) = next_line(&head, jiff::Timestamp::now(), appended_by, event);
    line.push(b'\n');
    // One write of a whole line to a file opened for appending. A write cut short (a full
    // disk) is cut back off under the lock: half a line would stop every later append.
    if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
        let _ = file.set_len(text.len() as u64);
        return Err(store("appending to the ledger", path, e));
    }
    Ok(record)
}

fn open(path: &Path, for_append: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(for_append)
        .create(for_append)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn store(action: &'static str, path: &Path, e: std::io::Error) -> anyhow::Error {
    tcdist_core::Error::store(action, path, e).into()
}

#[cfg(test)]
mod tests {
    use distd_api::ledger::{Intent, LedgerEvent};

    use super::*;

    fn intent() -> LedgerEvent {
        LedgerEvent::Intent(Intent {
            subject: "sha256:00".into(),
            predicate_type: "p".into(),
            spiffe_id: "spiffe://tcdist.test/distd/signer".into(),
            certificate: "sha256:01".into(),
            payload: "sha256:02".into(),
            signature: "sha256:03".into(),
        })
    }

    #[tokio::test]
    async fn concurrent_appends_make_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = std::sync::Arc::new(FileLedger::new(dir.path().join("ledger.jsonl")));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let ledger = std::sync::Arc::clone(&ledger);
                tokio::spawn(async move { ledger.append(intent(), None).await.unwrap().seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..16).collect::<Vec<_>>());
        assert_eq!(
            check(&ledger.read().await.unwrap()).unwrap().records.len(),
            16
        );
    }

    #[tokio::test]
    async fn append_refused_to_a_tampered_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let ledger = FileLedger::new(path.clone());
        ledger.append(intent(), None).await.unwrap();
        ledger.append(intent(), None).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("sha256:02", "sha256:04", 1)).unwrap();
        let err = ledger.append(intent(), None).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("nothing more is appended"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }
}
