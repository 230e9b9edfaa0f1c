//! The signer policy: per repository, which SPIFFE IDs may sign its releases, and the trust
//! material (trust domain bundles, timestamp authorities, transparency logs) to verify them
//! with. It is read from a TOML file whose format docs/policy.md describes; a Sigstore trusted
//! root given next to it adds to the trust material.
//!
//! A policy is a value: the verifier takes it as an argument, and a repository no
//! `[[repository]]` entry matches has no policy, so the caller refuses it.

mod diagnostic;
mod load;
mod pattern;
mod rule;
mod signer;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Serialize;
use sigstore_types::TsaAuthority;

use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::trust::tlog::TransparencyLog;
use crate::trust::trusted_root::parse_trusted_root;
use crate::trust::{Authority, TrustError, TrustMaterial};

pub use diagnostic::{Diagnostic, PolicyError, SourceLocation};
pub use pattern::{PatternError, RepositoryPattern};
pub use rule::IdentityRule;

/// The only policy format version this build reads.
pub const FORMAT_VERSION: i64 = 1;

/// The longest a signer's SVID may be valid (notAfter − notBefore) when the policy does not
/// set `max_svid_lifetime`. SPIRE issues the signer's SVIDs for 15 minutes.
pub const DEFAULT_MAX_SVID_LIFETIME: SignedDuration = SignedDuration::from_hours(1);

/// How long a verification may be reused (by the build-host agent) when the policy does not
/// set `max_verification_age`: a removed signature or a forked log is seen within this time.
pub const DEFAULT_MAX_VERIFICATION_AGE: SignedDuration = SignedDuration::from_mins(5);

#[derive(Clone, Debug)]
pub struct Policy {
    path: PathBuf,
    repositories: Vec<RepositoryPolicy>,
    trust: TrustMaterial,
    trust_domains: Vec<TrustDomainSummary>,
    timestamp_authorities: Vec<TimestampAuthoritySummary>,
    repository_summaries: Vec<RepositorySummary>,
    trusted_root: Option<TrustedRootSummary>,
    max_svid_lifetime: SignedDuration,
    max_verification_age: SignedDuration,
    /// Set by the verifier (`--offline`): no transparency log or witness is contacted.
    logs_offline: bool,
}

/// One `[[repository]]` entry.
#[derive(Clone, Debug)]
pub struct RepositoryPolicy {
    pub(crate) pattern: RepositoryPattern,
    pub(crate) signers: IdentityRule,
    /// How many distinct signers must have signed a release (1 unless the entry says more).
    pub(crate) threshold: usize,
    /// Who may sign channel statements and yank lists; `None`: nobody, so the repository has
    /// no channels and no yanks are honoured from the registry.
    pub(crate) promoters: Option<IdentityRule>,
    /// Who may halt or abort a channel's rollout and advance it along a plan promoters signed,
    /// never beyond it (the daemon's judge); `None`: only promoters move rollouts.
    pub(crate) brakes: Option<IdentityRule>,
    pub(crate) timestamp_authorities: Vec<String>,
    pub(crate) transparency_logs: Vec<String>,
    pub(crate) declared_at: SourceLocation,
}

impl Policy {
    /// Reads the policy and every trust file it names.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Self::load_with_trusted_root(path, None)
    }

    /// Reads the policy, every trust file it names and, when given, a Sigstore trusted root
    /// (`trusted_root.json`) whose material joins the policy's.
    pub fn load_with_trusted_root(
        path: &Path,
        trusted_root: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let root = trusted_root
            .map(|file| {
                let bytes = std::fs::read(file).map_err(|source| PolicyError::ReadTrustedRoot {
                    path: file.to_path_buf(),
                    source,
                })?;
                parse_trusted_root(&bytes)
                    .map(|root| (file, root))
                    .map_err(|source| PolicyError::TrustedRoot {
                        path: file.to_path_buf(),
                        source,
                    })
            })
            .transpose()?;
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        load::load(&text, path, root)
    }

    /// Parses policy text as if read from `path`: trust files are resolved against its
    /// directory, and diagnostics name it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        load::load(text, path, None)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy for `repository` (its path without registry host, e.g. `toolchains/go`):
    /// the first `[[repository]]` whose name matches, in file order. `None` means the policy
    /// does not cover the repository, and nothing from it is to be trusted.
    pub fn for_repository(&self, repository: &str) -> Option<&RepositoryPolicy> {
        self.repositories
            .iter()
            .find(|entry| entry.pattern.matches(repository))
    }

    pub fn repositories(&self) -> &[RepositoryPolicy] {
        &self.repositories
    }

    pub fn trust(&self) -> &TrustMaterial {
        &self.trust
    }

    /// From now on, contact no transparency log or witness: verify from what the release
    /// carries and the trust material.
    pub fn go_offline(&mut self) {
        self.logs_offline = true;
    }

    /// Whether transparency logs and their witnesses may be contacted.
    pub fn logs_online(&self) -> bool {
        !self.logs_offline
    }

    /// The longest validity a signer's leaf may have.
    pub fn max_svid_lifetime(&self) -> SignedDuration {
        self.max_svid_lifetime
    }

    /// The longest a verification may be reused before it is done again.
    pub fn max_verification_age(&self) -> SignedDuration {
        self.max_verification_age
    }

    /// The X.509 authorities of `trust_domain` (a name, as in a SPIFFE ID), or `None` when
    /// the policy declares no such trust domain. Bundles from the Workload API are fetched now.
    pub async fn trust_domain_authorities(
        &self,
        trust_domain: &str,
    ) -> Result<Option<Vec<Authority>>, TrustError> {
        let Ok(trust_domain) = TrustDomain::parse(trust_domain) else {
            return Ok(None);
        };
        match self.trust.domains.get(&trust_domain) {
            Some(bundle) => bundle.authorities(&trust_domain).await.map(Some),
            None => Ok(None),
        }
    }

    /// The timestamp authorities `repository` trusts, with their names.
    pub fn timestamp_authorities<'a>(
        &'a self,
        repository: &'a RepositoryPolicy,
    ) -> Vec<(&'a str, &'a TsaAuthority)> {
        repository
            .timestamp_authorities
            .iter()
            .filter_map(|name| {
                self.trust
                    .timestamp_authority(name)
                    .map(|tsa| (name.as_str(), tsa))
            })
            .collect()
    }

    /// The transparency logs `repository` requires an entry in, with their names (empty: the
    /// policy declares no log, so none is required).
    pub fn transparency_logs<'a>(
        &'a self,
        repository: &'a RepositoryPolicy,
    ) -> Vec<(&'a str, &'a TransparencyLog)> {
        repository
            .transparency_logs
            .iter()
            .filter_map(|name| {
                self.trust
                    .transparency_log(name)
                    .map(|log| (name.as_str(), log))
            })
            .collect()
    }

    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            path: self.path.clone(),
            trust_domains: self.trust_domains.clone(),
            timestamp_authorities: self.timestamp_authorities.clone(),
            repositories: self.repository_summaries.clone(),
            trusted_root: self.trusted_root.clone(),
            max_svid_lifetime: format!("{:#}", self.max_svid_lifetime),
            max_verification_age: format!("{:#}", self.max_verification_age),
        }
    }
}

impl RepositoryPolicy {
    pub fn pattern(&self) -> &RepositoryPattern {
        &self.pattern
    }

    pub fn signers(&self) -> &IdentityRule {
        &self.signers
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn promoters(&self) -> Option<&IdentityRule> {
        self.promoters.as_ref()
    }

    pub fn brakes(&self) -> Option<&IdentityRule> {
        self.brakes.as_ref()
    }

    /// Names of the timestamp authorities this repository trusts (all declared ones unless
    /// the entry lists some).
    pub fn timestamp_authorities(&self) -> &[String] {
        &self.timestamp_authorities
    }

    /// Where the entry is in the policy file, for messages that say which entry refused.
    pub fn declared_at(&self) -> &SourceLocation {
        &self.declared_at
    }

    /// Whether `signer` may sign this repository's releases; on refusal, every reason.
    pub fn check_signer(&self, signer: &SpiffeId) -> Result<(), Vec<String>> {
        self.signers.check(signer)
    }
}

/// Reads and validates a policy file, everything it names and the trusted root given with it,
/// for `tcverify policy check`.
pub fn check_policy_file(
    path: &Path,
    trusted_root: Option<&Path>,
) -> Result<PolicySummary, PolicyError> {
    Policy::load_with_trusted_root(path, trusted_root).map(|policy| policy.summary())
}

/// What a policy declares, for people (`Display`) and scripts (`Serialize`).
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    pub path: PathBuf,
    pub trust_domains: Vec<TrustDomainSummary>,
    pub timestamp_authorities: Vec<TimestampAuthoritySummary>,
    /// In file order, which is match order.
    pub repositories: Vec<RepositorySummary>,
    pub trusted_root: Option<TrustedRootSummary>,
    /// e.g. `1h`
    pub max_svid_lifetime: String,
    /// e.g. `5m`
    pub max_verification_age: String,
}

/// What a trusted root given with the policy contributed.
#[derive(Clone, Debug, Serialize)]
pub struct TrustedRootSummary {
    pub path: PathBuf,
    /// X.509 authorities of SPIFFE trust domains.
    pub authorities: usize,
    pub timestamp_authorities: usize,
    /// The logs' names (their origins).
    pub transparency_logs: Vec<String>,
    /// Certificate authorities of other kinds (e.g. Fulcio), not trusted for SVIDs.
    pub ignored_authorities: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrustDomainSummary {
    pub name: String,
    /// e.g. `bundle trust/td.pem (2 X.509 authorities)`
    pub source: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimestampAuthoritySummary {
    pub name: String,
    /// The chain file as the policy names it.
    pub chain: String,
    pub certificates: usize,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepositorySummary {
    pub name: String,
    /// The identity rule, as [`IdentityRule`] displays it.
    pub signers: String,
    /// Distinct signers a release needs.
    pub threshold: usize,
    /// Who signs channel heads and yank lists, as [`IdentityRule`] displays it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoters: Option<String>,
    /// Who may halt rollouts and advance them along their plan, as [`IdentityRule`] displays it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brakes: Option<String>,
    pub timestamp_authorities: Vec<String>,
    pub transparency_logs: Vec<String>,
    pub declared_at: SourceLocation,
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        writeln!(
            f,
            "{}: ok: {}, {}, {}",
            self.path.display(),
            plural(self.repositories.len(), "repository", "repositories"),
            plural(self.trust_domains.len(), "trust domain", "trust domains"),
            plural(
                self.timestamp_authorities.len(),
                "timestamp authority",
                "timestamp authorities"
            ),
        )?;
        writeln!(
            f,
            "signer SVIDs: valid for at most {} (max_svid_lifetime)",
            self.max_svid_lifetime
        )?;
        writeln!(
            f,
            "verifications: reused for at most {} (max_verification_age)",
            self.max_verification_age
        )?;
        if let Some(root) = &self.trusted_root {
            write!(
                f,
                "trusted root {}: {}, {}, transparency logs [{}]",
                root.path.display(),
                plural(root.authorities, "X.509 authority", "X.509 authorities"),
                plural(
                    root.timestamp_authorities,
                    "timestamp authority",
                    "timestamp authorities"
                ),
                root.transparency_logs.join(", ")
            )?;
            if root.ignored_authorities > 0 {
                write!(
                    f,
                    "; {} without a spiffe:// URI left out",
                    plural(
                        root.ignored_authorities,
                        "certificate authority",
                        "certificate authorities"
                    )
                )?;
            }
            writeln!(f)?;
        }
        for td in &self.trust_domains {
            writeln!(f, "trust domain {}: {}", td.name, td.source)?;
        }
        for tsa in &self.timestamp_authorities {
            write!(
                f,
                "timestamp authority {}: chain {} ({})",
                tsa.name,
                tsa.chain,
                plural(tsa.certificates, "certificate", "certificates")
            )?;
            match (&tsa.valid_from, &tsa.valid_until) {
                (None, None) => {}
                (from, until) => write!(
                    f,
                    ", trusted from {} until {}",
                    from.as_deref().unwrap_or("any time"),
                    until.as_deref().unwrap_or("further notice")
                )?,
            }
            writeln!(f)?;
        }
        for repository in &self.repositories {
            write!(
                f,
                "repository {} (line {}): signers {}",
                repository.name, repository.declared_at.line, repository.signers
            )?;
            if repository.threshold > 1 {
                write!(f, " ({} distinct)", repository.threshold)?;
            }
            if let Some(promoters) = &repository.promoters {
                write!(f, "; promoters {promoters}")?;
            }
            if let Some(brakes) = &repository.brakes {
                write!(f, "; brakes {brakes}")?;
            }
            if repository.timestamp_authorities.is_empty() {
                writeln!(f, "; no timestamp authority")?;
            } else {
                writeln!(
                    f,
                    "; timestamp authorities {}",
                    repository.timestamp_authorities.join(", ")
                )?;
            }
        }
        Ok(())
    }
}
