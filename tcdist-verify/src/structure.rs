//! Stage: the release is well formed and its parts agree with each other (the index's platform,
//! the manifest, the config and the layers), so nothing can be mixed in from another release.

use tcdist_core::error::Rejection;
use tcdist_oci::release::{
    Compression, ImageConfig, ImageManifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST,
};
use tcdist_oci::resolve::ResolvedRelease;

/// More layers than this is not something `distd` makes.
pub const MAX_LAYERS: usize = 64;

/// Limits on what a release may unpack to, shared by all its layers.
#[derive(Clone, Debug)]
pub struct ExtractBudget {
    /// Compressed bytes of all layers together.
    pub max_total_bytes: u64,
    /// Decompressed bytes of all layers together (tar headers included).
    pub max_unpacked_bytes: u64,
    /// Entries of all layers together.
    pub max_entries: u64,
}

impl Default for ExtractBudget {
    fn default() -> Self {
        // A Go toolchain is ~270 MB unpacked and ~15k files; these leave room for growth
        // while refusing decompression bombs.
        Self {
            max_total_bytes: 2 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 200_000,
        }
    }
}

pub fn check(release: &ResolvedRelease, budget: &ExtractBudget) -> Result<(), Rejection> {
    let object = format!("manifest {}", release.manifest_descriptor.digest);
    check_manifest(&object, &release.manifest, budget)?;
    check_config(release, &release.config)
}

fn check_manifest(
    object: &str,
    manifest: &ImageManifest,
    budget: &ExtractBudget,
) -> Result<(), Rejection> {
    let malformed = |reason: String| Rejection::malformed(object, reason);
    if manifest.schema_version != 2 || manifest.media_type != MEDIA_TYPE_MANIFEST {
        return Err(malformed(format!(
            "expected an OCI image manifest, got schemaVersion {} mediaType {:?}",
            manifest.schema_version, manifest.media_type
        )));
    }
    if manifest.config.media_type != MEDIA_TYPE_CONFIG {
        return Err(malformed(format!(
            "config media type {:?} is not {MEDIA_TYPE_CONFIG}",
            manifest.config.media_type
        )));
    }
    if manifest.layers.is_empty() || manifest.layers.len() > MAX_LAYERS {
        return Err(malformed(format!(
            "{} layers (a release has 1 to {MAX_LAYERS})",
            manifest.layers.len()
        )));
    }
    let mut total: u64 = 0;
    for layer in &manifest.layers {
        if Compression::from_media_type(&layer.media_type).is_none() {
            return Err(malformed(format!(
                "layer {} has unsupported media type {:?}",
                layer.digest, layer.media_type
            )));
        }
        total = total.saturating_add(layer.size);
    }
    if total > budget.max_total_bytes {
        return Err(malformed(format!(
            "layers total {total} bytes, over the extraction budget of {} bytes",
            budget.max_total_bytes
        )));
    }
    Ok(())
}

fn check_config(release: &ResolvedRelease, config: &ImageConfig) -> Result<(), Rejection> {
    let object = format!("config {}", release.manifest.config.digest);
    let malformed = |reason: String| Rejection::malformed(&object, reason);
    if config.platform() != release.platform {
        return Err(malformed(format!(
            "config is for {}, but the index lists this manifest for {}",
            config.platform(),
            release.platform
        )));
    }
    if config.rootfs.kind != "layers"
        || config.rootfs.diff_ids.len() != release.manifest.layers.len()
    {
        return Err(malformed(format!(
            "rootfs lists {} diff_ids of type {:?} for {} layers",
            config.rootfs.diff_ids.len(),
            config.rootfs.kind,
            release.manifest.layers.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
