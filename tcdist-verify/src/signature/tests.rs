//! The signature stage on a release in an OCI layout, signed as `distd` signs: a DSSE bundle by
//! an rcgen SVID of `tcdist.test`, timestamped by a TSA made here and logged in a test log.
//! Each test breaks one rule and checks that the stage names it.

use super::*;
use crate::test_support::{
    POLICY, Pki, RELEASE_TAG, REPOSITORY, SIGNER, SignedRelease, Svid, TAG, at, attach_cosign,
    signing_time,
};
use crate::trust::files::tests::ca;

/// The stage's failures for a release published with `tamper` applied to its signature.
async fn failures(tamper: impl FnOnce(&Pki, &mut Candidate)) -> Vec<SignatureFailure> {
    let mut release = SignedRelease::new();
    let (index, source) = release.publish(tamper);
    refused(&source, &index, &release.policy()).await
}

async fn refused(source: &ReleaseSource, index: &Digest, policy: &Policy) -> Vec<SignatureFailure> {
    match check(source, index, policy).await {
        Err(Error::Rejected(Rejection::Signature { failures, .. })) => failures,
        Err(other) => panic!("expected a signature rejection, got {other}"),
        Ok(verdict) => panic!("expected a signature rejection, got {verdict:?}"),
    }
}

/// The one failure, checked to break `rule` for `reason`.
fn assert_only(failures: &[SignatureFailure], rule: Rule, reason: &str) {
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].rule, rule, "{failures:#?}");
    assert!(failures[0].reason.contains(reason), "{failures:#?}");
}

fn statement_for(index: &Digest) -> Vec<u8> {
    ReleaseStatement::new(REPOSITORY, Some(TAG), index).to_json()
}

#[tokio::test]
async fn signature_accepted_if_every_rule_holds() {
    let mut release = SignedRelease::new();
    let (index, source) = release.publish(|_, _| {});
    let verdict = check(&source, &index, &release.policy()).await.unwrap();
    assert_eq!(verdict.signer.to_string(), SIGNER);
    assert_eq!(verdict.signed_at, signing_time());
    assert_eq!(verdict.timestamp_authority, "stack");
    assert_eq!(verdict.repository, REPOSITORY);
    assert_eq!(verdict.encoding, Encoding::Bundle);
    let log = verdict.log.expect("the policy requires a log entry");
    assert_eq!(
        (log.log.as_str(), log.log_index, log.tree_size),
        ("rekor", 1, 3)
    );
}

#[tokio::test]
async fn signature_rejected_if_payload_names_another_index() {
    let other = Digest::of(b"another release index");
    let failures = failures(|pki, candidate| *candidate = pki.sign(statement_for(&other))).await;
    assert_only(
        &failures,
        Rule::PayloadSubject,
        &format!("the signed payload names {other}, not this release"),
    );
}

#[tokio::test]
async fn signature_rejected_if_payload_names_repository_the_policy_does_not_cover() {
    // A layout names no repository: the signed statement's is judged, and its rule applies.
    let mut release = SignedRelease::new();
    let (index, source) = release.publish_with(|pki, index| {
        let mut statement = ReleaseStatement::new(REPOSITORY, Some(TAG), index);
        statement.subject[0].name = "toolchains/other".into();
        pki.sign(statement.to_json())
    });
    let failures = refused(&source, &index, &release.policy()).await;
    assert_only(
        &failures,
        Rule::RepositoryCovered,
        "no [[repository]] rule of the policy matches it",
    );
    assert_eq!(failures[0].origin, "repository toolchains/other");
}

#[tokio::test]
async fn signature_rejected_if_signed_bytes_altered() {
    let failures = failures(|_, candidate| {
        // Still a statement for this release, but not the one that was signed.
        let text = String::from_utf8(candidate.payload.clone()).unwrap();
        candidate.payload = text.replace(TAG, "go1.99.9").into_bytes();
    })
    .await;
    assert_only(
        &failures,
        Rule::SignatureValid,
        "signature does not verify with the leaf's key",
    );
}

#[tokio::test]
async fn signature_rejected_if_signer_not_allowed_for_repository() {
    let failures = failures(|pki, candidate| {
        let other = Svid::issue("spiffe://tcdist.test/ci/runner", &pki.trust_domain);
        *candidate = pki.sign_as(&other, candidate.payload.clone(), signing_time());
    })
    .await;
    assert_only(
        &failures,
        Rule::SignerAllowed,
        "signer spiffe://tcdist.test/ci/runner is not allowed for toolchains/go",
    );
}

#[tokio::test]
async fn signature_rejected_if_repository_not_covered_by_policy() {
    let mut release = SignedRelease::new();
    let (index, source) = release.publish(|_, _| {});
    let policy = release
        .pki
        .policy(&POLICY.replace("name = \"toolchains/go\"", "name = \"toolchains/rust\""));
    let failures = refused(&source, &index, &policy).await;
    assert_only(
        &failures,
        Rule::RepositoryCovered,
        "no [[repository]] rule of the policy matches it",
    );
    assert_eq!(failures[0].origin, "repository toolchains/go");
}

#[tokio::test]
async fn signature_rejected_if_trust_domain_unknown() {
    let failures = failures(|pki, candidate| {
        let foreign = Svid::issue("spiffe://evil.test/distd/signer", &ca("evil.test"));
        *candidate = pki.sign_as(&foreign, candidate.payload.clone(), signing_time());
    })
    .await;
    assert_only(
        &failures,
        Rule::TrustDomainKnown,
        "trust material for trust domain \"evil.test\"",
    );
}

#[tokio::test]
async fn signature_rejected_if_svid_not_issued_by_trust_domain_ca() {
    let failures = failures(|pki, candidate| {
        // The right SPIFFE ID, from a CA that merely calls itself tcdist.test.
        let rogue = Svid::issue(SIGNER, &ca("tcdist.test"));
        *candidate = pki.sign_as(&rogue, candidate.payload.clone(), signing_time());
    })
    .await;
    assert_only(
        &failures,
        Rule::SvidChain,
        &format!(
            "leaf does not chain to the trust domain's bundle at {}",
            signing_time()
        ),
    );
}

#[tokio::test]
async fn signature_rejected_if_signed_outside_svid_validity() {
    let late = at("2026-01-01T01:00:00Z");
    let failures = failures(|pki, candidate| {
        *candidate = pki.sign_as(&pki.signer, candidate.payload.clone(), late);
    })
    .await;
    assert_only(
        &failures,
        Rule::SigningTimeInValidity,
        &format!("signed at {late} (TSA \"stack\"), outside the leaf's validity"),
    );
}

#[tokio::test]
async fn signature_rejected_if_no_timestamp() {
    let failures = failures(|_, candidate| candidate.timestamps.clear()).await;
    assert_only(
        &failures,
        Rule::SigningTime,
        "no RFC 3161 timestamp comes with the signature",
    );
}

#[tokio::test]
async fn signature_rejected_if_svid_lifetime_over_policy_max() {
    let mut release = SignedRelease::new();
    let (index, source) = release.publish(|_, _| {});
    let policy = release.pki.policy(&POLICY.replace(
        "version = 1\n",
        "version = 1\nmax_svid_lifetime = \"10m\"\n",
    ));
    let failures = refused(&source, &index, &policy).await;
    assert_only(
        &failures,
        Rule::SvidLifetime,
        "longer than the policy's max_svid_lifetime of 10m",
    );
}

#[tokio::test]
async fn signature_rejected_if_leaf_is_not_an_svid() {
    let failures = failures(|pki, candidate| {
        candidate.leaf = pki.trust_domain.der.clone();
    })
    .await;
    assert_only(
        &failures,
        Rule::SvidFormat,
        "an X.509-SVID has exactly one URI SAN, this leaf has 0",
    );
}

#[tokio::test]
async fn signature_rejected_if_log_entry_missing() {
    let failures = failures(|_, candidate| candidate.tlog_entries.clear()).await;
    assert_only(
        &failures,
        Rule::LogEntryPresent,
        "the signature carries no transparency-log entry, and the policy requires one in rekor",
    );
}

#[tokio::test]
async fn signature_rejected_if_none_attached() {
    let mut release = SignedRelease::new();
    let index = release.docs.write(&mut release.layout);
    let source = release.layout.source(Some(RELEASE_TAG));
    let failures = refused(&source, &index, &release.policy()).await;
    assert_only(
        &failures,
        Rule::SignaturePresent,
        "no signature is attached",
    );
}

#[tokio::test]
async fn signature_rejected_if_log_entry_records_other_signature() {
    let failures = failures(|pki, candidate| {
        let other = pki.sign(candidate.payload.clone());
        candidate.tlog_entries = other.tlog_entries;
    })
    .await;
    assert_only(
        &failures,
        Rule::LogEntryMatches,
        "the entry records another signature or another signer's certificate",
    );
}

#[tokio::test]
async fn signature_rejected_if_log_checkpoint_not_signed_by_log() {
    let failures = failures(|_, candidate| {
        let proof = candidate.tlog_entries[0].inclusion_proof.as_mut().unwrap();
        proof.checkpoint.envelope = proof.checkpoint.envelope.replacen("\n3\n", "\n4\n", 1);
    })
    .await;
    assert_only(
        &failures,
        Rule::LogCheckpoint,
        "the checkpoint carries no valid signature by the key of log",
    );
}

#[tokio::test]
async fn signature_rejected_if_log_inclusion_proof_altered() {
    let failures = failures(|_, candidate| {
        candidate.tlog_entries[0]
            .inclusion_proof
            .as_mut()
            .unwrap()
            .hashes[1][0] ^= 1;
    })
    .await;
    assert_only(
        &failures,
        Rule::LogInclusion,
        "entry 1 does not lead to the root of checkpoint 3 of log rekor",
    );
}

#[tokio::test]
async fn signature_rejected_if_signature_bytes_flipped() {
    // The timestamp covers the signature as made, so the flipped one has no proven time.
    let failures = failures(|_, candidate| candidate.signature[10] ^= 1).await;
    assert_only(
        &failures,
        Rule::SigningTime,
        "timestamp 0 with TSA \"stack\": Timestamp message hash mismatch",
    );
}

/// A policy as [`POLICY`], without a transparency log (cosign signatures are not logged).
fn policy_without_log(release: &SignedRelease) -> Policy {
    let text = POLICY.replace(
        "[transparency_logs.rekor]\norigin = \"rekor.tcdist.test\"\npublic_key = \"log.pem\"\n",
        "",
    );
    assert_ne!(text, POLICY);
    release.pki.policy(&text)
}

/// A release signed only under cosign's `.sig` tag, by `sign`.
fn cosign_release(
    sign: impl FnOnce(&Pki, &Digest) -> Candidate,
) -> (SignedRelease, Digest, ReleaseSource) {
    let mut release = SignedRelease::new();
    let index = release.docs.write(&mut release.layout);
    let candidate = sign(&release.pki, &index);
    attach_cosign(&mut release.layout, &index, &candidate);
    let source = release.layout.source(Some(RELEASE_TAG));
    (release, index, source)
}

#[tokio::test]
async fn signature_accepted_from_cosign_tag_if_every_rule_holds() {
    let (release, index, source) = cosign_release(|pki, index| pki.sign_cosign(index));
    let verdict = check(&source, &index, &policy_without_log(&release))
        .await
        .unwrap();
    assert_eq!(verdict.encoding, Encoding::CosignTag);
    assert_eq!(verdict.signer.to_string(), SIGNER);
    assert_eq!(verdict.repository, REPOSITORY);
    assert!(verdict.log.is_none());
}

#[tokio::test]
async fn signature_rejected_if_cosign_payload_names_another_index() {
    let other = Digest::of(b"another release index");
    let (release, index, source) = cosign_release(|pki, _| pki.sign_cosign(&other));
    let failures = refused(&source, &index, &policy_without_log(&release)).await;
    assert_only(
        &failures,
        Rule::PayloadSubject,
        &format!("the signed payload names {other}, not this release"),
    );
}

#[tokio::test]
async fn signature_rejected_if_cosign_payload_altered() {
    let (release, index, source) = cosign_release(|pki, index| {
        let mut candidate = pki.sign_cosign(index);
        candidate.payload = String::from_utf8(candidate.payload)
            .unwrap()
            .replace(
                "cosign container image signature\"",
                "cosign container image signature\" ",
            )
            .into_bytes();
        candidate
    });
    let failures = refused(&source, &index, &policy_without_log(&release)).await;
    assert_only(
        &failures,
        Rule::SignatureValid,
        "signature does not verify with the leaf's key",
    );
}

#[tokio::test]
async fn signature_rejected_if_cosign_signature_lacks_required_log_entry() {
    let (release, index, source) = cosign_release(|pki, index| pki.sign_cosign(index));
    let failures = refused(&source, &index, &release.policy()).await;
    assert_only(
        &failures,
        Rule::LogEntryPresent,
        "the signature carries no transparency-log entry",
    );
}
