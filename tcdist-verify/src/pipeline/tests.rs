//! The pipeline on a signed release in an OCI layout: every stage runs, in order, and a
//! [`Verified`] value comes out only when all of them pass.

use super::*;
use crate::test_support::{POLICY, SIGNER, SignedRelease, TAG, TileServer, signing_time};
use tcdist_core::error::{Error, Rejection};
use tcdist_core::rules::Rule;

fn linux_amd64() -> Platform {
    Platform::new("linux", "amd64")
}

async fn verify(
    release: &SignedRelease,
    policy: Policy,
    source: &ReleaseSource,
) -> Result<Verified<ResolvedRelease>> {
    Verifier::new(policy, ExtractBudget::default())
        .offline()
        .verify(source, "release under test", &linux_amd64())
        .await
        .inspect(|verified| assert_eq!(verified.get().index, release.docs.resolved().index))
}

/// The release's signature with its statement's tag changed after signing.
fn alter_signed_bytes(candidate: &mut crate::discover::Candidate) {
    let text = String::from_utf8(candidate.payload.clone()).unwrap();
    candidate.payload = text.replace(TAG, "go1.99.9").into_bytes();
}

/// A config that says it is for another platform than the index lists it for.
fn break_structure(release: &mut SignedRelease) {
    let mut config = release.docs.config.clone();
    config.architecture = "arm64".into();
    release.docs.set_config(config);
}

fn signature_rule(error: &Error) -> Rule {
    match error {
        Error::Rejected(Rejection::Signature { failures, .. }) => failures[0].rule,
        other => panic!("expected a signature rejection, got {other}"),
    }
}

fn malformed_object(error: &Error) -> &str {
    match error {
        Error::Rejected(Rejection::Malformed { object, .. }) => object,
        other => panic!("expected a malformed-release rejection, got {other}"),
    }
}

#[tokio::test]
async fn pipeline_makes_verified_only_when_every_stage_passes() {
    let mut release = SignedRelease::new();
    let (index, source) = release.publish(|_, _| {});
    let verified = verify(&release, release.policy(), &source).await.unwrap();
    let report = verified.report();
    assert_eq!(
        report.checks,
        [
            "digest-binding",
            "structure",
            "signature",
            "transparency-log",
            "lifecycle"
        ]
    );
    assert_eq!(report.index_digest, index);
    assert_eq!(
        report.manifest_digest,
        release.docs.resolved().manifest_descriptor.digest
    );
    assert_eq!(report.platform, linux_amd64());
    assert_eq!(report.signature.signer.to_string(), SIGNER);
    assert_eq!(report.signature.signed_at, signing_time());
    // Offline, a best-effort log is verified from the bundle's proof alone, and says so.
    assert!(
        matches!(report.log_freshness, Some(Freshness::Unchecked { .. })),
        "{:?}",
        report.log_freshness
    );
    assert_eq!(verified.get().config, release.docs.config);

    // The same release with one stage failing gives no Verified value.
    let mut release = SignedRelease::new();
    let (_, source) = release.publish(|_, candidate| alter_signed_bytes(candidate));
    let error = verify(&release, release.policy(), &source)
        .await
        .unwrap_err();
    assert_eq!(signature_rule(&error), Rule::SignatureValid);
}

#[tokio::test]
async fn pipeline_reports_failures_in_stage_order() {
    // Structure and signature both broken: the structure stage comes first.
    let mut release = SignedRelease::new();
    break_structure(&mut release);
    let (_, source) = release.publish(|_, candidate| alter_signed_bytes(candidate));
    let error = verify(&release, release.policy(), &source)
        .await
        .unwrap_err();
    assert_eq!(
        malformed_object(&error),
        format!("config {}", release.docs.manifest.config.digest)
    );

    // Digest binding and signature both broken: the digest binding comes first.
    let mut release = SignedRelease::new();
    let (_, source) = release.publish(|_, candidate| alter_signed_bytes(candidate));
    let config = serde_json::to_vec(&release.docs.config).unwrap();
    let swapped = String::from_utf8(config).unwrap().replace("amd64", "arm64");
    std::fs::write(
        release.layout.blob_path(&release.docs.manifest.config),
        swapped,
    )
    .unwrap();
    let error = verify(&release, release.policy(), &source)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Rejected(Rejection::DigestMismatch { object, expected, .. })
                if *object == format!("config {expected}")
                    && *expected == release.docs.manifest.config.digest
        ),
        "{error}"
    );
}

#[tokio::test]
async fn pipeline_rejected_if_structure_fails_though_signature_is_valid() {
    let mut release = SignedRelease::new();
    break_structure(&mut release);
    let (index, source) = release.publish(|_, _| {});
    // The signature alone would pass.
    crate::signature::check(&source, &index, &release.policy())
        .await
        .unwrap();
    let error = verify(&release, release.policy(), &source)
        .await
        .unwrap_err();
    assert_eq!(
        malformed_object(&error),
        format!("config {}", release.docs.manifest.config.digest)
    );
    assert!(
        error.to_string().contains(
            "config is for linux/arm64, but the index lists this manifest for linux/amd64"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn pipeline_rejected_if_config_blob_replaced() {
    let mut release = SignedRelease::new();
    let (_, source) = release.publish(|_, _| {});
    // Another config, written where the signed manifest's config digest points.
    let mut other = release.docs.config.clone();
    other.os = "plan9".into();
    let bytes = serde_json::to_vec(&other).unwrap();
    std::fs::write(
        release.layout.blob_path(&release.docs.manifest.config),
        &bytes,
    )
    .unwrap();
    let error = verify(&release, release.policy(), &source)
        .await
        .unwrap_err();
    // Named by the signed manifest, so the replaced bytes are refused as they are read.
    let config = format!("config {}", release.docs.manifest.config.digest);
    assert!(
        matches!(
            &error,
            Error::Rejected(
                Rejection::DigestMismatch { object, .. } | Rejection::SizeMismatch { object, .. }
            ) if *object == config
        ),
        "{error}"
    );
}

#[tokio::test]
async fn pipeline_skips_log_stage_if_policy_requires_no_log() {
    let mut release = SignedRelease::new();
    let (_, source) = release.publish(|_, candidate| candidate.tlog_entries.clear());
    let without_log = POLICY.replace(
        "[transparency_logs.rekor]\norigin = \"rekor.tcdist.test\"\npublic_key = \"log.pem\"\n",
        "",
    );
    assert_ne!(without_log, POLICY);
    let verified = verify(&release, release.pki.policy(&without_log), &source)
        .await
        .unwrap();
    assert_eq!(
        verified.report().checks,
        ["digest-binding", "structure", "signature", "lifecycle"]
    );
    assert!(verified.report().log_freshness.is_none());
    assert!(verified.report().signature.log.is_none());
}

#[tokio::test]
async fn pipeline_fails_as_unavailable_if_required_freshness_cannot_be_checked() {
    let mut release = SignedRelease::new();
    let (_, source) = release.publish(|_, _| {});
    let required = POLICY.replace(
        "public_key = \"log.pem\"\n",
        // Offline, the url is never contacted.
        "public_key = \"log.pem\"\nurl = \"http://127.0.0.1:9\"\nfreshness = \"required\"\n",
    );
    assert_ne!(required, POLICY);
    let error = verify(&release, release.pki.policy(&required), &source)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
    assert!(error.to_string().contains("log rekor"), "{error}");
}

#[tokio::test]
async fn pipeline_checks_log_freshness_against_the_log_online() {
    let server = TileServer::start();
    let mut release = SignedRelease::new();
    let mut logged = Vec::new();
    let (_, source) = release.publish(|_, candidate| {
        logged = candidate.tlog_entries[0].canonicalized_body.clone();
    });
    // The log has grown by one entry since the bundle's checkpoint.
    let leaves = [
        b"entry 0".to_vec(),
        logged,
        b"entry 2".to_vec(),
        b"entry 3".to_vec(),
    ];
    server.serve_log(&release.pki.log, &leaves);
    let online = POLICY.replace(
        "public_key = \"log.pem\"\n",
        &format!("public_key = \"log.pem\"\nurl = \"{}\"\n", server.url),
    );
    let verified = Verifier::new(release.pki.policy(&online), ExtractBudget::default())
        .verify(&source, "release under test", &linux_amd64())
        .await
        .unwrap();
    assert!(
        matches!(
            verified.report().log_freshness,
            Some(Freshness::Checked {
                latest_tree_size: 4
            })
        ),
        "{:?}",
        verified.report().log_freshness
    );
}

#[tokio::test]
async fn pipeline_refuses_a_release_moved_to_a_tag_its_signature_does_not_name() {
    let mut release = SignedRelease::new();
    let (index, _) = release.publish(|_, _| {});
    release
        .layout
        .tag("stable", release.layout.descriptor_of(&index));
    let moved = release.layout.source(Some("stable"));
    let err = verify(&release, release.policy(), &moved)
        .await
        .unwrap_err();
    assert_eq!(signature_rule(&err), Rule::TagBinding, "{err}");
    assert!(err.to_string().contains("not the tag \"stable\""), "{err}");
    // The same release by digest is not a pull by tag.
    let pinned = release.layout.source_pinned(&index);
    verify(&release, release.policy(), &pinned).await.unwrap();
    // By tag and digest, the tag is bound too.
    let ReleaseSource::Layout(layout) = pinned else {
        unreachable!("a layout source")
    };
    let both = ReleaseSource::Layout(tcdist_oci::reference::LayoutRef {
        tag: Some("stable".into()),
        ..layout
    });
    let err = verify(&release, release.policy(), &both).await.unwrap_err();
    assert_eq!(signature_rule(&err), Rule::TagBinding, "{err}");
}
