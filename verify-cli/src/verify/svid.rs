//! X.509-SVID rules (SPIFFE X509-SVID spec, section 4 and 5): the leaf carries exactly one URI
//! SAN holding a SPIFFE ID, is not a CA, and may sign; it chains to the bundle of its own trust
//! domain, checked at the proven signing time (not now: SVIDs live minutes, releases years).

use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::spiffe_id::SpiffeId;

/// The facts of a leaf that passed the SVID format rules.
#[derive(Clone, Debug)]
pub struct SvidLeaf {
    pub id: SpiffeId,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub serial: String,
}

/// Checks the leaf's form. Errors are reasons for [`crate::verify::rules::Rule::SvidFormat`].
pub fn parse_leaf(der: &[u8]) -> Result<SvidLeaf, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("leaf is not a certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("leaf has trailing bytes after the certificate".into());
    }
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| format!("leaf's subjectAltName is malformed: {e}"))?;
    let uris: Vec<&str> = sans
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(format!(
            "an X.509-SVID has exactly one URI SAN, this leaf has {} ({})",
            uris.len(),
            uris.join(", ")
        ));
    };
    let id =
        SpiffeId::parse(uri).map_err(|e| format!("URI SAN {uri:?} is not a SPIFFE ID: {e}"))?;
    if let Some(constraints) = cert
        .basic_constraints()
        .map_err(|e| format!("leaf's basicConstraints is malformed: {e}"))?
        && constraints.value.ca
    {
        return Err("leaf is a CA certificate (basicConstraints cA=true)".into());
    }
    let usage = cert
        .key_usage()
        .map_err(|e| format!("leaf's keyUsage is malformed: {e}"))?
        .ok_or("leaf has no keyUsage extension (an X.509-SVID must have digitalSignature)")?;
    if !usage.value.digital_signature() {
        return Err("leaf's keyUsage lacks digitalSignature".into());
    }
    if usage.value.key_cert_sign() || usage.value.crl_sign() {
        return Err("leaf's keyUsage has keyCertSign or cRLSign (only CAs may)".into());
    }
    let time = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| format!("leaf validity: {e}"))
    };
    Ok(SvidLeaf {
        id,
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        serial: cert.raw_serial_as_string(),
    })
}

/// Checks that the leaf chains to one of `authorities` at `at`, through `intermediates` only
/// where they chain too. Errors are reasons for [`crate::verify::rules::Rule::SvidChain`].
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    authorities: &[CertificateDer<'static>],
    at: Timestamp,
) -> Result<(), String> {
    let anchors = authorities
        .iter()
        .map(anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("trust bundle holds an unusable certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let leaf = CertificateDer::from(leaf);
    let end_entity =
        EndEntityCert::try_from(&leaf).map_err(|e| format!("leaf is not usable: {e}"))?;
    let seconds =
        u64::try_from(at.as_second()).map_err(|_| format!("signing time {at} is before 1970"))?;
    end_entity
        .verify_for_usage(
            ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            // SPIRE issues clientAuth+serverAuth; a leaf without extendedKeyUsage is fine too.
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map(drop)
        .map_err(|e| format!("leaf does not chain to the trust domain's bundle at {at}: {e:?}"))
}

/// Verifies `signature` over `message` with the leaf's public key. Errors are reasons for
/// [`crate::verify::rules::Rule::SignatureValid`].
pub fn verify_signature(leaf: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    let leaf = CertificateDer::from(leaf);
    let end_entity =
        EndEntityCert::try_from(&leaf).map_err(|e| format!("leaf is not usable: {e}"))?;
    let mut last = None;
    for algorithm in SIGNATURE_ALGORITHMS {
        match end_entity.verify_signature(*algorithm, message, signature) {
            Ok(()) => return Ok(()),
            // The key is of another kind: try the next algorithm.
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => format!("signature does not verify with the leaf's key: {e:?}"),
        None => "the leaf's key type is not supported (ECDSA P-256/P-384, Ed25519, RSA)".into(),
    })
}

/// Certificate signature algorithms accepted in chains.
static ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
];

/// Signature schemes for release signatures: one per key type, hash matched to the curve.
static SIGNATURE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
];
