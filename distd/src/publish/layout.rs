//! Writes a packaged release into an OCI image layout directory (for air-gapped transfer):
//! blobs under `blobs/sha256/`, and the index named in `index.json` with its tag.

use std::path::Path;

use anyhow::{Context, Result};
use tcdist_oci::release::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, MEDIA_TYPE_INDEX, parse_json,
};

use crate::package::PackagedRelease;
use crate::package::cache::BlobCache;

pub fn write(
    layout: &Path,
    tag: Option<&str>,
    release: &PackagedRelease,
    cache: &BlobCache,
) -> Result<()> {
    let blobs_dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir)
        .with_context(|| format!("creating {}", blobs_dir.display()))?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let documents = release
        .images
        .iter()
        .map(|i| &i.manifest)
        .chain(std::iter::once(&release.index));
    for blob in release.blobs().into_iter().chain(documents) {
        copy_blob(cache, blob, &blobs_dir.join(blob.digest.hex()))?;
    }

    let mut index = read_index(layout)?;
    let mut entry = Descriptor::new(
        MEDIA_TYPE_INDEX,
        release.index.digest.clone(),
        release.index.size,
    );
    if let Some(tag) = tag {
        entry
            .annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    }
    // A tag names one release; the same release is listed once per tag.
    index.manifests.retain(|d| {
        let same_tag =
            tag.is_some() && d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == tag;
        !same_tag && *d != entry
    });
    index.manifests.push(entry);
    write_index(layout, &index)
}

/// The layout's `index.json`, or an empty index for a new layout.
pub fn read_index(layout: &Path) -> Result<ImageIndex> {
    let index_path = layout.join("index.json");
    match std::fs::read(&index_path) {
        Ok(bytes) => parse_json::<ImageIndex>("index.json", &bytes)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("reading {}", index_path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX.into(),
            manifests: Vec::new(),
            annotations: Default::default(),
        }),
        Err(e) => Err(e).with_context(|| format!("reading {}", index_path.display())),
    }
}

/// Replaces `index.json` atomically.
pub fn write_index(layout: &Path, index: &ImageIndex) -> Result<()> {
    let index_path = layout.join("index.json");
    let temp = layout.join("index.json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(index)?)?;
    std::fs::rename(&temp, &index_path).with_context(|| format!("writing {}", index_path.display()))
}

/// Copies the cached blob (a reflink where the file system has them). Never a hard link: a
/// layout leaves distd's hands, and whoever edits a file in it must not edit the cache.
fn copy_blob(cache: &BlobCache, blob: &Descriptor, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let source = cache.blob_path(&blob.digest);
    let temp = dest.with_extension("tmp");
    std::fs::copy(&source, &temp).with_context(|| format!("copying {}", source.display()))?;
    std::fs::rename(&temp, dest)?;
    Ok(())
}
