//! The Sigstore bundle (v0.3) as JSON (protobuf-specs `dev.sigstore.bundle.v1.Bundle`, in
//! protobuf's JSON mapping: camelCase names, bytes as base64, 64-bit integers as strings).
//! Only the parts tcdist writes and reads are modelled; unknown fields are ignored. Rekor v2
//! entry kinds (`dsse` 0.0.2) are kept as plain strings, so a new kind is a verification
//! failure with a reason, not a parse error that hides the rest of the bundle.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// The signer's leaf (v0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RawBytes>,
    /// A chain, leaf first (v0.1/v0.2 form; read, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertificateChain>,
    #[serde(default)]
    pub tlog_entries: Vec<TransparencyLogEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<TimestampVerificationData>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateChain {
    pub certificates: Vec<RawBytes>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    #[serde(with = "base64_bytes")]
    pub raw_bytes: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampVerificationData {
    #[serde(default)]
    pub rfc3161_timestamps: Vec<Rfc3161Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rfc3161Timestamp {
    /// The whole DER TimeStampResp.
    #[serde(with = "base64_bytes")]
    pub signed_timestamp: Vec<u8>,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

impl Envelope {
    /// DSSE's pre-authentication encoding: what the signature covers.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }
}

pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A transparency log entry with its inclusion proof (Rekor v2 gives no promise and no
/// integrated time; the signing time comes from the RFC 3161 timestamp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparencyLogEntry {
    #[serde(default, with = "string_i64")]
    pub log_index: i64,
    pub log_id: LogId,
    pub kind_version: KindVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<InclusionProof>,
    #[serde(with = "base64_bytes")]
    pub canonicalized_body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogId {
    #[serde(with = "base64_bytes")]
    pub key_id: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindVersion {
    pub kind: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    #[serde(default, with = "string_i64")]
    pub log_index: i64,
    #[serde(with = "base64_bytes")]
    pub root_hash: Vec<u8>,
    #[serde(with = "string_i64")]
    pub tree_size: i64,
    #[serde(default, with = "base64_list")]
    pub hashes: Vec<Vec<u8>>,
    pub checkpoint: Checkpoint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The signed note, as text.
    pub envelope: String,
}

/// Decodes base64 as protobuf's JSON mapping allows (standard or URL-safe, padded or not).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64_bytes::decode(text)
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("bundle does not parse: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bundle always serializes")
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        decode(&text).map_err(serde::de::Error::custom)
    }

    /// Protobuf's JSON mapping accepts standard and URL-safe base64, padded or not.
    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        let normalized: String = text
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(normalized)
    }
}

mod base64_list {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            list.iter()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|s| super::base64_bytes::decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// int64 as protobuf JSON writes it (a string), also read from a plain number.
mod string_i64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn bundle_round_trips_through_protobuf_json() {
        let bundle = Bundle {
            media_type: crate::attachments::MEDIA_TYPE_BUNDLE.into(),
            verification_material: VerificationMaterial {
                certificate: Some(RawBytes {
                    raw_bytes: vec![1, 2, 3],
                }),
                tlog_entries: vec![TransparencyLogEntry {
                    log_index: 7,
                    log_id: LogId {
                        key_id: vec![9; 32],
                    },
                    kind_version: KindVersion {
                        kind: "dsse".into(),
                        version: "0.0.2".into(),
                    },
                    inclusion_proof: Some(InclusionProof {
                        log_index: 7,
                        root_hash: vec![0; 32],
                        tree_size: 8,
                        hashes: vec![vec![1; 32]],
                        checkpoint: Checkpoint {
                            envelope: "origin\n8\nAAAA\n\n— origin sig\n".into(),
                        },
                    }),
                    canonicalized_body: b"{}".to_vec(),
                }],
                ..Default::default()
            },
            dsse_envelope: Some(Envelope {
                payload: b"{}".to_vec(),
                payload_type: "application/vnd.in-toto+json".into(),
                signatures: vec![EnvelopeSignature {
                    sig: vec![4, 5],
                    keyid: String::new(),
                }],
            }),
        };
        let json = String::from_utf8(bundle.to_json()).unwrap();
        assert!(json.contains(r#""logIndex":"7""#), "{json}");
        assert!(json.contains(r#""treeSize":"8""#), "{json}");
        assert!(json.contains(r#""rawBytes":"AQID""#), "{json}");
        assert_eq!(Bundle::parse(json.as_bytes()).unwrap(), bundle);
    }

    #[test]
    fn url_safe_unpadded_base64_is_accepted() {
        let json =
            br#"{"mediaType":"m","verificationMaterial":{"certificate":{"rawBytes":"-_8"}}}"#;
        let bundle = Bundle::parse(json).unwrap();
        assert_eq!(
            bundle.verification_material.certificate.unwrap().raw_bytes,
            vec![0xfb, 0xff]
        );
    }
}
