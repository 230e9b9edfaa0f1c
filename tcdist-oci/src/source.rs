//! Where a release comes from: a registry or an OCI image layout directory. Both hand out raw
//! bytes and blob streams; every digest is checked by the caller, so neither is trusted.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::OnceCell;
use tokio_util::io::ReaderStream;

use crate::checked::CheckedBytes;
use crate::reference::{LayoutRef, RegistryRef, ReleaseRef};
use crate::registry::{BlobBody, BlobStream, Registry, RegistryArgs};
use crate::release::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, MAX_DOCUMENT_BYTES, MEDIA_TYPE_INDEX,
    parse_document, parse_json,
};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};

pub enum ReleaseSource {
    Registry {
        /// Shared: a long-running process keeps one client (and its tokens) per registry.
        registry: Arc<Registry>,
        reference: RegistryRef,
        /// Tags already read, when the source reads each tag once ([`ReleaseSource::reading_once`]).
        tags: Option<Arc<TagsRead>>,
    },
    Layout(LayoutRef),
}

/// The tags a source read, each read once however many stages ask (concurrent askers wait for
/// the first read): one verification sees one state of the repository's tags (its yank list,
/// its referrers tags), and a pull in a rollout's candidate arm, which reads the yank list for
/// both releases, reads it once.
#[derive(Default)]
pub struct TagsRead(std::sync::Mutex<HashMap<String, Arc<OnceCell<Option<CheckedBytes>>>>>);

impl TagsRead {
    fn cell(&self, tag: &str) -> Arc<OnceCell<Option<CheckedBytes>>> {
        let mut tags = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(tags.entry(tag.to_owned()).or_default())
    }
}

impl ReleaseSource {
    /// A source for `reference` through a registry client that is already open (its host must
    /// be the reference's).
    pub fn through(reference: &RegistryRef, registry: Arc<Registry>) -> Self {
        debug_assert_eq!(registry.host(), reference.registry);
        ReleaseSource::Registry {
            registry,
            reference: reference.clone(),
            tags: None,
        }
    }

    /// This source, reading each tag once from now on (a verification's view; see
    /// [`TagsRead`]). Sources [`pinned`](Self::pinned) from it share what it read.
    pub fn reading_once(&self) -> ReleaseSource {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                ..
            } => ReleaseSource::Registry {
                registry: Arc::clone(registry),
                reference: reference.clone(),
                tags: Some(Arc::default()),
            },
            ReleaseSource::Layout(layout) => ReleaseSource::Layout(layout.clone()),
        }
    }

    pub async fn open(reference: &ReleaseRef, registry_args: &RegistryArgs) -> Result<Self> {
        Ok(match reference {
            ReleaseRef::Registry(r) => ReleaseSource::Registry {
                registry: Arc::new(Registry::connect(registry_args, &r.registry).await?),
                reference: r.clone(),
                tags: None,
            },
            ReleaseRef::Layout(l) => ReleaseSource::Layout(l.clone()),
        })
    }

    /// The release `digest` of the same repository (or layout), named by digest alone: a
    /// channel's rollout candidate.
    pub fn pinned(&self, digest: &Digest) -> ReleaseSource {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                tags,
            } => ReleaseSource::Registry {
                registry: Arc::clone(registry),
                reference: RegistryRef {
                    tag: None,
                    digest: Some(digest.clone()),
                    ..reference.clone()
                },
                tags: tags.clone(),
            },
            ReleaseSource::Layout(layout) => ReleaseSource::Layout(LayoutRef {
                tag: None,
                digest: Some(digest.clone()),
                ..layout.clone()
            }),
        }
    }

    /// The top-level document the reference names (a tag resolves here). A reference pinned
    /// by digest gets exactly that document or an error; a tag's document is named by its own
    /// digest, which the signature stage then judges.
    pub async fn resolve_top(&self) -> Result<CheckedBytes> {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                ..
            } => {
                let (bytes, _) = registry.manifest(&reference.to_oci()).await?;
                Ok(match &reference.digest {
                    Some(pinned) => CheckedBytes::against_digest("release index", pinned, bytes)?,
                    None => CheckedBytes::named_by_content(bytes),
                })
            }
            ReleaseSource::Layout(layout) => {
                let (digest, size) = layout_top(layout)?;
                layout_document(layout, "release index", &digest, size)
            }
        }
    }

    /// The repository path the reference names, when it has one (an OCI layout has none; its
    /// repository comes from the signed statement).
    pub fn repository(&self) -> Option<&str> {
        match self {
            ReleaseSource::Registry { reference, .. } => Some(&reference.repository),
            ReleaseSource::Layout(_) => None,
        }
    }

    /// The tag the reference names, pinned by digest or not: the release's signatures must
    /// name it (or a channel head for it must). A reference by digest alone names none.
    pub fn named_tag(&self) -> Option<&str> {
        match self {
            ReleaseSource::Registry { reference, .. } => reference.tag.as_deref(),
            ReleaseSource::Layout(layout) => layout.tag.as_deref(),
        }
    }

    /// The manifest named by `digest` in the reference's repository, or `None` when there is
    /// none.
    pub async fn manifest(&self, what: &str, digest: &Digest) -> Result<Option<CheckedBytes>> {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                ..
            } => match registry
                .optional_manifest(&reference.with_digest(digest))
                .await?
            {
                Some((bytes, _)) => Ok(Some(CheckedBytes::against_digest(what, digest, bytes)?)),
                None => Ok(None),
            },
            ReleaseSource::Layout(layout) => match layout_document(layout, what, digest, None) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
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
            Some(document) => referrers_of_type(&tag, &document, artifact_type)?,
            None => Vec::new(),
        };
        match self {
            // A registry with the API alone (or a tag written by another tool without these
            // referrers) still lists them through the API.
            ReleaseSource::Registry {
                registry,
                reference,
                ..
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
    pub async fn tagged(&self, tag: &str) -> Result<Option<CheckedBytes>> {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                tags,
            } => {
                let read = || async {
                    Ok::<_, Error>(
                        registry
                            .optional_manifest(&reference.with_tag(tag))
                            .await?
                            .map(|(bytes, _)| CheckedBytes::named_by_content(bytes)),
                    )
                };
                match tags {
                    Some(tags) => tags.cell(tag).get_or_try_init(read).await.cloned(),
                    None => read().await,
                }
            }
            ReleaseSource::Layout(layout) => {
                let tagged = LayoutRef {
                    path: layout.path.clone(),
                    tag: Some(tag.to_owned()),
                    digest: None,
                };
                let (digest, size) = match layout_top(&tagged) {
                    Ok(found) => found,
                    Err(Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                Ok(Some(layout_document(
                    layout,
                    &format!("tag {tag}"),
                    &digest,
                    size,
                )?))
            }
        }
    }

    /// A manifest or config named by `descriptor`, checked against its size and digest.
    pub async fn fetch_document(
        &self,
        what: &str,
        descriptor: &Descriptor,
    ) -> Result<CheckedBytes> {
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
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                ..
            } => {
                let at = reference.with_digest(&descriptor.digest);
                let bytes = if is_manifest(&descriptor.media_type) {
                    registry.document(&at, what, descriptor).await?
                } else {
                    read_capped_stream(
                        registry.open_blob(&at, descriptor, 0).await?,
                        what,
                        descriptor,
                    )
                    .await?
                };
                Ok(CheckedBytes::against(what, descriptor, bytes)?)
            }
            ReleaseSource::Layout(layout) => {
                layout_document(layout, what, &descriptor.digest, Some(descriptor.size))
            }
        }
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
                ..
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
                use std::io::Seek;
                use tokio::io::AsyncReadExt;
                let path = blob_path(layout, &descriptor.digest);
                let mut file = open_regular(&path).map_err(|e| layout_error(layout, &path, e))?;
                file.seek(std::io::SeekFrom::Start(offset))
                    .map_err(|e| layout_error(layout, &path, e))?;
                // One byte past the descriptor's size is enough to tell a longer blob.
                let remaining = descriptor.size.saturating_sub(offset) + 1;
                let file = tokio::fs::File::from_std(file);
                Ok((
                    Box::pin(ReaderStream::with_capacity(file.take(remaining), 256 << 10)),
                    0,
                ))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ReleaseSource::Registry { registry, .. } => format!("registry {}", registry.host()),
            ReleaseSource::Layout(layout) => format!("OCI layout {}", layout.path.display()),
        }
    }
}

fn is_manifest(media_type: &str) -> bool {
    media_type.ends_with("manifest.v1+json") || media_type.ends_with("index.v1+json")
}

/// Reads a small blob whole, refusing more bytes than its descriptor announced.
async fn read_capped_stream(body: BlobBody, what: &str, descriptor: &Descriptor) -> Result<Bytes> {
    let (BlobBody::FromOffset(mut stream) | BlobBody::Whole(mut stream)) = body;
    let mut bytes = Vec::with_capacity(descriptor.size as usize);
    while let Some(chunk) = stream.try_next().await.map_err(|e| Error::Unavailable {
        operation: format!("downloading {what}"),
        attempts: 1,
        detail: e.to_string(),
    })? {
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
    Ok(Bytes::from(bytes))
}

/// The digest (and, when `index.json` lists it, the size) of the release a layout reference
/// names: by its digest, or by tag (or as the only entry) in `index.json`.
fn layout_top(layout: &LayoutRef) -> Result<(Digest, Option<u64>)> {
    if let Some(digest) = &layout.digest {
        return Ok((digest.clone(), None));
    }
    let path = layout.path.join("index.json");
    let bytes =
        read_regular_file(&path, MAX_DOCUMENT_BYTES).map_err(|e| layout_error(layout, &path, e))?;
    let index: ImageIndex = parse_json("OCI layout index.json", &bytes)
        .map_err(|reason| Error::usage(format!("{}: {reason}", path.display())))?;
    let wanted = layout.tag.as_deref();
    let matches: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| match wanted {
            Some(tag) => d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag),
            None => true,
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((one.digest.clone(), Some(one.size))),
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

/// A document blob of a layout, read only from a regular file, no further than its size (or
/// the document limit), and checked against its digest and size.
fn layout_document(
    layout: &LayoutRef,
    what: &str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<CheckedBytes> {
    let path = blob_path(layout, digest);
    let cap = size.unwrap_or(MAX_DOCUMENT_BYTES).min(MAX_DOCUMENT_BYTES);
    let bytes = match read_regular_file(&path, cap) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(Rejection::malformed(
                format!("{what} ({})", path.display()),
                format!("more than {cap} bytes"),
            )
            .into());
        }
        Err(e) => return Err(layout_error(layout, &path, e)),
    };
    Ok(match size {
        Some(size) => CheckedBytes::against(
            what,
            &Descriptor::new(MEDIA_TYPE_INDEX, digest.clone(), size),
            bytes,
        )?,
        None => CheckedBytes::against_digest(what, digest, bytes)?,
    })
}

/// Opens `path` only if it is a regular file: not a symlink (to `/dev/zero`, say), not a FIFO
/// (opened without blocking, so a FIFO with no writer cannot hang the pull).
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a symbolic link, not a regular file",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(file)
}

/// Reads a regular file of at most `cap` bytes (`FileTooLarge` past that).
fn read_regular_file(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("more than {cap} bytes"),
        ));
    }
    Ok(bytes)
}

/// The descriptors of `artifact_type` in the referrers tag's index, filtered as the referrers
/// API would. A document that is not an index is refused, naming the tag.
fn referrers_of_type(
    tag: &str,
    document: &CheckedBytes,
    artifact_type: &str,
) -> Result<Vec<Descriptor>> {
    let what = format!("referrers tag {tag}");
    let index: ImageIndex =
        parse_document(&what, document).map_err(|reason| Rejection::malformed(&what, reason))?;
    Ok(index
        .manifests
        .into_iter()
        .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
        .collect())
}

fn blob_path(layout: &LayoutRef, digest: &Digest) -> PathBuf {
    // `Digest` admits only 64 lowercase hex characters, so this stays inside the layout.
    layout.path.join("blobs/sha256").join(digest.hex())
}

fn layout_error(layout: &LayoutRef, path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            object: path.display().to_string(),
            source_name: format!("OCI layout {}", layout.path.display()),
            detail: e.to_string(),
        },
        // A layout is untrusted input: a file that is not a regular file is refused like any
        // other forged content.
        std::io::ErrorKind::InvalidInput => {
            Rejection::malformed(format!("OCI layout file {}", path.display()), e.to_string())
                .into()
        }
        _ => Error::store("reading", path, e),
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
        let document = CheckedBytes::named_by_content(serde_json::to_vec(&index).unwrap().into());
        assert_eq!(
            referrers_of_type("sha256-x", &document, MEDIA_TYPE_BUNDLE).unwrap(),
            vec![bundle]
        );
    }

    #[test]
    fn referrers_tag_that_is_not_an_index_is_refused_naming_it() {
        let manifest = CheckedBytes::named_by_content(Bytes::from_static(
            br#"{"schemaVersion":2,"config":{},"layers":[]}"#,
        ));
        let err = referrers_of_type("sha256-x", &manifest, MEDIA_TYPE_BUNDLE).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected(Rejection::Malformed { object, .. })
                if object == "referrers tag sha256-x"),
            "{err}"
        );
    }
}
