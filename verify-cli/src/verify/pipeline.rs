//! The verification pipeline: stages run in a fixed order on a resolved release, and only when
//! all pass is a [`Verified`] value made. Extraction takes only `Verified` releases.
//!
//! Stages: (1) digest binding — every document was fetched by the digest that names it
//! (enforced by `source`/`resolve` and recorded here); (2) structure — the parts agree;
//! (3) signature — a signature by an SVID the policy allows for the repository, at a proven
//! time, over a payload naming this index (see `signature`). Layer bytes are checked against
//! their digests while streaming, before the store accepts them; (4) transparency log — the
//! accepted signature's entry, and the log's current state when it can be reached. Signatures
//! are fetched while the structure is, but stages are judged, and failures reported, in order.

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::Platform;
use crate::resolve::{ResolvedRelease, resolve_index, resolve_platform};
use crate::source::ReleaseSource;
use crate::store::extract::ExtractBudget;
use crate::verify::freshness::{self, CheckpointStore, Freshness};
use crate::verify::policy::Policy;
use crate::verify::signature::{self, SignatureVerdict};
use crate::verify::structure;

/// A value that passed every verification stage. Its field is private and it is made only by
/// [`Verifier::verify`], so holding one is proof that the checks ran (a clone is the same proof,
/// which the agent's verification cache keeps).
#[derive(Clone, Debug)]
pub struct Verified<T> {
    value: T,
    report: VerificationReport,
}

impl<T> Verified<T> {
    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn report(&self) -> &VerificationReport {
        &self.report
    }
}

/// What was verified, for `--json` and logs.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationReport {
    pub index_digest: Digest,
    pub manifest_digest: Digest,
    pub platform: Platform,
    /// The stages that passed, in order.
    pub checks: Vec<&'static str>,
    /// The signature that was accepted: signer, proven time, where it was found.
    pub signature: SignatureVerdict,
    /// Whether the log's current state was checked (when the signature is logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_freshness: Option<Freshness>,
}

/// Built once from the policy (and its trust material); verifies any number of releases.
pub struct Verifier {
    policy: Policy,
    budget: ExtractBudget,
    checkpoints: Option<CheckpointStore>,
    online: bool,
}

impl Verifier {
    pub fn new(policy: Policy, budget: ExtractBudget) -> Self {
        Self {
            policy,
            budget,
            checkpoints: None,
            online: true,
        }
    }

    /// Remember each log's newest checkpoint in `store`, so a log that later rewrites its
    /// history is caught.
    pub fn remembering_checkpoints(mut self, store: &std::path::Path) -> Self {
        self.checkpoints = Some(CheckpointStore::new(store));
        self
    }

    /// Never contact transparency logs; verify from the bundle's proof and the trust material.
    pub fn offline(mut self) -> Self {
        self.online = false;
        self
    }

    pub fn budget(&self) -> &ExtractBudget {
        &self.budget
    }

    /// Resolves the release `source` names for `platform` and runs every stage on it.
    /// `reference` is how the user named it, for the result.
    pub async fn verify(
        &self,
        source: &ReleaseSource,
        reference: &str,
        platform: &Platform,
    ) -> Result<Verified<ResolvedRelease>> {
        let (index, index_digest) = resolve_index(source).await?;
        // Signatures depend on the index digest only, so they are fetched and checked while the
        // platform's manifest and config are fetched: registry round trips, each authenticated,
        // cost more than all the checks together.
        let (release, signature) = tokio::join!(
            resolve_platform(source, reference, index, index_digest.clone(), platform),
            signature::check(source, &index_digest, &self.policy),
        );
        // Failures are reported in stage order, whichever was found first.
        let release = release?;
        let mut checks = vec!["digest-binding"];
        structure::check(&release, &self.budget)?;
        checks.push("structure");
        let signature = signature?;
        checks.push("signature");
        let log_freshness = match &signature.log {
            Some(inclusion) => {
                checks.push("transparency-log");
                let log = self
                    .policy
                    .trust()
                    .transparency_log(&inclusion.log)
                    .expect("the accepted entry's log is in the policy");
                let freshness =
                    freshness::check(inclusion, log, self.checkpoints.as_ref(), self.online)
                        .await
                        .map_err(|failure| failure.into_error(&release.index_digest, inclusion))?;
                Some(freshness)
            }
            None => None,
        };
        let report = VerificationReport {
            index_digest: release.index_digest.clone(),
            manifest_digest: release.manifest_descriptor.digest.clone(),
            platform: release.platform.clone(),
            checks,
            signature,
            log_freshness,
        };
        Ok(Verified {
            value: release,
            report,
        })
    }
}

#[cfg(test)]
mod tests;
