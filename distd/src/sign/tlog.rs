//! Recording signatures in the transparency log (Rekor v2): the DSSE envelope and the signer's
//! certificate go in as a `dsse` 0.0.2 entry; the log answers once a checkpoint covers it, with
//! the entry, its inclusion proof and the signed checkpoint, which go into the bundle.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::json;
use tcdist_oci::bundle::{Envelope, TransparencyLogEntry};

use super::key::SigningKey;

/// Rekor v2 blocks until a checkpoint includes the entry; its clients are told to wait 20 s.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TransparencyLogClient {
    http: reqwest::Client,
    url: String,
}

impl TransparencyLogClient {
    /// `url` is the log's base URL (`$TCDIST_REKOR_URL`).
    pub fn new(url: &str) -> Result<Self> {
        Ok(TransparencyLogClient {
            http: reqwest::Client::builder()
                .timeout(SUBMIT_TIMEOUT)
                .build()
                .context("setting up the transparency log client")?,
            url: format!("{}/api/v2/log/entries", url.trim_end_matches('/')),
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
