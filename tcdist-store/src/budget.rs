//! The store budget: when the entries take more than `max_bytes`, the least recently used are
//! removed until they fit, except the `keep_last_used` most recently used, those the caller
//! keeps (the releases its channels name, the ones jobs are using), and any a pull holds.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::{Entry, EntryRecord, STAGING_DIR, Store, USED_DIR};
use tcdist_core::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreBudget {
    pub max_bytes: u64,
    /// The most recently used entries kept whatever their size.
    pub keep_last_used: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct BudgetReport {
    /// What the entries took before, and what the ones kept take.
    pub total_bytes: u64,
    pub kept_bytes: u64,
    pub removed: Vec<RemovedEntry>,
    /// Entries over the budget left because a pull holds them (tried again next time).
    pub busy: Vec<PathBuf>,
}

impl BudgetReport {
    /// Whether what must be kept does not fit the budget by itself.
    pub fn over(&self, budget: &StoreBudget) -> bool {
        self.kept_bytes > budget.max_bytes
    }
}

#[derive(Debug, Serialize)]
pub struct RemovedEntry {
    pub entry: PathBuf,
    pub bytes: u64,
}

/// One entry as the budget sees it.
#[derive(Clone, Debug)]
pub(crate) struct Measured {
    pub bytes: u64,
    pub last_used: SystemTime,
    pub kept: bool,
}

/// Which entries to remove (indexes into `entries`): least recently used first, until the rest
/// fit `budget`; never a kept one or one of the `keep_last_used` most recently used.
pub(crate) fn over_budget(entries: &[Measured], budget: &StoreBudget) -> Vec<usize> {
    let mut by_use: Vec<usize> = (0..entries.len()).collect();
    by_use.sort_by_key(|&i| std::cmp::Reverse(entries[i].last_used));
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut victims = Vec::new();
    for &i in by_use.iter().skip(budget.keep_last_used).rev() {
        if total <= budget.max_bytes {
            break;
        }
        if entries[i].kept {
            continue;
        }
        total -= entries[i].bytes;
        victims.push(i);
    }
    victims
}

impl Store {
    /// Removes entries until the store fits `budget` (see [`over_budget`]); `keep` names the
    /// entries that must stay. An entry a pull holds is never removed.
    pub fn collect(
        &self,
        budget: &StoreBudget,
        keep: &dyn Fn(&EntryRecord) -> bool,
    ) -> Result<BudgetReport> {
        let entries = self.list()?;
        let mut sized = Vec::with_capacity(entries.len());
        for entry in &entries {
            sized.push(Measured {
                bytes: self.entry_bytes(entry)?,
                last_used: self.last_used(&entry.record),
                kept: keep(&entry.record),
            });
        }
        let total_bytes = sized.iter().map(|s| s.bytes).sum();
        let mut report = BudgetReport {
            total_bytes,
            kept_bytes: total_bytes,
            ..BudgetReport::default()
        };
        for i in over_budget(&sized, budget) {
            let entry = &entries[i];
            let name = Self::entry_name(&entry.record.index_digest, &entry.record.platform);
            let Some(_lock) = self.lock_if_idle(&name)? else {
                report.busy.push(entry.path.clone());
                continue;
            };
            self.remove_entry(entry, &name)?;
            report.kept_bytes -= sized[i].bytes;
            report.removed.push(RemovedEntry {
                entry: entry.path.clone(),
                bytes: sized[i].bytes,
            });
        }
        Ok(report)
    }

    /// When the entry was last pulled or looked up (the epoch if never marked).
    pub fn last_used(&self, record: &EntryRecord) -> SystemTime {
        let name = Self::entry_name(&record.index_digest, &record.platform);
        std::fs::metadata(self.root.join(USED_DIR).join(name))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The space an entry takes on disk, as `du` counts it. Entries never change once
    /// installed, so each is measured once per process.
    fn entry_bytes(&self, entry: &Entry) -> Result<u64> {
        let mut sizes = self.sizes.lock().expect("entry sizes lock");
        if let Some(&bytes) = sizes.get(&entry.path) {
            return Ok(bytes);
        }
        let bytes =
            disk_usage(&entry.path).map_err(|e| Error::store("measuring", &entry.path, e))?;
        sizes.insert(entry.path.clone(), bytes);
        Ok(bytes)
    }

    /// Removes an entry (its lock held) and its bookkeeping. The entry is first moved into
    /// the staging directory, in one rename: a removal cut short (the process killed) leaves a
    /// staging leftover, which the next pull of that release or `gc` removes, never a
    /// half-removed entry that lookups would still find.
    pub(crate) fn remove_entry(&self, entry: &Entry, name: &str) -> Result<()> {
        let doomed = self.root.join(STAGING_DIR).join(format!("{name}.removed"));
        if doomed.exists() {
            super::staging::remove_tree(&doomed)
                .map_err(|e| Error::store("removing", &doomed, e))?;
        }
        // Moving a directory to another parent rewrites its `..`: it must be writable.
        std::fs::set_permissions(&entry.path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::store("unsealing", &entry.path, e))?;
        std::fs::rename(&entry.path, &doomed)
            .map_err(|e| Error::store("moving out of the store", &entry.path, e))?;
        self.forget(entry, name);
        super::staging::remove_tree(&doomed).map_err(|e| Error::store("removing", &doomed, e))
    }

    /// Drops what the store keeps about an entry that left its place.
    pub(crate) fn forget(&self, entry: &Entry, name: &str) {
        let _ = std::fs::remove_file(self.root.join(USED_DIR).join(name));
        self.sizes
            .lock()
            .expect("entry sizes lock")
            .remove(&entry.path);
        if let Some(parent) = entry.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Allocated bytes under `path`, symbolic links not followed.
fn disk_usage(path: &Path) -> std::io::Result<u64> {
    let metadata = std::fs::symlink_metadata(path)?;
    let mut bytes = metadata.blocks() * 512;
    if metadata.is_dir() {
        for child in std::fs::read_dir(path)? {
            bytes += disk_usage(&child?.path())?;
        }
    }
    Ok(bytes)
}

/// Sizes of entries measured so far, by entry path.
pub(crate) type EntrySizes = std::sync::Mutex<HashMap<PathBuf, u64>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(bytes: u64, used_secs_ago: u64, kept: bool) -> Measured {
        Measured {
            bytes,
            last_used: SystemTime::now() - Duration::from_secs(used_secs_ago),
            kept,
        }
    }

    fn budget(max_bytes: u64, keep_last_used: usize) -> StoreBudget {
        StoreBudget {
            max_bytes,
            keep_last_used,
        }
    }

    #[test]
    fn within_budget_nothing_goes() {
        let entries = [entry(10, 1, false), entry(10, 2, false)];
        assert!(over_budget(&entries, &budget(20, 0)).is_empty());
    }

    #[test]
    fn least_recently_used_go_first_until_the_rest_fit() {
        // Used 1s, 3s, 2s and 4s ago.
        let entries = [
            entry(10, 1, false),
            entry(10, 3, false),
            entry(10, 2, false),
            entry(10, 4, false),
        ];
        assert_eq!(over_budget(&entries, &budget(25, 0)), [3, 1]);
    }

    #[test]
    fn kept_and_last_used_entries_stay_even_over_budget() {
        let entries = [
            entry(10, 1, false),
            entry(10, 2, false),
            entry(10, 3, true),
            entry(10, 4, false),
        ];
        // The most recent two are kept by count, the third by the caller: only the oldest goes,
        // and the store stays over its budget.
        assert_eq!(over_budget(&entries, &budget(5, 2)), [3]);
    }

    #[test]
    fn an_entry_never_used_is_the_first_to_go() {
        let never = Measured {
            bytes: 10,
            last_used: SystemTime::UNIX_EPOCH,
            kept: false,
        };
        let entries = [entry(10, 100, false), never];
        assert_eq!(over_budget(&entries, &budget(10, 0)), [1]);
    }

    #[test]
    fn collect_removes_an_entry_through_the_staging_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let platform: tcdist_core::platform::Platform = "linux/amd64".parse().unwrap();
        let digest = tcdist_core::digest::Digest::of(b"release");
        let entry = store.entry_path(&digest, &platform);
        std::fs::create_dir_all(entry.join("toolchain/bin")).unwrap();
        std::fs::write(entry.join("toolchain/bin/go"), b"go").unwrap();
        let record = EntryRecord {
            reference: "r/go:v1".into(),
            repository: None,
            index_digest: digest.clone(),
            manifest_digest: digest.clone(),
            platform: platform.clone(),
            checks: Vec::new(),
            tree_digest: None,
            installed_at: 0,
        };
        std::fs::write(
            entry.join(crate::RECORD_FILE),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        // Sealed as an installed entry is.
        for path in [
            entry.join("toolchain/bin"),
            entry.join("toolchain"),
            entry.clone(),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        store.mark_used(&digest, &platform);
        let budget = StoreBudget {
            max_bytes: 0,
            keep_last_used: 0,
        };
        let report = store.collect(&budget, &|_| false).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].entry, entry);
        assert_eq!(report.kept_bytes, 0);
        assert!(!entry.exists());
        assert!(!entry.parent().unwrap().exists());
        assert!(store.list().unwrap().is_empty());
        let staging = std::fs::read_dir(store.root().join(STAGING_DIR))
            .unwrap()
            .count();
        assert_eq!(staging, 0);
        assert_eq!(store.last_used(&record), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn disk_usage_counts_what_du_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/file"), vec![7u8; 10_000]).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("link")).unwrap();
        let du = std::process::Command::new("du")
            .arg("-sB1")
            .arg(dir.path())
            .output()
            .unwrap();
        let du: u64 = String::from_utf8(du.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(disk_usage(dir.path()).unwrap(), du);
    }
}
