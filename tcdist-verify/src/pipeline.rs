//! The verification pipeline: stages run in a fixed order on a resolved release, and only when
//! all pass is a [`Verified`] value made. Extraction takes only `Verified` releases.
//!
//! Stages: (1) digest binding — every document was fetched by the digest that names it
//! (enforced by `source`/`resolve` and recorded here); (2) structure — the parts agree;
//! (3) signature — a signature by an SVID the policy allows for the repository, at a proven
//! time, over a payload naming this index (see `signature`). Layer bytes are checked against
//! their digests while streaming, before the store accepts them; (4) transparency log — the
//! accepted signature's entry, and the log's current state when it can be reached; (5)
//! lifecycle — what the name pulled means now: tag binding, channel heads, yanks (see
//! `lifecycle`); (6) rollout — during a channel's rollout, which release this host's arm gets
//! (see `rollout`): the candidate is then verified through every stage by digest. Signatures and lifecycle statements are fetched while the structure is, but
//! stages are judged, and failures reported, in order.

use serde::Serialize;

use crate::discover;
use crate::freshness::{self, CheckpointStore, Freshness};
use crate::lifecycle::{self, Asked, LifecycleMemory, LifecycleVerdict, Referrers, Waivers};
use crate::policy::Policy;
use crate::rollout::{self, Arm, RolloutVerdict};
use crate::signature::{self, SignatureVerdict};
use crate::structure;
use crate::structure::ExtractBudget;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::platform::Platform;
use tcdist_core::rules::Rule;
use tcdist_oci::release::ImageIndex;
use tcdist_oci::resolve::{ResolvedRelease, resolve_index, resolve_platform};
use tcdist_oci::source::ReleaseSource;

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
    /// Further signatures by distinct signers, when the repository's threshold asks for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cosignatures: Vec<SignatureVerdict>,
    /// Whether the log's current state was checked (when the signature is logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_freshness: Option<Freshness>,
    /// The channel head the tag was accepted by, the yank list known, checks waived.
    pub lifecycle: LifecycleVerdict,
    /// The channel's rollout, when one counted: this host's arm and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutVerdict>,
}

/// Built once from the policy (and its trust material); verifies any number of releases.
pub struct Verifier {
    policy: Policy,
    budget: ExtractBudget,
    checkpoints: Option<CheckpointStore>,
    memory: Option<LifecycleMemory>,
    waivers: Waivers,
    host_id: Option<String>,
}

impl Verifier {
    pub fn new(policy: Policy, budget: ExtractBudget) -> Self {
        Self {
            policy,
            budget,
            checkpoints: None,
            memory: None,
            waivers: Waivers::default(),
            host_id: None,
        }
    }

    /// Remember in `store` each log's newest checkpoint, so a log that later rewrites its
    /// history is caught, and each repository's newest channel heads and yank list, so an
    /// older head or a deleted yank is caught.
    pub fn remembering(mut self, store: &std::path::Path) -> Self {
        self.checkpoints = Some(CheckpointStore::new(store));
        self.memory = Some(LifecycleMemory::new(store));
        self
    }

    /// Waive the lifecycle checks the caller asked to (each waiver is reported).
    pub fn waiving(mut self, waivers: Waivers) -> Self {
        self.waivers = waivers;
        self
    }

    /// Decide this host's arm in channel rollouts by `host_id`; without one a host is in no
    /// candidate arm.
    pub fn for_host(mut self, host_id: Option<String>) -> Self {
        self.host_id = host_id;
        self
    }

    /// Never contact transparency logs or their witnesses; verify from the bundle's proof and
    /// the trust material.
    pub fn offline(mut self) -> Self {
        self.policy.go_offline();
        self
    }

    pub fn budget(&self) -> &ExtractBudget {
        &self.budget
    }

    /// Resolves the release `source` names for `platform` and runs every stage on it; a pull
    /// by channel during a rollout gets the release this host's arm names (see `rollout`).
    /// `reference` is how the user named it, for the result.
    pub async fn verify(
        &self,
        source: &ReleaseSource,
        reference: &str,
        platform: &Platform,
    ) -> Result<Verified<ResolvedRelease>> {
        let source = &source.reading_once();
        let (index, index_digest) = resolve_index(source).await?;
        let tag = source.named_tag();
        let referrers = Referrers::sort(discover::list_bundles(source, &index_digest).await?, tag);
        let asked = Asked {
            tag,
            waivers: self.waivers,
        };
        let full = self.verify_index(
            source,
            reference,
            platform,
            index,
            &index_digest,
            &referrers,
            asked,
        );
        let Some(channel) =
            tag.filter(|_| referrers.is_channel() && !referrers.rollouts().is_empty())
        else {
            return full.await;
        };
        let examine = rollout::examine(
            source,
            &index_digest,
            channel,
            &self.policy,
            referrers.rollouts(),
        );
        tokio::pin!(full, examine);
        let mut current = None;
        // The newest statement's unsigned hints may already put this host in the candidate's
        // arm; else the rollout's statements (a few small documents, usually read before the
        // current release) tell. A host in the candidate's arm needs only the current release's
        // head and yank list, so the rest of its verification waits, and runs only if the
        // verified statement decides otherwise (below).
        let mut examined = None;
        let candidate =
            match rollout::hinted_candidate(referrers.rollouts(), self.host_id.as_deref()) {
                Some(hinted) if source.repository().is_some() => Some(hinted),
                _ => {
                    let read = tokio::select! {
                        read = &mut examine => read?,
                        verified = &mut full => {
                            current = Some(verified?);
                            examine.as_mut().await?
                        }
                    };
                    let provisional = read.provisional_candidate(self.host_id.as_deref()).cloned();
                    examined = Some(read);
                    provisional
                }
            };
        let mut early = None;
        let lifecycle = match (&current, candidate, source.repository()) {
            (Some(current), _, _) => current.report.lifecycle.clone(),
            (None, Some(candidate), Some(repository)) => {
                let rest = async {
                    match examined.take() {
                        Some(read) => Ok(read),
                        None => examine.as_mut().await,
                    }
                };
                let head =
                    self.channel_lifecycle(source, &index_digest, repository, &referrers, asked);
                let (read, lifecycle, verified) = tokio::join!(
                    rest,
                    head,
                    self.verify_candidate(source, reference, platform, &candidate)
                );
                examined = Some(read?);
                early = Some((candidate, verified));
                lifecycle?
            }
            (None, _, _) => {
                let verified = full.as_mut().await?;
                let lifecycle = verified.report.lifecycle.clone();
                current = Some(verified);
                lifecycle
            }
        };
        let examined = match examined {
            Some(read) => read,
            None => examine.await?,
        };
        let repository = source
            .repository()
            .or(current
                .as_ref()
                .map(|c| c.report.signature.repository.as_str()))
            .expect("a layout's release was verified in full");
        let judged = rollout::Judged {
            repository,
            channel,
            head: lifecycle.channel.as_ref(),
            yanks: lifecycle.yanks.as_ref(),
            host_id: self.host_id.as_deref(),
        };
        let ignored: Vec<String> = examined.ignored().collect();
        let verdict = rollout::judge(examined, &index_digest, self.memory.as_ref(), judged)?;
        let candidate = match &verdict {
            Some(verdict) if verdict.arm == Arm::Candidate => Some(match early {
                Some((digest, verified)) if digest == verdict.candidate => verified,
                _ => {
                    self.verify_candidate(source, reference, platform, &verdict.candidate)
                        .await
                }
            }),
            _ => None,
        };
        let (mut verdict, why_current) = match (verdict, candidate) {
            (Some(verdict), Some(Ok(mut candidate))) => {
                candidate.report.lifecycle.channel = lifecycle.channel;
                candidate.report.rollout = Some(verdict);
                return Ok(candidate);
            }
            // Yanked since the channel's yank list was read: its hosts keep the current one.
            (Some(verdict), Some(Err(Error::Rejected(Rejection::Signature { failures, .. }))))
                if failures.iter().any(|f| f.rule == Rule::Yanked) =>
            {
                let why = format!("the candidate is yanked: {}", failures[0].reason);
                (Some(verdict), Some(why))
            }
            (_, Some(Err(e))) => return Err(e),
            (verdict, _) => (verdict, None),
        };
        let mut current = match current {
            Some(current) => current,
            None => full.await?,
        };
        match verdict.as_mut() {
            Some(verdict) => {
                if let Some(why) = why_current {
                    verdict.arm = Arm::Current;
                    verdict.reason = why;
                }
                current.report.rollout = Some(verdict.clone());
            }
            None => current.report.lifecycle.ignored.extend(ignored),
        }
        Ok(current)
    }

    /// The current release's lifecycle stage alone (its channel head and the yank list): what
    /// a host in a rollout's candidate arm needs of it.
    async fn channel_lifecycle(
        &self,
        source: &ReleaseSource,
        index: &Digest,
        repository: &str,
        referrers: &Referrers,
        asked: Asked<'_>,
    ) -> Result<LifecycleVerdict> {
        let examined = lifecycle::examine(source, index, &self.policy, referrers).await?;
        lifecycle::judge(
            examined,
            source,
            index,
            repository,
            &self.policy,
            self.memory.as_ref(),
            asked,
        )
        .await
    }

    /// The rollout's candidate, verified as a release of the repository pulled by digest: the
    /// rollout statement, not a tag, binds it to the channel, and no waiver applies.
    async fn verify_candidate(
        &self,
        source: &ReleaseSource,
        reference: &str,
        platform: &Platform,
        candidate: &Digest,
    ) -> Result<Verified<ResolvedRelease>> {
        let source = source.pinned(candidate);
        // Pinned: its referrers are listed while its index is fetched (and checked against
        // the digest).
        let (resolved, listed) = tokio::join!(
            resolve_index(&source),
            discover::list_bundles(&source, candidate)
        );
        let (index, index_digest) = resolved?;
        let referrers = Referrers::sort(listed?, None);
        let asked = Asked {
            tag: None,
            waivers: Waivers::default(),
        };
        // The reference stays as asked: the store remembers the pull under it.
        self.verify_index(
            &source,
            reference,
            platform,
            index,
            &index_digest,
            &referrers,
            asked,
        )
        .await
    }

    /// Runs every stage on the release `index` that `source` resolved to.
    #[allow(clippy::too_many_arguments)]
    async fn verify_index(
        &self,
        source: &ReleaseSource,
        reference: &str,
        platform: &Platform,
        index: ImageIndex,
        index_digest: &Digest,
        referrers: &Referrers,
        asked: Asked<'_>,
    ) -> Result<Verified<ResolvedRelease>> {
        // One listing of the index's bundles serves the signatures and the lifecycle
        // statements. Both depend on the index digest only, so they are fetched and checked
        // while the platform's manifest and config are: registry round trips, each
        // authenticated, cost more than all the checks together.
        let (release, found, examined) = tokio::join!(
            resolve_platform(source, reference, index, index_digest.clone(), platform),
            signature::find(
                source,
                index_digest,
                &self.policy,
                &referrers.release,
                referrers.tag_to_bind()
            ),
            lifecycle::examine(source, index_digest, &self.policy, referrers),
        );
        // Failures are reported in stage order, whichever was found first.
        let release = release?;
        let mut checks = vec!["digest-binding"];
        structure::check(&release, &self.budget)?;
        checks.push("structure");
        let mut signatures =
            signature::judge(found?, index_digest, &self.policy, referrers.tag_to_bind())?;
        let signature = signatures.remove(0);
        checks.push("signature");
        let log_freshness = match &signature.log {
            Some(inclusion) => {
                checks.push("transparency-log");
                let log = self
                    .policy
                    .trust()
                    .transparency_log(&inclusion.log)
                    .expect("the accepted entry's log is in the policy");
                let freshness = freshness::check(
                    inclusion,
                    log,
                    self.checkpoints.as_ref(),
                    self.policy.logs_online(),
                )
                .await
                .map_err(|failure| failure.into_error(&release.index_digest, inclusion))?;
                Some(freshness)
            }
            None => None,
        };
        let lifecycle = lifecycle::judge(
            examined?,
            source,
            index_digest,
            &signature.repository,
            &self.policy,
            self.memory.as_ref(),
            asked,
        )
        .await?;
        checks.push("lifecycle");
        let report = VerificationReport {
            index_digest: release.index_digest.clone(),
            manifest_digest: release.manifest_descriptor.digest.clone(),
            platform: release.platform.clone(),
            checks,
            signature,
            cosignatures: signatures,
            log_freshness,
            lifecycle,
            rollout: None,
        };
        Ok(Verified {
            value: release,
            report,
        })
    }
}

#[cfg(test)]
mod tests;
