//! Attaches signatures to a published release, in a registry or an OCI layout: the Sigstore
//! bundle as an OCI 1.1 referrer (listed under the referrers tag, since registries such as
//! distribution 2.8 have no referrers API), and cosign's `.sig` tag. Existing signatures are
//! kept: a new one is added beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use tcdist_core::Digest;
use tcdist_oci::attachments::{
    ANNOTATION_BUNDLE_CONTENT, ANNOTATION_BUNDLE_PREDICATE_TYPE, ANNOTATION_COSIGN_CERTIFICATE,
    ANNOTATION_COSIGN_CHAIN, ANNOTATION_COSIGN_SIGNATURE, ANNOTATION_COSIGN_TIMESTAMP,
    ANNOTATION_WITNESSED_CHECKPOINT, ArtifactManifest, EMPTY_CONFIG, MEDIA_TYPE_BUNDLE,
    MEDIA_TYPE_SIMPLE_SIGNING, RELEASE_PREDICATE_TYPE, cosign_signature_tag,
    empty_config_descriptor, referrers_index, referrers_tag,
};
use tcdist_oci::checked::CheckedBytes;
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::Registry;
use tcdist_oci::release::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST, parse_document,
};

use crate::sign::{ReleaseSignatures, SignedStatement};

/// Where the release lives, and so where its signatures go.
pub enum Target<'a> {
    Registry {
        registry: &'a Registry,
        reference: &'a RegistryRef,
    },
    Layout(PathBuf),
}

/// Attaches both encodings of `signatures` to the release whose index is `subject`.
pub async fn attach(
    target: &Target<'_>,
    subject: &Descriptor,
    signatures: &ReleaseSignatures,
) -> Result<()> {
    attach_bundle(
        target,
        subject,
        &signatures.bundle,
        RELEASE_PREDICATE_TYPE,
        BTreeMap::new(),
    )
    .await?;
    attach_cosign(target, &subject.digest, signatures).await
}

/// Attaches a bundle of a statement of `predicate_type` to `subject` as a referrer, with
/// `annotations` (besides the bundle's own) on its manifest and its referrers-index entry.
/// Returns the referrer manifest's bytes.
pub async fn attach_bundle(
    target: &Target<'_>,
    subject: &Descriptor,
    signed: &SignedStatement,
    predicate_type: &str,
    mut annotations: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bundle = target
        .put_blob(MEDIA_TYPE_BUNDLE, &signed.bundle_json)
        .await?;
    if let Some(witnessed) = &signed.witnessed {
        annotations.insert(
            ANNOTATION_WITNESSED_CHECKPOINT.to_owned(),
            witnessed.to_json(),
        );
    }
    let config = target
        .put_blob(&empty_config_descriptor().media_type, EMPTY_CONFIG)
        .await?;
    annotations.extend([
        (
            ANNOTATION_BUNDLE_CONTENT.to_owned(),
            "dsse-envelope".to_owned(),
        ),
        (
            ANNOTATION_BUNDLE_PREDICATE_TYPE.to_owned(),
            predicate_type.to_owned(),
        ),
    ]);
    let mut manifest = ArtifactManifest::new(config, vec![bundle]);
    manifest.artifact_type = Some(MEDIA_TYPE_BUNDLE.into());
    manifest.subject = Some(Descriptor::new(
        &subject.media_type,
        subject.digest.clone(),
        subject.size,
    ));
    manifest.annotations = annotations.clone();
    let bytes = serde_json::to_vec(&manifest)?;
    let mut listed = target.put_manifest(&bytes).await?;
    listed.artifact_type = Some(MEDIA_TYPE_BUNDLE.into());
    listed.annotations = annotations;

    let tag = referrers_tag(&subject.digest);
    let mut index = match target.get_tag(&tag).await? {
        Some(bytes) => parse_document::<ImageIndex>(&format!("referrers tag {tag}"), &bytes)
            .unwrap_or_else(|_| referrers_index(Vec::new())),
        None => referrers_index(Vec::new()),
    };
    if !index.manifests.iter().any(|d| d.digest == listed.digest) {
        index.manifests.push(listed);
    }
    // A registry refuses an index that lists a manifest it no longer has (a referrer deleted,
    // e.g. a yank list): those entries go.
    let mut kept = Vec::with_capacity(index.manifests.len());
    for descriptor in std::mem::take(&mut index.manifests) {
        if target.has_manifest(&descriptor.digest).await? {
            kept.push(descriptor);
        }
    }
    index.manifests = kept;
    target
        .set_tag(&tag, &serde_json::to_vec(&index)?, MEDIA_TYPE_INDEX)
        .await?;
    Ok(bytes)
}

/// cosign keeps one manifest per signed digest, with one layer per signature.
async fn attach_cosign(
    target: &Target<'_>,
    subject: &Digest,
    signatures: &ReleaseSignatures,
) -> Result<()> {
    let cosign = &signatures.cosign;
    let mut layer = target
        .put_blob(MEDIA_TYPE_SIMPLE_SIGNING, &cosign.payload)
        .await?;
    let pem = |ders: &[Vec<u8>]| {
        ders.iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
            .collect::<String>()
    };
    layer.annotations = BTreeMap::from([
        (
            ANNOTATION_COSIGN_SIGNATURE.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(&cosign.signature),
        ),
        (
            ANNOTATION_COSIGN_CERTIFICATE.to_owned(),
            pem(std::slice::from_ref(&signatures.leaf)),
        ),
        (ANNOTATION_COSIGN_CHAIN.to_owned(), pem(&signatures.chain)),
        (
            ANNOTATION_COSIGN_TIMESTAMP.to_owned(),
            serde_json::json!({
                "SignedRFC3161Timestamp":
                    base64::engine::general_purpose::STANDARD.encode(&cosign.timestamp)
            })
            .to_string(),
        ),
    ]);
    let tag = cosign_signature_tag(subject);
    let mut layers = match target.get_tag(&tag).await? {
        Some(bytes) => parse_document::<ArtifactManifest>(&format!("signature tag {tag}"), &bytes)
            .map(|m| m.layers)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    layers.retain(|l| l.digest != layer.digest);
    layers.push(layer);
    let config = cosign_config(&layers);
    let config = target.put_blob(MEDIA_TYPE_CONFIG, &config).await?;
    let manifest = ArtifactManifest::new(config, layers);
    target
        .set_tag(&tag, &serde_json::to_vec(&manifest)?, MEDIA_TYPE_MANIFEST)
        .await
}

/// The image config cosign writes for a signature image: one diff ID per layer.
fn cosign_config(layers: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    }))
    .expect("a config always serializes")
}

/// Registries keep blobs and manifests apart; every manifest here is an OCI image manifest.
enum Stored {
    Blob,
    Manifest,
}

impl Target<'_> {
    async fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        self.put(Stored::Blob, media_type, bytes).await
    }

    /// Stores a manifest by digest only (no tag).
    async fn put_manifest(&self, bytes: &[u8]) -> Result<Descriptor> {
        self.put(Stored::Manifest, MEDIA_TYPE_MANIFEST, bytes).await
    }

    async fn put(&self, stored: Stored, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let descriptor = Descriptor::of_document(media_type, bytes);
        match self {
            Target::Registry {
                registry,
                reference,
            } => {
                let at = reference.with_digest(&descriptor.digest);
                let bytes = Bytes::copy_from_slice(bytes);
                match stored {
                    Stored::Blob => registry.push_blob_bytes(&at, &bytes).await?,
                    Stored::Manifest => {
                        registry
                            .push_manifest(&at, &bytes, MEDIA_TYPE_MANIFEST)
                            .await?
                    }
                }
            }
            // A layout keeps manifests among its blobs.
            Target::Layout(path) => write_layout_blob(path, &descriptor.digest, bytes)?,
        }
        Ok(descriptor)
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        match self {
            Target::Registry {
                registry,
                reference,
            } => Ok(registry
                .manifest_digest(&reference.with_digest(digest))
                .await?
                .is_some()),
            Target::Layout(path) => Ok(path.join("blobs/sha256").join(digest.hex()).is_file()),
        }
    }

    async fn get_tag(&self, tag: &str) -> Result<Option<CheckedBytes>> {
        match self {
            Target::Registry {
                registry,
                reference,
            } => Ok(registry
                .optional_manifest(&reference.with_tag(tag))
                .await?
                .map(|(bytes, _)| CheckedBytes::named_by_content(bytes))),
            Target::Layout(path) => {
                let index = read_layout_index(path)?;
                let Some(entry) = index.manifests.iter().find(|d| {
                    d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag)
                }) else {
                    return Ok(None);
                };
                let blob = path.join("blobs/sha256").join(entry.digest.hex());
                let bytes =
                    std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
                Ok(Some(CheckedBytes::against(
                    &format!("tag {tag}"),
                    entry,
                    Bytes::from(bytes),
                )?))
            }
        }
    }

    pub async fn set_tag(&self, tag: &str, bytes: &[u8], media_type: &'static str) -> Result<()> {
        match self {
            Target::Registry {
                registry,
                reference,
            } => Ok(registry
                .push_manifest(
                    &reference.with_tag(tag),
                    &Bytes::copy_from_slice(bytes),
                    media_type,
                )
                .await?),
            Target::Layout(path) => {
                let mut entry = Descriptor::of_document(media_type, bytes);
                write_layout_blob(path, &entry.digest, bytes)?;
                entry
                    .annotations
                    .insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
                let mut index = read_layout_index(path)?;
                index.manifests.retain(|d| {
                    d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(tag)
                });
                index.manifests.push(entry);
                super::layout::write_index(path, &index)
            }
        }
    }
}

fn write_layout_blob(layout: &Path, digest: &Digest, bytes: &[u8]) -> Result<()> {
    let path = layout.join("blobs/sha256").join(digest.hex());
    if path.exists() {
        return Ok(());
    }
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))
}

fn read_layout_index(layout: &Path) -> Result<ImageIndex> {
    super::layout::read_index(layout)
}
