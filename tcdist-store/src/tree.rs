//! The manifest of an installed toolchain tree: one line per path, in path order, with its
//! type, mode, size and content hash. Its digest is recorded with the entry at install, `fsck`
//! rebuilds it from the disk and compares, and `env` checks the executable it runs against it.
//! The tree is read without following symbolic links: a link is recorded as its target.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use tcdist_core::digest::Digest;

/// The manifest's file name, beside the entry's record.
pub const TREE_FILE: &str = "tree.txt";

/// Files hashed at once: enough to keep a disk or two cores busy.
const HASH_WORKERS: usize = 4;
/// Read buffer per hashing worker.
const HASH_BUFFER: usize = 256 << 10;

/// One path of the tree, as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeItem {
    /// `d` directory, `f` regular file, `l` symbolic link, `o` anything else.
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    /// SHA-256 of a file's content or a link's target; `-` for the rest.
    pub content: String,
}

/// The manifest: relative path (`.` for the root) to what is there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeManifest {
    items: BTreeMap<String, TreeItem>,
}

impl TreeManifest {
    /// A manifest of the given items (names relative to the root, `.` for the root).
    pub fn from_items(items: BTreeMap<String, TreeItem>) -> Self {
        Self { items }
    }

    /// The directories, deepest first.
    pub fn directories_deepest_first(&self) -> Vec<&str> {
        let mut directories: Vec<&str> = self
            .items
            .iter()
            .filter(|(_, item)| item.kind == 'd')
            .map(|(name, _)| name.as_str())
            .collect();
        directories.sort_by_key(|name| {
            std::cmp::Reverse(name.matches('/').count() + usize::from(*name != "."))
        });
        directories
    }

    /// Reads the tree under `root` and hashes every file (several at once).
    pub fn build(root: &Path) -> std::io::Result<Self> {
        let mut items = BTreeMap::new();
        let mut files = Vec::new();
        // An explicit stack: the tree's depth came from a layer.
        let mut pending = vec![(root.to_owned(), ".".to_owned())];
        while let Some((path, name)) = pending.pop() {
            let metadata = std::fs::symlink_metadata(&path)?;
            let kind = metadata.file_type();
            let (kind, content) = if kind.is_dir() {
                for child in std::fs::read_dir(&path)? {
                    let child = child?;
                    let child_name = child.file_name().into_string().map_err(|raw| {
                        std::io::Error::other(format!("{raw:?} in {name} is not UTF-8"))
                    })?;
                    let relative = if name == "." {
                        child_name
                    } else {
                        format!("{name}/{child_name}")
                    };
                    pending.push((child.path(), relative));
                }
                ('d', "-".to_owned())
            } else if kind.is_file() {
                files.push((path, name.clone()));
                ('f', String::new())
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)?;
                let digest = Sha256::digest(target.as_os_str().as_encoded_bytes());
                ('l', hex::encode(digest))
            } else {
                ('o', "-".to_owned())
            };
            items.insert(
                name,
                TreeItem {
                    kind,
                    mode: metadata.mode() & 0o7777,
                    size: if kind == 'd' { 0 } else { metadata.size() },
                    content,
                },
            );
        }
        for (name, (size, content)) in hash_files(&files)? {
            let item = items.get_mut(&name).expect("every file was listed");
            item.size = size;
            item.content = content;
        }
        Ok(Self { items })
    }

    /// The manifest's text: `KIND MODE SIZE CONTENT PATH` lines in path order. Paths hold no
    /// control characters (extraction refuses them), so a line is one path.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (path, item) in &self.items {
            text.push_str(&format!(
                "{} {:04o} {} {} {}\n",
                item.kind, item.mode, item.size, item.content, path
            ));
        }
        text
    }

    /// Parses a manifest's text; `None` if any line is malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut items = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(5, ' ');
            let kind = fields.next()?;
            let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
            let size = fields.next()?.parse().ok()?;
            let content = fields.next()?.to_owned();
            let path = fields.next()?.to_owned();
            let mut kind_chars = kind.chars();
            let kind = kind_chars.next()?;
            if kind_chars.next().is_some() || !"dflo".contains(kind) {
                return None;
            }
            items.insert(
                path,
                TreeItem {
                    kind,
                    mode,
                    size,
                    content,
                },
            );
        }
        Some(Self { items })
    }

    pub fn digest(&self) -> Digest {
        Digest::of(self.to_text().as_bytes())
    }

    pub fn get(&self, path: &str) -> Option<&TreeItem> {
        self.items.get(path)
    }

    /// What differs from `expected`, one phrase per path (at most `limit`, then a count).
    pub fn differences(&self, expected: &TreeManifest, limit: usize) -> Vec<String> {
        let mut found = Vec::new();
        for (path, want) in &expected.items {
            let Some(have) = self.items.get(path) else {
                found.push(format!("{path}: missing"));
                continue;
            };
            let mut changes = Vec::new();
            if have.kind != want.kind {
                changes.push(format!("type {} instead of {}", have.kind, want.kind));
            }
            if have.mode != want.mode {
                changes.push(format!(
                    "mode {:04o} instead of {:04o}",
                    have.mode, want.mode
                ));
            }
            if have.kind == want.kind && (have.size != want.size || have.content != want.content) {
                changes.push("content differs".to_owned());
            }
            if !changes.is_empty() {
                found.push(format!("{path}: {}", changes.join(", ")));
            }
        }
        for path in self.items.keys() {
            if !expected.items.contains_key(path) {
                found.push(format!("{path}: added"));
            }
        }
        if found.len() > limit {
            let more = found.len() - limit;
            found.truncate(limit);
            found.push(format!("and {more} more"));
        }
        found
    }
}

/// SHA-256 of a file read through `file`, with its size.
pub fn hash_reader(file: impl Read) -> std::io::Result<(u64, String)> {
    hash_reader_with(file, &mut vec![0u8; HASH_BUFFER])
}

/// [`hash_reader`] with a buffer the caller reuses across files.
fn hash_reader_with(mut file: impl Read, buffer: &mut [u8]) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Opens a file of an entry for reading, refusing a symbolic link in its place.
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn hash_files(files: &[(PathBuf, String)]) -> std::io::Result<Vec<(String, (u64, String))>> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(files.len()));
    let workers = HASH_WORKERS.min(files.len()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<()> {
                    let mut buffer = vec![0u8; HASH_BUFFER];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, name)) = files.get(i) else {
                            return Ok(());
                        };
                        let hashed =
                            hash_reader_with(open_no_follow(path)?, &mut buffer).map_err(|e| {
                                std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                            })?;
                        results
                            .lock()
                            .expect("no worker panics holding the lock")
                            .push((name.clone(), hashed));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|handle| handle.join().expect("hash workers do not panic"))
    })?;
    Ok(results.into_inner().expect("no worker panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/go"), "#!/bin/sh\necho go\n").unwrap();
        std::fs::set_permissions(root.join("bin/go"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        std::fs::write(root.join("VERSION"), "go1.26\n").unwrap();
        std::os::unix::fs::symlink("bin/go", root.join("go-link")).unwrap();
        dir
    }

    #[test]
    fn manifest_text_round_trips_and_names_every_path() {
        let dir = sample_tree();
        let manifest = TreeManifest::build(dir.path()).unwrap();
        let text = manifest.to_text();
        assert_eq!(TreeManifest::parse(&text).unwrap(), manifest);
        let paths: Vec<&str> = text
            .lines()
            .map(|l| l.splitn(5, ' ').nth(4).unwrap())
            .collect();
        assert_eq!(paths, [".", "VERSION", "bin", "bin/go", "go-link"]);
        let go = manifest.get("bin/go").unwrap();
        assert_eq!((go.kind, go.mode, go.size), ('f', 0o555, 18));
    }

    #[test]
    fn differences_name_changed_content_mode_added_and_missing_paths() {
        let dir = sample_tree();
        let before = TreeManifest::build(dir.path()).unwrap();
        let root = dir.path();
        std::fs::set_permissions(root.join("bin/go"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(root.join("bin/go"), "#!/bin/sh\necho planted\n").unwrap();
        std::fs::set_permissions(root.join("VERSION"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::remove_file(root.join("go-link")).unwrap();
        std::fs::write(root.join("extra"), "x").unwrap();
        let after = TreeManifest::build(root).unwrap();
        assert_ne!(after.digest(), before.digest());
        let found = after.differences(&before, 10);
        assert!(
            found.contains(&"bin/go: mode 0755 instead of 0555, content differs".to_owned()),
            "{found:?}"
        );
        assert!(found.contains(&"go-link: missing".to_owned()), "{found:?}");
        assert!(found.contains(&"extra: added".to_owned()), "{found:?}");
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("VERSION: mode 0600 instead of")),
            "{found:?}"
        );
    }

    #[test]
    fn same_size_content_change_is_found() {
        let dir = sample_tree();
        let before = TreeManifest::build(dir.path()).unwrap();
        std::fs::write(dir.path().join("VERSION"), "go1.27\n").unwrap();
        let after = TreeManifest::build(dir.path()).unwrap();
        assert_eq!(after.differences(&before, 10), ["VERSION: content differs"]);
    }

    #[test]
    fn parse_refuses_malformed_lines() {
        assert!(TreeManifest::parse("f 0644 3 abc").is_none());
        assert!(TreeManifest::parse("x 0644 3 abc path").is_none());
        assert!(TreeManifest::parse("f 0999 3 abc path").is_none());
        assert!(TreeManifest::parse("f 0644 -1 abc path").is_none());
    }
}
