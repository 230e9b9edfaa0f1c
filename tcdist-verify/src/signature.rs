//! The signature stage: a release is accepted only when one of its signatures meets every rule
//! (DESIGN.md, "Signatures and trust"). Each candidate runs the rules in the order of the
//! Sigstore client spec — time, chain at that time, signature, subject, identity, log — and
//! the first failing rule is recorded; when none passes, every candidate's failure is reported.

use jiff::Timestamp;
use serde::Serialize;

use crate::discover::{self, Candidate, Encoding};
use crate::policy::{IdentityRule, Policy, RepositoryPolicy};
use crate::spiffe_id::SpiffeId;
use crate::tlog::{LogFailure, LogInclusion, verify_inclusion};
use crate::{svid, timestamp};
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::rules::{Rule, SignatureFailure};
use tcdist_oci::attachments::{ReleaseStatement, SignedSubject, SimpleSigning};
use tcdist_oci::release::Descriptor;
use tcdist_oci::source::ReleaseSource;

/// What an accepted signature proved.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureVerdict {
    pub signer: SpiffeId,
    pub signed_at: Timestamp,
    pub timestamp_authority: String,
    pub encoding: Encoding,
    pub origin: String,
    pub repository: String,
    /// The tag the signed statement names, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub certificate_serial: String,
    /// The transparency-log entry that records the signature, when the policy requires one.
    pub log: Option<LogInclusion>,
}

/// The signatures found on a release: those that met every rule (in the order found) and
/// why the others did not.
#[derive(Debug, Default)]
pub struct Found {
    pub valid: Vec<SignatureVerdict>,
    pub failures: Vec<SignatureFailure>,
    examined: usize,
}

/// Finds the release's signatures (among `bundles`, the Sigstore bundles listed as its
/// referrers, then under cosign's tag) and checks each against every rule, until
/// `threshold` distinct signers whose statements name `tag` (any tag, when `None`) are found.
pub async fn find(
    source: &ReleaseSource,
    index: &Digest,
    policy: &Policy,
    bundles: &[Descriptor],
    tag: Option<&str>,
) -> Result<Found> {
    // A registry names the repository; refuse early, before any signature is fetched.
    if let Some(repository) = source.repository()
        && policy.for_repository(repository).is_none()
    {
        return Err(refusal(index, vec![not_covered(repository)]).into());
    }
    let threshold = |found: &Found| {
        found
            .valid
            .first()
            .and_then(|verdict| policy.for_repository(&verdict.repository))
            .map_or(1, |rules| rules.threshold)
    };
    let mut found = Found::default();
    for place in discover::PLACES {
        let discovered = discover::discover(source, index, bundles, place).await?;
        found.examined += discovered.candidates.len() + discovered.failures.len();
        found.failures.extend(discovered.failures);
        for candidate in &discovered.candidates {
            match check_candidate(candidate, index, source.repository(), policy).await? {
                Ok(verdict) => found.valid.push(verdict),
                Err(failure) => found.failures.push(failure),
            }
            if distinct_signers(&found.valid, tag).len() >= threshold(&found) {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// The signatures that count for a pull: by distinct signers, naming `tag` when the pull asks
/// for one that no channel statement speaks for; at least the repository's threshold of them.
pub fn judge(
    found: Found,
    index: &Digest,
    policy: &Policy,
    tag: Option<&str>,
) -> Result<Vec<SignatureVerdict>> {
    let signers = distinct_signers(&found.valid, tag);
    let threshold = found
        .valid
        .first()
        .and_then(|verdict| policy.for_repository(&verdict.repository))
        .map_or(1, |rules| rules.threshold);
    if !signers.is_empty() && signers.len() >= threshold {
        return Ok(signers.into_iter().take(threshold).cloned().collect());
    }
    let mut failures = Vec::new();
    if let Some(tag) = tag {
        for verdict in found.valid.iter().filter(|v| !names_tag(v, Some(tag))) {
            failures.push(SignatureFailure::new(
                &verdict.origin,
                Rule::TagBinding,
                format!(
                    "valid signature by {}, but its statement names {}, not the tag {tag:?} \
                     that was pulled, and no channel statement for {tag:?} names this release \
                     (a release moved to another tag is refused)",
                    verdict.signer,
                    verdict
                        .tag
                        .as_deref()
                        .map_or("no tag".to_owned(), |t| format!("tag {t:?}"))
                ),
            ));
        }
    }
    if !signers.is_empty() {
        failures.push(SignatureFailure::new(
            &format!("release {index}"),
            Rule::SignatureThreshold,
            format!(
                "the policy requires signatures by {threshold} distinct signers for {}, found {}: {}",
                signers[0].repository,
                signers.len(),
                signers
                    .iter()
                    .map(|v| v.signer.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    failures.extend(found.failures);
    if found.examined == 0 {
        failures.push(SignatureFailure::new(
            &format!("release {index}"),
            Rule::SignaturePresent,
            "no signature is attached (no Sigstore bundle referrer, no cosign .sig tag)",
        ));
    }
    Err(refusal(index, failures).into())
}

/// Finds the release's signatures and returns the first that meets every rule, whatever tag
/// it names.
pub async fn check(
    source: &ReleaseSource,
    index: &Digest,
    policy: &Policy,
) -> Result<SignatureVerdict> {
    let bundles = discover::list_bundles(source, index).await?;
    let found = find(source, index, policy, &bundles, None).await?;
    Ok(judge(found, index, policy, None)?.remove(0))
}

/// Valid signatures naming `tag` (all, when `None`), one per signer, in the order found.
fn distinct_signers<'a>(
    valid: &'a [SignatureVerdict],
    tag: Option<&str>,
) -> Vec<&'a SignatureVerdict> {
    let mut signers: Vec<&SignatureVerdict> = Vec::new();
    for verdict in valid.iter().filter(|v| names_tag(v, tag)) {
        if !signers.iter().any(|seen| seen.signer == verdict.signer) {
            signers.push(verdict);
        }
    }
    signers
}

fn names_tag(verdict: &SignatureVerdict, tag: Option<&str>) -> bool {
    tag.is_none_or(|tag| verdict.tag.as_deref() == Some(tag))
}

fn refusal(index: &Digest, failures: Vec<SignatureFailure>) -> Rejection {
    Rejection::Signature {
        index: index.clone(),
        failures,
    }
}

pub(crate) fn not_covered(repository: &str) -> SignatureFailure {
    SignatureFailure::new(
        &format!("repository {repository}"),
        Rule::RepositoryCovered,
        "no [[repository]] rule of the policy matches it, so no signer is allowed",
    )
}

/// Who may sign a kind of statement, and the rule a signer outside it breaks.
pub(crate) struct Role<'a> {
    pub identities: &'a IdentityRule,
    pub rule: Rule,
    /// What the signer is called in messages ("signer", "promoter").
    pub name: &'static str,
}

/// Outer `Result`: trust material could not be loaded (a configuration error); inner: the
/// candidate broke a rule.
async fn check_candidate(
    candidate: &Candidate,
    index: &Digest,
    expected_repository: Option<&str>,
    policy: &Policy,
) -> Result<std::result::Result<SignatureVerdict, SignatureFailure>> {
    // The payload is read (not yet trusted) to learn the repository of an OCI layout release.
    let subject = match parse_payload(candidate) {
        Ok(subject) => subject,
        Err(reason) => {
            return Ok(Err(SignatureFailure::new(
                &candidate.origin,
                Rule::PayloadSubject,
                reason,
            )));
        }
    };
    let repository = expected_repository.unwrap_or(&subject.repository);
    let Some(rules) = policy.for_repository(repository) else {
        return Ok(Err(not_covered(repository)));
    };
    let role = Role {
        identities: &rules.signers,
        rule: Rule::SignerAllowed,
        name: "signer",
    };
    let verdict = authenticate(candidate, repository, rules, role, policy, || {
        subject_names(&subject, index, repository)
    })
    .await?;
    Ok(verdict.map(|verdict| SignatureVerdict {
        tag: subject.tag.clone(),
        ..verdict
    }))
}

/// The payload's subject must be this index of this repository.
pub(crate) fn subject_names(
    subject: &SignedSubject,
    index: &Digest,
    repository: &str,
) -> std::result::Result<(), (Rule, String)> {
    if subject.digest != *index {
        return Err((
            Rule::PayloadSubject,
            format!(
                "the signed payload names {}, not this release",
                subject.digest
            ),
        ));
    }
    if subject.repository != repository {
        return Err((
            Rule::PayloadSubject,
            format!(
                "the signed payload names repository {:?}, not {repository:?}",
                subject.repository
            ),
        ));
    }
    Ok(())
}

/// Checks that `candidate` is a signature by an SVID of `role` for `repository`, made at a
/// proven time and logged as the repository's rules require, in the order of the Sigstore
/// client spec: time, chain at that time, signature, then what the payload says
/// (`payload_holds`, run only on authentic bytes), identity, log. The verdict names no tag.
pub(crate) async fn authenticate(
    candidate: &Candidate,
    repository: &str,
    rules: &RepositoryPolicy,
    role: Role<'_>,
    policy: &Policy,
    payload_holds: impl FnOnce() -> std::result::Result<(), (Rule, String)>,
) -> Result<std::result::Result<SignatureVerdict, SignatureFailure>> {
    let fail = |rule: Rule, reason: String| {
        Ok(Err(SignatureFailure::new(&candidate.origin, rule, reason)))
    };
    let leaf = match svid::parse_leaf(&candidate.leaf) {
        Ok(leaf) => leaf,
        Err(reason) => return fail(Rule::SvidFormat, reason),
    };
    if let Err(reason) = svid::check_lifetime(&leaf, policy.max_svid_lifetime()) {
        return fail(Rule::SvidLifetime, reason);
    }
    let authorities = policy
        .trust_domain_authorities(leaf.id.trust_domain())
        .await
        .map_err(|e| Error::usage_with_hint(e.to_string(), e.hint()))?;
    let Some(authorities) = authorities else {
        return fail(
            Rule::TrustDomainKnown,
            format!(
                "neither the policy nor a trusted root has trust material for trust domain {:?} \
                 ({} {})",
                leaf.id.trust_domain(),
                role.name,
                leaf.id
            ),
        );
    };
    let proven = match timestamp::prove(
        &candidate.timestamps,
        &candidate.signature,
        &policy.timestamp_authorities(rules),
    ) {
        Ok(proven) => proven,
        Err(reason) => return fail(Rule::SigningTime, reason),
    };
    if proven.time < leaf.not_before || proven.time > leaf.not_after {
        return fail(
            Rule::SigningTimeInValidity,
            format!(
                "signed at {} (TSA {:?}), outside the leaf's validity {} .. {}",
                proven.time, proven.authority, leaf.not_before, leaf.not_after
            ),
        );
    }
    // A trusted root may bound when an authority's SVIDs count.
    let anchors: Vec<_> = authorities
        .iter()
        .filter(|authority| authority.trusted_at(proven.time))
        .map(|authority| authority.certificate.clone())
        .collect();
    if anchors.is_empty() && !authorities.is_empty() {
        return fail(
            Rule::SvidChain,
            format!(
                "no X.509 authority of trust domain {:?} is trusted at the signing time {} \
                 (outside every authority's validFor in the trusted root)",
                leaf.id.trust_domain(),
                proven.time
            ),
        );
    }
    if let Err(reason) = svid::verify_chain(
        &candidate.leaf,
        &candidate.intermediates,
        &anchors,
        proven.time,
    ) {
        return fail(Rule::SvidChain, reason);
    }
    if let Err(reason) = svid::verify_signature(
        &candidate.leaf,
        &candidate.signed_bytes,
        &candidate.signature,
    ) {
        return fail(Rule::SignatureValid, reason);
    }
    if let Err((rule, reason)) = payload_holds() {
        return fail(rule, reason);
    }
    if let Err(reasons) = role.identities.check(&leaf.id) {
        return fail(
            role.rule,
            format!(
                "{} {} is not allowed for {repository} by {}: {}",
                role.name,
                leaf.id,
                role.identities,
                reasons.join("; ")
            ),
        );
    }
    let logs = policy.transparency_logs(rules);
    let log = match verify_inclusion(candidate, &logs, proven.time, policy.logs_online()).await {
        Ok(log) => log,
        Err(LogFailure::NoEntry(reason)) => return fail(Rule::LogEntryPresent, reason),
        Err(LogFailure::Body(reason)) => return fail(Rule::LogEntryMatches, reason),
        Err(LogFailure::Checkpoint(reason)) => return fail(Rule::LogCheckpoint, reason),
        Err(LogFailure::Inclusion(reason)) => return fail(Rule::LogInclusion, reason),
        Err(LogFailure::Witness(reason)) => return fail(Rule::LogWitness, reason),
    };
    Ok(Ok(SignatureVerdict {
        log,
        signer: leaf.id,
        signed_at: proven.time,
        timestamp_authority: proven.authority,
        encoding: candidate.encoding,
        origin: candidate.origin.clone(),
        repository: repository.to_owned(),
        tag: None,
        certificate_serial: leaf.serial,
    }))
}

fn parse_payload(candidate: &Candidate) -> std::result::Result<SignedSubject, String> {
    match candidate.encoding {
        Encoding::Bundle => ReleaseStatement::parse(&candidate.payload),
        Encoding::CosignTag => SimpleSigning::parse(&candidate.payload),
    }
}

#[cfg(test)]
mod tests;
