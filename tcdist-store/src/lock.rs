//! Per-entry file locks, so concurrent pulls of one release on one host download it once.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tcdist_core::error::{Error, Result};

/// Holds an exclusive lock until dropped (the kernel releases it if the process dies).
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
    path: PathBuf,
}

impl EntryLock {
    /// Waits for and takes the lock at `path`.
    pub async fn acquire(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::store("opening lock", &path, e))?;
            file.lock().map_err(|e| Error::store("locking", &path, e))?;
            Ok(Self { _file: file, path })
        })
        .await
        .expect("lock task does not panic")
    }

    /// Takes the lock only if nobody holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::store("opening lock", path, e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(Some(Self {
                _file: file,
                path: path.to_owned(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::store("locking", path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
