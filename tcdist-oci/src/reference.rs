//! Parse what the user names into a typed reference; no I/O.
//!
//! - `REGISTRY/REPOSITORY:TAG`, `REGISTRY/REPOSITORY@sha256:…` (or both: the digest pins it)
//! - `oci-layout:PATH[:TAG|@sha256:…]`: an OCI image layout directory (air-gapped transfer)

use std::fmt;
use std::path::PathBuf;

use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};

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
        let (name, digest) = match input.split_once('@') {
            Some((name, digest)) => (
                name,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|e| invalid(&e.to_string()))?,
                ),
            ),
            None => (input, None),
        };
        let (host, path) = name
            .split_once('/')
            .ok_or_else(|| invalid("no registry host"))?;
        // An implicit registry (Docker Hub) would silently change where trust comes from.
        if !(host.contains('.') || host.contains(':') || host == "localhost") || !valid_host(host) {
            return Err(invalid(
                "the registry host must be explicit (host[:port]/repository)",
            ));
        }
        // A tag follows the last ':' of the last path segment.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };
        if !valid_repository(repository) {
            return Err(invalid(
                "repository names are lowercase letters, digits and separators (. _ __ -) between \
                 /-separated components",
            ));
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(invalid("invalid tag"));
        }
        if digest.is_none() && tag.is_none() {
            return Err(invalid("name a tag or a digest"));
        }
        Ok(Self {
            registry: host.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
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

/// `host[:port]` with a DNS name, IPv4 address or bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            name
        }
        _ => host,
    };
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// OCI distribution-spec repository grammar: components of `[a-z0-9]+` joined by `.`, `_`,
/// `__` or runs of `-`, separated by `/`. Written out because the client library's reference
/// regex costs ~50 ms to compile at every process start.
pub fn valid_repository(repository: &str) -> bool {
    !repository.is_empty() && repository.len() <= 255 && repository.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(separator == "." || separator == "_" || separator == "__" || dashes) {
            return false;
        }
    }
    true
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
    fn repository_grammar_follows_the_distribution_spec() {
        for good in ["go", "toolchains/go", "a.b/c_d/e__f/g---h", "x9/0y"] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in ["", "Go", "-go", "go-", "a___b", "a._b", "a//b", "/a"] {
            assert!(!valid_repository(bad), "{bad}");
        }
        let ReleaseRef::Registry(r) = ReleaseRef::parse("[::1]:5000/go:1").unwrap() else {
            panic!()
        };
        assert_eq!(r.registry, "[::1]:5000");
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
            "127.0.0.1:5000/toolchains//go:1",
            "127.0.0.1:5000/toolchains/go_:1",
            "127.0.0.1:5000/toolchains/a...b:1",
            "127.0.0.1:5000/toolchains/go:bad/tag",
            "127.0.0.1:abc/toolchains/go:1",
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
