//! Digest binding as a type. Bytes from a registry, an OCI layout or a file are untrusted until
//! their size and sha256 match what names them. [`CheckedBytes`] (documents) and
//! [`CheckedBlob`] (layer blobs, spooled to disk) are the only forms in which such bytes reach
//! a parser or the store, and only the constructors here, which hash, make them.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::release::Descriptor;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};

/// A document whose bytes were hashed and found to match the digest that names it.
#[derive(Clone, Debug)]
pub struct CheckedBytes {
    bytes: Bytes,
    digest: Digest,
}

impl CheckedBytes {
    /// Checks `bytes` against a descriptor's size, then its digest.
    pub fn against(what: &str, descriptor: &Descriptor, bytes: Bytes) -> Result<Self, Rejection> {
        if bytes.len() as u64 != descriptor.size {
            return Err(Rejection::SizeMismatch {
                object: what.to_owned(),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        Self::against_digest(what, &descriptor.digest, bytes)
    }

    /// Checks `bytes` against a digest alone (a reference pinned by digest carries no size).
    pub fn against_digest(what: &str, expected: &Digest, bytes: Bytes) -> Result<Self, Rejection> {
        let actual = Digest::of(&bytes);
        if &actual != expected {
            return Err(Rejection::DigestMismatch {
                object: what.to_owned(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok(Self {
            bytes,
            digest: actual,
        })
    }

    /// Bytes a tag named: nothing names them but the tag, so their own digest becomes their
    /// name, and the signature stage decides whether that digest is acceptable.
    pub fn named_by_content(bytes: Bytes) -> Self {
        Self {
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A layer blob on the store's file system whose size and digest matched its descriptor. Only
/// [`BlobSpool::finish`] makes one, so extraction never reads a byte that was not checked.
#[derive(Debug)]
pub struct CheckedBlob {
    file: File,
    descriptor: Descriptor,
}

impl CheckedBlob {
    /// The checked bytes, read from the start.
    pub fn into_reader(self) -> File {
        self.file
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
}

/// Writes a blob as it arrives to an unnamed file (gone when dropped, or if the process dies)
/// while hashing it, refusing more bytes than the descriptor announced.
pub struct BlobSpool {
    file: File,
    hasher: Sha256,
    received: u64,
    descriptor: Descriptor,
    object: String,
}

impl BlobSpool {
    /// A spool in `dir`, which should be on the store's file system.
    pub fn create(dir: &Path, object: &str, descriptor: &Descriptor) -> Result<Self> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| Error::store("creating a spool file in", dir, e))?;
        Ok(Self {
            file,
            hasher: Sha256::new(),
            received: 0,
            descriptor: descriptor.clone(),
            object: object.to_owned(),
        })
    }

    /// Bytes received so far: where a resumed download starts.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Appends `chunk`. More bytes than the descriptor's size is a verification failure.
    pub fn write(&mut self, chunk: &[u8], dir: &Path) -> Result<()> {
        let received = self.received + chunk.len() as u64;
        if received > self.descriptor.size {
            return Err(Rejection::SizeMismatch {
                object: self.object.clone(),
                expected: self.descriptor.size,
                actual: received,
            }
            .into());
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(|e| Error::store("writing a spool file in", dir, e))?;
        self.received = received;
        Ok(())
    }

    /// The blob, once its size and digest are right.
    pub fn finish(mut self, dir: &Path) -> Result<CheckedBlob> {
        if self.received != self.descriptor.size {
            return Err(Rejection::SizeMismatch {
                object: self.object,
                expected: self.descriptor.size,
                actual: self.received,
            }
            .into());
        }
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.descriptor.digest {
            return Err(Rejection::DigestMismatch {
                object: self.object,
                expected: self.descriptor.digest,
                actual,
            }
            .into());
        }
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::store("rewinding a spool file in", dir, e))?;
        Ok(CheckedBlob {
            file: self.file,
            descriptor: self.descriptor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::MEDIA_TYPE_LAYER_ZSTD;
    use std::io::Read;

    fn descriptor_of(bytes: &[u8]) -> Descriptor {
        Descriptor::of_document(MEDIA_TYPE_LAYER_ZSTD, bytes)
    }

    #[test]
    fn checked_bytes_rejected_if_digest_differs() {
        let descriptor = descriptor_of(b"signed bytes");
        let err = CheckedBytes::against("doc", &descriptor, Bytes::from_static(b"forged bytes"))
            .unwrap_err();
        assert!(matches!(err, Rejection::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn checked_bytes_rejected_if_size_differs() {
        let descriptor = descriptor_of(b"signed");
        let err =
            CheckedBytes::against("doc", &descriptor, Bytes::from_static(b"signed!")).unwrap_err();
        assert!(matches!(err, Rejection::SizeMismatch { .. }), "{err}");
    }

    #[test]
    fn spool_rejected_if_bytes_exceed_descriptor_size() {
        let dir = tempfile::tempdir().unwrap();
        let descriptor = descriptor_of(b"four");
        let mut spool = BlobSpool::create(dir.path(), "layer", &descriptor).unwrap();
        spool.write(b"fo", dir.path()).unwrap();
        let err = spool.write(b"urth", dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), 42, "{err}");
    }

    #[test]
    fn spool_rejected_if_digest_differs() {
        let dir = tempfile::tempdir().unwrap();
        let descriptor = descriptor_of(b"four");
        let mut spool = BlobSpool::create(dir.path(), "layer", &descriptor).unwrap();
        spool.write(b"fivE", dir.path()).unwrap();
        let err = spool.finish(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Rejected(Rejection::DigestMismatch { .. })),
            "{err}"
        );
    }

    #[test]
    fn spool_hands_back_the_checked_bytes_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let descriptor = descriptor_of(b"layer bytes");
        let mut spool = BlobSpool::create(dir.path(), "layer", &descriptor).unwrap();
        spool.write(b"layer ", dir.path()).unwrap();
        spool.write(b"bytes", dir.path()).unwrap();
        let mut text = String::new();
        spool
            .finish(dir.path())
            .unwrap()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "layer bytes");
        // The spool file has no name, so nothing is left behind in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
