//! The bodies of Rekor v2 log entries (`dsse` and `hashedrekord`, API version 0.0.2): the one
//! type that both the verifier (is this entry our signature?) and the monitor (whose signature
//! is this entry?) read entries with.

use serde::Deserialize;

use tcdist_oci::bundle::decode_base64;

/// What a log entry records: one or more signatures over a payload known by its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEntry {
    pub kind: EntryKind,
    /// The SHA-256 of what was signed: the DSSE payload, or the artifact of a hashedrekord.
    pub payload_sha256: [u8; 32],
    pub signatures: Vec<LoggedSignature>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dsse,
    HashedRekord,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Dsse => "dsse/0.0.2",
            EntryKind::HashedRekord => "hashedrekord/0.0.2",
        }
    }

    /// The kind and API version, as a bundle's `kindVersion` names them.
    pub fn kind_version(self) -> (&'static str, &'static str) {
        match self {
            EntryKind::Dsse => ("dsse", "0.0.2"),
            EntryKind::HashedRekord => ("hashedrekord", "0.0.2"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedSignature {
    pub signature: Vec<u8>,
    pub verifier: Verifier,
}

/// Who the log says made a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verifier {
    /// A leaf certificate (DER).
    Certificate(Vec<u8>),
    /// A bare public key (DER SubjectPublicKeyInfo): no identity to match.
    PublicKey(Vec<u8>),
}

impl LoggedEntry {
    /// Parses a canonicalized entry body. Every field read must be present and well formed;
    /// any other kind or version is refused, so nothing the log holds is silently skipped.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let body: Body =
            serde_json::from_slice(body).map_err(|e| format!("not a Rekor entry body: {e}"))?;
        match (body.kind.as_str(), body.api_version.as_str()) {
            ("dsse", "0.0.2") => {
                let spec = body
                    .spec
                    .dsse_v002
                    .ok_or("the dsse entry has no dsseV002 spec")?;
                Ok(LoggedEntry {
                    kind: EntryKind::Dsse,
                    payload_sha256: sha256_of(&spec.payload_hash)?,
                    signatures: spec
                        .signatures
                        .iter()
                        .map(EntrySignature::decode)
                        .collect::<Result<_, _>>()?,
                })
            }
            ("hashedrekord", "0.0.2") => {
                let spec = body
                    .spec
                    .hashed_rekord_v002
                    .ok_or("the hashedrekord entry has no hashedRekordV002 spec")?;
                Ok(LoggedEntry {
                    kind: EntryKind::HashedRekord,
                    payload_sha256: sha256_of(&spec.data)?,
                    signatures: vec![spec.signature.decode()?],
                })
            }
            (kind, version) => Err(format!(
                "entries of kind {kind:?}, version {version:?} are not known"
            )),
        }
    }
}

fn sha256_of(hash: &HashOutput) -> Result<[u8; 32], String> {
    if hash.algorithm != "SHA2_256" {
        return Err(format!(
            "digest algorithm {:?} is not SHA2_256",
            hash.algorithm
        ));
    }
    decode_base64(&hash.digest)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| "the digest is not 32 bytes of base64".to_owned())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    api_version: String,
    kind: String,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    dsse_v002: Option<DsseV002>,
    hashed_rekord_v002: Option<HashedRekordV002>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseV002 {
    payload_hash: HashOutput,
    signatures: Vec<EntrySignature>,
}

#[derive(Deserialize)]
struct HashedRekordV002 {
    data: HashOutput,
    signature: EntrySignature,
}

#[derive(Deserialize)]
struct HashOutput {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
struct EntrySignature {
    content: String,
    verifier: EntryVerifier,
}

impl EntrySignature {
    fn decode(&self) -> Result<LoggedSignature, String> {
        let bytes = |what: &str, text: &str| {
            decode_base64(text).map_err(|_| format!("the {what} is not base64"))
        };
        let verifier = match (&self.verifier.x509_certificate, &self.verifier.public_key) {
            (Some(certificate), None) => {
                Verifier::Certificate(bytes("certificate", &certificate.raw_bytes)?)
            }
            (None, Some(key)) => Verifier::PublicKey(bytes("public key", &key.raw_bytes)?),
            _ => return Err("a signature's verifier is not one certificate or one key".into()),
        };
        Ok(LoggedSignature {
            signature: bytes("signature", &self.content)?,
            verifier,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryVerifier {
    x509_certificate: Option<RawBytes>,
    public_key: Option<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn hashedrekord(verifier: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "0.0.2", "kind": "hashedrekord",
            "spec": {"hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": b64(&[7; 32])},
                "signature": {"content": b64(b"sig"), "verifier": verifier},
            }},
        }))
        .unwrap()
    }

    #[test]
    fn hashedrekord_entries_parse_with_a_certificate_or_a_key() {
        let entry = LoggedEntry::parse(&hashedrekord(
            json!({"x509Certificate": {"rawBytes": b64(b"leaf")}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}),
        ))
        .unwrap();
        assert_eq!(entry.kind, EntryKind::HashedRekord);
        assert_eq!(entry.payload_sha256, [7; 32]);
        assert_eq!(
            entry.signatures,
            vec![LoggedSignature {
                signature: b"sig".to_vec(),
                verifier: Verifier::Certificate(b"leaf".to_vec()),
            }]
        );
        let entry = LoggedEntry::parse(&hashedrekord(
            json!({"publicKey": {"rawBytes": b64(b"key")}}),
        ))
        .unwrap();
        assert_eq!(
            entry.signatures[0].verifier,
            Verifier::PublicKey(b"key".to_vec())
        );
    }

    #[test]
    fn entry_rejected_if_its_verifier_is_neither_or_both() {
        for verifier in [
            json!({}),
            json!({"publicKey": {"rawBytes": "AA=="}, "x509Certificate": {"rawBytes": "AA=="}}),
        ] {
            let err = LoggedEntry::parse(&hashedrekord(verifier)).unwrap_err();
            assert!(err.contains("not one certificate or one key"), "{err}");
        }
    }

    #[test]
    fn entry_rejected_if_its_kind_is_unknown_or_its_digest_is_not_sha256() {
        let err =
            LoggedEntry::parse(br#"{"apiVersion":"0.0.2","kind":"intoto","spec":{}}"#).unwrap_err();
        assert!(err.contains("not known"), "{err}");
        let mut body: serde_json::Value =
            serde_json::from_slice(&hashedrekord(json!({"publicKey": {"rawBytes": "AA=="}})))
                .unwrap();
        body["spec"]["hashedRekordV002"]["data"]["digest"] = json!(b64(&[1; 20]));
        let err = LoggedEntry::parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert!(err.contains("not 32 bytes"), "{err}");
        assert!(LoggedEntry::parse(b"\xff junk").is_err());
    }
}
