//! The `trusted_root.json` document (protobuf-specs `TrustedRoot`, JSON mapping), the one type
//! `distd trust-root export` writes and tcverify reads. Only the fields tcdist uses are typed;
//! byte fields stay base64 text, decoded (and checked) by the reader.
//! (`sigstore-trust-root`'s types cannot be built outside that crate and have no
//! `checkpointKeyId`, which Rekor v2 clients need.)

use serde::{Deserialize, Serialize};
use sigstore_types::TimeRange;

/// The media type `distd trust-root export` writes.
pub const MEDIA_TYPE_TRUSTED_ROOT: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootDocument {
    pub media_type: String,
    #[serde(default)]
    pub tlogs: Vec<LogInstance>,
    #[serde(default)]
    pub certificate_authorities: Vec<AuthorityEntry>,
    /// Certificate transparency logs: tcdist has none, and reads none.
    #[serde(default)]
    pub ctlogs: Vec<serde_json::Value>,
    #[serde(default)]
    pub timestamp_authorities: Vec<AuthorityEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogInstance {
    pub base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algorithm: Option<String>,
    pub public_key: PublicKeyEntry,
    pub log_id: KeyId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_key_id: Option<KeyId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyEntry {
    /// Base64 of the DER SubjectPublicKeyInfo.
    pub raw_bytes: String,
    /// The protobuf-specs `PublicKeyDetails` name, e.g. `PKIX_ED25519`.
    pub key_details: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<TimeRange>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyId {
    /// Base64.
    pub key_id: String,
}

/// A certificate authority or a timestamp authority: both are a subject, a URI and a chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityEntry {
    #[serde(default)]
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub cert_chain: CertChain,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<TimeRange>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertChain {
    pub certificates: Vec<CertificateEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEntry {
    /// Base64 of the DER certificate.
    pub raw_bytes: String,
}
