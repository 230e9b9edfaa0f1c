//! X.509-SVID rules (SPIFFE X509-SVID spec, section 4 and 5): the leaf carries exactly one URI
//! SAN holding a SPIFFE ID, is not a CA, and may sign; it chains to the bundle of its own trust
//! domain, checked at the proven signing time (not now: SVIDs live minutes, releases years).

use jiff::{SignedDuration, Timestamp};
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

/// Checks the leaf's form. Errors are reasons for [`tcdist_core::rules::Rule::SvidFormat`].
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

/// Checks that the leaf was issued for no longer than `max` (SVIDs are short-lived: a long-lived
/// one is a key that stays useful to a thief). Errors are reasons for
/// [`tcdist_core::rules::Rule::SvidLifetime`].
pub fn check_lifetime(leaf: &SvidLeaf, max: SignedDuration) -> Result<(), String> {
    let lifetime = leaf.not_after.duration_since(leaf.not_before);
    if lifetime > max {
        return Err(format!(
            "leaf of {} is valid for {lifetime:#} ({} .. {}), longer than the policy's \
             max_svid_lifetime of {max:#}",
            leaf.id, leaf.not_before, leaf.not_after
        ));
    }
    Ok(())
}

/// Checks that the leaf chains to one of `authorities` at `at`, through `intermediates` only
/// where they chain too. Errors are reasons for [`tcdist_core::rules::Rule::SvidChain`].
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
/// [`tcdist_core::rules::Rule::SignatureValid`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
    };

    const SIGNER: &str = "spiffe://tcdist.test/distd/signer";

    /// A leaf as SPIRE issues a signer's SVID: one SPIFFE URI SAN, digitalSignature, 15 minutes.
    fn svid_params() -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(SIGNER.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = date_time_ymd(2026, 1, 1);
        params.not_after = params.not_before + std::time::Duration::from_secs(15 * 60);
        params
    }

    fn der(params: &CertificateParams) -> Vec<u8> {
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    fn refused(params: &CertificateParams) -> String {
        parse_leaf(&der(params)).expect_err("the leaf should be refused")
    }

    #[test]
    fn svid_as_spire_issues_it_is_accepted() {
        let leaf = parse_leaf(&der(&svid_params())).unwrap();
        assert_eq!(leaf.id.to_string(), SIGNER);
        assert_eq!(
            leaf.not_after.duration_since(leaf.not_before),
            SignedDuration::from_mins(15)
        );
        check_lifetime(&leaf, SignedDuration::from_hours(1)).unwrap();
    }

    #[test]
    fn svid_rejected_if_lifetime_over_policy_max() {
        let mut params = svid_params();
        params.not_after = params.not_before + std::time::Duration::from_secs(3601);
        let leaf = parse_leaf(&der(&params)).unwrap();
        let reason = check_lifetime(&leaf, SignedDuration::from_hours(1)).unwrap_err();
        assert!(
            reason.contains("is valid for 1h 1s") && reason.contains("max_svid_lifetime of 1h"),
            "{reason}"
        );
    }

    #[test]
    fn svid_accepted_if_lifetime_is_exactly_policy_max() {
        let leaf = parse_leaf(&der(&svid_params())).unwrap();
        check_lifetime(&leaf, SignedDuration::from_mins(15)).unwrap();
        assert!(check_lifetime(&leaf, SignedDuration::from_mins(5)).is_err());
    }

    #[test]
    fn svid_rejected_if_two_uri_sans() {
        let mut params = svid_params();
        params.subject_alt_names.push(SanType::URI(
            "spiffe://tcdist.test/other".try_into().unwrap(),
        ));
        assert!(refused(&params).contains("exactly one URI SAN, this leaf has 2"));
    }

    #[test]
    fn svid_rejected_if_no_uri_san() {
        let mut params = svid_params();
        params.subject_alt_names = vec![SanType::DnsName("signer.test".try_into().unwrap())];
        assert!(refused(&params).contains("this leaf has 0"));
    }

    #[test]
    fn svid_rejected_if_uri_san_is_not_a_spiffe_id() {
        let mut params = svid_params();
        params.subject_alt_names = vec![SanType::URI("https://tcdist.test/x".try_into().unwrap())];
        assert!(refused(&params).contains("is not a SPIFFE ID"));
    }

    #[test]
    fn svid_rejected_if_ca() {
        let mut params = svid_params();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert!(refused(&params).contains("is a CA certificate"));
    }

    #[test]
    fn svid_rejected_if_no_digital_signature() {
        let mut params = svid_params();
        params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        assert!(refused(&params).contains("lacks digitalSignature"));
    }

    #[test]
    fn svid_rejected_if_key_cert_sign() {
        let mut params = svid_params();
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        assert!(refused(&params).contains("keyCertSign"));
    }

    #[test]
    fn svid_rejected_if_not_a_certificate() {
        assert!(
            parse_leaf(b"not DER")
                .unwrap_err()
                .contains("not a certificate")
        );
    }
}
