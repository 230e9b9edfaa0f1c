//! Pushes a packaged release to a registry: blobs the registry lacks (in parallel, streamed
//! from the cache), then manifests, then the index. The tag is moved separately, after the
//! release is signed, so a tag never names something incomplete or unsigned. Whatever the
//! registry already holds is skipped.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::Registry;
use tcdist_oci::release::{Descriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

use crate::package::PackagedRelease;
use crate::package::cache::BlobCache;

/// Blobs uploaded at once.
const UPLOAD_JOBS: usize = 4;

#[derive(Debug, Default)]
pub struct PushSummary {
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
}

pub async fn push(
    registry: &Registry,
    reference: &RegistryRef,
    release: &PackagedRelease,
    cache: &BlobCache,
) -> Result<PushSummary> {
    let blobs = release.blobs();
    let uploaded: Vec<bool> = futures::stream::iter(blobs)
        .map(|blob| push_blob(registry, reference, blob, cache))
        .buffer_unordered(UPLOAD_JOBS)
        .try_collect()
        .await?;
    let summary = PushSummary {
        blobs_uploaded: uploaded.iter().filter(|u| **u).count(),
        blobs_present: uploaded.iter().filter(|u| !**u).count(),
    };
    for image in &release.images {
        push_document(
            registry,
            reference,
            &image.manifest,
            MEDIA_TYPE_MANIFEST,
            cache,
        )
        .await?;
    }
    push_document(registry, reference, &release.index, MEDIA_TYPE_INDEX, cache).await?;
    Ok(summary)
}

/// Points the reference's tag at the release index; returns whether it moved.
pub async fn move_tag(
    registry: &Registry,
    reference: &RegistryRef,
    release: &PackagedRelease,
    cache: &BlobCache,
) -> Result<bool> {
    let Some(tag) = &reference.tag else {
        return Ok(false);
    };
    let tagged = reference.with_tag(tag);
    if registry.manifest_digest(&tagged).await? == Some(release.index.digest.clone()) {
        return Ok(false);
    }
    let bytes = read_blob(cache, &release.index)?;
    registry
        .push_manifest(&tagged, &bytes, MEDIA_TYPE_INDEX)
        .await?;
    Ok(true)
}

/// Uploads one blob unless the registry has it; returns whether it uploaded.
async fn push_blob(
    registry: &Registry,
    reference: &RegistryRef,
    blob: &Descriptor,
    cache: &BlobCache,
) -> Result<bool> {
    let target = reference.with_digest(&blob.digest);
    if registry.blob_exists(&target, &blob.digest).await? {
        return Ok(false);
    }
    registry
        .push_blob_file(&target, &cache.blob_path(&blob.digest), blob)
        .await?;
    Ok(true)
}

async fn push_document(
    registry: &Registry,
    reference: &RegistryRef,
    document: &Descriptor,
    media_type: &'static str,
    cache: &BlobCache,
) -> Result<()> {
    let target = reference.with_digest(&document.digest);
    if registry.manifest_digest(&target).await?.as_ref() == Some(&document.digest) {
        return Ok(());
    }
    registry
        .push_manifest(&target, &read_blob(cache, document)?, media_type)
        .await?;
    Ok(())
}

fn read_blob(cache: &BlobCache, descriptor: &Descriptor) -> Result<Bytes> {
    let path = cache.blob_path(&descriptor.digest);
    Ok(Bytes::from(
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    ))
}
