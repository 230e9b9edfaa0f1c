//! The local content-addressed store: `<store>/sha256-<index hex>/<os>-<arch>/` holds one
//! verified, read-only toolchain (under `toolchain/`) and the record of how it was verified;
//! and the pull that fills it: resolve, verify, then fetch and extract into a staging dir.

pub mod budget;
pub mod extract;
pub mod fetch;
pub mod lock;
pub mod pull;
pub mod report;
pub mod staging;
pub mod tree;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use lock::EntryLock;
use staging::{Staging, remove_tree};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};
use tcdist_core::platform::Platform;
use tcdist_oci::release::TOOLCHAIN_ROOT;
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_verify::{VerificationReport, Verified};
use tree::{TREE_FILE, TreeManifest};

/// The record kept next to each entry's toolchain root.
pub const RECORD_FILE: &str = "release.json";
const STAGING_DIR: &str = ".staging";
const LOCK_DIR: &str = ".locks";
const USED_DIR: &str = ".used";
/// Where `fsck` moves damaged entries, kept for inspection.
const QUARANTINE_DIR: &str = ".quarantine";
/// What each pull verified an entry as: the reference it was pulled under (newest pull wins),
/// and each repository it was verified for. An entry is content-addressed, so many references
/// and repositories can name one.
const REFS_DIR: &str = ".refs";
/// A manifest larger than this is not one tcverify wrote.
const MAX_TREE_FILE: u64 = 64 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryRecord {
    pub reference: String,
    /// The repository the accepted signature's statement names (entries installed before it
    /// was recorded have none, and are found by tag only).
    #[serde(default)]
    pub repository: Option<String>,
    pub index_digest: Digest,
    pub manifest_digest: Digest,
    pub platform: Platform,
    pub checks: Vec<String>,
    /// The digest of the entry's tree manifest (`tree.txt`), taken when it was installed
    /// (entries installed before it was recorded have none; `fsck` replaces them).
    #[serde(default)]
    pub tree_digest: Option<Digest>,
    /// Seconds since the epoch when the entry was installed (store bookkeeping, not content).
    pub installed_at: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub path: PathBuf,
    pub root: PathBuf,
    pub record: EntryRecord,
}

pub struct Store {
    root: PathBuf,
    sizes: budget::EntrySizes,
}

impl Store {
    pub fn open(root: &Path) -> Result<Self> {
        let root = std::path::absolute(root).map_err(|e| Error::store("resolving", root, e))?;
        for dir in [STAGING_DIR, LOCK_DIR, USED_DIR, QUARANTINE_DIR, REFS_DIR] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| Error::store("creating", &path, e))?;
            // Bookkeeping is written into these; a symlink planted in their place would send
            // those writes elsewhere.
            let metadata = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::store("inspecting", &path, e))?;
            if !metadata.is_dir() {
                return Err(Error::store(
                    "using",
                    &path,
                    std::io::Error::other("it is not a directory (a symbolic link?)"),
                ));
            }
        }
        Ok(Self {
            root,
            sizes: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_name(digest: &Digest, platform: &Platform) -> String {
        format!("{}.{}", digest.file_name(), platform.file_name())
    }

    pub fn entry_path(&self, digest: &Digest, platform: &Platform) -> PathBuf {
        self.root
            .join(digest.file_name())
            .join(platform.file_name())
    }

    /// The installed entry, if any; marks it used.
    pub fn lookup(&self, digest: &Digest, platform: &Platform) -> Result<Option<Entry>> {
        let path = self.entry_path(digest, platform);
        let entry = match read_entry(&path)? {
            Some(entry) => entry,
            None => return Ok(None),
        };
        self.mark_used(digest, platform);
        Ok(Some(entry))
    }

    pub async fn lock(&self, digest: &Digest, platform: &Platform) -> Result<EntryLock> {
        let name = Self::entry_name(digest, platform);
        EntryLock::acquire(&self.root.join(LOCK_DIR).join(format!("{name}.lock"))).await
    }

    /// A staging directory for a verified release's entry. The caller holds the entry's lock,
    /// so leftovers of earlier, killed pulls of this entry can be removed first.
    pub fn stage(&self, release: &Verified<ResolvedRelease>, _lock: &EntryLock) -> Result<Staging> {
        let (digest, platform) = (&release.get().index_digest, &release.get().platform);
        let name = Self::entry_name(digest, platform);
        let staging_root = self.root.join(STAGING_DIR);
        for leftover in read_dir_names(&staging_root)? {
            if leftover.starts_with(&format!("{name}.")) {
                let path = staging_root.join(&leftover);
                remove_tree(&path).map_err(|e| Error::store("removing stale staging", &path, e))?;
            }
        }
        Staging::create(&staging_root, &name, self.entry_path(digest, platform))
    }

    /// Seals the extracted tree's directories (its files were created sealed), then writes
    /// its manifest, as the extraction recorded it, and the record (with the manifest's
    /// digest) beside it, read-only, before the entry is committed.
    pub fn write_record(
        staging: &Staging,
        mut record: EntryRecord,
        manifest: &TreeManifest,
    ) -> Result<()> {
        staging::seal_directories(&staging.path().join(TOOLCHAIN_ROOT), manifest)?;
        let text = manifest.to_text();
        record.tree_digest = Some(Digest::of(text.as_bytes()));
        write_read_only(&staging.path().join(TREE_FILE), text.as_bytes())?;
        let json = serde_json::to_vec_pretty(&record).expect("records serialise");
        write_read_only(&staging.path().join(RECORD_FILE), &json)
    }

    pub fn mark_used(&self, digest: &Digest, platform: &Platform) {
        // Best effort: a failed mark only makes `gc --unused-for` see the entry as older.
        let path = self
            .root
            .join(USED_DIR)
            .join(Self::entry_name(digest, platform));
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
    }

    /// Records that a pull verified the entry `digest` under `reference`, for `repository`.
    pub fn remember(
        &self,
        reference: &str,
        repository: &str,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<()> {
        let refs = self.root.join(REFS_DIR);
        let wanted = digest;
        let (platform, digest) = (platform.to_string(), digest.to_string());
        for key in [
            ref_key(&["reference", reference, &platform]),
            ref_key(&["repository", repository, &digest, &platform]),
        ] {
            // A warm pull usually finds both recorded already: no write then.
            if self.remembered(&key).as_ref() == Some(wanted) {
                continue;
            }
            let mut file = tempfile::NamedTempFile::new_in(&refs)
                .map_err(|e| Error::store("writing into", &refs, e))?;
            std::io::Write::write_all(&mut file, digest.as_bytes())
                .map_err(|e| Error::store("writing into", &refs, e))?;
            file.persist(refs.join(&key))
                .map_err(|e| Error::store("writing into", &refs, e.error))?;
        }
        Ok(())
    }

    /// Whether a pull verified the entry `digest` for `repository`.
    pub fn verified_for(&self, repository: &str, digest: &Digest, platform: &Platform) -> bool {
        let key = ref_key(&[
            "repository",
            repository,
            &digest.to_string(),
            &platform.to_string(),
        ]);
        self.remembered(&key).as_ref() == Some(digest)
    }

    /// The release the newest pull under exactly `reference` installed or found, if any
    /// (without marking it used).
    pub fn remembered_release(&self, reference: &str, platform: &Platform) -> Option<Digest> {
        self.remembered(&ref_key(&["reference", reference, &platform.to_string()]))
    }

    fn remembered(&self, key: &str) -> Option<Digest> {
        let bytes = read_capped(&self.root.join(REFS_DIR).join(key), 256).ok()?;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    }

    /// The installed entry a reference names: by digest when it has one, otherwise the one
    /// the newest pull under exactly that reference installed or found.
    pub fn find(
        &self,
        reference: &str,
        digest: Option<&Digest>,
        platform: &Platform,
    ) -> Result<Option<Entry>> {
        if let Some(digest) = digest {
            return self.lookup(digest, platform);
        }
        if let Some(digest) = self.remembered_release(reference, platform)
            && let Some(entry) = self.lookup(&digest, platform)?
        {
            return Ok(Some(entry));
        }
        // Entries installed before references were remembered.
        let newest = self
            .list()?
            .into_iter()
            .filter(|e| e.record.reference == reference && e.record.platform.satisfies(platform))
            .max_by_key(|e| e.record.installed_at);
        if let Some(entry) = &newest {
            self.mark_used(&entry.record.index_digest, &entry.record.platform);
        }
        Ok(newest)
    }

    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for digest_dir in read_dir_names(&self.root)? {
            if !digest_dir.starts_with("sha256-") {
                continue;
            }
            let dir = self.root.join(&digest_dir);
            for platform_dir in read_dir_names(&dir)? {
                if let Some(entry) = read_entry(&dir.join(platform_dir))? {
                    entries.push(entry);
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Removes leftovers of interrupted pulls and, with `unused_for`, entries not used for that
    /// long. Entries whose lock is held (being pulled right now) are left alone.
    pub fn gc(&self, unused_for: Option<Duration>, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport::default();
        let staging_root = self.root.join(STAGING_DIR);
        for leftover in read_dir_names(&staging_root)? {
            let entry_name = leftover
                .rsplit_once('.')
                .map_or(leftover.as_str(), |(n, _)| n);
            let Some(_lock) = self.lock_if_idle(entry_name)? else {
                continue;
            };
            let path = staging_root.join(&leftover);
            if !dry_run {
                remove_tree(&path).map_err(|e| Error::store("removing", &path, e))?;
            }
            report.removed_staging.push(path);
        }
        if let Some(unused_for) = unused_for {
            let cutoff = SystemTime::now() - unused_for;
            for entry in self.list()? {
                let name = Self::entry_name(&entry.record.index_digest, &entry.record.platform);
                if self.last_used(&entry.record) >= cutoff {
                    continue;
                }
                let Some(_lock) = self.lock_if_idle(&name)? else {
                    continue;
                };
                if !dry_run {
                    self.remove_entry(&entry, &name)?;
                }
                report.removed_entries.push(entry.path);
            }
        }
        Ok(report)
    }

    /// Re-reads every entry's tree and compares it with the manifest recorded at install.
    /// A damaged entry is moved to quarantine (unless `dry_run`), so the next pull installs
    /// a fresh copy. Entries being pulled right now are skipped.
    pub fn fsck(&self, dry_run: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        for entry in self.list()? {
            let name = Self::entry_name(&entry.record.index_digest, &entry.record.platform);
            let Some(_lock) = self.lock_if_idle(&name)? else {
                report.busy.push(entry.path);
                continue;
            };
            let Err(reason) = check_tree(&entry) else {
                report.intact.push(entry.path);
                continue;
            };
            let quarantined = if dry_run {
                None
            } else {
                Some(self.quarantine(&entry, &name)?)
            };
            report.damaged.push(DamagedEntry {
                entry: entry.path,
                reason,
                quarantined,
            });
        }
        Ok(report)
    }

    /// The entry's lock when no pull holds it: `Some(None)` when it has no lock file (no pull
    /// ever started), `None` while a pull runs.
    fn lock_if_idle(&self, name: &str) -> Result<Option<Option<EntryLock>>> {
        let lock_path = self.root.join(LOCK_DIR).join(format!("{name}.lock"));
        Ok(match EntryLock::try_acquire(&lock_path)? {
            Some(lock) => Some(Some(lock)),
            None if !lock_path.exists() => Some(None),
            None => None,
        })
    }

    /// Moves an entry aside: out of every lookup, kept whole for whoever investigates.
    fn quarantine(&self, entry: &Entry, name: &str) -> Result<PathBuf> {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let target = self
            .root
            .join(QUARANTINE_DIR)
            .join(format!("{name}.{stamp}"));
        // Moving a directory to another parent rewrites its `..`: it must be writable.
        std::fs::set_permissions(&entry.path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::store("unsealing", &entry.path, e))?;
        std::fs::rename(&entry.path, &target)
            .map_err(|e| Error::store("moving to quarantine", &entry.path, e))?;
        self.forget(entry, name);
        Ok(target)
    }
}

impl Entry {
    /// The tree manifest recorded at install, checked against the record's digest.
    pub fn manifest(&self) -> std::result::Result<TreeManifest, String> {
        let recorded = self.record.tree_digest.as_ref().ok_or(
            "no tree digest was recorded (installed by an older tcverify); it cannot be checked",
        )?;
        let tree_path = self.path.join(TREE_FILE);
        let text = read_capped(&tree_path, MAX_TREE_FILE)
            .map_err(|e| format!("{TREE_FILE} cannot be read: {e}"))?;
        let actual = Digest::of(&text);
        if actual != *recorded {
            return Err(format!(
                "{TREE_FILE} is {actual}, but the record says {recorded}"
            ));
        }
        std::str::from_utf8(&text)
            .ok()
            .and_then(TreeManifest::parse)
            .ok_or_else(|| format!("{TREE_FILE} is malformed"))
    }

    /// Opens a file of the toolchain and checks, through the returned descriptor, that it is
    /// the file the manifest recorded: what the caller reads or runs from it is what was
    /// installed, whatever happens to the path afterwards.
    pub fn open_checked(&self, relative: &str) -> Result<std::fs::File> {
        use std::io::Seek as _;
        use std::os::unix::fs::MetadataExt as _;
        let damaged = |reason: String| -> Error {
            tcdist_core::error::Rejection::EntryDamaged {
                entry: self.path.display().to_string(),
                reason,
            }
            .into()
        };
        let manifest = self.manifest().map_err(damaged)?;
        let expected = manifest
            .get(relative)
            .ok_or_else(|| damaged(format!("{relative} is not in its manifest")))?;
        let path = self.root.join(relative);
        let mut file = tree::open_no_follow(&path)
            .map_err(|e| damaged(format!("{relative} cannot be opened: {e}")))?;
        let metadata = file
            .metadata()
            .map_err(|e| Error::store("inspecting", &path, e))?;
        let (size, content) =
            tree::hash_reader(&mut file).map_err(|e| Error::store("reading", &path, e))?;
        if !metadata.is_file()
            || metadata.mode() & 0o7777 != expected.mode
            || size != expected.size
            || content != expected.content
        {
            return Err(damaged(format!(
                "{relative} is not the file that was installed; run `tcverify fsck` to \
                 quarantine the entry, then pull again"
            )));
        }
        file.rewind()
            .map_err(|e| Error::store("reading", &path, e))?;
        Ok(file)
    }
}

/// Why an entry's tree does not match its record, or `Ok` when it does.
fn check_tree(entry: &Entry) -> std::result::Result<(), String> {
    let expected = entry.manifest()?;
    let found =
        TreeManifest::build(&entry.root).map_err(|e| format!("the tree cannot be read: {e}"))?;
    let differences = found.differences(&expected, 5);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the tree differs from its manifest: {}",
            differences.join("; ")
        ))
    }
}

/// A bookkeeping file name for a tuple of strings.
fn ref_key(parts: &[&str]) -> String {
    Digest::of(parts.join("\n").as_bytes()).hex().to_owned()
}

fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    tree::open_no_follow(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("over {cap} bytes")));
    }
    Ok(bytes)
}

#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub intact: Vec<PathBuf>,
    pub damaged: Vec<DamagedEntry>,
    /// Entries locked by a pull in progress, not checked this time.
    pub busy: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct DamagedEntry {
    pub entry: PathBuf,
    pub reason: String,
    /// Where it was moved (none on a dry run).
    pub quarantined: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub removed_staging: Vec<PathBuf>,
    pub removed_entries: Vec<PathBuf>,
}

/// Writes a new file, created read-only.
fn write_read_only(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::store("writing", path, e))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| Error::store("writing", path, e))
}

fn read_entry(path: &Path) -> Result<Option<Entry>> {
    let record_path = path.join(RECORD_FILE);
    let bytes = match std::fs::read(&record_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::store("reading", &record_path, e)),
    };
    let record: EntryRecord = serde_json::from_slice(&bytes).map_err(|e| {
        Error::store(
            "parsing",
            &record_path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    Ok(Some(Entry {
        path: path.to_owned(),
        root: path.join(TOOLCHAIN_ROOT),
        record,
    }))
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let reader = match std::fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::store("reading", dir, e)),
    };
    let mut names = Vec::new();
    for entry in reader {
        let entry = entry.map_err(|e| Error::store("reading", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl EntryRecord {
    pub fn new(reference: &str, report: &VerificationReport) -> Self {
        Self {
            reference: reference.to_owned(),
            repository: Some(report.signature.repository.clone()),
            index_digest: report.index_digest.clone(),
            manifest_digest: report.manifest_digest.clone(),
            platform: report.platform.clone(),
            checks: report.checks.iter().map(|c| (*c).to_owned()).collect(),
            tree_digest: None,
            installed_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    #[test]
    fn used_mark_does_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let digest = Digest::of(b"release");
        let mark = store
            .root()
            .join(USED_DIR)
            .join(Store::entry_name(&digest, &platform()));
        std::os::unix::fs::symlink(&victim, &mark).unwrap();
        store.mark_used(&digest, &platform());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn lock_does_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let digest = Digest::of(b"release");
        let lock = store
            .root()
            .join(LOCK_DIR)
            .join(format!("{}.lock", Store::entry_name(&digest, &platform())));
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &lock).unwrap();
        let err = store.lock(&digest, &platform()).await.unwrap_err();
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn store_refused_if_a_bookkeeping_directory_is_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join(USED_DIR)).unwrap();
        let err = Store::open(&root)
            .err()
            .expect("a symlinked .used is refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
