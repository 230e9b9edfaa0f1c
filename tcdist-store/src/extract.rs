//! One layer's tar stream into a staging directory, under the extraction rules: every entry
//! lives under the toolchain root; no absolute paths, no `..`, nothing written through a
//! symlink, symlinks and hard links stay inside the root, no device nodes or fifos, no
//! setuid/setgid/sticky bits, no duplicates, and the unpacked size stays inside a budget.
//!
//! The `tar` crate's own `unpack` skips `..` entries silently and creates any symlink, so
//! entries are checked and written here instead.
//!
//! Files are created with their sealed mode (0444, 0555 if executable) and hashed as they are
//! written, so the entry's tree manifest comes from the extraction itself: the tree is neither
//! walked again to seal it nor read again to hash it.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::tree::{TreeItem, TreeManifest};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, UnsafeEntryRule};
use tcdist_oci::release::TOOLCHAIN_ROOT;
use tcdist_verify::structure::ExtractBudget;

/// The most bytes one metadata record (GNU long name or link, PAX header) may hold; it is read
/// into memory whole, so it is capped before a byte of it is read.
pub const MAX_HEADER_RECORD_BYTES: u64 = 64 << 10;
/// Longest entry path or link target, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most components in an entry path.
pub const MAX_PATH_DEPTH: usize = 128;

/// Running totals against an [`ExtractBudget`], shared by the layers of one pull.
#[derive(Debug, Default)]
pub struct BudgetUse {
    unpacked_bytes: AtomicU64,
    entries: AtomicU64,
}

/// A hard link to create once every layer is extracted (its target may be in another layer).
#[derive(Debug, Clone)]
pub struct PendingHardLink {
    pub layer: Digest,
    pub entry: String,
    pub link: PathBuf,
    pub target: String,
}

/// A relative path inside the staging directory that passed the name rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath(PathBuf);

impl EntryPath {
    /// Checks an archive entry name: UTF-8 without control characters, relative, no `..`,
    /// under the toolchain root. `.` and empty components are dropped.
    pub fn parse(raw: &[u8]) -> Result<Self, UnsafeEntryRule> {
        check_length(raw)?;
        let name = std::str::from_utf8(raw).map_err(|_| UnsafeEntryRule::InvalidName)?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(UnsafeEntryRule::InvalidName);
        }
        if name.starts_with('/') {
            return Err(UnsafeEntryRule::AbsolutePath);
        }
        let mut path = PathBuf::new();
        for component in name.split('/') {
            match component {
                "" | "." => {}
                ".." => return Err(UnsafeEntryRule::ParentComponent),
                normal => path.push(normal),
            }
        }
        let depth = path.components().count();
        if depth > MAX_PATH_DEPTH {
            return Err(UnsafeEntryRule::PathTooDeep {
                depth,
                max: MAX_PATH_DEPTH,
            });
        }
        if !path.starts_with(TOOLCHAIN_ROOT) {
            return Err(UnsafeEntryRule::OutsideRoot);
        }
        if path
            .file_name()
            .is_some_and(|n| n.to_str().is_some_and(|n| n.starts_with(".wh.")))
        {
            return Err(UnsafeEntryRule::Whiteout);
        }
        Ok(Self(path))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

fn check_length(raw: &[u8]) -> Result<(), UnsafeEntryRule> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(UnsafeEntryRule::PathTooLong {
            bytes: raw.len(),
            max: MAX_PATH_BYTES,
        });
    }
    Ok(())
}

/// Checks a symlink's target: relative, `..` only as leading components and never climbing
/// above the toolchain root. Because every directory on the way is a real directory (nothing
/// is written through a symlink) and every other symlink obeys the same rule, resolving it
/// never leaves the root. A `..` after a normal component could climb out through another
/// symlink, so it is refused even where it would look harmless.
pub fn check_symlink_target(link: &Path, target: &str) -> Result<(), UnsafeEntryRule> {
    check_length(target.as_bytes())?;
    let escapes = || UnsafeEntryRule::SymlinkEscapes {
        target: target.to_owned(),
    };
    if target.is_empty() || target.chars().any(char::is_control) || target.starts_with('/') {
        return Err(escapes());
    }
    // Directories between the toolchain root and the link: how far `..` may climb.
    let depth = link
        .strip_prefix(TOOLCHAIN_ROOT)
        .map_err(|_| escapes())?
        .components()
        .count()
        .saturating_sub(1);
    let mut climbing = true;
    let mut ups = 0;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if climbing => ups += 1,
            ".." => return Err(escapes()),
            _ => climbing = false,
        }
    }
    if ups > depth {
        return Err(escapes());
    }
    Ok(())
}

/// Writes one layer's entries under `root`.
pub struct LayerExtractor<'a> {
    root: &'a Path,
    layer: &'a Digest,
    budget: &'a ExtractBudget,
    used: &'a BudgetUse,
    /// Directories this extractor made or checked to be real directories. Nothing in a
    /// staging directory is ever removed or replaced, so a checked directory stays one.
    known_dirs: HashSet<PathBuf>,
    extracted: Extracted,
    buffer: Vec<u8>,
}

/// What one layer put under the toolchain root: its manifest items (names relative to the
/// root, `.` for the root itself) and the hard links still to make.
#[derive(Debug, Default)]
pub struct Extracted {
    pub items: BTreeMap<String, TreeItem>,
    pub hard_links: Vec<PendingHardLink>,
}

/// The mode a sealed file has: read-only, executable if any execute bit was set.
pub fn sealed_file_mode(executable: bool) -> u32 {
    if executable { 0o555 } else { 0o444 }
}

/// A directory's mode once its entry is sealed.
pub const SEALED_DIR_MODE: u32 = 0o555;

/// A symbolic link's mode as Linux reports it.
const SYMLINK_MODE: u32 = 0o777;

/// The manifest's name of an entry path (which starts with the toolchain root).
fn manifest_name(path: &Path) -> String {
    let relative = path
        .strip_prefix(TOOLCHAIN_ROOT)
        .expect("entry paths are under the toolchain root");
    if relative.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        // Entry paths are UTF-8 (EntryPath::parse).
        relative.to_string_lossy().into_owned()
    }
}

/// Why a layer failed, before it is told apart from a digest mismatch by the caller.
#[derive(Debug)]
pub enum ExtractError {
    /// The layer broke a rule or is malformed.
    Rejected(Rejection),
    /// Writing the staging directory failed.
    Store(Error),
}

impl From<Rejection> for ExtractError {
    fn from(r: Rejection) -> Self {
        ExtractError::Rejected(r)
    }
}

impl<'a> LayerExtractor<'a> {
    pub fn new(
        root: &'a Path,
        layer: &'a Digest,
        budget: &'a ExtractBudget,
        used: &'a BudgetUse,
    ) -> Self {
        Self {
            root,
            layer,
            budget,
            used,
            known_dirs: HashSet::new(),
            extracted: Extracted::default(),
            buffer: vec![0; 128 << 10],
        }
    }

    /// Extracts every entry of the tar stream `reader`. Returns what it wrote, and the hard
    /// links to make once every layer is extracted.
    ///
    /// Entries are read raw: GNU long names and links and PAX headers are applied here, each
    /// read only after its size passed [`MAX_HEADER_RECORD_BYTES`], so no header record is
    /// ever buffered beyond that (the `tar` crate would read one of any size into memory).
    pub fn extract<R: Read>(mut self, reader: R) -> Result<Extracted, ExtractError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| self.stream_error("reading the archive", e))?
            .raw(true);
        let mut pending = PendingNames::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_error("reading an entry header", e))?;
            self.count_entry()?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::GNULongName => {
                    pending.path = Some(self.read_name_record(&mut entry, "GNU long name")?);
                }
                tar::EntryType::GNULongLink => {
                    pending.link = Some(self.read_name_record(&mut entry, "GNU long link")?);
                }
                tar::EntryType::XHeader => {
                    let record = self.read_record(&mut entry, "PAX header")?;
                    self.apply_pax(&record, &mut pending)?;
                }
                // Global PAX headers hold nothing the release format uses.
                tar::EntryType::XGlobalHeader => {
                    self.read_record(&mut entry, "PAX global header")?;
                }
                _ => {
                    let names = std::mem::take(&mut pending);
                    self.check_pax_size(&names, &entry)?;
                    self.extract_entry(&mut entry, names)?;
                }
            }
        }
        if pending != PendingNames::default() {
            return Err(self
                .malformed("the archive ends with a long name or PAX header and no entry")
                .into());
        }
        Ok(self.extracted)
    }

    /// Reads one metadata record whole, after checking its announced size.
    fn read_record<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        what: &'static str,
    ) -> Result<Vec<u8>, ExtractError> {
        let size = entry.size();
        if size > MAX_HEADER_RECORD_BYTES {
            return Err(Rejection::BudgetExceeded {
                layer: self.layer.clone(),
                limit: "header record limit",
                detail: format!(
                    "a {what} of {size} bytes, over the {MAX_HEADER_RECORD_BYTES}-byte limit"
                ),
            }
            .into());
        }
        let mut record = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut record)
            .map_err(|e| self.stream_error("reading a header record", e))?;
        Ok(record)
    }

    /// A GNU long name or link: the record up to its first NUL.
    fn read_name_record<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        what: &'static str,
    ) -> Result<Vec<u8>, ExtractError> {
        let mut record = self.read_record(entry, what)?;
        if let Some(end) = record.iter().position(|&b| b == 0) {
            record.truncate(end);
        }
        Ok(record)
    }

    /// Takes `path`, `linkpath` and `size` from a PAX header; other keys (times, owners,
    /// extended attributes) are not part of what is extracted.
    fn apply_pax(&self, record: &[u8], pending: &mut PendingNames) -> Result<(), ExtractError> {
        for extension in tar::PaxExtensions::new(record) {
            let extension = extension.map_err(|e| self.stream_error("reading a PAX header", e))?;
            match extension.key_bytes() {
                b"path" => pending.path = Some(extension.value_bytes().to_vec()),
                b"linkpath" => pending.link = Some(extension.value_bytes().to_vec()),
                b"size" => {
                    let size = extension
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| self.malformed("a PAX size that is not a number"))?;
                    pending.size = Some(size);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Raw entries take their size from the ustar header; a PAX size that says otherwise would
    /// make this parser and another read different archives from the same bytes.
    fn check_pax_size<R: Read>(
        &self,
        names: &PendingNames,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        match names.size {
            Some(size) if size != entry.size() => Err(self
                .malformed(format!(
                    "a PAX size of {size} for an entry whose header says {}",
                    entry.size()
                ))
                .into()),
            _ => Ok(()),
        }
    }

    fn count_entry(&self) -> Result<(), Rejection> {
        let entries = self.used.entries.fetch_add(1, Ordering::Relaxed) + 1;
        if entries > self.budget.max_entries {
            return Err(Rejection::BudgetExceeded {
                layer: self.layer.clone(),
                limit: "entry count limit",
                detail: format!("more than {} entries", self.budget.max_entries),
            });
        }
        Ok(())
    }

    fn extract_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        names: PendingNames,
    ) -> Result<(), ExtractError> {
        let raw_name = names
            .path
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        check_length(&raw_name).map_err(|rule| Rejection::UnsafeEntry {
            layer: self.layer.clone(),
            entry: String::from_utf8_lossy(&raw_name[..256]).into_owned() + "…",
            rule,
        })?;
        let display = String::from_utf8_lossy(&raw_name).into_owned();
        let raw_link = names
            .link
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        let reject = |rule| Rejection::UnsafeEntry {
            layer: self.layer.clone(),
            entry: display.clone(),
            rule,
        };
        let kind = entry.header().entry_type();
        let path = EntryPath::parse(&raw_name).map_err(reject)?;
        let mode = entry
            .header()
            .mode()
            .map_err(|e| self.stream_error("reading a mode", e))?;
        if mode & 0o7000 != 0 {
            return Err(reject(UnsafeEntryRule::PrivilegedMode { mode }).into());
        }
        let dest = self.root.join(path.as_path());
        match kind {
            tar::EntryType::Directory => self.ensure_dir(path.as_path(), &display),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.ensure_parent(path.as_path(), &display)?;
                let item = self.write_file(entry, &dest, mode & 0o111 != 0, &display)?;
                self.extracted
                    .items
                    .insert(manifest_name(path.as_path()), item);
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = link_name(raw_link).map_err(reject)?;
                check_symlink_target(path.as_path(), &target).map_err(reject)?;
                self.ensure_parent(path.as_path(), &display)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| self.create_error(e, &dest, &display))?;
                self.extracted.items.insert(
                    manifest_name(path.as_path()),
                    TreeItem {
                        kind: 'l',
                        mode: SYMLINK_MODE,
                        size: target.len() as u64,
                        content: hex::encode(Sha256::digest(target.as_bytes())),
                    },
                );
                Ok(())
            }
            tar::EntryType::Link => {
                let target = link_name(raw_link).map_err(reject)?;
                EntryPath::parse(target.as_bytes()).map_err(|_| {
                    reject(UnsafeEntryRule::HardLinkTarget {
                        target: target.clone(),
                    })
                })?;
                self.ensure_parent(path.as_path(), &display)?;
                self.extracted.hard_links.push(PendingHardLink {
                    layer: self.layer.clone(),
                    entry: display.clone(),
                    link: path.as_path().to_owned(),
                    target,
                });
                Ok(())
            }
            other => Err(reject(UnsafeEntryRule::SpecialFile {
                kind: format!("{other:?}"),
            })
            .into()),
        }
    }

    /// Writes a file, created with its sealed mode (the descriptor stays writable), and
    /// returns its manifest item.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dest: &Path,
        executable: bool,
        display: &str,
    ) -> Result<TreeItem, ExtractError> {
        let mode = sealed_file_mode(executable);
        // O_EXCL refuses an existing file or symlink at the last component; O_NOFOLLOW makes
        // that explicit.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dest)
            .map_err(|e| self.create_error(e, dest, display))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error("reading file data", e)),
            };
            file.write_all(&self.buffer[..n])
                .map_err(|e| ExtractError::Store(Error::store("writing", dest, e)))?;
            hasher.update(&self.buffer[..n]);
            size += n as u64;
        }
        start_writeback(&file);
        Ok(TreeItem {
            kind: 'f',
            mode,
            size,
            content: hex::encode(hasher.finalize()),
        })
    }

    fn ensure_parent(&mut self, path: &Path, display: &str) -> Result<(), ExtractError> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.ensure_dir(parent, display),
            _ => Ok(()),
        }
    }

    /// Makes `path` (relative to the root) and its ancestors real directories, outermost
    /// first (a loop, not recursion: depth is the input's to choose).
    fn ensure_dir(&mut self, path: &Path, display: &str) -> Result<(), ExtractError> {
        let missing: Vec<&Path> = path
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !self.known_dirs.contains(*p))
            .collect();
        for dir in missing.into_iter().rev() {
            let full = self.root.join(dir);
            match std::fs::create_dir(&full) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let metadata = std::fs::symlink_metadata(&full)
                        .map_err(|e| ExtractError::Store(Error::store("inspecting", &full, e)))?;
                    if !metadata.is_dir() {
                        return Err(self.reject(display, UnsafeEntryRule::ThroughSymlink).into());
                    }
                }
                Err(e) => return Err(ExtractError::Store(Error::store("creating", &full, e))),
            }
            self.known_dirs.insert(dir.to_owned());
            if dir.starts_with(TOOLCHAIN_ROOT) {
                self.extracted.items.insert(
                    manifest_name(dir),
                    TreeItem {
                        kind: 'd',
                        mode: SEALED_DIR_MODE,
                        size: 0,
                        content: "-".to_owned(),
                    },
                );
            }
        }
        Ok(())
    }

    fn create_error(&self, e: io::Error, dest: &Path, display: &str) -> ExtractError {
        if e.kind() == io::ErrorKind::AlreadyExists {
            self.reject(display, UnsafeEntryRule::Duplicate).into()
        } else {
            ExtractError::Store(Error::store("creating", dest, e))
        }
    }

    fn reject(&self, display: &str, rule: UnsafeEntryRule) -> Rejection {
        Rejection::UnsafeEntry {
            layer: self.layer.clone(),
            entry: display.to_owned(),
            rule,
        }
    }

    fn stream_error(&self, what: &str, e: io::Error) -> ExtractError {
        budget_or_malformed(self.layer, what, e).into()
    }

    fn malformed(&self, reason: impl Into<String>) -> Rejection {
        Rejection::malformed(format!("layer {}", self.layer), reason)
    }
}

/// Starts writing the file's pages to disk now, without waiting, so the single `syncfs` before
/// the store accepts the entry finds little left to flush. Best effort: the `syncfs` is what
/// guarantees durability.
fn start_writeback(file: &std::fs::File) {
    // SAFETY: the descriptor is open for the duration of the call; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
            0,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Maps a read error of the decompressed stream to the rule it broke.
pub fn budget_or_malformed(layer: &Digest, what: &str, e: io::Error) -> Rejection {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<BudgetExhausted>())
    {
        Some(exhausted) => Rejection::BudgetExceeded {
            layer: layer.clone(),
            limit: "unpacked size limit",
            detail: format!("more than {} bytes unpacked", exhausted.0),
        },
        None => Rejection::malformed(format!("layer {layer}"), format!("{what}: {e}")),
    }
}

fn link_name(raw: Option<Vec<u8>>) -> Result<String, UnsafeEntryRule> {
    let raw = raw.ok_or(UnsafeEntryRule::InvalidName)?;
    check_length(&raw)?;
    String::from_utf8(raw).map_err(|_| UnsafeEntryRule::InvalidName)
}

/// What GNU long-name records and PAX headers said about the entry that follows them.
#[derive(Debug, Default, PartialEq, Eq)]
struct PendingNames {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Creates the deferred hard links, each only to a regular file reached through real
/// directories, and gives each the manifest item of the file it links to.
pub fn create_hard_links(
    root: &Path,
    links: &[PendingHardLink],
    items: &mut BTreeMap<String, TreeItem>,
) -> Result<(), ExtractError> {
    for link in links {
        let reject = |rule| Rejection::UnsafeEntry {
            layer: link.layer.clone(),
            entry: link.entry.clone(),
            rule,
        };
        let bad_target = || {
            reject(UnsafeEntryRule::HardLinkTarget {
                target: link.target.clone(),
            })
        };
        let target = EntryPath::parse(link.target.as_bytes()).map_err(|_| bad_target())?;
        let mut walked = root.to_path_buf();
        let components: Vec<_> = target.as_path().components().collect();
        for (i, component) in components.iter().enumerate() {
            walked.push(component);
            let metadata = std::fs::symlink_metadata(&walked).map_err(|_| bad_target())?;
            let last = i + 1 == components.len();
            if (last && !metadata.is_file()) || (!last && !metadata.is_dir()) {
                return Err(bad_target().into());
            }
        }
        let dest = root.join(&link.link);
        std::fs::hard_link(&walked, &dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                ExtractError::Rejected(reject(UnsafeEntryRule::Duplicate))
            } else {
                ExtractError::Store(Error::store("linking", &dest, e))
            }
        })?;
        // The target is a regular file this extraction wrote (checked above), so its item is
        // recorded, unless it is itself a link made earlier in this loop.
        let item = items.get(&manifest_name(target.as_path())).cloned();
        let item = match item {
            Some(item) => item,
            None => return Err(bad_target().into()),
        };
        items.insert(manifest_name(&link.link), item);
    }
    Ok(())
}

/// The manifest of what the layers wrote, once their hard links are made.
pub fn manifest_of(layers: Vec<Extracted>, root: &Path) -> Result<TreeManifest, ExtractError> {
    let mut items = BTreeMap::new();
    let mut links = Vec::new();
    for layer in layers {
        items.extend(layer.items);
        links.extend(layer.hard_links);
    }
    create_hard_links(root, &links, &mut items)?;
    Ok(TreeManifest::from_items(items))
}

/// Marker error: the shared unpacked-size budget ran out.
#[derive(Debug)]
pub struct BudgetExhausted(pub u64);

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unpacked size limit of {} bytes exceeded", self.0)
    }
}

impl std::error::Error for BudgetExhausted {}

/// Counts decompressed bytes against the shared budget.
pub struct BudgetedReader<'a, R> {
    inner: R,
    budget: &'a ExtractBudget,
    used: &'a BudgetUse,
}

impl<'a, R> BudgetedReader<'a, R> {
    pub fn new(inner: R, budget: &'a ExtractBudget, used: &'a BudgetUse) -> Self {
        Self {
            inner,
            budget,
            used,
        }
    }
}

impl<R: Read> Read for BudgetedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self
            .used
            .unpacked_bytes
            .fetch_add(n as u64, Ordering::Relaxed)
            + n as u64;
        if total > self.budget.max_unpacked_bytes {
            return Err(io::Error::other(BudgetExhausted(
                self.budget.max_unpacked_bytes,
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_path_accepts_names_under_the_root() {
        let p = EntryPath::parse(b"./toolchain//bin/./go").unwrap();
        assert_eq!(p.as_path(), Path::new("toolchain/bin/go"));
    }

    #[test]
    fn entry_path_rejected_if_absolute_parent_outside_or_control() {
        let cases: [(&[u8], UnsafeEntryRule); 7] = [
            (b"/etc/passwd", UnsafeEntryRule::AbsolutePath),
            (b"toolchain/../etc", UnsafeEntryRule::ParentComponent),
            (b"../toolchain/x", UnsafeEntryRule::ParentComponent),
            (b"other/file", UnsafeEntryRule::OutsideRoot),
            (b"toolchain/a\nb", UnsafeEntryRule::InvalidName),
            (b"toolchain/\xff", UnsafeEntryRule::InvalidName),
            (b"toolchain/.wh.go", UnsafeEntryRule::Whiteout),
        ];
        for (name, rule) in cases {
            assert_eq!(
                EntryPath::parse(name),
                Err(rule),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn symlink_rejected_if_target_escapes_root() {
        let link = Path::new("toolchain/a/link");
        for bad in ["/etc", "../../x", "../..", "b/../../..", "b/../c", ""] {
            assert!(check_symlink_target(link, bad).is_err(), "{bad} accepted");
        }
        for good in ["../x", "..", "b/c", "./b", "../a/b"] {
            assert!(check_symlink_target(link, good).is_ok(), "{good} refused");
        }
    }

    /// Extracts `tar` bytes into a fresh directory; returns the directory and the result.
    fn extract_bytes(tar: &[u8]) -> (tempfile::TempDir, Result<Extracted, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let layer = Digest::of(tar);
        let budget = ExtractBudget::default();
        let used = BudgetUse::default();
        let result = LayerExtractor::new(dir.path(), &layer, &budget, &used).extract(tar);
        (dir, result)
    }

    /// A header block announcing `size` bytes of type `kind`, followed by `body`.
    fn raw_entry(name: &str, kind: tar::EntryType, size: u64, body: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        bytes
    }

    /// One PAX record, `<length> <key>=<value>\n`, where the length counts itself.
    fn pax_record(key: &str, value: &str) -> String {
        let rest = format!(" {key}={value}\n");
        let mut length = rest.len() + 1;
        while format!("{length}{rest}").len() != length {
            length += 1;
        }
        format!("{length}{rest}")
    }

    fn rejection<T: std::fmt::Debug>(result: Result<T, ExtractError>) -> Rejection {
        match result {
            Err(ExtractError::Rejected(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn manifest_from_the_extraction_is_the_one_read_back_from_disk() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, mode: u32, body: &[u8], link: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(body.len() as u64);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, name, body).unwrap();
        };
        // Parents implied by a file, an explicit directory, an executable, an empty file, a
        // symlink, and a hard link to a file in another directory.
        add(
            "toolchain/bin/go",
            tar::EntryType::Regular,
            0o755,
            b"#!/bin/sh\n",
            "",
        );
        add(
            "toolchain/src/fmt/",
            tar::EntryType::Directory,
            0o700,
            b"",
            "",
        );
        add(
            "toolchain/src/fmt/print.go",
            tar::EntryType::Regular,
            0o600,
            b"package fmt\n",
            "",
        );
        add(
            "toolchain/src/empty",
            tar::EntryType::Regular,
            0o644,
            b"",
            "",
        );
        add(
            "toolchain/lib/fmt",
            tar::EntryType::Symlink,
            0o777,
            b"",
            "../src/fmt",
        );
        add(
            "toolchain/lib/print.go",
            tar::EntryType::Link,
            0o644,
            b"",
            "toolchain/src/fmt/print.go",
        );
        let tar = builder.into_inner().unwrap();
        let (dir, result) = extract_bytes(&tar);
        let manifest = manifest_of(vec![result.unwrap()], dir.path()).unwrap();
        crate::staging::seal_directories(&dir.path().join(TOOLCHAIN_ROOT), &manifest).unwrap();
        let on_disk = TreeManifest::build(&dir.path().join(TOOLCHAIN_ROOT)).unwrap();
        assert_eq!(manifest, on_disk);
        assert_eq!(manifest.get("bin/go").unwrap().mode, 0o555);
        assert_eq!(manifest.get("src/fmt/print.go").unwrap().mode, 0o444);
        assert_eq!(
            manifest.get("lib/print.go"),
            manifest.get("src/fmt/print.go")
        );
        assert_eq!(manifest.get(".").unwrap().kind, 'd');
        crate::staging::remove_tree(dir.path()).unwrap();
    }

    #[test]
    fn pax_header_rejected_if_it_announces_more_than_the_record_cap() {
        // 6 GiB announced, a few bytes present: refused from the header, nothing buffered.
        let tar = raw_entry(
            "pax",
            tar::EntryType::XHeader,
            6 << 30,
            b"30 path=toolchain/aaaaaaaaaa\n",
        );
        let err = rejection(extract_bytes(&tar).1);
        assert!(
            matches!(
                &err,
                Rejection::BudgetExceeded {
                    limit: "header record limit",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn gnu_long_name_rejected_if_over_the_record_cap() {
        let name = vec![b'a'; (MAX_HEADER_RECORD_BYTES + 1) as usize];
        let tar = raw_entry(
            "././@LongLink",
            tar::EntryType::GNULongName,
            name.len() as u64,
            &name,
        );
        let err = rejection(extract_bytes(&tar).1);
        assert!(matches!(&err, Rejection::BudgetExceeded { .. }), "{err}");
    }

    #[test]
    fn long_names_from_gnu_and_pax_records_name_the_next_entry() {
        let deep = format!("toolchain/{}/file", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder.append_data(&mut header, &deep, &b"hi"[..]).unwrap();
        let pax_name = format!("toolchain/{}/pax", "p".repeat(150));
        let record = pax_record("path", &pax_name);
        let mut tar = builder.into_inner().unwrap();
        tar.truncate(tar.len() - 1024);
        tar.extend(raw_entry(
            "pax",
            tar::EntryType::XHeader,
            record.len() as u64,
            record.as_bytes(),
        ));
        tar.extend(raw_entry("short", tar::EntryType::Regular, 0, b""));
        let (dir, result) = extract_bytes(&tar);
        result.unwrap();
        assert_eq!(std::fs::read(dir.path().join(&deep)).unwrap(), b"hi");
        assert!(dir.path().join(&pax_name).is_file());
    }

    #[test]
    fn pax_size_rejected_if_it_disagrees_with_the_header() {
        let record = pax_record("size", "100");
        let mut tar = raw_entry(
            "pax",
            tar::EntryType::XHeader,
            record.len() as u64,
            record.as_bytes(),
        );
        tar.extend(raw_entry(
            "toolchain/a",
            tar::EntryType::Regular,
            4,
            b"four",
        ));
        let err = rejection(extract_bytes(&tar).1);
        assert!(err.to_string().contains("a PAX size of 100"), "{err}");
    }

    #[test]
    fn entry_path_rejected_if_too_deep_or_too_long() {
        let deep = format!("toolchain{}", "/d".repeat(MAX_PATH_DEPTH));
        assert!(matches!(
            EntryPath::parse(deep.as_bytes()),
            Err(UnsafeEntryRule::PathTooDeep { .. })
        ));
        let long = format!("toolchain/{}", "l".repeat(MAX_PATH_BYTES));
        assert!(matches!(
            EntryPath::parse(long.as_bytes()),
            Err(UnsafeEntryRule::PathTooLong { .. })
        ));
    }

    #[test]
    fn archive_rejected_if_it_ends_after_a_long_name() {
        let tar = raw_entry(
            "././@LongLink",
            tar::EntryType::GNULongName,
            12,
            b"toolchain/a\0",
        );
        let err = rejection(extract_bytes(&tar).1);
        assert!(err.to_string().contains("ends with a long name"), "{err}");
    }

    proptest! {
        /// Whatever the name, an accepted path is relative, has no `..`, and stays under the root.
        #[test]
        fn accepted_entry_paths_stay_under_the_root(name in "[a-z./]{0,12}(/\\.\\.)?[a-z./]{0,12}") {
            let prefixed = format!("toolchain/{name}");
            for candidate in [name.as_str(), prefixed.as_str()] {
                if let Ok(path) = EntryPath::parse(candidate.as_bytes()) {
                    prop_assert!(path.as_path().is_relative());
                    prop_assert!(path.as_path().starts_with(TOOLCHAIN_ROOT));
                    prop_assert!(!path.as_path().components().any(|c| c == std::path::Component::ParentDir));
                }
            }
        }

        /// An accepted symlink target, resolved lexically from the link's directory, stays
        /// under the root.
        #[test]
        fn accepted_symlink_targets_resolve_under_the_root(
            depth in 0usize..4,
            target in "(\\.\\./){0,5}[a-z]{0,3}(/\\.\\.)?(/[a-z]{1,3})?",
        ) {
            let mut link = PathBuf::from(TOOLCHAIN_ROOT);
            for i in 0..depth { link.push(format!("d{i}")); }
            link.push("link");
            if check_symlink_target(&link, &target).is_ok() {
                let mut resolved: Vec<String> = link.parent().unwrap()
                    .components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                for part in target.split('/') {
                    match part {
                        "" | "." => {}
                        ".." => { resolved.pop(); }
                        other => resolved.push(other.to_owned()),
                    }
                }
                prop_assert!(resolved.first().map(String::as_str) == Some(TOOLCHAIN_ROOT));
            }
        }
    }
}
