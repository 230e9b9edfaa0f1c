//! Deterministic layers: the same entries always give the same bytes. Every header gets the
//! same mtime, uid/gid 0, no user or group names, and mode 0755 (directories, executables) or
//! 0644; entries come in walk order, each layer self-contained (it carries its ancestors).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};
use tcdist_core::Digest;
use tcdist_oci::release::{Compression, TOOLCHAIN_ROOT};

use super::tree::{EntryKind, TreeEntry};

#[derive(Clone, Debug)]
pub struct LayerSettings {
    pub compression: Compression,
    pub level: i32,
    pub mtime: u64,
}

/// A finished layer: its compressed digest and size, and its uncompressed digest (diff_id).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// Writes the tar of `entries` (from `tree`) compressed to `out`.
pub fn write_layer(
    tree: &Path,
    entries: &[&TreeEntry],
    settings: &LayerSettings,
    out: &Path,
) -> Result<LayerBlob> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(256 << 10, file));
    let (diff_id, compressed) = match settings.compression {
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(compressed, settings.level)?;
            // Frame checksums are redundant with the layer digest.
            encoder.include_checksum(false)?;
            let (diff_id, encoder) = write_tar(tree, entries, settings, encoder)?;
            (diff_id, encoder.finish()?)
        }
        Compression::Gzip => {
            let level = flate2::Compression::new(settings.level.clamp(0, 9) as u32);
            // A fixed header (no mtime, no name) keeps gzip output deterministic.
            let encoder = flate2::GzBuilder::new().mtime(0).write(compressed, level);
            let (diff_id, encoder) = write_tar(tree, entries, settings, encoder)?;
            (diff_id, encoder.finish()?)
        }
    };
    let (digest, size, mut inner) = compressed.finish();
    inner.flush()?;
    inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("syncing {}", out.display()))?;
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
    })
}

fn write_tar<W: Write>(
    tree: &Path,
    entries: &[&TreeEntry],
    settings: &LayerSettings,
    sink: W,
) -> Result<(Digest, W)> {
    let mut builder = tar::Builder::new(HashingWriter::new(sink));
    let mut emitted: HashSet<String> = HashSet::new();
    for entry in entries {
        let path = format!("{TOOLCHAIN_ROOT}/{}", entry.rel);
        emit_ancestors(&mut builder, &path, settings, &mut emitted)?;
        match &entry.kind {
            EntryKind::Dir => {
                if emitted.insert(path.clone()) {
                    append_dir(&mut builder, &path, settings)?;
                }
            }
            EntryKind::File { size, executable } => {
                let disk = entry.disk_path(tree);
                let file =
                    File::open(&disk).with_context(|| format!("opening {}", disk.display()))?;
                let mut header = header(
                    tar::EntryType::Regular,
                    if *executable { 0o755 } else { 0o644 },
                    settings,
                );
                header.set_size(*size);
                let mut reader = ExactReader::new(file, *size, disk.clone());
                builder
                    .append_data(&mut header, &path, &mut reader)
                    .with_context(|| format!("archiving {}", disk.display()))?;
                reader.finish()?;
            }
            EntryKind::Generated { bytes } => {
                let mut header = header(tar::EntryType::Regular, 0o644, settings);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, &path, bytes.as_slice())?;
            }
            EntryKind::Symlink { target } => {
                let mut header = header(tar::EntryType::Symlink, 0o777, settings);
                builder.append_link(&mut header, &path, target)?;
            }
        }
    }
    let hashing = builder.into_inner()?;
    let (diff_id, _, sink) = hashing.finish();
    Ok((diff_id, sink))
}

fn emit_ancestors<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    settings: &LayerSettings,
    emitted: &mut HashSet<String>,
) -> Result<()> {
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i;
        let ancestor = &path[..end];
        if emitted.insert(ancestor.to_owned()) {
            append_dir(builder, ancestor, settings)?;
        }
        end += 1;
    }
    Ok(())
}

fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    settings: &LayerSettings,
) -> Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755, settings);
    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, settings: &LayerSettings) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(settings.mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header
}

/// Reads exactly `size` bytes, failing if the file changed size since it was listed
/// (a layer whose header disagrees with its data would be corrupt).
struct ExactReader {
    inner: io::Take<File>,
    remaining: u64,
    path: PathBuf,
}

impl ExactReader {
    fn new(file: File, size: u64, path: PathBuf) -> Self {
        Self {
            inner: file.take(size),
            remaining: size,
            path,
        }
    }

    fn finish(self) -> Result<()> {
        if self.remaining != 0 {
            bail!("{} shrank while it was being archived", self.path.display());
        }
        let mut probe = [0u8; 1];
        if self.inner.into_inner().read(&mut probe)? != 0 {
            bail!("{} grew while it was being archived", self.path.display());
        }
        Ok(())
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.remaining -= n as u64;
        if n == 0 && self.remaining != 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path.display()),
            ));
        }
        Ok(n)
    }
}

/// Hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
