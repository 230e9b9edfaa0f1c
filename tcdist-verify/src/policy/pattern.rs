//! Repository name patterns in the policy: an exact repository path, or a glob where `*`
//! matches within one path segment and `**` matches any number of whole segments (none
//! included). Patterns name the repository path only: the registry host is transport, and the
//! same release is trusted the same way from a mirror.

use std::fmt;

use tcdist_oci::reference::valid_repository;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("is empty")]
    Empty,
    #[error(
        "starts with {first:?}, which names a registry host; write the repository path alone \
         (e.g. \"toolchains/go\"): registries and mirrors are untrusted transport"
    )]
    RegistryHost { first: String },
    #[error("has an empty path segment")]
    EmptySegment,
    #[error("segment {segment:?}: '**' must be a whole path segment")]
    PartialDoubleStar { segment: String },
    #[error(
        "segment {segment:?} is not a repository path component (lowercase letters and digits, \
         separated by '.', '_', '__' or '-'; '*' and '**' in globs)"
    )]
    InvalidSegment { segment: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Contains `*`: matches one segment.
    Glob(String),
    /// `**`: any number of segments.
    AnyDepth,
}

/// A parsed `[[repository]] name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryPattern {
    text: String,
    segments: Vec<Segment>,
}

impl RepositoryPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let first = text.split('/').next().unwrap_or_default();
        // The distribution reference grammar reads a first component with '.' or ':' (or
        // `localhost`) as a registry host; such a pattern could never match a repository path.
        if first.contains(['.', ':']) || first == "localhost" {
            return Err(PatternError::RegistryHost {
                first: first.to_owned(),
            });
        }
        let mut segments: Vec<Segment> = Vec::new();
        for segment in text.split('/') {
            let parsed = if segment.is_empty() {
                return Err(PatternError::EmptySegment);
            } else if segment == "**" {
                Segment::AnyDepth
            } else if segment.contains("**") {
                return Err(PatternError::PartialDoubleStar {
                    segment: segment.to_owned(),
                });
            } else if segment.contains('*') {
                let allowed = |b: u8| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'.' | b'_' | b'-' | b'*')
                };
                if !segment.bytes().all(allowed) {
                    return Err(PatternError::InvalidSegment {
                        segment: segment.to_owned(),
                    });
                }
                Segment::Glob(segment.to_owned())
            } else if valid_repository(segment) {
                Segment::Literal(segment.to_owned())
            } else {
                return Err(PatternError::InvalidSegment {
                    segment: segment.to_owned(),
                });
            };
            // `**/**` means the same as `**`; one keeps matching linear.
            if !(parsed == Segment::AnyDepth && segments.last() == Some(&Segment::AnyDepth)) {
                segments.push(parsed);
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern names one repository (no `*`).
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `repository` (a path without registry host, e.g. `toolchains/go`) matches.
    pub fn matches(&self, repository: &str) -> bool {
        let parts: Vec<&str> = repository.split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn match_segments(pattern: &[Segment], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((segment, rest)) => match parts.split_first() {
            Some((part, more)) => match_one(segment, part) && match_segments(rest, more),
            None => false,
        },
    }
}

fn match_one(segment: &Segment, part: &str) -> bool {
    match segment {
        Segment::Literal(literal) => literal == part,
        Segment::Glob(glob) => !part.is_empty() && wildcard(glob.as_bytes(), part.as_bytes()),
        Segment::AnyDepth => unreachable!("handled by match_segments"),
    }
}

/// `*` matches any run of bytes (within one segment: callers never pass a `/`).
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> RepositoryPattern {
        RepositoryPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let p = pattern("toolchains/go");
        assert!(p.is_exact());
        assert!(p.matches("toolchains/go"));
        assert!(!p.matches("toolchains/go/x"));
        assert!(!p.matches("toolchains"));
        assert!(!p.matches("toolchains/gopher"));
    }

    #[test]
    fn star_matches_within_one_segment() {
        let p = pattern("toolchains/*");
        assert!(!p.is_exact());
        assert!(p.matches("toolchains/go"));
        assert!(!p.matches("toolchains/a/b"));
        assert!(!p.matches("toolchains"));
        assert!(!p.matches("other/go"));
    }

    #[test]
    fn star_inside_a_segment_matches_a_part_of_it() {
        let p = pattern("toolchains/go-*");
        assert!(p.matches("toolchains/go-1.26"));
        assert!(p.matches("toolchains/go-"));
        assert!(!p.matches("toolchains/go"));
        assert!(!p.matches("toolchains/xgo-1"));
        let p = pattern("t*s/*o*");
        assert!(p.matches("toolchains/go"));
        assert!(p.matches("ts/o"));
        assert!(!p.matches("toolchain/go"));
    }

    #[test]
    fn double_star_matches_across_segments() {
        let p = pattern("toolchains/**");
        assert!(p.matches("toolchains/go"));
        assert!(p.matches("toolchains/a/b"));
        assert!(p.matches("toolchains"));
        assert!(!p.matches("other/go"));
        let p = pattern("**/go");
        assert!(p.matches("go"));
        assert!(p.matches("a/b/go"));
        assert!(!p.matches("a/b/gopher"));
        let p = pattern("a/**/**/z");
        assert!(p.matches("a/z"));
        assert!(p.matches("a/b/c/z"));
        assert!(pattern("**").matches("any/thing/at/all"));
    }

    #[test]
    fn pattern_rejected_if_it_names_a_registry_host() {
        for input in [
            "registry.example/toolchains/go",
            "127.0.0.1:5000/go",
            "localhost/go",
        ] {
            assert!(
                matches!(
                    RepositoryPattern::parse(input),
                    Err(PatternError::RegistryHost { .. })
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn pattern_rejected_if_segment_is_invalid() {
        assert_eq!(
            RepositoryPattern::parse("Toolchains/go"),
            Err(PatternError::InvalidSegment {
                segment: "Toolchains".into()
            })
        );
        assert_eq!(
            RepositoryPattern::parse("toolchains//go"),
            Err(PatternError::EmptySegment)
        );
        assert_eq!(
            RepositoryPattern::parse("toolchains/go/"),
            Err(PatternError::EmptySegment)
        );
        assert_eq!(
            RepositoryPattern::parse("toolchains/go**"),
            Err(PatternError::PartialDoubleStar {
                segment: "go**".into()
            })
        );
        assert_eq!(
            RepositoryPattern::parse("toolchains/g?"),
            Err(PatternError::InvalidSegment {
                segment: "g?".into()
            })
        );
        assert_eq!(RepositoryPattern::parse(""), Err(PatternError::Empty));
    }
}
