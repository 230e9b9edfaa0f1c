//! Staging directories: filled by extraction, then sealed (read-only, synced) and renamed into
//! the store in one step. A staging directory that is dropped unsealed is removed, and one left
//! by a killed process is removed by the next pull of that entry or by `gc`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::tree::TreeManifest;
use tcdist_core::error::{Error, Result};

#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// A fresh directory in `staging_root` whose name starts with `prefix`.
    pub fn create(staging_root: &Path, prefix: &str, target: PathBuf) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}."))
            .tempdir_in(staging_root)
            .map_err(|e| Error::store("creating staging directory in", staging_root, e))?
            .keep();
        Ok(Self {
            dir,
            target,
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where downloads are spooled: beside the staging directory (on the store's file system),
    /// not in it, so nothing but the extracted tree is renamed into the store.
    pub fn spool_dir(&self) -> &Path {
        self.dir
            .parent()
            .expect("a staging directory lives in the staging root")
    }

    /// Moves the staging directory into its place in the store, durably. Its contents are
    /// sealed read-only already (`Store::write_record`); the directory itself is sealed once
    /// in place, since moving a directory to another parent rewrites its `..`, which needs
    /// write permission on it (for any user but root).
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_filesystem(&self.dir)?;
        let parent = self.target.parent().expect("entries live in a directory");
        std::fs::create_dir_all(parent).map_err(|e| Error::store("creating", parent, e))?;
        std::fs::rename(&self.dir, &self.target)
            .map_err(|e| Error::store("moving staging directory to", &self.target, e))?;
        set_mode(&self.target, 0o555)?;
        sync_directory(parent)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_tree(&self.dir);
        }
    }
}

/// Seals the directories of a tree whose files were created sealed: 0555, innermost first.
pub fn seal_directories(root: &Path, manifest: &TreeManifest) -> Result<()> {
    for directory in manifest.directories_deepest_first() {
        set_mode(&root.join(directory), 0o555)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::store("setting permissions of", path, e))
}

/// One `syncfs` flushes the whole staging tree; an fsync per file would cost a disk flush
/// for each of a toolchain's ~15k files.
fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).map_err(|e| Error::store("opening", path, e))?;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    if rc != 0 {
        return Err(Error::store(
            "syncing",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn sync_directory(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::store("syncing", path, e))
}

/// Removes a tree that may have been sealed read-only.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    make_writable(path)?;
    std::fs::remove_dir_all(path)
}

fn make_writable(root: &Path) -> std::io::Result<()> {
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if metadata.is_dir() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}
