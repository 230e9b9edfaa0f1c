//! Where a release comes from: a registry or an OCI image layout directory. Both hand out raw
//! bytes and blob streams; every digest is checked by the caller, so neither is trusted.

use std::path::PathBuf;

use bytes::Bytes;
use futures::TryStreamExt;
use tokio_util::io::ReaderStream;

use crate::digest::Digest;
use crate::error::{Error, Rejection, Result};
use crate::reference::{LayoutRef, RegistryRef, ReleaseRef};
use crate::registry::{BlobBody, BlobStream, Registry, RegistryArgs};
use crate::release::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, MAX_DOCUMENT_BYTES, parse_document,
};

pub enum ReleaseSource {
    Registry {
        registry: Registry,
        reference: RegistryRef,
    },
    Layout(LayoutRef),
}

impl ReleaseSource {
    pub async fn open(reference: &ReleaseRef, registry_args: &RegistryArgs) -> Result<Self> {
        Ok(match reference {
            ReleaseRef::Registry(r) => ReleaseSource::Registry {
                registry: Registry::connect(registry_args, &r.registry).await?,
                reference: r.clone(),
            },
            ReleaseRef::Layout(l) => ReleaseSource::Layout(l.clone()),
        })
    }

    /// The top-level document the reference names (a tag resolves here), and its digest.
    /// A reference pinned by digest gets exactly that document or an error.
    pub async fn resolve_top(&self) -> Result<(Bytes, Digest)> {
        let (bytes, digest, pinned) = match self {
            ReleaseSource::Registry {
                registry,
                reference,
            } => {
                let (bytes, digest) = registry.manifest(&reference.to_oci()).await?;
                (bytes, digest, reference.digest.clone())
            }
            ReleaseSource::Layout(layout) => {
                let digest = self.layout_top_digest(layout).await?;
                let bytes = self.layout_blob(layout, &digest).await?;
                (bytes, digest.clone(), Some(digest))
            }
        };
        if let Some(expected) = pinned
            && expected != digest
        {
            return Err(Rejection::DigestMismatch {
                object: "release index".into(),
                expected,
                actual: digest,
            }
            .into());
        }
        Ok((bytes, digest))
    }

    /// The repository path the reference names, when it has one (an OCI layout has none; its
    /// repository comes from the signed statement).
    pub fn repository(&self) -> Option<&str> {
        match self {
            ReleaseSource::Registry { reference, .. } => Some(&reference.repository),
            ReleaseSource::Layout(_) => None,
        }
    }

    /// Referrer manifests of `subject` with `artifact_type`: those the referrers tag lists (in a
    /// layout: the index entry named by that tag), else those the registry's referrers API
    /// lists. The tag comes first because distd always writes it and distribution 2.8 answers
    /// the API only with a 404, which cost every verification a round trip.
    pub async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>> {
        let tag = crate::attachments::referrers_tag(subject);
        let listed = match self.tagged(&tag).await? {
            Some((bytes, _)) => referrers_of_type(&tag, &bytes, artifact_type)?,
            None => Vec::new(),
        };
        match self {
            // A registry with the API alone (or a tag written by another tool without these
            // referrers) still lists them through the API.
            ReleaseSource::Registry {
                registry,
                reference,
            } if listed.is_empty() => {
                registry
                    .referrers(&reference.with_digest(subject), artifact_type)
                    .await
            }
            _ => Ok(listed),
        }
    }

    /// The manifest a tag names in the reference's repository, or `None` when there is no
    /// such tag.
    pub async fn tagged(&self, tag: &str) -> Result<Option<(Bytes, Digest)>> {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
            } => registry.optional_manifest(&reference.with_tag(tag)).await,
            ReleaseSource::Layout(layout) => {
                let tagged = LayoutRef {
                    path: layout.path.clone(),
                    tag: Some(tag.to_owned()),
                    digest: None,
                };
                let digest = match self.layout_top_digest(&tagged).await {
                    Ok(digest) => digest,
                    Err(Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let bytes = self.layout_blob(layout, &digest).await?;
                let actual = Digest::of(&bytes);
                if actual != digest {
                    return Err(Rejection::DigestMismatch {
                        object: format!("tag {tag}"),
                        expected: digest,
                        actual,
                    }
                    .into());
                }
                Ok(Some((bytes, digest)))
            }
        }
    }

    /// A manifest or config named by `descriptor`, checked against its size and digest.
    pub async fn fetch_document(&self, what: &str, descriptor: &Descriptor) -> Result<Bytes> {
        if descriptor.size > MAX_DOCUMENT_BYTES {
            return Err(Rejection::malformed(
                what,
                format!(
                    "descriptor size {} is over the document limit",
                    descriptor.size
                ),
            )
            .into());
        }
        let bytes = match self {
            ReleaseSource::Registry {
                registry,
                reference,
            } => {
                if descriptor.media_type.ends_with("manifest.v1+json")
                    || descriptor.media_type.ends_with("index.v1+json")
                {
                    registry
                        .document(&reference.with_digest(&descriptor.digest), what, descriptor)
                        .await?
                } else {
                    let mut stream = match registry
                        .open_blob(&reference.with_digest(&descriptor.digest), descriptor, 0)
                        .await?
                    {
                        BlobBody::FromOffset(s) | BlobBody::Whole(s) => s,
                    };
                    let mut bytes = Vec::with_capacity(descriptor.size as usize);
                    while let Some(chunk) =
                        stream.try_next().await.map_err(|e| Error::Unavailable {
                            operation: format!("downloading {what}"),
                            attempts: 1,
                            detail: e.to_string(),
                        })?
                    {
                        let received = (bytes.len() + chunk.len()) as u64;
                        if received > descriptor.size {
                            return Err(Rejection::SizeMismatch {
                                object: what.to_owned(),
                                expected: descriptor.size,
                                actual: received,
                            }
                            .into());
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    Bytes::from(bytes)
                }
            }
            ReleaseSource::Layout(layout) => self.layout_blob(layout, &descriptor.digest).await?,
        };
        check_bytes(what, descriptor, &bytes)?;
        Ok(bytes)
    }

    /// A layer blob from `offset` on. Returns the stream and how many leading bytes to skip
    /// (non-zero when the source ignored the requested range and sent the whole blob).
    pub async fn open_blob(
        &self,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<(BlobStream, u64)> {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
            } => Ok(
                match registry
                    .open_blob(
                        &reference.with_digest(&descriptor.digest),
                        descriptor,
                        offset,
                    )
                    .await?
                {
                    BlobBody::FromOffset(stream) => (stream, 0),
                    BlobBody::Whole(stream) => (stream, offset),
                },
            ),
            ReleaseSource::Layout(layout) => {
                use tokio::io::AsyncSeekExt;
                let path = blob_path(layout, &descriptor.digest);
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| layout_error(layout, &path, e))?;
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| layout_error(layout, &path, e))?;
                Ok((Box::pin(ReaderStream::with_capacity(file, 256 << 10)), 0))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ReleaseSource::Registry { registry, .. } => format!("registry {}", registry.host()),
            ReleaseSource::Layout(layout) => format!("OCI layout {}", layout.path.display()),
        }
    }

    async fn layout_top_digest(&self, layout: &LayoutRef) -> Result<Digest> {
        if let Some(digest) = &layout.digest {
            return Ok(digest.clone());
        }
        let path = layout.path.join("index.json");
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| layout_error(layout, &path, e))?;
        let index: ImageIndex = parse_document("OCI layout index.json", &bytes)
            .map_err(|reason| Error::usage(format!("{}: {reason}", path.display())))?;
        let wanted = layout.tag.as_deref();
        let matches: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| match wanted {
                Some(tag) => {
                    d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag)
                }
                None => true,
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.digest.clone()),
            [] => Err(Error::NotFound {
                object: format!("tag {}", wanted.unwrap_or("(any)")),
                source_name: format!("OCI layout {}", layout.path.display()),
                detail: "index.json has no such entry".into(),
            }),
            _ => Err(Error::usage_with_hint(
                format!(
                    "OCI layout {} holds several releases",
                    layout.path.display()
                ),
                "name one: oci-layout:PATH:TAG or oci-layout:PATH@sha256:…",
            )),
        }
    }

    async fn layout_blob(&self, layout: &LayoutRef, digest: &Digest) -> Result<Bytes> {
        let path = blob_path(layout, digest);
        let metadata = tokio::fs::metadata(&path)
            .await
            .map_err(|e| layout_error(layout, &path, e))?;
        if metadata.len() > MAX_DOCUMENT_BYTES {
            return Err(Rejection::malformed(
                format!("blob {digest}"),
                "document is over the size limit",
            )
            .into());
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| layout_error(layout, &path, e))?;
        Ok(Bytes::from(bytes))
    }
}

/// The descriptors of `artifact_type` in the referrers tag's index, filtered as the referrers
/// API would. A document that is not an index is refused, naming the tag.
fn referrers_of_type(tag: &str, bytes: &[u8], artifact_type: &str) -> Result<Vec<Descriptor>> {
    let what = format!("referrers tag {tag}");
    let index: ImageIndex =
        parse_document(&what, bytes).map_err(|reason| Rejection::malformed(&what, reason))?;
    Ok(index
        .manifests
        .into_iter()
        .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
        .collect())
}

fn check_bytes(what: &str, descriptor: &Descriptor, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != descriptor.size {
        return Err(Rejection::SizeMismatch {
            object: what.to_owned(),
            expected: descriptor.size,
            actual: bytes.len() as u64,
        }
        .into());
    }
    let actual = Digest::of(bytes);
    if actual != descriptor.digest {
        return Err(Rejection::DigestMismatch {
            object: what.to_owned(),
            expected: descriptor.digest.clone(),
            actual,
        }
        .into());
    }
    Ok(())
}

fn blob_path(layout: &LayoutRef, digest: &Digest) -> PathBuf {
    // `Digest` admits only 64 lowercase hex characters, so this stays inside the layout.
    layout.path.join("blobs/sha256").join(digest.hex())
}

fn layout_error(layout: &LayoutRef, path: &std::path::Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            object: path.display().to_string(),
            source_name: format!("OCI layout {}", layout.path.display()),
            detail: e.to_string(),
        }
    } else {
        Error::store("reading", path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachments::{MEDIA_TYPE_BUNDLE, referrers_index};
    use crate::release::MEDIA_TYPE_MANIFEST;

    fn referrer(name: &[u8], artifact_type: Option<&str>) -> Descriptor {
        let mut descriptor = Descriptor::of_document(MEDIA_TYPE_MANIFEST, name);
        descriptor.artifact_type = artifact_type.map(Into::into);
        descriptor
    }

    #[test]
    fn referrers_tag_lists_only_the_wanted_artifact_type() {
        let bundle = referrer(b"bundle", Some(MEDIA_TYPE_BUNDLE));
        let index = referrers_index(vec![
            referrer(b"sbom", Some("application/spdx+json")),
            bundle.clone(),
            referrer(b"untyped", None),
        ]);
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(
            referrers_of_type("sha256-x", &bytes, MEDIA_TYPE_BUNDLE).unwrap(),
            vec![bundle]
        );
    }

    #[test]
    fn referrers_tag_that_is_not_an_index_is_refused_naming_it() {
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let err = referrers_of_type("sha256-x", manifest, MEDIA_TYPE_BUNDLE).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected(Rejection::Malformed { object, .. })
                if object == "referrers tag sha256-x"),
            "{err}"
        );
    }
}
