//! SPIFFE IDs and trust domain names, parsed once into values that are valid by construction
//! (SPIFFE ID standard, sections 2 and 2.3: `spiffe://<trust-domain>/<path>`).
//!
//! Policies compare identities exactly, so the parser is strict: no normalisation, no case
//! folding, no query, fragment, user info or port. A string that is not already in canonical
//! form is refused rather than rewritten, so what a policy names is what a certificate must say.

use std::fmt;
use std::str::FromStr;

/// The SPIFFE ID standard asks implementations to support URIs up to 2048 bytes; longer ones
/// are refused so that no identity depends on a verifier's leniency.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or trust domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("is empty")]
    Empty,
    #[error("is {len} bytes long; a SPIFFE ID is at most {MAX_SPIFFE_ID_LEN}")]
    TooLong { len: usize },
    #[error("must start with \"spiffe://\" (lowercase scheme)")]
    WrongScheme,
    #[error("has an empty trust domain")]
    EmptyTrustDomain,
    #[error("has user info ('@') before the trust domain; SPIFFE IDs have none")]
    UserInfo,
    #[error("has a port (':') after the trust domain; SPIFFE IDs have none")]
    Port,
    #[error(
        "has {found:?} in the trust domain; a trust domain is lowercase letters, digits, '.', \
         '-' and '_'"
    )]
    TrustDomainChar { found: char },
    #[error("has a query ('?') or fragment ('#'); SPIFFE IDs have neither")]
    QueryOrFragment,
    #[error("ends with '/'; a SPIFFE ID path has no trailing slash")]
    TrailingSlash,
    #[error("has an empty path segment ('//')")]
    EmptySegment,
    #[error("has a '.' or '..' path segment")]
    DotSegment,
    #[error("has {found:?} in the path; path segments are letters, digits, '.', '-' and '_'")]
    PathChar { found: char },
    #[error("is a SPIFFE ID; write the trust domain name alone (e.g. \"example.org\")")]
    NotATrustDomainName,
}

/// A trust domain name, e.g. `example.org`: lowercase letters, digits, `.`, `-` and `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name. `spiffe://example.org` is refused: a policy that says
    /// "trust domain" should not also look like an identity.
    pub fn parse(name: &str) -> Result<Self, SpiffeIdError> {
        if name.contains("://") {
            return Err(SpiffeIdError::NotATrustDomainName);
        }
        if name.len() > MAX_SPIFFE_ID_LEN - SCHEME_PREFIX.len() {
            return Err(SpiffeIdError::TooLong {
                len: name.len() + SCHEME_PREFIX.len(),
            });
        }
        check_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (empty path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain_end: SCHEME_PREFIX.len() + self.0.len(),
            id: format!("{SCHEME_PREFIX}{}", self.0),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid trust domain {s:?}: {e}")))
    }
}

/// A SPIFFE ID, `spiffe://<trust-domain>[/<path>]`. The trust domain's own ID (empty path) is a
/// valid SPIFFE ID too.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the trust domain ends and the path (if any) begins.
    trust_domain_end: usize,
}

impl SpiffeId {
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: input.len() });
        }
        let rest = input
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        check_trust_domain(trust_domain)?;
        check_path(path)?;
        Ok(Self {
            id: input.to_owned(),
            trust_domain_end: SCHEME_PREFIX.len() + trust_domain.len(),
        })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME_PREFIX.len()..self.trust_domain_end]
    }

    /// The path including its leading `/`, or `""` for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.id[self.trust_domain_end..]
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn to_trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain().to_owned())
    }

    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain() == trust_domain.as_str()
    }

    /// Whether `prefix` names this ID or an ancestor of it: same trust domain, and the path
    /// starts with the prefix's path at a segment boundary (`/release` covers `/release` and
    /// `/release/x`, never `/releases`).
    pub fn has_prefix(&self, prefix: &SpiffeId) -> bool {
        if self.trust_domain() != prefix.trust_domain() {
            return false;
        }
        match self.path().strip_prefix(prefix.path()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid SPIFFE ID {s:?}: {e}")))
    }
}

fn check_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if name.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    if name.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        Some(found) => Err(SpiffeIdError::TrustDomainChar { found }),
        None => Ok(()),
    }
}

/// `path` is empty or starts with `/`.
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(found) = segment
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(SpiffeIdError::PathChar { found });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn spiffe_id_parts_are_split_at_the_first_slash_after_the_trust_domain() {
        let id = id("spiffe://tcdist.test/distd/signer");
        assert_eq!(id.trust_domain(), "tcdist.test");
        assert_eq!(id.path(), "/distd/signer");
        assert_eq!(id.to_string(), "spiffe://tcdist.test/distd/signer");
        assert!(id.is_member_of(&TrustDomain::parse("tcdist.test").unwrap()));
    }

    #[test]
    fn spiffe_id_of_a_trust_domain_has_an_empty_path() {
        let id = id("spiffe://tcdist.test");
        assert_eq!(id.trust_domain(), "tcdist.test");
        assert_eq!(id.path(), "");
        assert_eq!(TrustDomain::parse("tcdist.test").unwrap().id(), id);
    }

    #[test]
    fn spiffe_id_accepts_every_allowed_character() {
        id("spiffe://a-b_c.0.9/A-Z_a.z-0.9/x.y..z/...");
    }

    #[test]
    fn spiffe_id_rejected_if_empty() {
        assert_eq!(SpiffeId::parse(""), Err(SpiffeIdError::Empty));
    }

    #[test]
    fn spiffe_id_rejected_if_longer_than_2048_bytes() {
        let at_limit = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 12));
        assert_eq!(at_limit.len(), MAX_SPIFFE_ID_LEN);
        assert!(SpiffeId::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            SpiffeId::parse(&over),
            Err(SpiffeIdError::TooLong { len: 2049 })
        );
    }

    #[test]
    fn spiffe_id_rejected_if_scheme_is_not_spiffe() {
        for input in [
            "https://td/x",
            "SPIFFE://td/x",
            "spiffe:/td/x",
            "spiffe:td",
            "td/x",
        ] {
            assert_eq!(
                SpiffeId::parse(input),
                Err(SpiffeIdError::WrongScheme),
                "{input}"
            );
        }
    }

    #[test]
    fn spiffe_id_rejected_if_trust_domain_is_empty() {
        assert_eq!(
            SpiffeId::parse("spiffe://"),
            Err(SpiffeIdError::EmptyTrustDomain)
        );
        assert_eq!(
            SpiffeId::parse("spiffe:///path"),
            Err(SpiffeIdError::EmptyTrustDomain)
        );
    }

    #[test]
    fn spiffe_id_rejected_if_trust_domain_has_uppercase() {
        assert_eq!(
            SpiffeId::parse("spiffe://TCdist.test/x"),
            Err(SpiffeIdError::TrustDomainChar { found: 'T' })
        );
    }

    #[test]
    fn spiffe_id_rejected_if_trust_domain_has_other_characters() {
        for (input, found) in [
            ("spiffe://td+x/y", '+'),
            ("spiffe://t%41/y", '%'),
            ("spiffe://tö/y", 'ö'),
        ] {
            assert_eq!(
                SpiffeId::parse(input),
                Err(SpiffeIdError::TrustDomainChar { found }),
                "{input}"
            );
        }
    }

    #[test]
    fn spiffe_id_rejected_if_it_has_userinfo() {
        assert_eq!(
            SpiffeId::parse("spiffe://user@td/x"),
            Err(SpiffeIdError::UserInfo)
        );
    }

    #[test]
    fn spiffe_id_rejected_if_it_has_a_port() {
        assert_eq!(
            SpiffeId::parse("spiffe://td:8443/x"),
            Err(SpiffeIdError::Port)
        );
    }

    #[test]
    fn spiffe_id_rejected_if_it_has_a_query_or_fragment() {
        for input in ["spiffe://td/x?y=1", "spiffe://td/x#frag", "spiffe://td?x"] {
            assert_eq!(
                SpiffeId::parse(input),
                Err(SpiffeIdError::QueryOrFragment),
                "{input}"
            );
        }
    }

    #[test]
    fn spiffe_id_rejected_if_path_has_trailing_slash() {
        assert_eq!(
            SpiffeId::parse("spiffe://td/"),
            Err(SpiffeIdError::TrailingSlash)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/x/"),
            Err(SpiffeIdError::TrailingSlash)
        );
    }

    #[test]
    fn spiffe_id_rejected_if_path_has_empty_segment() {
        assert_eq!(
            SpiffeId::parse("spiffe://td//x"),
            Err(SpiffeIdError::EmptySegment)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/x//y"),
            Err(SpiffeIdError::EmptySegment)
        );
    }

    #[test]
    fn spiffe_id_rejected_if_path_has_dot_segment() {
        for input in ["spiffe://td/.", "spiffe://td/x/../y", "spiffe://td/./x"] {
            assert_eq!(
                SpiffeId::parse(input),
                Err(SpiffeIdError::DotSegment),
                "{input}"
            );
        }
    }

    #[test]
    fn spiffe_id_rejected_if_path_has_other_characters() {
        for (input, found) in [
            ("spiffe://td/a b", ' '),
            ("spiffe://td/a%20b", '%'),
            ("spiffe://td/a:b", ':'),
            ("spiffe://td/x/@", '@'),
            ("spiffe://td/ä", 'ä'),
        ] {
            assert_eq!(
                SpiffeId::parse(input),
                Err(SpiffeIdError::PathChar { found }),
                "{input}"
            );
        }
    }

    #[test]
    fn trust_domain_rejected_if_written_as_spiffe_id() {
        assert_eq!(
            TrustDomain::parse("spiffe://tcdist.test"),
            Err(SpiffeIdError::NotATrustDomainName)
        );
    }

    #[test]
    fn trust_domain_rejected_if_it_has_uppercase_or_port() {
        assert_eq!(
            TrustDomain::parse("Example.org"),
            Err(SpiffeIdError::TrustDomainChar { found: 'E' })
        );
        assert_eq!(TrustDomain::parse("td:1"), Err(SpiffeIdError::Port));
        assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::EmptyTrustDomain));
    }

    #[test]
    fn has_prefix_requires_a_segment_boundary() {
        let prefix = id("spiffe://td/release");
        assert!(id("spiffe://td/release").has_prefix(&prefix));
        assert!(id("spiffe://td/release/x").has_prefix(&prefix));
        assert!(!id("spiffe://td/releases").has_prefix(&prefix));
        assert!(!id("spiffe://td").has_prefix(&prefix));
        assert!(!id("spiffe://other/release/x").has_prefix(&prefix));
        assert!(id("spiffe://td/anything").has_prefix(&id("spiffe://td")));
    }

    #[test]
    fn spiffe_id_serializes_as_its_string() {
        let id = id("spiffe://td/x");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"spiffe://td/x\"");
        let back: SpiffeId = serde_json::from_str("\"spiffe://td/x\"").unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://TD/x\"").is_err());
    }
}
