//! Log inclusion for a signature logged as `distd` logs it: a Rekor v2 `dsse` 0.0.2 entry at
//! index 1 of a log of three, with its inclusion proof and a checkpoint signed by the test
//! log's Ed25519 key. Each test breaks one part of the entry, proof or checkpoint.

use futures::executor::block_on;
use sigstore_types::TimeRange;

use super::*;
use crate::test_support::{
    LOG_ORIGIN, Pki, REPOSITORY, TAG, TestLog, at, entry_body, signing_time,
};
use crate::trust::tlog::FreshnessMode;
use tcdist_core::digest::Digest;
use tcdist_oci::attachments::ReleaseStatement;

struct Fixture {
    pki: Pki,
    candidate: Candidate,
}

impl Fixture {
    fn new() -> Self {
        let pki = Pki::new();
        let statement = ReleaseStatement::new(REPOSITORY, Some(TAG), &Digest::of(b"index"));
        let candidate = pki.sign(statement.to_json());
        Fixture { pki, candidate }
    }

    fn entry(&mut self) -> &mut TransparencyLogEntry {
        &mut self.candidate.tlog_entries[0]
    }

    fn checkpoint(&mut self) -> &mut String {
        &mut self
            .entry()
            .inclusion_proof
            .as_mut()
            .unwrap()
            .checkpoint
            .envelope
    }

    /// Verifies offline: these cases never need the log's current state.
    fn verify(&self) -> Result<Option<LogInclusion>, LogFailure> {
        block_on(verify_inclusion(
            &self.candidate,
            &[("rekor", &self.pki.log.log)],
            signing_time(),
            false,
        ))
    }
}

/// The rule broken, as the signature stage maps it, and why.
fn refused(result: Result<Option<LogInclusion>, LogFailure>) -> (&'static str, String) {
    match result {
        Err(LogFailure::NoEntry(reason)) => ("tlog-entry-present", reason),
        Err(LogFailure::Body(reason)) => ("tlog-entry-matches", reason),
        Err(LogFailure::Checkpoint(reason)) => ("tlog-checkpoint", reason),
        Err(LogFailure::Inclusion(reason)) => ("tlog-inclusion", reason),
        Err(LogFailure::Witness(reason)) => ("tlog-witness", reason),
        Ok(inclusion) => panic!("expected a log failure, got {inclusion:?}"),
    }
}

fn assert_refused(f: &Fixture, rule: &str, why: &str) {
    let (broken, reason) = refused(f.verify());
    assert_eq!(broken, rule, "{reason}");
    assert!(reason.contains(why), "{reason}");
}

#[test]
fn tlog_accepts_entry_proven_against_signed_checkpoint() {
    let f = Fixture::new();
    let inclusion = f.verify().unwrap().expect("the policy requires a log");
    assert_eq!(inclusion.log, "rekor");
    assert_eq!((inclusion.log_index, inclusion.tree_size), (1, 3));
    let proof = f.candidate.tlog_entries[0]
        .inclusion_proof
        .as_ref()
        .unwrap();
    assert_eq!(inclusion.root_hash.as_slice(), proof.root_hash.as_slice());
    assert_eq!(inclusion.checkpoint, proof.checkpoint.envelope);
}

#[test]
fn tlog_not_required_if_policy_names_no_log() {
    let mut f = Fixture::new();
    f.candidate.tlog_entries.clear();
    assert!(
        block_on(verify_inclusion(&f.candidate, &[], signing_time(), true))
            .unwrap()
            .is_none()
    );
}

#[test]
fn tlog_rejected_if_no_entry() {
    let mut f = Fixture::new();
    f.candidate.tlog_entries.clear();
    assert_refused(
        &f,
        "tlog-entry-present",
        "the signature carries no transparency-log entry, and the policy requires one in rekor",
    );
}

#[test]
fn tlog_rejected_if_entry_from_unknown_log() {
    let mut f = Fixture::new();
    let other = TestLog::new(FreshnessMode::BestEffort);
    f.entry().log_id.key_id = other.log.key_id().to_vec();
    assert_refused(
        &f,
        "tlog-entry-present",
        &format!(
            "the entry's log ID {} is none of the trusted logs (rekor)",
            hex::encode(other.log.key_id())
        ),
    );
}

#[test]
fn tlog_accepts_valid_entry_after_one_from_unknown_log() {
    let mut f = Fixture::new();
    let mut foreign = f.candidate.tlog_entries[0].clone();
    foreign.log_id.key_id = vec![0; 32];
    f.candidate.tlog_entries.insert(0, foreign);
    assert_eq!(f.verify().unwrap().unwrap().log_index, 1);
}

#[test]
fn tlog_rejected_if_entry_body_names_other_signature() {
    let mut f = Fixture::new();
    // The same statement signed again (ECDSA signatures differ), and its own entry.
    let other = f.pki.sign(f.candidate.payload.clone());
    assert_ne!(other.signature, f.candidate.signature);
    f.candidate.tlog_entries = other.tlog_entries;
    assert_refused(
        &f,
        "tlog-entry-matches",
        "the entry records another signature or another signer's certificate",
    );
}

#[test]
fn tlog_rejected_if_entry_body_names_other_payload() {
    let mut f = Fixture::new();
    let body = entry_body(
        b"another payload",
        &f.candidate.signature,
        &f.candidate.leaf,
    );
    f.entry().canonicalized_body = body;
    assert_refused(
        &f,
        "tlog-entry-matches",
        "the entry records another payload",
    );
}

#[test]
fn tlog_rejected_if_entry_body_names_other_certificate() {
    let mut f = Fixture::new();
    let leaf = f.pki.trust_domain.der.clone();
    let body = entry_body(&f.candidate.payload, &f.candidate.signature, &leaf);
    f.entry().canonicalized_body = body;
    assert_refused(
        &f,
        "tlog-entry-matches",
        "the entry records another signature or another signer's certificate",
    );
}

#[test]
fn tlog_rejected_if_entry_kind_differs_from_body() {
    let mut f = Fixture::new();
    f.entry().kind_version.kind = "hashedrekord".into();
    assert_refused(
        &f,
        "tlog-entry-matches",
        "the entry says hashedrekord/0.0.2 but its body is dsse/0.0.2",
    );
}

#[test]
fn tlog_rejected_if_cosign_signature_claims_dsse_entry() {
    let mut f = Fixture::new();
    f.candidate.encoding = Encoding::CosignTag;
    assert_refused(
        &f,
        "tlog-entry-matches",
        "a dsse/0.0.2 entry cannot record this cosign signature",
    );
}

#[test]
fn tlog_rejected_if_entry_body_altered() {
    let mut f = Fixture::new();
    // Still this signature, but not the bytes the log hashed into its tree.
    let body: serde_json::Value = serde_json::from_slice(&f.entry().canonicalized_body).unwrap();
    f.entry().canonicalized_body = serde_json::to_vec_pretty(&body).unwrap();
    assert_refused(
        &f,
        "tlog-inclusion",
        "entry 1 does not lead to the root of checkpoint 3 of log rekor",
    );
}

#[test]
fn tlog_rejected_if_inclusion_proof_altered() {
    let mut f = Fixture::new();
    f.entry().inclusion_proof.as_mut().unwrap().hashes[0][0] ^= 1;
    assert_refused(
        &f,
        "tlog-inclusion",
        "entry 1 does not lead to the root of checkpoint 3 of log rekor",
    );
}

#[test]
fn tlog_rejected_if_inclusion_proof_hash_truncated() {
    let mut f = Fixture::new();
    f.entry().inclusion_proof.as_mut().unwrap().hashes[0].pop();
    assert_refused(&f, "tlog-inclusion", "a proof hash is not 32 bytes");
}

#[test]
fn tlog_rejected_if_log_index_altered() {
    let mut f = Fixture::new();
    f.entry().log_index = 2;
    assert_refused(
        &f,
        "tlog-inclusion",
        "entry 2 does not lead to the root of checkpoint 3",
    );
    f.entry().log_index = -1;
    assert_refused(&f, "tlog-inclusion", "log index -1 is negative");
}

#[test]
fn tlog_rejected_if_no_inclusion_proof() {
    let mut f = Fixture::new();
    f.entry().inclusion_proof = None;
    assert_refused(&f, "tlog-inclusion", "the entry has no inclusion proof");
}

#[test]
fn tlog_rejected_if_checkpoint_signed_by_unknown_key() {
    let mut f = Fixture::new();
    // Another key under the same origin signs the same tree.
    let impostor = TestLog::new(FreshnessMode::BestEffort);
    let signed = f.checkpoint().clone();
    let body = signed.split("\n\n").next().unwrap().to_owned();
    let size = body.lines().nth(1).unwrap().parse().unwrap();
    let root = tcdist_oci::bundle::decode_base64(body.lines().nth(2).unwrap()).unwrap();
    *f.checkpoint() = impostor.checkpoint_of(size, root.try_into().unwrap());
    assert_refused(
        &f,
        "tlog-checkpoint",
        &format!("the checkpoint carries no valid signature by the key of log \"{LOG_ORIGIN}\""),
    );
}

#[test]
fn tlog_rejected_if_checkpoint_signature_altered() {
    let mut f = Fixture::new();
    let forged = f.checkpoint().replacen("\n3\n", "\n4\n", 1);
    *f.checkpoint() = forged;
    assert_refused(
        &f,
        "tlog-checkpoint",
        "the checkpoint carries no valid signature by the key of log",
    );
}

#[test]
fn tlog_rejected_if_checkpoint_of_other_origin() {
    let mut f = Fixture::new();
    let moved = f.checkpoint().replace(LOG_ORIGIN, "rekor.elsewhere.test");
    *f.checkpoint() = moved;
    assert_refused(
        &f,
        "tlog-checkpoint",
        &format!(
            "the checkpoint's origin is \"rekor.elsewhere.test\", the log's is \"{LOG_ORIGIN}\""
        ),
    );
}

#[test]
fn tlog_rejected_if_checkpoint_does_not_parse() {
    let mut f = Fixture::new();
    *f.checkpoint() = "not a checkpoint".into();
    assert_refused(&f, "tlog-checkpoint", "the checkpoint does not parse");
}

#[test]
fn tlog_rejected_if_checkpoint_of_empty_tree() {
    let mut f = Fixture::new();
    let empty = f.pki.log.checkpoint(&[]);
    *f.checkpoint() = empty;
    assert_refused(
        &f,
        "tlog-inclusion",
        "the checkpoint of log rekor is of an empty tree (size 0)",
    );
}

#[test]
fn tlog_rejected_if_log_key_not_trusted_at_signing_time() {
    let mut f = Fixture::new();
    f.pki.log.log.valid_for = Some(TimeRange::new(
        at("2025-01-01T00:00:00Z"),
        Some(at("2025-12-31T00:00:00Z")),
    ));
    assert_refused(
        &f,
        "tlog-checkpoint",
        &format!(
            "the key of log rekor is trusted from 2025-01-01T00:00:00Z until \
             2025-12-31T00:00:00Z, not at the signing time {}",
            signing_time()
        ),
    );
}

/// The fixture's log counts witnesses (`mode`) whose quorum no checkpoint beside the
/// candidate shows.
fn without_witnessed_checkpoint(mode: FreshnessMode) -> Fixture {
    let mut f = Fixture::new();
    f.pki.log.log.witnesses = Some(crate::trust::tlog::WitnessPolicy {
        keys: Vec::new(),
        addresses: Vec::new(),
        quorum: 1,
        mode,
    });
    assert!(f.candidate.witnessed.is_none());
    f
}

#[test]
fn tlog_witness_refused_offline_when_required_and_no_cosigned_checkpoint_is_carried() {
    let f = without_witnessed_checkpoint(FreshnessMode::Required);
    assert_refused(
        &f,
        "tlog-witness",
        "carries no checkpoint of log rekor cosigned by its witnesses, and the log was not \
         contacted for a current one (offline)",
    );
}

#[test]
fn tlog_witness_unchecked_offline_when_best_effort() {
    let f = without_witnessed_checkpoint(FreshnessMode::BestEffort);
    let inclusion = f.verify().unwrap().unwrap();
    assert!(inclusion.witnessed_checkpoint.is_none());
    match inclusion.witnesses {
        Some(Witnessed::Unchecked { reason }) => assert!(reason.contains("offline"), "{reason}"),
        other => panic!("expected unchecked witnesses, got {other:?}"),
    }
}

#[test]
fn tlog_witness_refused_online_when_the_policy_gives_no_witness_url() {
    let f = without_witnessed_checkpoint(FreshnessMode::Required);
    let refusal = block_on(verify_inclusion(
        &f.candidate,
        &[("rekor", &f.pki.log.log)],
        signing_time(),
        true,
    ));
    let (rule, reason) = refused(refusal);
    assert_eq!(rule, "tlog-witness");
    assert!(
        reason.contains("could not be: the policy gives no url for the log's tiles"),
        "{reason}"
    );
}
