//! The signature stage: a release is accepted only when one of its signatures meets every rule
//! (DESIGN.md, "Signatures and trust"). Each candidate runs the rules in the order of the
//! Sigstore client spec — time, chain at that time, signature, subject, identity, log — and
//! the first failing rule is recorded; when none passes, every candidate's failure is reported.

use jiff::Timestamp;
use serde::Serialize;

use crate::attachments::{ReleaseStatement, SignedSubject, SimpleSigning};
use crate::digest::Digest;
use crate::error::{Error, Rejection, Result};
use crate::source::ReleaseSource;
use crate::spiffe_id::SpiffeId;
use crate::verify::discover::{self, Candidate, Encoding};
use crate::verify::policy::Policy;
use crate::verify::rules::{Rule, SignatureFailure};
use crate::verify::tlog::{LogFailure, LogInclusion, verify_inclusion};
use crate::verify::{svid, timestamp};

/// What the accepted signature proved.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureVerdict {
    pub signer: SpiffeId,
    pub signed_at: Timestamp,
    pub timestamp_authority: String,
    pub encoding: Encoding,
    pub origin: String,
    pub repository: String,
    pub certificate_serial: String,
    /// The transparency-log entry that records the signature, when the policy requires one.
    pub log: Option<LogInclusion>,
}

/// Finds the release's signatures and returns the first that meets every rule.
pub async fn check(
    source: &ReleaseSource,
    index: &Digest,
    policy: &Policy,
) -> Result<SignatureVerdict> {
    let object = format!("release {index}");
    let refuse = |failures: Vec<SignatureFailure>| Rejection::Signature {
        index: index.clone(),
        failures,
    };
    // A registry names the repository; refuse early, before any signature is fetched.
    if let Some(repository) = source.repository()
        && policy.for_repository(repository).is_none()
    {
        return Err(refuse(vec![not_covered(repository)]).into());
    }
    let mut failures = Vec::new();
    let mut examined = 0;
    for place in discover::PLACES {
        let found = discover::discover(source, index, place).await?;
        examined += found.candidates.len() + found.failures.len();
        failures.extend(found.failures);
        for candidate in &found.candidates {
            match check_candidate(candidate, index, source.repository(), policy).await? {
                Ok(verdict) => return Ok(verdict),
                Err(failure) => failures.push(failure),
            }
        }
    }
    if examined == 0 {
        failures.push(SignatureFailure::new(
            &object,
            Rule::SignaturePresent,
            "no signature is attached (no Sigstore bundle referrer, no cosign .sig tag)",
        ));
    }
    Err(refuse(failures).into())
}

fn not_covered(repository: &str) -> SignatureFailure {
    SignatureFailure::new(
        &format!("repository {repository}"),
        Rule::RepositoryCovered,
        "no [[repository]] rule of the policy matches it, so no signer is allowed",
    )
}

/// Outer `Result`: trust material could not be loaded (a configuration error); inner: the
/// candidate broke a rule.
async fn check_candidate(
    candidate: &Candidate,
    index: &Digest,
    expected_repository: Option<&str>,
    policy: &Policy,
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
    // The payload is read (not yet trusted) to learn the repository of an OCI layout release.
    let subject = match parse_payload(candidate) {
        Ok(subject) => subject,
        Err(reason) => return fail(Rule::PayloadSubject, reason),
    };
    let repository = expected_repository.unwrap_or(&subject.repository);
    let Some(rules) = policy.for_repository(repository) else {
        return Ok(Err(not_covered(repository)));
    };
    let authorities = policy
        .trust_domain_authorities(leaf.id.trust_domain())
        .await
        .map_err(|e| Error::usage_with_hint(e.to_string(), e.hint()))?;
    let Some(authorities) = authorities else {
        return fail(
            Rule::TrustDomainKnown,
            format!(
                "neither the policy nor a trusted root has trust material for trust domain {:?} \
                 (signer {})",
                leaf.id.trust_domain(),
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
    if subject.digest != *index {
        return fail(
            Rule::PayloadSubject,
            format!(
                "the signed payload names {}, not this release",
                subject.digest
            ),
        );
    }
    if subject.repository != repository {
        return fail(
            Rule::PayloadSubject,
            format!(
                "the signed payload names repository {:?}, not {repository:?}",
                subject.repository
            ),
        );
    }
    if let Err(reasons) = rules.check_signer(&leaf.id) {
        return fail(
            Rule::SignerAllowed,
            format!(
                "signer {} is not allowed for {repository} by {}: {}",
                leaf.id,
                rules.signers(),
                reasons.join("; ")
            ),
        );
    }
    let log = match verify_inclusion(candidate, &policy.transparency_logs(rules), proven.time) {
        Ok(log) => log,
        Err(LogFailure::NoEntry(reason)) => return fail(Rule::LogEntryPresent, reason),
        Err(LogFailure::Body(reason)) => return fail(Rule::LogEntryMatches, reason),
        Err(LogFailure::Checkpoint(reason)) => return fail(Rule::LogCheckpoint, reason),
        Err(LogFailure::Inclusion(reason)) => return fail(Rule::LogInclusion, reason),
    };
    Ok(Ok(SignatureVerdict {
        log,
        signer: leaf.id,
        signed_at: proven.time,
        timestamp_authority: proven.authority,
        encoding: candidate.encoding,
        origin: candidate.origin.clone(),
        repository: repository.to_owned(),
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
