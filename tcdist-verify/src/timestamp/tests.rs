//! Proven signing time from RFC 3161 responses built in the test: a TSA leaf (rcgen, EKU
//! timeStamping) under its root signs a TSTInfo over the signature bytes.

use sha2::Digest as _;
use sigstore_types::TimeRange;

use super::*;
use crate::test_support::{TestTsa, at, signing_time};
use crate::trust::parse_tsa_chain;

const SIGNATURE: &[u8] = b"the release signature";

fn authority(tsa: &TestTsa, valid_for: Option<TimeRange>) -> TsaAuthority {
    parse_tsa_chain(tsa.chain_pem().as_bytes(), valid_for).unwrap()
}

fn refusal(tokens: &[Vec<u8>], signature: &[u8], authorities: &[(&str, &TsaAuthority)]) -> String {
    prove(tokens, signature, authorities).expect_err("the time should not be proven")
}

/// The refusal of a single token by the authority "stack", checked to say why.
fn assert_refused(reason: &str, why: &str) {
    assert!(
        reason.starts_with(
            "no timestamp is valid from a trusted TSA: timestamp 0 with TSA \"stack\": "
        ) && reason.contains(why),
        "{reason}"
    );
}

#[test]
fn timestamp_proves_signing_time_from_trusted_tsa() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let proven = prove(
        &[tsa.timestamp(SIGNATURE, signing_time())],
        SIGNATURE,
        &[("stack", &trusted)],
    )
    .unwrap();
    assert_eq!(proven.time, signing_time());
    assert_eq!(proven.authority, "stack");
}

#[test]
fn timestamp_proves_earliest_time_of_several() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let (early, late) = (at("2026-01-01T00:01:00Z"), at("2026-01-01T00:09:00Z"));
    let tokens = [
        tsa.timestamp(SIGNATURE, late),
        b"junk".to_vec(),
        tsa.timestamp(SIGNATURE, early),
    ];
    let proven = prove(&tokens, SIGNATURE, &[("stack", &trusted)]).unwrap();
    assert_eq!(proven.time, early);
}

#[test]
fn timestamp_rejected_if_over_other_bytes() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let token = tsa.timestamp(b"another signature", signing_time());
    let reason = refusal(&[token], SIGNATURE, &[("stack", &trusted)]);
    assert_refused(
        &reason,
        &format!(
            "Timestamp message hash mismatch: expected {}",
            hex::encode(sha2::Sha256::digest(b"another signature"))
        ),
    );
}

#[test]
fn timestamp_rejected_if_tsa_not_trusted() {
    let (tsa, other) = (TestTsa::new("tsa"), TestTsa::new("other tsa"));
    let trusted = authority(&tsa, None);
    let token = other.timestamp(SIGNATURE, signing_time());
    let reason = refusal(&[token], SIGNATURE, &[("stack", &trusted)]);
    assert_refused(&reason, "does not match any trusted TSA certificate");
}

#[test]
fn timestamp_rejected_if_malformed() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let reason = refusal(
        &[b"not a TimeStampResp".to_vec()],
        SIGNATURE,
        &[("stack", &trusted)],
    );
    assert_refused(&reason, "Failed to parse timestamp response");
}

#[test]
fn timestamp_rejected_if_token_signature_altered() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let mut token = tsa.timestamp(SIGNATURE, signing_time());
    // The response ends with the CMS signature's last byte.
    *token.last_mut().unwrap() ^= 1;
    let reason = refusal(&[token], SIGNATURE, &[("stack", &trusted)]);
    assert_refused(&reason, "Failed to verify timestamp signature");
}

#[test]
fn timestamp_rejected_if_signed_time_altered() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    let token = tsa.timestamp(SIGNATURE, signing_time());
    let (signed, forged) = (b"20260101000500Z", b"20250101000500Z");
    let at = token
        .windows(signed.len())
        .position(|w| w == signed)
        .expect("the token carries its time");
    let mut altered = token.clone();
    altered[at..at + forged.len()].copy_from_slice(forged);
    let reason = refusal(&[altered], SIGNATURE, &[("stack", &trusted)]);
    // The signed attributes carry the TSTInfo's digest.
    assert_refused(&reason, "Timestamp message hash mismatch");
}

#[test]
fn timestamp_rejected_if_outside_tsa_valid_for() {
    let tsa = TestTsa::new("tsa");
    let window = TimeRange::new(at("2026-02-01T00:00:00Z"), None);
    let trusted = authority(&tsa, Some(window));
    let token = tsa.timestamp(SIGNATURE, signing_time());
    let reason = refusal(&[token], SIGNATURE, &[("stack", &trusted)]);
    assert_refused(
        &reason,
        &format!(
            "timestamp {} is outside the validity period",
            signing_time()
        ),
    );
}

#[test]
fn timestamp_rejected_if_none_comes_with_signature() {
    let tsa = TestTsa::new("tsa");
    let trusted = authority(&tsa, None);
    assert_eq!(
        refusal(&[], SIGNATURE, &[("stack", &trusted)]),
        "no RFC 3161 timestamp comes with the signature"
    );
}

#[test]
fn timestamp_rejected_if_policy_trusts_no_tsa() {
    let tsa = TestTsa::new("tsa");
    assert_eq!(
        refusal(&[tsa.timestamp(SIGNATURE, signing_time())], SIGNATURE, &[]),
        "the policy trusts no timestamp authority for this repository"
    );
}
