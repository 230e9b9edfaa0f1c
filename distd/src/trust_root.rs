//! `distd trust-root export`: the trust material of a tcdist deployment as a Sigstore
//! `trusted_root.json` (protobuf-specs `TrustedRoot`, JSON mapping), so ordinary Sigstore
//! verifiers (cosign, sigstore-js) can check tcdist's bundles: the SPIRE trust domain's CA
//! certificates as certificate authorities, the transparency log's key, the TSA's chain.

use std::path::Path;

use anyhow::{Result, bail};
use base64::Engine as _;
use sigstore_types::TimeRange;
use tcdist_verify::trust::tlog::{LogKeyAlgorithm, TransparencyLog};
use tcdist_verify::trust::trusted_root::document::{
    AuthorityEntry, CertChain, CertificateEntry, KeyId, LogInstance, MEDIA_TYPE_TRUSTED_ROOT,
    PublicKeyEntry, Subject, TrustedRootDocument,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::sign::svid::read_certificates;

pub struct TrustRootInputs<'a> {
    /// PEM: the trust domain's X.509 authorities (SPIRE `bundle show -format pem`).
    pub ca_bundle: &'a Path,
    /// The trust domain's name, recorded as each authority's URI.
    pub trust_domain: &'a str,
    /// PEM: the TSA chain, leaf first.
    pub tsa_chain: &'a Path,
    /// PEM public key and origin of the transparency log.
    pub log: Option<(&'a Path, &'a str)>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn chain_of<'a>(certificates: impl IntoIterator<Item = &'a Vec<u8>>) -> CertChain {
    CertChain {
        certificates: certificates
            .into_iter()
            .map(|der| CertificateEntry {
                raw_bytes: b64(der),
            })
            .collect(),
    }
}

pub fn export(inputs: &TrustRootInputs<'_>) -> Result<TrustedRootDocument> {
    let certificate_authorities = read_certificates(&inputs.ca_bundle.to_path_buf())?
        .iter()
        .map(|der| {
            // sigstore-js chains a leaf only through certChain (issuer first, root last); SPIRE's
            // authorities are self-signed roots, each its own chain.
            let facts = certificate_facts(der)?;
            Ok(AuthorityEntry {
                subject: facts.subject,
                uri: Some(format!("spiffe://{}", inputs.trust_domain)),
                cert_chain: chain_of([der]),
                valid_for: Some(TimeRange::new(facts.not_before, Some(facts.not_after))),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if certificate_authorities.is_empty() {
        bail!(
            "{} holds no certificate authority",
            inputs.ca_bundle.display()
        );
    }
    let tsa_chain = read_certificates(&inputs.tsa_chain.to_path_buf())?;
    let tsa_facts = certificate_facts(&tsa_chain[0])?;
    let timestamp_authority = AuthorityEntry {
        subject: tsa_facts.subject,
        uri: None,
        cert_chain: chain_of(&tsa_chain),
        valid_for: Some(TimeRange::new(tsa_facts.not_before, None)),
    };
    let tlogs = match inputs.log {
        Some((public_key, origin)) => {
            let log =
                TransparencyLog::from_key_file(public_key, origin).map_err(anyhow::Error::msg)?;
            let key_id = KeyId {
                key_id: b64(&log.key_id()),
            };
            vec![LogInstance {
                // Sigstore clients take the checkpoint origin from this URL's host.
                base_url: format!("https://{origin}"),
                hash_algorithm: Some("SHA2_256".to_owned()),
                public_key: PublicKeyEntry {
                    raw_bytes: b64(&log.public_key),
                    key_details: match log.algorithm {
                        LogKeyAlgorithm::Ed25519 => "PKIX_ED25519",
                        LogKeyAlgorithm::EcdsaP256Sha256 => "PKIX_ECDSA_P256_SHA_256",
                    }
                    .to_owned(),
                    valid_for: Some(TimeRange::new(jiff::Timestamp::UNIX_EPOCH, None)),
                },
                log_id: key_id.clone(),
                checkpoint_key_id: Some(key_id),
            }]
        }
        None => Vec::new(),
    };
    Ok(TrustedRootDocument {
        media_type: MEDIA_TYPE_TRUSTED_ROOT.to_owned(),
        tlogs,
        certificate_authorities,
        ctlogs: Vec::new(),
        timestamp_authorities: vec![timestamp_authority],
    })
}

struct CertificateFacts {
    subject: Subject,
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
}

fn certificate_facts(der: &[u8]) -> Result<CertificateFacts> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("a certificate does not parse: {e}"))?;
    let first = |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        iter.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let time = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp())
            .map_err(|e| anyhow::anyhow!("a certificate's validity is out of range: {e}"))
    };
    Ok(CertificateFacts {
        subject: Subject {
            organization: first(&mut cert.subject().iter_organization()),
            common_name: first(&mut cert.subject().iter_common_name()),
        },
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
    })
}
