//! Signing a release: the index digest is signed with the signer's X.509-SVID in both
//! encodings (a DSSE envelope around an in-toto statement, and cosign's simple-signing
//! payload), each signature is timestamped by the TSA, and the results are ready to attach.

pub mod key;
pub mod svid;
pub mod tlog;
pub mod tsa;
pub mod witness;

use std::time::Duration;

use anyhow::{Context, Result};
use distd_api::ledger::{Intent, sha256_id};
use tcdist_core::Digest;
use tcdist_oci::attachments::{
    IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_BUNDLE, ReleaseStatement, SimpleSigning, Statement,
    WitnessedCheckpoint,
};
use tcdist_oci::bundle::{
    Bundle, Envelope, EnvelopeSignature, RawBytes, Rfc3161Timestamp, TimestampVerificationData,
    VerificationMaterial, pae,
};
use tcdist_verify::spiffe_id::SpiffeId;

use crate::events::{self, Event};
use crate::ledger::Ledger;
use svid::{SigningIdentity, SvidSource};
use tlog::TransparencyLogClient;
use tsa::TimestampAuthority;
use witness::Witnesses;

/// Who signs, and how: the SVID source, the expected signer ID, the TSA.
pub struct Signer {
    pub source: SvidSource,
    pub signer: SpiffeId,
    pub min_lifetime: Duration,
    pub tsa: TimestampAuthority,
    /// Where bundle signatures are recorded; `None` signs without a log.
    pub log: Option<TransparencyLogClient>,
    /// Where every statement is recorded before it is logged.
    pub ledger: Ledger,
    /// Who cosigns the log's checkpoint after each entry; `None`: nobody.
    pub witnesses: Option<Witnesses>,
}

/// A statement signed as a bundle, and the witnessed checkpoint that goes beside it.
pub struct SignedStatement {
    pub bundle_json: Vec<u8>,
    pub witnessed: Option<WitnessedCheckpoint>,
}

/// What names the release in its signed payloads.
pub struct Subject<'a> {
    pub index: &'a Digest,
    /// Repository path, without the registry host.
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    /// `registry/repository`, as cosign names images.
    pub docker_reference: &'a str,
}

/// Both encodings of one signing, plus the certificates used.
pub struct ReleaseSignatures {
    pub bundle: SignedStatement,
    pub cosign: CosignSignature,
    pub leaf: Vec<u8>,
    /// Intermediates after the leaf, for cosign's chain annotation.
    pub chain: Vec<Vec<u8>>,
    pub signer: SpiffeId,
}

pub struct CosignSignature {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub timestamp: Vec<u8>,
}

impl Signer {
    /// The current SVID of the configured signer, checked to be fit for signing.
    pub async fn identity(&self) -> Result<SigningIdentity> {
        self.source.fetch(&self.signer, self.min_lifetime).await
    }

    /// Signs `subject` in both encodings; the identity (and its key) is consumed.
    pub async fn sign(
        &self,
        identity: SigningIdentity,
        subject: &Subject<'_>,
    ) -> Result<ReleaseSignatures> {
        eprintln!(
            "distd: signing {} as {} (SVID serial {}, valid until {})",
            subject.index, identity.leaf.id, identity.leaf.serial, identity.leaf.not_after
        );
        let bundle = self.sign_bundle(&identity, subject).await?;
        let cosign = self.sign_cosign(&identity, subject).await?;
        let SigningIdentity {
            leaf,
            mut chain,
            key,
            ..
        } = identity;
        // The key is not needed past this point.
        drop(key);
        let leaf_der = chain.remove(0);
        Ok(ReleaseSignatures {
            bundle,
            cosign,
            leaf: leaf_der,
            chain,
            signer: leaf.id,
        })
    }

    /// The release statement for `subject`, signed as a bundle.
    async fn sign_bundle(
        &self,
        identity: &SigningIdentity,
        subject: &Subject<'_>,
    ) -> Result<SignedStatement> {
        let statement =
            ReleaseStatement::new(subject.repository, subject.tag, subject.index).to_json();
        self.sign_statement(identity, statement).await
    }

    /// A Sigstore bundle v0.3: DSSE envelope over an in-toto `statement`, the leaf
    /// certificate, an RFC 3161 timestamp over the signature, and the log entry when a log is
    /// configured, with its checkpoint cosigned by the witnesses when they are.
    pub async fn sign_statement(
        &self,
        identity: &SigningIdentity,
        statement: Vec<u8>,
    ) -> Result<SignedStatement> {
        let signature = identity.key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &statement))?;
        let timestamp = events::timed(self.tsa.timestamp(&signature), |seconds, ok| {
            Event::Timestamp { seconds, ok }
        })
        .await?;
        let intent = self
            .ledger
            .intent(intent_of(&statement, &signature, &identity.chain[0])?)
            .await?;
        let envelope = Envelope {
            payload: statement,
            payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: signature,
                keyid: String::new(),
            }],
        };
        let mut witnessed = None;
        let tlog_entries = match &self.log {
            Some(log) => {
                let mut entry = events::timed(
                    log.submit_dsse(&envelope, &identity.chain[0], &identity.key),
                    |seconds, ok| Event::LogEntry { seconds, ok },
                )
                .await?;
                let answered = log.keep_log_signature(&mut entry);
                eprintln!(
                    "distd: recorded in the transparency log at index {}",
                    entry.log_index
                );
                if let Some(intent) = intent {
                    self.ledger.logged(log.logged(intent, &entry)?).await?;
                }
                if let Some(witnesses) = &self.witnesses {
                    witnessed = Some(witnesses.witness(&entry, answered.as_deref()).await?);
                }
                vec![entry]
            }
            None => Vec::new(),
        };
        let bundle = Bundle {
            media_type: MEDIA_TYPE_BUNDLE.into(),
            verification_material: VerificationMaterial {
                certificate: Some(RawBytes {
                    raw_bytes: identity.chain[0].clone(),
                }),
                tlog_entries,
                timestamp_verification_data: Some(TimestampVerificationData {
                    rfc3161_timestamps: vec![Rfc3161Timestamp {
                        signed_timestamp: timestamp,
                    }],
                }),
                ..Default::default()
            },
            dsse_envelope: Some(envelope),
        };
        events::report(Event::Signature {
            signer: identity.leaf.id.to_string(),
        });
        Ok(SignedStatement {
            bundle_json: bundle.to_json(),
            witnessed,
        })
    }

    async fn sign_cosign(
        &self,
        identity: &SigningIdentity,
        subject: &Subject<'_>,
    ) -> Result<CosignSignature> {
        let payload =
            SimpleSigning::new(subject.docker_reference, subject.tag, subject.index).to_json();
        let signature = identity.key.sign(&payload)?;
        let timestamp = events::timed(self.tsa.timestamp(&signature), |seconds, ok| {
            Event::Timestamp { seconds, ok }
        })
        .await?;
        Ok(CosignSignature {
            payload,
            signature,
            timestamp,
        })
    }
}

/// The ledger's intent for `statement` signed with `signature` by `certificate`.
fn intent_of(statement: &[u8], signature: &[u8], certificate: &[u8]) -> Result<Intent> {
    let parsed: Statement<serde::de::IgnoredAny> =
        serde_json::from_slice(statement).context("the statement to sign does not parse")?;
    let subject = match parsed.subject.as_slice() {
        [subject] => subject
            .digest
            .get("sha256")
            .map(|hex| format!("sha256:{hex}")),
        _ => None,
    }
    .context("the statement to sign names no single sha256 subject")?;
    let spiffe_id = tcdist_verify::svid::parse_leaf(certificate)
        .map_err(|e| anyhow::anyhow!("the signing certificate: {e}"))?
        .id;
    Ok(Intent {
        subject,
        predicate_type: parsed.predicate_type,
        spiffe_id: spiffe_id.to_string(),
        certificate: sha256_id(certificate),
        payload: sha256_id(statement),
        signature: sha256_id(signature),
    })
}
