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
use crate::mirrors::{Mirror, MirrorSkip, Mirrors};
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
        /// Mirrors tried before the registry itself (`mirrors.rs`).
        mirrors: Mirrors,
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
            mirrors: Mirrors::default(),
        }
    }

    /// This source, trying `mirrors` (clients of the reference's registry's mirrors, in order)
    /// before the registry.
    pub fn with_mirrors(self, mirrors: Vec<Mirror>) -> Self {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                tags,
                ..
            } => ReleaseSource::Registry {
                registry,
                reference,
                tags,
                mirrors: Mirrors::new(mirrors),
            },
            layout => layout,
        }
    }

    /// What mirrors failed to serve so far (each then skipped for that object).
    pub fn mirror_skips(&self) -> Vec<MirrorSkip> {
        match self {
            ReleaseSource::Registry { mirrors, .. } => mirrors.skips(),
            ReleaseSource::Layout(_) => Vec::new(),
        }
    }

    /// Where a blob is read from, in the order to try: the mirrors, then the source itself.
    pub fn blob_hosts(&self) -> Vec<BlobHost<'_>> {
        let mut hosts: Vec<BlobHost<'_>> = match self {
            ReleaseSource::Registry { mirrors, .. } => mirrors
                .hosts
                .iter()
                .map(|mirror| BlobHost {
                    source: self,
                    mirror: Some(mirror),
                })
                .collect(),
            ReleaseSource::Layout(_) => Vec::new(),
        };
        hosts.push(BlobHost {
            source: self,
            mirror: None,
        });
        hosts
    }

    /// Notes that `mirror` did not serve `object`, and why: it is skipped for that object.
    pub fn mirror_skipped(&self, mirror: &str, object: &str, reason: &Error) {
        if let ReleaseSource::Registry { mirrors, .. } = self {
            mirrors.skipped(mirror, object, reason);
        }
    }

    /// `read` from each mirror (only those that resolve tags, for a tag) until one has the
    /// object, then from the registry: a mirror's error or `None` is noted and skipped.
    async fn read_from_hosts(&self, read: HostRead<'_>) -> Result<Option<CheckedBytes>> {
        let ReleaseSource::Registry {
            registry,
            reference,
            mirrors,
            ..
        } = self
        else {
            unreachable!("only a registry source has hosts");
        };
        let by_tag = read.by_tag(reference);
        for mirror in mirrors
            .hosts
            .iter()
            .filter(|m| !by_tag || m.resolves_tags())
        {
            let at = mirror.rehost(reference);
            let failure = match read.read_at(mirror.registry(), &at).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => Error::NotFound {
                    object: read.object(reference),
                    source_name: mirror.url().to_owned(),
                    detail: "the mirror does not have it".into(),
                },
                Err(e) => e,
            };
            mirrors.skipped(mirror.url(), &read.object(reference), &failure);
        }
        read.read_at(registry, reference).await
    }

    /// This source, reading each tag once from now on (a verification's view; see
    /// [`TagsRead`]). Sources [`pinned`](Self::pinned) from it share what it read.
    pub fn reading_once(&self) -> ReleaseSource {
        match self {
            ReleaseSource::Registry {
                registry,
                reference,
                mirrors,
                ..
            } => ReleaseSource::Registry {
                registry: Arc::clone(registry),
                reference: reference.clone(),
                tags: Some(Arc::default()),
                mirrors: mirrors.clone(),
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
                mirrors: Mirrors::default(),
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
                mirrors,
            } => ReleaseSource::Registry {
                registry: Arc::clone(registry),
                reference: RegistryRef {
                    tag: None,
                    digest: Some(digest.clone()),
                    ..reference.clone()
                },
                tags: tags.clone(),
                mirrors: mirrors.clone(),
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
            ReleaseSource::Registry { .. } => Ok(self
                .read_from_hosts(HostRead::Top)
                .await?
                .expect("the registry's answer is never None")),
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
            ReleaseSource::Registry { .. } => {
                self.read_from_hosts(HostRead::Manifest { what, digest })
                    .await
            }
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
            ReleaseSource::Registry { tags, .. } => {
                let read = || self.read_from_hosts(HostRead::Tag(tag));
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
            ReleaseSource::Registry { .. } => Ok(self
                .read_from_hosts(HostRead::Document { what, descriptor })
                .await?
                .expect("the registry's answer is never None")),
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
            } => registry_blob(registry, reference, descriptor, offset).await,
            ReleaseSource::Layout(layout) => {
                use std::io::Seek;
                use tokio::io::AsyncReadExt;
                let path = blob_path(layout, &descriptor.digest);
                let mut file = open_regular(&path).map_err(|e| layout_error(layout, &path, e))?;
                // A local file that is not the descriptor's size is wrong content, not a
                // stream that broke: refused before a byte is read, never retried.
                let actual = file
                    .metadata()
                    .map_err(|e| layout_error(layout, &path, e))?
                    .len();
                if actual != descriptor.size {
                    return Err(Rejection::SizeMismatch {
                        object: format!("blob {} ({})", descriptor.digest, path.display()),
                        expected: descriptor.size,
                        actual,
                    }
                    .into());
                }
                file.seek(std::io::SeekFrom::Start(offset))
                    .map_err(|e| layout_error(layout, &path, e))?;
                // One byte past the descriptor's size still tells a file that grew meanwhile.
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

/// What a registry source reads from one of its hosts (a mirror, or the registry).
enum HostRead<'a> {
    /// The document the reference names, by its tag or its digest.
    Top,
    /// A manifest by digest; `None` when the host has none.
    Manifest { what: &'a str, digest: &'a Digest },
    /// The manifest a tag names; `None` when there is no such tag.
    Tag(&'a str),
    /// A manifest or config named by a descriptor.
    Document {
        what: &'a str,
        descriptor: &'a Descriptor,
    },
}

impl HostRead<'_> {
    /// Whether a tag is read: only a mirror that resolves tags is asked.
    fn by_tag(&self, reference: &RegistryRef) -> bool {
        match self {
            HostRead::Top => reference.digest.is_none(),
            HostRead::Tag(_) => true,
            HostRead::Manifest { .. } | HostRead::Document { .. } => false,
        }
    }

    /// The object, for a mirror's skip.
    fn object(&self, reference: &RegistryRef) -> String {
        match self {
            HostRead::Top => format!("release index {}", reference.to_oci().whole()),
            // The callers' names say which object (and digest) it is.
            HostRead::Manifest { what, .. } | HostRead::Document { what, .. } => (*what).to_owned(),
            HostRead::Tag(tag) => format!("tag {tag}"),
        }
    }

    /// The object from `registry`, as `at` (the reference on that host) names it, checked
    /// against its digest wherever it has one.
    async fn read_at(&self, registry: &Registry, at: &RegistryRef) -> Result<Option<CheckedBytes>> {
        Ok(match self {
            HostRead::Top => {
                let (bytes, _) = registry.manifest(&at.to_oci()).await?;
                Some(match &at.digest {
                    Some(pinned) => CheckedBytes::against_digest("release index", pinned, bytes)?,
                    None => CheckedBytes::named_by_content(bytes),
                })
            }
            HostRead::Manifest { what, digest } => {
                match registry.optional_manifest(&at.with_digest(digest)).await? {
                    Some((bytes, _)) => Some(CheckedBytes::against_digest(what, digest, bytes)?),
                    None => None,
                }
            }
            HostRead::Tag(tag) => registry
                .optional_manifest(&at.with_tag(tag))
                .await?
                .map(|(bytes, _)| CheckedBytes::named_by_content(bytes)),
            HostRead::Document { what, descriptor } => {
                let named = at.with_digest(&descriptor.digest);
                let bytes = if is_manifest(&descriptor.media_type) {
                    registry.document(&named, what, descriptor).await?
                } else {
                    read_capped_stream(
                        registry.open_blob(&named, descriptor, 0).await?,
                        what,
                        descriptor,
                    )
                    .await?
                };
                Some(CheckedBytes::against(what, descriptor, bytes)?)
            }
        })
    }
}

/// A blob from a registry (the source's or a mirror's), from `offset` on, and how many leading
/// bytes to skip.
async fn registry_blob(
    registry: &Registry,
    reference: &RegistryRef,
    descriptor: &Descriptor,
    offset: u64,
) -> Result<(BlobStream, u64)> {
    let at = reference.with_digest(&descriptor.digest);
    Ok(match registry.open_blob(&at, descriptor, offset).await? {
        BlobBody::FromOffset(stream) => (stream, 0),
        BlobBody::Whole(stream) => (stream, offset),
    })
}

/// One place a blob can be read from: a mirror, or the source itself.
pub struct BlobHost<'a> {
    source: &'a ReleaseSource,
    mirror: Option<&'a Mirror>,
}

impl BlobHost<'_> {
    /// The mirror's URL; `None` for the source itself, whose failures are the pull's.
    pub fn mirror(&self) -> Option<&str> {
        self.mirror.map(Mirror::url)
    }

    /// The blob from `offset` on, and how many leading bytes to skip (as
    /// [`ReleaseSource::open_blob`]).
    pub async fn open(&self, descriptor: &Descriptor, offset: u64) -> Result<(BlobStream, u64)> {
        match (self.mirror, self.source) {
            (Some(mirror), ReleaseSource::Registry { reference, .. }) => {
                registry_blob(
                    mirror.registry(),
                    &mirror.rehost(reference),
                    descriptor,
                    offset,
                )
                .await
            }
            _ => self.source.open_blob(descriptor, offset).await,
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

    #[tokio::test]
    async fn layout_blob_of_another_size_is_wrong_content_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutRef {
            path: dir.path().to_owned(),
            tag: None,
            digest: None,
        };
        let content = b"twelve bytes";
        let descriptor = Descriptor::of_document(MEDIA_TYPE_MANIFEST, content);
        let path = blob_path(&layout, &descriptor.digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let source = ReleaseSource::Layout(layout);
        for (stored, actual) in [(&content[..5], 5), (&b"twelve bytes and more"[..], 21)] {
            std::fs::write(&path, stored).unwrap();
            let Err(err) = source.open_blob(&descriptor, 0).await else {
                panic!("a {actual}-byte file opened as a 12-byte blob");
            };
            assert!(
                matches!(&err, Error::Rejected(Rejection::SizeMismatch { object, expected: 12, actual: a })
                    if object.contains(&path.display().to_string()) && *a == actual),
                "{err}"
            );
            assert_eq!(err.exit_code(), 42, "{err}");
        }
        std::fs::write(&path, content).unwrap();
        assert!(source.open_blob(&descriptor, 0).await.is_ok());
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
