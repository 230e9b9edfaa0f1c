//! Transparency-log inclusion: the signature is recorded in a log the policy trusts. For one of
//! the candidate's log entries, (1) the entry's log is trusted for the repository, (2) its body
//! is exactly this signature, certificate and payload, (3) its checkpoint is signed by the log's
//! key under the log's origin, and (4) the inclusion proof leads from the entry to the
//! checkpoint's root. Freshness against newer checkpoints is `verify::freshness`.

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sigstore_types::{Checkpoint, Sha256Hash};

use crate::discover::{Candidate, Encoding};
use crate::merkle::{self, leaf_hash};
use crate::trust::tlog::{FreshnessMode, LogKeyAlgorithm, TransparencyLog, WitnessPolicy};
use crate::witness::check_quorum;
use crate::witness::client::CosignError;
use entry::{EntryKind, LoggedEntry, Verifier};
use tcdist_core::text::sanitize;
use tcdist_oci::bundle::TransparencyLogEntry;

/// How much of a checkpoint's own text (its origin, a parse error) a message quotes.
const MAX_QUOTED_CHARS: usize = 200;

/// What inclusion proved, for reports and the freshness check.
#[derive(Clone, Debug, Serialize)]
pub struct LogInclusion {
    /// The log's name in the policy.
    pub log: String,
    pub log_index: u64,
    pub tree_size: u64,
    #[serde(skip)]
    pub root_hash: [u8; 32],
    /// The signed checkpoint, as text.
    #[serde(skip)]
    pub checkpoint: String,
    /// What the log's witnesses vouched for, when the policy names witnesses for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<Witnessed>,
    /// The checkpoint a quorum of them cosigned (with the entry in it), as text.
    #[serde(skip)]
    pub witnessed_checkpoint: Option<String>,
}

/// The witnesses' part of an inclusion.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Witnessed {
    /// The entry is in a checkpoint a quorum cosigned: these witnesses. `fetched`: the
    /// release carried none, and the log's current one was cosigned during verification.
    Quorum {
        cosigners: Vec<String>,
        tree_size: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        fetched: bool,
    },
    /// Under `witness = "best-effort"`: the quorum was not shown, and why.
    Unchecked { reason: String },
}

/// Which rule an entry broke.
#[derive(Debug)]
pub enum LogFailure {
    /// No entry in a trusted log (missing, or from an unknown log).
    NoEntry(String),
    /// The entry is not this signature.
    Body(String),
    /// The checkpoint is not signed by the log's key under its origin.
    Checkpoint(String),
    /// The inclusion proof does not lead to the checkpoint's root.
    Inclusion(String),
    /// The entry is in no checkpoint the policy's quorum of witnesses cosigned.
    Witness(String),
}

/// Checks the candidate's entries against the logs the repository requires; `Ok(None)` when
/// the policy requires none.
pub async fn verify_inclusion(
    candidate: &Candidate,
    logs: &[(&str, &TransparencyLog)],
    signed_at: jiff::Timestamp,
    online: bool,
) -> Result<Option<LogInclusion>, LogFailure> {
    if logs.is_empty() {
        return Ok(None);
    }
    if candidate.tlog_entries.is_empty() {
        return Err(LogFailure::NoEntry(format!(
            "the signature carries no transparency-log entry, and the policy requires one in {}",
            names(logs)
        )));
    }
    let mut last = None;
    for entry in &candidate.tlog_entries {
        let Some((name, log)) = logs
            .iter()
            .find(|(_, log)| log.key_id().as_slice() == entry.log_id.key_id)
        else {
            last = Some(LogFailure::NoEntry(format!(
                "the entry's log ID {} is none of the trusted logs ({})",
                hex::encode(&entry.log_id.key_id),
                names(logs)
            )));
            continue;
        };
        if let Some(window) = log.valid_for.filter(|w| !w.contains(signed_at)) {
            last = Some(LogFailure::Checkpoint(format!(
                "the key of log {name} is trusted from {} until {}, not at the signing time \
                 {signed_at}",
                window.start,
                window
                    .end
                    .map_or_else(|| "further notice".to_owned(), |end| end.to_string())
            )));
            continue;
        }
        match verify_entry(candidate, entry, name, log, online).await {
            Ok(inclusion) => return Ok(Some(inclusion)),
            Err(failure) => last = Some(failure),
        }
    }
    Err(last.expect("at least one entry was examined"))
}

fn names(logs: &[(&str, &TransparencyLog)]) -> String {
    logs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

async fn verify_entry(
    candidate: &Candidate,
    entry: &TransparencyLogEntry,
    name: &str,
    log: &TransparencyLog,
    online: bool,
) -> Result<LogInclusion, LogFailure> {
    check_body(candidate, entry).map_err(LogFailure::Body)?;
    let proof = entry
        .inclusion_proof
        .as_ref()
        .ok_or_else(|| LogFailure::Inclusion("the entry has no inclusion proof".into()))?;
    let checkpoint =
        verify_checkpoint(&proof.checkpoint.envelope, log).map_err(LogFailure::Checkpoint)?;
    let index = u64::try_from(entry.log_index)
        .map_err(|_| LogFailure::Inclusion(format!("log index {} is negative", entry.log_index)))?;
    if checkpoint.tree_size() == 0 {
        return Err(LogFailure::Inclusion(format!(
            "the checkpoint of log {name} is of an empty tree (size 0), which includes no entry"
        )));
    }
    let hashes = proof
        .hashes
        .iter()
        .map(|h| {
            Sha256Hash::try_from(h.as_slice())
                .map_err(|_| LogFailure::Inclusion("a proof hash is not 32 bytes".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Rekor v2: index from the entry, size and root from the verified checkpoint only.
    sigstore_merkle::verify_inclusion_proof(
        &sigstore_merkle::hash_leaf(&entry.canonicalized_body),
        index,
        checkpoint.tree_size(),
        &hashes,
        checkpoint.root_hash(),
    )
    .map_err(|e| {
        LogFailure::Inclusion(format!(
            "entry {index} does not lead to the root of checkpoint {} of log {name}: {e}",
            checkpoint.tree_size()
        ))
    })?;
    let (witnesses, witnessed_checkpoint) = match &log.witnesses {
        None => (None, None),
        Some(policy) => match witnessed(candidate, entry, index, name, log, policy, online).await {
            Ok((witnessed, note)) => (Some(witnessed), Some(note)),
            Err(WitnessFailure::NotIncluded(reason)) => return Err(LogFailure::Witness(reason)),
            Err(WitnessFailure::Unshown(reason)) if policy.mode == FreshnessMode::Required => {
                return Err(LogFailure::Witness(reason));
            }
            Err(WitnessFailure::Unshown(reason)) => (Some(Witnessed::Unchecked { reason }), None),
        },
    };
    Ok(LogInclusion {
        log: name.to_owned(),
        log_index: index,
        tree_size: checkpoint.tree_size(),
        root_hash: *checkpoint.root_hash().as_bytes(),
        checkpoint: proof.checkpoint.envelope.clone(),
        witnessed_checkpoint,
        witnesses,
    })
}

/// Why an entry is in no checkpoint the policy's quorum of witnesses cosigned.
enum WitnessFailure {
    /// No such checkpoint was shown: refused where the policy requires one.
    Unshown(String),
    /// The witnesses cosigned a tree that does not hold the entry: always refused.
    NotIncluded(String),
}

/// A checkpoint cosigned by the policy's quorum that holds the entry, and its text: the one
/// beside the candidate or, when it carries none (signed before the log was witnessed, or
/// its referrer lost), the log's current one cosigned now (online only).
async fn witnessed(
    candidate: &Candidate,
    entry: &TransparencyLogEntry,
    index: u64,
    name: &str,
    log: &TransparencyLog,
    policy: &WitnessPolicy,
    online: bool,
) -> Result<(Witnessed, String), WitnessFailure> {
    let unshown = WitnessFailure::Unshown;
    let witnessed = match &candidate.witnessed {
        None => return witnessed_now(entry, index, name, log, policy, online).await,
        Some(Err(reason)) => return Err(unshown(format!("the witnessed checkpoint: {reason}"))),
        Some(Ok(witnessed)) => witnessed,
    };
    if witnessed.log_index != index {
        return Err(unshown(format!(
            "the witnessed checkpoint proves entry {}, the signature's entry is {index}",
            witnessed.log_index
        )));
    }
    let checkpoint = verify_checkpoint(&witnessed.checkpoint, log)
        .map_err(|e| unshown(format!("the witnessed checkpoint: {e}")))?;
    let cosigners = check_quorum(&checkpoint, &policy.keys, policy.quorum)
        .map_err(|e| unshown(format!("log {name}: {e}")))?;
    let hashes = witnessed
        .hashes
        .iter()
        .map(|h| {
            tcdist_oci::bundle::decode_base64(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    unshown("a hash of the witnessed proof is not 32 bytes of base64".into())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !merkle::verify_inclusion(
        &leaf_hash(&entry.canonicalized_body),
        index,
        checkpoint.tree_size(),
        &hashes,
        checkpoint.root_hash().as_bytes(),
    ) {
        return Err(unshown(format!(
            "entry {index} is not in the witnessed checkpoint of size {}",
            checkpoint.tree_size()
        )));
    }
    Ok((
        Witnessed::Quorum {
            cosigners: cosigners.into_iter().collect(),
            tree_size: checkpoint.tree_size(),
            fetched: false,
        },
        witnessed.checkpoint.clone(),
    ))
}

/// The log's current checkpoint, cosigned by the policy's quorum now, with the entry proven
/// in it from the log's tiles.
async fn witnessed_now(
    entry: &TransparencyLogEntry,
    index: u64,
    name: &str,
    log: &TransparencyLog,
    policy: &WitnessPolicy,
    online: bool,
) -> Result<(Witnessed, String), WitnessFailure> {
    let missing =
        format!("the signature carries no checkpoint of log {name} cosigned by its witnesses");
    if !online {
        return Err(WitnessFailure::Unshown(format!(
            "{missing}, and the log was not contacted for a current one (offline)"
        )));
    }
    let unshown = |why: String| {
        WitnessFailure::Unshown(format!(
            "{missing}, and its current one could not be: {why}"
        ))
    };
    let client = log.witness_client().map_err(unshown)?;
    let included = match client.include(&entry.canonicalized_body, index).await {
        Ok(included) => included,
        Err(CosignError::NotIncluded(why)) => {
            return Err(WitnessFailure::NotIncluded(format!("{missing}; {why}")));
        }
        Err(e) => return Err(unshown(e.to_string())),
    };
    // The log's signature too: the witnesses' word is on a tree, the log's on its origin.
    let checkpoint = verify_checkpoint(&included.note, log).map_err(unshown)?;
    let cosigners = check_quorum(&checkpoint, &policy.keys, policy.quorum)
        .map_err(|e| unshown(format!("log {name}: {e}")))?;
    Ok((
        Witnessed::Quorum {
            cosigners: cosigners.into_iter().collect(),
            tree_size: checkpoint.tree_size(),
            fetched: true,
        },
        included.note,
    ))
}

/// Parses a checkpoint and checks it is signed by `log`'s key under `log`'s origin.
pub fn verify_checkpoint(text: &str, log: &TransparencyLog) -> Result<Checkpoint, String> {
    let checkpoint = Checkpoint::from_text(text).map_err(|e| {
        format!(
            "the checkpoint does not parse: {}",
            sanitize(&e.to_string(), MAX_QUOTED_CHARS)
        )
    })?;
    if checkpoint.origin() != log.origin {
        return Err(format!(
            "the checkpoint's origin is {:?}, the log's is {:?}",
            sanitize(checkpoint.origin(), MAX_QUOTED_CHARS),
            log.origin
        ));
    }
    let hint = &log.key_id()[..4];
    let signed = checkpoint
        .signatures()
        .iter()
        .filter(|s| s.key_id.as_slice() == hint)
        .any(|s| verify_note_signature(log, checkpoint.signed_data(), s.signature.as_bytes()));
    if !signed {
        return Err(format!(
            "the checkpoint carries no valid signature by the key of log {:?}",
            log.origin
        ));
    }
    Ok(checkpoint)
}

fn verify_note_signature(log: &TransparencyLog, message: &[u8], signature: &[u8]) -> bool {
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match log.algorithm {
        LogKeyAlgorithm::Ed25519 => &ring::signature::ED25519,
        LogKeyAlgorithm::EcdsaP256Sha256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
    };
    ring::signature::UnparsedPublicKey::new(algorithm, &log.raw_public_key)
        .verify(message, signature)
        .is_ok()
}

/// The entry body (Rekor's canonicalized JSON) must be this signature by this certificate
/// over this payload.
fn check_body(candidate: &Candidate, entry: &TransparencyLogEntry) -> Result<(), String> {
    let claimed = format!("{}/{}", entry.kind_version.kind, entry.kind_version.version);
    let body = LoggedEntry::parse(&entry.canonicalized_body)
        .map_err(|e| format!("the entry body is not a Rekor entry: {e}"))?;
    if body.kind.as_str() != claimed {
        return Err(format!(
            "the entry says {claimed} but its body is {}",
            body.kind.as_str()
        ));
    }
    match (candidate.encoding, body.kind) {
        (Encoding::Bundle, EntryKind::Dsse) => {
            if body.payload_sha256 != <[u8; 32]>::from(Sha256::digest(&candidate.payload)) {
                return Err("the entry records another payload".into());
            }
            let ours = body.signatures.iter().any(|s| {
                s.signature == candidate.signature
                    && s.verifier == Verifier::Certificate(candidate.leaf.clone())
            });
            if !ours {
                return Err(
                    "the entry records another signature or another signer's certificate".into(),
                );
            }
            Ok(())
        }
        (_, kind) => Err(format!(
            "a {} entry cannot record this {} signature (tcdist logs bundles as dsse/0.0.2)",
            kind.as_str(),
            match candidate.encoding {
                Encoding::Bundle => "bundle",
                Encoding::CosignTag => "cosign",
            }
        )),
    }
}

pub mod entry;

#[cfg(test)]
mod tests;
