//! Parse what the user names into a typed reference; no I/O.
//!
//! - `REGISTRY/REPOSITORY:TAG`, `REGISTRY/REPOSITORY@sha256:…` (or both: the digest pins it)
//! - `oci-layout:PATH[:TAG|@sha256:…]`: an OCI image layout directory (air-gapped transfer)

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const LAYOUT_SCHEME: &str = "oci-layout:";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseRef {
    Registry(RegistryRef),
    Layout(LayoutRef),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRef {
    pub path: PathBuf,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ReleaseRef {
    pub fn parse(input: &str) -> Result<Self> {
        match input.strip_prefix(LAYOUT_SCHEME) {
            Some(rest) => LayoutRef::parse(rest).map(ReleaseRef::Layout),
            None => RegistryRef::parse(input).map(ReleaseRef::Registry),
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match self {
            ReleaseRef::Registry(r) => r.digest.as_ref(),
            ReleaseRef::Layout(l) => l.digest.as_ref(),
        }
    }
}

impl RegistryRef {
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::usage_with_hint(
                format!("invalid release reference {input:?}: {why}"),
                "write REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/toolchains/go:1.26.8-tc.1, or \
                 oci-layout:PATH[:TAG]",
            )
        };
        let (host, _) = input
            .split_once('/')
            .ok_or_else(|| invalid("no registry host"))?;
        // An implicit registry (Docker Hub) would silently change where trust comes from.
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(invalid(
                "the registry host must be explicit (host[:port]/repository)",
            ));
        }
        let parsed: oci_client::Reference = input
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(&e.to_string()))?;
        if parsed.registry() != host {
            return Err(invalid(
                "the registry host must be explicit (host[:port]/repository)",
            ));
        }
        let digest = parsed
            .digest()
            .map(|d| d.parse::<Digest>())
            .transpose()
            .map_err(|e| invalid(&e.to_string()))?;
        let tag = parsed.tag().map(str::to_owned);
        // The parser defaults a missing tag to "latest"; a release is never implicit.
        if digest.is_none() && !has_explicit_tag(input) {
            return Err(invalid("name a tag or a digest"));
        }
        Ok(Self {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: tag.filter(|_| has_explicit_tag(input)),
            digest,
        })
    }

    /// The reference to fetch: by digest when pinned, otherwise by tag.
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => self.with_digest(digest),
            (None, Some(tag)) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
            ),
            (None, None) => unreachable!("parse requires a tag or a digest"),
        }
    }

    pub fn with_digest(&self, digest: &Digest) -> oci_client::Reference {
        oci_client::Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    pub fn with_tag(&self, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_owned(),
        )
    }
}

fn has_explicit_tag(input: &str) -> bool {
    let name = input.split('@').next().unwrap_or(input);
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    last_segment.contains(':')
}

impl LayoutRef {
    fn parse(rest: &str) -> Result<Self> {
        let (rest, digest) = match rest.rsplit_once('@') {
            Some((path, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| {
                    Error::usage(format!("invalid digest in oci-layout reference: {e}"))
                })?;
                (path, Some(digest))
            }
            None => (rest, None),
        };
        // A tag follows the last ':' after the last '/'; a ':' earlier is part of the path.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(Error::usage("oci-layout reference names no directory"));
        }
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(Error::usage(format!(
                "invalid tag {tag:?} in oci-layout reference"
            )));
        }
        Ok(Self {
            path: PathBuf::from(path),
            tag,
            digest,
        })
    }
}

/// OCI distribution-spec tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (base, tag, digest) = match self {
            ReleaseRef::Registry(r) => (
                format!("{}/{}", r.registry, r.repository),
                &r.tag,
                &r.digest,
            ),
            ReleaseRef::Layout(l) => (
                format!("{LAYOUT_SCHEME}{}", l.path.display()),
                &l.tag,
                &l.digest,
            ),
        };
        write!(f, "{base}")?;
        if let Some(tag) = tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn registry_reference_with_tag() {
        let ReleaseRef::Registry(r) =
            ReleaseRef::parse("127.0.0.1:5000/toolchains/go:1.26.8-tc.1").unwrap()
        else {
            panic!("not a registry reference")
        };
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "toolchains/go");
        assert_eq!(r.tag.as_deref(), Some("1.26.8-tc.1"));
        assert_eq!(r.digest, None);
    }

    #[test]
    fn registry_reference_digest_pins_tag() {
        let input = format!("registry.example:443/toolchains/go:1.26@{DIGEST}");
        let parsed = ReleaseRef::parse(&input).unwrap();
        assert_eq!(parsed.digest().unwrap().to_string(), DIGEST);
        assert_eq!(parsed.to_string(), input);
    }

    #[test]
    fn registry_reference_rejected_without_explicit_host_or_tag() {
        for bad in [
            "toolchains/go:1.26",
            "go:1.26",
            "127.0.0.1:5000/toolchains/go",
            "127.0.0.1:5000/Toolchains/go:1",
        ] {
            let err = ReleaseRef::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn layout_reference_with_tag_digest_and_colon_in_path() {
        let parsed = ReleaseRef::parse("oci-layout:/tmp/a:b/layout:v1").unwrap();
        assert_eq!(
            parsed,
            ReleaseRef::Layout(LayoutRef {
                path: "/tmp/a:b/layout".into(),
                tag: Some("v1".into()),
                digest: None
            })
        );
        let parsed = ReleaseRef::parse(&format!("oci-layout:rel/dir@{DIGEST}")).unwrap();
        assert_eq!(parsed.digest().unwrap().to_string(), DIGEST);
        let ReleaseRef::Layout(l) = ReleaseRef::parse("oci-layout:dir").unwrap() else {
            panic!()
        };
        assert_eq!((l.path, l.tag), (PathBuf::from("dir"), None));
    }
}
