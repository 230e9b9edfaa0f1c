//! Policy file errors as `FILE:LINE:COLUMN: message`, the form editors and CI logs link to.
//! Lines and columns count from 1; columns count characters, not bytes.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in the policy file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: SourceLocation,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read the policy file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One line per problem, in file order.
    #[error("{}", lines(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("{}: cannot read the trusted root: {source}", path.display())]
    ReadTrustedRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a usable trusted root: {source}", path.display())]
    TrustedRoot {
        path: PathBuf,
        #[source]
        source: crate::trust::trusted_root::TrustedRootError,
    },
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl PolicyError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Read { .. }
            | PolicyError::ReadTrustedRoot { .. }
            | PolicyError::TrustedRoot { .. } => &[],
            PolicyError::Invalid { diagnostics } => diagnostics,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            PolicyError::Read { .. } => "check the policy file's path and permissions".to_owned(),
            PolicyError::ReadTrustedRoot { .. } => {
                "check the path given with --trust / TCVERIFY_TRUST".to_owned()
            }
            PolicyError::TrustedRoot { .. } => {
                "export it again with `distd trust-root export`; its format is described in \
                 docs/policy.md"
                    .to_owned()
            }
            PolicyError::Invalid { .. } => {
                "fix the policy file; its format is described in docs/policy.md".to_owned()
            }
        }
    }
}

/// Turns byte offsets (as the TOML parser reports them) into locations.
pub(crate) struct LineIndex<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text }
    }

    pub(crate) fn locate(&self, offset: usize) -> SourceLocation {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        SourceLocation {
            file: self.file.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    pub(crate) fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: self.locate(span.start),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let text = "a = 1\nbé = \"x\"\n";
        let index = LineIndex::new(Path::new("p.toml"), text);
        let at = |offset| {
            let l = index.locate(offset);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(at(text.find('"').unwrap()), (2, 6));
        assert_eq!(at(10_000), (3, 1));
        assert_eq!(index.locate(4).to_string(), "p.toml:1:5");
    }
}
