//! Reads a toolchain tree from disk: sorted entries with the metadata that layers keep
//! (kind, size, exec bit, symlink target) and the file stamps the layer cache keys on.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tcdist_oci::release::TOOLCHAIN_ROOT;
use tcdist_store::extract::check_symlink_target;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        executable: bool,
    },
    Symlink {
        target: String,
    },
    /// Bytes that are not on disk (a generated `TOOLCHAIN.json`).
    Generated {
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct TreeEntry {
    /// Path relative to the tree, `/`-separated.
    pub rel: String,
    pub kind: EntryKind,
    /// What changes when the file does (mtime, ctime, inode, size); only for the cache key.
    pub stamp: [i64; 5],
}

impl TreeEntry {
    pub fn disk_path(&self, tree: &Path) -> PathBuf {
        tree.join(&self.rel)
    }

    /// Bytes of content this entry adds to a layer.
    pub fn content_size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::Generated { bytes } => bytes.len() as u64,
            EntryKind::Dir | EntryKind::Symlink { .. } => 0,
        }
    }
}

/// Walks `tree` in a fixed order (components sorted bytewise). Refuses what a release cannot
/// carry: names that are not UTF-8, device files, fifos, sockets, and symlinks that would
/// leave the toolchain root.
pub fn read_tree(tree: &Path) -> Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    for item in sorted_walk(tree) {
        let item = item.with_context(|| format!("reading tree {}", tree.display()))?;
        let rel_path = item
            .path()
            .strip_prefix(tree)
            .expect("walk stays in the tree");
        let Some(rel) = rel_path.to_str() else {
            bail!("{}: file name is not UTF-8", item.path().display());
        };
        let metadata = item
            .path()
            .symlink_metadata()
            .with_context(|| format!("inspecting {}", item.path().display()))?;
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File {
                size: metadata.len(),
                executable: metadata.permissions().mode() & 0o111 != 0,
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(item.path())
                .with_context(|| format!("reading symlink {}", item.path().display()))?;
            let Some(target) = target.to_str() else {
                bail!("{}: symlink target is not UTF-8", item.path().display());
            };
            check_symlink_target(&Path::new(TOOLCHAIN_ROOT).join(rel), target).with_context(
                || {
                    format!(
                        "{}: a release cannot carry this symlink",
                        item.path().display()
                    )
                },
            )?;
            EntryKind::Symlink {
                target: target.to_owned(),
            }
        } else {
            bail!(
                "{}: device files, fifos and sockets cannot be part of a release",
                item.path().display()
            );
        };
        entries.push(TreeEntry {
            rel: rel.to_owned(),
            kind,
            stamp: [
                metadata.mtime(),
                metadata.mtime_nsec(),
                metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
                metadata.ino() as i64,
                metadata.len() as i64,
            ],
        });
    }
    Ok(entries)
}

/// A walk below `root` in release order: depth first, siblings sorted bytewise, symlinks not
/// followed. Everything that digests or archives a tree walks it this way.
pub fn sorted_walk(root: &Path) -> walkdir::WalkDir {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        })
}

/// Adds a generated file, keeping the order `read_tree` uses.
pub fn insert_generated(entries: &mut Vec<TreeEntry>, rel: &str, bytes: Vec<u8>) {
    let position = entries
        .binary_search_by(|e| component_order(&e.rel, rel))
        .unwrap_or_else(|p| p);
    entries.insert(
        position,
        TreeEntry {
            rel: rel.to_owned(),
            kind: EntryKind::Generated { bytes },
            stamp: [0; 5],
        },
    );
}

/// The walk's order: depth-first, siblings sorted bytewise.
fn component_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}
