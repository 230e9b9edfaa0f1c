//! One error type for the core; each variant carries the facts (object, expected, got) and maps
//! to one exit code, decided in [`Error::exit_code`].

use std::path::PathBuf;

use crate::digest::Digest;
use crate::rules::SignatureFailure;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, settings or references: the user must change something.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The registry refused our credentials.
    #[error("registry {registry} refused the credentials for {operation}: {detail}")]
    RegistryAuth {
        registry: String,
        operation: String,
        detail: String,
    },
    /// The named object does not exist at the source.
    #[error("{object} was not found at {source_name}: {detail}")]
    NotFound {
        object: String,
        source_name: String,
        detail: String,
    },
    /// The registry or network failed (after retries); trying later may work.
    #[error("{operation} failed after {attempts} attempt(s): {detail}")]
    Unavailable {
        operation: String,
        attempts: u32,
        detail: String,
    },
    /// The local store or file system failed.
    #[error("{action} {}: {source}", path.display())]
    Store {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A verification rule refused the release.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The agent's answer (or why there was none), exit code and hint as the agent gave them.
    #[error("{message}")]
    Agent {
        exit: u8,
        message: String,
        hint: Option<String>,
    },
}

/// Why a release was refused: the object, the rule, and the facts.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{object}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        object: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{object}: size mismatch: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        object: String,
        expected: u64,
        actual: u64,
    },
    #[error("{object}: malformed: {reason}")]
    Malformed { object: String, reason: String },
    #[error("layer {layer}: entry {entry:?} refused: {rule}")]
    UnsafeEntry {
        layer: Digest,
        entry: String,
        rule: UnsafeEntryRule,
    },
    #[error(
        "{object}: GOEXPERIMENT mismatch: the job has {job:?}, the toolchain was built for {baseline:?}"
    )]
    GoexperimentMismatch {
        object: String,
        job: String,
        baseline: String,
    },
    #[error(
        "{object}: GOEXPERIMENT mismatch: `go env GOEXPERIMENT` reports {reported:?} for the job, \
         the toolchain was built for {baseline:?}"
    )]
    GoexperimentReported {
        object: String,
        reported: String,
        baseline: String,
    },
    #[error("layer {layer}: {limit} exceeded ({detail})")]
    BudgetExceeded {
        layer: Digest,
        limit: &'static str,
        detail: String,
    },
    /// An installed entry no longer matches what was installed (or cannot be shown to).
    #[error("store entry {entry}: {reason}")]
    EntryDamaged { entry: String, reason: String },
    /// An audit log's hash chain breaks at `line`.
    #[error("audit log {log}, line {line}: {reason}")]
    AuditChainBroken {
        log: String,
        line: u64,
        reason: String,
    },
    /// No signature of the release meets every rule; one failure per signature examined.
    #[error("release {index}: {}", describe_failures(failures))]
    Signature {
        index: Digest,
        failures: Vec<SignatureFailure>,
    },
}

fn describe_failures(failures: &[SignatureFailure]) -> String {
    match failures {
        [one] => one.to_string(),
        many => format!(
            "no signature is acceptable: {}",
            many.iter()
                .enumerate()
                .map(|(n, f)| format!("({}) {f}", n + 1))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// The extraction rules (see docs/architecture.md, "Extraction").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeEntryRule {
    #[error("absolute path")]
    AbsolutePath,
    #[error("path contains '..'")]
    ParentComponent,
    #[error("path is empty, not UTF-8 or contains control characters")]
    InvalidName,
    #[error("path is outside the toolchain root '{}/'", crate::TOOLCHAIN_ROOT)]
    OutsideRoot,
    #[error("path passes through a symlink")]
    ThroughSymlink,
    #[error("symlink target {target:?} escapes the toolchain root")]
    SymlinkEscapes { target: String },
    #[error("hard link target {target:?} is not a regular file extracted earlier in the root")]
    HardLinkTarget { target: String },
    #[error("entry type {kind} (device, fifo or other special file) is not allowed")]
    SpecialFile { kind: String },
    #[error("setuid, setgid or sticky bit set (mode {mode:o})")]
    PrivilegedMode { mode: u32 },
    #[error("entry appears twice")]
    Duplicate,
    #[error("whiteout entries are not part of the release format")]
    Whiteout,
    #[error("path or link target is {bytes} bytes long, over the {max}-byte limit")]
    PathTooLong { bytes: usize, max: usize },
    #[error("path has {depth} components, over the limit of {max}")]
    PathTooDeep { depth: usize, max: usize },
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn store(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Store {
            action,
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error (DESIGN.md: 2 usage/config, 3 registry/network,
    /// 4 local store, 42 verification or policy).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::RegistryAuth { .. } | Error::NotFound { .. } => 2,
            Error::Unavailable { .. } => 3,
            Error::Store { .. } => 4,
            Error::Rejected(_) => 42,
            // Only the codes the contract knows; anything else from a socket is a local failure.
            Error::Agent { exit, .. } => match exit {
                2 | 3 | 4 | 42 => *exit,
                _ => 4,
            },
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage { hint, .. } | Error::Agent { hint, .. } => hint.clone(),
            Error::RegistryAuth { .. } => Some(
                "check the credentials for this registry: TCDIST_REGISTRY_USERNAME / \
                 TCDIST_REGISTRY_PASSWORD with TCDIST_REGISTRY_CREDENTIALS_HOST naming it, or its \
                 entry in the docker config file (DOCKER_CONFIG)"
                    .into(),
            ),
            Error::NotFound { .. } => {
                Some("check the reference (registry, repository, tag)".into())
            }
            Error::Unavailable { .. } => {
                Some("the registry or network failed; retrying later may succeed".into())
            }
            Error::Store { .. } => Some(
                "check the store directory (TCVERIFY_STORE): permissions and free space".into(),
            ),
            Error::Rejected(
                Rejection::GoexperimentMismatch { baseline, .. }
                | Rejection::GoexperimentReported { baseline, .. },
            ) => Some(format!(
                "set the job's GOEXPERIMENT to {baseline:?} (the toolchain's baseline), or use a \
                 toolchain built for the job's experiments"
            )),
            Error::Rejected(Rejection::EntryDamaged { .. }) => Some(
                "the installed toolchain changed after it was verified (or cannot be shown not \
                 to have): nothing in it runs; `tcverify fsck` moves it to quarantine and the \
                 next pull installs a fresh copy. Find out who could write to the store"
                    .into(),
            ),
            Error::Rejected(Rejection::AuditChainBroken { .. }) => Some(
                "the log was changed after it was written: keep this copy for investigation, \
                 and compare it with the records shipped elsewhere (e.g. the journal)"
                    .into(),
            ),
            Error::Rejected(_) => Some(
                "the release was refused and nothing was installed; do not use it, and report it \
                 to the toolchain's publishers"
                    .into(),
            ),
        }
    }
}

impl Rejection {
    /// The rule that refused the release, for the audit log and `--json`.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::DigestMismatch { .. } | Rejection::SizeMismatch { .. } => "digest-binding",
            Rejection::Malformed { .. } => "structure",
            Rejection::UnsafeEntry { .. } | Rejection::BudgetExceeded { .. } => "extraction",
            Rejection::GoexperimentMismatch { .. } | Rejection::GoexperimentReported { .. } => {
                "goexperiment"
            }
            Rejection::EntryDamaged { .. } => "store-integrity",
            Rejection::AuditChainBroken { .. } => "audit-chain",
            Rejection::Signature { failures, .. } => failures
                .first()
                .map_or("signature-present", |failure| failure.rule.name()),
        }
    }

    pub fn malformed(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection::Malformed {
            object: object.into(),
            reason: reason.into(),
        }
    }
}
