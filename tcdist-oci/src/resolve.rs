//! Tag → index → this platform's manifest → config. Fetches and parses; trusts nothing yet
//! (every document is checked against the digest that names it, the rules run in `verify`).

use crate::checked::CheckedBytes;
use crate::release::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
    parse_document,
};
use crate::source::ReleaseSource;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::platform::Platform;

/// A release as fetched, not yet verified.
#[derive(Clone, Debug)]
pub struct ResolvedRelease {
    /// What the user asked for, for messages.
    pub reference: String,
    pub index_digest: Digest,
    pub index: ImageIndex,
    pub platform: Platform,
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

/// Fetches the index a reference names.
pub async fn resolve_index(source: &ReleaseSource) -> Result<(ImageIndex, Digest)> {
    let document = source.resolve_top().await?;
    Ok((parse_index(&document)?, document.digest().clone()))
}

/// Parses a release's index, which must be an OCI image index.
pub fn parse_index(document: &CheckedBytes) -> Result<ImageIndex> {
    let object = format!("index {}", document.digest());
    let index: ImageIndex = parse_document(&object, document)
        .map_err(|reason| Rejection::malformed(&object, reason))?;
    if index.schema_version != 2 || index.media_type != MEDIA_TYPE_INDEX {
        return Err(Rejection::malformed(
            object,
            format!(
                "expected an OCI image index (schemaVersion 2, mediaType {MEDIA_TYPE_INDEX}), got \
                 schemaVersion {} mediaType {:?}",
                index.schema_version, index.media_type
            ),
        )
        .into());
    }
    Ok(index)
}

/// Picks the manifest for `wanted` from the index.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    index_digest: &Digest,
    wanted: &Platform,
) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.media_type == MEDIA_TYPE_MANIFEST)
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(wanted)))
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => {
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                .collect();
            Err(Error::usage_with_hint(
                format!("release {index_digest} has no toolchain for {wanted}"),
                format!(
                    "it has: {}; choose one with --platform",
                    if available.is_empty() {
                        "none".into()
                    } else {
                        available.join(", ")
                    }
                ),
            ))
        }
        _ => Err(Rejection::malformed(
            format!("index {index_digest}"),
            format!("several manifests claim platform {wanted}"),
        )
        .into()),
    }
}

/// The release for `wanted` in an index already resolved: its manifest and config, each fetched
/// by the digest that names it.
pub async fn resolve_platform(
    source: &ReleaseSource,
    reference: &str,
    index: ImageIndex,
    index_digest: Digest,
    wanted: &Platform,
) -> Result<ResolvedRelease> {
    let manifest_descriptor = select_platform(&index, &index_digest, wanted)?.clone();
    let platform = manifest_descriptor
        .platform
        .clone()
        .expect("select_platform picks descriptors with a platform");

    let object = format!("manifest {}", manifest_descriptor.digest);
    let bytes = source.fetch_document(&object, &manifest_descriptor).await?;
    let manifest: ImageManifest =
        parse_document(&object, &bytes).map_err(|reason| Rejection::malformed(&object, reason))?;

    let config_object = format!("config {}", manifest.config.digest);
    let bytes = source
        .fetch_document(&config_object, &manifest.config)
        .await?;
    let config: ImageConfig = parse_document(&config_object, &bytes)
        .map_err(|reason| Rejection::malformed(&config_object, reason))?;

    Ok(ResolvedRelease {
        reference: reference.to_owned(),
        index_digest,
        index,
        platform,
        manifest_descriptor,
        manifest,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn index_with(platforms: &[&str]) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX.into(),
            manifests: platforms
                .iter()
                .map(|p| Descriptor {
                    platform: Some(p.parse().unwrap()),
                    ..Descriptor::new(MEDIA_TYPE_MANIFEST, Digest::of(p.as_bytes()), 1)
                })
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_selection_picks_the_matching_manifest() {
        let index = index_with(&["linux/amd64", "linux/arm64", "darwin/arm64"]);
        let digest = Digest::of(b"index");
        let chosen = select_platform(&index, &digest, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(chosen.digest, Digest::of(b"linux/arm64"));
    }

    #[test]
    fn platform_selection_names_what_is_available_when_missing() {
        let index = index_with(&["linux/amd64"]);
        let err = select_platform(&index, &Digest::of(b"i"), &"windows/amd64".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hint().unwrap().contains("linux/amd64"));
    }

    #[test]
    fn platform_selection_rejects_ambiguous_index() {
        let index = index_with(&["linux/amd64", "linux/amd64"]);
        let err = select_platform(&index, &Digest::of(b"i"), &"linux/amd64".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.exit_code(), 42);
    }
}
