//! Recording signatures in the transparency log (Rekor v2): the DSSE envelope and the signer's
//! certificate go in as a `dsse` 0.0.2 entry; the log answers once a checkpoint covers it, with
//! the entry, its inclusion proof and the signed checkpoint, which go into the bundle.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use distd_api::ledger::Logged;
use serde_json::json;
use tcdist_oci::bundle::{Envelope, TransparencyLogEntry};
use tcdist_verify::witness::log_signatures_only;

use super::key::SigningKey;

/// Rekor v2 blocks until a checkpoint includes the entry; its clients are told to wait 20 s.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TransparencyLogClient {
    http: reqwest::Client,
    url: String,
    /// The origin the log signs its checkpoints under: its name in the ledger.
    origin: String,
}

impl TransparencyLogClient {
    /// `url` is the log's base URL (`$TCDIST_REKOR_URL`), `origin` its checkpoints' origin.
    pub fn new(url: &str, origin: &str) -> Result<Self> {
        Ok(TransparencyLogClient {
            http: reqwest::Client::builder()
                .timeout(SUBMIT_TIMEOUT)
                .build()
                .context("setting up the transparency log client")?,
            url: format!("{}/api/v2/log/entries", url.trim_end_matches('/')),
            origin: origin.to_owned(),
        })
    }

    /// Submits the envelope's signature by `certificate` and returns the logged entry.
    pub async fn submit_dsse(
        &self,
        envelope: &Envelope,
        certificate: &[u8],
        key: &SigningKey,
    ) -> Result<TransparencyLogEntry> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let request = json!({
            "dsseRequestV002": {
                "envelope": {
                    "payload": b64(&envelope.payload),
                    "payloadType": envelope.payload_type,
                    "signatures": envelope.signatures.iter().map(|s| json!({
                        "sig": b64(&s.sig),
                        "keyid": s.keyid,
                    })).collect::<Vec<_>>(),
                },
                "verifiers": [{
                    "x509Certificate": { "rawBytes": b64(certificate) },
                    "keyDetails": key.key_details(),
                }],
            }
        });
        let unavailable = |detail: String| tcdist_core::Error::Unavailable {
            operation: format!(
                "recording the signature in the transparency log at {}",
                self.url
            ),
            attempts: 1,
            detail,
        };
        let response = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .map_err(|e| unavailable(tcdist_oci::registry::error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(tcdist_oci::registry::error_chain(&e)))?;
        if !status.is_success() {
            return Err(unavailable(format!(
                "the log answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
            .into());
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "the transparency log at {} sent an entry that does not parse",
                self.url
            )
        })
    }
}

impl TransparencyLogClient {
    /// Leaves only the log's own signature on `entry`'s checkpoint and returns the checkpoint
    /// as the log answered it: a log that does its own witnessing answers with its witnesses'
    /// cosignatures, which go beside the bundle (Sigstore clients refuse a bundle whose
    /// checkpoint carries a line of a key they do not know).
    pub fn keep_log_signature(&self, entry: &mut TransparencyLogEntry) -> Option<String> {
        let proof = entry.inclusion_proof.as_mut()?;
        let answered = proof.checkpoint.envelope.clone();
        proof.checkpoint.envelope = log_signatures_only(&answered, &self.origin);
        Some(answered)
    }

    /// The ledger's record of `entry`, the log's answer to intent `intent`.
    pub fn logged(&self, intent: u64, entry: &TransparencyLogEntry) -> Result<Logged> {
        Ok(Logged {
            intent,
            log: self.origin.clone(),
            log_index: u64::try_from(entry.log_index).with_context(|| {
                format!("the log answered a negative index {}", entry.log_index)
            })?,
            leaf_hash: hex::encode(tcdist_verify::merkle::leaf_hash(&entry.canonicalized_body)),
        })
    }
}
