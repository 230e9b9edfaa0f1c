//! The local blob cache: content-addressed blobs (`blobs/sha256/<hex>`) and, per tree state,
//! the layers it produced (`trees/<key>.json`). A republish of an unchanged tree finds its
//! layers here instead of archiving and compressing it again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};
pub use tcdist_core::Digest;
use tcdist_oci::release::Descriptor;

use super::layer::LayerBlob;

pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["blobs/sha256", "trees", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// A new file to write a blob into before its digest is known.
    pub fn temp_file(&self) -> Result<tempfile::TempPath> {
        Ok(tempfile::Builder::new()
            .prefix("blob.")
            .tempfile_in(self.root.join("tmp"))
            .context("creating a temporary blob file")?
            .into_temp_path())
    }

    /// Moves a finished temporary file to its content address.
    pub fn adopt(&self, temp: tempfile::TempPath, digest: &Digest) -> Result<PathBuf> {
        let path = self.blob_path(digest);
        temp.persist(&path)
            .with_context(|| format!("storing blob {}", path.display()))?;
        Ok(path)
    }

    /// Stores a small document (config, manifest, index) and describes it.
    pub fn put_document(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let descriptor = Descriptor::of_document(media_type, bytes);
        let path = self.blob_path(&descriptor.digest);
        if !path.exists() {
            let temp = self.temp_file()?;
            std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
            self.adopt(temp, &descriptor.digest)?;
        }
        Ok(descriptor)
    }

    /// The layers recorded for a tree state, if all their blobs are still here.
    pub fn cached_layers(&self, key: &Digest) -> Option<Vec<(String, LayerBlob)>> {
        let bytes = std::fs::read(self.root.join("trees").join(key.hex())).ok()?;
        let layers: Vec<(String, LayerBlob)> = serde_json::from_slice(&bytes).ok()?;
        layers
            .iter()
            .all(|(_, blob)| self.blob_path(&blob.digest).exists())
            .then_some(layers)
    }

    pub fn record_layers(&self, key: &Digest, layers: &[(String, LayerBlob)]) -> Result<()> {
        let temp = self.temp_file()?;
        std::fs::write(&temp, serde_json::to_vec(layers)?)?;
        temp.persist(self.root.join("trees").join(key.hex()))?;
        Ok(())
    }
}

/// Hashes everything that decides the layers' bytes: the format, the settings, and each
/// entry's name, kind and file stamps (mtime, ctime, inode, size; ctime cannot be set back).
pub struct TreeKey(Sha256);

impl TreeKey {
    pub fn new(settings_text: &str) -> Self {
        Self(Sha256::new_with_prefix(settings_text.as_bytes()))
    }

    pub fn add(&mut self, line: &[u8]) {
        self.0.update((line.len() as u64).to_le_bytes());
        self.0.update(line);
    }

    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.0)
    }
}
